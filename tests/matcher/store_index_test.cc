#include "bantay/matcher/store_index.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "store_tamper.h"
#include "store_test_util.h"

namespace bantay::matcher {
namespace {

using store_testing::BackendName;
using store_testing::Entry;
using store_testing::ExactIds;
using store_testing::MatchAll;
using store_testing::Md5Value;
using store_testing::ReferencePdqValues;
using store_testing::Sha256Value;

using Values = std::vector<std::pair<SignalType, std::array<uint8_t, 32>>>;

TEST(StoreIndexEntryTest, ToIndexEntryCopiesTheMatchingFields) {
  StoredEntry s;
  s.id = 42;
  s.list = "hotline-a";
  s.type = SignalType::kSha256;
  s.value = Sha256Value("x");
  s.category = "A1";
  s.reference = "case-42";
  s.source = "feed.csv";
  s.added_by = "alice";
  const IndexEntry e = ToIndexEntry(s);
  EXPECT_EQ(e.id, 42u);
  EXPECT_EQ(e.list, "hotline-a");
  EXPECT_EQ(e.type, SignalType::kSha256);
  EXPECT_EQ(e.value, Sha256Value("x"));
  EXPECT_EQ(e.category, "A1");
  EXPECT_EQ(e.reference, "case-42");
}

class StoreIndexTest : public store_testing::StoreBackendTest {
 protected:
  void SetUp() override {
    StoreBackendTest::SetUp();
    pdq_ = ReferencePdqValues();
    ASSERT_GE(pdq_.size(), 10u);
    store_ = Init();
    ASSERT_NE(store_, nullptr);
  }

  // Adds one entry and remembers its value for the comparisons.
  void Add(const std::string& list, SignalType type, const std::array<uint8_t, 32>& value,
           const std::string& reference) {
    values_.emplace_back(type, value);
    STORE_ASSERT_OK(store_->AddEntries({Entry(list, type, value, "A1", reference)}, Ctx()));
  }

  // An index loaded with its verified state, as the server follows a store.
  struct Follower {
    std::unique_ptr<HashIndex> index;
    std::unique_ptr<VerifiedStoreState> verified;
    HashIndex* operator->() const { return index.get(); }
    const HashIndex& operator*() const { return *index; }
  };

  Follower Load() {
    Follower f{std::make_unique<HashIndex>(),
               std::make_unique<VerifiedStoreState>(store_->store_id(), SignerPublic())};
    Result<uint64_t> v = LoadIndexFromStore(*store_, f.index.get(), f.verified.get());
    EXPECT_TRUE(v.ok()) << v.error().ToString();
    if (v.ok()) {
      EXPECT_EQ(*v, VersionOf(*store_));
      EXPECT_EQ(f->Snapshot()->store_version(), *v);
      EXPECT_EQ(f.verified->version(), *v);
    }
    return f;
  }

  // Brings a follower up to the store's version through the change feed,
  // verified (with `writer`: against the hashes it signed, when it can).
  // (Next is Advance on a copy.)
  void Catch(Follower& f, const Store* writer = nullptr) {
    Result<ChangeSet> changes = store_->ChangesSince(f->Snapshot()->store_version());
    STORE_ASSERT_OK(changes);
    // In place, as the server follows.
    STORE_ASSERT_OK(f.verified->Advance(*changes, writer));
    STORE_ASSERT_OK(ApplyChangeSet(*changes, f.index.get()));
    EXPECT_EQ(f->Snapshot()->store_version(), VersionOf(*store_));
    EXPECT_EQ(f.verified->version(), VersionOf(*store_));
  }

  // Verifies the store's changes since the follower's version (and keeps
  // nothing).
  Status VerifyNext(const Follower& f, const Store* writer = nullptr) {
    Result<ChangeSet> changes = store_->ChangesSince(f.verified->version());
    if (!changes.ok()) return changes.error();
    Result<VerifiedStoreState> next = f.verified->Next(*changes, writer);
    if (!next.ok()) return next.error();
    return {};
  }

  // A verified load of the store as it is, trusting `key`.
  Status VerifiedLoad(const PublicKey& key) {
    HashIndex index;
    VerifiedStoreState verified(store_->store_id(), key);
    Result<uint64_t> v = LoadIndexFromStore(*store_, &index, &verified);
    if (!v.ok()) return v.error();
    return {};
  }

  void ExpectSameMatches(const HashIndex& a, const HashIndex& b) {
    EXPECT_EQ(a.Snapshot()->store_version(), b.Snapshot()->store_version());
    EXPECT_EQ(MatchAll(*a.Snapshot(), values_), MatchAll(*b.Snapshot(), values_));
  }

  std::vector<uint64_t> Ids(const HashIndex& index, size_t value) {
    return ExactIds(*index.Snapshot(), values_[value].first, values_[value].second);
  }

  // The ids each value matches exactly, value by value (ids[i] for value i).
  void ExpectIds(const HashIndex& index, const std::vector<std::vector<uint64_t>>& ids) {
    for (size_t value = 0; value < ids.size(); ++value) {
      EXPECT_EQ(Ids(index, value), ids[value]) << "value " << value;
    }
  }

