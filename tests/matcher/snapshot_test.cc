#include "bantay/matcher/snapshot.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "bantay/matcher/crypto.h"
#include "bantay/matcher/store_index.h"
#include "store_test_util.h"

namespace bantay::matcher {
namespace {

using store_testing::BackendName;
using store_testing::Entry;
using store_testing::Md5Value;
using store_testing::ReferencePdqValues;
using store_testing::Sha256Value;

std::vector<uint8_t> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in),
                              std::istreambuf_iterator<char>());
}

void WriteAll(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

uint32_t HeaderSize(const std::vector<uint8_t>& file) {
  const size_t at = kSnapshotMagic.size();
  return (uint32_t{file[at]} << 24) | (uint32_t{file[at + 1]} << 16) |
         (uint32_t{file[at + 2]} << 8) | uint32_t{file[at + 3]};
}

class StoreSnapshotTest : public store_testing::StoreBackendTest {
 protected:
  void SetUp() override {
    StoreBackendTest::SetUp();
    pdq_ = ReferencePdqValues();
    ASSERT_GE(pdq_.size(), 8u);
    store_ = Init();
    ASSERT_NE(store_, nullptr);
  }

  // Two lists (one of them disabled), a disabled entry, a removed one.
  void Populate() {
    STORE_ASSERT_OK(store_->AddEntries(
        {Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "case-1"),
         Entry("hotline-a", SignalType::kPdq, pdq_[1], "B2", "case-2"),
         Entry("hotline-a", SignalType::kMd5, Md5Value("three"), "A1", "case-3"),
         Entry("ngo-b", SignalType::kSha256, Sha256Value("four"), "B1", "case-4"),
         Entry("ngo-b", SignalType::kPdq, pdq_[2], "B1", "case-5"),
         Entry("ngo-c", SignalType::kPdq, pdq_[3], "C", "case-6")},
        Ctx()));
    STORE_ASSERT_OK(store_->SetEntriesStatus({2}, EntryStatus::kDisabled, Ctx()));
    STORE_ASSERT_OK(store_->SetListEnabled("ngo-c", false, Ctx()));
    STORE_ASSERT_OK(store_->RemoveEntries({4}, Ctx()));
  }

  std::string Export() {
    const std::string path = dir_.path() + "/snap-" + store_testing::HexId(4) + ".bsnap";
    Result<uint64_t> v = ExportSnapshot(*store_, key_, Signer(), path);
    EXPECT_TRUE(v.ok()) << v.error().ToString();
    return path;
  }

  std::unique_ptr<Store> store_;
  std::vector<std::array<uint8_t, 32>> pdq_;
};

TEST_P(StoreSnapshotTest, ExportThenReadGivesEveryEntryAndList) {
  Populate();
  const std::string path = dir_.path() + "/store.bsnap";
  Result<uint64_t> v = ExportSnapshot(*store_, key_, Signer(), path);
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 5u);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(IsSnapshotFile(path));

  Result<SnapshotContents> snap = ReadSnapshot(path, key_, SignerPublic());
  STORE_ASSERT_OK(snap);
  EXPECT_EQ(snap->store_id, store_->store_id());
  const VersionRecord root = *store_->Root();
  EXPECT_EQ(snap->version.version, 5u);
  EXPECT_EQ(snap->version.created_at, root.created_at);
  EXPECT_EQ(snap->version.root, root.root);
  EXPECT_EQ(snap->version.active_count, root.active_count);
  EXPECT_EQ(snap->version.active_count, 3u);  // 1, 3, 5
  EXPECT_EQ(snap->version.audit_digest, root.audit_digest);
  EXPECT_EQ(snap->version.public_key, root.public_key);
  EXPECT_EQ(snap->version.signature, root.signature);

  const std::vector<ListInfo> lists = *store_->Lists();
  ASSERT_EQ(snap->lists.size(), lists.size());
  ASSERT_EQ(lists.size(), 3u);
  for (size_t i = 0; i < lists.size(); ++i) {
    SCOPED_TRACE(lists[i].name);
    EXPECT_EQ(snap->lists[i].name, lists[i].name);
    EXPECT_EQ(snap->lists[i].enabled, lists[i].enabled);
    EXPECT_EQ(snap->lists[i].description, lists[i].description);
    EXPECT_EQ(snap->lists[i].active, lists[i].active);
    EXPECT_EQ(snap->lists[i].disabled, lists[i].disabled);
  }
  EXPECT_FALSE(snap->lists[2].enabled);
  EXPECT_EQ(snap->lists[0].active, 2u);
  EXPECT_EQ(snap->lists[0].disabled, 1u);
  store_testing::ExpectSameEntries(snap->entries, AllEntries(*store_));
  ASSERT_EQ(snap->entries.size(), 5u);
  EXPECT_EQ(snap->entries[2].value, Md5Value("three"));

  // The snapshot stays the version it was exported at.
  STORE_ASSERT_OK(store_->RemoveEntries({1}, Ctx()));
  snap = ReadSnapshot(path, key_, SignerPublic());
  STORE_ASSERT_OK(snap);
  EXPECT_EQ(snap->entries.size(), 5u);
  EXPECT_EQ(snap->version.version, 5u);
}

