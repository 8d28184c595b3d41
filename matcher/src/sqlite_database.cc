// The SQLite backend: one database file in WAL mode, so that readers never
// block the single writer (and the writer never blocks readers).
#include <sqlite3.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>

#include "database.h"

namespace bantay::matcher::db::internal {
namespace {

constexpr int kBusyTimeoutMs = 30'000;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const {
    return std::hash<std::string_view>{}(s);
  }
};

ErrorCode CodeOf(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return ErrorCode::kUnavailable;
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
      return ErrorCode::kIo;
    default:
      return ErrorCode::kInternal;
  }
}

Error SqliteError(sqlite3* db, int rc, std::string_view what) {
  std::string message = "sqlite: ";
  message += what;
  message += ": ";
  message += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return Error(CodeOf(rc), std::move(message));
}

Error Unusable() {
  return Error(ErrorCode::kUnavailable,
               "sqlite: connection unusable after a failed rollback");
}

// SQLite binds a null pointer as SQL NULL, so empty values need a non-null
// pointer to stay empty text or blobs.
const char* NonNull(std::string_view bytes) {
  return bytes.data() != nullptr ? bytes.data() : "";
}

class SqliteRow final : public Row {
 public:
  explicit SqliteRow(sqlite3_stmt* stmt)
      : stmt_(stmt), columns_(sqlite3_column_count(stmt)) {}

  int columns() const override { return columns_; }
  bool IsNull(int col) const override {
    return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
  }
  int64_t Int(int col) const override {
    return sqlite3_column_int64(stmt_, col);
  }
  std::string_view Text(int col) const override {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    if (p == nullptr) return {};
    return {reinterpret_cast<const char*>(p),
            static_cast<size_t>(sqlite3_column_bytes(stmt_, col))};
  }
  std::span<const uint8_t> Blob(int col) const override {
    const void* p = sqlite3_column_blob(stmt_, col);
    if (p == nullptr) return {};
    return {static_cast<const uint8_t*>(p),
            static_cast<size_t>(sqlite3_column_bytes(stmt_, col))};
  }

 private:
  sqlite3_stmt* stmt_;
  int columns_;
};

// The database handle and the statement cache, shared by the connection and
// the statements it prepared so that either may be destroyed first.
class SqliteSession {
 public:
  explicit SqliteSession(sqlite3* db) : db_(db) {}
  ~SqliteSession() {
    for (auto& [sql, cached] : cache_) sqlite3_finalize(cached.stmt);
    sqlite3_close_v2(db_);
  }
  SqliteSession(const SqliteSession&) = delete;
  SqliteSession& operator=(const SqliteSession&) = delete;

  sqlite3* db() const { return db_; }
  bool broken() const { return broken_; }
  void set_broken() { broken_ = true; }

