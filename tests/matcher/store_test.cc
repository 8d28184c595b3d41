#include "bantay/matcher/store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "bantay/matcher/crypto.h"
#include "bantay/matcher/hash_index.h"
#include "bantay/matcher/merkle.h"
#include "bantay/matcher/store_index.h"
#include "database.h"
#include "store_tamper.h"
#include "store_testing.h"
#include "store_test_util.h"

namespace bantay::matcher {
namespace {

using store_testing::BackendName;
using store_testing::Entry;
using store_testing::LeavesDigest;
using store_testing::Md5Value;
using store_testing::ReferencePdqValues;
using store_testing::Sha256Value;

Status Exec(db::Connection& conn, std::string_view sql, std::vector<db::Param> params = {}) {
  return conn.Execute(sql, params);
}

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

bool HasProblem(const VerifyReport& report, const std::string& text) {
  return std::find(report.problems.begin(), report.problems.end(), text) !=
         report.problems.end();
}

std::string Problems(const VerifyReport& report) {
  std::string out;
  for (const std::string& p : report.problems) out += "\n  " + p;
  return out;
}

class StoreTest : public store_testing::StoreBackendTest {
 protected:
  void SetUp() override {
    StoreBackendTest::SetUp();
    pdq_ = ReferencePdqValues();
    ASSERT_GE(pdq_.size(), 8u);
  }

  // Version 2: three entries in "hotline-a" (ids 1-3); version 3: two in
  // "ngo-b" (ids 4-5).
  void Populate(Store& store) {
    ASSERT_EQ(*store.AddEntries({Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "case-1"),
                                 Entry("hotline-a", SignalType::kPdq, pdq_[1], "B2", "case-2"),
                                 Entry("hotline-a", SignalType::kMd5, Md5Value("three"), "A1",
                                       "case-3")},
                                Ctx()),
              2u);
    ASSERT_EQ(*store.AddEntries({Entry("ngo-b", SignalType::kSha256, Sha256Value("four"), "B1",
                                       "case-4"),
                                 Entry("ngo-b", SignalType::kPdq, pdq_[2], "B1", "case-5")},
                                Ctx("bob", "import.csv"), "import"),
              3u);
  }

  // Populate, then entry 2 disabled (version 4).
  std::unique_ptr<Store> PopulatedStore() {
    std::unique_ptr<Store> store = Init();
    if (store == nullptr) return nullptr;
    Populate(*store);
    Result<uint64_t> v = store->SetEntriesStatus({2}, EntryStatus::kDisabled, Ctx());
    EXPECT_TRUE(v.ok() && *v == 4u);
    return store;
  }

  Status DropAppendOnlyTriggers(db::Connection& conn) {
    return bantay::testing::DropAppendOnlyTriggers(conn, sqlite());
  }

  // Verify of a fresh Store object on the (tampered) database.
  VerifyReport VerifyFresh() {
    std::unique_ptr<Store> store = Open();
    if (store == nullptr) return {};
    Result<VerifyReport> report = store->Verify(std::nullopt);
    EXPECT_TRUE(report.ok()) << report.error().ToString();
    return report.ok() ? *report : VerifyReport{};
  }

  // Every active entry of an enabled list, in id order.
  static std::vector<StoredEntry> ActiveEntries(Store& store) {
    std::set<std::string> disabled_lists;
    const Result<std::vector<ListInfo>> lists = store.Lists();
    EXPECT_TRUE(lists.ok());
    if (!lists.ok()) return {};
    for (const ListInfo& l : *lists) {
      if (!l.enabled) disabled_lists.insert(l.name);
    }
    std::vector<StoredEntry> out;
    for (StoredEntry& e : AllEntries(store)) {
      if (e.status == EntryStatus::kActive && !disabled_lists.count(e.list)) out.push_back(e);
    }
    return out;
  }

  // Checks the current signed version against an independent recomputation.
  void ExpectRootMatchesEntries(Store& store) {
    const std::vector<StoredEntry> active = ActiveEntries(store);
    std::vector<Digest32> leaves;
    for (const StoredEntry& e : active) leaves.push_back(EntryLeafHash(e));
    Result<VersionRecord> root = store.Root();
    STORE_ASSERT_OK(root);
    EXPECT_EQ(root->version, VersionOf(store));
    EXPECT_EQ(root->root, MerkleRoot(leaves));
    EXPECT_EQ(root->active_count, active.size());
    EXPECT_EQ(root->public_key, SignerPublic());
    EXPECT_TRUE(VerifySignature(SignerPublic(), VersionSigningMessage(store.store_id(), *root),
                                root->signature));
    Result<std::vector<AuditRecord>> audit = store.Audit(root->version - 1, 10);
    STORE_ASSERT_OK(audit);
    ASSERT_EQ(audit->size(), 1u);
    EXPECT_EQ(root->audit_digest, audit->front().digest);
  }

  std::vector<std::array<uint8_t, 32>> pdq_;
};

// --- Init and Open ---------------------------------------------------------------

// PostgreSQL's 32-bit transaction ids, trusted for a kept state until
// another transaction could write rows that carry one of them.
TEST(PgTrustedUntilTest, IsTheOldestTrustedOrRunningIdPlusTwoToThe32) {
  constexpr uint64_t kWrap = uint64_t{1} << 32;
  // Before any wrap-around: the oldest of the trusted ids and the
  // snapshot's oldest running one.
  EXPECT_EQ(internal::PgTrustedUntil(900, 1000, {}, {500, 700}), 500 + kWrap);
  EXPECT_EQ(internal::PgTrustedUntil(400, 1000, {}, {500, 700}), 400 + kWrap);
  EXPECT_EQ(internal::PgTrustedUntil(1000, 1000, {}, {}), 1000 + kWrap);
  // After a wrap-around, an id above the snapshot's low 32 bits stands for
  // one of the epoch before.
  const uint64_t next = kWrap + 0x100;
  EXPECT_EQ(internal::PgTrustedUntil(next, next, {}, {0x80, 0xffff'ff00u}),
            (kWrap - 0x100) + kWrap);
  EXPECT_EQ(internal::PgTrustedUntil(next - 8, next, {}, {0x80}), kWrap + 0x80 + kWrap);
  // An id that may be one still to come (the snapshot's next, or any id
  // ending as it does), or one still running: none.
  EXPECT_EQ(internal::PgTrustedUntil(900, 1000, {}, {1000}), std::nullopt);
  EXPECT_EQ(internal::PgTrustedUntil(900, 1000, {950}, {500, 950}), std::nullopt);
  EXPECT_EQ(internal::PgTrustedUntil(900, 1000, {950}, {500, 960}), 500 + kWrap);
  // An id above every 64-bit id yet given ends as none of them did.
  EXPECT_EQ(internal::PgTrustedUntil(900, 1000, {}, {5000}), std::nullopt);
  EXPECT_EQ(internal::PgTrustedUntil(1000, 900, {}, {500}), std::nullopt);
  // Ids that are no transaction's (2: a row frozen by hand) are not trusted.
  EXPECT_EQ(internal::PgTrustedUntil(900, 1000, {}, {2, 500}), std::nullopt);
}

TEST(PgTrustedUntilTest, A32BitIdStandsForTheLastIdAtOrBelowTheSnapshotsNext) {
  constexpr uint64_t kWrap = uint64_t{1} << 32;
  EXPECT_EQ(internal::PgXid64(999, 1000), 999u);
  EXPECT_EQ(internal::PgXid64(3, 1000), 3u);
  EXPECT_EQ(internal::PgXid64(1000, 1000), std::nullopt);
  EXPECT_EQ(internal::PgXid64(1001, 1000), std::nullopt);
  EXPECT_EQ(internal::PgXid64(2, 1000), std::nullopt);
  EXPECT_EQ(internal::PgXid64(0, 1000), std::nullopt);
  EXPECT_EQ(internal::PgXid64(1001, 3 * kWrap + 1000), 2 * kWrap + 1001);
  EXPECT_EQ(internal::PgXid64(999, 3 * kWrap + 1000), 3 * kWrap + 999);
  EXPECT_EQ(internal::PgXid64(0xffff'ffffu, kWrap + 5), kWrap - 1);
}

TEST_P(StoreTest, InitCommitsVersionOneThenOpenReadsIt) {
  std::array<uint8_t, 16> id{};
  {
    std::unique_ptr<Store> store = Init();
    ASSERT_NE(store, nullptr);
    EXPECT_NE(store->store_id(), (std::array<uint8_t, 16>{}));
    id = store->store_id();
    EXPECT_EQ(VersionOf(*store), 1u);
  }
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->store_id(), id);
  EXPECT_EQ(VersionOf(*store), 1u);

  Result<std::vector<AuditRecord>> audit = store->Audit(0, 100);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 1u);
  const AuditRecord& r = audit->front();
  EXPECT_EQ(r.seq, 1u);
  EXPECT_EQ(r.action, "init");
  EXPECT_EQ(r.actor, "alice");
  EXPECT_EQ(r.list, "");
  EXPECT_EQ(r.count, 0u);
  EXPECT_EQ(r.entries_digest, store_testing::Sha256Of({}));
  EXPECT_EQ(r.prev_digest, Digest32{});
  EXPECT_EQ(r.digest, AuditRecordDigest(r));

  Result<VersionRecord> root = store->Root();
  STORE_ASSERT_OK(root);
  EXPECT_EQ(root->version, 1u);
  EXPECT_EQ(root->root, MerkleRoot({}));
  EXPECT_EQ(root->root, store_testing::Sha256Of({}));  // RFC 6962: the empty tree
  EXPECT_EQ(root->active_count, 0u);
  EXPECT_EQ(root->audit_digest, r.digest);
  EXPECT_EQ(root->created_at, r.time);
  EXPECT_EQ(root->public_key, SignerPublic());
  EXPECT_TRUE(VerifySignature(SignerPublic(), VersionSigningMessage(id, *root), root->signature));

  EXPECT_TRUE(store->Lists()->empty());
  EXPECT_TRUE(AllEntries(*store).empty());
  Result<StoreStats> stats = store->Stats();
  STORE_ASSERT_OK(stats);
  EXPECT_EQ(stats->version, 1u);
  EXPECT_EQ(stats->store_id, id);
  EXPECT_EQ(stats->lists, 0u);
  EXPECT_EQ(stats->active_by_type, (std::array<uint64_t, 3>{0, 0, 0}));
  EXPECT_EQ(stats->disabled, 0u);
  EXPECT_TRUE(stats->values_by_key.empty());
}

TEST_P(StoreTest, InitOfAnExistingStoreIsRefusedAndChangesNothing) {
  std::unique_ptr<Store> first = Init();
  ASSERT_NE(first, nullptr);
  STORE_EXPECT_CODE(Store::Init(url_, Keys(), Ctx()), ErrorCode::kInvalidArgument);
  first.reset();
  STORE_EXPECT_CODE(Store::Init(url_, Keys(), Ctx()), ErrorCode::kInvalidArgument);
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(VersionOf(*store), 1u);
  EXPECT_EQ(store->Audit(0, 100)->size(), 1u);
}

TEST_P(StoreTest, InitNeedsADataKeyAndASigningKey) {
  StoreKeys no_data = Keys();
  no_data.data_keys.clear();
  STORE_EXPECT_CODE(Store::Init(url_, std::move(no_data), Ctx()), ErrorCode::kInvalidArgument);
  StoreKeys no_signer = Keys();
  no_signer.signing_key.reset();
  STORE_EXPECT_CODE(Store::Init(url_, std::move(no_signer), Ctx()), ErrorCode::kInvalidArgument);
  STORE_EXPECT_CODE(Store::Open(url_, Keys()), ErrorCode::kNotFound);
}

TEST_P(StoreTest, OpenWithoutAStoreIsNotFound) {
  // SQLite: the file does not exist; PostgreSQL: an empty database.
  STORE_EXPECT_CODE(Store::Open(url_, Keys()), ErrorCode::kNotFound);
  if (sqlite()) {
    EXPECT_FALSE(std::filesystem::exists(path_));
  }
}

TEST_P(StoreTest, OpenOfAnUnknownSchemaVersionIsInvalidArgument) {
  ASSERT_NE(Init(), nullptr);
  std::unique_ptr<db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  // Schema 1 is upgraded (store_upgrade_test.cc); 3 is from a newer Bantay.
  const std::array<uint8_t, 8> three = {0, 0, 0, 0, 0, 0, 0, 3};
  STORE_ASSERT_OK(Exec(*raw, "UPDATE meta SET value = $1 WHERE key = 'schema_version'",
                       {db::Param::Blob(three)}));
  Result<std::unique_ptr<Store>> store = Store::Open(url_, Keys());
  STORE_EXPECT_CODE(store, ErrorCode::kInvalidArgument);
  if (!store.ok()) {
    EXPECT_EQ(store.error().message(), "unknown store schema version 3");
  }
}

TEST_P(StoreTest, ChangesWithoutTheSigningKeyAreDeniedAndChangeNothing) {
  {
    std::unique_ptr<Store> store = Init();
    ASSERT_NE(store, nullptr);
    Populate(*store);
  }
  StoreKeys read_only;
  read_only.data_keys = {key_};
  std::unique_ptr<Store> store = Open(std::move(read_only));
  ASSERT_NE(store, nullptr);
  const std::vector<StoredEntry> before = AllEntries(*store);
  ASSERT_EQ(before.size(), 5u);

  STORE_EXPECT_CODE(store->AddEntries({Entry("hotline-a", SignalType::kPdq, pdq_[5])}, Ctx()),
                    ErrorCode::kPermissionDenied);
  STORE_EXPECT_CODE(store->AddEntries({Entry("new-list", SignalType::kPdq, pdq_[5])}, Ctx()),
                    ErrorCode::kPermissionDenied);
  STORE_EXPECT_CODE(store->RemoveEntries({1}, Ctx()), ErrorCode::kPermissionDenied);
  STORE_EXPECT_CODE(store->SetEntriesStatus({1}, EntryStatus::kDisabled, Ctx()),
                    ErrorCode::kPermissionDenied);
  STORE_EXPECT_CODE(store->SetListEnabled("ngo-b", false, Ctx()), ErrorCode::kPermissionDenied);
  STORE_EXPECT_CODE(store->Rekey(Ctx()), ErrorCode::kPermissionDenied);

  EXPECT_EQ(VersionOf(*store), 3u);
  EXPECT_EQ(store->Audit(0, 100)->size(), 3u);
  store_testing::ExpectSameEntries(AllEntries(*store), before);
  Result<std::vector<ListInfo>> lists = store->Lists();
  STORE_ASSERT_OK(lists);
  ASSERT_EQ(lists->size(), 2u);
  EXPECT_TRUE((*lists)[1].enabled);
}

TEST_P(StoreTest, ChangesWithAnotherSigningKeyAreDenied) {
  {
    std::unique_ptr<Store> store = Init();
    ASSERT_NE(store, nullptr);
    Populate(*store);
  }
  // Versions signed by a key other than the store's would never verify.
  StoreKeys wrong;
  wrong.data_keys = {key_};
  wrong.signing_key = SigningKey::Generate();
  std::unique_ptr<Store> store = Open(std::move(wrong));
  ASSERT_NE(store, nullptr);
  STORE_EXPECT_CODE(store->AddEntries({Entry("hotline-a", SignalType::kPdq, pdq_[5])}, Ctx()),
                    ErrorCode::kPermissionDenied);
  STORE_EXPECT_CODE(store->RemoveEntries({1}, Ctx()), ErrorCode::kPermissionDenied);
  STORE_EXPECT_CODE(store->Rekey(Ctx()), ErrorCode::kPermissionDenied);
  EXPECT_EQ(VersionOf(*store), 3u);
  EXPECT_EQ(AllEntries(*store).size(), 5u);
  Result<VerifyReport> report = store->Verify(std::nullopt);
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << Problems(*report);
}

TEST_P(StoreTest, ReadingNeedsTheDataKeyOfTheValues) {
  {
    std::unique_ptr<Store> store = Init();
    ASSERT_NE(store, nullptr);
    Populate(*store);
  }
  StoreKeys other;
  other.data_keys = {GenerateDataKey()};
  other.signing_key = Signer();
  std::unique_ptr<Store> store = Open(std::move(other));
  ASSERT_NE(store, nullptr);
  STORE_EXPECT_CODE(store->Entries("", 0, 100), ErrorCode::kPermissionDenied);
  STORE_EXPECT_CODE(store->ChangesSince(0), ErrorCode::kPermissionDenied);
  STORE_EXPECT_CODE(store->ForEachEntry([](StoredEntry&&) {}, nullptr, nullptr),
                    ErrorCode::kPermissionDenied);
  // Metadata needs no data key.
  EXPECT_EQ(VersionOf(*store), 3u);
  EXPECT_EQ(store->Lists()->size(), 2u);
}

// --- Adding ------------------------------------------------------------------------

TEST_P(StoreTest, AddedEntriesReadBackExactly) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  std::array<uint8_t, 32> md5_with_junk = Md5Value("three");
  std::fill(md5_with_junk.begin() + 16, md5_with_junk.end(), 0xab);  // not stored
  const int64_t t0 = static_cast<int64_t>(std::time(nullptr));
  Result<uint64_t> v = store->AddEntries(
      {Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "case-1"),
       Entry("hotline-a", SignalType::kMd5, md5_with_junk, "B2", "ref with spaces/ü"),
       Entry("ngo-b", SignalType::kSha256, Sha256Value("four"), "", "")},
      Ctx("alice", "cli"));
  const int64_t t1 = static_cast<int64_t>(std::time(nullptr));
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 2u);
  EXPECT_EQ(VersionOf(*store), 2u);