TEST_P(StoreSnapshotTest, ASnapshotKeyOtherThanTheStoreKey) {
  Populate();
  const DataKey snapshot_key = GenerateDataKey();
  const std::string path = dir_.path() + "/for-a-lab.bsnap";
  STORE_ASSERT_OK(ExportSnapshot(*store_, snapshot_key, Signer(), path));
  Result<SnapshotContents> snap = ReadSnapshot(path, snapshot_key, SignerPublic());
  STORE_ASSERT_OK(snap);
  store_testing::ExpectSameEntries(snap->entries, AllEntries(*store_));
  STORE_EXPECT_CODE(ReadSnapshot(path, key_, SignerPublic()), ErrorCode::kPermissionDenied);
}

TEST_P(StoreSnapshotTest, ASnapshotOfATamperedStoreDoesNotRead) {
  Populate();
  // Entries changed in the database behind the store's back no longer give
  // the version's signed root, and the snapshot carries both.
  std::unique_ptr<db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  STORE_ASSERT_OK(raw->Execute("UPDATE entries SET reference = 'other' WHERE id = 5", {}));
  const std::string path = Export();
  Result<SnapshotContents> snap = ReadSnapshot(path, key_, SignerPublic());
  STORE_EXPECT_CODE(snap, ErrorCode::kCorruptData);
  EXPECT_NE(snap.error().message().find("its entries do not give the signed root of version 5"),
            std::string::npos)
      << snap.error().message();
}

TEST_P(StoreSnapshotTest, EmptyStoreRoundTrips) {
  const std::string path = Export();
  Result<SnapshotContents> snap = ReadSnapshot(path, key_, SignerPublic());
  STORE_ASSERT_OK(snap);
  EXPECT_EQ(snap->version.version, 1u);
  EXPECT_EQ(snap->version.active_count, 0u);
  EXPECT_TRUE(snap->lists.empty());
  EXPECT_TRUE(snap->entries.empty());
}

TEST_P(StoreSnapshotTest, EveryFlippedByteIsCorruptData) {
  Populate();
  const std::string path = Export();
  const std::vector<uint8_t> good = ReadAll(path);
  const size_t header_end = kSnapshotMagic.size() + 4 + HeaderSize(good);
  ASSERT_GT(good.size(), header_end + 12 + 16 + 64);
  const std::string bad = dir_.path() + "/flipped.bsnap";
  size_t checked = 0;
  // Every byte after the magic: the header length, the header, the nonce,
  // the payload and tag, and the signature.
  for (size_t i = kSnapshotMagic.size(); i < good.size(); ++i) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}}) {
      std::vector<uint8_t> bytes = good;
      bytes[i] ^= mask;
      WriteAll(bad, bytes);
      Result<SnapshotContents> snap = ReadSnapshot(bad, key_, SignerPublic());
      ASSERT_FALSE(snap.ok()) << "byte " << i << " of " << good.size();
      ASSERT_EQ(snap.error().code(), ErrorCode::kCorruptData)
          << "byte " << i << " (header ends at " << header_end << "): "
          << snap.error().ToString();
      ++checked;
    }
  }
  EXPECT_EQ(checked, 2 * (good.size() - kSnapshotMagic.size()));
  STORE_ASSERT_OK(ReadSnapshot(path, key_, SignerPublic()));
}

TEST_P(StoreSnapshotTest, AnotherDataKeyIsPermissionDenied) {
  Populate();
  const std::string path = Export();
  Result<SnapshotContents> snap = ReadSnapshot(path, GenerateDataKey(), SignerPublic());
  STORE_EXPECT_CODE(snap, ErrorCode::kPermissionDenied);
}

TEST_P(StoreSnapshotTest, AnotherTrustedKeyIsPermissionDenied) {
  Populate();
  const std::string path = Export();
  const SigningKey other = SigningKey::Generate();
  STORE_EXPECT_CODE(ReadSnapshot(path, key_, other.public_key()), ErrorCode::kPermissionDenied);
}

