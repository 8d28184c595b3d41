// HashIndex: the in-memory index of hash-list entries that the matcher
// queries, updated live without stopping readers.
//
// Readers take the current IndexSnapshot (an immutable, reference-counted
// object; taking it copies one pointer under a short lock) and query it
// without any lock; a query sees one consistent version. One writer at a time (calls are serialised
// internally) publishes the next snapshot after every change: adds,
// removes and list enabling/disabling are visible to the next query as soon
// as the call returns.
//
// Layout of a snapshot (tiers of immutable segments): a large base; a
// delta; the recent entries, extended by each Add (so it is kept small);
// the ids removed since the base was built (tombstones); and the set of
// disabled lists. Two background threads keep the tiers few and small: the
// folder folds the recent entries into the delta when they pass
// recent_limit; the merger freezes the delta when it passes merge_threshold
// and merges it into a new base, by appending it to the base's tables (one
// linear pass), or, when tombstones pass 5% of the base or MergeNow asks,
// by a full rebuild that drops removed entries. Folds go on meanwhile,
// extending the delta, which keeps the frozen entries until the new base
// is swapped in (then they leave it): a query searches at most three
// tiers.
//
// Queries come first: each tier beside the base costs every query some
// 6 us at radius 31 for its probes, whatever its size, and a little more
// as it grows (~14 us at 130k entries), so the tiers are kept few and
// small, and the background threads run at a lower priority (nice 10).
// Nor does a query pay for replaced snapshots: the reader that drops the
// last reference to one hands it to a third background thread, which
// destroys it (freeing a replaced 10M-entry base takes milliseconds).
// When they fall behind (the recent tier past recent_backlog, or
// merge_threshold entries added to the delta while a merge runs), Add
// returns only once they have caught up, its entries already visible: a
// stream of adds slows down rather than the queries. PDQ codes are
// searched exactly with IndexBinaryMIH; MD5 and SHA-256 values with hash
// tables.
#ifndef BANTAY_MATCHER_HASH_INDEX_H_
#define BANTAY_MATCHER_HASH_INDEX_H_

#include <array>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "bantay/models/hash256.h"
#include "bantay/models/pdq.h"
#include "bantay/models/status.h"

namespace bantay::matcher {

enum class SignalType { kPdq, kMd5, kSha256 };

// "pdq", "md5", "sha256"; and the reverse (kInvalidArgument otherwise).
std::string_view SignalTypeName(SignalType type);
Result<SignalType> ParseSignalType(std::string_view name);

struct IndexEntry {
  uint64_t id = 0;  // unique, never reused
  std::string list;
  SignalType type = SignalType::kPdq;
  // The PDQ code (32 bytes, as Hash256::bytes), the MD5 (first 16 bytes,
  // the rest zero) or the SHA-256.
  std::array<uint8_t, 32> value{};
  std::string category;
  std::string reference;
};

// One matching entry. The views point into the snapshot: valid while the
// snapshot lives.
struct Match {
  uint64_t id = 0;
  std::string_view list;
  std::string_view category;
  std::string_view reference;
  int distance = 0;  // 0 for exact hashes
  models::Dihedral variant = models::Dihedral::kOriginal;
};

class Segment;

class IndexSnapshot {
 public:
  // Built by HashIndex only.
  IndexSnapshot(uint64_t version,
                std::vector<std::shared_ptr<const Segment>> segments,
                std::shared_ptr<const std::unordered_set<uint64_t>> removed,
                std::array<size_t, 3> removed_by_type,
                std::shared_ptr<const std::unordered_set<std::string>> disabled,
                std::shared_ptr<const std::unordered_set<uint64_t>> disabled_ids,
                uint64_t store_version);
  ~IndexSnapshot();

  // Increases with every published change.
  uint64_t version() const { return version_; }
  // The store version this snapshot reflects (HashIndex::SetStoreVersion;
  // 0 for an index not built from a store).
  uint64_t store_version() const { return store_version_; }
  // Entries held (removed ones excluded; entries of disabled lists
  // included) by signal type.
  size_t size(SignalType type) const;
  // Whether an entry with this id is held (removed ones excluded; disabled
  // ones included).
  bool Contains(uint64_t id) const;
  bool EntryEnabled(uint64_t id) const { return !disabled_ids_->count(id); }
  // Bytes held by the segments (codes, tables, metadata).
  size_t MemoryBytes() const;
  // Tiers (non-empty segments) each query searches: the base, the delta and
  // the recent entries at most.
  size_t tiers() const { return segments_.size(); }