  const std::vector<StoredEntry> entries = AllEntries(*store);
  ASSERT_EQ(entries.size(), 3u);
  const std::array<SignalType, 3> types = {SignalType::kPdq, SignalType::kMd5,
                                           SignalType::kSha256};
  const std::array<std::array<uint8_t, 32>, 3> values = {pdq_[0], Md5Value("three"),
                                                          Sha256Value("four")};
  const std::array<std::string, 3> lists = {"hotline-a", "hotline-a", "ngo-b"};
  const std::array<std::string, 3> categories = {"A1", "B2", ""};
  const std::array<std::string, 3> references = {"case-1", "ref with spaces/ü", ""};
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    const StoredEntry& e = entries[i];
    EXPECT_EQ(e.id, i + 1);
    EXPECT_EQ(e.list, lists[i]);
    EXPECT_EQ(e.type, types[i]);
    EXPECT_EQ(e.value, values[i]);
    EXPECT_EQ(e.category, categories[i]);
    EXPECT_EQ(e.reference, references[i]);
    EXPECT_EQ(e.source, "cli");
    EXPECT_EQ(e.added_by, "alice");
    EXPECT_GE(e.added_at, t0);
    EXPECT_LE(e.added_at, t1);
    EXPECT_EQ(e.status, EntryStatus::kActive);
    EXPECT_EQ(e.added_version, 2u);
  }
  EXPECT_EQ(std::count(entries[1].value.begin() + 16, entries[1].value.end(), 0), 16);
  EXPECT_NE(entries[0].salt, entries[1].salt);

  Result<std::vector<ListInfo>> l = store->Lists();
  STORE_ASSERT_OK(l);
  ASSERT_EQ(l->size(), 2u);
  EXPECT_EQ((*l)[0].name, "hotline-a");
  EXPECT_TRUE((*l)[0].enabled);
  EXPECT_EQ((*l)[0].description, "");
  EXPECT_EQ((*l)[0].active, 2u);
  EXPECT_EQ((*l)[0].disabled, 0u);
  EXPECT_EQ((*l)[1].name, "ngo-b");
  EXPECT_EQ((*l)[1].active, 1u);

  // A second add continues the ids, reuses the list and bumps the version
  // by one; its audit record links to the first.
  v = store->AddEntries({Entry("ngo-b", SignalType::kPdq, pdq_[1], "C", "case-9"),
                         Entry("ngo-b", SignalType::kPdq, pdq_[2], "C", "case-10")},
                        Ctx("bob", "feed.csv"), "import");
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 3u);
  const std::vector<StoredEntry> after = AllEntries(*store);
  ASSERT_EQ(after.size(), 5u);
  EXPECT_EQ(after[3].id, 4u);
  EXPECT_EQ(after[4].id, 5u);
  EXPECT_EQ(after[4].added_version, 3u);
  EXPECT_EQ(after[4].added_by, "bob");
  EXPECT_EQ(after[4].source, "feed.csv");
  EXPECT_EQ(store->Lists()->size(), 2u);
  store_testing::ExpectSameEntries(std::vector<StoredEntry>(after.begin(), after.begin() + 3),
                                   entries);

  Result<std::vector<AuditRecord>> audit = store->Audit(0, 100);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 3u);
  const AuditRecord& add = (*audit)[1];
  EXPECT_EQ(add.seq, 2u);
  EXPECT_EQ(add.action, "add");
  EXPECT_EQ(add.actor, "alice");
  EXPECT_EQ(add.list, "");  // two lists
  EXPECT_EQ(add.count, 3u);
  EXPECT_EQ(add.entries_digest, LeavesDigest(entries));
  EXPECT_EQ(add.prev_digest, (*audit)[0].digest);
  EXPECT_EQ(add.digest, AuditRecordDigest(add));
  const AuditRecord& import = (*audit)[2];
  EXPECT_EQ(import.action, "import");
  EXPECT_EQ(import.actor, "bob");
  EXPECT_EQ(import.list, "ngo-b");
  EXPECT_EQ(import.count, 2u);
  EXPECT_EQ(import.entries_digest,
            LeavesDigest(std::vector<StoredEntry>(after.begin() + 3, after.end())));
  EXPECT_EQ(import.prev_digest, add.digest);
}

TEST_P(StoreTest, AnInvalidEntryWritesNothing) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  const NewEntry good = Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "case-1");
  std::vector<std::vector<NewEntry>> bad_batches = {
      {good, Entry("", SignalType::kPdq, pdq_[1])},
      {good, Entry("hotline\n", SignalType::kPdq, pdq_[1])},
      {good, Entry("hotline-a", SignalType::kPdq, pdq_[1], "A\t1")},
      {good, Entry("hotline-a", SignalType::kPdq, pdq_[1], "A1", "case\x7f")},
      {good, Entry("hotline-a", SignalType::kPdq, pdq_[1], "A1", std::string(257, 'r'))},
      {good, Entry("hotline-a", SignalType::kPdq, pdq_[1], std::string(257, 'c'))},
      {good, Entry(std::string(257, 'l'), SignalType::kPdq, pdq_[1])},
      {},
  };
  for (size_t i = 0; i < bad_batches.size(); ++i) {
    SCOPED_TRACE(i);
    STORE_EXPECT_CODE(store->AddEntries(bad_batches[i], Ctx()), ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(VersionOf(*store), 1u);
  EXPECT_TRUE(AllEntries(*store).empty());
  EXPECT_TRUE(store->Lists()->empty());
  EXPECT_EQ(store->Audit(0, 100)->size(), 1u);

  // 256 bytes is the limit, not over it; failed attempts used no ids.
  Result<uint64_t> v = store->AddEntries(
      {Entry(std::string(256, 'l'), SignalType::kPdq, pdq_[1], std::string(256, 'c'),
             std::string(256, 'r'))},
      Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 2u);
  const std::vector<StoredEntry> entries = AllEntries(*store);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].id, 1u);
  EXPECT_EQ(entries[0].reference, std::string(256, 'r'));
}

TEST_P(StoreTest, AChangeThatFailsInTheDatabaseLeavesNoTrace) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  Populate(*store);
  const std::vector<StoredEntry> before = AllEntries(*store);
  // The last write of every change (its signed version) fails.
  std::unique_ptr<db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  STORE_ASSERT_OK(raw->ExecScript(
      sqlite() ? "CREATE TRIGGER fail_versions BEFORE INSERT ON versions "
                 "BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
               : "CREATE FUNCTION fail_insert() RETURNS trigger LANGUAGE plpgsql AS "
                 "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; "
                 "CREATE TRIGGER fail_versions BEFORE INSERT ON versions "
                 "FOR EACH ROW EXECUTE FUNCTION fail_insert();"));
  STORE_EXPECT_CODE(store->AddEntries({Entry("new-list", SignalType::kPdq, pdq_[5]),
                                       Entry("hotline-a", SignalType::kMd5, Md5Value("m"))},
                                      Ctx()),
                    ErrorCode::kInternal);
  STORE_EXPECT_CODE(store->RemoveEntries({1, 4}, Ctx()), ErrorCode::kInternal);
  STORE_EXPECT_CODE(store->SetEntriesStatus({2}, EntryStatus::kDisabled, Ctx()),
                    ErrorCode::kInternal);
  STORE_EXPECT_CODE(store->SetListEnabled("ngo-b", false, Ctx()), ErrorCode::kInternal);
  STORE_EXPECT_CODE(store->Rekey(Ctx()), ErrorCode::kInternal);

  EXPECT_EQ(VersionOf(*store), 3u);
  store_testing::ExpectSameEntries(AllEntries(*store), before);
  Result<std::vector<ListInfo>> lists = store->Lists();
  STORE_ASSERT_OK(lists);
  ASSERT_EQ(lists->size(), 2u);
  EXPECT_TRUE((*lists)[1].enabled);
  EXPECT_EQ(store->Audit(0, 100)->size(), 3u);
  Result<ChangeSet> changes = store->ChangesSince(3);
  STORE_ASSERT_OK(changes);
  EXPECT_TRUE(changes->upserts.empty());
  EXPECT_TRUE(changes->removed.empty());

  // The same Store object goes on working, and no id was used up.
  STORE_ASSERT_OK(raw->ExecScript("DROP TRIGGER fail_versions" +
                                  std::string(sqlite() ? "" : " ON versions")));
  Result<uint64_t> v = store->AddEntries({Entry("new-list", SignalType::kPdq, pdq_[5])}, Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 4u);
  const std::vector<StoredEntry> after = AllEntries(*store);
  ASSERT_EQ(after.size(), 6u);
  EXPECT_EQ(after.back().id, 6u);
  Result<VerifyReport> report = store->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << Problems(*report);
}

