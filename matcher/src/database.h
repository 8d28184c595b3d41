// A small SQL layer under the store, with two backends of the same
// behaviour: SQLite (embedded, one file, WAL mode) and PostgreSQL (libpq).
// The store's logic is written once over this interface; only DDL differs
// per backend.
//
// SQL text uses PostgreSQL's numbered parameters ($1, $2, ...); the SQLite
// backend rewrites them to ?1, ?2, ... Column values come back as 64-bit
// integers, text or blobs (SQLite INTEGER/TEXT/BLOB; PostgreSQL
// BIGINT/INTEGER/SMALLINT, TEXT, BYTEA — results are requested in binary
// format and decoded here).
//
// Errors: kNotFound (SQLite file missing when not creating), kUnavailable
// (cannot connect, database locked/busy after the busy timeout, connection
// lost), kInvalidArgument (bad URL), kInternal (SQL errors: a bug), kIo
// (disk full, I/O error). Messages carry the database's own error text but
// never parameter values (they may be secrets or hashes).
//
// Thread safety: a Connection and its Statements are used by one thread at a
// time.
#ifndef BANTAY_MATCHER_DATABASE_H_
#define BANTAY_MATCHER_DATABASE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "bantay/models/status.h"

namespace bantay::matcher::db {

enum class Backend { kSqlite, kPostgres };

// A parameter value: a view, valid for the duration of the call that takes
// it.
struct Param {
  enum class Kind { kNull, kInt, kText, kBlob };
  Kind kind = Kind::kNull;
  int64_t int_value = 0;
  std::string_view bytes;  // text or blob

  static Param Null() { return {}; }
  static Param Int(int64_t v) { return {Kind::kInt, v, {}}; }
  static Param Text(std::string_view s) { return {Kind::kText, 0, s}; }
  static Param Blob(std::span<const uint8_t> b) {
    return {Kind::kBlob, 0,
            std::string_view(reinterpret_cast<const char*>(b.data()), b.size())};
  }
};

// One result row; views are valid only during the callback.
class Row {
 public:
  virtual ~Row() = default;
  virtual int columns() const = 0;
  virtual bool IsNull(int col) const = 0;
  virtual int64_t Int(int col) const = 0;
  virtual std::string_view Text(int col) const = 0;
  virtual std::span<const uint8_t> Blob(int col) const = 0;
};

using RowCallback = std::function<void(const Row&)>;

// A prepared statement, executed many times (bulk inserts).
class Statement {
 public:
  virtual ~Statement() = default;
  // Runs the statement with these parameters; rows (if any) go to `on_row`.
  // PostgreSQL: inside a transaction, a call without `on_row` is only queued
  // (libpq pipeline mode, so that bulk inserts do not pay a round trip per
  // row) and returns OK; an error of a queued call is returned by the next
  // call that needs a result from the server, at the latest by Commit.
  virtual Status Execute(std::span<const Param> params,
                         const RowCallback& on_row = nullptr) = 0;
};

class Connection {
 public:
  // "sqlite:PATH" (created when `create`; otherwise kNotFound if missing) or
  // "postgresql://..." / "postgres://..." (a libpq connection URI; `create`
  // does not apply). SQLite connections use WAL mode, synchronous=FULL,
  // foreign keys on and a 30 s busy timeout.
  static Result<std::unique_ptr<Connection>> Open(std::string_view url,
                                                  bool create);

  virtual ~Connection() = default;
  virtual Backend backend() const = 0;

  // One or more ';'-separated statements without parameters (DDL).
  virtual Status ExecScript(std::string_view sql) = 0;
  // One statement with parameters; result rows go to `on_row`.
  virtual Status Execute(std::string_view sql, std::span<const Param> params,
                         const RowCallback& on_row = nullptr) = 0;
  virtual Result<std::unique_ptr<Statement>> Prepare(std::string_view sql) = 0;

  // A write transaction that excludes every other writer of the same
  // database until Commit or Rollback (SQLite: BEGIN IMMEDIATE; PostgreSQL:
  // BEGIN and a transaction-scoped advisory lock), so that version numbers
  // are assigned one at a time.
  virtual Status BeginWrite() = 0;
  // A read transaction that sees one consistent state (SQLite: BEGIN;
  // PostgreSQL: REPEATABLE READ, READ ONLY).
  virtual Status BeginRead() = 0;
  virtual Status Commit() = 0;
  // Never fails visibly (a failed rollback leaves the connection unusable
  // and later calls return kUnavailable).
  virtual void Rollback() = 0;
};

namespace internal {

// The backends behind Connection::Open.
Result<std::unique_ptr<Connection>> OpenSqlite(const std::string& path,
                                               bool create);
Result<std::unique_ptr<Connection>> OpenPostgres(const std::string& uri);

// "$N" outside string literals, quoted identifiers and comments becomes
// "?N" (SQLite's numbered parameters).
std::string RewriteParamsForSqlite(std::string_view sql);

}  // namespace internal

}  // namespace bantay::matcher::db

#endif  // BANTAY_MATCHER_DATABASE_H_
