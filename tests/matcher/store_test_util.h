// Shared parts of the store tests (store_test.cc, snapshot_test.cc,
// store_index_test.cc): a fixture that runs each test against both backends
// (a SQLite file in a temporary directory, and a fresh database of the
// shared PostgreSQL test cluster), benign test values, and comparisons.
#ifndef BANTAY_TESTS_MATCHER_STORE_TEST_UTIL_H_
#define BANTAY_TESTS_MATCHER_STORE_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "bantay/matcher/crypto.h"
#include "bantay/matcher/hash_index.h"
#include "bantay/matcher/store.h"
#include "bantay/models/digest.h"
#include "bantay/models/hash256.h"
#include "bantay/models/status.h"
#include "database.h"
#include "pg_cluster.h"
#include "test_images.h"

namespace bantay {

// So that failed comparisons of codes print their names.
inline void PrintTo(ErrorCode code, std::ostream* os) { *os << ErrorCodeName(code); }

}  // namespace bantay

// For Status and Result<T>: fails the test with the error's text.
#define STORE_ASSERT_OK(expr)                                      \
  do {                                                             \
    const auto& store_ok_ = (expr);                                \
    ASSERT_TRUE(store_ok_.ok()) << store_ok_.error().ToString();   \
  } while (0)

#define STORE_EXPECT_CODE(expr, expected_code)                                \
  do {                                                                        \
    const auto& store_err_ = (expr);                                          \
    ASSERT_FALSE(store_err_.ok()) << "expected an error";                     \
    EXPECT_EQ(store_err_.error().code(), (expected_code))                     \
        << store_err_.error().ToString();                                     \
  } while (0)

