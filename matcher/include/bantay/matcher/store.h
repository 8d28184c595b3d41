// Store: the authoritative, durable home of the hash lists, from which the
// in-memory HashIndex is built (see store_index.h).
//
// One interface, two backends of the same behaviour (one implementation over
// the SQL layer): SQLite ("sqlite:PATH", the embedded default, one file in
// WAL mode) and PostgreSQL ("postgresql://...", for a fleet of replicas).
//
// Versions. Every committed change batch (an import, an add, a removal, a
// status change, a rekey) is one transaction that bumps the index version by
// one, appends one audit record (sequence = version) and signs the version:
// a store is always at one whole version, never between two, even when the
// writing process is killed. ChangesSince(v) is the change feed a running
// matcher applies.
//
// Security.
//  - Every hash value is encrypted at rest with AES-256-GCM under a data key
//    (fresh nonce per value; the entry id and type are authenticated with it
//    so values cannot be swapped between rows); the key id is stored with
//    each value, so keys rotate with Rekey. The stored leaf hash (below) is
//    salted with a random value kept inside the ciphertext, so it reveals
//    nothing about the hash either.
//  - Transparency: each version has an RFC 6962 Merkle root over the active
//    entries (status active, list enabled) in id order, signed with the
//    operator's Ed25519 key together with the version, the active count, the
//    digest of the version's audit record and the digest of the whole state
//    (every entry's id, leaf hash and status, every list and whether it is
//    enabled: StateDigester), so that nothing a later change could make
//    active is the database's word. Prove() gives an inclusion proof for
//    one entry.
//  - Audit log: append-only and hash-chained (each record's digest covers
//    the previous record's digest), so Verify detects an edited, removed or
//    reordered record; the signed versions anchor the chain.
//  - Snapshots: Export writes one signed and encrypted file (snapshot.h).
//
// Errors: every call answers with a Result or Status. When memory runs out
// in the middle of a call, the call is rolled back and answers kUnavailable
// (the store is as it was; the next call works). An exception thrown by a
// caller's callback (ForEachEntry, ReadIndexRows's `start`) ends the read
// and is passed on.
//
// Thread safety: a Store object is used by one thread at a time (but for
// SignedThis, which any thread may call meanwhile); several processes (or
// Store objects) may use the same database: writers are serialised by the
// database.
#ifndef BANTAY_MATCHER_STORE_H_
#define BANTAY_MATCHER_STORE_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bantay/matcher/crypto.h"
#include "bantay/matcher/hash_index.h"
#include "bantay/matcher/merkle.h"
#include "bantay/models/status.h"

