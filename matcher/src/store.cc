#include "bantay/matcher/store.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <functional>
#include <ctime>
#include <initializer_list>
#include <limits>
#include <exception>
#include <map>
#include <numeric>
#include <new>
#include <optional>
#include <set>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "bantay/matcher/merkle.h"
#include "database.h"
#include "store_testing.h"

namespace bantay::matcher {
namespace {

using db::Param;
using db::Row;

// 2: versions.state_digest (a store of schema 1 is upgraded when opened).
constexpr int64_t kSchemaVersion = 2;
constexpr size_t kMaxTextBytes = 256;

// The schema: the same tables and columns on both backends, with {int}
// and {blob} standing for the backend's type names (SQLite's INTEGER
// PRIMARY KEY is the rowid; PostgreSQL's BIGINT and BYTEA). The audit log
// and the signed versions are append-only in the database too: triggers,
// written per backend, refuse updates and deletes (the hash chain and the
// signatures are what prove it; the triggers stop accidents).
constexpr std::string_view kTables = R"sql(
CREATE TABLE meta (key TEXT PRIMARY KEY, value {blob} NOT NULL);
CREATE TABLE state (id {int} PRIMARY KEY CHECK (id = 1),
  version {int} NOT NULL, next_id {int} NOT NULL);
CREATE TABLE lists (name TEXT PRIMARY KEY, enabled {int} NOT NULL,
  description TEXT NOT NULL, created_version {int} NOT NULL,
  changed_version {int} NOT NULL);
CREATE TABLE entries (id {int} PRIMARY KEY, list TEXT NOT NULL REFERENCES lists(name),
  type {int} NOT NULL, key_id TEXT NOT NULL, sealed {blob} NOT NULL, leaf {blob} NOT NULL,
  category TEXT NOT NULL, reference TEXT NOT NULL, source TEXT NOT NULL,
  added_by TEXT NOT NULL, added_at {int} NOT NULL, added_version {int} NOT NULL,
  status {int} NOT NULL, status_version {int} NOT NULL);
CREATE INDEX entries_status_version ON entries (status_version);
CREATE INDEX entries_list ON entries (list, id);
CREATE TABLE removals (version {int} NOT NULL, id {int} NOT NULL);
CREATE INDEX removals_version ON removals (version);
CREATE TABLE versions (version {int} PRIMARY KEY, created_at {int} NOT NULL,
  root {blob} NOT NULL, active_count {int} NOT NULL, audit_digest {blob} NOT NULL,
  public_key {blob} NOT NULL, signature {blob} NOT NULL, state_digest {blob});
CREATE TABLE audit (seq {int} PRIMARY KEY, time {int} NOT NULL, actor TEXT NOT NULL,
  action TEXT NOT NULL, list TEXT NOT NULL, count {int} NOT NULL,
  entries_digest {blob} NOT NULL, prev_digest {blob} NOT NULL, digest {blob} NOT NULL);
)sql";

constexpr std::string_view kSqliteTriggers = R"sql(
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER versions_no_update BEFORE UPDATE ON versions
  BEGIN SELECT RAISE(ABORT, 'signed versions are append-only'); END;
CREATE TRIGGER versions_no_delete BEFORE DELETE ON versions
  BEGIN SELECT RAISE(ABORT, 'signed versions are append-only'); END;
)sql";

constexpr std::string_view kPostgresTriggers = R"sql(
CREATE FUNCTION bantay_append_only() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
  FOR EACH ROW EXECUTE FUNCTION bantay_append_only();
CREATE TRIGGER versions_append_only BEFORE UPDATE OR DELETE ON versions
  FOR EACH ROW EXECUTE FUNCTION bantay_append_only();
)sql";

// `sql` with {int} and {blob} replaced by the backend's type names.
std::string ForBackend(std::string sql, db::Backend backend) {
  const bool sqlite = backend == db::Backend::kSqlite;
  for (const auto& [token, type] : {std::pair<std::string_view, std::string_view>{
                                        "{int}", sqlite ? "INTEGER" : "BIGINT"},
                                    {"{blob}", sqlite ? "BLOB" : "BYTEA"}}) {
    for (size_t at = sql.find(token); at != std::string::npos; at = sql.find(token, at)) {
      sql.replace(at, token.size(), type);
    }
  }
  return sql;
}

std::string Schema(db::Backend backend) {
  return ForBackend(std::string(kTables), backend) +
         std::string(backend == db::Backend::kSqlite ? kSqliteTriggers : kPostgresTriggers);
}

// Columns of a version row, in the order ReadVersions reads them (schema 1
// has no state_digest: Impl::VersionSelect).
constexpr std::string_view kVersionColumns =
    "version, created_at, root, active_count, audit_digest, public_key, signature, "
    "state_digest";
constexpr std::string_view kVersionColumnsSchema1 =
    "version, created_at, root, active_count, audit_digest, public_key, signature, "
    "NULL AS state_digest";

// Columns of an entry row, in the order DecodeEntry reads them.
constexpr std::string_view kEntryColumns =
    "id, list, type, key_id, sealed, leaf, category, reference, source, added_by, "
    "added_at, added_version, status";

std::span<const Param> Params(std::initializer_list<Param> list) {
  return {list.begin(), list.size()};
}

Param BlobParam(std::span<const uint8_t> bytes) { return Param::Blob(bytes); }

template <size_t N>
bool CopyBlob(std::span<const uint8_t> from, std::array<uint8_t, N>* to) {
  if (from.size() != N) return false;
  std::copy(from.begin(), from.end(), to->begin());
  return true;
}

size_t ValueSize(SignalType type) { return type == SignalType::kMd5 ? 16 : 32; }

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

// An unsigned bound (a limit, an id to start after) as an SQL integer:
// saturated, since PostgreSQL refuses a negative LIMIT and a wrapped id
// would select from the start.
int64_t SqlBound(uint64_t v) {
  return static_cast<int64_t>(std::min<uint64_t>(v, std::numeric_limits<int64_t>::max()));
}

Status CheckText(std::string_view what, std::string_view text, bool allow_empty) {
  if (text.empty() && !allow_empty) {
    return Error(ErrorCode::kInvalidArgument, std::string(what) + " is empty");
  }
  if (text.size() > kMaxTextBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 std::string(what) + " is longer than " + std::to_string(kMaxTextBytes) +
                     " bytes");
  }
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) {
      return Error(ErrorCode::kInvalidArgument,
                   std::string(what) + " contains a control character");
    }
  }
  return {};
}

void AppendU64(std::vector<uint8_t>* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<uint8_t>(v >> shift));
}

// As Sha256Hasher::UpdateField: a 4-byte big-endian length, then the bytes
// (no store holds a field of 4 GiB; one read from an edited database would
// give a digest that matches nothing).
void AppendField(std::vector<uint8_t>* out, std::string_view field) {
  const auto size = static_cast<uint32_t>(field.size());
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<uint8_t>(size >> shift));
  out->insert(out->end(), field.begin(), field.end());
}

// Additional authenticated data of a sealed value: it binds the ciphertext
// to its store, entry id and type.
std::array<uint8_t, 25> ValueAad(const std::array<uint8_t, 16>& store_id, uint64_t id,
                                 SignalType type) {
  std::array<uint8_t, 25> aad{};
  std::copy(store_id.begin(), store_id.end(), aad.begin());
  for (int i = 0; i < 8; ++i) aad[16 + i] = static_cast<uint8_t>(id >> (56 - 8 * i));
  aad[24] = static_cast<uint8_t>(type);
  return aad;
}

Digest32 DigestOfLeaves(const std::vector<Digest32>& leaves) {
  Sha256Hasher h;
  for (const Digest32& leaf : leaves) h.Update(leaf);
  return h.Finish();
}

}  // namespace

std::string_view EntryStatusName(EntryStatus status) {
  return status == EntryStatus::kActive ? "active" : "disabled";
}

Digest32 EntryLeafHash(const StoredEntry& entry) {
  return EntryLeafHash(entry.id, entry.type, entry.value, entry.salt, entry.list,
                       entry.category, entry.reference);
}

Digest32 EntryLeafHash(uint64_t id, SignalType type, const std::array<uint8_t, 32>& value,
                       const std::array<uint8_t, 16>& salt, std::string_view list,
                       std::string_view category, std::string_view reference) {
  // Framed into one buffer and hashed with one call, by a hasher kept per
  // thread: a load or a verification hashes every entry (a hasher and a
  // call per field cost twice the hashing itself).
  thread_local Sha256Hasher h;
  thread_local std::vector<uint8_t> bytes;
  bytes.clear();
  bytes.push_back(0x00);  // RFC 6962 leaf hash
  AppendU64(&bytes, id);
  bytes.push_back(static_cast<uint8_t>(type));
  bytes.insert(bytes.end(), value.begin(), value.begin() + ValueSize(type));
  bytes.insert(bytes.end(), salt.begin(), salt.end());
  for (std::string_view field : {list, category, reference}) {
    AppendField(&bytes, field);
  }
  const Digest32 leaf = h.Update(bytes).Finish();
  Wipe(bytes);  // it held the value
  return leaf;
}

std::vector<uint8_t> VersionSigningMessage(const std::array<uint8_t, 16>& store_id,
                                           const VersionRecord& record) {
  // Both domains have the same length: the message's fields sit at the same
  // offsets, and the domain alone tells the formats apart.
  const std::string_view domain =
      record.state_digest ? std::string_view("BANTAY-VERSION-2") : "BANTAY-VERSION-1";
  std::vector<uint8_t> m(domain.begin(), domain.end());
  m.insert(m.end(), store_id.begin(), store_id.end());
  AppendU64(&m, record.version);
  AppendU64(&m, static_cast<uint64_t>(record.created_at));
  m.insert(m.end(), record.root.begin(), record.root.end());
  AppendU64(&m, record.active_count);
  m.insert(m.end(), record.audit_digest.begin(), record.audit_digest.end());
  if (record.state_digest) m.insert(m.end(), record.state_digest->begin(), record.state_digest->end());
  return m;
}

StateDigester::StateDigester() { hasher_.UpdateField("BANTAY-STATE-1"); }

void StateDigester::AddEntry(uint64_t id, const Digest32& leaf, bool active,
                             std::string_view list) {
  if (any_ && id <= last_id_) ordered_ = false;
  any_ = true;
  last_id_ = id;
  // 'E', the id (8 bytes, big-endian), the leaf, the status byte, the list
  // as a field (4-byte length, then the name): written in one go, as every
  // change hashes a million of these at 1M entries.
  const auto size = static_cast<uint32_t>(list.size());
  const size_t at = buffer_.size();
  buffer_.resize(at + 1 + 8 + leaf.size() + 1 + 4 + list.size());
  uint8_t* out = buffer_.data() + at;
  *out++ = 'E';
  for (int shift = 56; shift >= 0; shift -= 8) *out++ = static_cast<uint8_t>(id >> shift);
  out = std::copy(leaf.begin(), leaf.end(), out);
  *out++ = active ? 0 : 1;
  for (int shift = 24; shift >= 0; shift -= 8) *out++ = static_cast<uint8_t>(size >> shift);
  std::copy(list.begin(), list.end(), out);
  if (buffer_.size() >= 16384) Flush();
}

void StateDigester::Flush() {
  hasher_.Update(buffer_);
  buffer_.clear();
}

Result<Digest32> StateDigester::Finish(std::vector<std::pair<std::string, bool>> lists) {
  Flush();
  if (!ordered_) {
    return Error(ErrorCode::kInvalidArgument, "the state digest's entries are not in id order");
  }
  std::sort(lists.begin(), lists.end());
  for (size_t i = 1; i < lists.size(); ++i) {
    if (lists[i].first == lists[i - 1].first) {
      return Error(ErrorCode::kInvalidArgument, "list " + lists[i].first + " is named twice");
    }
  }
  for (const auto& [name, enabled] : lists) {
    hasher_.Update(std::string_view("L"));
    hasher_.UpdateField(name);
    const uint8_t flag = enabled ? 1 : 0;
    hasher_.Update(std::span<const uint8_t>(&flag, 1));
  }
  return hasher_.Finish();
}

Digest32 AuditRecordDigest(const AuditRecord& r) {
  Sha256Hasher h;
  h.UpdateField("BANTAY-AUDIT-1");
  h.UpdateU64(r.seq);
  h.UpdateU64(static_cast<uint64_t>(r.time));
  h.UpdateField(r.actor);
  h.UpdateField(r.action);
  h.UpdateField(r.list);
  h.UpdateU64(r.count);
  h.Update(r.entries_digest);
  h.Update(r.prev_digest);
  return h.Finish();
}

std::optional<uint64_t> internal::PgXid64(uint32_t xid, uint64_t snapshot_xmax) {
  // 0 to 2 are no transaction's: invalid, bootstrap, frozen (rows frozen
  // by pg_surgery, or before PostgreSQL 9.4, carry 2).
  if (xid < 3) return std::nullopt;
  const uint64_t back = static_cast<uint32_t>(static_cast<uint32_t>(snapshot_xmax) - xid);
  if (back == 0 || back > snapshot_xmax) return std::nullopt;
  return snapshot_xmax - back;
}

// Every transaction that may still commit has an id of at least
// snapshot_xmin (running ones) or snapshot_xmax (later ones). A trusted
// 32-bit id r stands for r64, the last 64-bit id at or below snapshot_xmax
// that ends in r: the transaction that wrote the rows, or one 2^32 or more
// later than it (rows frozen long ago keep their id). Another
// transaction's id can end in r only if it is r64 itself — possible only
// if r64 was running or is still to come, refused here — or is at least
// r64 + 2^32. The Store's own later ids (at least snapshot_xmax) can be
// ended in by another transaction's (at least snapshot_xmin) only 2^32
// apart. So before min(snapshot_xmin, every r64) + 2^32 no one else's rows
// can carry a trusted id.
std::optional<uint64_t> internal::PgTrustedUntil(uint64_t snapshot_xmin, uint64_t snapshot_xmax,
                                                 const std::set<uint64_t>& running,
                                                 const std::set<uint32_t>& xids) {
  constexpr uint64_t kWrap = uint64_t{1} << 32;
  if (snapshot_xmin > snapshot_xmax) return std::nullopt;
  uint64_t oldest = snapshot_xmin;
  for (const uint32_t r : xids) {
    const std::optional<uint64_t> r64 = PgXid64(r, snapshot_xmax);
    if (!r64 || running.count(*r64) != 0) return std::nullopt;
    oldest = std::min(oldest, *r64);
  }
  return oldest + kWrap;
}

namespace {

// The data keys' ciphers for hash values at rest: value || salt sealed
// under the first (primary) key with the store id, entry id and type as
// additional data, opened under whichever key id the row names. Not
// thread-safe: one per thread.
class ValueCipher {
 public:
  ValueCipher(const std::vector<DataKey>& keys, const std::array<uint8_t, 16>& store_id)
      : store_id_(store_id) {
    for (const DataKey& key : keys) {
      if (!aeads_.count(key.id)) aeads_.emplace(key.id, std::make_unique<Aead>(key));
    }
    if (!keys.empty()) primary_ = aeads_.at(keys.front().id).get();
  }

  // Null without keys.
  Aead* primary() const { return primary_; }

  void Seal(uint64_t id, SignalType type, const std::array<uint8_t, 32>& value,
            const std::array<uint8_t, 16>& salt, std::vector<uint8_t>* sealed) {
    std::array<uint8_t, 48> plain{};
    const size_t n = ValueSize(type);
    std::copy_n(value.begin(), n, plain.begin());
    std::copy(salt.begin(), salt.end(), plain.begin() + n);
    const auto aad = ValueAad(store_id_, id, type);
    sealed->clear();
    primary_->Seal(std::span<const uint8_t>(plain.data(), n + 16), aad, sealed);
    Wipe(plain);
  }

  Status Open(uint64_t id, SignalType type, std::string_view key_id,
              std::span<const uint8_t> sealed, std::array<uint8_t, 32>* value,
              std::array<uint8_t, 16>* salt) {
    Aead* aead = For(key_id);
    if (aead == nullptr) {
      return Error(ErrorCode::kPermissionDenied,
                   "entry " + std::to_string(id) + " is encrypted with key " +
                       std::string(key_id) + ", which was not given");
    }
    const size_t n = ValueSize(type);
    if (sealed.size() != n + 16 + Aead::kOverhead) {
      return Error(ErrorCode::kCorruptData,
                   "entry " + std::to_string(id) + ": encrypted value has the wrong size");
    }
    std::array<uint8_t, 48> plain{};
    const auto aad = ValueAad(store_id_, id, type);
    if (!aead->Open(sealed, aad, std::span<uint8_t>(plain.data(), n + 16)).ok()) {
      return Error(ErrorCode::kCorruptData,
                   "entry " + std::to_string(id) +
                       ": the encrypted value does not authenticate (modified, or moved "
                       "from another row)");
    }
    value->fill(0);
    std::copy_n(plain.begin(), n, value->begin());
    std::copy_n(plain.begin() + n, 16, salt->begin());
    Wipe(plain);
    return {};
  }

 private:
  // The last key used is remembered: consecutive rows almost always share it.
  Aead* For(std::string_view key_id) {
    if (last_ != nullptr && key_id == last_->key_id()) return last_;
    auto it = aeads_.find(std::string(key_id));
    last_ = it == aeads_.end() ? nullptr : it->second.get();
    return last_;
  }

  const std::array<uint8_t, 16>& store_id_;
  std::unordered_map<std::string, std::unique_ptr<Aead>> aeads_;  // by key id
  Aead* primary_ = nullptr;
  Aead* last_ = nullptr;
};

// A decrypted value and its salt, wiped when they go (also on an
// exception).
struct OpenedValue {
  std::array<uint8_t, 32> value{};
  std::array<uint8_t, 16> salt{};
  SignalType type = SignalType::kPdq;

  OpenedValue() = default;
  OpenedValue(const OpenedValue&) = delete;
  OpenedValue& operator=(const OpenedValue&) = delete;
  ~OpenedValue() {
    Wipe(value);
    Wipe(salt);
  }

