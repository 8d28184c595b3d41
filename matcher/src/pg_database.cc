// The PostgreSQL backend over libpq: extended protocol with binary
// parameters and results, statements prepared once per SQL text, rows
// streamed in single-row mode, and pipeline mode for bulk writes.
#include <libpq-fe.h>

#include <array>
#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "database.h"

namespace bantay::matcher::db::internal {
namespace {

// Type OIDs of pg_type.dat (stable across PostgreSQL versions).
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kNameOid = 19;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kTextOid = 25;
constexpr Oid kBpcharOid = 1042;
constexpr Oid kVarcharOid = 1043;

// The key of the transaction-scoped advisory lock that serialises writers
// ("Bantay" 00 01). Every Bantay writer of a database uses the same key.
constexpr int64_t kWriterLockKey = 0x42616e7461790001;

// Statement::Execute calls queued in pipeline mode between two syncs. One
// batch is sent while the server works through the previous one, and the
// results held at a time stay small.
constexpr int kPipelineBatch = 1024;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const {
    return std::hash<std::string_view>{}(s);
  }
};

// Forms of the password found in a URI, to be removed from error messages:
// libpq's messages do not contain it today, but they are not ours.
std::vector<std::string> SecretsOf(const std::string& uri) {
  std::vector<std::string> secrets;
  char* parse_error = nullptr;
  if (PQconninfoOption* options = PQconninfoParse(uri.c_str(), &parse_error)) {
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
      if (std::strcmp(o->keyword, "password") == 0 && o->val != nullptr) {
        secrets.emplace_back(o->val);
      }
    }
    PQconninfoFree(options);
  }
  PQfreemem(parse_error);
  // The raw (percent-encoded) forms: user:PASSWORD@ and password=PASSWORD.
  size_t scheme_end = uri.find("://");
  if (scheme_end != std::string::npos) {
    size_t start = scheme_end + 3;
    size_t end = uri.find_first_of("@/", start);
    if (end != std::string::npos && uri[end] == '@') {
      size_t colon = uri.find(':', start);
      if (colon < end)
        secrets.push_back(uri.substr(colon + 1, end - colon - 1));
    }
  }
  for (size_t pos = uri.find("password="); pos != std::string::npos;
       pos = uri.find("password=", pos + 1)) {
    size_t start = pos + std::strlen("password=");
    size_t end = uri.find('&', start);
    secrets.push_back(uri.substr(
        start, end == std::string::npos ? std::string::npos : end - start));
  }
  std::erase_if(secrets, [](const std::string& s) { return s.empty(); });
  return secrets;
}

std::string Scrub(std::string message,
                  const std::vector<std::string>& secrets) {
  for (const std::string& secret : secrets) {
    for (size_t pos = message.find(secret); pos != std::string::npos;
         pos = message.find(secret, pos + 3)) {
      message.replace(pos, secret.size(), "***");
    }
  }
  while (!message.empty() &&
         (message.back() == '\n' || message.back() == ' ')) {
    message.pop_back();
  }
  return message;
}

bool SupportedType(Oid type) {
  switch (type) {
    case kBoolOid:
    case kInt2Oid:
    case kInt4Oid:
    case kInt8Oid:
    case kTextOid:
    case kVarcharOid:
    case kBpcharOid:
    case kNameOid:
    case kByteaOid:
      return true;
    default:
      return false;
  }
}