  // Every active PDQ entry of an enabled list within `radius` (0..256) of
  // the query, sorted by distance, then entry id.
  void MatchPdq(const models::Hash256& query, int radius,
                std::vector<Match>* out) const;
  // The same for the 8 dihedral variants of a query (in Dihedral order):
  // one match per entry, at its smallest distance over the variants (the
  // first such variant in Dihedral order).
  void MatchPdqDihedral(const std::array<models::Hash256, 8>& variants,
                        int radius, std::vector<Match>* out) const;
  // Active MD5 or SHA-256 entries of enabled lists equal to `digest`
  // (16 or 32 bytes), sorted by entry id.
  void MatchExact(SignalType type, const uint8_t* digest,
                  std::vector<Match>* out) const;

  bool ListEnabled(const std::string& list) const;

  // The ids, ascending, of every entry held of `list` with this type and
  // value (32 bytes; an MD5 digest's 16, zero-padded), of any status and
  // whether the list is enabled or not (removed ones excluded): of an
  // index that follows a store, what the store held at store_version()
  // (Store::HeldEntries).
  void HeldIds(std::string_view list, SignalType type, const uint8_t* value,
               std::vector<uint64_t>* ids) const;

 private:
  bool Visible(uint64_t id, std::string_view list) const;
  void CollectPdq(const models::Hash256& query, int radius,
                  models::Dihedral variant, std::vector<Match>* out) const;

  uint64_t version_;
  std::vector<std::shared_ptr<const Segment>> segments_;  // non-empty ones
  std::shared_ptr<const std::unordered_set<uint64_t>> removed_;
  std::array<size_t, 3> removed_by_type_;
  std::shared_ptr<const std::unordered_set<std::string>> disabled_;
  std::shared_ptr<const std::unordered_set<uint64_t>> disabled_ids_;
  uint64_t store_version_;
};

struct HashIndexOptions {
  // Recent entries at which the folder folds them into the delta.
  size_t recent_limit = 8'192;
  // Recent entries at which Add waits for the folder before returning.
  size_t recent_backlog = 16'384;
  // Delta size (entries) at which the merger merges it into the base (Add
  // waits when the delta is this full again while a merge runs).
  size_t merge_threshold = 65'536;
  // Substrings of the multi-index hash (0: chosen from the size).
  int num_substrings = 0;
};

// Collects the entries of a first load (a replica reading its store) in
// the layout of the index's base segment as they arrive, without an
// IndexEntry and its strings per entry. The entries come in two parts of
// announced sizes, part 0 with the smaller ids, each in increasing id
// order. Thread safety: each part is filled by one thread at a time; the
// two parts may be filled concurrently.
class IndexLoader {
 public:
  IndexLoader(size_t part0_entries, size_t part1_entries);
  ~IndexLoader();
  IndexLoader(const IndexLoader&) = delete;
  IndexLoader& operator=(const IndexLoader&) = delete;

  // Adds an entry to part 0 or 1 (value as IndexEntry::value). Entries
  // beyond the part's announced size, and ids out of order, are reported
  // by HashIndex::AddLoaded.
  void Add(int part, uint64_t id, std::string_view list, SignalType type,
           const std::array<uint8_t, 32>& value, std::string_view category,
           std::string_view reference);