namespace bantay::matcher {

namespace db {
class Connection;
}

// The keys a store is opened with. Reading needs the data key(s) of the
// stored values; every write also needs the signing key (each version is
// signed). Rekey needs the old and the new data key.
struct StoreKeys {
  // The first key encrypts new values; all of them decrypt.
  std::vector<DataKey> data_keys;
  std::optional<SigningKey> signing_key;
};

enum class EntryStatus { kActive = 0, kDisabled = 1 };
std::string_view EntryStatusName(EntryStatus status);  // "active", "disabled"

struct ListInfo {
  std::string name;
  bool enabled = true;
  std::string description;
  uint64_t active = 0;    // entries with status active
  uint64_t disabled = 0;  // entries with status disabled
};

// What the in-memory index needs of an entry (Store::ReadIndexRows).
struct IndexRow {
  uint64_t id = 0;
  std::string_view list;
  SignalType type = SignalType::kPdq;
  const std::array<uint8_t, 32>* value = nullptr;  // as IndexEntry::value
  std::string_view category;
  std::string_view reference;
  bool active = true;                              // status active
  const Digest32* leaf = nullptr;                  // the stored leaf hash
  const std::array<uint8_t, 16>* salt = nullptr;   // from the decrypted value
};

struct StoredEntry {
  uint64_t id = 0;
  std::string list;
  SignalType type = SignalType::kPdq;
  std::array<uint8_t, 32> value{};  // as IndexEntry::value
  std::string category;
  std::string reference;
  std::string source;
  std::string added_by;
  int64_t added_at = 0;  // Unix seconds
  EntryStatus status = EntryStatus::kActive;
  uint64_t added_version = 0;
  // Random per entry, inside the encrypted value; part of the Merkle leaf.
  std::array<uint8_t, 16> salt{};
};

// The Merkle leaf of an entry: SHA-256 leaf hash (RFC 6962: 0x00 prefix)
// of id, type, value, salt, list, category and reference, framed.
Digest32 EntryLeafHash(const StoredEntry& entry);
Digest32 EntryLeafHash(uint64_t id, SignalType type, const std::array<uint8_t, 32>& value,
                       const std::array<uint8_t, 16>& salt, std::string_view list,
                       std::string_view category, std::string_view reference);

// An entry to add. added_by/added_at/id/version are assigned by the store.
struct NewEntry {
  std::string list;
  SignalType type = SignalType::kPdq;
  std::array<uint8_t, 32> value{};
  std::string category;
  std::string reference;
};

// Who makes a change and where it comes from (an import file, "cli", an API
// key id). Both go into the audit log; `source` also into each new entry.
struct ChangeContext {
  std::string actor;
  std::string source;
};

// A signed index version.
struct VersionRecord {
  uint64_t version = 0;
  int64_t created_at = 0;
  Digest32 root{};         // Merkle root of the active entries
  uint64_t active_count = 0;  // leaves of that tree
  Digest32 audit_digest{};  // digest of the version's audit record
  // The digest of the whole state at this version (StateDigester). Absent
  // only in versions signed before schema 2 (by an older Bantay): those
  // signed the root alone, and their message has another format.
  std::optional<Digest32> state_digest;
  PublicKey public_key{};
  Signature signature{};

  bool operator==(const VersionRecord&) const = default;
};
// The exact bytes that are signed: "BANTAY-VERSION-2" with the state digest,
// "BANTAY-VERSION-1" without (so a record cannot be passed off as the other
// format: the signature covers the domain).
std::vector<uint8_t> VersionSigningMessage(const std::array<uint8_t, 16>& store_id,
                                           const VersionRecord& record);

// The digest of a store's whole state, signed in each version record: every
// entry (any status, any list) as its id, its stored leaf hash (which binds
// its value, list, category and reference), whether it is active and the
// list its row names (which decides whether it is matched, and which a
// leaf check alone would catch only with the data key), in ascending id
// order; then every list as its name and whether it is enabled, in
// ascending byte order of name (Finish sorts them). SHA-256 over
// "BANTAY-STATE-1" (framed), then per entry 'E' || id (u64 BE) || leaf ||
// status (0 active, 1 disabled) || list (framed), then per list 'L' || name
// (framed) || enabled (1 or 0); framed = u32 BE length, bytes. An entry's
// status and list, a list's state, an entry put back or removed: each
// changes the digest.
class StateDigester {
 public:
  StateDigester();
  // Entries in ascending id order; a call out of order makes Finish return
  // kInvalidArgument.
  // A copy goes on from where this one is: the entries of a state hashed
  // once are finished with the lists in a copy, and appended to later
  // (Finish uses the digester up: what it hashed is gone).
  void AddEntry(uint64_t id, const Digest32& leaf, bool active, std::string_view list);
  Result<Digest32> Finish(std::vector<std::pair<std::string, bool>> lists);

