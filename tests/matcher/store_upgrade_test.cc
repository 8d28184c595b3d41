// A store of schema 1 (tests/data/store-v1, made by the Bantay of before the
// state digest) is read as it is, and its versions, signed in format 1,
// still verify; it is changed only after Upgrade, which upgrades the tables
// and signs the whole state; its snapshot of format 1 is still read. On
// SQLite (the fixture file) and on PostgreSQL (the fixture's rows copied
// into a database of schema 1).
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <deque>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bantay/matcher/snapshot.h"
#include "bantay/matcher/store.h"
#include "bantay/matcher/store_index.h"
#include "store_tamper.h"
#include "store_test_util.h"

namespace bantay::matcher {
namespace {

using store_testing::BackendName;

const std::string kFixture = std::string(BANTAY_TEST_DATA) + "/store-v1";

class StoreUpgradeTest : public store_testing::StoreBackendTest {
 protected:
  void SetUp() override {
    StoreBackendTest::SetUp();
    Result<DataKey> key = ReadDataKeyFile(Fixture("data.key"));
    STORE_ASSERT_OK(key);
    key_ = *key;
    Result<PublicKey> pub = ReadPublicKeyPemFile(Fixture("signing.pub"));
    STORE_ASSERT_OK(pub);
    public_ = *pub;
    if (sqlite()) {
      std::filesystem::copy_file(kFixture + "/store-v1.db", path_);
    } else {
      CopyFixtureIntoPostgres();
    }
  }

  // The fixture's files, copied with mode 0600 (a clone's files are 0644,
  // and key files must not be readable by others).
  std::string Fixture(const std::string& name) {
    const std::string copy = dir_.path() + "/" + name;
    if (!std::filesystem::exists(copy)) {
      std::filesystem::copy_file(kFixture + "/" + name, copy);
      ::chmod(copy.c_str(), 0600);
    }
    return copy;
  }

  StoreKeys FixtureKeys() {
    StoreKeys keys;
    keys.data_keys = {key_};
    Result<SigningKey> signer = SigningKey::ReadPemFile(Fixture("signing.key"));
    EXPECT_TRUE(signer.ok()) << signer.error().ToString();
    if (signer.ok()) keys.signing_key = std::move(*signer);
    return keys;
  }

  // The schema version the database says it is of.
  int SchemaVersion() {
    std::unique_ptr<db::Connection> raw = Raw();
    int version = -1;
    EXPECT_TRUE(raw->Execute("SELECT value FROM meta WHERE key = 'schema_version'", {},
                             [&](const db::Row& row) {
                               const auto bytes = row.Blob(0);
                               if (bytes.size() == 8) version = bytes[7];
                             })
                    .ok());
    return version;
  }

  // A PostgreSQL database of schema 1 holding the fixture's rows: a store
  // made now, emptied, its versions table put back to schema 1's columns,
  // and every row of the SQLite fixture copied in (the append-only triggers
  // dropped meanwhile).
  void CopyFixtureIntoPostgres() {
    ASSERT_NE(Init(), nullptr);
    std::unique_ptr<db::Connection> pg = Raw();
    ASSERT_NE(pg, nullptr);
    STORE_ASSERT_OK(bantay::testing::DropAppendOnlyTriggers(*pg, false));
    STORE_ASSERT_OK(pg->ExecScript(
        "DELETE FROM audit; DELETE FROM versions; DELETE FROM removals; DELETE FROM entries; "
        "DELETE FROM lists; DELETE FROM state; DELETE FROM meta; "
        "ALTER TABLE versions DROP COLUMN state_digest;"));
    Result<std::unique_ptr<db::Connection>> lite =
        db::Connection::Open("sqlite:" + kFixture + "/store-v1.db", false);
    STORE_ASSERT_OK(lite);
    // Each table's columns: i integer, t text, b blob.
    const std::vector<std::pair<std::string, std::string>> tables = {
        {"meta", "tb"},          {"state", "iii"},
        {"lists", "titii"},      {"entries", "ititbbttttiiii"},
        {"removals", "ii"},      {"versions", "iibibbb"},
        {"audit", "iitttibbb"}};
    for (const auto& [table, kinds] : tables) {
      std::string insert = "INSERT INTO " + table + " VALUES (";
      for (size_t i = 0; i < kinds.size(); ++i) {
        insert += (i > 0 ? ", $" : "$") + std::to_string(i + 1);
      }
      insert += ")";
      // The params point into these (a deque's elements stay put).
      std::deque<std::vector<uint8_t>> blobs;
      std::deque<std::string> texts;
      std::vector<std::vector<db::Param>> rows;
      Status read = (*lite)->Execute("SELECT * FROM " + table, {}, [&](const db::Row& row) {
        ASSERT_EQ(static_cast<size_t>(row.columns()), kinds.size()) << table;
        std::vector<db::Param> params;
        for (size_t i = 0; i < kinds.size(); ++i) {
          const int c = static_cast<int>(i);
          if (kinds[i] == 'i') params.push_back(db::Param::Int(row.Int(c)));
          if (kinds[i] == 't') {
            texts.emplace_back(row.Text(c));
            params.push_back(db::Param::Text(texts.back()));
          }
          if (kinds[i] == 'b') {
            blobs.emplace_back(row.Blob(c).begin(), row.Blob(c).end());
            params.push_back(db::Param::Blob(blobs.back()));
          }
        }
        rows.push_back(std::move(params));
      });
      STORE_ASSERT_OK(read);
      for (const std::vector<db::Param>& params : rows) STORE_ASSERT_OK(pg->Execute(insert, params));
    }
    // Back in place, as a store of schema 1 had them.
    STORE_ASSERT_OK(pg->ExecScript(
        "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION bantay_append_only(); "
        "CREATE TRIGGER versions_append_only BEFORE UPDATE OR DELETE ON versions "
        "FOR EACH ROW EXECUTE FUNCTION bantay_append_only();"));
  }