TEST_P(StoreTest, AWriterKilledMidChangeLeavesAWholeVersion) {
  ASSERT_NE(Init(), nullptr);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Adds one entry per version until it is killed.
    Result<std::unique_ptr<Store>> store = Store::Open(url_, Keys());
    if (!store.ok()) _exit(1);
    for (;;) {
      std::array<uint8_t, 32> value{};
      RandomBytes(value);
      if (!(*store)->AddEntries({Entry("hotline-a", SignalType::kPdq, value)}, Ctx()).ok()) {
        _exit(2);
      }
    }
  }
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  // Waits (up to a minute) for some versions, then kills the writer
  // wherever it is.
  for (int i = 0; i < 6000 && VersionOf(*store) < 8; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer exited with " << WEXITSTATUS(status);

  store = Open();
  ASSERT_NE(store, nullptr);
  const uint64_t version = VersionOf(*store);
  EXPECT_GE(version, 8u);
  EXPECT_EQ(AllEntries(*store).size(), version - 1);
  EXPECT_EQ(store->Audit(0, 100000)->size(), version);
  Result<VerifyReport> report = store->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << Problems(*report);
  // And the next writer carries on from there.
  Result<uint64_t> v = store->AddEntries({Entry("hotline-a", SignalType::kPdq, pdq_[0])}, Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, version + 1);
}

// --- Removing, disabling -----------------------------------------------------------

TEST_P(StoreTest, RemoveEntries) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  Populate(*store);
  const std::vector<StoredEntry> before = AllEntries(*store);

  STORE_EXPECT_CODE(store->RemoveEntries({2, 99}, Ctx()), ErrorCode::kNotFound);
  STORE_EXPECT_CODE(store->RemoveEntries({}, Ctx()), ErrorCode::kInvalidArgument);
  EXPECT_EQ(VersionOf(*store), 3u);
  store_testing::ExpectSameEntries(AllEntries(*store), before);

  Result<uint64_t> v = store->RemoveEntries({2, 4, 2}, Ctx("carol"));
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 4u);
  std::vector<StoredEntry> after = AllEntries(*store);
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[0].id, 1u);
  EXPECT_EQ(after[1].id, 3u);
  EXPECT_EQ(after[2].id, 5u);
  Result<std::vector<AuditRecord>> audit = store->Audit(3, 10);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].action, "remove");
  EXPECT_EQ((*audit)[0].actor, "carol");
  EXPECT_EQ((*audit)[0].list, "");
  EXPECT_EQ((*audit)[0].count, 2u);
  EXPECT_EQ((*audit)[0].entries_digest, LeavesDigest({before[1], before[3]}));

  STORE_EXPECT_CODE(store->RemoveEntries({2}, Ctx()), ErrorCode::kNotFound);
  EXPECT_EQ(VersionOf(*store), 4u);

  // Removing the highest id does not free it: the next id follows the
  // highest ever assigned.
  STORE_ASSERT_OK(store->RemoveEntries({5}, Ctx()));
  v = store->AddEntries({Entry("ngo-b", SignalType::kPdq, pdq_[6])}, Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 6u);
  after = AllEntries(*store);
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after.back().id, 6u);
  EXPECT_EQ(after.back().value, pdq_[6]);
  // Also across a reopen, with every entry removed.
  STORE_ASSERT_OK(store->RemoveEntries({1, 3, 6}, Ctx()));
  store = Open();
  ASSERT_NE(store, nullptr);
  STORE_ASSERT_OK(store->AddEntries({Entry("ngo-b", SignalType::kPdq, pdq_[7])}, Ctx()));
  after = AllEntries(*store);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].id, 7u);
}

// Importing a list again adds only what is new: an entry whose list holds
// one of the same type and value (any status), or that repeats an earlier
// one of the same call, is left out and answered with that entry's id.
TEST_P(StoreTest, AddNewEntriesLeavesOutWhatTheListsHoldAlready) {
  std::unique_ptr<Store> store = PopulatedStore();  // ids 1-5, 2 disabled, version 4
  ASSERT_NE(store, nullptr);
  const std::vector<StoredEntry> before = AllEntries(*store);
  std::array<uint8_t, 32> md5_with_junk = Md5Value("three");
  std::fill(md5_with_junk.begin() + 16, md5_with_junk.end(), 0xab);  // not compared
  const std::vector<NewEntry> again = {
      Entry("hotline-a", SignalType::kPdq, pdq_[0], "Z9", "other reference"),  // held: 1
      Entry("hotline-a", SignalType::kPdq, pdq_[1], "B2", "case-2"),           // disabled: 2
      Entry("hotline-a", SignalType::kPdq, pdq_[2], "A1", "new-6"),  // only ngo-b holds it
      Entry("hotline-a", SignalType::kMd5, md5_with_junk, "A1", "case-3"),     // held: 3
      Entry("hotline-a", SignalType::kSha256, pdq_[0], "A1", "new-7"),  // same bytes, other type
      Entry("hotline-a", SignalType::kPdq, pdq_[2], "A1", "repeat"),    // repeats the third
      Entry("new-list", SignalType::kPdq, pdq_[0], "A1", "new-8"),      // a list of its own
      Entry("ngo-b", SignalType::kSha256, Sha256Value("four"), "B1", "case-4"),  // held: 4
  };
  Result<Store::AddResult> r = store->AddNewEntries(again, Ctx("dave", "again.txt"));
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 5u);
  EXPECT_EQ(r->added, 3u);
  const std::vector<std::pair<size_t, uint64_t>> present = {
      {0, 1}, {1, 2}, {3, 3}, {5, 6}, {7, 4}};
  EXPECT_EQ(r->present, present);

  std::vector<StoredEntry> after = AllEntries(*store);
  ASSERT_EQ(after.size(), 8u);
  store_testing::ExpectSameEntries(std::vector<StoredEntry>(after.begin(), after.begin() + 5),
                                   before);
  const std::array<std::string, 3> lists = {"hotline-a", "hotline-a", "new-list"};
  const std::array<SignalType, 3> types = {SignalType::kPdq, SignalType::kSha256,
                                           SignalType::kPdq};
  const std::array<std::array<uint8_t, 32>, 3> values = {pdq_[2], pdq_[0], pdq_[0]};
  const std::array<std::string, 3> references = {"new-6", "new-7", "new-8"};
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    const StoredEntry& e = after[5 + i];
    EXPECT_EQ(e.id, 6 + i);
    EXPECT_EQ(e.list, lists[i]);
    EXPECT_EQ(e.type, types[i]);
    EXPECT_EQ(e.value, values[i]);
    EXPECT_EQ(e.reference, references[i]);
    EXPECT_EQ(e.added_version, 5u);
    EXPECT_EQ(e.added_by, "dave");
  }
  Result<std::vector<AuditRecord>> audit = store->Audit(4, 10);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].action, "import");
  EXPECT_EQ((*audit)[0].list, "");  // hotline-a and new-list
  EXPECT_EQ((*audit)[0].count, 3u);
  EXPECT_EQ((*audit)[0].entries_digest,
            LeavesDigest(std::vector<StoredEntry>(after.begin() + 5, after.end())));
  ExpectRootMatchesEntries(*store);

  // The same again: nothing is new, nothing is written (no version), and
  // the state this Store keeps serves the next change (no full check).
  const Store::ChangeStarts starts = store->change_starts();
  r = store->AddNewEntries(again, Ctx("dave", "again.txt"));
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 5u);
  EXPECT_EQ(r->added, 0u);
  const std::vector<std::pair<size_t, uint64_t>> all_present = {
      {0, 1}, {1, 2}, {2, 6}, {3, 3}, {4, 7}, {5, 6}, {6, 8}, {7, 4}};
  EXPECT_EQ(r->present, all_present);
  EXPECT_EQ(VersionOf(*store), 5u);
  EXPECT_EQ(store->Audit(0, 100)->size(), 5u);
  store_testing::ExpectSameEntries(AllEntries(*store), after);

  // The next change goes on from there; one by another connection is seen.
  r = store->AddNewEntries({Entry("hotline-a", SignalType::kPdq, pdq_[4], "A1", "new-9")},
                           Ctx());
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 6u);
  EXPECT_EQ(r->added, 1u);
  EXPECT_TRUE(r->present.empty());
  EXPECT_EQ(store->change_starts().checked, starts.checked);
  EXPECT_EQ(store->change_starts().kept, starts.kept + 2);
  std::unique_ptr<Store> other = Open();
  ASSERT_NE(other, nullptr);
  r = other->AddNewEntries({Entry("hotline-a", SignalType::kPdq, pdq_[5], "A1", "new-10"),
                            Entry("hotline-a", SignalType::kPdq, pdq_[4], "A1", "new-9")},
                           Ctx());
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 7u);
  EXPECT_EQ(r->added, 1u);
  EXPECT_EQ(r->present, (std::vector<std::pair<size_t, uint64_t>>{{1, 9}}));
  r = store->AddNewEntries({Entry("hotline-a", SignalType::kPdq, pdq_[5], "A1", "new-10")},
                           Ctx());
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 7u);
  EXPECT_EQ(r->present, (std::vector<std::pair<size_t, uint64_t>>{{0, 10}}));
  // A removed entry is no longer held: its value is added anew.
  STORE_ASSERT_OK(store->RemoveEntries({10}, Ctx()));
  r = store->AddNewEntries({Entry("hotline-a", SignalType::kPdq, pdq_[5], "A1", "new-11")},
                           Ctx());
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 9u);
  EXPECT_EQ(r->added, 1u);
  EXPECT_EQ(AllEntries(*store).back().id, 11u);
  // Invalid entries are refused as by AddEntries.
  STORE_EXPECT_CODE(store->AddNewEntries({}, Ctx()), ErrorCode::kInvalidArgument);
  STORE_EXPECT_CODE(store->AddNewEntries({Entry("", SignalType::kPdq, pdq_[6])}, Ctx()),
                    ErrorCode::kInvalidArgument);
  ExpectRootMatchesEntries(*store);
  Result<VerifyReport> report = Open()->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << Problems(*report);
}