 private:
  void Flush();
  Sha256Hasher hasher_;
  std::vector<uint8_t> buffer_;
  uint64_t last_id_ = 0;
  bool any_ = false;
  bool ordered_ = true;
};

struct AuditRecord {
  uint64_t seq = 0;  // = the version it created
  int64_t time = 0;
  std::string actor;
  std::string action;  // init, import, add, remove, disable, enable,
                       // disable_list, enable_list, describe_list, rekey
  std::string list;    // empty when the change spans lists
  uint64_t count = 0;  // entries (or lists) changed
  Digest32 entries_digest{};  // SHA-256 over the leaf hashes of the entries changed
  Digest32 prev_digest{};     // zero for the first record
  Digest32 digest{};
};
Digest32 AuditRecordDigest(const AuditRecord& record);

struct InclusionProof {
  uint64_t version = 0;
  uint64_t leaf_index = 0;
  uint64_t tree_size = 0;
  Digest32 leaf_hash{};
  std::vector<Digest32> path;
  Digest32 root{};
};

// Everything that changed after a version, as a net difference.
struct ChangeSet {
  uint64_t from_version = 0;
  uint64_t to_version = 0;
  // Entries added after from_version that still exist (with their current
  // status), and older entries whose status changed after it.
  std::vector<StoredEntry> upserts;
  // Entries removed after from_version (some may never have been seen).
  std::vector<uint64_t> removed;
  // Every list and whether it is enabled now.
  std::vector<std::pair<std::string, bool>> lists;
  // What a follower verifies the changes with (VerifiedStoreState), read in
  // the same transaction: the stored leaf hash of each upsert (same order),
  // and the signed versions and audit records from_version + 1 .. to_version.
  std::vector<Digest32> upsert_leaves;
  std::vector<VersionRecord> versions;
  std::vector<AuditRecord> audit;
};

struct VerifyReport {
  uint64_t version = 0;
  uint64_t audit_records = 0;
  uint64_t entries = 0;  // read (and, with values_checked, decrypted and checked)
  bool values_checked = true;
  // Whether the current version signs the whole state (false for a store
  // of schema 1 not yet upgraded: Store::Upgrade).
  bool state_signed = false;
  std::vector<std::string> problems;  // empty when everything verifies
  bool ok() const { return problems.empty(); }
};

struct StoreStats {
  uint64_t version = 0;
  std::array<uint8_t, 16> store_id{};
  uint64_t lists = 0;
  std::array<uint64_t, 3> active_by_type{};  // pdq, md5, sha256 (active, enabled lists)
  uint64_t disabled = 0;  // entries disabled, or in a disabled list
  std::vector<std::pair<std::string, uint64_t>> values_by_key;  // key id -> values
};

class Store {
 public:
  // Creates the schema in an empty database and commits version 1 (action
  // "init", an empty tree). kInvalidArgument if the database already holds
  // a store, or without a data key and a signing key.
  static Result<std::unique_ptr<Store>> Init(const std::string& url, StoreKeys keys,
                                             const ChangeContext& context);
  // Opens an existing store. kNotFound when there is none (SQLite file
  // missing, or no schema), kInvalidArgument for an unknown schema version.
  static Result<std::unique_ptr<Store>> Open(const std::string& url, StoreKeys keys);

  ~Store();

  const std::array<uint8_t, 16>& store_id() const { return store_id_; }
  // The public key the store holds as its signer's (read when opened; the
  // store's own word, not a trusted key).
  std::optional<PublicKey> stored_public_key() const;
  // The current version (read from the database).
  Result<uint64_t> Version();

  // --- Changes: each is one version, all or nothing. ---