  // Decrypts the value of a row whose first columns are id, list, type,
  // key_id and sealed.
  Status Open(ValueCipher& cipher, const Row& row) {
    const uint64_t id = static_cast<uint64_t>(row.Int(0));
    const int64_t t = row.Int(2);
    if (t < 0 || t > 2) {
      return Error(ErrorCode::kCorruptData, "entry " + std::to_string(id) + ": bad type");
    }
    type = static_cast<SignalType>(t);
    return cipher.Open(id, type, row.Text(3), row.Blob(4), &value, &salt);
  }
};

// The error a public call answers with for the exception being handled
// (called from a handler): memory that ran out is kUnavailable (try again),
// another std::exception a bug (kInternal). An exception of any other type
// is thrown on.
Error ErrorOfException() {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    return Error(ErrorCode::kUnavailable, "out of memory");  // (short: no allocation)
  } catch (const std::exception& e) {
    return Error(ErrorCode::kInternal, std::string("unexpected exception: ") + e.what());
  }
}

}  // namespace

// --- Store::Impl ---------------------------------------------------------------

struct Store::Impl {
  std::unique_ptr<db::Connection> conn;
  std::string url;  // for a second connection (parallel reads)
  StoreKeys keys;
  std::array<uint8_t, 16> store_id{};
  std::optional<PublicKey> public_key;  // the store's signer (meta), once read
  ValueCipher cipher{keys.data_keys, store_id};

  // Whether the versions table has state_digest (schema 2). A store of
  // schema 1 may be upgraded by another process while this one reads it:
  // until then, each read of versions looks again.
  bool state_column = true;

  Impl(std::unique_ptr<db::Connection> c, StoreKeys k) : conn(std::move(c)), keys(std::move(k)) {}

  // "SELECT <the version columns>" for this store's schema.
  std::string VersionSelect() {
    if (!state_column) {
      Result<int> schema = SchemaVersion();
      state_column = schema.ok() && *schema >= 2;
    }
    return "SELECT " + std::string(state_column ? kVersionColumns : kVersionColumnsSchema1);
  }

  Status Exec(std::string_view sql, std::initializer_list<Param> params,
              const db::RowCallback& on_row = nullptr) {
    return conn->Execute(sql, Params(params), on_row);
  }

  Result<int64_t> QueryInt(std::string_view sql, std::initializer_list<Param> params) {
    std::optional<int64_t> value;
    Status s = conn->Execute(sql, Params(params), [&](const Row& row) {
      if (!row.IsNull(0)) value = row.Int(0);
    });
    if (!s.ok()) return s.error();
    if (!value) return Error(ErrorCode::kNotFound, "no value");
    return *value;
  }

  Status OpenValue(std::string_view key_id, std::span<const uint8_t> sealed, StoredEntry* e) {
    return cipher.Open(e->id, e->type, key_id, sealed, &e->value, &e->salt);
  }

  // Reads an entry row selected with kEntryColumns; the leaf goes to *leaf.
  Status DecodeEntry(const Row& row, StoredEntry* e, Digest32* leaf) {
    e->id = static_cast<uint64_t>(row.Int(0));
    e->list = std::string(row.Text(1));
    const int64_t type = row.Int(2);
    if (type < 0 || type > 2) {
      return Error(ErrorCode::kCorruptData, "entry " + std::to_string(e->id) + ": bad type");
    }
    e->type = static_cast<SignalType>(type);
    e->category = std::string(row.Text(6));
    e->reference = std::string(row.Text(7));
    e->source = std::string(row.Text(8));
    e->added_by = std::string(row.Text(9));
    e->added_at = row.Int(10);
    e->added_version = static_cast<uint64_t>(row.Int(11));
    e->status = row.Int(12) == 0 ? EntryStatus::kActive : EntryStatus::kDisabled;
    if (leaf != nullptr && !CopyBlob(row.Blob(5), leaf)) {
      return Error(ErrorCode::kCorruptData,
                   "entry " + std::to_string(e->id) + ": leaf hash has the wrong size");
    }
    return OpenValue(row.Text(3), row.Blob(4), e);
  }

  // What a version signs of the entries and lists as the database holds
  // them: the leaf hashes of the active entries of enabled lists in id order
  // (the Merkle tree), with their ids when asked, and the state digest.
  struct StateRow {
    uint64_t id = 0;
    Digest32 leaf{};
    bool active = false;  // the entry's status (its list's state aside)
    uint32_t list = 0;    // index into StoreState::entry_lists
  };
  struct StoreState {
    Digest32 digest{};
    // With `hashed`, the hashes of `rows` that a change that only adds
    // entries goes on from (Applied): the state digest's part over the rows
    // (before the lists) and the Merkle frontier of the active leaves.
    StateDigester rows_digest;
    MerkleFrontier active;
    bool hashed = false;
    bool appended = false;  // Applied went on from the hashes
    // With keep_rows: every entry, and the lists.
    std::vector<StateRow> rows;
    std::vector<std::string> entry_lists;  // the list names the entries name
    std::vector<std::pair<std::string, bool>> lists;
  };
  // What tells a change that no other connection has written to the store
  // since a state was kept (KeptState): SQLite's data version, or on
  // PostgreSQL, which counts no commits, a PgMark.
  //
  // PgMark: every row version in PostgreSQL carries the (32-bit) id of the
  // transaction that wrote it, its xmin, which no one can choose. A state is
  // kept from a change that read and checked every row (or made them from
  // such a state): the ids then in the tables are trusted, and each later
  // change adds its own. If every row of the tables still carries a trusted
  // id, the entries and lists are as many as the state holds, and the
  // catalog rows of the tables (their columns, constraints, indexes,
  // triggers, rules, policies, inheritance) are the very row versions they were, no one else
  // has inserted, updated, deleted or truncated anything, nor changed what a
  // table or a column is: the rows are the state kept. (Every table's rows
  // are counted: the entries and lists are the state's; each change adds
  // one audit record, one version and a removal for each entry it
  // removes.) The ids wrap around after 2^32 transactions: from
  // `valid_until` (a 64-bit transaction id, internal::PgTrustedUntil)
  // another transaction could write rows that carry a trusted id, and the
  // state is read and checked again.
  struct PgMark {
    std::string catalog;
    std::set<uint32_t> xids;
    uint64_t valid_until = 0;
    std::map<std::string, uint64_t, std::less<>> rows;  // each table's rows
  };
  struct Mark {
    int64_t data_version = 0;  // SQLite
    std::optional<PgMark> pg;  // PostgreSQL
  };
  // The store's tables (locked by a change on PostgreSQL before it reads
  // any of them).
  static constexpr std::string_view kPgTables =
      "meta, entries, lists, removals, audit, versions, state";
  // The catalog's description of those tables as Init makes them on
  // PostgreSQL (ReadPgCatalog; a store upgraded from schema 1 gives the
  // same), its lines in byte order: 3124 and 3126 are the built-in btree
  // operator classes of bigint and text, collation 100 the database's,
  // access method 2 the heap.
  static constexpr std::string_view kPgSchema =
    "column audit.action text not null collation 100\n"
    "column audit.actor text not null collation 100\n"
    "column audit.count bigint not null collation 0\n"
    "column audit.digest bytea not null collation 0\n"
    "column audit.entries_digest bytea not null collation 0\n"
    "column audit.list text not null collation 100\n"
    "column audit.prev_digest bytea not null collation 0\n"
    "column audit.seq bigint not null collation 0\n"
    "column audit.time bigint not null collation 0\n"
    "column entries.added_at bigint not null collation 0\n"
    "column entries.added_by text not null collation 100\n"
    "column entries.added_version bigint not null collation 0\n"
    "column entries.category text not null collation 100\n"
    "column entries.id bigint not null collation 0\n"
    "column entries.key_id text not null collation 100\n"
    "column entries.leaf bytea not null collation 0\n"
    "column entries.list text not null collation 100\n"
    "column entries.reference text not null collation 100\n"
    "column entries.sealed bytea not null collation 0\n"
    "column entries.source text not null collation 100\n"
    "column entries.status bigint not null collation 0\n"
    "column entries.status_version bigint not null collation 0\n"
    "column entries.type bigint not null collation 0\n"
    "column lists.changed_version bigint not null collation 0\n"
    "column lists.created_version bigint not null collation 0\n"
    "column lists.description text not null collation 100\n"
    "column lists.enabled bigint not null collation 0\n"
    "column lists.name text not null collation 100\n"
    "column meta.key text not null collation 100\n"
    "column meta.value bytea not null collation 0\n"
    "column removals.id bigint not null collation 0\n"
    "column removals.version bigint not null collation 0\n"
    "column state.id bigint not null collation 0\n"
    "column state.next_id bigint not null collation 0\n"
    "column state.version bigint not null collation 0\n"
    "column versions.active_count bigint not null collation 0\n"
    "column versions.audit_digest bytea not null collation 0\n"
    "column versions.created_at bigint not null collation 0\n"
    "column versions.public_key bytea not null collation 0\n"
    "column versions.root bytea not null collation 0\n"
    "column versions.signature bytea not null collation 0\n"
    "column versions.state_digest bytea collation 0\n"
    "column versions.version bigint not null collation 0\n"
    "constraint audit audit_pkey PRIMARY KEY (seq)\n"
    "constraint entries entries_list_fkey FOREIGN KEY (list) REFERENCES lists(name)\n"
    "constraint entries entries_pkey PRIMARY KEY (id)\n"
    "constraint lists lists_pkey PRIMARY KEY (name)\n"
    "constraint meta meta_pkey PRIMARY KEY (key)\n"
    "constraint state state_id_check CHECK ((id = 1))\n"
    "constraint state state_pkey PRIMARY KEY (id)\n"
    "constraint versions versions_pkey PRIMARY KEY (version)\n"
    "index audit_pkey audit true 1 3124 0 true true\n"
    "index entries_list entries false 2 1 3126 3124 100 0 true true\n"
    "index entries_pkey entries true 1 3124 0 true true\n"
    "index entries_status_version entries false 14 3124 0 true true\n"
    "index lists_pkey lists true 1 3126 100 true true\n"
    "index meta_pkey meta true 1 3126 100 true true\n"
    "index removals_version removals false 1 3124 0 true true\n"
    "index state_pkey state true 1 3124 0 true true\n"
    "index versions_pkey versions true 1 3124 0 true true\n"
    "table audit r false false false 2\n"
    "table entries r false false false 2\n"
    "table lists r false false false 2\n"
    "table meta r false false false 2\n"
    "table removals r false false false 2\n"
    "table state r false false false 2\n"
    "table versions r false false false 2\n"
    "trigger audit audit_append_only 27\n"
    "trigger versions versions_append_only 27";

  Result<StoreState> ReadState(bool keep_rows) {
    StoreState state;
    StateDigester& digester = state.rows_digest;
    std::unordered_map<std::string, uint32_t> list_index;
    uint32_t last_list = 0;
    bool bad = false;
    // The lists first: an entry is active when its status is and the list
    // its row names (as text, as the digest and every reader take it; not
    // by an SQL join, which a name stored as a blob would not match) is
    // there and enabled. An entry whose list row is missing is not active,
    // and is still in the digest (which then differs from any signed one:
    // its list is not).
    Status s = Exec("SELECT name, enabled FROM lists", {}, [&](const Row& row) {
      state.lists.emplace_back(std::string(row.Text(0)), row.Int(1) != 0);
    });
    if (!s.ok()) return s.error();
    const std::map<std::string, bool, std::less<>> enabled(state.lists.begin(),
                                                           state.lists.end());
    s = Exec(
        "SELECT id, leaf, status, list FROM entries ORDER BY id",
        {}, [&](const Row& row) {
          Digest32 leaf{};
          if (!CopyBlob(row.Blob(1), &leaf)) bad = true;
          const auto id = static_cast<uint64_t>(row.Int(0));
          const bool entry_active = row.Int(2) == 0;
          const std::string_view list = row.Text(3);
          digester.AddEntry(id, leaf, entry_active, list);
          if (keep_rows) {
            // Entries of one list mostly follow each other: the last one's
            // index first, without a string per row.
            if (state.entry_lists.empty() || state.entry_lists[last_list] != list) {
              auto [at, added] = list_index.try_emplace(
                  std::string(list), static_cast<uint32_t>(list_index.size()));
              if (added) state.entry_lists.emplace_back(list);
              last_list = at->second;
            }
            state.rows.push_back({id, leaf, entry_active, last_list});
          }
        });
    if (!s.ok()) return s.error();
    if (bad) return Error(ErrorCode::kCorruptData, "a stored leaf hash has the wrong size");
    // The rows' hashes are kept with the rows; the read back after a change
    // needs the digest alone.
    if (keep_rows) {
      state.active = ActiveFrontier(state, EnabledByIndex(state, enabled), std::nullopt);
      state.hashed = true;
    }
    Result<Digest32> digest = StateDigester(digester).Finish(state.lists);
    if (!digest.ok()) return Error(ErrorCode::kCorruptData, digest.error().message());
    state.digest = *digest;
    return state;
  }

  // Leaf hashes of the active entries of enabled lists, in id order (the
  // Merkle tree of the version), and their ids.
  Result<std::vector<Digest32>> ActiveLeaves(std::vector<uint64_t>* ids) {
    std::vector<Digest32> leaves;
    bool bad = false;
    Status s = Exec(
        "SELECT e.id, e.leaf FROM entries e JOIN lists l ON e.list = l.name "
        "WHERE e.status = 0 AND l.enabled <> 0 ORDER BY e.id",
        {}, [&](const Row& row) {
          Digest32 leaf{};
          if (!CopyBlob(row.Blob(1), &leaf)) bad = true;
          leaves.push_back(leaf);
          ids->push_back(static_cast<uint64_t>(row.Int(0)));
        });
    if (!s.ok()) return s.error();
    if (bad) return Error(ErrorCode::kCorruptData, "a stored leaf hash has the wrong size");
    return leaves;
  }

  // What a change does to the state, as its body made it: the writer signs
  // only when the database, read back, holds the state before the change
  // with these applied (a trigger, a rule or another writer that changed
  // anything else would otherwise be signed).
  struct StateDelta {
    struct Added {
      uint64_t id = 0;
      Digest32 leaf{};
      std::string list;
    };
    std::vector<Added> added;  // in id order, active
    std::vector<uint64_t> removed;
    std::vector<std::pair<uint64_t, bool>> statuses;  // id, active
    std::vector<std::string> created_lists;           // created enabled when missing
    std::optional<std::pair<std::string, bool>> list_enabled;
  };

  // By index into state.entry_lists: whether the list is in `lists` (name
  // -> enabled) and enabled.
  template <typename Lists>
  static std::vector<bool> EnabledByIndex(const StoreState& state, const Lists& lists) {
    std::vector<bool> enabled(state.entry_lists.size());
    for (size_t i = 0; i < enabled.size(); ++i) {
      const auto list = lists.find(state.entry_lists[i]);
      enabled[i] = list != lists.end() && list->second;
    }
    return enabled;
  }

  // The Merkle frontier of the active rows of `state` (the entry's status
  // active, its list enabled, by list index): the rows [from, end)
  // appended to state.active, or all of them (on two threads when many).
  // Read in place: no copy of the leaves.
  static MerkleFrontier ActiveFrontier(const StoreState& state, const std::vector<bool>& enabled,
                                       std::optional<size_t> from) {
    auto active = [&](size_t i) -> const Digest32* {
      const StateRow& r = state.rows[i];
      return r.active && enabled[r.list] ? &r.leaf : nullptr;
    };
    if (!from) return MerkleFrontierOf(state.rows.size(), active);
    MerkleFrontier frontier = state.active;
    AppendLeavesOf(&frontier, *from, state.rows.size(), active);
    return frontier;
  }

  // `state` (rows and lists) with `delta` applied, in place: what the
  // database holds after the change if it holds what the change's body
  // wrote and nothing else — the rows, the lists, the active leaves' tree
  // and the state digest. A delta that only adds entries, after every row
  // and with no list changing state, hashes only those (the state's hashes
  // go on); any other hashes every row.
  static Result<StoreState> Applied(StoreState state, StateDelta delta) {
    bool appended = state.hashed && delta.statuses.empty() && delta.removed.empty();
    std::map<std::string, bool> lists(state.lists.begin(), state.lists.end());
    for (const std::string& name : delta.created_lists) {
      // A new list some rows already name (a list row deleted behind the
      // store's back) makes them active.
      if (lists.emplace(name, true).second &&
          std::find(state.entry_lists.begin(), state.entry_lists.end(), name) !=
              state.entry_lists.end()) {
        appended = false;
      }
    }
    if (delta.list_enabled) {
      auto list = lists.find(delta.list_enabled->first);
      if (list == lists.end() || list->second != delta.list_enabled->second) appended = false;
      lists[delta.list_enabled->first] = delta.list_enabled->second;
    }
    state.lists.assign(lists.begin(), lists.end());
    // The body changed or removed only entries it found in the database:
    // one the state does not hold means that the state is not the
    // database's (and nothing is signed over it).
    auto by_id = [](const StateRow& r, uint64_t id) { return r.id < id; };
    auto missing = [](uint64_t id) {
      return Error(ErrorCode::kCorruptData,
                   "the store was changed outside Bantay: entry " + std::to_string(id) +
                       " is in the database but not in the state the last version signed, "
                       "and nothing is signed (see bantay index verify)");
    };
    for (const auto& [id, active] : delta.statuses) {
      auto row = std::lower_bound(state.rows.begin(), state.rows.end(), id, by_id);
      if (row == state.rows.end() || row->id != id) return missing(id);
      row->active = active;
    }
    if (!delta.removed.empty()) {
      std::sort(delta.removed.begin(), delta.removed.end());
      for (uint64_t id : delta.removed) {
        auto row = std::lower_bound(state.rows.begin(), state.rows.end(), id, by_id);
        if (row == state.rows.end() || row->id != id) return missing(id);
      }
      std::erase_if(state.rows, [&](const StateRow& r) {
        return std::binary_search(delta.removed.begin(), delta.removed.end(), r.id);
      });
    }
    if (!delta.added.empty()) {
      std::unordered_map<std::string, uint32_t> list_index;
      for (uint32_t i = 0; i < state.entry_lists.size(); ++i) {
        list_index.emplace(state.entry_lists[i], i);
      }
      // New ids are above every id given out before: the rows stay in id
      // order (sorted again should they not).
      const bool in_order =
          state.rows.empty() || delta.added.front().id > state.rows.back().id;
      appended = appended && in_order;
      // Grown geometrically: a kept state reserved to its size exactly
      // would be copied whole by each later change that adds an entry.
      const size_t rows = state.rows.size() + delta.added.size();
      if (rows > state.rows.capacity()) {
        state.rows.reserve(std::max(rows, state.rows.capacity() + state.rows.capacity() / 2));
      }
      for (const StateDelta::Added& added : delta.added) {
        auto [at, is_new] = list_index.try_emplace(
            added.list, static_cast<uint32_t>(state.entry_lists.size()));
        if (is_new) state.entry_lists.push_back(added.list);
        state.rows.push_back({added.id, added.leaf, true, at->second});
      }
      if (!in_order) {
        std::sort(state.rows.begin(), state.rows.end(),
                  [](const StateRow& a, const StateRow& b) { return a.id < b.id; });
      }
    }
    // As ReadState reads them: an entry is active when it is and its list
    // is there and enabled.
    const std::vector<bool> enabled = EnabledByIndex(state, lists);
    size_t from = state.rows.size() - delta.added.size();
    if (!appended) {
      state.rows_digest = StateDigester();
      from = 0;
    }
    for (size_t i = from; i < state.rows.size(); ++i) {
      const StateRow& r = state.rows[i];
      state.rows_digest.AddEntry(r.id, r.leaf, r.active, state.entry_lists[r.list]);
    }
    state.active = ActiveFrontier(state, enabled, appended ? std::optional(from) : std::nullopt);
    state.hashed = true;
    state.appended = appended;
    Result<Digest32> digest = StateDigester(state.rows_digest).Finish(state.lists);
    if (!digest.ok()) return Error(ErrorCode::kCorruptData, digest.error().message());
    state.digest = *digest;
    return state;
  }