// With what an index loaded from the store held at a version, AddNewEntries
// reads the rows it names (passing over those that are not what it says)
// and the rows changed since: the same answers as reading the lists.
TEST_P(StoreTest, AddNewEntriesWithWhatAnIndexHeldReadsWhatItNamesAndWhatChanged) {
  std::unique_ptr<Store> store = PopulatedStore();  // ids 1-5, 2 disabled, version 4
  ASSERT_NE(store, nullptr);
  HashIndex index;
  Result<uint64_t> loaded = LoadIndexFromStore(*store, &index);
  STORE_ASSERT_OK(loaded);
  ASSERT_EQ(*loaded, 4u);
  const std::shared_ptr<const IndexSnapshot> snapshot = index.Snapshot();
  ASSERT_EQ(snapshot->store_version(), 4u);
  int asked = 0;
  Store::HeldEntries held;
  held.version = 4;
  Result<VersionRecord> record = store->Root(4);
  STORE_ASSERT_OK(record);
  held.audit_digest = record->audit_digest;
  held.covers = [](std::string_view) { return true; };
  held.ids = [&](const NewEntry& e, std::vector<uint64_t>* ids) {
    ++asked;
    snapshot->HeldIds(e.list, e.type, e.value.data(), ids);
  };
  // Since the index's version: an entry added, one removed (by another
  // connection).
  std::unique_ptr<Store> other = Open();
  ASSERT_NE(other, nullptr);
  ASSERT_EQ(*other->AddEntries({Entry("hotline-a", SignalType::kPdq, pdq_[3], "A1", "after")},
                               Ctx()),
            5u);
  ASSERT_EQ(*other->RemoveEntries({1}, Ctx()), 6u);
  std::array<uint8_t, 32> md5_with_junk = Md5Value("three");
  std::fill(md5_with_junk.begin() + 16, md5_with_junk.end(), 0xab);
  const std::vector<NewEntry> given = {
      Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "r"),  // removed since: new (7)
      Entry("hotline-a", SignalType::kPdq, pdq_[1], "A1", "r"),  // disabled: 2
      Entry("hotline-a", SignalType::kPdq, pdq_[3], "A1", "r"),  // added since: 6
      Entry("hotline-a", SignalType::kMd5, md5_with_junk, "A1", "r"),  // 3
      Entry("ngo-b", SignalType::kPdq, pdq_[2], "A1", "r"),      // 5
      Entry("ngo-b", SignalType::kPdq, pdq_[0], "A1", "r"),      // new (8)
      Entry("ngo-b", SignalType::kPdq, pdq_[0], "A1", "r"),      // repeats it: 8
  };
  Result<Store::AddResult> r = store->AddNewEntries(given, Ctx(), "import", &held);
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 7u);
  EXPECT_EQ(r->added, 2u);
  EXPECT_EQ(r->present,
            (std::vector<std::pair<size_t, uint64_t>>{{1, 2}, {2, 6}, {3, 3}, {4, 5}, {6, 8}}));
  EXPECT_EQ(asked, 6);  // once a distinct entry
  std::vector<StoredEntry> after = AllEntries(*store);
  ASSERT_EQ(after.size(), 7u);
  EXPECT_EQ(after[5].id, 7u);
  EXPECT_EQ(after[5].value, pdq_[0]);
  EXPECT_EQ(after[5].list, "hotline-a");
  EXPECT_EQ(after[6].id, 8u);
  EXPECT_EQ(after[6].list, "ngo-b");

  // Ids that are not what they are said to be are passed over: one removed,
  // one of another list, one of another value, one that never was; then
  // the right one.
  held.ids = [](const NewEntry&, std::vector<uint64_t>* ids) { *ids = {1, 4, 5, 999, 2}; };
  r = store->AddNewEntries({Entry("hotline-a", SignalType::kPdq, pdq_[1], "A1", "r")}, Ctx(),
                           "import", &held);
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 7u);
  EXPECT_EQ(r->present, (std::vector<std::pair<size_t, uint64_t>>{{0, 2}}));
  // What it does not name is taken as absent (the lists are not read: entry
  // 2's value is added again, as 10), but for a list it does not cover (read
  // whole) and what changed since its version (ngo-b's entry 8).
  held.ids = [](const NewEntry&, std::vector<uint64_t>* ids) { ids->clear(); };
  held.covers = [](std::string_view list) { return list != "other"; };
  ASSERT_EQ(*store->AddEntries({Entry("other", SignalType::kPdq, pdq_[4], "A1", "r")}, Ctx()),
            8u);
  r = store->AddNewEntries({Entry("hotline-a", SignalType::kPdq, pdq_[1], "A1", "r"),
                            Entry("ngo-b", SignalType::kPdq, pdq_[0], "A1", "r"),
                            Entry("other", SignalType::kPdq, pdq_[4], "A1", "r")},
                           Ctx(), "import", &held);
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 9u);
  EXPECT_EQ(r->added, 1u);
  EXPECT_EQ(r->present, (std::vector<std::pair<size_t, uint64_t>>{{1, 8}, {2, 9}}));
  EXPECT_EQ(AllEntries(*store).back().id, 10u);
  // A version the store has not reached, or one of another history (its
  // record is not the store's), is not used: the lists are read.
  held.version = 10;
  r = store->AddNewEntries({Entry("ngo-b", SignalType::kPdq, pdq_[2], "A1", "r")}, Ctx(),
                           "import", &held);
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->present, (std::vector<std::pair<size_t, uint64_t>>{{0, 5}}));
  held.version = 4;
  held.audit_digest[0] ^= 1;
  r = store->AddNewEntries({Entry("ngo-b", SignalType::kPdq, pdq_[2], "A1", "r")}, Ctx(),
                           "import", &held);
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->present, (std::vector<std::pair<size_t, uint64_t>>{{0, 5}}));
  held.audit_digest[0] ^= 1;  // the store's own again: what it does not name is new
  r = store->AddNewEntries({Entry("ngo-b", SignalType::kPdq, pdq_[2], "A1", "r")}, Ctx(),
                           "import", &held);
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 10u);
  EXPECT_TRUE(r->present.empty());
  // A callback's exception is the caller's: passed on, the change rolled back.
  held.ids = [](const NewEntry&, std::vector<uint64_t>*) { throw std::runtime_error("oracle"); };
  EXPECT_THROW(
      (void)store->AddNewEntries({Entry("ngo-b", SignalType::kPdq, pdq_[6], "A1", "r")}, Ctx(),
                                 "import", &held),
      std::runtime_error);
  EXPECT_EQ(VersionOf(*store), 10u);
  ExpectRootMatchesEntries(*store);
}

// The rows an index names are read 64 ids a statement: 300 ids (the last
// batch short, filled with its last id), the one that holds the value last.
TEST_P(StoreTest, AddNewEntriesReadsTheRowsAnIndexNamesInBatches) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  std::vector<NewEntry> many;
  for (int i = 0; i < 300; ++i) {
    std::array<uint8_t, 32> value = pdq_[0];
    value[31] = static_cast<uint8_t>(i);
    value[30] = static_cast<uint8_t>(i >> 8);
    many.push_back(Entry("big", SignalType::kPdq, value, "A1", std::to_string(i)));
  }
  ASSERT_EQ(*store->AddEntries(many, Ctx()), 2u);
  Store::HeldEntries held;
  held.version = 2;
  held.audit_digest = store->Root(2)->audit_digest;
  held.covers = [](std::string_view) { return true; };
  std::vector<uint64_t> all(300);
  std::iota(all.begin(), all.end(), uint64_t{1});
  held.ids = [&](const NewEntry&, std::vector<uint64_t>* ids) { *ids = all; };
  for (const size_t last : {size_t{299}, size_t{255}, size_t{256}, size_t{0}}) {
    SCOPED_TRACE(last);
    Result<Store::AddResult> r =
        store->AddNewEntries({Entry("big", SignalType::kPdq, many[last].value, "A1", "again")},
                             Ctx(), "import", &held);
    STORE_ASSERT_OK(r);
    EXPECT_EQ(r->version, 2u);
    EXPECT_EQ(r->present, (std::vector<std::pair<size_t, uint64_t>>{{0, last + 1}}));
  }
}

// Entries with values of their own: pdq_[0] with its last two bytes i.
std::vector<NewEntry> Numbered(const std::array<uint8_t, 32>& base, const std::string& list,
                               int from, int to) {
  std::vector<NewEntry> out;
  for (int i = from; i < to; ++i) {
    std::array<uint8_t, 32> value = base;
    value[31] = static_cast<uint8_t>(i);
    value[30] = static_cast<uint8_t>(i >> 8);
    out.push_back(Entry(list, SignalType::kPdq, value, "A1", std::to_string(i)));
  }
  return out;
}

// A list more than half of whose rows an index's entries name (by more than
// 4,096 ids) is read whole: reading it by id would cost more. Seen here
// through an entry the index leaves out, which a read of the list finds and
// a read by id cannot.
TEST_P(StoreTest, AddNewEntriesReadsTheListsWholeWhenAnIndexNamesMostOfTheirRows) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  const std::vector<NewEntry> big = Numbered(pdq_[0], "big", 0, 5000);      // ids 1-5000
  const std::vector<NewEntry> bigger = Numbered(pdq_[1], "bigger", 0, 10000);  // 5001-15000
  ASSERT_EQ(*store->AddEntries(big, Ctx()), 2u);
  ASSERT_EQ(*store->AddEntries(bigger, Ctx()), 3u);
  Store::HeldEntries held;
  held.version = 3;
  held.audit_digest = store->Root(3)->audit_digest;
  held.covers = [](std::string_view) { return true; };
  // Each value's id, but for the first entry of each list.
  held.ids = [&](const NewEntry& e, std::vector<uint64_t>* ids) {
    ids->clear();
    const uint64_t i = static_cast<uint64_t>(e.value[30]) << 8 | e.value[31];
    if (i != 0) ids->push_back((e.list == "big" ? 1 : 5001) + i);
  };
  // 4,999 named of 5,000 rows: read whole, the first found.
  Result<Store::AddResult> r = store->AddNewEntries(big, Ctx(), "import", &held);
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 3u);
  EXPECT_EQ(r->added, 0u);
  ASSERT_EQ(r->present.size(), 5000u);
  EXPECT_EQ(r->present[0], (std::pair<size_t, uint64_t>{0, 1}));
  EXPECT_EQ(r->present[4999], (std::pair<size_t, uint64_t>{4999, 5000}));
  // With 4,499 named of 10,000 rows of another list, in the same call: that
  // list read by id, its first taken as absent; the first list still whole.
  std::vector<NewEntry> both = big;
  both.insert(both.end(), bigger.begin(), bigger.begin() + 4500);
  r = store->AddNewEntries(both, Ctx(), "import", &held);
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 4u);
  EXPECT_EQ(r->added, 1u);
  ASSERT_EQ(r->present.size(), 9499u);
  EXPECT_EQ(r->present[0], (std::pair<size_t, uint64_t>{0, 1}));
  EXPECT_EQ(r->present[5000], (std::pair<size_t, uint64_t>{5001, 5002}));
  const std::vector<StoredEntry> after = AllEntries(*store);
  EXPECT_EQ(after.back().id, 15001u);
  EXPECT_EQ(after.back().list, "bigger");
  EXPECT_EQ(after.back().value, bigger[0].value);
}

// Removals and status changes of many entries read their rows 64 ids a
// statement: the batches' edges, and a missing id in a later batch.
TEST_P(StoreTest, RemovingAndDisablingManyEntriesReadsThemInBatches) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  ASSERT_EQ(*store->AddEntries(Numbered(pdq_[0], "big", 0, 150), Ctx()), 2u);  // ids 1-150
  const std::vector<StoredEntry> before = AllEntries(*store);
  std::vector<uint64_t> ids(130);
  std::iota(ids.begin(), ids.end(), uint64_t{1});  // 1-130: batches of 64, 64, 2
  ids.push_back(151);
  STORE_EXPECT_CODE(store->SetEntriesStatus(ids, EntryStatus::kDisabled, Ctx()),
                    ErrorCode::kNotFound);
  Result<uint64_t> v = store->RemoveEntries(ids, Ctx());
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(v.error().message(), "no entry with id 151");
  EXPECT_EQ(VersionOf(*store), 2u);
  ids.pop_back();
  std::reverse(ids.begin(), ids.end());
  v = store->SetEntriesStatus(ids, EntryStatus::kDisabled, Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 3u);
  Result<std::vector<AuditRecord>> audit = store->Audit(2, 10);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].count, 130u);
  EXPECT_EQ((*audit)[0].entries_digest,
            LeavesDigest(std::vector<StoredEntry>(before.begin(), before.begin() + 130)));
  std::vector<StoredEntry> after = AllEntries(*store);
  ASSERT_EQ(after.size(), 150u);
  EXPECT_EQ(after[129].status, EntryStatus::kDisabled);
  EXPECT_EQ(after[130].status, EntryStatus::kActive);
  // Disabled and active ones together: only the active ones change.
  std::vector<uint64_t> mixed = {64, 65, 128, 129, 130, 131, 150};
  v = store->SetEntriesStatus(mixed, EntryStatus::kDisabled, Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(store->Audit(3, 10)->at(0).count, 2u);
  v = store->RemoveEntries({150, 1, 64, 65, 66, 128, 129}, Ctx());
  STORE_ASSERT_OK(v);
  audit = store->Audit(4, 10);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].count, 7u);
  EXPECT_EQ((*audit)[0].entries_digest,
            LeavesDigest({before[0], before[63], before[64], before[65], before[127],
                          before[128], before[149]}));
  EXPECT_EQ(AllEntries(*store).size(), 143u);
  ExpectRootMatchesEntries(*store);
}