int64_t BigEndian(const char* p, int size) {
  uint64_t v = 0;
  for (int i = 0; i < size; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  // Sign-extends the narrower integer types.
  int shift = 64 - 8 * size;
  return shift == 0 ? static_cast<int64_t>(v)
                    : static_cast<int64_t>(v << shift) >> shift;
}

// A row of a binary-format result.
class PgRow final : public Row {
 public:
  void Reset(const PGresult* result, int row, const Oid* types, int columns) {
    result_ = result;
    row_ = row;
    types_ = types;
    columns_ = columns;
  }

  int columns() const override { return columns_; }
  bool IsNull(int col) const override {
    return !InRange(col) || PQgetisnull(result_, row_, col) != 0;
  }
  int64_t Int(int col) const override {
    if (IsNull(col)) return 0;
    const char* value = PQgetvalue(result_, row_, col);
    int size = PQgetlength(result_, row_, col);
    switch (types_[col]) {
      case kInt8Oid:
      case kInt4Oid:
      case kInt2Oid:
        return size <= 8 ? BigEndian(value, size) : 0;
      case kBoolOid:
        return size == 1 && value[0] != 0 ? 1 : 0;
      default:
        return 0;
    }
  }
  std::string_view Text(int col) const override {
    if (IsNull(col)) return {};
    return {PQgetvalue(result_, row_, col),
            static_cast<size_t>(PQgetlength(result_, row_, col))};
  }
  std::span<const uint8_t> Blob(int col) const override {
    std::string_view bytes = Text(col);
    return {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
  }

 private:
  bool InRange(int col) const { return col >= 0 && col < columns_; }

  const PGresult* result_ = nullptr;
  int row_ = 0;
  const Oid* types_ = nullptr;
  int columns_ = 0;
};

// The connection, its prepared statements and its pipeline, shared by the
// Connection and its Statements so that either may be destroyed first.
class PgSession {
 public:
  PgSession(PGconn* conn, std::vector<std::string> secrets)
      : conn_(conn), secrets_(std::move(secrets)) {}
  ~PgSession() { PQfinish(conn_); }
  PgSession(const PgSession&) = delete;
  PgSession& operator=(const PgSession&) = delete;

  bool InTransaction() const {
    if (pipeline_) return true;
    PGTransactionStatusType status = PQtransactionStatus(conn_);
    return status == PQTRANS_INTRANS || status == PQTRANS_INERROR;
  }

  // Sends a prepared statement with its parameters; results are binary.
  Status Send(const std::string& statement_name, std::span<const Param> params) {
    BindParams(params);
    return SendBound(statement_name, params.size());
  }
  // Send, the parameters bound already (BindParams).
  Status SendBound(const std::string& statement_name, size_t param_count) {
    if (PQsendQueryPrepared(conn_, statement_name.c_str(), static_cast<int>(param_count),
                            values_.data(), lengths_.data(), formats_.data(),
                            /*resultFormat=*/1) == 0) {
      return ConnectionError("send");
    }
    return {};
  }

  // Runs one statement now and streams its rows to `on_row`.
  Status ExecuteNow(std::string_view sql, std::span<const Param> params,
                    const RowCallback& on_row) {
    if (broken_) return Unusable();
    if (Status s = FinishPipeline(); !s.ok()) return s;
    Result<Prepared*> prepared = FindOrPrepare(sql, params, /*queue=*/false);
    if (!prepared.ok()) return prepared.error();
    if (Status sent = Send((*prepared)->name, params); !sent.ok()) return sent;
    // Without single-row mode libpq would gather the whole result first.
    if (on_row) PQsetSingleRowMode(conn_);
    return CollectResults(on_row);
  }

  // Queues one statement in pipeline mode (inside a transaction, no rows
  // wanted); its outcome is known at the next FinishPipeline.
  Status Queue(std::string_view sql, std::span<const Param> params) {
    if (broken_) return Unusable();
    if (deferred_) return *deferred_;
    if (!pipeline_) {
      if (PQenterPipelineMode(conn_) == 0) {
        return ConnectionError("enter pipeline mode");
      }
      pipeline_ = true;
    }
    Result<Prepared*> prepared = FindOrPrepare(sql, params, /*queue=*/true);
    if (!prepared.ok()) return prepared.error();
    // What may throw (an allocation) comes before the send, and the
    // statement is counted before it is sent: one sent uncounted would
    // leave the pipeline without the sync its result waits for, and a
    // later FinishPipeline waiting for ever.
    BindParams(params);
    pending_.push_back(nullptr);
    ++unsynced_;
    if (Status sent = SendBound((*prepared)->name, params.size()); !sent.ok()) {
      pending_.pop_back();
      return sent;
    }
    if (unsynced_ >= kPipelineBatch) {
      if (Status s = Sync(); !s.ok()) return s;
      if (Status s = Drain(1); !s.ok()) return s;
      if (deferred_) return *deferred_;
    }
    return {};
  }

  // Collects every queued result and leaves pipeline mode; returns the first
  // error of a queued statement, if any.
  Status FinishPipeline() {
    if (!pipeline_) return {};
    if (unsynced_ > 0) {
      if (Status s = Sync(); !s.ok()) return s;
    }
    if (Status s = Drain(0); !s.ok()) return s;
    if (PQexitPipelineMode(conn_) == 0) {
      // The end of the last sync's results has not been read yet.
      PQclear(PQgetResult(conn_));
      if (PQexitPipelineMode(conn_) == 0) {
        broken_ = true;
        return Error(
            ErrorCode::kUnavailable,
            "postgresql: cannot leave pipeline mode: " + ConnMessage());
      }
    }
    pipeline_ = false;
    pending_.clear();  // (one counted but not sent, as an allocation failed)
    if (deferred_) {
      Error error = std::move(*deferred_);
      deferred_.reset();
      return error;
    }
    return {};
  }

  // A simple-protocol query without parameters (scripts, BEGIN, COMMIT).
  // `command` receives the command tag of the last statement.
  Status Simple(const char* sql, std::string* command = nullptr) {
    if (broken_) return Unusable();
    if (Status s = FinishPipeline(); !s.ok()) return s;
    PGresult* result = PQexec(conn_, sql);
    Status status;
    if (result == nullptr) {
      status = ConnectionError("exec");
    } else {
      ExecStatusType st = PQresultStatus(result);
      if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ||
          st == PGRES_EMPTY_QUERY) {
        if (command != nullptr) *command = PQcmdStatus(result);
      } else {
        status = ResultError(result);
      }
    }
    PQclear(result);
    return status;
  }

  void Rollback() {
    if (broken_) return;
    // Errors of queued statements do not matter any more.
    (void)FinishPipeline();
    if (broken_ || PQtransactionStatus(conn_) == PQTRANS_IDLE) return;
    if (!Simple("ROLLBACK").ok()) broken_ = true;
  }

  bool broken() const { return broken_; }

  Error Unusable() const {
    return Error(ErrorCode::kUnavailable,
                 "postgresql: connection lost or unusable after an earlier "
                 "failure");
  }

 private:
  struct Prepared {
    std::string name;
    std::vector<Oid> types;  // 0: left to the server (the first value was NULL)
  };
  using PreparedGroup = std::vector<std::unique_ptr<Prepared>>;

  static Oid OidOf(const Param& p) {
    switch (p.kind) {
      case Param::Kind::kInt:
        return kInt8Oid;
      case Param::Kind::kText:
        return kTextOid;
      case Param::Kind::kBlob:
        return kByteaOid;
      case Param::Kind::kNull:
        break;
    }
    return 0;
  }

  // A statement is prepared per SQL text and parameter types, since binary
  // values must match the types the server expects; a NULL fits any.
  Result<Prepared*> FindOrPrepare(std::string_view sql,
                                  std::span<const Param> params, bool queue) {
    auto it = prepared_.find(sql);
    if (it == prepared_.end()) {
      it = prepared_.emplace(std::string(sql), PreparedGroup{}).first;
    }
    PreparedGroup& group = it->second;
    for (const auto& p : group) {
      if (p->types.size() != params.size()) continue;
      bool fits = true;
      for (size_t i = 0; i < params.size() && fits; ++i) {
        fits = params[i].kind == Param::Kind::kNull ||
               p->types[i] == OidOf(params[i]);
      }
      if (fits) return p.get();
    }
    auto prepared = std::make_unique<Prepared>();
    prepared->name = "bantay_" + std::to_string(++statement_count_);
    for (const Param& p : params) prepared->types.push_back(OidOf(p));
    const char* text = it->first.c_str();
    int n = static_cast<int>(params.size());
    group.reserve(group.size() + 1);  // keeping it, below, cannot throw
    if (queue) {
      // Counted before it is sent (Queue).
      pending_.push_back(prepared.get());
      ++unsynced_;
      if (PQsendPrepare(conn_, prepared->name.c_str(), text, n,
                        prepared->types.data()) == 0) {
        pending_.pop_back();
        return ConnectionError("send prepare");
      }
    } else {
      PGresult* result = PQprepare(conn_, prepared->name.c_str(), text, n,
                                   prepared->types.data());
      Status status;
      if (result == nullptr) {
        status = ConnectionError("prepare");
      } else if (PQresultStatus(result) != PGRES_COMMAND_OK) {
        status = ResultError(result);
      }
      PQclear(result);
      if (!status.ok()) return status.error();
    }
    group.push_back(std::move(prepared));
    return group.back().get();
  }

  // Forgets a statement whose Parse failed or was skipped in a pipeline.
  void ForgetPrepared(const Prepared* failed) {
    for (auto& [sql, group] : prepared_) {
      std::erase_if(group, [&](const std::unique_ptr<Prepared>& p) {
        return p.get() == failed;
      });
    }
  }

  void BindParams(std::span<const Param> params) {
    size_t n = params.size();
    values_.resize(n);
    lengths_.resize(n);
    formats_.assign(n, 1);
    ints_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const Param& p = params[i];
      switch (p.kind) {
        case Param::Kind::kNull:
          values_[i] = nullptr;
          lengths_[i] = 0;
          break;
        case Param::Kind::kInt: {
          uint64_t v = static_cast<uint64_t>(p.int_value);
          for (int b = 7; b >= 0; --b, v >>= 8) {
            ints_[i][static_cast<size_t>(b)] = static_cast<char>(v & 0xff);
          }
          values_[i] = ints_[i].data();
          lengths_[i] = 8;
          break;
        }
        case Param::Kind::kText:
        case Param::Kind::kBlob:
          // A null pointer would be sent as SQL NULL.
          values_[i] = p.bytes.data() != nullptr ? p.bytes.data() : "";
          lengths_[i] = static_cast<int>(p.bytes.size());
          break;
      }
    }
  }

  Status CollectResults(const RowCallback& on_row) {
    // Reads what is left of the results, also when `on_row` throws, so that
    // the connection stays usable.
    struct Drainer {
      PGconn* conn;
      PGresult* current = nullptr;
      ~Drainer() {
        PQclear(current);
        while (PGresult* r = PQgetResult(conn)) PQclear(r);
      }
    } drainer{conn_};
    Status status;
    while ((drainer.current = PQgetResult(conn_)) != nullptr) {
      PGresult* result = drainer.current;
      ExecStatusType st = PQresultStatus(result);
      if (status.ok() && (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK)) {
        int rows = PQntuples(result);
        if (on_row && rows > 0) {
          status = CheckColumns(result);
          for (int r = 0; r < rows && status.ok(); ++r) {
            row_.Reset(result, r, types_.data(),
                       static_cast<int>(types_.size()));
            on_row(row_);
          }
        }
      } else if (status.ok() && st != PGRES_SINGLE_TUPLE &&
                 st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK &&
                 st != PGRES_EMPTY_QUERY) {
        status = ResultError(result);
      }
      PQclear(result);
      drainer.current = nullptr;
    }
    if (PQstatus(conn_) == CONNECTION_BAD) {
      broken_ = true;
      if (status.ok()) status = ConnectionError("read");
    }
    return status;
  }

  Status CheckColumns(const PGresult* result) {
    int columns = PQnfields(result);
    types_.resize(static_cast<size_t>(columns));
    for (int c = 0; c < columns; ++c) {
      Oid type = PQftype(result, c);
      if (!SupportedType(type) || PQfformat(result, c) != 1) {
        return Error(ErrorCode::kInternal,
                     "postgresql: result column " + std::to_string(c) + " (" +
                         PQfname(result, c) + ") has type OID " +
                         std::to_string(type) +
                         ", which has no Row accessor; cast it to bigint, "
                         "text or bytea");
      }
      types_[static_cast<size_t>(c)] = type;
    }
    return {};
  }

  Status Sync() {
    if (PQpipelineSync(conn_) == 0) return ConnectionError("pipeline sync");
    ++syncs_in_flight_;
    unsynced_ = 0;
    return {};
  }

  // Reads pipeline results until at most `max_syncs` syncs are in flight.
  // Errors of statements are kept in deferred_; only a lost connection
  // fails here.
  Status Drain(int max_syncs) {
    bool after_end = false;
    while (syncs_in_flight_ > max_syncs) {
      PGresult* result = PQgetResult(conn_);
      if (result == nullptr) {
        if (PQstatus(conn_) == CONNECTION_BAD) return ConnectionError("read");
        if (after_end) {
          // Nothing pending although a sync is expected.
          broken_ = true;
          return Error(ErrorCode::kUnavailable,
                       "postgresql: pipeline results out of step");
        }
        after_end = true;
        continue;
      }
      after_end = false;
      ExecStatusType st = PQresultStatus(result);
      if (st == PGRES_PIPELINE_SYNC) {
        --syncs_in_flight_;
      } else if (!pending_.empty()) {
        Prepared* prepare = pending_.front();
        pending_.pop_front();
        bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ||
                  st == PGRES_EMPTY_QUERY;
        if (!ok && prepare != nullptr) ForgetPrepared(prepare);
        if (st != PGRES_PIPELINE_ABORTED && !ok && !deferred_) {
          deferred_ = ResultError(result);
        }
      }
      PQclear(result);
      if (broken_) return Unusable();
    }
    return {};
  }

  std::string ConnMessage() const {
    return Scrub(PQerrorMessage(conn_), secrets_);
  }

  // A failure of libpq itself: a lost connection, or a misuse.
  Error ConnectionError(std::string_view what) {
    bool lost = PQstatus(conn_) == CONNECTION_BAD;
    if (lost) broken_ = true;
    return Error(
        lost ? ErrorCode::kUnavailable : ErrorCode::kInternal,
        std::string("postgresql: ") + std::string(what) + ": " + ConnMessage());
  }

  // The server's primary message only: DETAIL lines may quote values.
  Error ResultError(const PGresult* result) {
    if (PQstatus(conn_) == CONNECTION_BAD) {
      broken_ = true;
      return Error(ErrorCode::kUnavailable,
                   "postgresql: connection lost: " + ConnMessage());
    }
    const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    std::string sqlstate = state != nullptr ? state : "";
    ErrorCode code = ErrorCode::kInternal;
    if (sqlstate.starts_with("53")) {
      code = ErrorCode::kIo;  // insufficient resources (disk full, memory)
    } else if ((sqlstate.starts_with("08") && sqlstate != "08P01") ||
               sqlstate.starts_with("57P")) {
      // Connection exceptions (but not a protocol violation: a bug, such as
      // a wrong number of parameters), server shutting down or restarting.
      code = ErrorCode::kUnavailable;
    } else if (sqlstate == "40001" || sqlstate == "40P01" ||
               sqlstate == "55P03") {
      // Serialisation failure, deadlock, lock timeout: worth a retry.
      code = ErrorCode::kUnavailable;
    }
    std::string message = "postgresql: ";
    if (primary != nullptr) {
      message += primary;
    } else {
      message += Scrub(PQresultErrorMessage(result), secrets_);
    }
    if (!sqlstate.empty()) message += " (SQLSTATE " + sqlstate + ")";
    return Error(code, std::move(message));
  }

  PGconn* conn_;
  const std::vector<std::string> secrets_;
  bool broken_ = false;

  std::unordered_map<std::string, PreparedGroup, StringHash, std::equal_to<>>
      prepared_;
  uint64_t statement_count_ = 0;

  // Pipeline mode: one entry per queued command whose result is unread (the
  // statement for a Parse, nullptr for an Execute).
  bool pipeline_ = false;
  std::deque<Prepared*> pending_;
  int unsynced_ = 0;
  int syncs_in_flight_ = 0;
  std::optional<Error> deferred_;

  // Reused per call, so that bulk inserts do not allocate per row.
  std::vector<const char*> values_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
  std::vector<std::array<char, 8>> ints_;
  std::vector<Oid> types_;
  PgRow row_;
};