  // The state row's version, for a reader that follows the store: a state
  // row behind the newest signed version was edited (every change moves
  // both in one transaction), and would tell a follower that nothing
  // changed. (A state row ahead of the versions is a version without a
  // signature, which the reader's own checks name.)
  Result<int64_t> FollowedVersion() {
    // One statement: one snapshot, also outside a transaction (a change
    // committed between two reads would look like a held-back row).
    std::optional<std::pair<int64_t, int64_t>> read;
    Status s = Exec(
        "SELECT version, (SELECT coalesce(max(version), 0) FROM versions) FROM state "
        "WHERE id = 1",
        {}, [&](const Row& row) { read.emplace(row.Int(0), row.Int(1)); });
    if (!s.ok()) return s.error();
    if (!read) return Error(ErrorCode::kNotFound, "no value");
    const auto [version, newest] = *read;
    if (newest > version) {
      return Error(ErrorCode::kCorruptData,
                   "the store's state row says version " + std::to_string(version) +
                       ", but version " + std::to_string(newest) +
                       " is signed (the state row was edited outside the store)");
    }
    return version;
  }

  Result<AuditRecord> LastAudit() {
    std::vector<AuditRecord> records;
    Status s = ReadAudit("SELECT seq, time, actor, action, list, count, entries_digest, "
                         "prev_digest, digest FROM audit ORDER BY seq DESC LIMIT 1",
                         {}, &records);
    if (!s.ok()) return s.error();
    if (records.empty()) return AuditRecord{};
    return records.front();
  }

  Status ReadAudit(std::string_view sql, std::initializer_list<Param> params,
                   std::vector<AuditRecord>* out) {
    bool bad = false;
    Status s = Exec(sql, params, [&](const Row& row) {
      AuditRecord r;
      r.seq = static_cast<uint64_t>(row.Int(0));
      r.time = row.Int(1);
      r.actor = std::string(row.Text(2));
      r.action = std::string(row.Text(3));
      r.list = std::string(row.Text(4));
      r.count = static_cast<uint64_t>(row.Int(5));
      bad |= !CopyBlob(row.Blob(6), &r.entries_digest);
      bad |= !CopyBlob(row.Blob(7), &r.prev_digest);
      bad |= !CopyBlob(row.Blob(8), &r.digest);
      out->push_back(std::move(r));
    });
    if (!s.ok()) return s;
    if (bad) return Error(ErrorCode::kCorruptData, "an audit record has a digest of the wrong size");
    return {};
  }

  Status ReadVersions(std::string_view sql, std::initializer_list<Param> params,
                      std::vector<VersionRecord>* out) {
    bool bad = false;
    Status s = Exec(sql, params, [&](const Row& row) {
      VersionRecord v;
      v.version = static_cast<uint64_t>(row.Int(0));
      v.created_at = row.Int(1);
      bad |= !CopyBlob(row.Blob(2), &v.root);
      v.active_count = static_cast<uint64_t>(row.Int(3));
      bad |= !CopyBlob(row.Blob(4), &v.audit_digest);
      bad |= !CopyBlob(row.Blob(5), &v.public_key);
      bad |= !CopyBlob(row.Blob(6), &v.signature);
      if (!row.IsNull(7)) {
        Digest32 state{};
        bad |= !CopyBlob(row.Blob(7), &state);
        v.state_digest = state;
      }
      out->push_back(v);
    });
    if (!s.ok()) return s;
    if (bad) return Error(ErrorCode::kCorruptData, "a version record has a field of the wrong size");
    return {};
  }

  // The end of every change: inside the caller's write transaction, appends
  // the audit record and the signed version `version` (= the current one
  // plus one) of the state `after`, and moves the state row to it. Then
  // commits. With `check_database`, the database read back must hold
  // `after`, or nothing is signed. After the commit, the state is kept for
  // the next change when `keep` (KeptState).
  Result<uint64_t> FinishChange(uint64_t version, const ChangeContext& context,
                                std::string_view action, std::string_view list,
                                uint64_t count, const Digest32& entries_digest,
                                StoreState after, bool check_database,
                                std::optional<Mark> keep) {
    Result<AuditRecord> last = LastAudit();
    if (!last.ok()) return last.error();
    AuditRecord r;
    r.seq = version;
    r.time = Now();
    r.actor = context.actor;
    r.action = std::string(action);
    r.list = std::string(list);
    r.count = count;
    r.entries_digest = entries_digest;
    r.prev_digest = last->digest;  // zero before the first record
    r.digest = AuditRecordDigest(r);
    Status s = Exec(
        "INSERT INTO audit (seq, time, actor, action, list, count, entries_digest, "
        "prev_digest, digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        {Param::Int(static_cast<int64_t>(r.seq)), Param::Int(r.time), Param::Text(r.actor),
         Param::Text(r.action), Param::Text(r.list), Param::Int(static_cast<int64_t>(r.count)),
         BlobParam(r.entries_digest), BlobParam(r.prev_digest), BlobParam(r.digest)});
    if (!s.ok()) return s.error();

