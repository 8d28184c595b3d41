// Building the in-memory HashIndex from a Store (or a snapshot) and keeping
// it current with the store's change feed.
//
// Thread safety: as HashIndex (one writer at a time; readers unaffected).
#ifndef BANTAY_MATCHER_STORE_INDEX_H_
#define BANTAY_MATCHER_STORE_INDEX_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bantay/matcher/crypto.h"
#include "bantay/matcher/hash_index.h"
#include "bantay/matcher/merkle.h"
#include "bantay/matcher/store.h"
#include "bantay/models/status.h"

namespace bantay::matcher {

IndexEntry ToIndexEntry(const StoredEntry& entry);

// What a follower of a store has verified of it, so that it can verify the
// next changes before it applies them: a version signed by a trusted key,
// that version's audit record digest, and every entry's stored leaf hash,
// list and status, from which the Merkle root of the entries as they will be
// after a change set is recomputed. A change set is accepted only when its
// versions are signed by the key and follow on, its audit records chain on
// from the last one and are bound to their versions, each upsert's fields
// give its stored leaf hash, and the entries with the changes applied give
// the new version's signed root and active count. An index that starts from
// a verified load and applies only verified change sets matches exactly the
// entries (values, lists, categories, references) the key signed as active,
// whatever was written into the database behind the store's back. The
// states of disabled entries, of entries in disabled lists and of the lists
// are checked too, against the version's signed state digest
// (StateDigester), so nothing the next change could make active is the
// database's word; versions signed before schema 2 have no state digest,
// and for them only the active entries are checked.
//
// It costs 44 bytes an entry. A change set is applied in place (Advance):
// what it adds is appended and the entries whose state it changes are
// changed where they are (an O(entries) merge only for removals). A
// change set that only adds entries (ids above every one held, no list
// changing state) hashes only what it adds: the state keeps the state
// digest's hash over its entries and the right edge of the active leaves'
// Merkle tree (MerkleFrontier). Any other change set hashes the whole
// state again, O(entries) (as such a change costs the writing store),
// unless the Store that made it is in this process and signed it over
// the same state (Advance's `writer`): then its hashes are taken, after an
// O(entries) comparison.
class VerifiedStoreState {
 public:
  VerifiedStoreState(const std::array<uint8_t, 16>& store_id, const PublicKey& key);

  uint64_t version() const { return version_; }
  // The signed record of version(), verified.
  const VersionRecord& record() const { return record_; }
  size_t size() const { return ids_.size(); }
  // Whether the last Advance (or Next) made this state hashing only the
  // entries its change set added (the hashes of the state before went on),
  // not every entry.
  bool appended() const { return appended_; }
  // Whether the last Advance (or Next) made this state with the hashes of
  // the writer that signed it (Store::SignedThis).
  bool from_writer() const { return from_writer_; }

  // The state after `changes` (Store::ChangesSince(version())), verified as
  // above; kCorruptData naming the first thing that does not verify,
  // kInvalidArgument for a change set from another version. This state is
  // not changed: the caller adopts the result once the changes are applied.
  // With `writer`, the Store that made the changes in this process: a
  // change set that does not only add entries is verified against the
  // hashes `writer` signed, when the state after it is the one `writer`
  // signed them over (Store::SignedThis), rather than by hashing the whole
  // state; otherwise as without.
  Result<VerifiedStoreState> Next(const ChangeSet& changes, const Store* writer = nullptr) const;

  // What Advance changed, for Restore (made only by Advance).
  class Undo {
   public:
    Undo(Undo&&) = default;
    Undo& operator=(Undo&&) = default;

