#include "database.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "pg_cluster.h"

namespace bantay::matcher::db {

// Test names and failure messages name the backend.
void PrintTo(Backend backend, std::ostream* os) {
  *os << (backend == Backend::kSqlite ? "sqlite" : "postgres");
}

namespace {

namespace fs = std::filesystem;
using ::bantay::testing::PgCluster;

#define ASSERT_OK(expr)                                      \
  do {                                                       \
    const auto& status_ = (expr);                            \
    ASSERT_TRUE(status_.ok()) << status_.error().ToString(); \
  } while (0)

#define EXPECT_ERROR_CODE(expr, expected_code)         \
  do {                                                 \
    const auto& status_ = (expr);                      \
    ASSERT_FALSE(status_.ok());                        \
    EXPECT_EQ(status_.error().code(), (expected_code)) \
        << status_.error().ToString();                 \
  } while (0)

constexpr const char* kPassword = "Sup3rS3cret-pw";

// A name unique to the running test and process, usable as a database name.
std::string UniqueName() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  // Appended piece by piece: "t" + std::string trips GCC 12's -Wrestrict.
  std::string name = std::to_string(getpid());
  name.insert(name.begin(), 't');
  name += '_';
  name += info->name();
  for (char& c : name) {
    c = std::isalnum(static_cast<unsigned char>(c))
            ? static_cast<char>(std::tolower(static_cast<unsigned char>(c)))
            : '_';
  }
  return name.substr(0, 63);
}

std::vector<uint8_t> Bytes(std::initializer_list<int> values) {
  std::vector<uint8_t> out;
  for (int v : values) out.push_back(static_cast<uint8_t>(v));
  return out;
}

std::vector<uint8_t> Payload(int64_t i) {
  std::vector<uint8_t> out(32);
  uint64_t x = static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ULL + 1;
  for (auto& b : out) {
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ULL;
    b = static_cast<uint8_t>(x >> 56);
  }
  out[static_cast<size_t>(i % 32)] = 0;  // zero bytes inside every payload
  return out;
}

std::string Describe(Backend backend) {
  return backend == Backend::kSqlite ? "sqlite" : "postgres";
}

class DatabaseTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kSqlite) {
      dir_ = fs::temp_directory_path() / ("bantay-db-" + UniqueName());
      fs::remove_all(dir_);
      fs::create_directories(dir_);
      url_ = "sqlite:" + (dir_ / "test.db").string();
    } else {
      url_ = PgCluster::Shared().CreateDatabase(UniqueName());
    }
    auto conn = Connection::Open(url_, /*create=*/true);
    ASSERT_OK(conn);
    conn_ = std::move(conn).value();
    ASSERT_EQ(conn_->backend(), GetParam());
  }

  void TearDown() override {
    conn_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  bool sqlite() const { return GetParam() == Backend::kSqlite; }

  std::unique_ptr<Connection> OpenSecond() {
    auto conn = Connection::Open(url_, /*create=*/false);
    EXPECT_TRUE(conn.ok()) << conn.error().ToString();
    return conn.ok() ? std::move(conn).value() : nullptr;
  }

  // One integer from a query that returns one row of one column.
  std::optional<int64_t> QueryInt(Connection& conn, std::string_view sql,
                                  std::span<const Param> params = {}) {
    std::optional<int64_t> value;
    int rows = 0;
    Status status = conn.Execute(sql, params, [&](const Row& row) {
      ++rows;
      if (row.columns() == 1 && !row.IsNull(0)) value = row.Int(0);
    });
    EXPECT_TRUE(status.ok()) << status.error().ToString();
    EXPECT_EQ(rows, 1);
    return value;
  }

  std::optional<int64_t> Count(Connection& conn, const std::string& table) {
    return QueryInt(conn, "SELECT count(*) FROM " + table);
  }

  fs::path dir_;
  std::string url_;
  std::unique_ptr<Connection> conn_;
};