    VersionRecord v;
    v.version = version;
    v.created_at = r.time;
    v.root = after.active.Root();
    v.active_count = after.active.size();
    v.audit_digest = r.digest;
    v.state_digest = after.digest;
    v.public_key = keys.signing_key->public_key();
    v.signature = keys.signing_key->Sign(VersionSigningMessage(store_id, v));
    s = Exec(
        "INSERT INTO versions (" + std::string(kVersionColumns) +
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        {Param::Int(static_cast<int64_t>(v.version)), Param::Int(v.created_at),
         BlobParam(v.root), Param::Int(static_cast<int64_t>(v.active_count)),
         BlobParam(v.audit_digest), BlobParam(v.public_key), BlobParam(v.signature),
         BlobParam(*v.state_digest)});
    if (!s.ok()) return s.error();
    s = Exec("UPDATE state SET version = $1 WHERE id = 1",
             {Param::Int(static_cast<int64_t>(version))});
    if (!s.ok()) return s.error();
    if (check_database) {
      // Read after every write of the change (the audit record, the
      // version, the state row): a trigger on any of them, as on the
      // entries or the lists, would have acted by now; on PostgreSQL a
      // deferred one is made to act now rather than at the commit.
      if (conn->backend() == db::Backend::kPostgres) {
        s = Exec("SET CONSTRAINTS ALL IMMEDIATE", {});
        if (!s.ok()) return s.error();
      }
      Result<StoreState> state = ReadState(/*keep_rows=*/false);
      if (!state.ok()) return state.error();
      if (state->digest != after.digest) {
        return Error(ErrorCode::kCorruptData,
                     "the store was changed outside Bantay: the database does not hold the "
                     "entries and lists as this change made them (a trigger, a rule or another "
                     "writer changed them), and nothing is signed (see bantay index verify)");
      }
    }
    if (keep && keep->pg) {
      // Every row this change wrote carries its transaction id: trusted
      // from now on, with the row counts the change leaves.
      Result<int64_t> xid =
          QueryInt("SELECT pg_catalog.pg_current_xact_id()::text::bigint", {});
      if (!xid.ok()) return xid.error();
      keep->pg->xids.insert(static_cast<uint32_t>(*xid));
    }
    s = conn->Commit();
    if (!s.ok()) return s.error();
    if (keep) {
      std::lock_guard lock(kept_mutex_);
      kept_.emplace(KeptState{version, std::move(*keep), std::move(after), v});
    }
    return version;
  }

  // The schema version the database says it is of (inside a transaction:
  // another process may have upgraded it since this one opened it).
  Result<int> SchemaVersion() {
    std::array<uint8_t, 8> schema{};
    bool have = false;
    Status s = Exec("SELECT value FROM meta WHERE key = 'schema_version'", {},
                    [&](const Row& row) { have = CopyBlob(row.Blob(0), &schema); });
    if (!s.ok()) return s.error();
    if (!have) return Error(ErrorCode::kCorruptData, "the store's schema version is missing");
    return static_cast<int>(schema[7]);
  }

  // Schema 1 to 2, inside the upgrade's write transaction: the versions gain
  // state_digest (NULL in those signed before), added last. A column that is
  // already there (an upgrade interrupted between the two statements cannot
  // be, both are in one transaction; an edited meta row can) is kept.
  Status UpgradeSchema() {
    Result<int64_t> present =
        conn->backend() == db::Backend::kSqlite
            ? QueryInt("SELECT count(*) FROM pragma_table_info('versions') "
                       "WHERE name = 'state_digest'",
                       {})
            // (PostgreSQL's catalog, not information_schema: see HasSchema.)
            : QueryInt("SELECT count(*) FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c "
                       "ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = "
                       "c.relnamespace WHERE c.relname = 'versions' AND a.attname = "
                       "'state_digest' AND NOT a.attisdropped AND "
                       "n.nspname = pg_catalog.current_schema()",
                       {});
    if (!present.ok()) return present.error();
    if (*present == 0) {
      Status s = Exec(ForBackend("ALTER TABLE versions ADD COLUMN state_digest {blob}",
                                 conn->backend()),
                      {});
      if (!s.ok()) {
        return Error(s.error().code(),
                     "the store's tables could not be upgraded to schema " +
                         std::to_string(kSchemaVersion) + " (" + s.error().message() +
                         "): upgrade it with a database role that may alter them");
      }
    }
    const std::array<uint8_t, 8> upgraded = {0, 0, 0, 0, 0, 0, 0,
                                             static_cast<uint8_t>(kSchemaVersion)};
    return Exec("UPDATE meta SET value = $1 WHERE key = 'schema_version'", {BlobParam(upgraded)});
  }

  // kPermissionDenied unless the keys given can make a change: the store's
  // signing key (a version signed by another would never verify) and a data
  // key to seal values with.
  Status CheckKeysCanChange() const {
    if (!keys.signing_key) {
      return Error(ErrorCode::kPermissionDenied,
                   "changing the store needs the operator's signing key (every version is "
                   "signed)");
    }
    if (!public_key || keys.signing_key->public_key() != *public_key) {
      return Error(ErrorCode::kPermissionDenied,
                   "the signing key given is not the store's signing key");
    }
    if (cipher.primary() == nullptr) {
      return Error(ErrorCode::kPermissionDenied, "changing the store needs the data key");
    }
    return {};
  }

  // Who made a change and where from, which go into the audit log and the
  // entries: printable text.
  static Status CheckWho(const ChangeContext& context) {
    Status valid = CheckText("actor", context.actor, false);
    if (valid.ok()) valid = CheckText("source", context.source, true);
    return valid;
  }

  // What a change checks before it starts: CheckWho and the keys.
  Status CheckCanChange(const ChangeContext& context) const {
    Status valid = CheckWho(context);
    return valid.ok() ? CheckKeysCanChange() : valid;
  }

  // Starts a change: checks that it can be signed, begins the write
  // transaction, and returns the version it will create. Only the upgrade
  // (`upgrading`) starts from a store of schema 1, or from a version signed
  // without a state digest.
  Result<uint64_t> BeginChange(bool upgrading) {
    Status s = CheckKeysCanChange();
    if (!s.ok()) return s.error();
    s = conn->BeginWrite();
    if (!s.ok()) return s.error();
    auto fail = [&](const Error& e) {
      conn->Rollback();
      return e;
    };
    const bool postgres = conn->backend() == db::Backend::kPostgres;
    std::string catalog;  // PostgreSQL: the tables' catalog rows (ReadPgCatalog)
    if (postgres) {
      // Read committed: without the lock, an edit committed between the
      // check and the signing would be signed. Plain reads go on. Taken,
      // and the catalog read, before any statement reads a table: if the
      // catalog is as a kept state found it (Bantay's own schema), no
      // function of anyone else's runs in any statement of the change.
      s = Exec("LOCK TABLE " + std::string(kPgTables) + " IN EXCLUSIVE MODE", {});
      if (!s.ok()) return fail(s.error());
      s = InPgCatalogPath([&](const std::string& schema) -> Status {
        Result<PgCatalog> read = ReadPgCatalog(schema, /*describe=*/false);
        if (!read.ok()) return read.error();
        catalog = std::move(read->fingerprint);
        return {};
      });
      if (!s.ok()) return fail(s.error());
    }
    Result<int> schema = SchemaVersion();
    if (!schema.ok()) return fail(schema.error());
    if (*schema == 1) {
      if (!upgrading) return fail(NeedsUpgrade("the store is of schema 1"));
      s = UpgradeSchema();
      if (!s.ok()) return fail(s.error());
    } else if (*schema != kSchemaVersion) {
      return fail(Error(ErrorCode::kInvalidArgument,
                        "unknown store schema version " + std::to_string(*schema)));
    }
    Result<int64_t> v = QueryInt("SELECT version FROM state WHERE id = 1", {});
    if (!v.ok()) return fail(v.error());
    const auto current = static_cast<uint64_t>(*v);
    std::optional<KeptState> kept;
    before_record_.reset();
    {
      std::lock_guard lock(kept_mutex_);
      kept = std::move(kept_);
      kept_.reset();
    }
    Result<std::optional<int64_t>> data_version = DataVersion();
    if (!data_version.ok()) return fail(data_version.error());
    bool unchanged = false;
    if (kept && !upgrading && kept->version == current) {
      if (*data_version) {
        unchanged = !kept->mark.pg && kept->mark.data_version == **data_version;
      } else if (postgres && kept->mark.pg && kept->record) {
        Result<bool> same = PgUnchanged(&*kept->mark.pg, catalog, *kept->record);
        if (!same.ok()) return fail(same.error());
        unchanged = *same;
      }
    }
    if (unchanged) {
      before_ = std::move(kept->state);
      before_record_ = std::move(kept->record);
      before_kept_ = true;
      keep_ = std::move(kept->mark);
      ++starts.kept;
      return current + 1;
    }
    kept.reset();
    // Nothing is signed over entries changed outside the store: the new
    // version signs the state of the database, so the current one must
    // still be the state it signed (a row deleted, or a list disabled, with
    // SQL would otherwise be signed into the next version).
    if (Status intact = CheckCurrentRoot(current, upgrading); !intact.ok()) {
      return fail(intact.error());
    }
    before_kept_ = false;
    keep_.reset();
    if (*data_version && !upgrading) {
      Result<bool> ours = SchemaIsBantays();
      if (!ours.ok()) return fail(ours.error());
      if (*ours) keep_ = Mark{**data_version, std::nullopt};
    } else if (postgres && !upgrading) {
      Result<std::optional<PgMark>> mark = PgObserve(before_);
      if (!mark.ok()) return fail(mark.error());
      if (*mark) keep_ = Mark{0, std::move(*mark)};
    }
    ++starts.checked;
    return current + 1;
  }

  // SQLite's count of the commits other connections made to the database
  // file (PRAGMA data_version, read inside the write transaction);
  // PostgreSQL has none.
  Result<std::optional<int64_t>> DataVersion() {
    if (conn->backend() != db::Backend::kSqlite) return std::optional<int64_t>();
    Result<int64_t> v = QueryInt("PRAGMA data_version", {});
    if (!v.ok()) return v.error();
    return std::optional<int64_t>(*v);
  }

  // PostgreSQL: runs `body` with the search path set to PostgreSQL's own
  // catalog alone (temporary tables after it), then puts back the session's
  // pinned path (its schema, then temporary tables), inside the current
  // transaction. `body` is given the schema of the store's tables as an
  // identifier (quoted as needed) and names them with it. So no function,
  // operator or aggregate of anyone else's can be chosen for the built-in
  // ones these statements call — even one whose argument types match
  // better than a built-in's polymorphic ones (unnest(anyarray), ||), which
  // the catalog being searched first would not stop.
  Status InPgCatalogPath(const std::function<Status(const std::string& schema)>& body) {
    std::optional<std::string> schema;
    Status s = Exec("SELECT pg_catalog.quote_ident(pg_catalog.current_schema())", {},
                    [&](const Row& row) {
                      if (!row.IsNull(0)) schema = std::string(row.Text(0));
                    });
    if (!s.ok()) return s;
    if (!schema) return Error(ErrorCode::kNotFound, "postgresql: no schema on the search path");
    s = Exec("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)", {});
    if (!s.ok()) return s;
    const Status done = body(*schema);
    if (!done.ok()) return done;
    return Exec("SELECT pg_catalog.set_config('search_path', $1, true)",
                {Param::Text(*schema + ", pg_temp")});
  }

  // PostgreSQL, inside the write transaction with the tables locked and in
  // the catalog's search path (InPgCatalogPath, `schema` the tables'): the
  // catalog rows that say what the store's tables are — the tables, their
  // columns, defaults, constraints, indexes, triggers, rules, policies and
  // inheritance — as one text of (kind, object, row version) items; and,
  // with `describe`, whether they are exactly Bantay's own (Init's schema,
  // kPgSchema): the columns, constraints (also those of other tables that
  // refer to these), indexes and triggers as Init makes them, and no rule,
  // row security or inheritance. No function of anyone else's can then run
  // in a change's statements (the append-only triggers fire only on UPDATE
  // and DELETE of the audit log and the versions, which no change does; the
  // foreign key's checks, the indexes and the constraint are built in), so
  // they do what they say, and the state a change leaves is the database's
  // without reading it back.
  struct PgCatalog {
    std::string fingerprint;
    bool ours = false;
  };
  Result<PgCatalog> ReadPgCatalog(const std::string& schema, bool describe) {
    // The tables as the change's statements name them (in `schema`).
    static const std::string kOurs =
        "WITH t AS (SELECT to_regclass($1 || '.' || n)::oid AS oid FROM "
        "unnest(string_to_array('" + std::string(kPgTables) + "', ', ')) n) ";
    PgCatalog catalog;
    Status s = Exec(
        kOurs +
            "SELECT string_agg(f, ',' ORDER BY f COLLATE \"C\") FROM ("
            "SELECT 'c' || c.oid || ':' || c.xmin FROM pg_class c WHERE c.oid IN (SELECT oid FROM t) "
            "UNION ALL SELECT 'a' || attrelid || '.' || attnum || ':' || xmin FROM pg_attribute "
            "WHERE attrelid IN (SELECT oid FROM t) "
            "UNION ALL SELECT 'd' || oid || ':' || xmin FROM pg_attrdef "
            "WHERE adrelid IN (SELECT oid FROM t) "
            "UNION ALL SELECT 'k' || oid || ':' || xmin FROM pg_constraint "
            "WHERE conrelid IN (SELECT oid FROM t) OR confrelid IN (SELECT oid FROM t) "
            "UNION ALL SELECT 'x' || indexrelid || ':' || xmin FROM pg_index "
            "WHERE indrelid IN (SELECT oid FROM t) "
            "UNION ALL SELECT 't' || oid || ':' || xmin FROM pg_trigger "
            "WHERE tgrelid IN (SELECT oid FROM t) "
            "UNION ALL SELECT 'r' || oid || ':' || xmin FROM pg_rewrite "
            "WHERE ev_class IN (SELECT oid FROM t) "
            "UNION ALL SELECT 'p' || oid || ':' || xmin FROM pg_policy "
            "WHERE polrelid IN (SELECT oid FROM t) "
            "UNION ALL SELECT 'i' || inhrelid || '<' || inhparent || ':' || xmin FROM pg_inherits "
            "WHERE inhrelid IN (SELECT oid FROM t) OR inhparent IN (SELECT oid FROM t)"
            ") x(f)",
        {Param::Text(schema)}, [&](const Row& row) {
          if (!row.IsNull(0)) catalog.fingerprint = std::string(row.Text(0));
        });
    if (!s.ok()) return s.error();
    if (!describe) return catalog;
    std::string description;
    s = Exec(
        kOurs +
            "SELECT string_agg(f, E'\\n' ORDER BY f COLLATE \"C\") FROM ("
            "SELECT 'column ' || c.relname || '.' || a.attname || ' ' || "
            "format_type(a.atttypid, a.atttypmod) || "
            "CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || "
            "CASE WHEN a.atthasdef THEN ' default' ELSE '' END || "
            "CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END || "
            "CASE WHEN a.attidentity <> '' THEN ' identity' ELSE '' END || "
            "' collation ' || a.attcollation "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE a.attrelid IN (SELECT oid FROM t) AND a.attnum > 0 AND NOT a.attisdropped "
            // (A referenced table outside the search path comes qualified:
            // the tables' schema is taken off it. A constraint of a table
            // not the store's, or one that refers to one, is foreign.)
            "UNION ALL SELECT CASE WHEN k.conrelid IN (SELECT oid FROM t) AND (k.confrelid = 0 "
            "OR k.confrelid IN (SELECT oid FROM t)) THEN 'constraint ' || r.relname || ' ' || "
            "k.conname || ' ' || replace(pg_get_constraintdef(k.oid), 'REFERENCES ' || $1 || "
            "'.', 'REFERENCES ') ELSE 'foreign constraint ' || k.conname END "
            "FROM pg_constraint k JOIN pg_class r ON r.oid = k.conrelid "
            "WHERE k.conrelid IN (SELECT oid FROM t) OR k.confrelid IN (SELECT oid FROM t) "
            "UNION ALL SELECT 'index ' || x.relname || ' ' || r.relname || ' ' || i.indisunique "
            "|| ' ' || i.indkey::text || ' ' || i.indclass::text || ' ' || i.indcollation::text "
            "|| ' ' || (i.indexprs IS NULL) || ' ' || (i.indpred IS NULL) FROM pg_index i "
            "JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_class r ON r.oid = i.indrelid "
            "WHERE i.indrelid IN (SELECT oid FROM t) "
            "UNION ALL SELECT 'trigger ' || r.relname || ' ' || g.tgname || ' ' || g.tgtype "
            "FROM pg_trigger g JOIN pg_class r ON r.oid = g.tgrelid "
            "WHERE g.tgrelid IN (SELECT oid FROM t) AND NOT g.tgisinternal "
            "UNION ALL SELECT 'table ' || relname || ' ' || relkind::text || ' ' || "
            "relrowsecurity || ' ' || relforcerowsecurity || ' ' || relhasrules || ' ' || relam "
            "FROM pg_class WHERE oid IN (SELECT oid FROM t) "
            "UNION ALL SELECT 'rule ' || rulename FROM pg_rewrite "
            "WHERE ev_class IN (SELECT oid FROM t) "
            "UNION ALL SELECT 'policy ' || polname FROM pg_policy "
            "WHERE polrelid IN (SELECT oid FROM t) "
            "UNION ALL SELECT 'inherits ' || inhrelid || ' ' || inhparent FROM pg_inherits "
            "WHERE inhrelid IN (SELECT oid FROM t) OR inhparent IN (SELECT oid FROM t) "
            "UNION ALL SELECT 'missing' FROM t WHERE oid IS NULL"
            ") x(f)",
        {Param::Text(schema)}, [&](const Row& row) {
          if (!row.IsNull(0)) description = std::string(row.Text(0));
        });
    if (!s.ok()) return s.error();
    catalog.ours = description == kPgSchema && !catalog.fingerprint.empty();
    return catalog;
  }

  // The transaction ids the rows of the tables carry (PgMark), and how many
  // rows each table holds.
  struct PgRows {
    std::set<uint32_t> xids;
    std::map<std::string, uint64_t, std::less<>> rows;
  };
  // (In the catalog's search path, `schema` the tables': InPgCatalogPath.)
  Result<PgRows> ReadPgRows(const std::string& schema) {
    PgRows rows;
    std::string sql;
    for (std::string_view tables = kPgTables; !tables.empty();) {
      const size_t comma = tables.find(", ");
      const std::string table(tables.substr(0, comma));
      tables = comma == std::string_view::npos ? "" : tables.substr(comma + 2);
      rows.rows[table] = 0;
      if (!sql.empty()) sql += " UNION ALL ";
      // Grouped by the id itself, cast once a group (not once a row).
      sql += "SELECT '" + table + "', x::text::bigint, n FROM (SELECT xmin AS x, count(*) AS n "
             "FROM " + schema + "." + table + " GROUP BY xmin) " + table;
    }
    Status s = Exec(sql, {}, [&](const Row& row) {
      rows.xids.insert(static_cast<uint32_t>(row.Int(1)));
      const auto at = rows.rows.find(row.Text(0));
      if (at != rows.rows.end()) at->second += static_cast<uint64_t>(row.Int(2));
    });
    if (!s.ok()) return s.error();
    return rows;
  }

  // After the whole state was read and checked (`state`, the rows and lists
  // in the tables), inside the write transaction with the tables locked: the
  // mark that later changes compare with, or none when the schema is not
  // Bantay's own or a trusted id could be a transaction's still to commit
  // (internal::PgTrustedUntil).
  Result<std::optional<PgMark>> PgObserve(const StoreState& state) {
    std::optional<PgMark> mark;
    Status s = InPgCatalogPath([&](const std::string& schema) -> Status {
      Result<std::optional<PgMark>> observed = PgObserveIn(schema, state);
      if (!observed.ok()) return observed.error();
      mark = std::move(*observed);
      return {};
    });
    if (!s.ok()) return s.error();
    return mark;
  }
  Result<std::optional<PgMark>> PgObserveIn(const std::string& schema, const StoreState& state) {
    Result<PgCatalog> catalog = ReadPgCatalog(schema, /*describe=*/true);
    if (!catalog.ok()) return catalog.error();
    if (!catalog->ours) return std::optional<PgMark>();
    Result<PgRows> rows = ReadPgRows(schema);
    if (!rows.ok()) return rows.error();
    if (rows->rows["entries"] != state.rows.size() || rows->rows["lists"] != state.lists.size()) {
      return std::optional<PgMark>();
    }
    int64_t low = -1, next = -1;
    std::set<uint64_t> running;
    Status s = Exec(
        "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint, "
        "x::text::bigint FROM pg_current_snapshot() s "
        "LEFT JOIN LATERAL pg_snapshot_xip(s) x ON true",
        {}, [&](const Row& row) {
          low = row.Int(0);
          next = row.Int(1);
          if (!row.IsNull(2)) running.insert(static_cast<uint64_t>(row.Int(2)));
        });
    if (!s.ok()) return s.error();
    if (low < 0 || next < 0) return Error(ErrorCode::kInternal, "no transaction snapshot");
    // The snapshot lists the running transactions, not their
    // subtransactions: ask for each trusted id that could be one.
    std::string candidates;
    for (const uint32_t r : rows->xids) {
      const std::optional<uint64_t> r64 = internal::PgXid64(r, static_cast<uint64_t>(next));
      if (!r64) return std::optional<PgMark>();
      if (*r64 < static_cast<uint64_t>(low)) continue;
      if (!candidates.empty()) candidates += ",";
      candidates += std::to_string(*r64);
    }
    if (!candidates.empty()) {
      s = Exec("SELECT x FROM unnest(ARRAY[" + candidates +
                   "]::bigint[]) x WHERE pg_xact_status(x::text::xid8) IS DISTINCT FROM "
                   "'committed' AND pg_xact_status(x::text::xid8) IS DISTINCT FROM 'aborted'",
               {}, [&](const Row& row) { running.insert(static_cast<uint64_t>(row.Int(0))); });
      if (!s.ok()) return s.error();
    }
    const std::optional<uint64_t> until = internal::PgTrustedUntil(
        static_cast<uint64_t>(low), static_cast<uint64_t>(next), running, rows->xids);
    if (!until) return std::optional<PgMark>();
    PgMark mark;
    mark.catalog = std::move(catalog->fingerprint);
    mark.xids = std::move(rows->xids);
    mark.valid_until = *until;
    mark.rows = std::move(rows->rows);
    return std::optional<PgMark>(std::move(mark));
  }

  // Inside the write transaction with the tables locked: whether the
  // tables (whose catalog rows read at the lock are `catalog`) are as `mark`
  // says a kept state left them (PgMark), and the last audit record the one
  // `record` signed. If so, the mark's trusted ids are narrowed to those the
  // rows still carry.
  Result<bool> PgUnchanged(PgMark* mark, const std::string& catalog,
                           const VersionRecord& record) {
    if (catalog != mark->catalog) return false;
    bool same = false;
    PgRows rows;
    Status s = InPgCatalogPath([&](const std::string& schema) -> Status {
      Result<int64_t> next = QueryInt(
          "SELECT pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text::bigint",
          {});
      if (!next.ok()) return next.error();
      if (*next < 0 || static_cast<uint64_t>(*next) >= mark->valid_until) return {};
      Result<PgRows> read = ReadPgRows(schema);
      if (!read.ok()) return read.error();
      rows = std::move(*read);
      same = rows.rows == mark->rows;
      return {};
    });
    if (!s.ok()) return s.error();
    if (!same) return false;
    for (const uint32_t xid : rows.xids) {
      if (mark->xids.count(xid) == 0) return false;
    }
    Result<AuditRecord> last = LastAudit();
    if (!last.ok()) return last.error();
    if (last->seq != record.version || last->digest != record.audit_digest) return false;
    mark->xids = std::move(rows.xids);
    return true;
  }

  // Whether the SQLite database's tables, indexes and triggers are exactly
  // those Init creates (SQLite's own indexes and tables aside):
  // no trigger, view, or table definition of anyone else's (a conflict
  // clause, a cascade) that could make a change's statements do more or
  // less than they say. Each object's SQL text, as SQLite keeps it, must be
  // one of the schema's statements (a store upgraded from schema 1 gives the
  // same text for versions as one made at schema 2), and there must be as
  // many objects as statements.
  Result<bool> SchemaIsBantays() {
    const std::string schema = Schema(db::Backend::kSqlite);
    size_t statements = 0;
    for (size_t at = schema.find("\nCREATE "); at != std::string::npos;
         at = schema.find("\nCREATE ", at + 1)) {
      ++statements;
    }
    size_t objects = 0;
    bool ours = true;
    // Only SQLite's own objects are passed over: the indexes it makes for
    // UNIQUE and PRIMARY KEY constraints (no SQL) and its statistics and
    // sequence tables. Not every name beginning with sqlite_: with
    // writable_schema, anyone may create a trigger so named.
    Status s = Exec("SELECT sql FROM sqlite_master WHERE NOT ((type = 'index' AND sql IS NULL) "
                    "OR (type = 'table' AND name IN ('sqlite_sequence', 'sqlite_stat1', "
                    "'sqlite_stat2', 'sqlite_stat3', 'sqlite_stat4')))",
                    {}, [&](const Row& row) {
                      ++objects;
                      std::string statement = "\n";
                      statement.append(row.Text(0)).append(";\n");
                      if (row.IsNull(0) || schema.find(statement) == std::string::npos) {
                        ours = false;
                      }
                    });
    if (!s.ok()) return s.error();
    return ours && objects == statements;
  }

  static Error NeedsUpgrade(const std::string& what) {
    return Error(ErrorCode::kInvalidArgument,
                 what +
                     " (made by a Bantay before store schema 2, whose versions do not sign "
                     "the whole state; or the store's newer versions were deleted): check it "
                     "with bantay index verify --public-key, then sign its whole state once with "
                     "bantay index upgrade");
  }

  // Inside the write transaction: the store is as `version` was signed —
  // its record verifies with the signing key, its audit record is intact
  // and bound to it, and the entries give its root and state digest — so
  // that the next version, whose root is computed from the database and
  // whose audit record chains on from the last one, signs nothing written
  // behind the store's back. Keeps the state read (before_) for the
  // comparison after the change. A version without a state digest
  // (schema 1) is taken as found only by the upgrade.
  Status CheckCurrentRoot(uint64_t version, bool upgrading) {
    std::vector<VersionRecord> records;
    Status s = ReadVersions(VersionSelect() + " FROM versions WHERE version = $1",
                            {Param::Int(static_cast<int64_t>(version))}, &records);
    if (!s.ok()) return s;
    auto outside = [&](const std::string& what) {
      return Error(ErrorCode::kCorruptData,
                   "the store was changed outside Bantay: " + what +
                       ", and no change is signed over it (see bantay index verify)");
    };
    const std::string name = "version " + std::to_string(version);
    if (records.empty()) return outside(name + " has no signed record");
    const VersionRecord& record = records.front();
    if (!VerifySignature(keys.signing_key->public_key(), VersionSigningMessage(store_id, record),
                         record.signature)) {
      return outside("the signature of " + name + " does not verify");
    }
    if (!record.state_digest && !upgrading) {
      return NeedsUpgrade(name + " is signed without a state digest");
    }
    Result<AuditRecord> last = LastAudit();
    if (!last.ok()) return last.error();
    if (last->seq != version || AuditRecordDigest(*last) != last->digest ||
        last->digest != record.audit_digest) {
      return outside("the last audit record is not the one " + name + " signed");
    }
    Result<StoreState> state = ReadState(/*keep_rows=*/true);
    if (!state.ok()) return state.error();
    if (record.active_count != state->active.size() || record.root != state->active.Root()) {
      return outside("its entries do not give the signed root of " + name);
    }
    if (record.state_digest && *record.state_digest != state->digest) {
      return outside("the states of its entries and lists are not the ones " + name +
                     " signed (an entry or a list changed, added or deleted)");
    }
    before_ = std::move(*state);
    before_record_ = record;
    return {};
  }

  // Runs `body` between BeginChange and FinishChange; rolls back on error.
  // `body` returns the audit fields and what it did to the state.
  struct ChangeSummary {
    std::string list;
    uint64_t count = 0;
    Digest32 entries_digest{};
    bool nothing_changed = false;
    StateDelta delta;
  };
  Result<uint64_t> Change(const ChangeContext& context, std::string_view action,
                          const std::function<Result<ChangeSummary>(uint64_t version)>& body) {
    Status valid = CheckWho(context);
    if (!valid.ok()) return valid.error();
    const bool upgrading = action == "upgrade";
    Result<uint64_t> done = ChangeOnce(context, action, upgrading, body);
    // An upgrade rolled back leaves the table as it was: look again.
    if (upgrading && !done.ok()) state_column = false;
    return done;
  }
  Result<uint64_t> ChangeOnce(const ChangeContext& context, std::string_view action,
                              bool upgrading,
                              const std::function<Result<ChangeSummary>(uint64_t)>& body) {
    Result<uint64_t> version = BeginChange(upgrading);
    if (!version.ok()) return version.error();
    StoreState before = std::move(before_);
    before_ = {};
    const bool kept = before_kept_;
    std::optional<Mark> keep = std::move(keep_);
    keep_.reset();
    Result<ChangeSummary> summary = body(*version);
    if (!summary.ok()) {
      conn->Rollback();
      return summary.error();
    }
    if (summary->nothing_changed) {
      conn->Rollback();
      before_ = std::move(before);
      keep_ = std::move(keep);
      Keep(*version - 1);
      return *version - 1;
    }
    const size_t removed = summary->delta.removed.size();
    Result<StoreState> after = Applied(std::move(before), std::move(summary->delta));
    if (!after.ok()) {
      conn->Rollback();
      return after.error();
    }
    // A state read and checked before the change is compared with the
    // database after it; a kept one needs no comparison (KeptState).
    const bool appended = after->appended;
    if (keep && keep->pg) {
      // The rows the tables hold after the change (PgMark).
      std::map<std::string, uint64_t, std::less<>>& rows = keep->pg->rows;
      rows["entries"] = after->rows.size();
      rows["lists"] = after->lists.size();
      rows["audit"] += 1;
      rows["versions"] += 1;
      rows["removals"] += removed;
    }
    Result<uint64_t> done =
        FinishChange(*version, context, action, summary->list, summary->count,
                     summary->entries_digest, std::move(*after), /*check_database=*/!kept,
                     std::move(keep));
    if (!done.ok()) {
      conn->Rollback();
    } else if (appended) {
      ++starts.appended;
    }
    return done;
  }

  // After a change begun and rolled back having changed nothing (or
  // PrepareChange): the state it began from (before_) is kept for the
  // next, at `version`, when BeginChange said it could be.
  void Keep(uint64_t version) {
    if (keep_) {
      std::lock_guard lock(kept_mutex_);
      kept_.emplace(
          KeptState{version, std::move(*keep_), std::move(before_), std::move(before_record_)});
      keep_.reset();
    }
    before_ = {};
    before_record_.reset();
  }

  // The state a change starts from (BeginChange's, for ChangeOnce): read
  // and checked against the current version, or kept from this
  // connection's last change (before_kept_).
  StoreState before_;
  bool before_kept_ = false;
  std::optional<VersionRecord> before_record_;  // the current version's, when at hand

  // The state this connection's last change left, kept so that the next
  // change neither reads and checks every row before it nor reads them back
  // after it (at 1M entries that is most of a change's second). It is used
  // only when no other connection has written since (its Mark: SQLite's
  // data version the next change's write transaction reads; PostgreSQL's
  // PgMark) and when the change that kept it found the database's schema to
  // be Bantay's own (so its statements did what they said and no more; any
  // edit of the schema is another connection's commit, or on PostgreSQL a
  // catalog row of another version). Otherwise the change reads and checks
  // everything.
  struct KeptState {
    uint64_t version = 0;
    Mark mark;
    StoreState state;  // rows, lists and their hashes
    std::optional<VersionRecord> record;  // what the change signed (SignedThis)
  };
  // kept_ is moved out and in by the changes' thread and read by SignedThis
  // on another.
  mutable std::mutex kept_mutex_;
  std::optional<KeptState> kept_;

  bool SignedThis(const VersionRecord& record, const StateView& view,
                  StateDigester* entries_digest, MerkleFrontier* active) const {
    std::lock_guard lock(kept_mutex_);
    if (!kept_ || kept_->record != record) return false;
    const StoreState& state = kept_->state;
    if (!state.hashed || state.rows.size() != view.ids.size() ||
        view.leaves.size() != view.ids.size() || view.tags.size() != view.ids.size() ||
        view.list_state.size() != view.list_names.size()) {
      return false;
    }
    std::unordered_map<std::string_view, uint32_t> index;
    size_t held = 0;
    for (size_t i = 0; i < view.list_names.size(); ++i) {
      index.emplace(view.list_names[i], static_cast<uint32_t>(i));
      if (view.list_state[i] != 2) ++held;
    }
    if (index.size() != view.list_names.size() || held != state.lists.size()) return false;
    for (const auto& [name, enabled] : state.lists) {
      const auto at = index.find(name);
      if (at == index.end() || view.list_state[at->second] != (enabled ? 1 : 0)) return false;
    }
    // The follower's index of each list the rows name (none: no match).
    std::vector<uint32_t> list_of(state.entry_lists.size(), UINT32_MAX);
    for (size_t i = 0; i < state.entry_lists.size(); ++i) {
      const auto at = index.find(state.entry_lists[i]);
      if (at != index.end()) list_of[i] = at->second;
    }
    for (size_t i = 0; i < state.rows.size(); ++i) {
      const StateRow& row = state.rows[i];
      const uint32_t tag = view.tags[i];
      if (row.id != view.ids[i] || row.leaf != view.leaves[i] ||
          row.active != ((tag & 1) == 0) || list_of[row.list] != (tag >> 1) ||
          view.list_state[tag >> 1] == 2) {
        return false;
      }
    }
    *entries_digest = state.rows_digest;
    *active = state.active;
    return true;
  }
  std::optional<Mark> keep_;  // BeginChange's: keep the change's state with this mark
  ChangeStarts starts;

  // Set when a caller's callback (ForEachEntry's, ReadIndexRows's) throws:
  // its exception is the caller's, passed on by Abandon.
  bool caller_threw_ = false;
  // Runs a caller's callback, marking an exception it throws as the
  // caller's.
  template <typename Call>
  decltype(auto) CallersCode(Call&& call) {
    try {
      return call();
    } catch (...) {
      caller_threw_ = true;
      throw;
    }
  }

  // Store::AddEntries, and AddNewEntries (with `result`).
  Result<uint64_t> Add(const std::vector<NewEntry>& entries, const ChangeContext& context,
                       std::string_view action, AddResult* result, const HeldEntries* held);
  Result<std::vector<uint64_t>> PresentIds(const std::vector<NewEntry>& entries,
                                           const std::set<std::string>& lists, uint64_t next,
                                           uint64_t version, const HeldEntries* held);
  // Store::RemoveDuplicates: the groups of `lists` (every list when empty)
  // and the ids to remove (ascending).
  Status FindDuplicates(const std::vector<std::string>& lists,
                        std::vector<DuplicateGroup>* groups, std::vector<uint64_t>* remove);
  // Store::RemoveEntries's change: deletes the entries (kNotFound for an id
  // that names none) and records them as removed at `version`.
  Result<ChangeSummary> RemoveRows(const std::vector<uint64_t>& ids, uint64_t version);

  // Called from the handler of an exception that left a public call: an
  // allocation that failed, a bug's std::exception, or a caller's callback.
  // Rolls back the transaction the call began and drops what a change in
  // flight took and the state kept for the next change (which then reads
  // and checks the store), so that the store is as it was before the call
  // and the next call starts afresh. Nothing after a change's commit can
  // throw, so a change that throws was not made. Returns the error the call
  // answers with (kUnavailable when memory ran out, kInternal for another
  // std::exception); a caller's exception, or one of an unknown type, is
  // thrown on.
  Error Abandon() {
    // What cannot throw first; then the rollback (which may allocate, as may
    // a fresh state: memory that ran out once may run out again), tried
    // twice. The state begun from is read again before its next use.
    before_kept_ = false;
    before_record_.reset();
    keep_.reset();
    {
      std::lock_guard lock(kept_mutex_);
      kept_.reset();
    }
    state_column = false;  // an upgrade may have stopped half-way: look again
    for (int attempt = 0; attempt < 2; ++attempt) {
      try {
        conn->Rollback();
        break;
      } catch (...) {
      }
    }
    try {
      before_ = {};
    } catch (...) {
    }
    if (caller_threw_) {
      caller_threw_ = false;
      throw;
    }
    return ErrorOfException();
  }

  // Runs `select` (columns and table) for the rows of `ids` (ascending,
  // unique), kIdBatch ids a statement ("WHERE id IN (...)"; a short batch
  // repeats its last id, whose row comes once): one round trip a batch,
  // not an id. Rows come in no order.
  static constexpr size_t kIdBatch = 64;
  // With `stop`, no batch follows one after which it is an error.
  Status ForRowsOfIds(std::string_view select, const std::vector<uint64_t>& ids,
                      const db::RowCallback& on_row, const Status* stop = nullptr) {
    if (ids.empty()) return {};
    std::string sql = std::string(select) + " WHERE id IN (";
    for (size_t k = 1; k <= kIdBatch; ++k) sql += (k > 1 ? ", $" : "$") + std::to_string(k);
    sql += ")";
    Result<std::unique_ptr<db::Statement>> by_id = conn->Prepare(sql);
    if (!by_id.ok()) return by_id.error();
    std::vector<Param> params;
    params.reserve(kIdBatch);
    for (size_t k = 0; k < ids.size(); k += kIdBatch) {
      params.clear();
      for (size_t j = 0; j < kIdBatch; ++j) {
        params.push_back(Param::Int(SqlBound(ids[std::min(k + j, ids.size() - 1)])));
      }
      Status s = (*by_id)->Execute(params, on_row);
      if (!s.ok()) return s;
      if (stop != nullptr && !stop->ok()) break;
    }
    return {};
  }

  // Leaf hashes (and statuses) of existing entries, in id order, and their
  // lists; kNotFound for a missing id (the smallest).
  Status ExistingLeaves(const std::vector<uint64_t>& ids, std::vector<Digest32>* leaves,
                        std::set<std::string>* lists, std::vector<int64_t>* statuses) {
    std::vector<uint64_t> sorted = ids;
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    leaves->assign(sorted.size(), Digest32{});
    if (statuses != nullptr) statuses->assign(sorted.size(), 0);
    std::vector<bool> found(sorted.size(), false);
    Status s = ForRowsOfIds("SELECT id, leaf, list, status FROM entries", sorted,
                            [&](const Row& row) {
                              const uint64_t id = static_cast<uint64_t>(row.Int(0));
                              const size_t i = static_cast<size_t>(
                                  std::lower_bound(sorted.begin(), sorted.end(), id) -
                                  sorted.begin());
                              if (i == sorted.size() || sorted[i] != id) return;
                              found[i] = true;
                              CopyBlob(row.Blob(1), &(*leaves)[i]);
                              lists->insert(std::string(row.Text(2)));
                              if (statuses != nullptr) (*statuses)[i] = row.Int(3);
                            });
    if (!s.ok()) return s;
    for (size_t i = 0; i < sorted.size(); ++i) {
      if (!found[i]) {
        return Error(ErrorCode::kNotFound, "no entry with id " + std::to_string(sorted[i]));
      }
    }
    return {};
  }
};