  std::unique_ptr<Store> store_;
  std::vector<std::array<uint8_t, 32>> pdq_;
  Values values_;  // value i is entry i + 1
};

TEST_P(StoreIndexTest, LoadFromTheStore) {
  Add("hotline-a", SignalType::kPdq, pdq_[0], "case-1");
  Add("hotline-a", SignalType::kMd5, Md5Value("two"), "case-2");
  Add("ngo-b", SignalType::kSha256, Sha256Value("three"), "case-3");
  Add("ngo-b", SignalType::kPdq, pdq_[1], "case-4");
  Add("ngo-c", SignalType::kPdq, pdq_[2], "case-5");
  STORE_ASSERT_OK(store_->SetEntriesStatus({4}, EntryStatus::kDisabled, Ctx()));
  STORE_ASSERT_OK(store_->SetListEnabled("ngo-c", false, Ctx()));
  Follower index = Load();
  std::shared_ptr<const IndexSnapshot> snap = index->Snapshot();
  EXPECT_EQ(snap->store_version(), 8u);
  EXPECT_EQ(snap->size(SignalType::kPdq), 3u);  // disabled ones are held
  EXPECT_EQ(snap->size(SignalType::kMd5), 1u);
  EXPECT_EQ(snap->size(SignalType::kSha256), 1u);
  for (uint64_t id = 1; id <= 5; ++id) EXPECT_TRUE(snap->Contains(id)) << id;
  EXPECT_FALSE(snap->EntryEnabled(4));
  EXPECT_FALSE(snap->ListEnabled("ngo-c"));

  EXPECT_EQ(Ids(*index, 0), (std::vector<uint64_t>{1}));
  EXPECT_EQ(Ids(*index, 1), (std::vector<uint64_t>{2}));
  EXPECT_EQ(Ids(*index, 2), (std::vector<uint64_t>{3}));
  EXPECT_EQ(Ids(*index, 3), (std::vector<uint64_t>{}));  // disabled entry
  EXPECT_EQ(Ids(*index, 4), (std::vector<uint64_t>{}));  // disabled list
  std::vector<Match> matches;
  snap->MatchExact(SignalType::kSha256, values_[2].second.data(), &matches);
  ASSERT_EQ(matches.size(), 1u);
  EXPECT_EQ(matches[0].list, "ngo-b");
  EXPECT_EQ(matches[0].category, "A1");
  EXPECT_EQ(matches[0].reference, "case-3");
}

// Stores of 200k entries and more are read in two halves on two
// connections: every entry must arrive once, decrypted, with its status.
TEST_P(StoreIndexTest, ALargeStoreLoadsInTwoHalvesWithEveryEntry) {
  constexpr size_t kEntries = 210'000;
  // (Appended, not "r" + ...: GCC 12 gives a false -Wrestrict for that.)
  auto ref = [](uint64_t id) { return std::string("r").append(std::to_string(id)); };
  std::vector<NewEntry> entries;
  entries.reserve(kEntries);
  for (size_t i = 0; i < kEntries; ++i) {
    std::array<uint8_t, 32> value{};
    for (size_t b = 0; b < 32; b += 8) {
      const uint64_t word = (i + 1) * 0x9e3779b97f4a7c15ULL ^ (b * 0x2545f4914f6cdd1dULL);
      std::memcpy(value.data() + b, &word, 8);
    }
    entries.push_back(Entry(i % 2 ? "odd" : "even", SignalType::kPdq, value, "A1",
                            ref(i + 1)));
  }
  STORE_ASSERT_OK(store_->AddEntries(entries, Ctx()));
  STORE_ASSERT_OK(store_->SetEntriesStatus({7, 105'001, kEntries}, EntryStatus::kDisabled, Ctx()));
  Follower index = Load();
  std::shared_ptr<const IndexSnapshot> snap = index->Snapshot();
  EXPECT_EQ(snap->store_version(), 3u);
  EXPECT_EQ(snap->size(SignalType::kPdq), kEntries);
  std::vector<Match> matches;
  for (size_t i = 0; i < kEntries; i += 997) {
    snap->MatchPdq(models::Hash256(entries[i].value), 0, &matches);
    const uint64_t id = i + 1;
    const bool disabled = id == 7 || id == 105'001 || id == kEntries;
    ASSERT_EQ(matches.size(), disabled ? 0u : 1u) << id;
    if (!disabled) {
      EXPECT_EQ(matches[0].id, id);
      EXPECT_EQ(matches[0].reference, ref(id));
      EXPECT_EQ(matches[0].list, i % 2 ? "odd" : "even");
    }
  }
  for (uint64_t id : {uint64_t{7}, uint64_t{105'001}, uint64_t{kEntries}}) {
    EXPECT_TRUE(snap->Contains(id));
    EXPECT_FALSE(snap->EntryEnabled(id));
  }
  EXPECT_TRUE(snap->EntryEnabled(105'000));
}

// The same path with every kind of row: exact hashes only in the first half
// (so the halves differ in shape), a disabled list and disabled entries.
TEST_P(StoreIndexTest, AMixedLargeStoreLoadsInTwoHalvesAsEntryByEntry) {
  constexpr size_t kEntries = 210'000;
  auto ref = [](uint64_t id) { return std::string("m").append(std::to_string(id)); };
  auto type_of = [](size_t i) {
    if (i < kEntries / 2 && i % 10 == 3) return SignalType::kMd5;
    if (i < kEntries / 2 && i % 10 == 6) return SignalType::kSha256;
    return SignalType::kPdq;
  };
  std::vector<NewEntry> entries;
  entries.reserve(kEntries);
  std::array<size_t, 3> by_type{};
  for (size_t i = 0; i < kEntries; ++i) {
    std::array<uint8_t, 32> value{};
    for (size_t b = 0; b < 32; b += 8) {
      const uint64_t word = (i + 7) * 0x9e3779b97f4a7c15ULL ^ (b * 0x2545f4914f6cdd1dULL);
      std::memcpy(value.data() + b, &word, 8);
    }
    const SignalType type = type_of(i);
    if (type == SignalType::kMd5) std::fill(value.begin() + 16, value.end(), 0);
    ++by_type[static_cast<int>(type)];
    entries.push_back(Entry(i % 50 == 0 ? "off" : (i % 3 ? "a" : "b"), type, value,
                            i % 7 ? "A1" : "B2", ref(i + 1)));
  }
  STORE_ASSERT_OK(store_->AddEntries(entries, Ctx()));
  STORE_ASSERT_OK(store_->SetListEnabled("off", false, Ctx()));
  STORE_ASSERT_OK(store_->SetEntriesStatus({4, 7, 150'001}, EntryStatus::kDisabled, Ctx()));
  Follower index = Load();
  std::shared_ptr<const IndexSnapshot> snap = index->Snapshot();
  EXPECT_EQ(snap->store_version(), 4u);
  for (int t = 0; t < 3; ++t) {
    EXPECT_EQ(snap->size(static_cast<SignalType>(t)), by_type[t]) << t;
  }
  std::vector<Match> matches;
  for (size_t i = 0; i < kEntries; i += 331) {
    const uint64_t id = i + 1;
    const SignalType type = type_of(i);
    if (type == SignalType::kPdq) {
      snap->MatchPdq(models::Hash256(entries[i].value), 0, &matches);
    } else {
      snap->MatchExact(type, entries[i].value.data(), &matches);
    }
    const bool hidden = i % 50 == 0 || id == 4 || id == 7 || id == 150'001;
    ASSERT_EQ(matches.size(), hidden ? 0u : 1u) << id;
    if (hidden) continue;
    EXPECT_EQ(matches[0].id, id);
    EXPECT_EQ(matches[0].list, entries[i].list);
    EXPECT_EQ(matches[0].category, entries[i].category);
    EXPECT_EQ(matches[0].reference, ref(id));
  }
  for (uint64_t id : {uint64_t{4}, uint64_t{7}, uint64_t{150'001}}) {
    EXPECT_TRUE(snap->Contains(id));
    EXPECT_FALSE(snap->EntryEnabled(id));
  }
  EXPECT_FALSE(snap->ListEnabled("off"));
  EXPECT_TRUE(snap->ListEnabled("a"));
}

TEST_P(StoreIndexTest, AChangeSetFromAnotherVersionIsRefused) {
  Add("hotline-a", SignalType::kPdq, pdq_[0], "case-1");
  Result<ChangeSet> old = store_->ChangesSince(1);  // 1 -> 2
  STORE_ASSERT_OK(old);
  Add("hotline-a", SignalType::kPdq, pdq_[1], "case-2");
  STORE_ASSERT_OK(store_->SetEntriesStatus({1}, EntryStatus::kDisabled, Ctx()));
  Follower index = Load();  // at version 4
  Status s = ApplyChangeSet(*old, index.index.get());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.error().message(), "the changes are from version 1 but the index is at version 4");
  EXPECT_EQ(index->Snapshot()->store_version(), 4u);
  EXPECT_FALSE(index->Snapshot()->EntryEnabled(1));  // not re-enabled by the old change set
}

TEST_P(StoreIndexTest, ChangeFeedGivesTheSameIndexAsAFreshLoad) {
  // One index follows every change; one is loaded at each version and
  // caught up at the end, in one jump.
  Follower follower = Load();
  std::vector<Follower> at_version;
  auto step = [&](const std::function<void()>& change) {
    change();
    if (::testing::Test::HasFatalFailure()) return;
    Catch(follower);
    Follower fresh = Load();
    ExpectSameMatches(*follower, *fresh);
    at_version.push_back(std::move(fresh));
  };

  step([&] { Add("hotline-a", SignalType::kPdq, pdq_[0], "case-1"); });  // v2, id 1
  step([&] { Add("hotline-a", SignalType::kMd5, Md5Value("two"), "case-2"); });
  step([&] { Add("ngo-b", SignalType::kSha256, Sha256Value("three"), "case-3"); });
  step([&] { Add("ngo-b", SignalType::kPdq, pdq_[1], "case-4"); });  // v5, id 4
  EXPECT_EQ(Ids(*follower, 3), (std::vector<uint64_t>{4}));
  step([&] { STORE_ASSERT_OK(store_->SetEntriesStatus({1}, EntryStatus::kDisabled, Ctx())); });
  EXPECT_EQ(Ids(*follower, 0), (std::vector<uint64_t>{}));
  step([&] { STORE_ASSERT_OK(store_->SetListEnabled("ngo-b", false, Ctx())); });
  EXPECT_EQ(Ids(*follower, 2), (std::vector<uint64_t>{}));
  EXPECT_EQ(Ids(*follower, 3), (std::vector<uint64_t>{}));
  // Added to a disabled list: held, not matched.
  step([&] { Add("ngo-b", SignalType::kPdq, pdq_[2], "case-5"); });  // id 5
  EXPECT_TRUE(follower->Snapshot()->Contains(5));
  EXPECT_EQ(Ids(*follower, 4), (std::vector<uint64_t>{}));
  step([&] { Add("hotline-a", SignalType::kPdq, pdq_[3], "case-6"); });  // id 6
  step([&] { STORE_ASSERT_OK(store_->SetEntriesStatus({6}, EntryStatus::kDisabled, Ctx())); });
  step([&] { STORE_ASSERT_OK(store_->RemoveEntries({1, 2}, Ctx())); });
  EXPECT_FALSE(follower->Snapshot()->Contains(1));
  EXPECT_EQ(Ids(*follower, 1), (std::vector<uint64_t>{}));
  step([&] { STORE_ASSERT_OK(store_->SetListEnabled("ngo-b", true, Ctx())); });
  EXPECT_EQ(Ids(*follower, 2), (std::vector<uint64_t>{3}));
  EXPECT_EQ(Ids(*follower, 4), (std::vector<uint64_t>{5}));
  step([&] { STORE_ASSERT_OK(store_->SetEntriesStatus({6}, EntryStatus::kActive, Ctx())); });
  EXPECT_EQ(Ids(*follower, 5), (std::vector<uint64_t>{6}));
  step([&] {
    values_.emplace_back(SignalType::kPdq, pdq_[4]);
    values_.emplace_back(SignalType::kPdq, pdq_[5]);
    values_.emplace_back(SignalType::kMd5, Md5Value("nine"));
    STORE_ASSERT_OK(store_->AddEntries({Entry("ngo-c", SignalType::kPdq, pdq_[4]),
                                        Entry("ngo-c", SignalType::kPdq, pdq_[5]),
                                        Entry("hotline-a", SignalType::kMd5, Md5Value("nine"))},
                                       Ctx()));
  });
  step([&] { STORE_ASSERT_OK(store_->SetEntriesStatus({7, 3}, EntryStatus::kDisabled, Ctx())); });
  step([&] { STORE_ASSERT_OK(store_->SetListEnabled("ngo-c", false, Ctx())); });
  step([&] { STORE_ASSERT_OK(store_->RemoveEntries({7, 9}, Ctx())); });
  step([&] { STORE_ASSERT_OK(store_->SetEntriesStatus({3}, EntryStatus::kActive, Ctx())); });
  step([&] { Add("ngo-c", SignalType::kPdq, pdq_[6], "case-10"); });
  step([&] { STORE_ASSERT_OK(store_->SetListEnabled("ngo-c", true, Ctx())); });
  step([&] { STORE_ASSERT_OK(store_->Rekey(Ctx())); });  // a version that changes no match
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  EXPECT_EQ(VersionOf(*store_), 21u);

  Follower fresh = Load();
  EXPECT_EQ(Ids(*fresh, 0), (std::vector<uint64_t>{}));    // removed
  EXPECT_EQ(Ids(*fresh, 2), (std::vector<uint64_t>{3}));   // enabled again
  EXPECT_EQ(Ids(*fresh, 6), (std::vector<uint64_t>{}));    // removed
  EXPECT_EQ(Ids(*fresh, 7), (std::vector<uint64_t>{8}));
  EXPECT_EQ(Ids(*fresh, 9), (std::vector<uint64_t>{10}));
  ExpectSameMatches(*follower, *fresh);
  for (size_t i = 0; i < at_version.size(); ++i) {
    SCOPED_TRACE("index loaded at store version " +
                 std::to_string(at_version[i]->Snapshot()->store_version()));
    Catch(at_version[i]);
    ExpectSameMatches(*at_version[i], *fresh);
  }
}

TEST_P(StoreIndexTest, AnEmptyChangeSetOnlyRelabels) {
  Add("hotline-a", SignalType::kPdq, pdq_[0], "case-1");
  Follower index = Load();
  const uint64_t before = index->Snapshot()->version();
  Result<ChangeSet> changes = store_->ChangesSince(2);
  STORE_ASSERT_OK(changes);
  EXPECT_TRUE(changes->upserts.empty());
  STORE_ASSERT_OK(ApplyChangeSet(*changes, index.index.get()));
  EXPECT_EQ(index->Snapshot()->store_version(), 2u);
  EXPECT_EQ(Ids(*index, 0), (std::vector<uint64_t>{1}));
  EXPECT_GE(index->Snapshot()->version(), before);
}

// --- What is written behind the store's back ---------------------------------

// A follower verifies each change set before it is applied, against the key
// it trusts and what it holds; each way of editing the database below is
// refused with its reason, and the follower's state stays where it was.
class StoreIndexTamperTest : public StoreIndexTest {
 protected:
  // Version 4: ids 1-2 in "hotline-a", id 3 in "ngo-b"; a follower there.
  void SetUp() override {
    StoreIndexTest::SetUp();
    Add("hotline-a", SignalType::kPdq, pdq_[0], "case-1");
    Add("hotline-a", SignalType::kMd5, Md5Value("two"), "case-2");
    Add("ngo-b", SignalType::kSha256, Sha256Value("three"), "case-3");
    follower_ = Load();
    ASSERT_EQ(follower_.verified->version(), 4u);
    raw_ = Raw();
    ASSERT_NE(raw_, nullptr);
  }

  void Sql(const std::string& sql) { STORE_ASSERT_OK(raw_->Execute(sql, {})); }

  void ExpectRefused(const std::string& message) { ExpectRefused(4, message); }
  // The follower (at `at`) refuses the changes since.
  void ExpectRefused(uint64_t at, const std::string& message) {
    const Status s = VerifyNext(follower_);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code(), ErrorCode::kCorruptData) << s.error().ToString();
    EXPECT_EQ(s.error().message(), message);
    EXPECT_EQ(follower_.verified->version(), at);
  }

  // The message of a verified load that fails (kCorruptData).
  std::string LoadRefusal(const PublicKey& key) {
    const Status s = VerifiedLoad(key);
    EXPECT_FALSE(s.ok());
    if (s.ok()) return "";
    EXPECT_EQ(s.error().code(), ErrorCode::kCorruptData) << s.error().ToString();
    return s.error().message();
  }

  // The next change is refused by the store that would sign it.
  void ExpectWriterRefuses(const std::string& what) {
    const Result<uint64_t> refused = store_->SetListEnabled("ngo-b", false, Ctx());
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code(), ErrorCode::kCorruptData);
    EXPECT_EQ(refused.error().message(),
              "the store was changed outside Bantay: " + what +
                  ", and no change is signed over it (see bantay index verify)");
    EXPECT_EQ(VersionOf(*store_), 4u);
  }

  Follower follower_;
  std::unique_ptr<db::Connection> raw_;
};

TEST_P(StoreIndexTamperTest, AVersionWithoutASignature) {
  Sql("UPDATE lists SET enabled = 0 WHERE name = 'hotline-a'");
  Sql("UPDATE state SET version = version + 1");
  ExpectRefused(
      "the changes from version 4 to 5 do not verify: the store holds 0 signed versions and 0 "
      "audit records for them");
}

// (Its versions and audit records end where its state row does.)
TEST_P(StoreIndexTamperTest, AnOlderCopyOfTheDatabase) {
  STORE_ASSERT_OK(bantay::testing::DropAppendOnlyTriggers(*raw_, sqlite()));
  Sql("DELETE FROM versions WHERE version = 4");
  Sql("DELETE FROM audit WHERE seq = 4");
  Sql("UPDATE state SET version = version - 1");
  ExpectRefused(
      "the changes from version 4 to 3 do not verify: the store went back to an older version "
      "(an older copy of the database?)");
}

// The state row set back after a signed change: a follower told "nothing
// changed" would never look further, and a load would adopt the older
// version. Both are refused.
TEST_P(StoreIndexTamperTest, AStateRowHeldBack) {
  STORE_ASSERT_OK(store_->SetListEnabled("ngo-b", false, Ctx()));  // v5
  Sql("UPDATE state SET version = 4");
  const std::string message =
      "the store's state row says version 4, but version 5 is signed (the state row was "
      "edited outside the store)";
  const Status s = VerifyNext(follower_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(s.error().message(), message);
  EXPECT_EQ(LoadRefusal(SignerPublic()), message);
  // The server polls Version(): it must not say "nothing changed" either.
  const Result<uint64_t> polled = store_->Version();
  ASSERT_FALSE(polled.ok());
  EXPECT_EQ(polled.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(polled.error().message(), message);
  Sql("UPDATE state SET version = 5");
  Catch(follower_);
  EXPECT_EQ(Ids(*follower_, 2), (std::vector<uint64_t>{}));
}

// The store's public key replaced with SQL, the current version re-signed
// and a new one signed with another key: the follower trusts the key it was
// given.
TEST_P(StoreIndexTamperTest, AVersionSignedByAnotherKey) {
  std::array<uint8_t, 32> seed{};
  RandomBytes(seed);
  const PublicKey other = SigningKey::FromSeed(seed)->public_key();
  const std::vector<db::Param> params = {db::Param::Blob(other)};
  STORE_ASSERT_OK(raw_->Execute("UPDATE meta SET value = $1 WHERE key = 'public_key'", params));
  // The current version re-signed with it (or the store refuses to sign
  // over a version its key did not sign).
  STORE_ASSERT_OK(bantay::testing::DropAppendOnlyTriggers(*raw_, sqlite()));
  Result<VersionRecord> current = store_->Root(4);
  STORE_ASSERT_OK(current);
  const Signature resigned =
      SigningKey::FromSeed(seed)->Sign(VersionSigningMessage(store_->store_id(), *current));
  const std::vector<db::Param> record = {db::Param::Blob(other), db::Param::Blob(resigned)};
  STORE_ASSERT_OK(raw_->Execute(
      "UPDATE versions SET public_key = $1, signature = $2 WHERE version = 4", record));
  StoreKeys keys;
  keys.data_keys = {key_};
  keys.signing_key = SigningKey::FromSeed(seed).value();
  std::unique_ptr<Store> forger = Open(std::move(keys));
  ASSERT_NE(forger, nullptr);
  STORE_ASSERT_OK(forger->SetListEnabled("hotline-a", false, Ctx("mallory")));
  ExpectRefused(
      "the changes from version 4 to 5 do not verify: the signature of version 5 does not "
      "verify against the trusted key");
}

TEST_P(StoreIndexTamperTest, AnEditedAuditRecord) {
  STORE_ASSERT_OK(store_->SetListEnabled("ngo-b", false, Ctx()));
  STORE_ASSERT_OK(bantay::testing::DropAppendOnlyTriggers(*raw_, sqlite()));
  Sql("UPDATE audit SET actor = 'someone-else' WHERE seq = 5");
  ExpectRefused(
      "the changes from version 4 to 5 do not verify: audit record 5 was modified (its digest "
      "does not match)");
}

// The entries' own columns: a new entry's reference rewritten (its leaf no
// longer matches its fields).
TEST_P(StoreIndexTamperTest, AnEditedNewEntry) {
  Add("ngo-b", SignalType::kPdq, pdq_[1], "case-4");
  Sql("UPDATE entries SET reference = 'case-999' WHERE id = 4");
  ExpectRefused(
      "the changes from version 4 to 5 do not verify: entry 4: its fields do not match its leaf "
      "hash (modified)");
}

// A signed disabling hidden from the feed (the row made to look unchanged):
// the index would go on matching an entry the operator disabled.
TEST_P(StoreIndexTamperTest, AChangeHiddenFromTheFeed) {
  STORE_ASSERT_OK(store_->SetEntriesStatus({1}, EntryStatus::kDisabled, Ctx()));
  Sql("UPDATE entries SET status_version = 2 WHERE id = 1");
  ExpectRefused(
      "the changes from version 4 to 5 do not verify: the entries do not give the signed root "
      "of version 5 (entries changed outside the store)");
}

TEST_P(StoreIndexTamperTest, ARemovalHiddenFromTheFeed) {
  STORE_ASSERT_OK(store_->RemoveEntries({3}, Ctx()));
  Sql("DELETE FROM removals WHERE id = 3");
  ExpectRefused(
      "the changes from version 4 to 5 do not verify: the entries do not give the signed root "
      "of version 5 (entries changed outside the store)");
}

// The writer refuses to sign a change over a store edited behind its back
// (the new root would be computed from the database as it finds it, and the
// new audit record would chain on from the last one): a row deleted, a list
// disabled, the current version's record rewritten, its audit record
// rewritten with a digest that recomputes.
TEST_P(StoreIndexTamperTest, NoChangeIsSignedOverARowDeleted) {
  Sql("DELETE FROM entries WHERE id = 2");
  ExpectWriterRefuses("its entries do not give the signed root of version 4");
}

TEST_P(StoreIndexTamperTest, NoChangeIsSignedOverAListDisabled) {
  Sql("UPDATE lists SET enabled = 0 WHERE name = 'hotline-a'");
  ExpectWriterRefuses("its entries do not give the signed root of version 4");
}

TEST_P(StoreIndexTamperTest, NoChangeIsSignedOverARewrittenVersionRecord) {
  STORE_ASSERT_OK(bantay::testing::DropAppendOnlyTriggers(*raw_, sqlite()));
  Sql("DELETE FROM entries WHERE id = 2");
  Sql("UPDATE versions SET active_count = 2 WHERE version = 4");
  ExpectWriterRefuses("the signature of version 4 does not verify");
  Sql("DELETE FROM versions WHERE version = 4");
  ExpectWriterRefuses("version 4 has no signed record");
}

TEST_P(StoreIndexTamperTest, NoChangeIsChainedOntoARewrittenAuditRecord) {
  Result<std::vector<AuditRecord>> last = store_->Audit(3, 1);
  STORE_ASSERT_OK(last);
  ASSERT_EQ(last->size(), 1u);
  AuditRecord edited = last->front();
  edited.actor = "someone-else";
  edited.digest = AuditRecordDigest(edited);  // no key needed
  STORE_ASSERT_OK(bantay::testing::DropAppendOnlyTriggers(*raw_, sqlite()));
  const std::vector<db::Param> params = {db::Param::Text(edited.actor),
                                         db::Param::Blob(edited.digest)};
  STORE_ASSERT_OK(
      raw_->Execute("UPDATE audit SET actor = $1, digest = $2 WHERE seq = 4", params));
  ExpectWriterRefuses("the last audit record is not the one version 4 signed");
}

// Change sets that no database gives, made by hand from a real one: each
// check of Next in turn.
TEST_P(StoreIndexTamperTest, HandMadeChangeSets) {
  STORE_ASSERT_OK(store_->SetListEnabled("ngo-b", false, Ctx()));
  Add("hotline-a", SignalType::kPdq, pdq_[1], "case-4");  // v6, id 4
  Result<ChangeSet> real = store_->ChangesSince(4);
  STORE_ASSERT_OK(real);
  ASSERT_EQ(real->upserts.size(), 1u);
  const std::string prefix = "the changes from version 4 to 6 do not verify: ";
  auto expect = [&](const ChangeSet& changes, const std::string& what) {
    Result<VerifiedStoreState> next = follower_.verified->Next(changes);
    ASSERT_FALSE(next.ok()) << what;
    EXPECT_EQ(next.error().code(), ErrorCode::kCorruptData);
    EXPECT_EQ(next.error().message(), prefix + what);
  };
  STORE_ASSERT_OK(follower_.verified->Next(*real));

  ChangeSet c = *real;
  c.versions[1].version = 9;
  expect(c, "version or audit record 6 is missing");
  c = *real;
  c.audit[0].prev_digest[0] ^= 1;
  c.audit[0].digest = AuditRecordDigest(c.audit[0]);
  expect(c, "audit record 5 does not link to the record before it");
  c = *real;
  c.audit[1].actor = "someone-else";
  c.audit[1].digest = AuditRecordDigest(c.audit[1]);
  expect(c, "version 6 is not bound to audit record 6");
  c = *real;
  c.upserts[0].reference = "case-999";
  expect(c, "entry 4: its fields do not match its leaf hash (modified)");
  c = *real;
  c.upserts[0].id = 1;  // a known id, with fields and leaf that agree
  c.upsert_leaves[0] = EntryLeafHash(c.upserts[0]);
  expect(c, "entry 1 is not the entry it was");
  c = *real;
  c.removed = {4};
  expect(c, "entry 4 was removed but is in the store");
  c = *real;
  std::erase_if(c.lists, [](const auto& l) { return l.first == "ngo-b"; });
  expect(c, "entry 3 is in list ngo-b, which the store does not hold");
}

// Legitimate changes after a refused one are still refused together with
// it; once the database is put right, they verify and apply.
TEST_P(StoreIndexTamperTest, RepairedChangesVerifyAgain) {
  STORE_ASSERT_OK(store_->SetEntriesStatus({1}, EntryStatus::kDisabled, Ctx()));
  Sql("UPDATE entries SET status_version = 2 WHERE id = 1");
  Add("ngo-b", SignalType::kPdq, pdq_[1], "case-4");
  ExpectRefused(
      "the changes from version 4 to 6 do not verify: the entries do not give the signed root "
      "of version 6 (entries changed outside the store)");
  Sql("UPDATE entries SET status_version = 5 WHERE id = 1");
  Catch(follower_);
  EXPECT_EQ(Ids(*follower_, 0), (std::vector<uint64_t>{}));
  EXPECT_EQ(Ids(*follower_, 3), (std::vector<uint64_t>{4}));
}

// The load: a row edited, a row deleted, a list disabled, and another key.
TEST_P(StoreIndexTamperTest, ALoadChecksEveryRowAndTheSignedRoot) {
  STORE_ASSERT_OK(VerifiedLoad(SignerPublic()));
  std::array<uint8_t, 32> seed{};
  RandomBytes(seed);
  EXPECT_EQ(LoadRefusal(SigningKey::FromSeed(seed)->public_key()),
            "version 4: the signature does not verify against the trusted key");
  Sql("UPDATE entries SET category = 'B9' WHERE id = 3");
  EXPECT_EQ(LoadRefusal(SignerPublic()),
            "entry 3: its fields do not match its leaf hash (modified)");
  Sql("UPDATE entries SET category = 'A1' WHERE id = 3");
  STORE_ASSERT_OK(VerifiedLoad(SignerPublic()));
  Sql("UPDATE lists SET enabled = 0 WHERE name = 'ngo-b'");
  EXPECT_EQ(LoadRefusal(SignerPublic()),
            "the entries do not give the signed root of version 4 (entries changed outside the "
            "store)");
  Sql("UPDATE lists SET enabled = 1 WHERE name = 'ngo-b'");
  Sql("DELETE FROM entries WHERE id = 2");
  EXPECT_EQ(LoadRefusal(SignerPublic()),
            "the entries do not give the signed root of version 4 (entries changed outside the "
            "store)");
}

// --- What the signed state covers beyond the active entries ---------------

// The writer's refusal when the database read back after a change is not
// what the change made.
constexpr std::string_view kNotAsThisChangeMadeIt =
    "the store was changed outside Bantay: the database does not hold the entries and lists as "
    "this change made them (a trigger, a rule or another writer changed them), and nothing is "
    "signed (see bantay index verify)";

// The reviewer's attack on the root alone: an entry of a disabled list (or a
// disabled entry) is not in the Merkle tree, so its status was the
// database's word; set back to active with SQL, it was signed as found the
// next time the operator enabled the list, and every replica matched it.
// The state digest covers it: the follower, the load, the writer and
// Verify each refuse the edit.
class StoreIndexStateTest : public StoreIndexTamperTest {
 protected:
  // Version 6: entry 3 disabled (v5) in list ngo-b, disabled (v6); the
  // follower there.
  void SetUp() override {
    StoreIndexTamperTest::SetUp();
    STORE_ASSERT_OK(store_->SetEntriesStatus({3}, EntryStatus::kDisabled, Ctx()));
    STORE_ASSERT_OK(store_->SetListEnabled("ngo-b", false, Ctx()));
    Catch(follower_);
    ASSERT_EQ(follower_.verified->version(), 6u);
  }

  // Each reader of the store refuses it at version `version`, and the
  // operator's next change (enabling ngo-b) is not signed.
  // Defined with the tests that use it (below).
  void ExpectAForeignTriggerCaughtWhenItFires(const std::string& name);
  void ExpectTheSameRefusalWithTheWriter(const std::string& edit);

  void ExpectEveryoneRefuses(uint64_t version) {
    const std::string name = "version " + std::to_string(version);
    EXPECT_EQ(LoadRefusal(SignerPublic()),
              "the entries' and lists' states do not give the signed state of " + name +
                  " (an entry's status, an entry or a list changed outside the store)");
    const Result<uint64_t> refused = store_->SetListEnabled("ngo-b", true, Ctx());
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code(), ErrorCode::kCorruptData);
    EXPECT_EQ(refused.error().message(),
              "the store was changed outside Bantay: the states of its entries and lists are "
              "not the ones " + name +
                  " signed (an entry or a list changed, added or deleted), and no change is "
                  "signed over it (see bantay index verify)");
    EXPECT_EQ(VersionOf(*store_), version);
    Result<VerifyReport> report = store_->Verify(SignerPublic());
    STORE_ASSERT_OK(report);
    EXPECT_EQ(report->problems,
              (std::vector<std::string>{
                  "the entries' and lists' states do not give the signed state of " + name +
                  " (an entry's status, an entry or a list changed outside the store)"}));
  }
};

TEST_P(StoreIndexStateTest, EveryVersionSignsTheWholeState) {
  Result<VersionRecord> record = store_->Root(6);
  STORE_ASSERT_OK(record);
  ASSERT_TRUE(record->state_digest.has_value());
  // Entries 1 (active), 2 (active), 3 (disabled); both lists as they are.
  StateDigester expected;
  for (const StoredEntry& e : AllEntries(*store_)) {
    expected.AddEntry(e.id, EntryLeafHash(e), e.status == EntryStatus::kActive, e.list);
  }
  Result<Digest32> digest = expected.Finish({{"ngo-b", false}, {"hotline-a", true}});
  STORE_ASSERT_OK(digest);
  EXPECT_EQ(*record->state_digest, *digest);
  EXPECT_EQ(record->active_count, 2u);
  // The signature covers it (format 2): without it, the record does not
  // verify as one of format 1.
  EXPECT_TRUE(VerifySignature(SignerPublic(), VersionSigningMessage(store_->store_id(), *record),
                              record->signature));
  VersionRecord stripped = *record;
  stripped.state_digest.reset();
  EXPECT_FALSE(VerifySignature(SignerPublic(),
                               VersionSigningMessage(store_->store_id(), stripped),
                               record->signature));
  EXPECT_EQ(AllEntries(*store_).size(), 3u);
}

TEST_P(StoreIndexStateTest, ADisabledEntryReactivatedInADisabledList) {
  Sql("UPDATE entries SET status = 0 WHERE id = 3");
  ExpectEveryoneRefuses(6);
}

// The same edit made right after a legitimate change, marked as part of it
// so that the change feed carries it: the follower does not apply it.
TEST_P(StoreIndexStateTest, AReactivationSlippedIntoTheFeed) {
  Add("hotline-a", SignalType::kPdq, pdq_[1], "case-4");  // v7
  Sql("UPDATE entries SET status = 0, status_version = 7 WHERE id = 3");
  ExpectRefused(6,
                "the changes from version 6 to 7 do not verify: the entries' and lists' states "
                "do not give the signed state of version 7 (an entry's status, an entry or a "
                "list changed outside the store)");
  ExpectEveryoneRefuses(7);
}

// A removed entry's row put back (its fields and leaf agree, and it is in a
// disabled list, so the root does not change).
TEST_P(StoreIndexStateTest, ARemovedEntryPutBack) {
  Sql("CREATE TABLE saved AS SELECT * FROM entries WHERE id = 3");
  STORE_ASSERT_OK(store_->RemoveEntries({3}, Ctx()));  // v7
  Catch(follower_);
  Sql("INSERT INTO entries SELECT * FROM saved");
  ExpectEveryoneRefuses(7);
}

// A disabled list's row deleted (a later describe would re-create it
// enabled), and a list added.
TEST_P(StoreIndexStateTest, AListDeletedOrAdded) {
  STORE_ASSERT_OK(store_->DescribeList("empty-c", "no entries", Ctx()));  // v7
  STORE_ASSERT_OK(store_->SetListEnabled("empty-c", false, Ctx()));       // v8
  Catch(follower_);
  Sql("DELETE FROM lists WHERE name = 'empty-c'");
  ExpectEveryoneRefuses(8);
  Sql("INSERT INTO lists (name, enabled, description, created_version, changed_version) "
      "VALUES ('empty-c', 0, 'no entries', 7, 8)");
  STORE_ASSERT_OK(VerifiedLoad(SignerPublic()));
  Sql("INSERT INTO lists (name, enabled, description, created_version, changed_version) "
      "VALUES ('extra-d', 1, '', 8, 8)");
  ExpectEveryoneRefuses(8);
}

// An entry's row moved to another list (its leaf still names the list it
// was signed in, so only a check with the data key would find it; and its
// activity follows the row's list).
TEST_P(StoreIndexStateTest, AnEntryMovedToAnotherList) {
  Sql("UPDATE entries SET list = 'hotline-a' WHERE id = 3");
  const Result<uint64_t> refused = store_->SetListEnabled("ngo-b", true, Ctx());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message(),
            "the store was changed outside Bantay: the states of its entries and lists are not "
            "the ones version 6 signed (an entry or a list changed, added or deleted), and no "
            "change is signed over it (see bantay index verify)");
  EXPECT_EQ(LoadRefusal(SignerPublic()),
            "entry 3: its fields do not match its leaf hash (modified)");
}

// A trigger set up in advance edits the database while the operator's
// change is being made (after the writer's check): the writer compares the
// database with the change it made before it signs.
TEST_P(StoreIndexStateTest, AnEditMadeByATriggerDuringAChangeIsNotSigned) {
  if (sqlite()) {
    Sql("CREATE TRIGGER zz AFTER INSERT ON audit BEGIN "
        "UPDATE entries SET status = 0, status_version = NEW.seq WHERE id = 3; END");
  } else {
    STORE_ASSERT_OK(raw_->ExecScript(
        "CREATE FUNCTION zz() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "UPDATE entries SET status = 0, status_version = NEW.seq WHERE id = 3; RETURN NEW; "
        "END $$; CREATE TRIGGER zz AFTER INSERT ON audit FOR EACH ROW EXECUTE FUNCTION zz();"));
  }
  const Result<uint64_t> refused = store_->DescribeList("hotline-a", "unrelated", Ctx());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(refused.error().message(), kNotAsThisChangeMadeIt);
  EXPECT_EQ(VersionOf(*store_), 6u);
  STORE_ASSERT_OK(VerifiedLoad(SignerPublic()));  // rolled back, the edit with it
  Sql(sqlite() ? "DROP TRIGGER zz" : "DROP TRIGGER zz ON audit");
  STORE_ASSERT_OK(store_->DescribeList("hotline-a", "unrelated", Ctx()));  // v7
  Catch(follower_);
  EXPECT_EQ(Ids(*follower_, 2), (std::vector<uint64_t>{}));
}

// A version signed without a state digest after one signed with it (an
// older Bantay writing to an upgraded store; here signed by hand with the
// operator's key): the follower refuses it.
TEST_P(StoreIndexStateTest, NoVersionGoesBackToSigningTheRootAlone) {
  STORE_ASSERT_OK(store_->SetEntriesStatus({1}, EntryStatus::kDisabled, Ctx()));  // v7
  Result<ChangeSet> real = store_->ChangesSince(6);
  STORE_ASSERT_OK(real);
  ASSERT_EQ(real->versions.size(), 1u);
  ChangeSet c = *real;
  c.versions[0].state_digest.reset();
  c.versions[0].signature = Signer().Sign(VersionSigningMessage(store_->store_id(), c.versions[0]));
  Result<VerifiedStoreState> next = follower_.verified->Next(c);
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(next.error().message(),
            "the changes from version 6 to 7 do not verify: version 7 is signed without a "
            "state digest, after a version signed with one");
  STORE_ASSERT_OK(follower_.verified->Next(*real));
}

// Put right, the store is served and changed again.
TEST_P(StoreIndexStateTest, RepairedTheStateVerifiesAgain) {
  Sql("UPDATE entries SET status = 0 WHERE id = 3");
  ExpectEveryoneRefuses(6);
  Sql("UPDATE entries SET status = 1 WHERE id = 3");
  STORE_ASSERT_OK(VerifiedLoad(SignerPublic()));
  STORE_ASSERT_OK(store_->SetListEnabled("ngo-b", true, Ctx()));  // v7
  Catch(follower_);
  EXPECT_EQ(Ids(*follower_, 2), (std::vector<uint64_t>{}));  // entry 3 stays disabled
  Result<VerifyReport> report = store_->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok());
}

// The lists of the verified version, counted from the state the follower
// holds: what the store counts in the database (descriptions aside).
TEST_P(StoreIndexStateTest, TheVerifiedStateCountsEachListsEntries) {
  STORE_ASSERT_OK(store_->DescribeList("empty-c", "no entries", Ctx()));  // v7
  Catch(follower_);
  const std::vector<ListInfo> lists = follower_.verified->Lists();
  ASSERT_EQ(lists.size(), 3u);
  const std::vector<std::tuple<std::string, bool, uint64_t, uint64_t>> expected = {
      {"empty-c", true, 0, 0}, {"hotline-a", true, 2, 0}, {"ngo-b", false, 0, 1}};
  Result<std::vector<ListInfo>> stored = store_->Lists();
  STORE_ASSERT_OK(stored);
  ASSERT_EQ(stored->size(), 3u);
  for (size_t i = 0; i < expected.size(); ++i) {
    const auto& [name, enabled, active, disabled] = expected[i];
    EXPECT_EQ(lists[i].name, name);
    EXPECT_EQ(lists[i].enabled, enabled) << name;
    EXPECT_EQ(lists[i].active, active) << name;
    EXPECT_EQ(lists[i].disabled, disabled) << name;
    EXPECT_EQ(lists[i].description, "") << name;
    EXPECT_EQ((*stored)[i].name, name);
    EXPECT_EQ((*stored)[i].active, active) << name;
    EXPECT_EQ((*stored)[i].disabled, disabled) << name;
  }
  // Without counts, the store reads the lists alone.
  Result<std::vector<ListInfo>> uncounted = store_->Lists(/*count_entries=*/false);
  STORE_ASSERT_OK(uncounted);
  ASSERT_EQ(uncounted->size(), 3u);
  EXPECT_EQ((*uncounted)[0].description, "no entries");
  EXPECT_EQ((*uncounted)[2].enabled, false);
  EXPECT_EQ((*uncounted)[1].active, 0u);
}

// --- The writer's kept state ------------------------------------------------

// A change starts from the state the Store's own last change left, as long
// as no other connection has written since: every kind of change made that
// way gives versions a follower, a load and Verify accept, and anything
// another connection writes (even an edit no version signs) makes the next
// change read and check everything again. SQLite tells by its data version;
// on PostgreSQL the rows written by another transaction carry its id.
TEST_P(StoreIndexStateTest, AChangeStartsFromTheLastOnesStateWhileNoOneElseWrote) {
  // The changes of SetUp left their state (the first, after Init, checked).
  const Store::ChangeStarts at_start = store_->change_starts();
  auto expect_starts = [&](uint64_t checked, uint64_t kept) {
    const Store::ChangeStarts now = store_->change_starts();
    EXPECT_EQ(now.checked - at_start.checked, checked);
    EXPECT_EQ(now.kept - at_start.kept, kept);
  };
  STORE_ASSERT_OK(store_->DescribeList("hotline-a", "first", Ctx()));           // v7
  STORE_ASSERT_OK(store_->SetListEnabled("ngo-b", true, Ctx()));                // v8
  STORE_ASSERT_OK(store_->SetEntriesStatus({3}, EntryStatus::kActive, Ctx()));  // v9
  Add("new-c", SignalType::kPdq, pdq_[1], "case-4");                            // v10
  STORE_ASSERT_OK(store_->RemoveEntries({2}, Ctx()));                           // v11
  // Nothing to change: no version, and the state is kept all the same.
  ASSERT_EQ(VersionOf(*store_), 11u);
  EXPECT_EQ(*store_->SetListEnabled("ngo-b", true, Ctx()), 11u);
  expect_starts(0, 6);
  STORE_ASSERT_OK(store_->DescribeList("new-c", "kept after nothing changed", Ctx()));  // v12
  expect_starts(0, 7);
  Catch(follower_);
  EXPECT_EQ(Ids(*follower_, 2), (std::vector<uint64_t>{3}));
  EXPECT_EQ(Ids(*follower_, 1), (std::vector<uint64_t>{}));
  EXPECT_EQ(Ids(*follower_, 3), (std::vector<uint64_t>{4}));
  STORE_ASSERT_OK(VerifiedLoad(SignerPublic()));
  Result<VerifyReport> report = store_->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok());

  // A description is not signed; edited by another connection, the next
  // change checks everything (and finds the signed state intact).
  Sql("UPDATE lists SET description = 'edited elsewhere' WHERE name = 'hotline-a'");
  STORE_ASSERT_OK(store_->SetEntriesStatus({1}, EntryStatus::kDisabled, Ctx()));  // v13
  expect_starts(1, 7);
  // A change that fails drops the kept state: the next one checks.
  const Result<uint64_t> missing = store_->RemoveEntries({99}, Ctx());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  expect_starts(1, 8);
  STORE_ASSERT_OK(store_->SetEntriesStatus({1}, EntryStatus::kActive, Ctx()));  // v14
  expect_starts(2, 8);
  Catch(follower_);
  EXPECT_EQ(Ids(*follower_, 0), (std::vector<uint64_t>{1}));
}

// Whatever another connection writes between two changes of a Store, the
// next change reads and checks everything, and refuses what no version
// signed: an edit undone at once (the values as they were, the rows
// rewritten), a change of a table's definition undone at once, which writes
// no row (on PostgreSQL, seen in the catalog's rows; SQLite counts any
// commit), and a row deleted (the rows fewer).
TEST_P(StoreIndexStateTest, AnyWriteOfAnotherConnectionMakesTheNextChangeCheck) {
  const Store::ChangeStarts at_start = store_->change_starts();
  auto expect_starts = [&](uint64_t checked, uint64_t kept) {
    EXPECT_EQ(store_->change_starts().checked - at_start.checked, checked);
    EXPECT_EQ(store_->change_starts().kept - at_start.kept, kept);
  };
  STORE_ASSERT_OK(store_->DescribeList("hotline-a", "first", Ctx()));  // v7
  expect_starts(0, 1);
  // Entry 3 is disabled (status 1): enabled and disabled again.
  Sql("UPDATE entries SET status = 0 WHERE id = 3");
  Sql("UPDATE entries SET status = 1 WHERE id = 3");
  STORE_ASSERT_OK(store_->DescribeList("hotline-a", "second", Ctx()));  // v8
  expect_starts(1, 1);
  STORE_ASSERT_OK(store_->DescribeList("hotline-a", "third", Ctx()));  // v9
  expect_starts(1, 2);
  if (sqlite()) {
    Sql("PRAGMA user_version = 7");
  } else {
    Sql("ALTER TABLE lists ALTER COLUMN description SET DEFAULT ''");
    Sql("ALTER TABLE lists ALTER COLUMN description DROP DEFAULT");
  }
  STORE_ASSERT_OK(store_->DescribeList("hotline-a", "fourth", Ctx()));  // v10
  expect_starts(2, 2);
  STORE_ASSERT_OK(store_->SetEntriesStatus({1}, EntryStatus::kDisabled, Ctx()));  // v11
  expect_starts(2, 3);
  Sql("DELETE FROM entries WHERE id = 3");
  const Result<uint64_t> refused = store_->DescribeList("hotline-a", "fifth", Ctx());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(refused.error().message(),
            "the store was changed outside Bantay: the states of its entries and lists are not "
            "the ones version 11 signed (an entry or a list changed, added or deleted), and no "
            "change is signed over it (see bantay index verify)");
  EXPECT_EQ(VersionOf(*store_), 11u);
  Catch(follower_);
  EXPECT_EQ(Ids(*follower_, 0), (std::vector<uint64_t>{}));
}

// An index of someone else's on the store's tables: the schema is not
// Bantay's own, so no change starts from kept state, and each reads the
// database back. On PostgreSQL the index's expression calls a function
// that disables entry 1 whenever a removal is logged (within the change's
// own transaction, so the rows it writes carry the change's id): the
// change that removes an entry is refused, nothing signed.
TEST_P(StoreIndexStateTest, AnIndexOfAnyoneElsesMakesEveryChangeCheck) {
  if (sqlite()) {
    Sql("CREATE INDEX zz ON removals (id)");
  } else {
    STORE_ASSERT_OK(raw_->ExecScript(
        "CREATE FUNCTION zz_v(bigint) RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN "
        "UPDATE entries SET status = 1 WHERE id = 1 AND status = 0; RETURN $1; END $$; "
        "CREATE FUNCTION zz(bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN "
        "RETURN zz_v($1); END $$; CREATE INDEX zz ON removals ((zz(id)));"));
  }
  const Store::ChangeStarts at_start = store_->change_starts();
  STORE_ASSERT_OK(store_->DescribeList("hotline-a", "first", Ctx()));   // v7
  STORE_ASSERT_OK(store_->DescribeList("hotline-a", "second", Ctx()));  // v8
  EXPECT_EQ(store_->change_starts().checked, at_start.checked + 2);
  EXPECT_EQ(store_->change_starts().kept, at_start.kept);
  const Result<uint64_t> removed = store_->RemoveEntries({2}, Ctx());
  if (sqlite()) {
    STORE_ASSERT_OK(removed);  // v9: a plain index does nothing
    Catch(follower_);
    EXPECT_EQ(Ids(*follower_, 0), (std::vector<uint64_t>{1}));
    return;
  }
  ASSERT_FALSE(removed.ok());
  EXPECT_EQ(removed.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(removed.error().message(), kNotAsThisChangeMadeIt);
  EXPECT_EQ(VersionOf(*store_), 8u);
  Catch(follower_);
  EXPECT_EQ(Ids(*follower_, 0), (std::vector<uint64_t>{1}));
}

// The store's meta table replaced by a view (on PostgreSQL one whose rows
// run a function that, inside a change, queues a deferred trigger to
// disable entry 1 at the commit): the schema is not Bantay's own, so the
// change reads the database back, with the deferred triggers made to act
// before it, and refuses.
TEST_P(StoreIndexStateTest, CodeRunByReadingMetaIsCaughtBeforeTheCommit) {
  STORE_ASSERT_OK(store_->DescribeList("hotline-a", "first", Ctx()));  // v7
  if (sqlite()) {
    STORE_ASSERT_OK(raw_->ExecScript(
        "ALTER TABLE meta RENAME TO meta_t; CREATE VIEW meta AS SELECT key, value FROM meta_t;"));
  } else {
    STORE_ASSERT_OK(raw_->ExecScript(
        "CREATE TABLE bait (x int); "
        "CREATE FUNCTION at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "UPDATE entries SET status = 1 WHERE id = 1; RETURN NULL; END $$; "
        "CREATE CONSTRAINT TRIGGER bait_t AFTER INSERT ON bait DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION at_commit(); "
        "CREATE FUNCTION evil() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
        "IF current_setting('lock_timeout') = '30s' THEN INSERT INTO bait VALUES (1); END IF; "
        "RETURN true; END $$; "
        "ALTER TABLE meta RENAME TO meta_t; "
        "CREATE VIEW meta AS SELECT key, value FROM meta_t WHERE evil();"));
  }
  const Store::ChangeStarts at_start = store_->change_starts();
  const Result<uint64_t> changed = store_->DescribeList("hotline-a", "second", Ctx());
  EXPECT_EQ(store_->change_starts().kept, at_start.kept);
  if (sqlite()) {
    STORE_ASSERT_OK(changed);  // v8: a plain view runs nothing
    EXPECT_EQ(store_->change_starts().checked, at_start.checked + 1);
    return;
  }
  ASSERT_FALSE(changed.ok());
  EXPECT_EQ(changed.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(changed.error().message(), kNotAsThisChangeMadeIt);
  EXPECT_EQ(VersionOf(*store_), 7u);
  Catch(follower_);
  EXPECT_EQ(Ids(*follower_, 0), (std::vector<uint64_t>{1}));
}

// A search path set for the database that puts the public schema before
// PostgreSQL's own catalog, and a function there named as a built-in one a
// change's catalog check calls, which disables entry 1: a Store opened
// afterwards pins its own path (the catalog first), so the function never
// runs — its changes, from kept state too, leave entry 1 active and verify.
TEST_P(StoreIndexStateTest, ASearchPathSetForTheDatabaseRunsNothingOfAnyoneElses) {
  if (sqlite()) {
    // No search path and no functions in SQL: the same changes, as a baseline.
    std::unique_ptr<Store> opened = Open();
    ASSERT_NE(opened, nullptr);
    STORE_ASSERT_OK(opened->DescribeList("hotline-a", "first", Ctx()));   // v7
    STORE_ASSERT_OK(opened->DescribeList("hotline-a", "second", Ctx()));  // v8
    EXPECT_EQ(opened->change_starts().kept, 1u);
    return;
  }
  STORE_ASSERT_OK(raw_->ExecScript(
      "CREATE FUNCTION public.to_regclass(text) RETURNS regclass LANGUAGE plpgsql AS $$ BEGIN "
      "UPDATE entries SET status = 1 WHERE id = 1 AND status = 0; "
      "RETURN pg_catalog.to_regclass($1); END $$; "
      "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = public, pg_catalog', "
      "current_database()); END $$;"));
  std::unique_ptr<Store> opened = Open();
  ASSERT_NE(opened, nullptr);
  STORE_ASSERT_OK(opened->DescribeList("hotline-a", "first", Ctx()));   // v7
  STORE_ASSERT_OK(opened->DescribeList("hotline-a", "second", Ctx()));  // v8
  EXPECT_EQ(opened->change_starts().kept, 1u);
  Catch(follower_, opened.get());
  EXPECT_EQ(Ids(*follower_, 0), (std::vector<uint64_t>{1}));
  Result<VerifyReport> report = opened->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok());
}

// A function in the public schema whose argument types match better than
// a built-in polymorphic one the change's catalog check calls (unnest of
// text[] against unnest(anyarray)), which disables entry 1: it changes no
// catalog row of the store's tables, so a Store opened after it (whose
// statements are planned anew) starts its second change from kept state;
// the check runs with PostgreSQL's catalog alone on the search path, so the
// function never runs, entry 1 stays active, and the versions verify.
TEST_P(StoreIndexStateTest, AFunctionThatMatchesBetterThanABuiltInRunsNowhere) {
  if (!sqlite()) {
    STORE_ASSERT_OK(raw_->ExecScript(
        "CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$ "
        "BEGIN UPDATE entries SET status = 1 WHERE id = 1 AND status = 0; "
        "RETURN QUERY SELECT * FROM pg_catalog.unnest(a); END $$;"));
  }
  std::unique_ptr<Store> opened = Open();
  ASSERT_NE(opened, nullptr);
  STORE_ASSERT_OK(opened->DescribeList("hotline-a", "first", Ctx()));   // v7
  STORE_ASSERT_OK(opened->DescribeList("hotline-a", "second", Ctx()));  // v8
  EXPECT_EQ(opened->change_starts().checked, 1u);
  EXPECT_EQ(opened->change_starts().kept, 1u);
  int64_t status = -1;
  STORE_ASSERT_OK(raw_->Execute("SELECT status FROM entries WHERE id = 1", {},
                                [&](const db::Row& row) { status = row.Int(0); }));
  EXPECT_EQ(status, 0);
  Catch(follower_, opened.get());
  EXPECT_EQ(Ids(*follower_, 0), (std::vector<uint64_t>{1}));
  Result<VerifyReport> report = opened->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok());
}

// A trigger on the state row, which a change updates last: the change
// reads the database back after every one of its writes, and refuses.
TEST_P(StoreIndexStateTest, ATriggerOnTheStateRowIsCaught) {
  if (sqlite()) {
    Sql("CREATE TRIGGER zz AFTER UPDATE ON state BEGIN "
        "UPDATE entries SET status = 1 WHERE id = 1; END");
  } else {
    STORE_ASSERT_OK(raw_->ExecScript(
        "CREATE FUNCTION zz() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "UPDATE entries SET status = 1 WHERE id = 1; RETURN NULL; END $$; "
        "CREATE TRIGGER zz AFTER UPDATE ON state FOR EACH ROW EXECUTE FUNCTION zz();"));
  }
  const Result<uint64_t> refused = store_->DescribeList("hotline-a", "unrelated", Ctx());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(refused.error().message(), kNotAsThisChangeMadeIt);
  EXPECT_EQ(VersionOf(*store_), 6u);
  Catch(follower_);
  EXPECT_EQ(Ids(*follower_, 0), (std::vector<uint64_t>{1}));
}

// Another table whose foreign key refers to the store's lists (on delete,
// it could act): the schema is not Bantay's own, and every change checks.
TEST_P(StoreIndexStateTest, AForeignKeyOfAnotherTableMakesEveryChangeCheck) {
  Sql("CREATE TABLE side (l TEXT REFERENCES lists(name) ON DELETE CASCADE)");
  const Store::ChangeStarts at_start = store_->change_starts();
  STORE_ASSERT_OK(store_->DescribeList("hotline-a", "first", Ctx()));   // v7
  STORE_ASSERT_OK(store_->DescribeList("hotline-a", "second", Ctx()));  // v8
  EXPECT_EQ(store_->change_starts().checked, at_start.checked + 2);
  EXPECT_EQ(store_->change_starts().kept, at_start.kept);
}

// The signed versions deleted behind the append-only triggers (dropped on
// SQLite; on PostgreSQL by a superuser's session that fires no trigger,
// which leaves no row behind to carry its id): the next change finds the
// tables hold fewer rows than its kept state says, checks everything, and
// refuses.
TEST_P(StoreIndexStateTest, VersionsDeletedWithoutATraceAreFoundByTheNextChange) {
  STORE_ASSERT_OK(store_->DescribeList("hotline-a", "first", Ctx()));  // v7
  if (sqlite()) {
    Sql("DROP TRIGGER versions_no_delete");
    Sql("DELETE FROM versions");
  } else {
    STORE_ASSERT_OK(raw_->ExecScript(
        "SET session_replication_role = replica; DELETE FROM versions; "
        "RESET session_replication_role;"));
  }
  const Result<uint64_t> refused = store_->DescribeList("hotline-a", "second", Ctx());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(refused.error().message(),
            "the store was changed outside Bantay: version 7 has no signed record, and no "
            "change is signed over it (see bantay index verify)");
}

// A Store just opened (a server's writer) prepares its first change: it
// reads and checks the state then, writing nothing, and its first change
// starts from that state, unless another connection wrote meanwhile; a
// store changed outside Bantay is refused then as a change would be.
TEST_P(StoreIndexStateTest, AStoreJustOpenedPreparesItsFirstChange) {
  std::unique_ptr<Store> opened = Open();
  ASSERT_NE(opened, nullptr);
  auto expect_starts = [&](const Store& store, uint64_t checked, uint64_t kept) {
    const Store::ChangeStarts starts = store.change_starts();
    EXPECT_EQ(starts.checked, checked);
    EXPECT_EQ(starts.kept, kept);
  };
  STORE_ASSERT_OK(opened->PrepareChange());
  EXPECT_EQ(VersionOf(*store_), 6u);  // nothing written
  expect_starts(*opened, 1, 0);
  STORE_ASSERT_OK(opened->SetEntriesStatus({1}, EntryStatus::kDisabled, Ctx()));  // v7
  expect_starts(*opened, 1, 1);
  Catch(follower_, opened.get());
  EXPECT_EQ(Ids(*follower_, 0), (std::vector<uint64_t>{}));
  // Prepared again with a state kept: nothing done (the next change
  // decides whether it can use it).
  STORE_ASSERT_OK(opened->PrepareChange());
  expect_starts(*opened, 1, 1);

  // Another connection's change in between: the change checks everything.
  STORE_ASSERT_OK(store_->SetEntriesStatus({1}, EntryStatus::kActive, Ctx()));  // v8
  STORE_ASSERT_OK(opened->DescribeList("hotline-a", "described", Ctx()));       // v9
  expect_starts(*opened, 2, 1);
  Catch(follower_);
  EXPECT_EQ(Ids(*follower_, 0), (std::vector<uint64_t>{1}));

  // An entry's status edited with SQL after a Store prepared: its first
  // change checks everything, and refuses.
  std::unique_ptr<Store> prepared = Open();
  ASSERT_NE(prepared, nullptr);
  STORE_ASSERT_OK(prepared->PrepareChange());
  Sql("UPDATE entries SET status = 0 WHERE id = 3");
  const std::string edited =
      "the store was changed outside Bantay: the states of its entries and lists are not the "
      "ones version 9 signed (an entry or a list changed, added or deleted), and no change is "
      "signed over it (see bantay index verify)";
  const Result<uint64_t> change = prepared->SetEntriesStatus({1}, EntryStatus::kDisabled, Ctx());
  ASSERT_FALSE(change.ok());
  EXPECT_EQ(change.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(change.error().message(), edited);
  // (A start refused is not counted; from the kept state it would have
  // gone on and signed the edit.)
  expect_starts(*prepared, 1, 0);
  // And a Store preparing with the edit in place refuses it then.
  std::unique_ptr<Store> later = Open();
  ASSERT_NE(later, nullptr);
  const Status refused = later->PrepareChange();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(refused.error().message(), edited);
  EXPECT_EQ(VersionOf(*store_), 9u);
}

// A change that only adds entries (ids after every one, no list changing
// state) hashes only those, in the writer and in the follower: the state
// digest's hash over the entries before and the right edge of the Merkle
// tree go on. Every other change hashes the whole state again. Each version
// signed or accepted so is the one a verified load, which hashes every
// entry, finds.
TEST_P(StoreIndexStateTest, AChangeThatOnlyAddsEntriesHashesOnlyThose) {
  const uint64_t at_start = store_->change_starts().appended;
  uint64_t appended = 0;
  auto expect = [&](bool appends) {
    appended += appends ? 1 : 0;
    EXPECT_EQ(store_->change_starts().appended - at_start, appended);
    Catch(follower_);
    EXPECT_EQ(follower_.verified->appended(), appends);
    STORE_ASSERT_OK(VerifiedLoad(SignerPublic()));
  };
  Add("hotline-a", SignalType::kPdq, pdq_[1], "case-4");  // v7: id 4
  expect(true);
  Add("ngo-b", SignalType::kMd5, Md5Value("five"), "case-5");  // v8: id 5, list disabled
  expect(true);
  // Two lists at once, one of them new.
  values_.emplace_back(SignalType::kPdq, pdq_[2]);
  values_.emplace_back(SignalType::kSha256, Sha256Value("seven"));
  STORE_ASSERT_OK(store_->AddEntries(
      {Entry("new-c", SignalType::kPdq, pdq_[2], "A1", "case-6"),
       Entry("hotline-a", SignalType::kSha256, Sha256Value("seven"), "A1", "case-7")},
      Ctx()));  // v9: ids 6, 7
  expect(true);
  STORE_ASSERT_OK(store_->SetEntriesStatus({4}, EntryStatus::kDisabled, Ctx()));  // v10
  expect(false);
  Add("hotline-a", SignalType::kPdq, pdq_[3], "case-8");  // v11: id 8
  expect(true);
  STORE_ASSERT_OK(store_->SetListEnabled("ngo-b", true, Ctx()));  // v12
  expect(false);
  STORE_ASSERT_OK(store_->RemoveEntries({2}, Ctx()));  // v13
  expect(false);
  // A description is not in the state: nothing to hash.
  STORE_ASSERT_OK(store_->DescribeList("new-c", "described", Ctx()));  // v14
  expect(true);
  Add("new-c", SignalType::kMd5, Md5Value("nine"), "case-9");  // v15: id 9
  expect(true);
  ASSERT_EQ(VersionOf(*store_), 15u);

  const std::vector<std::vector<uint64_t>> ids = {{1}, {}, {}, {}, {5}, {6}, {7}, {8}, {9}};
  ExpectIds(*follower_, ids);
  Follower loaded = Load();
  ExpectSameMatches(*loaded, *follower_);
  Result<VerifyReport> report = store_->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok());
}

// What a verified state shows of itself: version, record, size, lists.
std::string Shown(const VerifiedStoreState& state) {
  std::string shown = std::to_string(state.version()) + " " +
                      models::ToHex(state.record().signature) + " " +
                      std::to_string(state.size());
  for (const ListInfo& l : state.Lists()) {
    shown += " " + l.name + (l.enabled ? "+" : "-") + std::to_string(l.active) + "/" +
             std::to_string(l.disabled);
  }
  return shown;
}

// A state moved on in place and put back (the index could not apply the
// changes) is the state it was: the same change set verifies again, whether
// it added entries (their hashes went on), changed an entry's or a list's
// state in place, or removed one (the entries merged again). One that does
// not verify leaves it as it was too.
TEST_P(StoreIndexStateTest, AnAdvanceUndoneLeavesTheStateAsItWas) {
  auto advance_undo_and_catch = [&](bool appends) {
    Result<ChangeSet> changes = store_->ChangesSince(follower_.verified->version());
    STORE_ASSERT_OK(changes);
    const std::string before = Shown(*follower_.verified);
    Result<VerifiedStoreState::Undo> undo = follower_.verified->Advance(*changes);
    STORE_ASSERT_OK(undo);
    EXPECT_EQ(follower_.verified->version(), VersionOf(*store_));
    EXPECT_EQ(follower_.verified->appended(), appends);
    EXPECT_NE(Shown(*follower_.verified), before);
    follower_.verified->Restore(std::move(*undo));
    EXPECT_EQ(Shown(*follower_.verified), before);
    // A status slipped into the change set: the state digest differs, and
    // the state is put back by Advance itself.
    if (!changes->upserts.empty()) {
      ChangeSet slipped = *changes;
      StoredEntry& e = slipped.upserts.back();
      e.status = e.status == EntryStatus::kActive ? EntryStatus::kDisabled : EntryStatus::kActive;
      Result<VerifiedStoreState::Undo> refused = follower_.verified->Advance(slipped);
      ASSERT_FALSE(refused.ok());
      EXPECT_EQ(refused.error().code(), ErrorCode::kCorruptData);
      EXPECT_EQ(Shown(*follower_.verified), before);
    }
    Catch(follower_);
    EXPECT_EQ(follower_.verified->appended(), appends);
  };
  Add("hotline-a", SignalType::kPdq, pdq_[1], "case-4");  // v7: id 4
  advance_undo_and_catch(true);
  STORE_ASSERT_OK(store_->SetEntriesStatus({1}, EntryStatus::kDisabled, Ctx()));  // v8
  advance_undo_and_catch(false);
  STORE_ASSERT_OK(store_->SetListEnabled("ngo-b", true, Ctx()));  // v9
  advance_undo_and_catch(false);
  // A removal and an add in one change set (the entries merged again).
  STORE_ASSERT_OK(store_->RemoveEntries({2}, Ctx()));                // v10
  Add("new-c", SignalType::kMd5, Md5Value("five"), "case-5");  // v11: id 5
  advance_undo_and_catch(false);
  Add("new-c", SignalType::kPdq, pdq_[2], "case-6");  // v12: id 6
  advance_undo_and_catch(true);
  ASSERT_EQ(follower_.verified->version(), 12u);

  ExpectIds(*follower_, {{}, {}, {}, {4}, {5}, {6}});  // 1 disabled, 2 removed, 3 disabled
  Follower loaded = Load();
  ExpectSameMatches(*loaded, *follower_);
  EXPECT_EQ(Shown(*follower_.verified), Shown(*loaded.verified));
}

// A follower that catches up several versions in one change set: an entry
// added and disabled since is still only added (above every id held); one
// added and removed since is a removal (the whole state hashed). A change
// that changes nothing, then an add; and an add by a Store just opened,
// whose change starts from the state it reads and checks.
TEST_P(StoreIndexStateTest, AFollowerCatchingUpSeveralChangesAtOnceHashesWhatTheyDid) {
  Add("hotline-a", SignalType::kPdq, pdq_[1], "case-4");                         // v7: id 4
  STORE_ASSERT_OK(store_->SetEntriesStatus({4}, EntryStatus::kDisabled, Ctx()));  // v8
  Catch(follower_);
  EXPECT_TRUE(follower_.verified->appended());
  Add("hotline-a", SignalType::kPdq, pdq_[2], "case-5");  // v9: id 5
  STORE_ASSERT_OK(store_->RemoveEntries({5}, Ctx()));     // v10
  Catch(follower_);
  EXPECT_FALSE(follower_.verified->appended());
  const uint64_t appended = store_->change_starts().appended;
  EXPECT_EQ(*store_->SetListEnabled("hotline-a", true, Ctx()), 10u);  // nothing changed
  Add("hotline-a", SignalType::kPdq, pdq_[3], "case-6");              // v11: id 6
  EXPECT_EQ(store_->change_starts().appended, appended + 1);
  Catch(follower_);
  EXPECT_TRUE(follower_.verified->appended());

  std::unique_ptr<Store> opened = Open();
  ASSERT_NE(opened, nullptr);
  values_.emplace_back(SignalType::kPdq, pdq_[4]);
  STORE_ASSERT_OK(opened->AddEntries({Entry("ngo-b", SignalType::kPdq, pdq_[4], "A1", "case-7")},
                                     Ctx()));  // v12: id 7, list disabled
  EXPECT_EQ(opened->change_starts().checked, 1u);
  EXPECT_EQ(opened->change_starts().appended, 1u);
  STORE_ASSERT_OK(VerifiedLoad(SignerPublic()));
  Catch(follower_);
  EXPECT_TRUE(follower_.verified->appended());
  const std::vector<std::vector<uint64_t>> ids = {{1}, {2}, {}, {}, {}, {6}, {}};
  ExpectIds(*follower_, ids);
}

// A follower in the writer's process verifies a change that does not only
// add entries against the hashes the writer signed, when its state after
// the change is the one the writer signed them over (the writer keeps its
// state); otherwise it hashes everything, as without.
TEST_P(StoreIndexStateTest, AFollowerTakesTheHashesItsWriterSignedOverTheSameState) {
  const Store* writer = store_.get();
  STORE_ASSERT_OK(store_->SetEntriesStatus({1}, EntryStatus::kDisabled, Ctx()));  // v7
  Catch(follower_, writer);
  EXPECT_TRUE(follower_.verified->from_writer());
  EXPECT_FALSE(follower_.verified->appended());
  Add("new-c", SignalType::kPdq, pdq_[1], "case-4");  // v8: id 4, only added
  Catch(follower_, writer);
  EXPECT_FALSE(follower_.verified->from_writer());
  EXPECT_TRUE(follower_.verified->appended());
  // Two versions in one change set: a list enabled, an entry removed.
  STORE_ASSERT_OK(store_->SetListEnabled("ngo-b", true, Ctx()));  // v9
  STORE_ASSERT_OK(store_->RemoveEntries({2}, Ctx()));             // v10
  Catch(follower_, writer);
  EXPECT_TRUE(follower_.verified->from_writer());
  // A change that changed nothing since keeps what the one before signed.
  STORE_ASSERT_OK(store_->SetEntriesStatus({3}, EntryStatus::kActive, Ctx()));  // v11
  EXPECT_EQ(*store_->SetListEnabled("ngo-b", true, Ctx()), 11u);
  Catch(follower_, writer);
  EXPECT_TRUE(follower_.verified->from_writer());
  // Another Store's change (another process's, as far as this one knows).
  std::unique_ptr<Store> other = Open();
  ASSERT_NE(other, nullptr);
  STORE_ASSERT_OK(other->SetEntriesStatus({3}, EntryStatus::kDisabled, Ctx()));  // v12
  Catch(follower_, writer);
  EXPECT_FALSE(follower_.verified->from_writer());
  // The writer's next change reads and checks everything first (another
  // connection wrote), and keeps what it signed as any other.
  STORE_ASSERT_OK(store_->SetEntriesStatus({3}, EntryStatus::kActive, Ctx()));  // v13
  Catch(follower_, writer);
  EXPECT_TRUE(follower_.verified->from_writer());
  STORE_ASSERT_OK(store_->SetEntriesStatus({4}, EntryStatus::kDisabled, Ctx()));  // v14
  Catch(follower_, writer);
  EXPECT_TRUE(follower_.verified->from_writer());
  const std::vector<std::vector<uint64_t>> ids = {{}, {}, {3}, {}};
  ExpectIds(*follower_, ids);
  Follower loaded = Load();
  ExpectSameMatches(*loaded, *follower_);
}

// An edit slipped into the feed right after the writer's change, of one
// thing the follower's state is compared on: with the writer at hand, the
// follower decides as it does without (and refuses). (A list's state is
// caught twice: SignedThis compares the lists, and the state digest Adopt
// checks hashes the follower's own lists after the writer's entries. An
// entry's list cannot change without its leaf: Next refuses first.)
void StoreIndexStateTest::ExpectTheSameRefusalWithTheWriter(const std::string& edit) {
  STORE_ASSERT_OK(store_->SetEntriesStatus({1}, EntryStatus::kDisabled, Ctx()));  // v7
  ASSERT_EQ(VersionOf(*store_), 7u);
  Sql(edit);
  const Status without = VerifyNext(follower_);
  const Status with = VerifyNext(follower_, store_.get());
  ASSERT_FALSE(without.ok());
  ASSERT_FALSE(with.ok());
  EXPECT_EQ(with.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(with.error().message(), without.error().message());
}

TEST_P(StoreIndexStateTest, AListsStateSlippedIntoTheFeedIsRefusedWithTheWriterAtHand) {
  ExpectTheSameRefusalWithTheWriter(
      "UPDATE lists SET enabled = 1, changed_version = 7 WHERE name = 'ngo-b'");
}

TEST_P(StoreIndexStateTest, AListAddedInTheFeedIsRefusedWithTheWriterAtHand) {
  ExpectTheSameRefusalWithTheWriter(
      "INSERT INTO lists (name, enabled, description, created_version, changed_version) "
      "VALUES ('extra', 1, '', 7, 7)");
}

TEST_P(StoreIndexStateTest, AnEntrysListChangedInTheFeedIsRefusedWithTheWriterAtHand) {
  ExpectTheSameRefusalWithTheWriter(
      "UPDATE entries SET list = 'ngo-b', status_version = 7 WHERE id = 2");
}

// An edit slipped into the feed right after the writer's change: the
// follower's state is not the one the writer signed, so it hashes its own
// and refuses, as without the writer.
TEST_P(StoreIndexStateTest, AnEditSlippedIntoTheFeedIsRefusedWithTheWriterAtHand) {
  STORE_ASSERT_OK(store_->SetEntriesStatus({1}, EntryStatus::kDisabled, Ctx()));  // v7
  Sql("UPDATE entries SET status = 0, status_version = 7 WHERE id = 3");
  const Status s = VerifyNext(follower_, store_.get());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(s.error().message(),
            "the changes from version 6 to 7 do not verify: the entries' and lists' states do "
            "not give the signed state of version 7 (an entry's status, an entry or a list "
            "changed outside the store)");
}

// A trigger of someone else's, named `name`, that has not fired yet: the
// changes it does not touch check the database as usual and are signed, but
// the state they leave is not kept (the schema is not Bantay's own), so the
// change that makes the trigger fire reads the database back and refuses.
// A name of SQLite's own kind (sqlite_...) takes writable_schema there.
void StoreIndexStateTest::ExpectAForeignTriggerCaughtWhenItFires(const std::string& name) {
  if (sqlite()) {
    STORE_ASSERT_OK(raw_->ExecScript(
        "PRAGMA writable_schema = ON; CREATE TRIGGER " + name +
        " AFTER UPDATE ON lists WHEN NEW.name = 'ngo-b' AND NEW.enabled = 1 BEGIN UPDATE entries "
        "SET status = 0, status_version = NEW.changed_version WHERE id = 3; END; "
        "PRAGMA writable_schema = OFF;"));
  } else {
    STORE_ASSERT_OK(raw_->ExecScript(
        "CREATE FUNCTION " + name + "() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "UPDATE entries SET status = 0, status_version = NEW.changed_version WHERE id = 3; "
        "RETURN NEW; END $$; CREATE TRIGGER " + name + " AFTER UPDATE ON lists FOR EACH ROW "
        "WHEN (NEW.name = 'ngo-b' AND NEW.enabled = 1) EXECUTE FUNCTION " + name + "();"));
  }
  Store& store = *store_;
  const Store::ChangeStarts at_start = store.change_starts();
  STORE_ASSERT_OK(store.DescribeList("hotline-a", "unrelated", Ctx()));  // v7
  STORE_ASSERT_OK(store.DescribeList("hotline-a", "again", Ctx()));      // v8
  EXPECT_EQ(store.change_starts().checked, at_start.checked + 2);
  EXPECT_EQ(store.change_starts().kept, at_start.kept);
  const Result<uint64_t> refused = store.SetListEnabled("ngo-b", true, Ctx());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(refused.error().message(), kNotAsThisChangeMadeIt);
  EXPECT_EQ(VersionOf(store), 8u);
  Catch(follower_);
  EXPECT_EQ(Ids(*follower_, 2), (std::vector<uint64_t>{}));
}

TEST_P(StoreIndexStateTest, AForeignTriggerThatFiresLaterIsCaughtWhenItDoes) {
  ExpectAForeignTriggerCaughtWhenItFires("zz");
}

// Named as SQLite names its own objects: the schema check counts it too.
TEST_P(StoreIndexStateTest, AForeignTriggerNamedLikeSqlitesOwnIsCaughtToo) {
  ExpectAForeignTriggerCaughtWhenItFires("sqlite_zz");
}

// PostgreSQL's writer reads at read committed: an edit committed while a
// change is being made must not be signed. Someone holds an edit open (a
// row deleted, its removal recorded, a row lock on the list the change
// touches) and commits it a moment later; the change waits for it and then
// refuses, instead of checking the store before the edit and signing it
// after.
class StoreIndexPostgresTest : public StoreIndexTamperTest {};

TEST_P(StoreIndexPostgresTest, AnEditCommittedDuringAChangeIsNotSigned) {
  STORE_ASSERT_OK(raw_->ExecScript("BEGIN"));
  Sql("DELETE FROM entries WHERE id = 1");
  Sql("INSERT INTO removals (version, id) VALUES (5, 1)");
  Sql("UPDATE lists SET description = 'x' WHERE name = 'ngo-b'");
  std::thread committer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    EXPECT_TRUE(raw_->ExecScript("COMMIT").ok());
  });
  ExpectWriterRefuses("its entries do not give the signed root of version 4");
  committer.join();
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreIndexPostgresTest, ::testing::Values("postgres"),
                         BackendName);

INSTANTIATE_TEST_SUITE_P(Backends, StoreIndexStateTest, ::testing::Values("sqlite", "postgres"),
                         BackendName);
INSTANTIATE_TEST_SUITE_P(Backends, StoreIndexTamperTest, ::testing::Values("sqlite", "postgres"),
                         BackendName);

INSTANTIATE_TEST_SUITE_P(Backends, StoreIndexTest, ::testing::Values("sqlite", "postgres"),
                         BackendName);

}  // namespace
}  // namespace bantay::matcher