TEST_P(DatabaseTest, EveryTypeRoundTripsExactly) {
  ASSERT_OK(conn_->ExecScript(
      sqlite() ? "CREATE TABLE ints (id INTEGER PRIMARY KEY, v INTEGER);"
                 "CREATE TABLE texts (id INTEGER PRIMARY KEY, v TEXT);"
                 "CREATE TABLE blobs (id INTEGER PRIMARY KEY, v BLOB);"
                 "CREATE TABLE smalls (id INTEGER PRIMARY KEY, i2 INTEGER,"
                 "  i4 INTEGER, b INTEGER);"
               : "CREATE TABLE ints (id BIGINT PRIMARY KEY, v BIGINT);"
                 "CREATE TABLE texts (id BIGINT PRIMARY KEY, v TEXT);"
                 "CREATE TABLE blobs (id BIGINT PRIMARY KEY, v BYTEA);"
                 "CREATE TABLE smalls (id BIGINT PRIMARY KEY, i2 SMALLINT,"
                 "  i4 INTEGER, b BOOLEAN);"));

  const std::vector<std::optional<int64_t>> ints = {
      std::nullopt, INT64_MIN, INT64_MAX, 0, -1, 1, INT32_MIN - 1LL};
  for (size_t i = 0; i < ints.size(); ++i) {
    Param params[] = {Param::Int(static_cast<int64_t>(i)),
                      ints[i] ? Param::Int(*ints[i]) : Param::Null()};
    ASSERT_OK(
        conn_->Execute("INSERT INTO ints (id, v) VALUES ($1, $2)", params));
  }
  std::string long_text(100'000, 'x');
  const std::vector<std::optional<std::string>> texts = {
      std::nullopt,
      "",
      "plain",
      "h\xc3\xa9llo w\xc3\xb6rld \xe2\x80\x94 "
      "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x99\x82",
      "quote ' and $1",
      long_text};
  for (size_t i = 0; i < texts.size(); ++i) {
    Param params[] = {Param::Int(static_cast<int64_t>(i)),
                      texts[i] ? Param::Text(*texts[i]) : Param::Null()};
    ASSERT_OK(
        conn_->Execute("INSERT INTO texts (id, v) VALUES ($1, $2)", params));
  }
  std::vector<uint8_t> random_bytes(4096);
  std::mt19937 rng(7);
  for (auto& b : random_bytes) b = static_cast<uint8_t>(rng());
  const std::vector<std::optional<std::vector<uint8_t>>> blobs = {
      std::nullopt,
      std::vector<uint8_t>{},
      Bytes({0}),
      Bytes({0, 0, 0}),
      Bytes({0x00, 0xff, 0x00, 0x80, 0x7f}),
      random_bytes};
  for (size_t i = 0; i < blobs.size(); ++i) {
    Param params[] = {Param::Int(static_cast<int64_t>(i)),
                      blobs[i] ? Param::Blob(*blobs[i]) : Param::Null()};
    ASSERT_OK(
        conn_->Execute("INSERT INTO blobs (id, v) VALUES ($1, $2)", params));
  }
  ASSERT_OK(conn_->ExecScript(
      "INSERT INTO smalls VALUES (1, -32768, -2147483648, true),"
      " (2, 32767, 2147483647, false), (3, NULL, NULL, NULL)"));

  std::vector<std::optional<int64_t>> got_ints;
  ASSERT_OK(conn_->Execute(
      "SELECT id, v FROM ints ORDER BY id", {}, [&](const Row& row) {
        ASSERT_EQ(row.columns(), 2);
        EXPECT_EQ(row.Int(0), static_cast<int64_t>(got_ints.size()));
        got_ints.push_back(row.IsNull(1) ? std::nullopt
                                         : std::optional(row.Int(1)));
      }));
  EXPECT_EQ(got_ints, ints);

  std::vector<std::optional<std::string>> got_texts;
  ASSERT_OK(conn_->Execute(
      "SELECT v FROM texts ORDER BY id", {}, [&](const Row& row) {
        got_texts.push_back(row.IsNull(0)
                                ? std::nullopt
                                : std::optional(std::string(row.Text(0))));
      }));
  EXPECT_EQ(got_texts, texts);

  std::vector<std::optional<std::vector<uint8_t>>> got_blobs;
  ASSERT_OK(conn_->Execute(
      "SELECT v FROM blobs ORDER BY id", {}, [&](const Row& row) {
        if (row.IsNull(0)) {
          got_blobs.push_back(std::nullopt);
          return;
        }
        auto b = row.Blob(0);
        got_blobs.emplace_back(std::vector<uint8_t>(b.begin(), b.end()));
      }));
  EXPECT_EQ(got_blobs, blobs);

  std::vector<std::vector<std::optional<int64_t>>> got_smalls;
  ASSERT_OK(conn_->Execute(
      "SELECT i2, i4, b FROM smalls ORDER BY id", {}, [&](const Row& row) {
        std::vector<std::optional<int64_t>> values;
        for (int c = 0; c < 3; ++c) {
          values.push_back(row.IsNull(c) ? std::nullopt
                                         : std::optional(row.Int(c)));
        }
        got_smalls.push_back(values);
      }));
  const std::vector<std::vector<std::optional<int64_t>>> smalls = {
      {-32768, INT32_MIN, 1},
      {32767, INT32_MAX, 0},
      {std::nullopt, std::nullopt, std::nullopt}};
  EXPECT_EQ(got_smalls, smalls);
}

TEST_P(DatabaseTest, NumberedParametersAreBoundByNumber) {
  std::vector<Param> params;
  params.push_back(Param::Text("first"));
  params.push_back(Param::Int(2));
  for (int i = 3; i <= 10; ++i) params.push_back(Param::Int(i));
  params.push_back(Param::Int(-11));
  int rows = 0;
  ASSERT_OK(conn_->Execute("SELECT $2, $1, '$1 stays', $11", params,
                           [&](const Row& row) {
                             ++rows;
                             ASSERT_EQ(row.columns(), 4);
                             EXPECT_EQ(row.Int(0), 2);
                             EXPECT_EQ(row.Text(1), "first");
                             EXPECT_EQ(row.Text(2), "$1 stays");
                             EXPECT_EQ(row.Int(3), -11);
                           }));
  EXPECT_EQ(rows, 1);
}

TEST_P(DatabaseTest, BulkInsertThroughStatementThenStreamedSelect) {
  constexpr int64_t kRows = 100'000;
  ASSERT_OK(conn_->ExecScript(
      sqlite() ? "CREATE TABLE bulk (id INTEGER PRIMARY KEY, name TEXT NOT "
                 "NULL, payload BLOB NOT NULL, n INTEGER)"
               : "CREATE TABLE bulk (id BIGINT PRIMARY KEY, name TEXT NOT "
                 "NULL, payload BYTEA NOT NULL, n BIGINT)"));
  auto insert = conn_->Prepare(
      "INSERT INTO bulk (id, name, payload, n) VALUES ($1, $2, $3, $4)");
  ASSERT_OK(insert);
  ASSERT_OK(conn_->BeginWrite());
  for (int64_t i = 0; i < kRows; ++i) {
    std::string name = "row-" + std::to_string(i);
    std::vector<uint8_t> payload = Payload(i);
    Param params[] = {Param::Int(i), Param::Text(name), Param::Blob(payload),
                      i % 10 == 0 ? Param::Null() : Param::Int(i * 7 - 3)};
    ASSERT_OK((*insert)->Execute(params));
  }
  ASSERT_OK(conn_->Commit());
  EXPECT_EQ(Count(*conn_, "bulk"), kRows);

  int64_t next = 0;
  int64_t mismatches = 0;
  ASSERT_OK(conn_->Execute(
      "SELECT id, name, payload, n FROM bulk WHERE id >= $1 ORDER BY id",
      std::vector<Param>{Param::Int(0)}, [&](const Row& row) {
        std::vector<uint8_t> payload = Payload(next);
        auto blob = row.Blob(2);
        bool same = row.Int(0) == next &&
                    row.Text(1) == "row-" + std::to_string(next) &&
                    std::equal(blob.begin(), blob.end(), payload.begin(),
                               payload.end()) &&
                    row.IsNull(3) == (next % 10 == 0) &&
                    (next % 10 == 0 || row.Int(3) == next * 7 - 3);
        if (!same) ++mismatches;
        ++next;
      }));
  EXPECT_EQ(next, kRows);
  EXPECT_EQ(mismatches, 0);
}

TEST_P(DatabaseTest, RollbackLeavesNothing) {
  ASSERT_OK(conn_->ExecScript("CREATE TABLE t (id BIGINT PRIMARY KEY)"));
  auto insert = conn_->Prepare("INSERT INTO t (id) VALUES ($1)");
  ASSERT_OK(insert);
  ASSERT_OK(conn_->BeginWrite());
  for (int64_t i = 0; i < 3000; ++i) {
    ASSERT_OK((*insert)->Execute(std::vector<Param>{Param::Int(i)}));
  }
  ASSERT_OK(conn_->Execute("INSERT INTO t (id) VALUES ($1)",
                           std::vector<Param>{Param::Int(-1)}));
  conn_->Rollback();
  EXPECT_EQ(Count(*conn_, "t"), 0);

  ASSERT_OK(conn_->BeginWrite());
  ASSERT_OK((*insert)->Execute(std::vector<Param>{Param::Int(5)}));
  ASSERT_OK(conn_->Commit());
  EXPECT_EQ(QueryInt(*conn_, "SELECT id FROM t"), 5);
  // Without a transaction Rollback has nothing to do.
  conn_->Rollback();
  EXPECT_EQ(Count(*conn_, "t"), 1);
}

TEST_P(DatabaseTest, SecondWriterWaitsForTheFirstToCommit) {
  ASSERT_OK(conn_->ExecScript(
      "CREATE TABLE counter (id BIGINT PRIMARY KEY, v BIGINT NOT NULL);"
      "INSERT INTO counter VALUES (1, 0)"));
  std::unique_ptr<Connection> second = OpenSecond();
  ASSERT_NE(second, nullptr);

  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> events;
  auto record = [&](std::string event) {
    std::lock_guard lock(mu);
    events.push_back(std::move(event));
    cv.notify_all();
  };

  ASSERT_OK(conn_->BeginWrite());
  ASSERT_OK(conn_->Execute("UPDATE counter SET v = v + 1 WHERE id = 1", {}));

  std::optional<int64_t> seen_by_second;
  Status second_status;
  std::thread writer([&] {
    record("second:begin");
    second_status = second->BeginWrite();
    record("second:acquired");
    if (!second_status.ok()) return;
    second_status =
        second->Execute("SELECT v FROM counter WHERE id = 1", {},
                        [&](const Row& row) { seen_by_second = row.Int(0); });
    if (!second_status.ok()) return;
    second_status =
        second->Execute("UPDATE counter SET v = v + 1 WHERE id = 1", {});
    if (!second_status.ok()) return;
    second_status = second->Commit();
  });
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return !events.empty(); });
  }
  // Room for a second writer that is not kept out to get in first.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  record("first:commit");
  Status commit = conn_->Commit();
  writer.join();

  ASSERT_OK(commit);
  ASSERT_OK(second_status);
  EXPECT_EQ(events, (std::vector<std::string>{"second:begin", "first:commit",
                                              "second:acquired"}));
  EXPECT_EQ(seen_by_second, 1);
  EXPECT_EQ(QueryInt(*conn_, "SELECT v FROM counter WHERE id = 1"), 2);
}