// A store that took the same export twice (before AddNewEntries) holds
// duplicates: RemoveDuplicates keeps the earliest entry of each kind
// (status, category, reference) of each group and removes the others in
// one audited version; a group that keeps more than one says why.
TEST_P(StoreTest, RemoveDuplicatesKeepsTheEarliestOfEachKind) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  std::array<uint8_t, 32> md5_with_junk = Md5Value("x");
  std::fill(md5_with_junk.begin() + 16, md5_with_junk.end(), 0xab);  // not stored
  Result<uint64_t> v = store->AddEntries(
      {
          Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "r1"),     // 1: kept
          Entry("hotline-a", SignalType::kPdq, pdq_[1], "A1", "r2"),     // 2
          Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "r1"),     // 3: removed
          Entry("hotline-a", SignalType::kSha256, pdq_[0], "A1", "r1"),  // 4: other type
          Entry("ngo-b", SignalType::kPdq, pdq_[0], "A1", "r1"),         // 5: other list
          Entry("hotline-a", SignalType::kMd5, Md5Value("x"), "A1", "r3"),   // 6: kept
          Entry("hotline-a", SignalType::kMd5, md5_with_junk, "A1", "r3"),   // 7: removed
          Entry("hotline-a", SignalType::kPdq, pdq_[2], "A1", "r4"),     // 8: kept
          Entry("hotline-a", SignalType::kPdq, pdq_[2], "B2", "r4"),     // 9: kept (category)
          Entry("hotline-a", SignalType::kPdq, pdq_[3], "A1", "r5"),     // 10: kept
          Entry("hotline-a", SignalType::kPdq, pdq_[3], "A1", "r5"),     // 11: kept (disabled)
          Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "r1"),     // 12: removed
          Entry("ngo-b", SignalType::kPdq, pdq_[4], "B1", "r6"),         // 13: kept
          Entry("ngo-b", SignalType::kPdq, pdq_[4], "B1", "r6"),         // 14: removed
          Entry("ngo-b", SignalType::kPdq, pdq_[5], "B1", "r7"),         // 15: kept
          Entry("ngo-b", SignalType::kPdq, pdq_[5], "B1", "r8"),         // 16: kept (reference)
          Entry("hotline-a", SignalType::kPdq, pdq_[2], "A1", "r4"),     // 17: removed (as 8)
          Entry("hotline-a", SignalType::kPdq, pdq_[3], "A1", "r5"),     // 18: removed (as 10)
          Entry("hotline-a", SignalType::kPdq, pdq_[3], "A1", "r5"),     // 19: removed (as 11)
          Entry("hotline-a", SignalType::kPdq, pdq_[3], "B9", "r5"),     // 20: kept (category)
      },
      Ctx());
  STORE_ASSERT_OK(v);
  ASSERT_EQ(*v, 2u);
  ASSERT_EQ(*store->SetEntriesStatus({11, 19}, EntryStatus::kDisabled, Ctx()), 3u);
  STORE_ASSERT_OK(store->DescribeList("empty", "no entries", Ctx()));  // version 4
  const std::vector<StoredEntry> before = AllEntries(*store);
  ASSERT_EQ(before.size(), 20u);
  // (list, type, kept, removed, why, the kept entries "id status category reference")
  using Group = std::tuple<std::string, SignalType, std::vector<uint64_t>, std::vector<uint64_t>,
                           std::string, std::vector<std::string>>;
  auto groups_of = [](const Store::DedupeResult& r) {
    std::vector<Group> out;
    for (const Store::DuplicateGroup& g : r.groups) {
      std::vector<std::string> kept;
      for (size_t i = 0; i < g.kept_entries.size(); ++i) {
        const Store::DuplicateGroup::Kept& k = g.kept_entries[i];
        kept.push_back(std::to_string(g.kept[i]) + " " + std::string(EntryStatusName(k.status)) +
                       " " + k.category + " " + k.reference);
      }
      out.emplace_back(g.list, g.type, g.kept, g.removed, g.left_because, kept);
    }
    return out;
  };
  const std::string kMeta = "its entries differ in category or reference";
  const Group g1 = {"hotline-a", SignalType::kPdq, {1}, {3, 12}, "", {}};
  const Group g6 = {"hotline-a", SignalType::kMd5, {6}, {7}, "", {}};
  const Group g8 = {"hotline-a", SignalType::kPdq, {8, 9}, {17}, kMeta,
                    {"8 active A1 r4", "9 active B2 r4"}};
  const std::string kStatus =
      "entry 11 is disabled, but entry 10 with the same value is active; " + kMeta;
  const Group g10 = {"hotline-a", SignalType::kPdq, {10, 11, 20}, {18, 19}, kStatus,
                     {"10 active A1 r5", "11 disabled A1 r5", "20 active B9 r5"}};
  const Group g13 = {"ngo-b", SignalType::kPdq, {13}, {14}, "", {}};
  const Group g15 = {"ngo-b", SignalType::kPdq, {15, 16}, {}, kMeta,
                     {"15 active B1 r7", "16 active B1 r8"}};

  // A dry run reports and writes nothing, also without the signing key.
  StoreKeys read_only;
  read_only.data_keys = {key_};
  std::unique_ptr<Store> reader = Open(std::move(read_only));
  ASSERT_NE(reader, nullptr);
  Result<Store::DedupeResult> r = reader->RemoveDuplicates({}, true, Ctx());
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 4u);
  EXPECT_EQ(r->removed, 7u);
  EXPECT_EQ(groups_of(*r), (std::vector<Group>{g1, g6, g8, g10, g13, g15}));
  STORE_EXPECT_CODE(reader->RemoveDuplicates({}, false, Ctx()), ErrorCode::kPermissionDenied);
  EXPECT_EQ(VersionOf(*store), 4u);
  store_testing::ExpectSameEntries(AllEntries(*store), before);
  STORE_EXPECT_CODE(store->RemoveDuplicates({"hotline-a", "nowhere"}, true, Ctx()),
                    ErrorCode::kNotFound);
  STORE_EXPECT_CODE(store->RemoveDuplicates({"nowhere"}, false, Ctx()), ErrorCode::kNotFound);
  r = store->RemoveDuplicates({"empty"}, true, Ctx());
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->removed, 0u);
  EXPECT_TRUE(r->groups.empty());
  // Only at the version the dry run saw, when one is given.
  for (const bool dry_run : {true, false}) {
    r = store->RemoveDuplicates({}, dry_run, Ctx(), 3);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.error().message(),
              "the store is at version 4, not 3: it changed since; look again");
  }
  EXPECT_EQ(VersionOf(*store), 4u);

  // One list (named twice).
  r = store->RemoveDuplicates({"ngo-b", "ngo-b"}, false, Ctx("dave"), 4);
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 5u);
  EXPECT_EQ(r->removed, 1u);
  EXPECT_EQ(groups_of(*r), (std::vector<Group>{g13, g15}));
  Result<std::vector<AuditRecord>> audit = store->Audit(4, 10);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].action, "dedupe");
  EXPECT_EQ((*audit)[0].actor, "dave");
  EXPECT_EQ((*audit)[0].list, "ngo-b");
  EXPECT_EQ((*audit)[0].count, 1u);
  EXPECT_EQ((*audit)[0].entries_digest, LeavesDigest({before[13]}));

  // Every list.
  r = store->RemoveDuplicates({}, false, Ctx("dave"));
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 6u);
  EXPECT_EQ(r->removed, 6u);
  EXPECT_EQ(groups_of(*r), (std::vector<Group>{g1, g6, g8, g10, g15}));
  audit = store->Audit(5, 10);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].action, "dedupe");
  EXPECT_EQ((*audit)[0].list, "hotline-a");
  EXPECT_EQ((*audit)[0].count, 6u);
  EXPECT_EQ((*audit)[0].entries_digest,
            LeavesDigest({before[2], before[6], before[11], before[16], before[17], before[18]}));
  std::vector<StoredEntry> expected;
  const std::set<uint64_t> gone = {3, 7, 12, 14, 17, 18, 19};
  for (const StoredEntry& e : before) {
    if (!gone.count(e.id)) expected.push_back(e);
  }
  store_testing::ExpectSameEntries(AllEntries(*store), expected);
  Result<ChangeSet> changes = store->ChangesSince(4);
  STORE_ASSERT_OK(changes);
  EXPECT_EQ(changes->removed, std::vector<uint64_t>(gone.begin(), gone.end()));
  EXPECT_TRUE(changes->upserts.empty());

  // Again: only the groups that keep more than one, nothing written, and
  // the state this Store keeps serves the next change.
  const Store::ChangeStarts starts = store->change_starts();
  r = store->RemoveDuplicates({}, false, Ctx());
  STORE_ASSERT_OK(r);
  EXPECT_EQ(r->version, 6u);
  EXPECT_EQ(r->removed, 0u);
  const Group g8_now = {"hotline-a", SignalType::kPdq, {8, 9}, {}, kMeta,
                        {"8 active A1 r4", "9 active B2 r4"}};
  const Group g10_now = {"hotline-a", SignalType::kPdq, {10, 11, 20}, {}, kStatus,
                         {"10 active A1 r5", "11 disabled A1 r5", "20 active B9 r5"}};
  EXPECT_EQ(groups_of(*r), (std::vector<Group>{g8_now, g10_now, g15}));
  EXPECT_EQ(VersionOf(*store), 6u);
  EXPECT_EQ(store->Audit(0, 100)->size(), 6u);
  STORE_ASSERT_OK(store->AddEntries({Entry("ngo-b", SignalType::kPdq, pdq_[6])}, Ctx()));
  EXPECT_EQ(store->change_starts().checked, starts.checked);
  EXPECT_EQ(store->change_starts().kept, starts.kept + 2);
  ExpectRootMatchesEntries(*store);
  Result<VerifyReport> report = Open()->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << Problems(*report);
}

// The scan runs without the write lock (another writer changes the store
// between it and the removal here); a store that moved on since is scanned
// again under the lock, so the removal is of what is there then.
TEST_P(StoreTest, RemoveDuplicatesScansAgainWhenTheStoreChangedAfterItsScan) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  std::unique_ptr<Store> other = Open();
  ASSERT_NE(other, nullptr);
  STORE_ASSERT_OK(store->AddEntries({Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "r1"),
                                     Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "r1"),
                                     Entry("hotline-a", SignalType::kPdq, pdq_[1], "A1", "r2"),
                                     Entry("hotline-a", SignalType::kPdq, pdq_[1], "A1", "r2")},
                                    Ctx()));  // ids 1..4, version 2
  struct Unhook {
    ~Unhook() { SetAfterDedupeScanHookForTesting({}); }
  } unhook;
  int scans = 0;
  std::vector<std::string> errors;
  SetAfterDedupeScanHookForTesting([&] {
    ++scans;
    if (scans > 1) return;
    // The scan saw 2 and 4 as copies. Now 2 goes and 5 comes (a copy of 3).
    Result<uint64_t> v = other->RemoveEntries({2}, Ctx("other"));
    if (!v.ok() || *v != 3) errors.push_back("remove: " + (v.ok() ? std::to_string(*v) : v.error().ToString()));
    v = other->AddEntries({Entry("hotline-a", SignalType::kPdq, pdq_[1], "A1", "r2")},
                          Ctx("other"));
    if (!v.ok() || *v != 4) errors.push_back("add: " + (v.ok() ? std::to_string(*v) : v.error().ToString()));
  });
  const uint64_t scans_before = DedupeScansForTesting();
  Result<Store::DedupeResult> r = store->RemoveDuplicates({}, false, Ctx("dave"));
  STORE_ASSERT_OK(r);
  EXPECT_EQ(scans, 1);
  EXPECT_EQ(DedupeScansForTesting(), scans_before + 2);  // once more, under the lock
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(r->version, 5u);
  EXPECT_EQ(r->removed, 2u);
  ASSERT_EQ(r->groups.size(), 1u);
  EXPECT_EQ(r->groups[0].kept, std::vector<uint64_t>{3});
  EXPECT_EQ(r->groups[0].removed, (std::vector<uint64_t>{4, 5}));
  auto ids = [&] {
    std::vector<uint64_t> out;
    for (const StoredEntry& e : AllEntries(*store)) out.push_back(e.id);
    return out;
  };
  EXPECT_EQ(ids(), (std::vector<uint64_t>{1, 3}));
  Result<ChangeSet> changes = store->ChangesSince(4);
  STORE_ASSERT_OK(changes);
  EXPECT_EQ(changes->removed, (std::vector<uint64_t>{4, 5}));

  // A store that did not move on: the scan's result is removed as it is.
  STORE_ASSERT_OK(store->AddEntries({Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "r1")},
                                    Ctx()));  // id 6, version 6
  r = store->RemoveDuplicates({"hotline-a"}, false, Ctx("dave"));
  STORE_ASSERT_OK(r);
  EXPECT_EQ(scans, 2);
  EXPECT_EQ(DedupeScansForTesting(), scans_before + 3);  // the first scan's result removed

  // A removal that cannot be made is refused before any scan.
  StoreKeys read_only;
  read_only.data_keys = {key_};
  std::unique_ptr<Store> reader = Open(std::move(read_only));
  ASSERT_NE(reader, nullptr);
  STORE_EXPECT_CODE(reader->RemoveDuplicates({}, false, Ctx()), ErrorCode::kPermissionDenied);
  STORE_EXPECT_CODE(store->RemoveDuplicates({}, false, Ctx("bad\nactor")),
                    ErrorCode::kInvalidArgument);
  EXPECT_EQ(DedupeScansForTesting(), scans_before + 3);
  EXPECT_EQ(scans, 2);
  EXPECT_EQ(r->version, 7u);
  ASSERT_EQ(r->groups.size(), 1u);
  EXPECT_EQ(r->groups[0].kept, std::vector<uint64_t>{1});
  EXPECT_EQ(r->groups[0].removed, std::vector<uint64_t>{6});
  EXPECT_EQ(ids(), (std::vector<uint64_t>{1, 3}));
  ExpectRootMatchesEntries(*store);
  Result<VerifyReport> report = Open()->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << Problems(*report);
}