  // Adds entries (lists that do not exist are created, enabled). Returns
  // the new version; the entries get consecutive ids in order. `action` is
  // "add" or "import".
  Result<uint64_t> AddEntries(const std::vector<NewEntry>& entries,
                              const ChangeContext& context,
                              std::string_view action = "add");
  // What AddNewEntries did.
  struct AddResult {
    uint64_t version = 0;  // the new version; the current one when nothing was added
    size_t added = 0;
    // The entries not added, in the order of `entries`: (the index in
    // `entries`, the id of the entry it repeats) — an entry that its list
    // held already with the same type and value (the smallest such id, of
    // any status), or one that an earlier entry of `entries` in the same
    // list has the same type and value as (that entry's id, added or held).
    std::vector<std::pair<size_t, uint64_t>> present;
  };
  // What a caller knows its store held at a version (an index loaded from
  // it and kept up with its changes, as the server's): `ids` gives the ids
  // of every entry of the entry's list with the entry's type and value at
  // `version` (any status; ascending), for a list `covers` is true of.
  // With it, AddNewEntries reads the rows of those ids (64 a statement) and
  // the rows changed after `version` rather than every entry of the list
  // (but a list more than half of whose rows are named, by more than
  // 4,096 ids, is read whole: cheaper then, and an entry the caller left
  // out is found there). (Rows are checked:
  // an id that names no such row any more is passed over; but an entry the
  // caller does not give is taken as absent.) It is used only when the
  // store's record of `version` has `audit_digest` (VersionRecord's): not
  // after the store's history was rewritten from an earlier version (a
  // backup restored, then written). An exception of a callback is passed
  // on, as ForEachEntry's.
  struct HeldEntries {
    uint64_t version = 0;
    Digest32 audit_digest{};
    std::function<bool(std::string_view list)> covers;
    std::function<void(const NewEntry& entry, std::vector<uint64_t>* ids)> ids;
  };
  // AddEntries, without adding what a list holds already: an entry whose
  // list holds one of the same type and value (active or disabled), or
  // that repeats an earlier one of `entries`, is left out (its category and
  // reference are not compared), so that importing a list again adds only
  // what is new. Decided in the change's own transaction: the entries of
  // the lists named are read and decrypted (about 1.2 s a million entries),
  // or, with `held` at a version up to the current one, only the rows it
  // names and those changed after its version. When nothing is left to
  // add, nothing is written: no new version.
  Result<AddResult> AddNewEntries(const std::vector<NewEntry>& entries,
                                  const ChangeContext& context,
                                  std::string_view action = "import",
                                  const HeldEntries* held = nullptr);
  // kNotFound (nothing changed) when an id does not exist.
  Result<uint64_t> RemoveEntries(const std::vector<uint64_t>& ids,
                                 const ChangeContext& context);
  Result<uint64_t> SetEntriesStatus(const std::vector<uint64_t>& ids, EntryStatus status,
                                    const ChangeContext& context);
  // Entries of one list with the same type and value (as AddNewEntries
  // compares them): what importing a list again added before AddNewEntries.
  struct DuplicateGroup {
    std::string list;
    SignalType type = SignalType::kPdq;
    // The entries kept, ascending: the earliest of each kind (status,
    // category and reference) among the group's entries — one when all are
    // alike.
    std::vector<uint64_t> kept;
    // The later entries of a kept entry's kind, ascending: removed (in a dry
    // run, to be removed). Removing them changes neither what matches nor
    // what an answer names.
    std::vector<uint64_t> removed;
    // When more than one is kept: each kept entry's status, category and
    // reference (in `kept`'s order), and why the operator should look
    // ("entry 7 is disabled, but entry 3 with the same value is active",
    // and/or "its entries differ in category or reference"); which to keep is
    // theirs to decide (remove or disable by id).
    struct Kept {
      EntryStatus status = EntryStatus::kActive;
      std::string category;
      std::string reference;
    };
    std::vector<Kept> kept_entries;
    std::string left_because;
  };
  struct DedupeResult {
    uint64_t version = 0;  // the new version; the current one when nothing was removed
    uint64_t removed = 0;  // in a dry run: to be removed
    std::vector<DuplicateGroup> groups;  // by list, then by first id
  };
  // Removes the later copies in every group of duplicates of `lists`
  // (every list when empty; kNotFound for a list that does not exist): one
  // version, audited as "dedupe" (the removed ids are in the change feed),
  // none when nothing is removed. Copies of other types or lists with the
  // same bytes are not duplicates. With `dry_run` nothing is written (no
  // signing key needed). With `at_version` (not 0), kInvalidArgument
  // unless the store is still at that version (the dry run's), so that
  // what is removed is what the dry run showed. The entries of the lists
  // are read and decrypted (about 1.5 s a million) in a read transaction,
  // without the write lock; under it, the copies are removed if the store
  // is still at the version read, and the lists are read again (other
  // writers waiting) if it is not.
  Result<DedupeResult> RemoveDuplicates(const std::vector<std::string>& lists, bool dry_run,
                                        const ChangeContext& context, uint64_t at_version = 0);
  // kNotFound for an unknown list.
  // Sets a list's description, creating the list (enabled, empty) when it
  // does not exist. Audited as "describe_list".
  Result<uint64_t> DescribeList(const std::string& list, const std::string& description,
                                const ChangeContext& context);
  Result<uint64_t> SetListEnabled(const std::string& list, bool enabled,
                                  const ChangeContext& context);
  // Re-encrypts every value under the first data key (the others must
  // decrypt the current values). A new version (same root).
  Result<uint64_t> Rekey(const ChangeContext& context);
  // A store made by a Bantay before schema 2 is read as it is, but changed
  // only after this: it upgrades the tables (the first change needs a
  // database role that may alter them) and signs the whole state as it
  // finds it into a new version (action "upgrade"), after checking the
  // current version's signature, audit record and root. Check the store
  // first (Verify with the trusted key): what the old versions did not sign
  // — disabled entries, lists — is taken as found, once. Every other change
  // to such a store is refused (kInvalidArgument) until then. Returns the
  // current version when the store is upgraded already.
  Result<uint64_t> Upgrade(const ChangeContext& context);