TEST_P(DatabaseTest, ReadTransactionSeesOneState) {
  ASSERT_OK(conn_->ExecScript(
      "CREATE TABLE t (id BIGINT PRIMARY KEY); INSERT INTO t VALUES (1)"));
  std::unique_ptr<Connection> reader = OpenSecond();
  ASSERT_NE(reader, nullptr);

  ASSERT_OK(reader->BeginRead());
  EXPECT_EQ(Count(*reader, "t"), 1);
  ASSERT_OK(conn_->BeginWrite());
  ASSERT_OK(conn_->Execute("INSERT INTO t VALUES ($1)",
                           std::vector<Param>{Param::Int(2)}));
  ASSERT_OK(conn_->Execute("DELETE FROM t WHERE id = $1",
                           std::vector<Param>{Param::Int(1)}));
  ASSERT_OK(conn_->Commit());
  EXPECT_EQ(Count(*conn_, "t"), 1);

  EXPECT_EQ(QueryInt(*reader, "SELECT id FROM t"), 1);
  ASSERT_OK(reader->Commit());
  EXPECT_EQ(QueryInt(*reader, "SELECT id FROM t"), 2);
}

TEST_P(DatabaseTest, SqlErrorsAreInternalAndTheConnectionKeepsWorking) {
  ASSERT_OK(conn_->ExecScript(
      "CREATE TABLE u (id BIGINT PRIMARY KEY, v TEXT UNIQUE)"));
  ASSERT_OK(conn_->Execute(
      "INSERT INTO u VALUES ($1, $2)",
      std::vector<Param>{Param::Int(1), Param::Text("hidden-value")}));

  EXPECT_ERROR_CODE(conn_->Execute("SELEC 1", {}), ErrorCode::kInternal);
  EXPECT_ERROR_CODE(conn_->Execute("SELECT * FROM missing_table", {}),
                    ErrorCode::kInternal);
  EXPECT_ERROR_CODE(conn_->ExecScript("CREATE TABLE (broken"),
                    ErrorCode::kInternal);
  EXPECT_ERROR_CODE(conn_->Execute("SELECT $1", {}), ErrorCode::kInternal);
  Status duplicate = conn_->Execute(
      "INSERT INTO u VALUES ($1, $2)",
      std::vector<Param>{Param::Int(2), Param::Text("hidden-value")});
  EXPECT_ERROR_CODE(duplicate, ErrorCode::kInternal);
  EXPECT_EQ(duplicate.error().message().find("hidden-value"), std::string::npos)
      << duplicate.error().message();
  // SQLite refuses at Prepare, PostgreSQL (which prepares at the first
  // Execute) then.
  auto multi = conn_->Prepare("SELECT 1; SELECT 2");
  EXPECT_ERROR_CODE(multi.ok() ? (*multi)->Execute({}) : Status(multi.error()),
                    ErrorCode::kInternal);

  // Inside a transaction: the error, a rollback, and on.
  ASSERT_OK(conn_->BeginWrite());
  ASSERT_OK(
      conn_->Execute("INSERT INTO u VALUES ($1, $2)",
                     std::vector<Param>{Param::Int(3), Param::Text("three")}));
  EXPECT_ERROR_CODE(conn_->Execute("SELECT * FROM missing_table", {}),
                    ErrorCode::kInternal);
  conn_->Rollback();
  EXPECT_EQ(Count(*conn_, "u"), 1);
  ASSERT_OK(conn_->BeginWrite());
  ASSERT_OK(
      conn_->Execute("INSERT INTO u VALUES ($1, $2)",
                     std::vector<Param>{Param::Int(3), Param::Text("three")}));
  ASSERT_OK(conn_->Commit());
  EXPECT_EQ(Count(*conn_, "u"), 2);
}