  Result<sqlite3_stmt*> PrepareOne(std::string_view sql) {
    std::string rewritten = RewriteParamsForSqlite(sql);
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(db_, rewritten.data(),
                                static_cast<int>(rewritten.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK) return SqliteError(db_, rc, "prepare");
    if (stmt == nullptr) {
      return Error(ErrorCode::kInternal, "sqlite: empty statement");
    }
    for (const char* end = rewritten.data() + rewritten.size(); tail < end;
         ++tail) {
      if (*tail != ';' && std::strchr(" \t\r\n", *tail) == nullptr) {
        sqlite3_finalize(stmt);
        return Error(ErrorCode::kInternal,
                     "sqlite: more than one statement given to Execute");
      }
    }
    return stmt;
  }

  Status Run(sqlite3_stmt* stmt, std::span<const Param> params,
             const RowCallback& on_row) {
    if (broken_) return Unusable();
    // Resets even when `on_row` throws, so the statement does not keep the
    // transaction's locks.
    struct ResetGuard {
      sqlite3_stmt* stmt;
      ~ResetGuard() { sqlite3_reset(stmt); }
    } guard{stmt};
    int expected = sqlite3_bind_parameter_count(stmt);
    if (static_cast<size_t>(expected) != params.size()) {
      return Error(ErrorCode::kInternal,
                   "sqlite: statement takes " + std::to_string(expected) +
                       " parameters, " + std::to_string(params.size()) +
                       " given");
    }
    for (int i = 0; i < expected; ++i) {
      const Param& p = params[static_cast<size_t>(i)];
      int rc = SQLITE_OK;
      switch (p.kind) {
        case Param::Kind::kNull:
          rc = sqlite3_bind_null(stmt, i + 1);
          break;
        case Param::Kind::kInt:
          rc = sqlite3_bind_int64(stmt, i + 1, p.int_value);
          break;
        case Param::Kind::kText:
          rc = sqlite3_bind_text64(stmt, i + 1, NonNull(p.bytes),
                                   p.bytes.size(), SQLITE_STATIC, SQLITE_UTF8);
          break;
        case Param::Kind::kBlob:
          rc = sqlite3_bind_blob64(stmt, i + 1, NonNull(p.bytes),
                                   p.bytes.size(), SQLITE_STATIC);
          break;
      }
      if (rc != SQLITE_OK) return SqliteError(db_, rc, "bind");
    }
    SqliteRow row(stmt);
    for (;;) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) return {};
      if (rc != SQLITE_ROW) return SqliteError(db_, rc, "step");
      if (!on_row) continue;
      // Floating-point values have no Row accessor; PostgreSQL fails the
      // same way on such columns.
      for (int col = 0; col < row.columns(); ++col) {
        if (sqlite3_column_type(stmt, col) == SQLITE_FLOAT) {
          return Error(ErrorCode::kInternal,
                       "sqlite: floating-point value in result column " +
                           std::to_string(col));
        }
      }
      on_row(row);
    }
  }

  // Execute(sql, ...) of the connection: the store runs the same few SQL
  // texts many times, so each is prepared once. A text that is already
  // running (Execute from inside a row callback) gets a statement of its
  // own.
  Status ExecuteCached(std::string_view sql, std::span<const Param> params,
                       const RowCallback& on_row) {
    if (broken_) return Unusable();
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      Result<sqlite3_stmt*> stmt = PrepareOne(sql);
      if (!stmt.ok()) return stmt.error();
      try {  // an allocation failing would leak the statement
        it = cache_.emplace(std::string(sql), Cached{*stmt, false}).first;
      } catch (...) {
        sqlite3_finalize(*stmt);
        throw;
      }
    } else if (it->second.in_use) {
      Result<sqlite3_stmt*> stmt = PrepareOne(sql);
      if (!stmt.ok()) return stmt.error();
      struct Finalizer {  // also when on_row throws
        sqlite3_stmt* stmt;
        ~Finalizer() { sqlite3_finalize(stmt); }
      } finalizer{*stmt};
      return Run(*stmt, params, on_row);
    }
    Cached& cached = it->second;
    cached.in_use = true;
    struct InUseGuard {
      bool& in_use;
      ~InUseGuard() { in_use = false; }
    } guard{cached.in_use};
    return Run(cached.stmt, params, on_row);
  }

 private:
  struct Cached {
    sqlite3_stmt* stmt;
    bool in_use;
  };

  sqlite3* db_;
  bool broken_ = false;
  std::unordered_map<std::string, Cached, StringHash, std::equal_to<>> cache_;
};

class SqliteStatement final : public Statement {
 public:
  SqliteStatement(std::shared_ptr<SqliteSession> session, sqlite3_stmt* stmt)
      : session_(std::move(session)), stmt_(stmt) {}
  ~SqliteStatement() override { sqlite3_finalize(stmt_); }
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  Status Execute(std::span<const Param> params,
                 const RowCallback& on_row) override {
    return session_->Run(stmt_, params, on_row);
  }