namespace bantay::matcher::store_testing {

inline std::string HexId(size_t bytes) {
  std::vector<uint8_t> b(bytes);
  RandomBytes(b);
  return models::ToHex(b);
}

// PDQ hashes of the benign reference pictures (tests/data/pdq).
inline std::vector<std::array<uint8_t, 32>> ReferencePdqValues() {
  std::vector<std::array<uint8_t, 32>> out;
  for (const auto& [path, columns] : bantay::testing::ReadExpectedCsv("pdq/expected-pdq.csv")) {
    Result<models::Hash256> h = models::Hash256::FromHex(columns.at(0));
    if (!h.ok()) continue;
    if (std::find(out.begin(), out.end(), h->bytes()) == out.end()) out.push_back(h->bytes());
  }
  return out;
}

inline std::array<uint8_t, 32> Md5Value(std::string_view text) {
  const models::Md5Digest d = models::Md5(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  std::array<uint8_t, 32> v{};
  std::copy(d.begin(), d.end(), v.begin());
  return v;
}

inline std::array<uint8_t, 32> Sha256Value(std::string_view text) {
  return models::Sha256(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

inline NewEntry Entry(std::string list, SignalType type, const std::array<uint8_t, 32>& value,
                      std::string category = "A1", std::string reference = "") {
  NewEntry e;
  e.list = std::move(list);
  e.type = type;
  e.value = value;
  e.category = std::move(category);
  e.reference = std::move(reference);
  return e;
}

inline void ExpectSameEntry(const StoredEntry& a, const StoredEntry& b) {
  SCOPED_TRACE("entry " + std::to_string(a.id));
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.list, b.list);
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.value, b.value);
  EXPECT_EQ(a.category, b.category);
  EXPECT_EQ(a.reference, b.reference);
  EXPECT_EQ(a.source, b.source);
  EXPECT_EQ(a.added_by, b.added_by);
  EXPECT_EQ(a.added_at, b.added_at);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.added_version, b.added_version);
  EXPECT_EQ(a.salt, b.salt);
}

inline void ExpectSameEntries(const std::vector<StoredEntry>& a,
                              const std::vector<StoredEntry>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ExpectSameEntry(a[i], b[i]);
}

inline Digest32 Sha256Of(std::span<const uint8_t> bytes) {
  Sha256Hasher h;
  h.Update(bytes);
  return h.Finish();
}

// SHA-256 over the leaf hashes of these entries, as the audit log records
// for the entries a change touched.
inline Digest32 LeavesDigest(const std::vector<StoredEntry>& entries) {
  Sha256Hasher h;
  for (const StoredEntry& e : entries) h.Update(EntryLeafHash(e));
  return h.Finish();
}

using MatchRow = std::tuple<uint64_t, std::string, std::string, std::string, int, int>;

// Every match of every value (PDQ within distance 32, exact hashes equal),
// as plain rows, for comparing two indexes.
inline std::vector<std::vector<MatchRow>> MatchAll(
    const IndexSnapshot& snap, const std::vector<std::pair<SignalType, std::array<uint8_t, 32>>>&
                                   values) {
  std::vector<std::vector<MatchRow>> out;
  for (const auto& [type, value] : values) {
    std::vector<Match> matches;
    if (type == SignalType::kPdq) {
      snap.MatchPdq(models::Hash256(value), 32, &matches);
    } else {
      snap.MatchExact(type, value.data(), &matches);
    }
    std::vector<MatchRow> rows;
    for (const Match& m : matches) {
      rows.emplace_back(m.id, std::string(m.list), std::string(m.category),
                        std::string(m.reference), m.distance, static_cast<int>(m.variant));
    }
    out.push_back(std::move(rows));
  }
  return out;
}

// Ids of the entries that match `value` exactly (distance 0 for PDQ).
inline std::vector<uint64_t> ExactIds(const IndexSnapshot& snap, SignalType type,
                                      const std::array<uint8_t, 32>& value) {
  std::vector<Match> matches;
  if (type == SignalType::kPdq) {
    snap.MatchPdq(models::Hash256(value), 0, &matches);
  } else {
    snap.MatchExact(type, value.data(), &matches);
  }
  std::vector<uint64_t> ids;
  for (const Match& m : matches) ids.push_back(m.id);
  return ids;
}

// Runs a test against "sqlite" and "postgres": each test gets its own
// empty database and fresh keys (one data key, one signing key kept as its
// seed so that Store objects can each own a copy).
class StoreBackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "sqlite") {
      path_ = dir_.path() + "/store.db";
      url_ = "sqlite:" + path_;
    } else {
      url_ = bantay::testing::PgCluster::Shared().CreateDatabase("store_" + HexId(8));
    }
    key_ = GenerateDataKey();
    RandomBytes(seed_);
  }

  bool sqlite() const { return GetParam() == "sqlite"; }

  SigningKey Signer() const { return SigningKey::FromSeed(seed_).value(); }
  PublicKey SignerPublic() const { return Signer().public_key(); }

  StoreKeys Keys() const {
    StoreKeys k;
    k.data_keys = {key_};
    k.signing_key = Signer();
    return k;
  }

  static ChangeContext Ctx(std::string actor = "alice", std::string source = "cli") {
    return ChangeContext{std::move(actor), std::move(source)};
  }

  std::unique_ptr<Store> Init() {
    Result<std::unique_ptr<Store>> s = Store::Init(url_, Keys(), Ctx());
    EXPECT_TRUE(s.ok()) << s.error().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  std::unique_ptr<Store> Open(StoreKeys keys) {
    Result<std::unique_ptr<Store>> s = Store::Open(url_, std::move(keys));
    EXPECT_TRUE(s.ok()) << s.error().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  std::unique_ptr<Store> Open() { return Open(Keys()); }

  // A plain connection to the store's database, as an operator (or an
  // attacker) with database access has.
  std::unique_ptr<db::Connection> Raw() {
    Result<std::unique_ptr<db::Connection>> c = db::Connection::Open(url_, false);
    EXPECT_TRUE(c.ok()) << c.error().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  // Every entry of the store, decrypted, in id order.
  static std::vector<StoredEntry> AllEntries(Store& store) {
    Result<std::vector<StoredEntry>> r = store.Entries("", 0, 1'000'000);
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? *r : std::vector<StoredEntry>{};
  }

  static uint64_t VersionOf(Store& store) {
    Result<uint64_t> v = store.Version();
    EXPECT_TRUE(v.ok()) << v.error().ToString();
    return v.ok() ? *v : 0;
  }

  bantay::testing::TempDir dir_;
  std::string path_;  // SQLite only
  std::string url_;
  DataKey key_;
  std::array<uint8_t, 32> seed_{};
};

inline std::string BackendName(const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

}  // namespace bantay::matcher::store_testing

#endif  // BANTAY_TESTS_MATCHER_STORE_TEST_UTIL_H_