// --- Store ---------------------------------------------------------------------

Store::Store(std::unique_ptr<db::Connection> conn, StoreKeys keys)
    : impl_(std::make_unique<Impl>(std::move(conn), std::move(keys))) {}

Store::~Store() = default;

namespace {

Result<bool> HasSchema(db::Connection& conn) {
  std::string_view sql =
      conn.backend() == db::Backend::kSqlite
          ? "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
          // PostgreSQL's catalog, not information_schema: its columns are of a
          // domain type for which an operator in the tables' schema would be
          // chosen over the built-in one; here every operator has an exact
          // built-in match, which is found first.
          : "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relname = 'meta' "
            "AND n.nspname = pg_catalog.current_schema()";
  int64_t n = 0;
  Status s = conn.Execute(sql, {}, [&](const Row& row) { n = row.Int(0); });
  if (!s.ok()) return s.error();
  return n > 0;
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Init(const std::string& url, StoreKeys keys,
                                           const ChangeContext& context) try {
  if (keys.data_keys.empty() || !keys.signing_key) {
    return Error(ErrorCode::kInvalidArgument,
                 "creating a store needs a data key and a signing key");
  }
  Result<std::unique_ptr<db::Connection>> conn = db::Connection::Open(url, /*create=*/true);
  if (!conn.ok()) return conn.error();
  Result<bool> exists = HasSchema(**conn);
  if (!exists.ok()) return exists.error();
  if (*exists) return Error(ErrorCode::kInvalidArgument, "the database already holds a store");

  std::unique_ptr<Store> store(new Store(std::move(*conn), std::move(keys)));
  store->impl_->url = url;
  Impl& im = *store->impl_;
  RandomBytes(im.store_id);
  store->store_id_ = im.store_id;
  im.public_key = im.keys.signing_key->public_key();
  Status s = im.conn->BeginWrite();
  if (!s.ok()) return s.error();
  s = im.conn->ExecScript(Schema(im.conn->backend()));
  if (s.ok()) {
    s = im.Exec("INSERT INTO meta (key, value) VALUES ('store_id', $1)",
                {BlobParam(im.store_id)});
  }
  if (s.ok()) {
    const std::array<uint8_t, 8> schema = {0, 0, 0, 0, 0, 0, 0,
                                           static_cast<uint8_t>(kSchemaVersion)};
    s = im.Exec("INSERT INTO meta (key, value) VALUES ('schema_version', $1)",
                {BlobParam(schema)});
  }
  if (s.ok()) {
    s = im.Exec("INSERT INTO meta (key, value) VALUES ('public_key', $1)",
                {BlobParam(im.keys.signing_key->public_key())});
  }
  if (s.ok()) s = im.Exec("INSERT INTO state (id, version, next_id) VALUES (1, 0, 1)", {});
  if (!s.ok()) {
    im.conn->Rollback();
    return s.error();
  }
  Result<Impl::StoreState> empty = Impl::Applied({}, {});
  if (!empty.ok()) {
    im.conn->Rollback();
    return empty.error();
  }
  Result<uint64_t> v = im.FinishChange(1, context, "init", "", 0, DigestOfLeaves({}),
                                       std::move(*empty), /*check_database=*/true, std::nullopt);
  if (!v.ok()) {
    im.conn->Rollback();
    return v.error();
  }
  return store;
} catch (...) {
  return ErrorOfException();
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& url, StoreKeys keys) try {
  Result<std::unique_ptr<db::Connection>> conn = db::Connection::Open(url, /*create=*/false);
  if (!conn.ok()) return conn.error();
  Result<bool> exists = HasSchema(**conn);
  if (!exists.ok()) return exists.error();
  if (!*exists) return Error(ErrorCode::kNotFound, "the database holds no Bantay store");
  std::unique_ptr<Store> store(new Store(std::move(*conn), std::move(keys)));
  store->impl_->url = url;
  Impl& im = *store->impl_;
  std::array<uint8_t, 8> schema{};
  bool have_id = false, have_schema = false;
  Status s = im.Exec("SELECT key, value FROM meta", {}, [&](const Row& row) {
    if (row.Text(0) == "store_id") have_id = CopyBlob(row.Blob(1), &im.store_id);
    if (row.Text(0) == "schema_version") have_schema = CopyBlob(row.Blob(1), &schema);
    PublicKey key{};
    if (row.Text(0) == "public_key" && CopyBlob(row.Blob(1), &key)) im.public_key = key;
  });
  if (!s.ok()) return s.error();
  if (!have_id || !have_schema) {
    return Error(ErrorCode::kCorruptData, "the store's metadata is incomplete");
  }
  // A store of schema 1 is read as it is (its versions have no state
  // digest); only `Upgrade` changes it (BeginChange).
  im.state_column = schema[7] != 1;
  if (schema[7] != 1 && schema[7] != kSchemaVersion) {
    return Error(ErrorCode::kInvalidArgument,
                 "unknown store schema version " + std::to_string(schema[7]));
  }
  store->store_id_ = im.store_id;
  return store;
} catch (...) {
  return ErrorOfException();
}

Result<uint64_t> Store::Version() try {
  // A follower polls this: a state row held back must not say "nothing
  // changed".
  Result<int64_t> v = impl_->FollowedVersion();
  if (!v.ok()) return v.error();
  return static_cast<uint64_t>(*v);
} catch (...) {
  return impl_->Abandon();
}

Result<uint64_t> Store::Upgrade(const ChangeContext& context) try {
  Impl& im = *impl_;
  Result<VersionRecord> current = Root();
  if (!current.ok()) return current.error();
  if (current->state_digest) return current->version;  // done before
  return im.Change(context, "upgrade", [&](uint64_t) -> Result<Impl::ChangeSummary> {
    Impl::ChangeSummary summary;
    summary.entries_digest = DigestOfLeaves({});
    return summary;
  });
} catch (...) {
  return impl_->Abandon();
}

namespace {

Status CheckNewEntries(const std::vector<NewEntry>& entries) {
  if (entries.empty()) return Error(ErrorCode::kInvalidArgument, "no entries to add");
  for (size_t i = 0; i < entries.size(); ++i) {
    const NewEntry& e = entries[i];
    Status s = CheckText("list name", e.list, false);
    if (s.ok()) s = CheckText("category", e.category, true);
    if (s.ok()) s = CheckText("reference", e.reference, true);
    if (!s.ok()) {
      return Error(ErrorCode::kInvalidArgument,
                   "entry " + std::to_string(i + 1) + ": " + s.error().message());
    }
  }
  return {};
}

}  // namespace

// For each entry, the id of the entry it repeats (Store::AddResult::present)
// or 0 when it is new; `next` is the id the first new one gets, `version`
// the one the change makes.
Result<std::vector<uint64_t>> Store::Impl::PresentIds(const std::vector<NewEntry>& entries,
                                                      const std::set<std::string>& lists,
                                                      uint64_t next, uint64_t version,
                                                      const HeldEntries* held) {
  std::map<std::string_view, uint32_t> list_index_of;
  for (const std::string& list : lists) {
    list_index_of.emplace(list, static_cast<uint32_t>(list_index_of.size()));
  }
  std::vector<uint32_t> list_of(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) list_of[i] = list_index_of.at(entries[i].list);
  // An entry's key: its list, its type, the bytes of its value that count
  // (an MD5 digest's 16). Compared in place, never copied.
  auto compare = [&](uint32_t list, SignalType type, const uint8_t* value, size_t i) {
    if (list != list_of[i]) return list < list_of[i] ? -1 : 1;
    if (type != entries[i].type) return type < entries[i].type ? -1 : 1;
    return std::memcmp(value, entries[i].value.data(), ValueSize(type));
  };
  std::vector<size_t> order(entries.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int c = compare(list_of[a], entries[a].type, entries[a].value.data(), b);
    return c < 0 || (c == 0 && a < b);
  });
  // first[i]: the first entry with i's key.
  std::vector<size_t> first(entries.size());
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t i = order[k];
    const bool repeat =
        k > 0 && compare(list_of[i], entries[i].type, entries[i].value.data(), order[k - 1]) == 0;
    first[i] = repeat ? first[order[k - 1]] : i;
  }
  // held_id[first]: the smallest id of an entry of the store with its key.
  std::vector<uint64_t> held_id(entries.size(), 0);
  OpenedValue opened;
  // A row (id, list, type, key_id, sealed) of the store: decrypted and
  // looked up among the entries.
  Status failed;
  auto on_row = [&](const Row& row) {
    if (!failed.ok()) return;
    const uint64_t id = static_cast<uint64_t>(row.Int(0));
    const auto list = list_index_of.find(row.Text(1));
    if (list == list_index_of.end()) return;
    failed = opened.Open(cipher, row);
    if (!failed.ok()) return;
    const SignalType t = opened.type;
    const uint8_t* value = opened.value.data();
    auto it = std::lower_bound(order.begin(), order.end(), size_t{0}, [&](size_t i, size_t) {
      return compare(list->second, t, value, i) > 0;
    });
    if (it != order.end() && compare(list->second, t, value, *it) == 0) {
      uint64_t& h = held_id[first[*it]];
      if (h == 0 || id < h) h = id;
    }
  };
  constexpr std::string_view kRowColumns = "SELECT id, list, type, key_id, sealed FROM entries ";
  constexpr size_t kNamedCountedAbove = 4096;
  // With what the caller knows held at a version up to the current one, of
  // this store's history, its lists are read where it says, and where they
  // changed since.
  bool use_held = held != nullptr && held->version < version && held->covers && held->ids;
  if (use_held) {
    std::optional<Digest32> digest;
    Status s = Exec("SELECT audit_digest FROM versions WHERE version = $1",
                    {Param::Int(SqlBound(held->version))}, [&](const Row& row) {
                      Digest32 d{};
                      if (CopyBlob(row.Blob(0), &d)) digest = d;
                    });
    if (!s.ok()) return s.error();
    use_held = digest == held->audit_digest;
  }
  std::set<std::string_view> covered;
  if (use_held) {
    for (const std::string& list : lists) {
      if (CallersCode([&] { return held->covers(list); })) covered.insert(list);
    }
  }
  // The rows the caller names, by list.
  std::map<std::string_view, std::vector<uint64_t>> named_in;
  if (!covered.empty()) {
    std::vector<uint64_t> ids;
    ids.reserve(16);
    for (size_t i = 0; i < entries.size(); ++i) {
      if (first[i] != i || !covered.count(entries[i].list)) continue;
      ids.clear();
      CallersCode([&] { held->ids(entries[i], &ids); });
      std::vector<uint64_t>& named = named_in[entries[i].list];
      named.insert(named.end(), ids.begin(), ids.end());
    }
  }
  // Read by id, a row costs about twice what it costs in a read of its
  // whole list (PostgreSQL, 1M: 8.6 s against 3.7): a list whose rows are
  // more than half named is read whole. (Counted only when that could be:
  // a small add is not slowed by a count.)
  std::vector<uint64_t> named;
  for (auto& [list, ids] : named_in) {
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    if (ids.size() > kNamedCountedAbove) {
      Result<int64_t> n =
          QueryInt("SELECT COUNT(*) FROM entries WHERE list = $1", {Param::Text(list)});
      if (!n.ok()) return n.error();
      if (ids.size() * 2 > static_cast<uint64_t>(*n)) {
        covered.erase(list);
        continue;
      }
    }
    named.insert(named.end(), ids.begin(), ids.end());
  }
  std::sort(named.begin(), named.end());
  named.erase(std::unique(named.begin(), named.end()), named.end());
  if (!covered.empty()) {
    Status s = ForRowsOfIds(kRowColumns, named, on_row, &failed);
    if (!s.ok()) return s.error();
    if (!failed.ok()) return failed.error();
    // Rows added after that version (their status_version is at least
    // their added_version); a row whose status changed is read again. (No
    // order: SQLite would rather walk every row in id order than sort.)
    s = Exec(std::string(kRowColumns) + "WHERE status_version > $1",
                    {Param::Int(SqlBound(held->version))}, [&](const Row& row) {
                      if (covered.count(row.Text(1))) on_row(row);
                    });
    if (!s.ok()) return s.error();
    if (!failed.ok()) return failed.error();
  }
  for (const std::string& list : lists) {
    if (covered.count(list)) continue;
    Status s = Exec(std::string(kRowColumns) + "WHERE list = $1 ORDER BY id",
                    {Param::Text(list)}, on_row);
    if (!s.ok()) return s.error();
    if (!failed.ok()) return failed.error();
  }
  // Ids: an entry held repeats the held one; the first of a new key gets
  // the next id, its repeats that id.
  std::vector<uint64_t> present(entries.size(), 0);
  std::vector<uint64_t> assigned(entries.size(), 0);
  for (size_t i = 0; i < entries.size(); ++i) {
    const size_t f = first[i];
    if (held_id[f] != 0) {
      present[i] = held_id[f];
    } else if (f != i) {
      present[i] = assigned[f];
    } else {
      assigned[i] = next++;
    }
  }
  return present;
}