// On PostgreSQL a failed Statement::Execute inside a transaction is
// reported by a later call (queued in a pipeline); SQLite reports it at once.
// Either way nothing of the transaction is committed.
TEST_P(DatabaseTest, FailedInsertInsideTransactionIsReported) {
  ASSERT_OK(conn_->ExecScript("CREATE TABLE t (id BIGINT PRIMARY KEY)"));
  auto insert = conn_->Prepare("INSERT INTO t (id) VALUES ($1)");
  ASSERT_OK(insert);
  auto insert_id = [&](int64_t id) {
    return (*insert)->Execute(std::vector<Param>{Param::Int(id)});
  };

  // Found by Commit.
  ASSERT_OK(conn_->BeginWrite());
  ASSERT_OK(insert_id(1));
  Status duplicate = insert_id(1);
  if (sqlite()) {
    EXPECT_ERROR_CODE(duplicate, ErrorCode::kInternal);
  } else {
    ASSERT_OK(duplicate);
    EXPECT_ERROR_CODE(conn_->Commit(), ErrorCode::kInternal);
  }
  conn_->Rollback();
  EXPECT_EQ(Count(*conn_, "t"), 0);

  // Found by the next query.
  ASSERT_OK(conn_->BeginWrite());
  ASSERT_OK(insert_id(1));
  duplicate = insert_id(1);
  if (sqlite()) {
    EXPECT_ERROR_CODE(duplicate, ErrorCode::kInternal);
  } else {
    ASSERT_OK(duplicate);
    EXPECT_ERROR_CODE(
        conn_->Execute("SELECT count(*) FROM t", {}, [](const Row&) {}),
        ErrorCode::kInternal);
    EXPECT_ERROR_CODE(conn_->Commit(), ErrorCode::kInternal);
  }
  conn_->Rollback();
  EXPECT_EQ(Count(*conn_, "t"), 0);

  // Found while queueing more rows (a few pipeline batches later).
  ASSERT_OK(conn_->BeginWrite());
  Status first_error;
  int64_t calls = 0;
  for (int64_t i = 0; i < 20'000 && first_error.ok(); ++i, ++calls) {
    first_error = insert_id(i == 4000 ? 7 : i);
  }
  EXPECT_ERROR_CODE(first_error, ErrorCode::kInternal);
  if (sqlite()) {
    EXPECT_EQ(calls, 4001);
  }
  conn_->Rollback();
  EXPECT_EQ(Count(*conn_, "t"), 0);

  ASSERT_OK(conn_->BeginWrite());
  ASSERT_OK(insert_id(1));
  ASSERT_OK(conn_->Commit());
  EXPECT_EQ(Count(*conn_, "t"), 1);
}