// Prepared on the server at its first Execute: binary parameters need
// their types, which are known only from the values.
class PgStatement final : public Statement {
 public:
  PgStatement(std::shared_ptr<PgSession> session, std::string_view sql)
      : session_(std::move(session)), sql_(sql) {}

  Status Execute(std::span<const Param> params,
                 const RowCallback& on_row) override {
    if (!on_row && !session_->broken() && session_->InTransaction()) {
      return session_->Queue(sql_, params);
    }
    return session_->ExecuteNow(sql_, params, on_row);
  }

 private:
  std::shared_ptr<PgSession> session_;
  std::string sql_;
};

class PgConnection final : public Connection {
 public:
  // `path`: the search path every transaction pins (PinnedSearchPath), so
  // that no statement run in the session before can have moved it.
  PgConnection(std::shared_ptr<PgSession> session, const std::string& path)
      : session_(std::move(session)),
        begin_write_("BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE; " + SetPath(path) +
                     "SET LOCAL lock_timeout = '30s'; SET LOCAL quote_all_identifiers = off; "
                     "SET LOCAL max_parallel_workers_per_gather = 0; "
                     "SELECT pg_catalog.pg_advisory_xact_lock(" +
                     std::to_string(kWriterLockKey) + ")"),
        begin_read_("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; " + SetPath(path)) {}