Result<uint64_t> Store::Impl::Add(const std::vector<NewEntry>& entries,
                                  const ChangeContext& context, std::string_view action,
                                  AddResult* result, const HeldEntries* held) {
  return Change(context, action, [&](uint64_t version) -> Result<ChangeSummary> {
    Result<int64_t> next = QueryInt("SELECT next_id FROM state WHERE id = 1", {});
    if (!next.ok()) return next.error();
    std::set<std::string> lists;
    for (const NewEntry& e : entries) lists.insert(e.list);
    // With `result` (AddNewEntries), what the lists hold already is left out.
    std::vector<uint64_t> present;
    if (result != nullptr) {
      Result<std::vector<uint64_t>> ids =
          PresentIds(entries, lists, static_cast<uint64_t>(*next), version, held);
      if (!ids.ok()) return ids.error();
      present = std::move(*ids);
      result->present.clear();
      for (size_t i = 0; i < present.size(); ++i) {
        if (present[i] != 0) result->present.emplace_back(i, present[i]);
      }
      result->added = entries.size() - result->present.size();
      if (result->added == 0) {
        ChangeSummary summary;
        summary.nothing_changed = true;
        return summary;
      }
      lists.clear();
      for (size_t i = 0; i < entries.size(); ++i) {
        if (present[i] == 0) lists.insert(entries[i].list);
      }
    }
    // Lists that do not exist yet are created, enabled.
    for (const std::string& list : lists) {
      Status s = Exec(
          "INSERT INTO lists (name, enabled, description, created_version, changed_version) "
          "VALUES ($1, 1, '', $2, $2) ON CONFLICT (name) DO NOTHING",
          {Param::Text(list), Param::Int(static_cast<int64_t>(version))});
      if (!s.ok()) return s.error();
    }
    Result<std::unique_ptr<db::Statement>> insert = conn->Prepare(
        "INSERT INTO entries (id, list, type, key_id, sealed, leaf, category, reference, "
        "source, added_by, added_at, added_version, status, status_version) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, $12)");
    if (!insert.ok()) return insert.error();
    const int64_t now = Now();
    const std::string& key_id = cipher.primary()->key_id();
    Sha256Hasher digest;
    std::vector<uint8_t> sealed;
    StoredEntry e;
    StateDelta delta;
    delta.created_lists.assign(lists.begin(), lists.end());
    uint64_t id = static_cast<uint64_t>(*next);
    for (size_t i = 0; i < entries.size(); ++i) {
      if (!present.empty() && present[i] != 0) continue;
      const NewEntry& n = entries[i];
      e.id = id++;
      e.list = n.list;
      e.type = n.type;
      e.value = n.value;
      if (n.type == SignalType::kMd5) std::fill(e.value.begin() + 16, e.value.end(), 0);
      e.category = n.category;
      e.reference = n.reference;
      RandomBytes(e.salt);
      cipher.Seal(e.id, e.type, e.value, e.salt, &sealed);
      const Digest32 leaf = EntryLeafHash(e);
      digest.Update(leaf);
      const std::array<Param, 12> params = {
          Param::Int(static_cast<int64_t>(e.id)), Param::Text(e.list),
          Param::Int(static_cast<int64_t>(e.type)), Param::Text(key_id),
          BlobParam(sealed), BlobParam(leaf), Param::Text(e.category),
          Param::Text(e.reference), Param::Text(context.source), Param::Text(context.actor),
          Param::Int(now), Param::Int(static_cast<int64_t>(version))};
      Status s = (*insert)->Execute(params);
      if (!s.ok()) return s.error();
      delta.added.push_back({e.id, leaf, e.list});
    }
    Wipe(e.value);
    Status s = Exec("UPDATE state SET next_id = $1 WHERE id = 1",
                    {Param::Int(static_cast<int64_t>(id))});
    if (!s.ok()) return s.error();
    ChangeSummary summary;
    summary.list = lists.size() == 1 ? *lists.begin() : "";
    summary.count = delta.added.size();
    summary.entries_digest = digest.Finish();
    summary.delta = std::move(delta);
    return summary;
  });
}

Result<uint64_t> Store::AddEntries(const std::vector<NewEntry>& entries,
                                   const ChangeContext& context, std::string_view action) try {
  Status valid = CheckNewEntries(entries);
  if (!valid.ok()) return valid.error();
  return impl_->Add(entries, context, action, nullptr, nullptr);
} catch (...) {
  return impl_->Abandon();
}

Result<Store::AddResult> Store::AddNewEntries(const std::vector<NewEntry>& entries,
                                              const ChangeContext& context,
                                              std::string_view action,
                                              const HeldEntries* held) try {
  Status valid = CheckNewEntries(entries);
  if (!valid.ok()) return valid.error();
  AddResult result;
  Result<uint64_t> version = impl_->Add(entries, context, action, &result, held);
  if (!version.ok()) return version.error();
  result.version = *version;
  return result;
} catch (...) {
  return impl_->Abandon();
}

Result<Store::Impl::ChangeSummary> Store::Impl::RemoveRows(const std::vector<uint64_t>& ids,
                                                            uint64_t version) {
  std::vector<Digest32> leaves;
  std::set<std::string> lists;
  Status s = ExistingLeaves(ids, &leaves, &lists, nullptr);
  if (!s.ok()) return s.error();
  Result<std::unique_ptr<db::Statement>> del = conn->Prepare("DELETE FROM entries WHERE id = $1");
  if (!del.ok()) return del.error();
  Result<std::unique_ptr<db::Statement>> log =
      conn->Prepare("INSERT INTO removals (version, id) VALUES ($1, $2)");
  if (!log.ok()) return log.error();
  std::set<uint64_t> unique(ids.begin(), ids.end());
  for (uint64_t id : unique) {
    Param p = Param::Int(static_cast<int64_t>(id));
    s = (*del)->Execute(std::span<const Param>(&p, 1));
    if (!s.ok()) return s.error();
    const std::array<Param, 2> lp = {Param::Int(static_cast<int64_t>(version)), p};
    s = (*log)->Execute(lp);
    if (!s.ok()) return s.error();
  }
  ChangeSummary summary;
  summary.list = lists.size() == 1 ? *lists.begin() : "";
  summary.count = unique.size();
  summary.entries_digest = DigestOfLeaves(leaves);
  summary.delta.removed.assign(unique.begin(), unique.end());
  return summary;
}

Result<uint64_t> Store::RemoveEntries(const std::vector<uint64_t>& ids,
                                      const ChangeContext& context) try {
  if (ids.empty()) return Error(ErrorCode::kInvalidArgument, "no entries to remove");
  Impl& im = *impl_;
  return im.Change(context, "remove",
                   [&](uint64_t version) { return im.RemoveRows(ids, version); });
} catch (...) {
  return impl_->Abandon();
}

Result<uint64_t> Store::SetEntriesStatus(const std::vector<uint64_t>& ids, EntryStatus status,
                                         const ChangeContext& context) try {
  if (ids.empty()) return Error(ErrorCode::kInvalidArgument, "no entries given");
  Impl& im = *impl_;
  const std::string_view action = status == EntryStatus::kActive ? "enable" : "disable";
  return im.Change(context, action, [&](uint64_t version) -> Result<Impl::ChangeSummary> {
    std::vector<Digest32> leaves;
    std::set<std::string> lists;
    std::vector<int64_t> statuses;
    Status s = im.ExistingLeaves(ids, &leaves, &lists, &statuses);
    if (!s.ok()) return s.error();
    std::set<uint64_t> unique(ids.begin(), ids.end());
    std::vector<Digest32> changed;
    Impl::StateDelta delta;
    Result<std::unique_ptr<db::Statement>> update = im.conn->Prepare(
        "UPDATE entries SET status = $1, status_version = $2 WHERE id = $3");
    if (!update.ok()) return update.error();
    size_t i = 0;
    for (uint64_t id : unique) {
      if (statuses[i] != static_cast<int64_t>(status)) {
        changed.push_back(leaves[i]);
        delta.statuses.emplace_back(id, status == EntryStatus::kActive);
        const std::array<Param, 3> p = {Param::Int(static_cast<int64_t>(status)),
                                        Param::Int(static_cast<int64_t>(version)),
                                        Param::Int(static_cast<int64_t>(id))};
        s = (*update)->Execute(p);
        if (!s.ok()) return s.error();
      }
      ++i;
    }
    Impl::ChangeSummary summary;
    summary.nothing_changed = changed.empty();
    summary.list = lists.size() == 1 ? *lists.begin() : "";
    summary.count = changed.size();
    summary.entries_digest = DigestOfLeaves(changed);
    summary.delta = std::move(delta);
    return summary;
  });
} catch (...) {
  return impl_->Abandon();
}

Status Store::Impl::FindDuplicates(const std::vector<std::string>& lists,
                                   std::vector<DuplicateGroup>* groups,
                                   std::vector<uint64_t>* remove) {
  for (const std::string& list : lists) {
    Result<int64_t> n =
        QueryInt("SELECT COUNT(*) FROM lists WHERE name = $1", {Param::Text(list)});
    if (!n.ok()) return n.error();
    if (*n == 0) return Error(ErrorCode::kNotFound, "no list \"" + list + "\"");
  }
  // Every entry of the lists, decrypted: its key (list, type, the bytes of
  // its value that count) and its kind (status; category and reference, as
  // 16 bytes of a digest). In a deque, which never moves them (no stray
  // copies of values), sorted through indexes.
  struct Seen {
    std::array<uint8_t, 32> value;
    std::array<uint8_t, 16> kind;
    uint64_t id;
    uint32_t list;
    SignalType type;
    uint8_t status;
  };
  std::deque<Seen> seen;
  struct Wiper {  // the decrypted values: also on an exception
    std::deque<Seen>& seen;
    ~Wiper() {
      for (Seen& e : seen) Wipe(e.value);
    }
  } wiper{seen};
  OpenedValue opened;
  std::vector<std::string> list_names;
  std::map<std::string, uint32_t, std::less<>> list_index;
  Sha256Hasher kind;
  Status failed;
  auto on_row = [&](const Row& row) {
    if (!failed.ok()) return;
    failed = opened.Open(cipher, row);
    if (!failed.ok()) return;
    auto it = list_index.find(row.Text(1));
    if (it == list_index.end()) {
      list_names.emplace_back(row.Text(1));
      it = list_index.emplace(list_names.back(), static_cast<uint32_t>(list_index.size())).first;
    }
    const Digest32 d = kind.UpdateField(row.Text(6)).UpdateField(row.Text(7)).Finish();
    Seen& e = seen.emplace_back();
    e.value = {};
    std::copy_n(opened.value.begin(), ValueSize(opened.type), e.value.begin());
    std::copy_n(d.begin(), e.kind.size(), e.kind.begin());
    e.id = static_cast<uint64_t>(row.Int(0));
    e.list = it->second;
    e.type = opened.type;
    e.status = static_cast<uint8_t>(row.Int(5) != 0);
  };
  constexpr std::string_view kColumns =
      "SELECT id, list, type, key_id, sealed, status, category, reference FROM entries";
  if (lists.empty()) {
    Status s = Exec(kColumns, {}, on_row);
    if (!s.ok()) return s;
  }
  for (const std::string& list : std::set<std::string>(lists.begin(), lists.end())) {
    Status s = Exec(std::string(kColumns) + " WHERE list = $1", {Param::Text(list)}, on_row);
    if (!s.ok()) return s;
  }
  if (!failed.ok()) return failed;
  auto key_order = [](const Seen& a, const Seen& b) {
    if (a.list != b.list) return a.list < b.list ? -1 : 1;
    if (a.type != b.type) return a.type < b.type ? -1 : 1;
    return std::memcmp(a.value.data(), b.value.data(), 32);
  };
  std::vector<uint32_t> order(seen.size());
  std::iota(order.begin(), order.end(), uint32_t{0});
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    const int c = key_order(seen[a], seen[b]);
    return c < 0 || (c == 0 && seen[a].id < seen[b].id);
  });
  // Each group's entries in id order: one of a kind not seen before in the
  // group is kept, one of a kind seen is removed.
  std::vector<const Seen*> kept;
  std::vector<uint64_t> described;  // the kept entries of groups that keep more than one
  for (size_t first = 0, end = 0; first < order.size(); first = end) {
    end = first + 1;
    while (end < order.size() && key_order(seen[order[first]], seen[order[end]]) == 0) ++end;
    if (end - first < 2) continue;
    DuplicateGroup g;
    g.list = list_names[seen[order[first]].list];
    g.type = seen[order[first]].type;
    kept.clear();
    for (size_t k = first; k < end; ++k) {
      const Seen& e = seen[order[k]];
      const bool repeat = std::any_of(kept.begin(), kept.end(), [&](const Seen* other) {
        return other->status == e.status && other->kind == e.kind;
      });
      if (repeat) {
        g.removed.push_back(e.id);
      } else {
        kept.push_back(&e);
        g.kept.push_back(e.id);
      }
    }
    remove->insert(remove->end(), g.removed.begin(), g.removed.end());
    if (g.kept.size() > 1) described.insert(described.end(), g.kept.begin(), g.kept.end());
    groups->push_back(std::move(g));
  }
  std::sort(remove->begin(), remove->end());
  // What the operator needs to decide on the groups that keep more than one.
  std::sort(described.begin(), described.end());
  std::vector<DuplicateGroup::Kept> details(described.size());
  Status s = ForRowsOfIds("SELECT id, status, category, reference FROM entries", described,
                          [&](const Row& row) {
                            const uint64_t id = static_cast<uint64_t>(row.Int(0));
                            const auto at =
                                std::lower_bound(described.begin(), described.end(), id);
                            if (at == described.end() || *at != id) return;
                            DuplicateGroup::Kept& k = details[at - described.begin()];
                            k.status = row.Int(1) != 0 ? EntryStatus::kDisabled
                                                       : EntryStatus::kActive;
                            k.category = std::string(row.Text(2));
                            k.reference = std::string(row.Text(3));
                          });
  if (!s.ok()) return s;
  for (DuplicateGroup& g : *groups) {
    if (g.kept.size() < 2) continue;
    std::optional<uint64_t> active, disabled;
    size_t actives = 0;
    for (uint64_t id : g.kept) {
      const DuplicateGroup::Kept& k =
          details[std::lower_bound(described.begin(), described.end(), id) - described.begin()];
      g.kept_entries.push_back(k);
      std::optional<uint64_t>& first_of = k.status == EntryStatus::kActive ? active : disabled;
      if (!first_of) first_of = id;
      actives += k.status == EntryStatus::kActive ? 1 : 0;
    }
    // Two kept of one status differ in category or reference.
    const bool meta_differs = actives > 1 || g.kept.size() - actives > 1;
    const std::string meta = "its entries differ in category or reference";
    g.left_because = active && disabled
                         ? "entry " + std::to_string(*disabled) + " is disabled, but entry " +
                               std::to_string(*active) + " with the same value is active" +
                               (meta_differs ? "; " + meta : "")
                         : meta;
  }
  std::sort(groups->begin(), groups->end(), [](const DuplicateGroup& a, const DuplicateGroup& b) {
    return a.list != b.list ? a.list < b.list : a.kept[0] < b.kept[0];
  });
  return {};
}