TEST_P(DatabaseTest, ColumnWithoutAccessorIsInternal) {
  EXPECT_ERROR_CODE(conn_->Execute("SELECT 1.5", {}, [](const Row&) {}),
                    ErrorCode::kInternal);
  EXPECT_EQ(QueryInt(*conn_, "SELECT 3"), 3);
}

INSTANTIATE_TEST_SUITE_P(Backends, DatabaseTest,
                         ::testing::Values(Backend::kSqlite,
                                           Backend::kPostgres),
                         [](const auto& p) { return Describe(p.param); });

TEST(RewriteParamsForSqliteTest, RewritesOnlyParametersOutsideQuotes) {
  EXPECT_EQ(internal::RewriteParamsForSqlite(
                "SELECT $1, '$2', 'it''s $3', \"a$4\", x$5 -- $6\n"
                "/* $7 */ $12 FROM t WHERE y = $2"),
            "SELECT ?1, '$2', 'it''s $3', \"a$4\", x$5 -- $6\n"
            "/* $7 */ ?12 FROM t WHERE y = ?2");
  EXPECT_EQ(internal::RewriteParamsForSqlite("SELECT $ , $a, $1"),
            "SELECT $ , $a, ?1");
}

TEST(ConnectionTest, UnknownSchemeIsInvalidArgument) {
  auto conn = Connection::Open(
      std::string("mysql://bantay:") + kPassword + "@127.0.0.1/db", true);
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(conn.error().message().find(kPassword), std::string::npos);
}

class SqliteDatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bantay-db-" + UniqueName());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(SqliteDatabaseTest, MissingFileWithoutCreateIsNotFound) {
  fs::path path = dir_ / "missing.db";
  auto conn = Connection::Open("sqlite:" + path.string(), /*create=*/false);
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.error().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(fs::exists(path));
  auto created = Connection::Open("sqlite:" + path.string(), /*create=*/true);
  ASSERT_OK(created);
  EXPECT_TRUE(fs::exists(path));
}

TEST_F(SqliteDatabaseTest, UsesWalFullSyncAndForeignKeys) {
  std::string url = "sqlite:" + (dir_ / "wal.db").string();
  ASSERT_OK(Connection::Open(url, /*create=*/true));
  // Settings hold for a reopened file too.
  auto conn = Connection::Open(url, /*create=*/false);
  ASSERT_OK(conn);
  std::string journal_mode;
  ASSERT_OK((*conn)->Execute("PRAGMA journal_mode", {}, [&](const Row& row) {
    journal_mode = row.Text(0);
  }));
  EXPECT_EQ(journal_mode, "wal");
  int64_t synchronous = -1;
  ASSERT_OK((*conn)->Execute("PRAGMA synchronous", {}, [&](const Row& row) {
    synchronous = row.Int(0);
  }));
  EXPECT_EQ(synchronous, 2);  // FULL
  ASSERT_OK(
      (*conn)->ExecScript("CREATE TABLE parent (id INTEGER PRIMARY KEY);"
                          "CREATE TABLE child (id INTEGER PRIMARY KEY,"
                          "  parent INTEGER NOT NULL REFERENCES parent (id))"));
  EXPECT_ERROR_CODE((*conn)->Execute("INSERT INTO child VALUES (1, $1)",
                                     std::vector<Param>{Param::Int(9)}),
                    ErrorCode::kInternal);
}