  Backend backend() const override { return Backend::kPostgres; }

  Status ExecScript(std::string_view sql) override {
    return session_->Simple(std::string(sql).c_str());
  }

  Status Execute(std::string_view sql, std::span<const Param> params,
                 const RowCallback& on_row) override {
    return session_->ExecuteNow(sql, params, on_row);
  }

  Result<std::unique_ptr<Statement>> Prepare(std::string_view sql) override {
    if (session_->broken()) return session_->Unusable();
    return std::unique_ptr<Statement>(
        std::make_unique<PgStatement>(session_, sql));
  }

  // Read committed whatever the role's default: a change reads what was
  // committed before its table lock, not a snapshot taken before it waited.
  // The lock wait is bounded like SQLite's busy timeout. A change's scans
  // (the rows' transaction ids, every row when it checks) run on one core:
  // parallel workers would take every core of a machine that also matches,
  // for about half the time and twice the CPU.
  Status BeginWrite() override { return Begin(begin_write_.c_str()); }

  Status BeginRead() override { return Begin(begin_read_.c_str()); }

  Status Commit() override {
    std::string command;
    Status status = session_->Simple("COMMIT", &command);
    if (status.ok() && command != "COMMIT") {
      // PostgreSQL answers COMMIT of a failed transaction with ROLLBACK.
      return Error(ErrorCode::kInternal,
                   "postgresql: the transaction failed earlier and was "
                   "rolled back");
    }
    return status;
  }