TEST_P(StoreTest, SetEntriesStatus) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  Populate(*store);
  const std::vector<StoredEntry> before = AllEntries(*store);

  // A missing id: nothing changes, not even the existing ones.
  STORE_EXPECT_CODE(store->SetEntriesStatus({1, 42}, EntryStatus::kDisabled, Ctx()),
                    ErrorCode::kNotFound);
  EXPECT_EQ(VersionOf(*store), 3u);
  store_testing::ExpectSameEntries(AllEntries(*store), before);

  Result<uint64_t> v = store->SetEntriesStatus({1, 4}, EntryStatus::kDisabled, Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 4u);
  std::vector<StoredEntry> entries = AllEntries(*store);
  ASSERT_EQ(entries.size(), 5u);
  const std::array<EntryStatus, 5> expected = {EntryStatus::kDisabled, EntryStatus::kActive,
                                               EntryStatus::kActive, EntryStatus::kDisabled,
                                               EntryStatus::kActive};
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(entries[i].status, expected[i]) << i;
  Result<std::vector<ListInfo>> lists = store->Lists();
  STORE_ASSERT_OK(lists);
  EXPECT_EQ((*lists)[0].active, 2u);
  EXPECT_EQ((*lists)[0].disabled, 1u);
  EXPECT_EQ((*lists)[1].active, 1u);
  EXPECT_EQ((*lists)[1].disabled, 1u);
  Result<std::vector<AuditRecord>> audit = store->Audit(3, 10);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].action, "disable");
  EXPECT_EQ((*audit)[0].count, 2u);
  EXPECT_EQ((*audit)[0].list, "");
  EXPECT_EQ((*audit)[0].entries_digest, LeavesDigest({before[0], before[3]}));

  // No change, no version.
  v = store->SetEntriesStatus({1, 4}, EntryStatus::kDisabled, Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 4u);
  v = store->SetEntriesStatus({2}, EntryStatus::kActive, Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 4u);
  EXPECT_EQ(VersionOf(*store), 4u);
  EXPECT_EQ(store->Audit(0, 100)->size(), 4u);

  // Only the entries whose status changes count.
  v = store->SetEntriesStatus({1, 2, 3}, EntryStatus::kActive, Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 5u);
  audit = store->Audit(4, 10);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].action, "enable");
  EXPECT_EQ((*audit)[0].count, 1u);
  EXPECT_EQ((*audit)[0].list, "hotline-a");
  EXPECT_EQ((*audit)[0].entries_digest, LeavesDigest({before[0]}));
  entries = AllEntries(*store);
  EXPECT_EQ(entries[0].status, EntryStatus::kActive);
  EXPECT_EQ(entries[3].status, EntryStatus::kDisabled);
}

TEST_P(StoreTest, DescribeListCreatesOrUpdatesAList) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  Result<uint64_t> v = store->DescribeList("hotline-c", "Hotline C, daily", Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 2u);
  v = store->DescribeList("hotline-c", "Hotline C, weekly", Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 3u);
  STORE_EXPECT_CODE(store->DescribeList("hotline-c", "tab\there", Ctx()),
                    ErrorCode::kInvalidArgument);
  EXPECT_EQ(VersionOf(*store), 3u);
  Result<std::vector<ListInfo>> lists = store->Lists();
  STORE_ASSERT_OK(lists);
  ASSERT_EQ(lists->size(), 1u);
  EXPECT_EQ((*lists)[0].name, "hotline-c");
  EXPECT_EQ((*lists)[0].description, "Hotline C, weekly");
  EXPECT_TRUE((*lists)[0].enabled);
  Result<std::vector<AuditRecord>> audit = store->Audit(1, 10);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[1].action, "describe_list");
  EXPECT_EQ((*audit)[1].list, "hotline-c");
  Result<VerifyReport> report = store->Verify(std::nullopt);
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok());
}

TEST_P(StoreTest, SetListEnabled) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  Populate(*store);
  STORE_ASSERT_OK(store->SetEntriesStatus({2}, EntryStatus::kDisabled, Ctx()));
  const std::vector<StoredEntry> before = AllEntries(*store);

  STORE_EXPECT_CODE(store->SetListEnabled("no-such-list", false, Ctx()), ErrorCode::kNotFound);
  EXPECT_EQ(VersionOf(*store), 4u);

  Result<uint64_t> v = store->SetListEnabled("hotline-a", false, Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 5u);
  Result<std::vector<ListInfo>> lists = store->Lists();
  STORE_ASSERT_OK(lists);
  ASSERT_EQ(lists->size(), 2u);
  EXPECT_FALSE((*lists)[0].enabled);
  EXPECT_EQ((*lists)[0].active, 2u);  // entry statuses are kept
  EXPECT_EQ((*lists)[0].disabled, 1u);
  EXPECT_TRUE((*lists)[1].enabled);
  store_testing::ExpectSameEntries(AllEntries(*store), before);
  Result<std::vector<AuditRecord>> audit = store->Audit(4, 10);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].action, "disable_list");
  EXPECT_EQ((*audit)[0].list, "hotline-a");
  EXPECT_EQ((*audit)[0].count, 2u);
  EXPECT_EQ((*audit)[0].entries_digest, LeavesDigest({before[0], before[2]}));

  v = store->SetListEnabled("hotline-a", false, Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 5u);
  v = store->SetListEnabled("ngo-b", true, Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 5u);
  EXPECT_EQ(VersionOf(*store), 5u);

  v = store->SetListEnabled("hotline-a", true, Ctx());
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 6u);
  EXPECT_TRUE((*store->Lists())[0].enabled);
  EXPECT_EQ(store->Audit(5, 10)->at(0).action, "enable_list");
}

TEST_P(StoreTest, StatsCountByTypeStatusAndKey) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  Populate(*store);
  STORE_ASSERT_OK(store->SetEntriesStatus({2}, EntryStatus::kDisabled, Ctx()));
  Result<StoreStats> st = store->Stats();
  STORE_ASSERT_OK(st);
  EXPECT_EQ(st->version, 4u);
  EXPECT_EQ(st->store_id, store->store_id());
  EXPECT_EQ(st->lists, 2u);
  EXPECT_EQ(st->active_by_type, (std::array<uint64_t, 3>{2, 1, 1}));
  EXPECT_EQ(st->disabled, 1u);
  ASSERT_EQ(st->values_by_key.size(), 1u);
  EXPECT_EQ(st->values_by_key[0].first, key_.id);
  EXPECT_EQ(st->values_by_key[0].second, 5u);

  STORE_ASSERT_OK(store->SetListEnabled("ngo-b", false, Ctx()));
  st = store->Stats();
  STORE_ASSERT_OK(st);
  EXPECT_EQ(st->active_by_type, (std::array<uint64_t, 3>{1, 1, 0}));
  EXPECT_EQ(st->disabled, 3u);
}

TEST_P(StoreTest, EntriesByListAfterIdAndLimit) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  Populate(*store);
  auto ids = [](const Result<std::vector<StoredEntry>>& r) {
    std::vector<uint64_t> out;
    if (r.ok()) {
      for (const StoredEntry& e : *r) out.push_back(e.id);
    }
    return out;
  };
  EXPECT_EQ(ids(store->Entries("", 0, 100)), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(ids(store->Entries("", 2, 2)), (std::vector<uint64_t>{3, 4}));
  EXPECT_EQ(ids(store->Entries("ngo-b", 0, 100)), (std::vector<uint64_t>{4, 5}));
  EXPECT_EQ(ids(store->Entries("hotline-a", 1, 1)), (std::vector<uint64_t>{2}));
  EXPECT_EQ(ids(store->Entries("no-such-list", 0, 100)), (std::vector<uint64_t>{}));
  EXPECT_EQ(ids(store->Entries("", 5, 100)), (std::vector<uint64_t>{}));
  // "No limit" spelled as the largest size_t.
  Result<std::vector<StoredEntry>> all = store->Entries("", 0, SIZE_MAX);
  STORE_ASSERT_OK(all);
  EXPECT_EQ(ids(all), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  Result<std::vector<AuditRecord>> audit = store->Audit(0, SIZE_MAX);
  STORE_ASSERT_OK(audit);
  EXPECT_EQ(audit->size(), 3u);

  uint64_t version = 0;
  std::vector<ListInfo> lists;
  std::vector<StoredEntry> each;
  STORE_ASSERT_OK(store->ForEachEntry([&](StoredEntry&& e) { each.push_back(std::move(e)); },
                                      &version, &lists));
  EXPECT_EQ(version, 3u);
  store_testing::ExpectSameEntries(each, *all);
  ASSERT_EQ(lists.size(), 2u);
  EXPECT_EQ(lists[0].name, "hotline-a");
  EXPECT_EQ(lists[1].name, "ngo-b");
}

// --- The change feed ---------------------------------------------------------------

struct ExpectedChanges {
  uint64_t to = 0;
  std::vector<uint64_t> upserts;
  std::vector<uint64_t> removed;
  std::vector<std::pair<std::string, bool>> lists;
};

TEST_P(StoreTest, ChangesSinceGivesTheNetDifference) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  auto check = [&](uint64_t from, const ExpectedChanges& want) {
    SCOPED_TRACE("ChangesSince(" + std::to_string(from) + ")");
    Result<ChangeSet> c = store->ChangesSince(from);
    STORE_ASSERT_OK(c);
    EXPECT_EQ(c->from_version, from);
    EXPECT_EQ(c->to_version, want.to);
    std::vector<uint64_t> upserts;
    for (const StoredEntry& e : c->upserts) upserts.push_back(e.id);
    EXPECT_EQ(upserts, want.upserts);
    EXPECT_EQ(c->removed, want.removed);
    EXPECT_EQ(c->lists, want.lists);
    // Upserts carry the entries as they are now.
    std::vector<StoredEntry> now;
    for (const StoredEntry& e : AllEntries(*store)) {
      if (std::count(want.upserts.begin(), want.upserts.end(), e.id)) now.push_back(e);
    }
    store_testing::ExpectSameEntries(c->upserts, now);
  };
  using L = std::vector<std::pair<std::string, bool>>;

  check(0, {1, {}, {}, {}});
  check(1, {1, {}, {}, {}});
  Populate(*store);  // v2: ids 1-3 in hotline-a; v3: ids 4-5 in ngo-b
  const L both = {{"hotline-a", true}, {"ngo-b", true}};
  check(1, {3, {1, 2, 3, 4, 5}, {}, both});
  check(2, {3, {4, 5}, {}, both});
  check(3, {3, {}, {}, both});

  ASSERT_EQ(*store->SetEntriesStatus({2}, EntryStatus::kDisabled, Ctx()), 4u);
  ASSERT_EQ(*store->RemoveEntries({1}, Ctx()), 5u);
  ASSERT_EQ(*store->SetListEnabled("ngo-b", false, Ctx()), 6u);
  ASSERT_EQ(*store->AddEntries({Entry("hotline-a", SignalType::kPdq, pdq_[3])}, Ctx()), 7u);
  ASSERT_EQ(*store->RemoveEntries({6}, Ctx()), 8u);
  const L b_off = {{"hotline-a", true}, {"ngo-b", false}};
  check(0, {8, {2, 3, 4, 5}, {1, 6}, b_off});
  check(2, {8, {2, 4, 5}, {1, 6}, b_off});
  check(3, {8, {2}, {1, 6}, b_off});
  check(4, {8, {}, {1, 6}, b_off});
  check(5, {8, {}, {6}, b_off});
  check(6, {8, {}, {6}, b_off});
  check(7, {8, {}, {6}, b_off});
  check(8, {8, {}, {}, b_off});

  ASSERT_EQ(*store->SetEntriesStatus({2}, EntryStatus::kActive, Ctx()), 9u);
  ASSERT_EQ(*store->AddEntries({Entry("new-c", SignalType::kMd5, Md5Value("x"))}, Ctx()), 10u);
  ASSERT_EQ(*store->SetEntriesStatus({7, 3}, EntryStatus::kDisabled, Ctx()), 11u);
  const L three = {{"hotline-a", true}, {"new-c", true}, {"ngo-b", false}};
  check(3, {11, {2, 3, 7}, {1, 6}, three});
  check(8, {11, {2, 3, 7}, {}, three});
  check(9, {11, {3, 7}, {}, three});
  check(10, {11, {3, 7}, {}, three});
  check(11, {11, {}, {}, three});
  Result<ChangeSet> c = store->ChangesSince(9);
  STORE_ASSERT_OK(c);
  ASSERT_EQ(c->upserts.size(), 2u);
  EXPECT_EQ(c->upserts[0].status, EntryStatus::kDisabled);
  EXPECT_EQ(c->upserts[1].status, EntryStatus::kDisabled);
  EXPECT_EQ(c->upserts[1].added_version, 10u);
}