namespace {

std::function<void()>& AfterDedupeScanHook() {
  static std::function<void()> hook;
  return hook;
}

std::atomic<uint64_t>& DedupeScans() {
  static std::atomic<uint64_t> scans{0};
  return scans;
}

}  // namespace

void SetAfterDedupeScanHookForTesting(std::function<void()> hook) {
  AfterDedupeScanHook() = std::move(hook);
}

uint64_t DedupeScansForTesting() { return DedupeScans().load(); }

Result<Store::DedupeResult> Store::RemoveDuplicates(const std::vector<std::string>& lists,
                                                    bool dry_run, const ChangeContext& context,
                                                    uint64_t at_version) try {
  Impl& im = *impl_;
  DedupeResult result;
  std::vector<uint64_t> remove;
  auto moved_on = [&](uint64_t current) -> Status {
    if (at_version == 0 || current == at_version) return {};
    return Error(ErrorCode::kInvalidArgument,
                 "the store is at version " + std::to_string(current) + ", not " +
                     std::to_string(at_version) + ": it changed since; look again");
  };
  // A removal that could not be made is refused before the scan.
  if (!dry_run) {
    Status can = im.CheckCanChange(context);
    if (!can.ok()) return can.error();
  }
  auto scan = [&] {
    ++DedupeScans();
    result.groups.clear();
    remove.clear();
    return im.FindDuplicates(lists, &result.groups, &remove);
  };
  // The scan (reading and decrypting every entry of the lists) runs in a read
  // transaction, without the write lock: other writers go on meanwhile.
  uint64_t scanned = 0;
  {
    Status s = im.conn->BeginRead();
    if (!s.ok()) return s.error();
    Result<int64_t> v = im.QueryInt("SELECT version FROM state WHERE id = 1", {});
    s = v.ok() ? moved_on(static_cast<uint64_t>(*v)) : Status(v.error());
    if (s.ok()) s = scan();
    im.conn->Rollback();  // read-only
    if (!s.ok()) return s.error();
    scanned = static_cast<uint64_t>(*v);
  }
  if (dry_run) {
    result.version = scanned;
    result.removed = remove.size();
    return result;
  }
  if (AfterDedupeScanHook()) AfterDedupeScanHook()();
  // Every change makes a version, so a store still at the scanned version
  // holds what the scan read, and under the write lock only the removal runs.
  // A store that moved on is scanned again, under the lock.
  Result<uint64_t> version =
      im.Change(context, "dedupe", [&](uint64_t v) -> Result<Impl::ChangeSummary> {
        Status s = moved_on(v - 1);
        if (!s.ok()) return s.error();
        if (v - 1 != scanned) {
          s = scan();
          if (!s.ok()) return s.error();
          scanned = v - 1;
        }
        if (remove.empty()) {
          Impl::ChangeSummary summary;
          summary.nothing_changed = true;
          return summary;
        }
        return im.RemoveRows(remove, v);
      });
  if (!version.ok()) return version.error();
  result.version = *version;
  result.removed = remove.size();
  return result;
} catch (...) {
  return impl_->Abandon();
}

Result<uint64_t> Store::SetListEnabled(const std::string& list, bool enabled,
                                       const ChangeContext& context) try {
  Impl& im = *impl_;
  return im.Change(context, enabled ? "enable_list" : "disable_list",
                   [&](uint64_t version) -> Result<Impl::ChangeSummary> {
                     std::optional<int64_t> current;
                     Status s = im.Exec("SELECT enabled FROM lists WHERE name = $1",
                                        {Param::Text(list)},
                                        [&](const Row& row) { current = row.Int(0); });
                     if (!s.ok()) return s.error();
                     if (!current) return Error(ErrorCode::kNotFound, "no list named '" + list + "'");
                     Impl::ChangeSummary summary;
                     summary.list = list;
                     if (*current == (enabled ? 1 : 0)) {
                       summary.nothing_changed = true;
                       return summary;
                     }
                     s = im.Exec(
                         "UPDATE lists SET enabled = $1, changed_version = $2 WHERE name = $3",
                         {Param::Int(enabled ? 1 : 0), Param::Int(static_cast<int64_t>(version)),
                          Param::Text(list)});
                     if (!s.ok()) return s.error();
                     std::vector<Digest32> leaves;
                     s = im.Exec("SELECT leaf FROM entries WHERE list = $1 AND status = 0 ORDER BY id",
                                 {Param::Text(list)}, [&](const Row& row) {
                                   Digest32 leaf{};
                                   CopyBlob(row.Blob(0), &leaf);
                                   leaves.push_back(leaf);
                                 });
                     if (!s.ok()) return s.error();
                     summary.count = leaves.size();
                     summary.entries_digest = DigestOfLeaves(leaves);
                     summary.delta.list_enabled.emplace(list, enabled);
                     return summary;
                   });
} catch (...) {
  return impl_->Abandon();
}

Result<uint64_t> Store::DescribeList(const std::string& list, const std::string& description,
                                     const ChangeContext& context) try {
  Status valid = CheckText("list name", list, false);
  if (valid.ok()) valid = CheckText("description", description, true);
  if (!valid.ok()) return valid.error();
  Impl& im = *impl_;
  return im.Change(context, "describe_list", [&](uint64_t version) -> Result<Impl::ChangeSummary> {
    Status s = im.Exec(
        "INSERT INTO lists (name, enabled, description, created_version, changed_version) "
        "VALUES ($1, 1, $2, $3, $3) ON CONFLICT (name) DO UPDATE SET "
        "description = excluded.description, changed_version = excluded.changed_version",
        {Param::Text(list), Param::Text(description), Param::Int(static_cast<int64_t>(version))});
    if (!s.ok()) return s.error();
    Impl::ChangeSummary summary;
    summary.list = list;
    summary.count = 1;
    summary.entries_digest = DigestOfLeaves({});
    summary.delta.created_lists = {list};
    return summary;
  });
} catch (...) {
  return impl_->Abandon();
}

Result<uint64_t> Store::Rekey(const ChangeContext& context) try {
  Impl& im = *impl_;
  return im.Change(context, "rekey", [&](uint64_t) -> Result<Impl::ChangeSummary> {
    // Read everything first (one statement streams at a time), then update.
    std::vector<std::pair<StoredEntry, Digest32>> entries;
    Status failed;
    Status s = im.Exec("SELECT " + std::string(kEntryColumns) + " FROM entries ORDER BY id", {},
                       [&](const Row& row) {
                         if (!failed.ok()) return;
                         StoredEntry e;
                         Digest32 leaf{};
                         Status d = im.DecodeEntry(row, &e, &leaf);
                         if (!d.ok()) {
                           failed = d;
                           return;
                         }
                         entries.emplace_back(std::move(e), leaf);
                       });
    if (!s.ok()) return s.error();
    if (!failed.ok()) return failed.error();
    Result<std::unique_ptr<db::Statement>> update =
        im.conn->Prepare("UPDATE entries SET key_id = $1, sealed = $2 WHERE id = $3");
    if (!update.ok()) return update.error();
    const std::string& key_id = im.cipher.primary()->key_id();
    std::vector<uint8_t> sealed;
    for (auto& [e, leaf] : entries) {
      im.cipher.Seal(e.id, e.type, e.value, e.salt, &sealed);
      Wipe(e.value);
      const std::array<Param, 3> p = {Param::Text(key_id), BlobParam(sealed),
                                      Param::Int(static_cast<int64_t>(e.id))};
      s = (*update)->Execute(p);
      if (!s.ok()) return s.error();
    }
    // Every value changed (its ciphertext), so the record covers every leaf.
    std::vector<Digest32> leaves;
    leaves.reserve(entries.size());
    for (const auto& [e, leaf] : entries) leaves.push_back(leaf);
    Impl::ChangeSummary summary;
    summary.count = entries.size();
    summary.entries_digest = DigestOfLeaves(leaves);
    return summary;
  });
} catch (...) {
  return impl_->Abandon();
}

namespace {

// The lists' columns as ListOfRow reads them, each list's entries counted
// or not (0).
std::string ListSelect(bool count_entries) {
  return count_entries
             ? "SELECT l.name, l.enabled, l.description, "
               "(SELECT count(*) FROM entries e WHERE e.list = l.name AND e.status = 0), "
               "(SELECT count(*) FROM entries e WHERE e.list = l.name AND e.status = 1) "
               "FROM lists l"
             : "SELECT l.name, l.enabled, l.description, 0, 0 FROM lists l";
}

ListInfo ListOfRow(const Row& row) {
  ListInfo l;
  l.name = std::string(row.Text(0));
  l.enabled = row.Int(1) != 0;
  l.description = std::string(row.Text(2));
  l.active = static_cast<uint64_t>(row.Int(3));
  l.disabled = static_cast<uint64_t>(row.Int(4));
  return l;
}

}  // namespace

Result<std::vector<ListInfo>> Store::Lists(bool count_entries) try {
  std::vector<ListInfo> lists;
  Status s = impl_->Exec(ListSelect(count_entries) + " ORDER BY l.name", {},
                         [&](const Row& row) { lists.push_back(ListOfRow(row)); });
  if (!s.ok()) return s.error();
  return lists;
} catch (...) {
  return impl_->Abandon();
}

Result<ListInfo> Store::List(const std::string& name, bool count_entries) try {
  std::optional<ListInfo> found;
  Status s = impl_->Exec(ListSelect(count_entries) + " WHERE l.name = $1", {Param::Text(name)},
                         [&](const Row& row) { found = ListOfRow(row); });
  if (!s.ok()) return s.error();
  if (!found) return Error(ErrorCode::kNotFound, "no list \"" + name + "\"");
  return std::move(*found);
} catch (...) {
  return impl_->Abandon();
}

Result<std::vector<StoredEntry>> Store::Entries(const std::string& list, uint64_t after_id,
                                                size_t limit) try {
  Impl& im = *impl_;
  std::vector<StoredEntry> out;
  Status failed;
  auto on_row = [&](const Row& row) {
    if (!failed.ok()) return;
    StoredEntry e;
    Status d = im.DecodeEntry(row, &e, nullptr);
    if (!d.ok()) failed = d;
    out.push_back(std::move(e));
  };
  const std::string columns = "SELECT " + std::string(kEntryColumns) + " FROM entries ";
  Status s = list.empty()
                 ? im.Exec(columns + "WHERE id > $1 ORDER BY id LIMIT $2",
                           {Param::Int(SqlBound(after_id)), Param::Int(SqlBound(limit))},
                           on_row)
                 : im.Exec(columns + "WHERE list = $1 AND id > $2 ORDER BY id LIMIT $3",
                           {Param::Text(list), Param::Int(SqlBound(after_id)),
                            Param::Int(SqlBound(limit))},
                           on_row);
  if (!s.ok()) return s.error();
  if (!failed.ok()) return failed.error();
  return out;
} catch (...) {
  return impl_->Abandon();
}

Status Store::ForEachEntry(const std::function<void(StoredEntry&&)>& fn, uint64_t* version,
                           std::vector<ListInfo>* lists) try {
  Impl& im = *impl_;
  Status s = im.conn->BeginRead();
  if (!s.ok()) return s;
  Result<int64_t> v = im.QueryInt("SELECT version FROM state WHERE id = 1", {});
  if (!v.ok()) {
    im.conn->Rollback();
    return v.error();
  }
  if (lists != nullptr) {
    s = im.Exec("SELECT name, enabled, description FROM lists ORDER BY name", {},
                [&](const Row& row) {
                  ListInfo l;
                  l.name = std::string(row.Text(0));
                  l.enabled = row.Int(1) != 0;
                  l.description = std::string(row.Text(2));
                  lists->push_back(std::move(l));
                });
    if (!s.ok()) {
      im.conn->Rollback();
      return s;
    }
  }
  Status failed;
  StoredEntry e;
  s = im.Exec("SELECT " + std::string(kEntryColumns) + " FROM entries ORDER BY id", {},
              [&](const Row& row) {
                if (!failed.ok()) return;
                Status d = im.DecodeEntry(row, &e, nullptr);
                if (!d.ok()) {
                  failed = d;
                  return;
                }
                im.CallersCode([&] { fn(std::move(e)); });
              });
  im.conn->Rollback();  // read-only
  if (!s.ok()) return s;
  if (!failed.ok()) return failed;
  if (version != nullptr) *version = static_cast<uint64_t>(*v);
  return {};
} catch (...) {
  return impl_->Abandon();
}

namespace {

// Reads the index columns of the `expected` entries with first <= id < last
// (ids in order) and passes each to fn, decrypting with its own ciphers.
Status ReadIndexRange(db::Connection& conn, const std::vector<DataKey>& keys,
                      const std::array<uint8_t, 16>& store_id, int64_t first, int64_t last,
                      const std::function<void(const IndexRow&)>& fn, size_t expected,
                      std::vector<uint64_t>* disabled) {
  ValueCipher cipher(keys, store_id);
  size_t n = 0;
  Status failed;
  OpenedValue opened;  // wiped also when fn throws
  Digest32 leaf{};
  const std::array<Param, 2> range = {Param::Int(first), Param::Int(last)};
  Status s = conn.Execute(
      "SELECT id, list, type, key_id, sealed, category, reference, status, leaf FROM entries "
      "WHERE id >= $1 AND id < $2 ORDER BY id",
      range, [&](const Row& row) {
        if (!failed.ok()) return;
        if (n == expected) {
          failed = Error(ErrorCode::kInternal, "more entries than counted");
          return;
        }
        ++n;
        IndexRow e;
        e.id = static_cast<uint64_t>(row.Int(0));
        e.list = row.Text(1);
        const int64_t type = row.Int(2);
        if (type < 0 || type > 2) {
          failed = Error(ErrorCode::kCorruptData, "entry " + std::to_string(e.id) + ": bad type");
          return;
        }
        e.type = static_cast<SignalType>(type);
        e.category = row.Text(5);
        e.reference = row.Text(6);
        e.active = row.Int(7) == 0;
        if (!e.active) disabled->push_back(e.id);
        if (!CopyBlob(row.Blob(8), &leaf)) {
          failed = Error(ErrorCode::kCorruptData,
                         "entry " + std::to_string(e.id) + ": leaf hash has the wrong size");
          return;
        }
        failed =
            cipher.Open(e.id, e.type, row.Text(3), row.Blob(4), &opened.value, &opened.salt);
        if (!failed.ok()) return;
        e.value = &opened.value;
        e.salt = &opened.salt;
        e.leaf = &leaf;
        fn(e);
      });
  if (!s.ok()) return s;
  if (!failed.ok()) return failed;
  if (n != expected) return Error(ErrorCode::kInternal, "fewer entries than counted");
  return {};
}

}  // namespace

Status Store::ReadIndexEntries(std::vector<IndexEntry>* entries, std::vector<uint64_t>* disabled,
                               uint64_t* version, std::vector<ListInfo>* lists) try {
  const size_t offset = entries->size();
  std::array<size_t, 2> next{};
  return ReadIndexRows(
      [&](size_t part0, size_t part1) {
        entries->resize(offset + part0 + part1);
        next = {offset, offset + part0};
      },
      [&](int part, const IndexRow& row) {
        IndexEntry& e = (*entries)[next[static_cast<size_t>(part)]++];
        e.id = row.id;
        e.list = row.list;
        e.type = row.type;
        e.value = *row.value;
        e.category = row.category;
        e.reference = row.reference;
      },
      disabled, version, lists);
} catch (...) {
  return impl_->Abandon();
}