 private:
  std::shared_ptr<SqliteSession> session_;
  sqlite3_stmt* stmt_;
};

class SqliteConnection final : public Connection {
 public:
  explicit SqliteConnection(std::shared_ptr<SqliteSession> session)
      : session_(std::move(session)) {}

  Backend backend() const override { return Backend::kSqlite; }

  Status ExecScript(std::string_view sql) override {
    if (session_->broken()) return Unusable();
    std::string script(sql);
    char* message = nullptr;
    int rc = sqlite3_exec(session_->db(), script.c_str(), nullptr, nullptr,
                          &message);
    if (rc == SQLITE_OK) return {};
    Error error(CodeOf(rc),
                std::string("sqlite: script: ") +
                    (message != nullptr ? message : sqlite3_errstr(rc)));
    sqlite3_free(message);
    return error;
  }

  Status Execute(std::string_view sql, std::span<const Param> params,
                 const RowCallback& on_row) override {
    return session_->ExecuteCached(sql, params, on_row);
  }

  Result<std::unique_ptr<Statement>> Prepare(std::string_view sql) override {
    if (session_->broken()) return Unusable();
    Result<sqlite3_stmt*> stmt = session_->PrepareOne(sql);
    if (!stmt.ok()) return stmt.error();
    return std::unique_ptr<Statement>(
        std::make_unique<SqliteStatement>(session_, *stmt));
  }

  Status BeginWrite() override {
    return session_->ExecuteCached("BEGIN IMMEDIATE", {}, nullptr);
  }
  Status BeginRead() override {
    return session_->ExecuteCached("BEGIN", {}, nullptr);
  }
  Status Commit() override {
    return session_->ExecuteCached("COMMIT", {}, nullptr);
  }

  void Rollback() override {
    if (session_->broken()) return;
    // SQLite may already have rolled back by itself (after an I/O error, a
    // full disk or a failed COMMIT in some cases).
    if (sqlite3_get_autocommit(session_->db()) != 0) return;
    if (sqlite3_exec(session_->db(), "ROLLBACK", nullptr, nullptr, nullptr) !=
        SQLITE_OK) {
      session_->set_broken();
    }
  }

 private:
  std::shared_ptr<SqliteSession> session_;
};

}  // namespace

Result<std::unique_ptr<Connection>> OpenSqlite(const std::string& path,
                                               bool create) {
  if (!create) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0 && errno == ENOENT) {
      return Error(ErrorCode::kNotFound,
                   "sqlite: database file does not exist: " + path);
    }
  }
  if (create) {
    // A new database file is private to its owner (SQLite would use the
    // umask, typically 0644): it holds the lists' metadata in clear. SQLite
    // gives its -wal and -shm files the database file's mode.
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) ::close(fd);
  }
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  if (create) flags |= SQLITE_OPEN_CREATE;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  // The session closes the handle, which sqlite3_open_v2 may return even on
  // failure.
  auto session = std::make_shared<SqliteSession>(db);
  if (rc != SQLITE_OK) return SqliteError(db, rc, "open " + path);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  std::string journal_mode;
  Status status = session->ExecuteCached(
      "PRAGMA journal_mode=WAL", {},
      [&](const Row& row) { journal_mode = row.Text(0); });
  if (!status.ok()) return status.error();
  if (journal_mode != "wal") {
    return Error(ErrorCode::kInternal, "sqlite: cannot use WAL mode for " +
                                           path + " (journal mode " +
                                           journal_mode + ")");
  }
  status = session->ExecuteCached("PRAGMA synchronous=FULL", {}, nullptr);
  if (!status.ok()) return status.error();
  status = session->ExecuteCached("PRAGMA foreign_keys=ON", {}, nullptr);
  if (!status.ok()) return status.error();
  return std::unique_ptr<Connection>(
      std::make_unique<SqliteConnection>(std::move(session)));
}

}  // namespace bantay::matcher::db::internal