 private:
  friend class HashIndex;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class HashIndex {
 public:
  explicit HashIndex(HashIndexOptions options = {});
  ~HashIndex();  // waits for a running merge
  HashIndex(const HashIndex&) = delete;
  HashIndex& operator=(const HashIndex&) = delete;

  // The current snapshot; thread-safe. Readers hold a lock only while
  // copying the pointer (never while searching), and the writer only while
  // swapping it. (GCC 12's std::atomic<std::shared_ptr> would do the same
  // with an internal lock bit, which ThreadSanitizer reports as a race.)
  std::shared_ptr<const IndexSnapshot> Snapshot() const {
    std::lock_guard lock(current_mu_);
    return current_;
  }

  // Adds entries as one change, visible to queries before the call returns
  // (into an empty index, at least recent_limit of them become the base
  // directly: the load of a starting replica). May wait for the background
  // work before returning (see the top).
  // kInvalidArgument (and nothing added) when
  // an id is active, repeated in the batch, or removed since the last merge
  // (ids are not to be reused).
  Status Add(std::vector<IndexEntry> entries);
  // Makes the loaded entries the base of this empty index, as one change
  // (the loader is left empty). kInvalidArgument (and nothing added) when
  // the index is not empty (entries or removals), when a part received more
  // entries than announced, or when ids do not increase through part 0
  // then part 1.
  Status AddLoaded(IndexLoader& loader);
  // Removes entries by id as one change. kNotFound (and nothing removed)
  // when an id is not active.
  Status Remove(const std::vector<uint64_t>& ids);
  // Entries of a disabled list stay in the index but never match.
  void SetListEnabled(const std::string& list, bool enabled);
  // Disabled entries stay in the index but never match (ids not held are
  // remembered too: they apply when the entry is added).
  void SetEntriesEnabled(const std::vector<uint64_t>& ids, bool enabled);
  // Labels the next snapshots with the store version they reflect.
  void SetStoreVersion(uint64_t version);

  // Blocks until the background threads have nothing left to do (replaced
  // snapshots no longer held are destroyed, too).
  void WaitForMerge();
  // Replaced snapshots destroyed by the release thread so far.
  uint64_t released_snapshots() const;
  // Asks for everything added so far to be merged into one base now, with
  // removed entries dropped (then WaitForMerge).
  void MergeNow();

 private:
  // Replaced snapshots whose last reference is gone, to be destroyed by
  // releaser_ (or by their last holder once the index is gone).
  struct Graveyard;
  void Publish();  // requires mu_
  // Stops and joins the threads started.
  void StopThreads();
  void Releaser();
  void Folder();
  void Merger();
  void FoldRecent(std::unique_lock<std::mutex>& lock);
  void MergeBase(std::unique_lock<std::mutex>& lock, bool full);
  bool FoldWork() const;   // requires mu_
  bool FreezeDue() const;  // requires mu_
  size_t MergeThreshold() const;
  std::optional<SignalType> TypeOf(uint64_t id) const;  // requires mu_

  const HashIndexOptions options_;
  const std::shared_ptr<Graveyard> graveyard_;  // shared with the snapshots' deleters
  mutable std::mutex current_mu_;
  std::shared_ptr<const IndexSnapshot> current_;  // guarded by current_mu_

  std::mutex mu_;  // serialises writers; protects everything below
  uint64_t version_ = 0;
  std::shared_ptr<const Segment> base_;
  std::shared_ptr<const Segment> delta_;
  // Entries of delta_ being merged into the base (frozen; 0 when no merge
  // runs): delta_ keeps them until the merged base is published.
  size_t frozen_entries_ = 0;
  std::vector<IndexEntry> recent_entries_;
  std::unordered_set<uint64_t> recent_ids_;
  std::shared_ptr<const Segment> recent_;
  std::unordered_set<uint64_t> removed_;
  std::array<size_t, 3> removed_by_type_{};
  std::unordered_set<std::string> disabled_;
  std::shared_ptr<const std::unordered_set<uint64_t>> removed_shared_;
  std::shared_ptr<const std::unordered_set<std::string>> disabled_shared_;
  std::unordered_set<uint64_t> disabled_ids_;
  std::shared_ptr<const std::unordered_set<uint64_t>> disabled_ids_shared_;
  uint64_t store_version_ = 0;
  uint64_t max_id_ = 0;  // the largest id ever added
  bool force_merge_ = false;
  uint64_t folds_ = 0;              // folds done
  uint64_t force_after_folds_ = 0;  // a forced merge freezes once folds_ reaches this
  bool folding_ = false;
  size_t fold_taken_ = 0;  // recent entries the running fold took (the first ones)
  bool merging_ = false;
  bool trimming_ = false;  // the merger is taking the frozen entries out of delta_
  bool stop_ = false;
  std::condition_variable fold_work_;
  std::condition_variable merge_work_;
  std::condition_variable idle_;
  std::condition_variable folded_;
  std::thread releaser_;
  std::thread folder_;  // started last, joined first
  std::thread merger_;
};

}  // namespace bantay::matcher

#endif  // BANTAY_MATCHER_HASH_INDEX_H_