Status Store::ReadIndexRows(const std::function<void(size_t, size_t)>& start,
                            const std::function<void(int, const IndexRow&)>& on_row,
                            std::vector<uint64_t>* disabled, uint64_t* version,
                            std::vector<ListInfo>* lists) try {
  Impl& im = *impl_;
  // Large stores are read in two halves by two connections in parallel
  // (each half on its own core); both read transactions must see the same
  // version, or the read starts again.
  constexpr int64_t kParallelFrom = 200'000;
  std::unique_ptr<db::Connection> second;
  for (int attempt = 0;; ++attempt) {
    Status s = im.conn->BeginRead();
    if (!s.ok()) return s;
    auto end_reads = [&] {
      im.conn->Rollback();
      if (second) second->Rollback();
    };
    auto fail = [&](Status st) {
      end_reads();
      return st;
    };
    Result<int64_t> v = im.FollowedVersion();
    if (!v.ok()) return fail(v.error());
    Result<int64_t> count = im.QueryInt("SELECT count(*) FROM entries", {});
    if (!count.ok()) return fail(count.error());
    Result<int64_t> end = im.QueryInt("SELECT coalesce(max(id), 0) + 1 FROM entries", {});
    if (!end.ok()) return fail(end.error());
    int64_t mid = *end;
    const bool split = *count >= kParallelFrom && !im.url.empty();
    if (split && !second && attempt == 0) {
      // Without a second connection (PostgreSQL at max_connections, say)
      // the whole store is read on this one.
      Result<std::unique_ptr<db::Connection>> c = db::Connection::Open(im.url, false);
      if (c.ok()) second = std::move(*c);
    }
    if (split && second) {
      Result<int64_t> m = im.QueryInt("SELECT id FROM entries ORDER BY id LIMIT 1 OFFSET $1",
                                      {Param::Int(*count / 2)});
      if (!m.ok()) return fail(m.error());
      s = second->BeginRead();
      if (!s.ok()) return fail(s);
      int64_t v2 = -1;
      s = second->Execute("SELECT version FROM state WHERE id = 1", {},
                          [&](const Row& row) { v2 = row.Int(0); });
      if (!s.ok()) return fail(s);
      if (v2 != *v) {  // a change committed in between
        end_reads();
        if (attempt < 5) continue;
        return Error(ErrorCode::kUnavailable, "the store kept changing while it was read");
      }
      mid = *m;
    }
    s = im.Exec("SELECT name, enabled, description FROM lists ORDER BY name", {},
                [&](const Row& row) {
                  ListInfo l;
                  l.name = std::string(row.Text(0));
                  l.enabled = row.Int(1) != 0;
                  l.description = std::string(row.Text(2));
                  lists->push_back(std::move(l));
                });
    if (!s.ok()) return fail(s);
    const size_t total = static_cast<size_t>(*count);
    const size_t first_half = mid == *end ? total : total / 2;
    im.CallersCode([&] { start(first_half, total - first_half); });
    std::vector<uint64_t> disabled_second;
    Status second_status;
    std::exception_ptr second_failed;
    std::thread reader;
    if (first_half < total) {
      reader = std::thread([&] {
        try {
          second_status = ReadIndexRange(
              *second, im.keys.data_keys, im.store_id, mid, *end,
              [&](const IndexRow& r) { on_row(1, r); }, total - first_half, &disabled_second);
        } catch (...) {  // thrown on this thread once joined
          second_failed = std::current_exception();
        }
      });
    }
    try {
      s = ReadIndexRange(
          *im.conn, im.keys.data_keys, im.store_id, 0, mid,
          [&](const IndexRow& r) { on_row(0, r); }, first_half, disabled);
    } catch (...) {  // to Abandon, once the other part is read
      if (reader.joinable()) reader.join();
      throw;
    }
    if (reader.joinable()) reader.join();
    if (second_failed) std::rethrow_exception(second_failed);  // to Abandon
    end_reads();  // both read-only
    if (!s.ok()) return s;
    if (!second_status.ok()) return second_status;
    disabled->insert(disabled->end(), disabled_second.begin(), disabled_second.end());
    *version = static_cast<uint64_t>(*v);
    return {};
  }
} catch (...) {
  return impl_->Abandon();
}

Result<ChangeSet> Store::ChangesSince(uint64_t version) try {
  Impl& im = *impl_;
  ChangeSet out;
  out.from_version = version;
  Status s = im.conn->BeginRead();
  if (!s.ok()) return s.error();
  auto fail = [&](const Error& e) {
    im.conn->Rollback();
    return e;
  };
  Result<int64_t> v = im.FollowedVersion();
  if (!v.ok()) return fail(v.error());
  out.to_version = static_cast<uint64_t>(*v);
  Status failed;
  // Not ORDER BY id: SQLite (without statistics) would rather scan every
  // row in id order than sort the few the index on status_version finds
  // (0.2 s at 1M entries for a change of one). Sorted here.
  // The values are copied, not moved, from one place to the next: each
  // place is wiped (the sort's own temporaries aside).
  std::vector<std::pair<StoredEntry, Digest32>> upserts;
  auto wipe_upserts = [&] {
    for (auto& upsert : upserts) Wipe(upsert.first.value);
  };
  s = im.Exec("SELECT " + std::string(kEntryColumns) +
                  " FROM entries WHERE status_version > $1",
              {Param::Int(static_cast<int64_t>(version))}, [&](const Row& row) {
                if (!failed.ok()) return;
                StoredEntry e;
                Digest32 leaf{};
                Status d = im.DecodeEntry(row, &e, &leaf);
                if (!d.ok()) failed = d;
                upserts.emplace_back(std::move(e), leaf);
                Wipe(e.value);
              });
  if (!s.ok() || !failed.ok()) {
    wipe_upserts();
    return fail(!s.ok() ? s.error() : failed.error());
  }
  std::sort(upserts.begin(), upserts.end(),
            [](const auto& a, const auto& b) { return a.first.id < b.first.id; });
  out.upserts.reserve(upserts.size());
  out.upsert_leaves.reserve(upserts.size());
  for (auto& [entry, leaf] : upserts) {
    out.upserts.push_back(std::move(entry));
    out.upsert_leaves.push_back(leaf);
  }
  wipe_upserts();
  s = im.Exec("SELECT id FROM removals WHERE version > $1 ORDER BY id",
              {Param::Int(static_cast<int64_t>(version))},
              [&](const Row& row) { out.removed.push_back(static_cast<uint64_t>(row.Int(0))); });
  if (!s.ok()) return fail(s.error());
  s = im.Exec("SELECT name, enabled FROM lists ORDER BY name", {}, [&](const Row& row) {
    out.lists.emplace_back(std::string(row.Text(0)), row.Int(1) != 0);
  });
  if (!s.ok()) return fail(s.error());
  const std::initializer_list<Param> range = {Param::Int(static_cast<int64_t>(version)),
                                              Param::Int(*v)};
  s = im.ReadVersions(
      im.VersionSelect() + " FROM versions WHERE version > $1 AND version <= $2 ORDER BY version",
      range, &out.versions);
  if (!s.ok()) return fail(s.error());
  s = im.ReadAudit(
      "SELECT seq, time, actor, action, list, count, entries_digest, prev_digest, digest "
      "FROM audit WHERE seq > $1 AND seq <= $2 ORDER BY seq",
      range, &out.audit);
  if (!s.ok()) return fail(s.error());
  im.conn->Rollback();
  return out;
} catch (...) {
  return impl_->Abandon();
}

Result<StoreStats> Store::Stats() try {
  Impl& im = *impl_;
  StoreStats st;
  st.store_id = im.store_id;
  Status s = im.conn->BeginRead();
  if (!s.ok()) return s.error();
  auto fail = [&](const Error& e) {
    im.conn->Rollback();
    return e;
  };
  Result<int64_t> v = im.QueryInt("SELECT version FROM state WHERE id = 1", {});
  if (!v.ok()) return fail(v.error());
  st.version = static_cast<uint64_t>(*v);
  Result<int64_t> lists = im.QueryInt("SELECT count(*) FROM lists", {});
  if (!lists.ok()) return fail(lists.error());
  st.lists = static_cast<uint64_t>(*lists);
  s = im.Exec(
      "SELECT e.type, e.status, l.enabled, count(*) FROM entries e JOIN lists l "
      "ON e.list = l.name GROUP BY e.type, e.status, l.enabled",
      {}, [&](const Row& row) {
        const uint64_t n = static_cast<uint64_t>(row.Int(3));
        if (row.Int(1) == 0 && row.Int(2) == 1) {
          const int64_t type = row.Int(0);
          if (type >= 0 && type <= 2) st.active_by_type[static_cast<size_t>(type)] += n;
        } else {
          st.disabled += n;
        }
      });
  if (!s.ok()) return fail(s.error());
  s = im.Exec("SELECT key_id, count(*) FROM entries GROUP BY key_id ORDER BY key_id", {},
              [&](const Row& row) {
                st.values_by_key.emplace_back(std::string(row.Text(0)),
                                              static_cast<uint64_t>(row.Int(1)));
              });
  if (!s.ok()) return fail(s.error());
  im.conn->Rollback();
  return st;
} catch (...) {
  return impl_->Abandon();
}

std::optional<PublicKey> Store::stored_public_key() const { return impl_->public_key; }

Status Store::PrepareChange() try {
  Impl& im = *impl_;
  {
    std::lock_guard lock(im.kept_mutex_);
    if (im.kept_) return {};
  }
  Result<uint64_t> next = im.BeginChange(/*upgrading=*/false);
  if (!next.ok()) return next.error();
  // As a change that changed nothing: rolled back, its state kept.
  im.conn->Rollback();
  im.Keep(*next - 1);
  return {};
} catch (...) {
  return impl_->Abandon();
}

Store::ChangeStarts Store::change_starts() const { return impl_->starts; }

bool Store::SignedThis(const VersionRecord& record, const StateView& state,
                       StateDigester* entries_digest, MerkleFrontier* active) const {
  try {
    return impl_->SignedThis(record, state, entries_digest, active);
  } catch (const std::bad_alloc&) {
    return false;  // the caller hashes the state itself
  }
}

Result<VersionRecord> Store::Root(uint64_t version) try {
  Impl& im = *impl_;
  if (version == 0) {
    Result<uint64_t> current = Version();
    if (!current.ok()) return current.error();
    version = *current;
  }
  std::vector<VersionRecord> records;
  Status s = im.ReadVersions(
      im.VersionSelect() + " FROM versions WHERE version = $1",
      {Param::Int(static_cast<int64_t>(version))}, &records);
  if (!s.ok()) return s.error();
  if (records.empty()) return Error(ErrorCode::kNotFound, "no version " + std::to_string(version));
  return records.front();
} catch (...) {
  return impl_->Abandon();
}

Result<InclusionProof> Store::Prove(uint64_t entry_id) try {
  Impl& im = *impl_;
  Status s = im.conn->BeginRead();
  if (!s.ok()) return s.error();
  Result<int64_t> v = im.QueryInt("SELECT version FROM state WHERE id = 1", {});
  std::vector<uint64_t> ids;
  Result<std::vector<Digest32>> leaves =
      v.ok() ? im.ActiveLeaves(&ids) : Result<std::vector<Digest32>>(v.error());
  im.conn->Rollback();
  if (!leaves.ok()) return leaves.error();
  auto it = std::lower_bound(ids.begin(), ids.end(), entry_id);
  if (it == ids.end() || *it != entry_id) {
    return Error(ErrorCode::kNotFound,
                 "entry " + std::to_string(entry_id) +
                     " is not in the current tree (no such entry, disabled, or in a disabled "
                     "list)");
  }
  InclusionProof proof;
  proof.version = static_cast<uint64_t>(*v);
  proof.leaf_index = static_cast<uint64_t>(it - ids.begin());
  proof.tree_size = ids.size();
  proof.leaf_hash = (*leaves)[proof.leaf_index];
  proof.path = MerkleInclusionProof(*leaves, proof.leaf_index);
  proof.root = MerkleRoot(*leaves);
  return proof;
} catch (...) {
  return impl_->Abandon();
}

Result<std::vector<AuditRecord>> Store::Audit(uint64_t after_seq, size_t limit) try {
  std::vector<AuditRecord> records;
  Status s = impl_->ReadAudit(
      "SELECT seq, time, actor, action, list, count, entries_digest, prev_digest, digest "
      "FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
      {Param::Int(SqlBound(after_seq)), Param::Int(SqlBound(limit))},
      &records);
  if (!s.ok()) return s.error();
  return records;
} catch (...) {
  return impl_->Abandon();
}

Result<VerifyReport> Store::Verify(const std::optional<PublicKey>& trusted_key,
                                   bool check_values) try {
  Impl& im = *impl_;
  VerifyReport report;
  report.values_checked = check_values;
  Status s = im.conn->BeginRead();
  if (!s.ok()) return s.error();
  auto fail = [&](const Error& e) {
    im.conn->Rollback();
    return e;
  };
  auto problem = [&](std::string text) { report.problems.push_back(std::move(text)); };

  Result<int64_t> v = im.QueryInt("SELECT version FROM state WHERE id = 1", {});
  if (!v.ok()) return fail(v.error());
  report.version = static_cast<uint64_t>(*v);

  PublicKey key{};
  if (trusted_key) {
    key = *trusted_key;
  } else {
    bool have = false;
    s = im.Exec("SELECT value FROM meta WHERE key = 'public_key'", {},
                [&](const Row& row) { have = CopyBlob(row.Blob(0), &key); });
    if (!s.ok()) return fail(s.error());
    if (!have) problem("the store's public key is missing");
  }

  // The audit chain: sequence 1, 2, ..., each digest recomputes, each links
  // to the one before.
  std::vector<AuditRecord> audit;
  s = im.ReadAudit(
      "SELECT seq, time, actor, action, list, count, entries_digest, prev_digest, digest "
      "FROM audit ORDER BY seq",
      {}, &audit);
  if (!s.ok()) return fail(s.error());
  report.audit_records = audit.size();
  Digest32 prev{};
  for (size_t i = 0; i < audit.size(); ++i) {
    const AuditRecord& r = audit[i];
    const std::string name = "audit record " + std::to_string(r.seq);
    if (r.seq != i + 1) {
      problem(name + " is out of sequence (expected " + std::to_string(i + 1) +
              "): a record was removed or reordered");
    }
    if (AuditRecordDigest(r) != r.digest) problem(name + " was modified (its digest does not match)");
    if (r.prev_digest != prev) {
      problem(name + " does not link to the record before it: a record was removed, "
                     "inserted or reordered");
    }
    prev = r.digest;
  }
  if (audit.size() != report.version) {
    problem("the audit log holds " + std::to_string(audit.size()) + " records for version " +
            std::to_string(report.version));
  }

  // Every version: signed, and bound to its audit record.
  std::vector<VersionRecord> versions;
  s = im.ReadVersions(
      im.VersionSelect() + " FROM versions ORDER BY version",
      {}, &versions);
  if (!s.ok()) return fail(s.error());
  for (size_t i = 0; i < versions.size(); ++i) {
    const VersionRecord& ver = versions[i];
    const std::string name = "version " + std::to_string(ver.version);
    if (ver.version != i + 1) problem(name + " is out of sequence");
    if (!VerifySignature(key, VersionSigningMessage(im.store_id, ver), ver.signature)) {
      problem(name + ": the signature does not verify" +
              (trusted_key ? " against the given public key" : ""));
    }
    if (ver.version >= 1 && ver.version <= audit.size() &&
        audit[ver.version - 1].digest != ver.audit_digest) {
      problem(name + " is not bound to audit record " + std::to_string(ver.version));
    }
    // No store goes back from signing the whole state to signing the root
    // alone (an older Bantay writing to an upgraded store would).
    if (i > 0 && versions[i - 1].state_digest && !ver.state_digest) {
      problem(name + " is signed without a state digest, after a version signed with one");
    }
  }
  if (versions.size() != report.version) {
    problem("the store is at version " + std::to_string(report.version) + " but holds " +
            std::to_string(versions.size()) + " signed versions");
  }

  // Every value authenticates and gives its stored leaf; the active leaves
  // give the current version's signed root.
  std::map<std::string, bool> list_enabled;
  s = im.Exec("SELECT name, enabled FROM lists", {},
              [&](const Row& row) { list_enabled[std::string(row.Text(0))] = row.Int(1) != 0; });
  if (!s.ok()) return fail(s.error());
  std::vector<Digest32> active;
  StateDigester state;
  s = im.Exec("SELECT " + std::string(kEntryColumns) + " FROM entries ORDER BY id", {},
              [&](const Row& row) {
                // The tree is over the stored leaves: a value that does not
                // decrypt is reported for itself, not as a changed root too.
                Digest32 stored_leaf{};
                const bool leaf_read = CopyBlob(row.Blob(5), &stored_leaf);
                state.AddEntry(static_cast<uint64_t>(row.Int(0)), stored_leaf, row.Int(12) == 0,
                               row.Text(1));
                const auto list = list_enabled.find(std::string(row.Text(1)));
                if (leaf_read && row.Int(12) == 0 && list != list_enabled.end() &&
                    list->second) {
                  active.push_back(stored_leaf);
                }
                ++report.entries;
                if (!check_values) return;
                StoredEntry e;
                Digest32 leaf{};
                Status d = im.DecodeEntry(row, &e, &leaf);
                if (!d.ok()) {
                  if (report.problems.size() < 1000) problem(d.error().message());
                  return;
                }
                if (EntryLeafHash(e) != leaf) {
                  if (report.problems.size() < 1000) {
                    problem("entry " + std::to_string(e.id) +
                            ": its fields do not match its leaf hash (modified)");
                  }
                }
                Wipe(e.value);
              });
  if (!s.ok()) return fail(s.error());
  im.conn->Rollback();
  if (!versions.empty() && versions.back().version == report.version) {
    const VersionRecord& current = versions.back();
    report.state_signed = current.state_digest.has_value();
    if (MerkleRoot(active) != current.root || active.size() != current.active_count) {
      problem("the active entries do not give the signed root of version " +
              std::to_string(report.version) + " (entries changed outside the store)");
    }
    Result<Digest32> digest =
        state.Finish(std::vector<std::pair<std::string, bool>>(list_enabled.begin(),
                                                               list_enabled.end()));
    if (current.state_digest && (!digest.ok() || *digest != *current.state_digest)) {
      problem("the entries' and lists' states do not give the signed state of version " +
              std::to_string(report.version) +
              " (an entry's status, an entry or a list changed outside the store)");
    }
  }
  return report;
} catch (...) {
  return impl_->Abandon();
}

}  // namespace bantay::matcher