  void Rollback() override { session_->Rollback(); }

 private:
  // Like SQLite's BEGIN, a failed begin leaves no transaction open.
  Status Begin(const char* sql) {
    Status status = session_->Simple(sql);
    if (!status.ok()) session_->Rollback();
    return status;
  }

  static std::string SetPath(const std::string& path) {
    return path.empty() ? "" : "SET LOCAL search_path = " + path + "; ";
  }

  std::shared_ptr<PgSession> session_;
  const std::string begin_write_, begin_read_;
};

// The search path of every statement of a session: the schema the session
// found its tables in when it connected (the role's and database's setting
// then; where Init makes them), and temporary tables only after it.
// PostgreSQL's own catalog is searched first, as always when a path does
// not name it: a path set for the role or the database that names it later
// (`ALTER ROLE ... SET search_path = public, pg_catalog`) can then put no
// function, operator or aggregate of anyone else's before the built-in ones
// in the store's statements, in this session or any it outlives, nor a
// temporary table before the store's. Empty when no schema of the path
// exists (nothing to find, nothing to make: Init fails).
Result<std::string> PinnedSearchPath(PgSession& session) {
  std::optional<std::string> schema;
  Status s = session.ExecuteNow(
      "SELECT pg_catalog.quote_ident(pg_catalog.current_schema())", {},
      [&](const Row& row) {
        if (!row.IsNull(0)) schema = std::string(row.Text(0));
      });
  if (!s.ok()) return s.error();
  if (!schema) return std::string();
  const std::string path = *schema + ", pg_temp";
  s = session.Simple(("SET search_path = " + path).c_str());
  if (!s.ok()) return s.error();
  return path;
}

}  // namespace