  // Reads every row and checks it against what the current version signed,
  // as a change begins (counted in change_starts() as a checked start),
  // and keeps that state (48 bytes an entry) for this Store's next change,
  // which starts from it if no other connection has written meanwhile
  // (SQLite: the database's data version; PostgreSQL: the transaction ids
  // the rows carry and the tables' catalog rows). Nothing is written; the
  // write lock is held meanwhile (about a second at 1M entries). A server
  // calls it once its index is loaded, so that its first change costs what
  // its later ones do. Nothing is done when this Store keeps a state
  // already (its next change decides whether it can use it). The errors
  // of a change's beginning (kCorruptData for a store changed outside
  // Bantay, kPermissionDenied without the signing key, kUnavailable when
  // the database is busy, ...).
  Status PrepareChange();

  // How this Store's changes began (those that got that far): by reading
  // every row and checking it against what the current version signed, or
  // from the state this Store's own last change left, when no other
  // connection had written to the store since and the database's schema was
  // Bantay's own. A change that starts from kept state reads no row it does
  // not change (on PostgreSQL it reads the transaction id of every row,
  // without sending them: a tenth of the time): on a large store that is
  // most of its time.
  // `appended` counts the changes signed that hashed only the entries they
  // added (ids above every one before, no list changing state), going on
  // from the hashes of the state before — a change that adds nothing to the
  // state (a description) among them; every other change hashes every
  // entry for its root and state digest.
  struct ChangeStarts {
    uint64_t checked = 0;
    uint64_t kept = 0;
    uint64_t appended = 0;
  };
  ChangeStarts change_starts() const;

  // A follower's state after a change set (VerifiedStoreState's layout):
  // entries in id order, each with its list's index and its status; the
  // lists by index, 1 enabled, 0 disabled, 2 not held.
  struct StateView {
    std::span<const uint64_t> ids;
    std::span<const Digest32> leaves;
    std::span<const uint32_t> tags;  // list index << 1 | disabled
    std::span<const std::string> list_names;
    std::span<const uint8_t> list_state;
  };
  // Whether this Store's kept state — left by its last change, or read by
  // PrepareChange or a change that changed nothing, at a version that may
  // be another process's — is that of `record` (the same record, as
  // stored) over exactly `state` — every entry's id, leaf, status and list,
  // every list and its state, and no entry of a list not held — and then
  // the hashes it signed of the entries (the state digest's part over them
  // and the active leaves' Merkle frontier), which are then `state`'s: a
  // follower in the same process verifies a change against them rather
  // than hashing its whole state again (equal states have equal hashes).
  // (The follower still checks them against the signed record.) False when
  // this Store keeps no state of that version: another change since (under
  // way or made), a failed change, a later version it did not make,
  // PostgreSQL. O(entries) comparisons, under a lock that this Store's next
  // change waits for; any thread may call it while this Store makes a
  // change (not while it is destroyed or moved).
  bool SignedThis(const VersionRecord& record, const StateView& state,
                  StateDigester* entries_digest, MerkleFrontier* active) const;

  // --- Reading ---