   private:
    friend class VerifiedStoreState;
    Undo() = default;
    uint64_t version = 0;
    VersionRecord record;
    StateDigester entries_digest;
    MerkleFrontier active;
    size_t hashed = 0;
    bool appended = false;
    bool from_writer = false;
    std::vector<std::string> list_names;
    std::vector<uint8_t> list_state;
    size_t size = 0;  // entries held before
    // Entries held before whose status changed: index, tag before.
    std::vector<std::pair<size_t, uint32_t>> changed;
    // After a change that removed entries or added one among those held
    // (rebuilt): every entry before.
    bool rebuilt = false;
    std::vector<uint64_t> ids;
    std::vector<Digest32> leaves;
    std::vector<uint32_t> tags_before_rebuild;
  };
  // Moves this state on by `changes`, verified as Next verifies them, in
  // place: the entries a change set adds are appended and those whose
  // status it changes are changed where they are, with no copy of every
  // entry held (at 1M entries, 44 MB copied and page-faulted in on each
  // change). The hashing is as in Next: a change set that does not only
  // add entries still hashes the whole state, or takes `writer`'s hashes.
  // On an error (or an exception) this state is as it was. The Undo
  // returned puts it back as it was (Restore), should the changes not be
  // applied after all.
  Result<Undo> Advance(const ChangeSet& changes, const Store* writer = nullptr);
  // The state before the last Advance, which returned `undo`.
  void Restore(Undo undo);

  // The lists of the verified version, by name, with their signed state
  // and how many of their entries are active and disabled (no
  // descriptions: they are not signed). One pass over the entries held.
  std::vector<ListInfo> Lists() const;

 private:
  friend Result<uint64_t> LoadIndexFromStore(Store& store, HashIndex* index,
                                             VerifiedStoreState* verified);
  // Checks `record` (a version's signed record) against the key and the
  // entries held, and makes it the state's version.
  Status Adopt(const VersionRecord& record);
  // Hashes the entries not hashed yet (hashed_ on) into entries_digest_
  // and active_ (the leaf hashes of the active entries: status active, list
  // enabled, in id order); kCorruptData for an entry of a list the store
  // does not hold.
  Status HashEntries();
  // The state digest of the entries and lists held (StateDigester).
  Result<Digest32> StateDigest() const;
  // The checks of Next that need no entry held: `changes` follow on from
  // this version, their versions and audit records are signed and
  // chained, their upserts' fields give their leaves, in id order, and no
  // entry removed is back. The removed ids, sorted.
  Result<std::vector<uint64_t>> CheckChanges(const ChangeSet& changes) const;
  uint32_t ListIndex(std::string_view name);

  std::array<uint8_t, 16> store_id_{};
  PublicKey key_{};
  uint64_t version_ = 0;
  VersionRecord record_;  // version_'s, verified
  // Entries [0, hashed_) hashed: the state digest's part over them and the
  // Merkle frontier of the active ones among them.
  StateDigester entries_digest_;
  MerkleFrontier active_;
  size_t hashed_ = 0;
  bool appended_ = false;
  bool from_writer_ = false;
  std::vector<std::string> list_names_;
  // By list index: 1 enabled, 0 disabled, 2 not in the store (any more).
  std::vector<uint8_t> list_state_;
  // By entry, in id order.
  std::vector<uint64_t> ids_;
  std::vector<Digest32> leaves_;
  std::vector<uint32_t> tags_;  // list index << 1 | disabled
};

// Loads every entry of the store (decrypting it) into an empty index, with
// its disabled entries and lists, and labels it with the store version read
// in the same transaction, which it returns. With `verified`, also checks
// every entry's fields against its stored leaf hash and the active entries
// against the signed root of the version read (kCorruptData when they
// differ), and sets *verified from them.
Result<uint64_t> LoadIndexFromStore(Store& store, HashIndex* index,
                                    VerifiedStoreState* verified = nullptr);

// Loads entries and lists already read (a snapshot) into an empty index.
Status LoadIndexFromEntries(std::vector<StoredEntry> entries, const std::vector<ListInfo>& lists,
                            uint64_t store_version, HashIndex* index);

// Applies a change set (Store::ChangesSince(the index's store version)):
// removals and disablings first, then additions and enablings, so that no
// intermediate snapshot matches something neither version matches; then
// labels the index with changes.to_version. kInvalidArgument (nothing
// applied) when changes.from_version is not the index's store version.
Status ApplyChangeSet(const ChangeSet& changes, HashIndex* index);

}  // namespace bantay::matcher

#endif  // BANTAY_MATCHER_STORE_INDEX_H_