TEST_F(SqliteDatabaseTest, LockedDatabaseIsUnavailable) {
  std::string url = "sqlite:" + (dir_ / "locked.db").string();
  auto first = Connection::Open(url, /*create=*/true);
  ASSERT_OK(first);
  auto second = Connection::Open(url, /*create=*/false);
  ASSERT_OK(second);
  ASSERT_OK((*second)->ExecScript("PRAGMA busy_timeout = 0"));
  ASSERT_OK((*first)->BeginWrite());
  EXPECT_ERROR_CODE((*second)->BeginWrite(), ErrorCode::kUnavailable);
  (*first)->Rollback();
  ASSERT_OK((*second)->BeginWrite());
  ASSERT_OK((*second)->Commit());
}

TEST(PostgresDatabaseTest, UnreachableServerIsUnavailableWithoutPassword) {
  const int port = PgCluster::Shared().port();
  const std::string user = std::string("bantay:") + kPassword + "@127.0.0.1";
  for (const std::string& url : {
           "postgresql://" + user + ":1/db",  // nothing listens on port 1
           "postgresql://" + user + ":notaport/db",
           "postgres://" + user + ":" + std::to_string(port) + "/no_such_db",
           "postgresql://127.0.0.1:1/db?password=" + std::string(kPassword),
       }) {
    auto conn = Connection::Open(url, /*create=*/false);
    ASSERT_FALSE(conn.ok()) << url;
    EXPECT_EQ(conn.error().code(), ErrorCode::kUnavailable)
        << conn.error().ToString();
    EXPECT_EQ(conn.error().message().find(kPassword), std::string::npos)
        << conn.error().message();
  }
  auto bad = Connection::Open(
      "postgresql://" + user + ":1/db?no_such_option=" + kPassword, false);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.error().message().find(kPassword), std::string::npos)
      << bad.error().message();
}

TEST(PostgresDatabaseTest, LostConnectionIsUnavailableFromThenOn) {
  std::string url = PgCluster::Shared().CreateDatabase(UniqueName());
  auto victim = Connection::Open(url, false);
  ASSERT_OK(victim);
  auto killer = Connection::Open(url, false);
  ASSERT_OK(killer);
  int64_t pid = 0;
  ASSERT_OK((*victim)->Execute("SELECT pg_backend_pid()", {},
                               [&](const Row& row) { pid = row.Int(0); }));
  ASSERT_GT(pid, 0);
  int64_t terminated = 0;
  ASSERT_OK(
      (*killer)->Execute("SELECT pg_terminate_backend($1::integer, 10000)",
                         std::vector<Param>{Param::Int(pid)},
                         [&](const Row& row) { terminated = row.Int(0); }));
  ASSERT_EQ(terminated, 1);

  EXPECT_ERROR_CODE((*victim)->Execute("SELECT 1", {}, [](const Row&) {}),
                    ErrorCode::kUnavailable);
  EXPECT_ERROR_CODE((*victim)->Execute("SELECT 1", {}, [](const Row&) {}),
                    ErrorCode::kUnavailable);
  (*victim)->Rollback();
  EXPECT_ERROR_CODE((*victim)->BeginWrite(), ErrorCode::kUnavailable);
  EXPECT_ERROR_CODE((*victim)->ExecScript("SELECT 1"), ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace bantay::matcher::db