  DataKey key_;
  PublicKey public_{};
};

TEST_P(StoreUpgradeTest, AStoreOfSchema1IsReadAndChangedOnlyAfterTheUpgrade) {
  ASSERT_EQ(SchemaVersion(), 1);
  Result<std::unique_ptr<Store>> store = Store::Open(url_, FixtureKeys());
  STORE_ASSERT_OK(store);
  EXPECT_EQ(SchemaVersion(), 1);  // reading changes nothing
  Result<VerifyReport> report = (*store)->Verify(public_);
  STORE_ASSERT_OK(report);
  EXPECT_EQ(report->problems, std::vector<std::string>{});
  EXPECT_EQ(report->version, 5u);
  EXPECT_EQ(report->entries, 4u);
  EXPECT_FALSE(report->state_signed);
  for (uint64_t v = 1; v <= 5; ++v) {
    Result<VersionRecord> record = (*store)->Root(v);
    STORE_ASSERT_OK(record);
    EXPECT_FALSE(record->state_digest.has_value()) << v;
  }
  // Entry 1 active in alpha; 2 disabled; 3 and 4 in the disabled list beta.
  Result<VersionRecord> v5 = (*store)->Root(5);
  STORE_ASSERT_OK(v5);
  EXPECT_EQ(v5->active_count, 1u);
  HashIndex index;
  VerifiedStoreState follower((*store)->store_id(), public_);
  Result<uint64_t> loaded = LoadIndexFromStore(**store, &index, &follower);
  STORE_ASSERT_OK(loaded);
  EXPECT_EQ(*loaded, 5u);

  // Changes wait for the upgrade.
  const Result<uint64_t> refused = (*store)->SetListEnabled("beta", true, Ctx());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(refused.error().message(),
            "the store is of schema 1 (made by a Bantay before store schema 2, whose versions "
            "do not sign the whole state; or the store's newer versions were deleted): check "
            "it with bantay index verify --public-key, then sign its whole state once with "
            "bantay index upgrade");
  EXPECT_EQ(VersionOf(**store), 5u);
  EXPECT_EQ(SchemaVersion(), 1);

  // The upgrade signs the whole state as it is (version 6); a second one
  // changes nothing; a second Store, opened before, reads the new versions.
  Result<std::unique_ptr<Store>> reader = Store::Open(url_, FixtureKeys());
  STORE_ASSERT_OK(reader);
  Result<uint64_t> v6 = (*store)->Upgrade(Ctx());
  STORE_ASSERT_OK(v6);
  EXPECT_EQ(*v6, 6u);
  EXPECT_EQ(SchemaVersion(), 2);
  Result<uint64_t> again = (*store)->Upgrade(Ctx());
  STORE_ASSERT_OK(again);
  EXPECT_EQ(*again, 6u);
  Result<VersionRecord> upgraded = (*reader)->Root(6);
  STORE_ASSERT_OK(upgraded);
  ASSERT_TRUE(upgraded->state_digest.has_value());
  EXPECT_EQ(upgraded->active_count, 1u);
  Result<std::vector<AuditRecord>> audit = (*store)->Audit(5, 10);
  STORE_ASSERT_OK(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ(audit->front().action, "upgrade");

  // From then on every change signs the whole state, and the follower
  // checks it.
  Result<uint64_t> v7 = (*store)->SetListEnabled("beta", true, Ctx());
  STORE_ASSERT_OK(v7);
  EXPECT_EQ(*v7, 7u);
  Result<VersionRecord> record = (*store)->Root(7);
  STORE_ASSERT_OK(record);
  ASSERT_TRUE(record->state_digest.has_value());
  EXPECT_EQ(record->active_count, 3u);
  StateDigester expected;
  for (const StoredEntry& e : AllEntries(**store)) {
    expected.AddEntry(e.id, EntryLeafHash(e), e.status == EntryStatus::kActive, e.list);
  }
  Result<Digest32> digest = expected.Finish({{"alpha", true}, {"beta", true}});
  STORE_ASSERT_OK(digest);
  EXPECT_EQ(*record->state_digest, *digest);
  Result<ChangeSet> changes = (*store)->ChangesSince(5);
  STORE_ASSERT_OK(changes);
  Result<VerifiedStoreState> next = follower.Next(*changes);
  STORE_ASSERT_OK(next);
  EXPECT_EQ(next->version(), 7u);
  report = (*reader)->Verify(public_);
  STORE_ASSERT_OK(report);
  EXPECT_EQ(report->problems, std::vector<std::string>{});
  EXPECT_TRUE(report->state_signed);

  // The upgraded tables are Bantay's own schema (versions has its new column
  // as a store made at schema 2 has it): the next change starts from the
  // state the last one left, without reading every row.
  const Store::ChangeStarts before_v8 = (*store)->change_starts();
  STORE_ASSERT_OK((*store)->DescribeList("alpha", "after the upgrade", Ctx()));  // v8
  EXPECT_EQ((*store)->change_starts().kept - before_v8.kept, 1u);

  // From then on an edit that leaves the root as it is (a list added) is
  // refused too.
  std::unique_ptr<db::Connection> raw = Raw();
  STORE_ASSERT_OK(raw->Execute(
      "INSERT INTO lists (name, enabled, description, created_version, changed_version) "
      "VALUES ('gamma', 0, '', 7, 7)",
      {}));
  HashIndex edited_index;
  VerifiedStoreState edited((*store)->store_id(), public_);
  Result<uint64_t> edited_load = LoadIndexFromStore(**store, &edited_index, &edited);
  ASSERT_FALSE(edited_load.ok());
  EXPECT_EQ(edited_load.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(edited_load.error().message(),
            "the entries' and lists' states do not give the signed state of version 8 (an "
            "entry's status, an entry or a list changed outside the store)");
}

// A snapshot of format 1 (the fixture's, of version 5) is still read; a new
// one carries the state digest.
TEST_P(StoreUpgradeTest, SnapshotsOfBothFormatsAreRead) {
  Result<SnapshotContents> old = ReadSnapshot(Fixture("snapshot-v1.bsnap"), key_, public_);
  STORE_ASSERT_OK(old);
  EXPECT_EQ(old->version.version, 5u);
  EXPECT_FALSE(old->version.state_digest.has_value());
  EXPECT_EQ(old->entries.size(), 4u);
  EXPECT_EQ(old->version.active_count, 1u);

  Result<std::unique_ptr<Store>> store = Store::Open(url_, FixtureKeys());
  STORE_ASSERT_OK(store);
  STORE_ASSERT_OK((*store)->Upgrade(Ctx()));
  const std::string path = dir_.path() + "/new.bsnap";
  Result<uint64_t> written = ExportSnapshot(**store, key_, *FixtureKeys().signing_key, path);
  STORE_ASSERT_OK(written);
  Result<SnapshotContents> fresh = ReadSnapshot(path, key_, public_);
  STORE_ASSERT_OK(fresh);
  EXPECT_EQ(fresh->version.version, 6u);
  ASSERT_TRUE(fresh->version.state_digest.has_value());
  Result<VersionRecord> record = (*store)->Root(6);
  STORE_ASSERT_OK(record);
  EXPECT_EQ(*fresh->version.state_digest, *record->state_digest);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreUpgradeTest, ::testing::Values("sqlite", "postgres"),
                         BackendName);

}  // namespace
}  // namespace bantay::matcher