  // Every list, by name. With `count_entries`, the entries of each are
  // counted (a read of every entry's row: about a second at 1M entries);
  // without, active and disabled are 0.
  Result<std::vector<ListInfo>> Lists(bool count_entries = true);
  // One list (kNotFound when there is none), its entries counted with
  // `count_entries` (a read of each of its entries' rows).
  Result<ListInfo> List(const std::string& name, bool count_entries = true);
  // Entries in id order with id > after_id (all lists when `list` is
  // empty), at most `limit`, decrypted.
  Result<std::vector<StoredEntry>> Entries(const std::string& list, uint64_t after_id,
                                           size_t limit);
  // Every entry (any status, any list), in id order, decrypted, with the
  // version read in the same transaction, and every list. Used to build the
  // in-memory index and to export.
  Status ForEachEntry(const std::function<void(StoredEntry&&)>& fn, uint64_t* version,
                      std::vector<ListInfo>* lists);
  // What the in-memory index needs of every entry (any status), in id
  // order, decrypted, with the version and lists read in the same
  // transaction: faster than ForEachEntry (fewer columns, no per-row
  // allocation beyond the entry's own strings).
  Status ReadIndexEntries(std::vector<IndexEntry>* entries, std::vector<uint64_t>* disabled,
                          uint64_t* version, std::vector<ListInfo>* lists);
  // ReadIndexEntries without an IndexEntry per row: start(part0, part1)
  // is called once with the number of entries in each of two parts (part 0
  // holds the smaller ids; part 1 may be empty), then row(part, entry) for
  // every entry, each part in id order on its own thread (so calls for the
  // two parts run concurrently). The row's views and value are valid
  // during the call only. Disabled ids go to `disabled` in id order.
  Status ReadIndexRows(const std::function<void(size_t, size_t)>& start,
                       const std::function<void(int, const IndexRow&)>& row,
                       std::vector<uint64_t>* disabled, uint64_t* version,
                       std::vector<ListInfo>* lists);
  Result<ChangeSet> ChangesSince(uint64_t version);
  Result<StoreStats> Stats();

  // The signed record of a version (0: the current one).
  Result<VersionRecord> Root(uint64_t version = 0);
  // Inclusion proof of an active entry in the current version's tree.
  Result<InclusionProof> Prove(uint64_t entry_id);
  Result<std::vector<AuditRecord>> Audit(uint64_t after_seq, size_t limit);

  // Checks everything: the audit chain (sequence, digests, links), every
  // version's signature (against `trusted_key` when given, else the store's
  // own public key) and its link to its audit record, every value's
  // authentication tag and leaf hash, and the current root and state digest
  // against the entries' stored leaves and states. Without `check_values`
  // (an auditor who does not hold the data key) the values are neither
  // decrypted nor checked against their leaves: what was signed is still
  // checked, but not that each row's fields are the ones its leaf hashes.
  // Problems are listed, not returned as an error; errors are for a store
  // that cannot be read at all.
  Result<VerifyReport> Verify(const std::optional<PublicKey>& trusted_key,
                              bool check_values = true);

 private:
  Store(std::unique_ptr<db::Connection> conn, StoreKeys keys);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::array<uint8_t, 16> store_id_{};
};

namespace internal {

// PostgreSQL, for a Store's kept state: the rows of its tables carry the
// 32-bit ids (xmin) of the transactions that wrote them, `xids`, read
// under a snapshot whose oldest running transaction is `snapshot_xmin`,
// whose next transaction is `snapshot_xmax` (64-bit ids), and whose running
// ones are `running` (and their subtransactions). Returns the first 64-bit
// transaction id from which a
// transaction other than those and the later ones of the Store itself could
// write rows that carry one of `xids` (ids wrap around after 2^32), or none
// when one of `xids` may stand for a transaction that may still commit.
std::optional<uint64_t> PgTrustedUntil(uint64_t snapshot_xmin, uint64_t snapshot_xmax,
                                       const std::set<uint64_t>& running,
                                       const std::set<uint32_t>& xids);
// The 64-bit id a 32-bit transaction id `xid` of a row stands for, seen
// from a snapshot whose next transaction is `snapshot_xmax`: the last one at
// or below it that ends in `xid` (the transaction that wrote the row, or one
// 2^32 or more later than it); none for ids that are no transaction's
// (below 3) or cannot be one yet.
std::optional<uint64_t> PgXid64(uint32_t xid, uint64_t snapshot_xmax);

}  // namespace internal

}  // namespace bantay::matcher

#endif  // BANTAY_MATCHER_STORE_H_