// --- At rest -----------------------------------------------------------------------

class StoreAtRestTest : public StoreTest {
 protected:
  // The needles: hex (both cases) and raw bytes of every stored hash.
  std::vector<std::string> Needles() const {
    std::vector<std::string> out;
    for (const auto& [type, value] : values_) {
      const size_t n = type == SignalType::kMd5 ? 16 : 32;
      const std::string raw(reinterpret_cast<const char*>(value.data()), n);
      const std::string hex = models::ToHex(std::span<const uint8_t>(value.data(), n));
      out.push_back(hex);
      out.push_back(Upper(hex));
      out.push_back(raw);
    }
    return out;
  }

  void ExpectNoHashIn(const std::string& haystack, const std::string& what) {
    ASSERT_FALSE(haystack.empty()) << what;
    size_t i = 0;
    for (const std::string& needle : Needles()) {
      EXPECT_EQ(haystack.find(needle), std::string::npos)
          << what << " holds needle " << i / 3 << " (form " << i % 3 << ")";
      ++i;
    }
  }

  std::vector<std::pair<SignalType, std::array<uint8_t, 32>>> values_;
};

TEST_P(StoreAtRestTest, NoHashValueIsStoredInTheClear) {
  for (size_t i = 0; i < 6; ++i) values_.emplace_back(SignalType::kPdq, pdq_[i]);
  values_.emplace_back(SignalType::kMd5, Md5Value("an md5 value"));
  values_.emplace_back(SignalType::kSha256, Sha256Value("a sha256 value"));
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  std::vector<NewEntry> batch;
  for (size_t i = 0; i < values_.size(); ++i) {
    batch.push_back(Entry(i % 2 ? "hotline-a" : "ngo-b", values_[i].first, values_[i].second,
                          "A1", "case-" + std::to_string(i)));
  }
  STORE_ASSERT_OK(store->AddEntries(batch, Ctx()));
  STORE_ASSERT_OK(store->SetEntriesStatus({2}, EntryStatus::kDisabled, Ctx()));
  STORE_ASSERT_OK(store->RemoveEntries({3}, Ctx()));
  ASSERT_EQ(AllEntries(*store).size(), values_.size() - 1);

  if (sqlite()) {
    // While open, the changes are in the write-ahead log; after closing,
    // in the database file.
    const std::string wal = ReadFileBytes(path_ + "-wal");
    ExpectNoHashIn(wal, "the -wal file");
    EXPECT_NE(wal.find("case-1"), std::string::npos);  // the search does see the rows
    store.reset();
    const std::string file = ReadFileBytes(path_);
    ExpectNoHashIn(file, "the database file");
    EXPECT_NE(file.find("case-1"), std::string::npos);
    EXPECT_NE(file.find(key_.id), std::string::npos);
    if (std::filesystem::exists(path_ + "-wal")) {
      const std::string rest = ReadFileBytes(path_ + "-wal");
      if (!rest.empty()) ExpectNoHashIn(rest, "the -wal file after closing");
    }
  } else {
    store.reset();
    std::unique_ptr<db::Connection> raw = Raw();
    ASSERT_NE(raw, nullptr);
    std::vector<std::string> tables;
    STORE_ASSERT_OK(raw->Execute(
        "SELECT table_name::text FROM information_schema.tables "
        "WHERE table_schema = current_schema() ORDER BY 1",
        {}, [&](const db::Row& row) { tables.emplace_back(row.Text(0)); }));
    EXPECT_EQ(tables, (std::vector<std::string>{"audit", "entries", "lists", "meta", "removals",
                                                "state", "versions"}));
    std::string dump;
    for (const std::string& table : tables) {
      STORE_ASSERT_OK(raw->Execute("SELECT t::text FROM \"" + table + "\" t", {},
                                   [&](const db::Row& row) {
                                     dump += row.Text(0);
                                     dump += '\n';
                                   }));
    }
    ExpectNoHashIn(dump, "the rows of every table");
    EXPECT_NE(dump.find("case-1"), std::string::npos);
    EXPECT_NE(dump.find(key_.id), std::string::npos);
  }
}

// --- Audit and Verify --------------------------------------------------------------

TEST_P(StoreTest, AuditAndVersionsAreAppendOnlyInTheDatabase) {
  std::unique_ptr<Store> store = PopulatedStore();
  ASSERT_NE(store, nullptr);
  const std::vector<AuditRecord> before = *store->Audit(0, 100);
  std::unique_ptr<db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  STORE_EXPECT_CODE(Exec(*raw, "UPDATE audit SET actor = 'mallory' WHERE seq = 2"),
                    ErrorCode::kInternal);
  STORE_EXPECT_CODE(Exec(*raw, "DELETE FROM audit WHERE seq = 4"), ErrorCode::kInternal);
  STORE_EXPECT_CODE(Exec(*raw, "UPDATE versions SET active_count = 0 WHERE version = 4"),
                    ErrorCode::kInternal);
  STORE_EXPECT_CODE(Exec(*raw, "DELETE FROM versions WHERE version = 4"), ErrorCode::kInternal);
  const std::vector<AuditRecord> after = *store->Audit(0, 100);
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].actor, before[i].actor);
    EXPECT_EQ(after[i].digest, before[i].digest);
  }
  EXPECT_TRUE(store->Root(4).ok());
  Result<VerifyReport> report = store->Verify(std::nullopt);
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << Problems(*report);
}

TEST_P(StoreTest, VerifyOfAHealthyStoreFindsNothing) {
  std::unique_ptr<Store> store = PopulatedStore();
  ASSERT_NE(store, nullptr);
  STORE_ASSERT_OK(store->SetListEnabled("ngo-b", false, Ctx()));
  STORE_ASSERT_OK(store->RemoveEntries({3}, Ctx()));
  Result<VerifyReport> report = store->Verify(std::nullopt);
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << Problems(*report);
  EXPECT_EQ(report->version, 6u);
  EXPECT_EQ(report->audit_records, 6u);
  EXPECT_EQ(report->entries, 4u);
  report = store->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << Problems(*report);
  // Verifying needs neither key of the writer's: only the data key.
  StoreKeys read_only;
  read_only.data_keys = {key_};
  std::unique_ptr<Store> reader = Open(std::move(read_only));
  ASSERT_NE(reader, nullptr);
  report = reader->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << Problems(*report);
}

TEST_P(StoreTest, VerifyAgainstAnotherKeyRejectsEveryVersion) {
  std::unique_ptr<Store> store = PopulatedStore();
  ASSERT_NE(store, nullptr);
  const SigningKey other = SigningKey::Generate();
  Result<VerifyReport> report = store->Verify(other.public_key());
  STORE_ASSERT_OK(report);
  EXPECT_EQ(report->problems,
            (std::vector<std::string>{
                "version 1: the signature does not verify against the given public key",
                "version 2: the signature does not verify against the given public key",
                "version 3: the signature does not verify against the given public key",
                "version 4: the signature does not verify against the given public key"}));
}

TEST_P(StoreTest, VerifyWithoutTheDataKeyReportsTheEntriesOnly) {
  std::unique_ptr<Store> store = PopulatedStore();
  ASSERT_NE(store, nullptr);
  StoreKeys other;
  other.data_keys = {GenerateDataKey()};
  std::unique_ptr<Store> reader = Open(std::move(other));
  ASSERT_NE(reader, nullptr);
  Result<VerifyReport> report = reader->Verify(std::nullopt);
  STORE_ASSERT_OK(report);
  ASSERT_EQ(report->problems.size(), 5u) << Problems(*report);
  EXPECT_EQ(report->problems[0],
            "entry 1 is encrypted with key " + key_.id + ", which was not given");
}

TEST_P(StoreTest, TamperEditedAuditRecord) {
  ASSERT_NE(PopulatedStore(), nullptr);
  std::unique_ptr<db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  STORE_ASSERT_OK(DropAppendOnlyTriggers(*raw));
  STORE_ASSERT_OK(Exec(*raw, "UPDATE audit SET actor = 'mallory' WHERE seq = 2"));
  const VerifyReport report = VerifyFresh();
  EXPECT_EQ(report.problems,
            (std::vector<std::string>{"audit record 2 was modified (its digest does not match)"}));
}

TEST_P(StoreTest, TamperEditedAuditRecordWithARecomputedDigest) {
  ASSERT_NE(PopulatedStore(), nullptr);
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  AuditRecord r = store->Audit(1, 1)->at(0);
  r.actor = "mallory";
  r.digest = AuditRecordDigest(r);
  std::unique_ptr<db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  STORE_ASSERT_OK(DropAppendOnlyTriggers(*raw));
  STORE_ASSERT_OK(Exec(*raw, "UPDATE audit SET actor = 'mallory', digest = $1 WHERE seq = 2",
                       {db::Param::Blob(r.digest)}));
  const VerifyReport report = VerifyFresh();
  EXPECT_EQ(report.problems,
            (std::vector<std::string>{
                "audit record 3 does not link to the record before it: a record was removed, "
                "inserted or reordered",
                "version 2 is not bound to audit record 2"}));
}

TEST_P(StoreTest, TamperDeletedAuditRecord) {
  ASSERT_NE(PopulatedStore(), nullptr);
  std::unique_ptr<db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  STORE_ASSERT_OK(DropAppendOnlyTriggers(*raw));
  STORE_ASSERT_OK(Exec(*raw, "DELETE FROM audit WHERE seq = 2"));
  const VerifyReport report = VerifyFresh();
  EXPECT_TRUE(HasProblem(report,
                         "audit record 3 is out of sequence (expected 2): a record was removed "
                         "or reordered"))
      << Problems(report);
  EXPECT_TRUE(HasProblem(report,
                         "audit record 3 does not link to the record before it: a record was "
                         "removed, inserted or reordered"))
      << Problems(report);
  EXPECT_TRUE(HasProblem(report, "the audit log holds 3 records for version 4"))
      << Problems(report);
  EXPECT_TRUE(HasProblem(report, "version 2 is not bound to audit record 2")) << Problems(report);
}

TEST_P(StoreTest, TamperSwappedAuditRecords) {
  ASSERT_NE(PopulatedStore(), nullptr);
  std::unique_ptr<db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  STORE_ASSERT_OK(DropAppendOnlyTriggers(*raw));
  STORE_ASSERT_OK(Exec(*raw, "UPDATE audit SET seq = 1000 WHERE seq = 2"));
  STORE_ASSERT_OK(Exec(*raw, "UPDATE audit SET seq = 2 WHERE seq = 3"));
  STORE_ASSERT_OK(Exec(*raw, "UPDATE audit SET seq = 3 WHERE seq = 1000"));
  const VerifyReport report = VerifyFresh();
  for (const char* p :
       {"audit record 2 was modified (its digest does not match)",
        "audit record 3 was modified (its digest does not match)",
        "audit record 2 does not link to the record before it: a record was removed, inserted "
        "or reordered",
        "audit record 3 does not link to the record before it: a record was removed, inserted "
        "or reordered",
        "version 2 is not bound to audit record 2", "version 3 is not bound to audit record 3"}) {
    EXPECT_TRUE(HasProblem(report, p)) << p << Problems(report);
  }
}