TEST_P(StoreSnapshotTest, ExportNeedsTheSigningKeyOfTheVersion) {
  Populate();
  const std::string path = dir_.path() + "/other.bsnap";
  STORE_EXPECT_CODE(ExportSnapshot(*store_, key_, SigningKey::Generate(), path),
                    ErrorCode::kPermissionDenied);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_P(StoreSnapshotTest, EveryTruncationIsCorruptData) {
  Populate();
  const std::string path = Export();
  const std::vector<uint8_t> good = ReadAll(path);
  const std::string bad = dir_.path() + "/truncated.bsnap";
  for (size_t n = kSnapshotMagic.size(); n < good.size(); ++n) {
    WriteAll(bad, std::vector<uint8_t>(good.begin(), good.begin() + static_cast<long>(n)));
    Result<SnapshotContents> snap = ReadSnapshot(bad, key_, SignerPublic());
    ASSERT_FALSE(snap.ok()) << n;
    ASSERT_EQ(snap.error().code(), ErrorCode::kCorruptData) << n << ": "
                                                            << snap.error().ToString();
  }
  // Appended bytes too.
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  WriteAll(bad, longer);
  STORE_EXPECT_CODE(ReadSnapshot(bad, key_, SignerPublic()), ErrorCode::kCorruptData);
}

TEST_P(StoreSnapshotTest, APayloadSizeThatWrapsAroundIsCorruptData) {
  Populate();
  const std::string path = Export();
  std::vector<uint8_t> bytes = ReadAll(path);
  const size_t payload_at = kSnapshotMagic.size() + 4 + HeaderSize(bytes);
  // The header's last field is the payload size. With 56 bytes after the
  // header, a size of 2^64 - 20 makes nonce + payload + signature "fit"
  // modulo 2^64.
  bytes.resize(payload_at + 56);
  const uint64_t wrapped = ~uint64_t{0} - 19;
  for (int i = 0; i < 8; ++i) {
    bytes[payload_at - 8 + static_cast<size_t>(i)] = static_cast<uint8_t>(wrapped >> (56 - 8 * i));
  }
  const std::string bad = dir_.path() + "/wrapped.bsnap";
  WriteAll(bad, bytes);
  STORE_EXPECT_CODE(ReadSnapshot(bad, key_, SignerPublic()), ErrorCode::kCorruptData);
}

TEST_P(StoreSnapshotTest, OtherFiles) {
  std::vector<uint8_t> random(4096);
  RandomBytes(random);
  const std::string random_path = dir_.Write("random.bin", random);
  STORE_EXPECT_CODE(ReadSnapshot(random_path, key_, SignerPublic()),
                    ErrorCode::kUnsupportedFormat);
  EXPECT_FALSE(IsSnapshotFile(random_path));
  const std::string empty_path = dir_.Write("empty.bin", {});
  STORE_EXPECT_CODE(ReadSnapshot(empty_path, key_, SignerPublic()),
                    ErrorCode::kUnsupportedFormat);
  // A device is not read forever, a directory not at all.
  STORE_EXPECT_CODE(ReadSnapshot("/dev/zero", key_, SignerPublic()),
                    ErrorCode::kUnsupportedFormat);
  STORE_EXPECT_CODE(ReadSnapshot(dir_.path(), key_, SignerPublic()),
                    ErrorCode::kUnsupportedFormat);
  const std::string missing = dir_.path() + "/missing.bsnap";
  STORE_EXPECT_CODE(ReadSnapshot(missing, key_, SignerPublic()), ErrorCode::kNotFound);
  EXPECT_FALSE(IsSnapshotFile(missing));
}

TEST_P(StoreSnapshotTest, ExportToAnExistingPathIsRefused) {
  Populate();
  const std::vector<uint8_t> original = {'k', 'e', 'e', 'p'};
  const std::string path = dir_.Write("existing.bsnap", original);
  STORE_EXPECT_CODE(ExportSnapshot(*store_, key_, Signer(), path), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ReadAll(path), original);
}

TEST_P(StoreSnapshotTest, IndexFromTheSnapshotMatchesLikeTheStore) {
  Populate();
  const std::string path = Export();
  Result<SnapshotContents> snap = ReadSnapshot(path, key_, SignerPublic());
  STORE_ASSERT_OK(snap);
  HashIndex from_snapshot;
  STORE_ASSERT_OK(LoadIndexFromEntries(snap->entries, snap->lists, snap->version.version,
                                       &from_snapshot));
  HashIndex from_store;
  Result<uint64_t> v = LoadIndexFromStore(*store_, &from_store);
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 5u);
  EXPECT_EQ(from_snapshot.Snapshot()->store_version(), 5u);
  EXPECT_EQ(from_store.Snapshot()->store_version(), 5u);

  std::vector<std::pair<SignalType, std::array<uint8_t, 32>>> values;
  for (size_t i = 0; i < 4; ++i) values.emplace_back(SignalType::kPdq, pdq_[i]);
  values.emplace_back(SignalType::kMd5, Md5Value("three"));
  values.emplace_back(SignalType::kSha256, Sha256Value("four"));
  EXPECT_EQ(store_testing::MatchAll(*from_snapshot.Snapshot(), values),
            store_testing::MatchAll(*from_store.Snapshot(), values));
  // Active entries match; disabled (2), removed (4) and disabled-list (6)
  // ones do not.
  auto ids = [&](size_t i) {
    return store_testing::ExactIds(*from_snapshot.Snapshot(), values[i].first, values[i].second);
  };
  EXPECT_EQ(ids(0), (std::vector<uint64_t>{1}));
  EXPECT_EQ(ids(1), (std::vector<uint64_t>{}));
  EXPECT_EQ(ids(2), (std::vector<uint64_t>{5}));
  EXPECT_EQ(ids(3), (std::vector<uint64_t>{}));
  EXPECT_EQ(ids(4), (std::vector<uint64_t>{3}));
  EXPECT_EQ(ids(5), (std::vector<uint64_t>{}));
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreSnapshotTest, ::testing::Values("sqlite", "postgres"),
                         BackendName);

}  // namespace
}  // namespace bantay::matcher