Result<std::unique_ptr<Connection>> OpenPostgres(const std::string& uri) {
  std::vector<std::string> secrets = SecretsOf(uri);
  char* parse_error = nullptr;
  PQconninfoOption* options = PQconninfoParse(uri.c_str(), &parse_error);
  if (options == nullptr) {
    std::string message =
        parse_error != nullptr ? parse_error : "out of memory";
    PQfreemem(parse_error);
    return Error(ErrorCode::kInvalidArgument,
                 "postgresql: bad connection URI: " +
                     Scrub(std::move(message), secrets));
  }
  PQconninfoFree(options);

  // Defaults first: parameters given in the URI (expanded from "dbname")
  // come later and win.
  const char* const keywords[] = {
      "connect_timeout", "fallback_application_name", "dbname", nullptr};
  const char* const values[] = {"10", "bantay", uri.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn == nullptr) {
    return Error(ErrorCode::kUnavailable, "postgresql: out of memory");
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = Scrub(PQerrorMessage(conn), secrets);
    PQfinish(conn);
    return Error(ErrorCode::kUnavailable,
                 "postgresql: cannot connect: " + message);
  }
  // Notices ("relation already exists, skipping") are not errors and would
  // otherwise go to stderr.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  if (PQsetClientEncoding(conn, "UTF8") != 0) {
    std::string message = Scrub(PQerrorMessage(conn), secrets);
    PQfinish(conn);
    return Error(ErrorCode::kUnavailable,
                 "postgresql: cannot set client encoding: " + message);
  }
  auto session = std::make_shared<PgSession>(conn, std::move(secrets));
  Result<std::string> path = PinnedSearchPath(*session);
  if (!path.ok()) return path.error();
  return std::unique_ptr<Connection>(
      std::make_unique<PgConnection>(std::move(session), *path));
}

}  // namespace bantay::matcher::db::internal