TEST_P(StoreTest, TamperChangedCategory) {
  ASSERT_NE(PopulatedStore(), nullptr);
  std::unique_ptr<db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  STORE_ASSERT_OK(Exec(*raw, "UPDATE entries SET category = 'Z9' WHERE id = 3"));
  const VerifyReport report = VerifyFresh();
  EXPECT_EQ(report.problems, (std::vector<std::string>{
                                 "entry 3: its fields do not match its leaf hash (modified)"}));
}

TEST_P(StoreTest, TamperSwappedSealedValues) {
  ASSERT_NE(PopulatedStore(), nullptr);
  std::unique_ptr<db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  // Entries 1 and 5 are both PDQ values, so the sizes fit.
  std::vector<std::vector<uint8_t>> sealed;
  STORE_ASSERT_OK(raw->Execute("SELECT sealed FROM entries WHERE id IN (1, 5) ORDER BY id", {},
                               [&](const db::Row& row) {
                                 auto b = row.Blob(0);
                                 sealed.emplace_back(b.begin(), b.end());
                               }));
  ASSERT_EQ(sealed.size(), 2u);
  ASSERT_EQ(sealed[0].size(), sealed[1].size());
  STORE_ASSERT_OK(Exec(*raw, "UPDATE entries SET sealed = $1 WHERE id = 1",
                       {db::Param::Blob(sealed[1])}));
  STORE_ASSERT_OK(Exec(*raw, "UPDATE entries SET sealed = $1 WHERE id = 5",
                       {db::Param::Blob(sealed[0])}));
  const VerifyReport report = VerifyFresh();
  EXPECT_EQ(report.problems,
            (std::vector<std::string>{
                "entry 1: the encrypted value does not authenticate (modified, or moved from "
                "another row)",
                "entry 5: the encrypted value does not authenticate (modified, or moved from "
                "another row)"}));
  // Reading refuses them too.
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  STORE_EXPECT_CODE(store->Entries("", 0, 100), ErrorCode::kCorruptData);
}

TEST_P(StoreTest, TamperChangedStatus) {
  ASSERT_NE(PopulatedStore(), nullptr);
  std::unique_ptr<db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  STORE_ASSERT_OK(Exec(*raw, "UPDATE entries SET status = 0 WHERE id = 2"));  // re-enabled
  const VerifyReport report = VerifyFresh();
  EXPECT_EQ(report.problems,
            (std::vector<std::string>{
                "the active entries do not give the signed root of version 4 (entries changed "
                "outside the store)",
                "the entries' and lists' states do not give the signed state of version 4 (an "
                "entry's status, an entry or a list changed outside the store)"}));
}

TEST_P(StoreTest, TamperDeletedLatestVersion) {
  ASSERT_NE(PopulatedStore(), nullptr);
  std::unique_ptr<db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  STORE_ASSERT_OK(DropAppendOnlyTriggers(*raw));
  STORE_ASSERT_OK(Exec(*raw, "DELETE FROM versions WHERE version = 4"));
  const VerifyReport report = VerifyFresh();
  EXPECT_EQ(report.problems,
            (std::vector<std::string>{"the store is at version 4 but holds 3 signed versions"}));
}

// --- Merkle roots and proofs -------------------------------------------------------

TEST_P(StoreTest, RootIsTheMerkleRootOfTheActiveEntries) {
  std::unique_ptr<Store> store = Init();
  ASSERT_NE(store, nullptr);
  std::vector<VersionRecord> records;
  auto step = [&]() {
    ExpectRootMatchesEntries(*store);
    records.push_back(*store->Root());
  };
  step();
  Populate(*store);
  step();
  STORE_ASSERT_OK(store->SetEntriesStatus({2}, EntryStatus::kDisabled, Ctx()));
  step();
  STORE_ASSERT_OK(store->SetListEnabled("ngo-b", false, Ctx()));
  step();
  STORE_ASSERT_OK(store->RemoveEntries({1}, Ctx()));
  step();
  STORE_ASSERT_OK(store->SetListEnabled("ngo-b", true, Ctx()));
  step();
  STORE_ASSERT_OK(store->AddEntries({Entry("ngo-b", SignalType::kPdq, pdq_[4])}, Ctx()));
  step();
  STORE_ASSERT_OK(store->SetEntriesStatus({2}, EntryStatus::kActive, Ctx()));
  step();
  EXPECT_EQ(records.back().version, 9u);
  EXPECT_EQ(records.back().active_count, 5u);
  // Older versions keep their signed records.
  for (const VersionRecord& r : records) {
    Result<VersionRecord> again = store->Root(r.version);
    STORE_ASSERT_OK(again);
    EXPECT_EQ(again->root, r.root);
    EXPECT_EQ(again->signature, r.signature);
    EXPECT_EQ(again->active_count, r.active_count);
    EXPECT_EQ(again->audit_digest, r.audit_digest);
    EXPECT_EQ(again->created_at, r.created_at);
  }
  EXPECT_EQ(store->Root(2)->version, 2u);
  STORE_EXPECT_CODE(store->Root(10), ErrorCode::kNotFound);
}

TEST_P(StoreTest, ProveEveryActiveEntry) {
  std::unique_ptr<Store> store = PopulatedStore();
  ASSERT_NE(store, nullptr);
  STORE_ASSERT_OK(store->AddEntries({Entry("ngo-b", SignalType::kPdq, pdq_[3]),
                                     Entry("ngo-b", SignalType::kPdq, pdq_[4]),
                                     Entry("other", SignalType::kPdq, pdq_[5]),
                                     Entry("other", SignalType::kPdq, pdq_[6])},
                                    Ctx()));
  STORE_ASSERT_OK(store->RemoveEntries({4}, Ctx()));
  STORE_ASSERT_OK(store->SetListEnabled("other", false, Ctx()));
  const Result<VersionRecord> root = store->Root();
  STORE_ASSERT_OK(root);
  const std::vector<StoredEntry> active = ActiveEntries(*store);
  ASSERT_EQ(active.size(), 5u);  // 1, 3, 5, 6, 7
  EXPECT_EQ(root->active_count, 5u);
  for (size_t i = 0; i < active.size(); ++i) {
    SCOPED_TRACE(active[i].id);
    Result<InclusionProof> proof = store->Prove(active[i].id);
    STORE_ASSERT_OK(proof);
    EXPECT_EQ(proof->version, 7u);
    EXPECT_EQ(proof->leaf_index, i);
    EXPECT_EQ(proof->tree_size, 5u);
    EXPECT_EQ(proof->leaf_hash, EntryLeafHash(active[i]));
    EXPECT_EQ(proof->root, root->root);
    EXPECT_TRUE(VerifyMerkleInclusion(EntryLeafHash(active[i]), proof->leaf_index,
                                      proof->tree_size, proof->path, root->root));
    // The proof is for this leaf only.
    const StoredEntry& other = active[(i + 1) % active.size()];
    EXPECT_FALSE(VerifyMerkleInclusion(EntryLeafHash(other), proof->leaf_index, proof->tree_size,
                                       proof->path, root->root));
  }
  // Disabled (2), removed (4), in a disabled list (8, 9), never existed.
  for (uint64_t id : {2u, 4u, 8u, 9u, 10u, 0u}) {
    SCOPED_TRACE(id);
    STORE_EXPECT_CODE(store->Prove(id), ErrorCode::kNotFound);
  }
}

// --- Rekey -------------------------------------------------------------------------

TEST_P(StoreTest, RekeyMovesEveryValueToTheNewKey) {
  const DataKey a = key_;
  const DataKey b = GenerateDataKey();
  std::unique_ptr<Store> store = PopulatedStore();
  ASSERT_NE(store, nullptr);
  STORE_ASSERT_OK(store->SetListEnabled("ngo-b", false, Ctx()));
  const std::vector<StoredEntry> before = AllEntries(*store);
  const VersionRecord root_before = *store->Root();
  store.reset();

  // The new key alone cannot read the old values, so it cannot rekey.
  StoreKeys only_b;
  only_b.data_keys = {b};
  only_b.signing_key = Signer();
  store = Open(std::move(only_b));
  ASSERT_NE(store, nullptr);
  STORE_EXPECT_CODE(store->Rekey(Ctx()), ErrorCode::kPermissionDenied);
  EXPECT_EQ(VersionOf(*store), 5u);

  StoreKeys b_then_a;
  b_then_a.data_keys = {b, a};
  b_then_a.signing_key = Signer();
  store = Open(std::move(b_then_a));
  ASSERT_NE(store, nullptr);
  Result<uint64_t> v = store->Rekey(Ctx("operator"));
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 6u);
  Result<StoreStats> stats = store->Stats();
  STORE_ASSERT_OK(stats);
  ASSERT_EQ(stats->values_by_key.size(), 1u);
  EXPECT_EQ(stats->values_by_key[0].first, b.id);
  EXPECT_EQ(stats->values_by_key[0].second, 5u);
  const VersionRecord root_after = *store->Root();
  EXPECT_EQ(root_after.version, 6u);
  EXPECT_EQ(root_after.root, root_before.root);
  EXPECT_EQ(root_after.active_count, root_before.active_count);
  Result<std::vector<AuditRecord>> audit = store->Audit(5, 10);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].action, "rekey");
  EXPECT_EQ((*audit)[0].actor, "operator");
  EXPECT_EQ((*audit)[0].count, 5u);
  EXPECT_EQ((*audit)[0].entries_digest, LeavesDigest(before));
  store.reset();

  StoreKeys new_only;
  new_only.data_keys = {b};
  store = Open(std::move(new_only));
  ASSERT_NE(store, nullptr);
  store_testing::ExpectSameEntries(AllEntries(*store), before);
  Result<VerifyReport> report = store->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << Problems(*report);

  StoreKeys old_only;
  old_only.data_keys = {a};
  store = Open(std::move(old_only));
  ASSERT_NE(store, nullptr);
  STORE_EXPECT_CODE(store->Entries("", 0, 100), ErrorCode::kPermissionDenied);
  EXPECT_EQ(VersionOf(*store), 6u);
}

// --- Several writers ---------------------------------------------------------------

TEST_P(StoreTest, TwoWritersOnOneDatabase) {
  ASSERT_NE(Init(), nullptr);
  std::unique_ptr<Store> one = Open();
  std::unique_ptr<Store> two = Open();
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  constexpr int kAdds = 20;
  std::vector<uint64_t> versions_one, versions_two;
  std::vector<std::string> errors_one, errors_two;
  auto writer = [&](Store* store, std::string list, std::vector<uint64_t>* versions,
                    std::vector<std::string>* errors) {
    for (int i = 0; i < kAdds; ++i) {
      std::array<uint8_t, 32> value{};
      RandomBytes(value);
      Result<uint64_t> v = store->AddEntries({Entry(list, SignalType::kPdq, value)}, Ctx(list));
      if (v.ok()) {
        versions->push_back(*v);
      } else {
        errors->push_back(v.error().ToString());
      }
    }
  };
  std::thread t1(writer, one.get(), "writer-1", &versions_one, &errors_one);
  std::thread t2(writer, two.get(), "writer-2", &versions_two, &errors_two);
  t1.join();
  t2.join();
  EXPECT_TRUE(errors_one.empty()) << errors_one.front();
  EXPECT_TRUE(errors_two.empty()) << errors_two.front();
  std::vector<uint64_t> all = versions_one;
  all.insert(all.end(), versions_two.begin(), versions_two.end());
  std::sort(all.begin(), all.end());
  std::vector<uint64_t> expected;
  for (uint64_t v = 2; v <= 2 * kAdds + 1; ++v) expected.push_back(v);
  EXPECT_EQ(all, expected);
  EXPECT_TRUE(std::is_sorted(versions_one.begin(), versions_one.end()));

  EXPECT_EQ(VersionOf(*one), 41u);
  Result<std::vector<AuditRecord>> audit = one->Audit(0, 100);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 41u);
  for (uint64_t v = 1; v <= 41; ++v) {
    EXPECT_EQ((*audit)[v - 1].seq, v);
    EXPECT_TRUE(one->Root(v).ok()) << v;
  }
  const std::vector<StoredEntry> entries = AllEntries(*two);
  ASSERT_EQ(entries.size(), 40u);
  for (size_t i = 0; i < entries.size(); ++i) EXPECT_EQ(entries[i].id, i + 1);
  Result<VerifyReport> report = two->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << Problems(*report);
  EXPECT_EQ(report->entries, 40u);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values("sqlite", "postgres"),
                         BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, StoreAtRestTest, ::testing::Values("sqlite", "postgres"),
                         BackendName);

}  // namespace
}  // namespace bantay::matcher
