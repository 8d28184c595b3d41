#include "bantay/matcher/hash_index.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <chrono>
#include <functional>
#include <latch>

#include "bantay/models/text.h"
#include "segment.h"

namespace bantay::matcher {
namespace {

using models::Dihedral;
using models::Hash256;

bool ByDistanceThenId(const Match& a, const Match& b) {
  return a.distance != b.distance ? a.distance < b.distance : a.id < b.id;
}

constexpr std::chrono::seconds kReleaseAfter{10};
constexpr std::chrono::seconds kReleaseBetweenMerges{3};

// Folds, merges and the release of old snapshots run at a lower priority
// than the threads that query and the writer: they only make later
// snapshots cheaper to search (or free memory), and when they fall behind,
// Add waits for them instead (HashIndexOptions::recent_backlog), so a
// stream of adds slows down rather than the queries. (Linux: the nice
// value is per thread; raising it needs no privilege; failure leaves the
// default.) Then the thread takes `name`, so that a thread so named runs
// behind, and per-thread profiles and /proc tell them apart.
void YieldToQueries(const char* name) {
  constexpr int kNice = 10;
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), kNice);
  pthread_setname_np(pthread_self(), name);
}

}  // namespace

std::string_view SignalTypeName(SignalType type) {
  switch (type) {
    case SignalType::kPdq:
      return "pdq";
    case SignalType::kMd5:
      return "md5";
    case SignalType::kSha256:
      return "sha256";
  }
  return "pdq";
}

Result<SignalType> ParseSignalType(std::string_view name) {
  if (name == "pdq") return SignalType::kPdq;
  if (name == "md5") return SignalType::kMd5;
  if (name == "sha256") return SignalType::kSha256;
  return Error(ErrorCode::kInvalidArgument,
               "unknown signal type '" + models::PrintableText(name) + "' (pdq, md5 or sha256)");
}

// --- IndexSnapshot ------------------------------------------------------------

IndexSnapshot::IndexSnapshot(
    uint64_t version, std::vector<std::shared_ptr<const Segment>> segments,
    std::shared_ptr<const std::unordered_set<uint64_t>> removed,
    std::array<size_t, 3> removed_by_type,
    std::shared_ptr<const std::unordered_set<std::string>> disabled,
    std::shared_ptr<const std::unordered_set<uint64_t>> disabled_ids, uint64_t store_version)
    : version_(version),
      segments_(std::move(segments)),
      removed_(std::move(removed)),
      removed_by_type_(removed_by_type),
      disabled_(std::move(disabled)),
      disabled_ids_(std::move(disabled_ids)),
      store_version_(store_version) {}

IndexSnapshot::~IndexSnapshot() = default;

size_t IndexSnapshot::size(SignalType type) const {
  size_t n = 0;
  for (const auto& seg : segments_) n += seg->size(type);
  return n - removed_by_type_[static_cast<int>(type)];
}

bool IndexSnapshot::Contains(uint64_t id) const {
  if (removed_->count(id)) return false;
  for (const auto& seg : segments_) {
    if (seg->Contains(id)) return true;
  }
  return false;
}

size_t IndexSnapshot::MemoryBytes() const {
  size_t bytes = 0;
  for (const auto& seg : segments_) bytes += seg->MemoryBytes();
  return bytes;
}

bool IndexSnapshot::ListEnabled(const std::string& list) const {
  return !disabled_->count(list);
}

bool IndexSnapshot::Visible(uint64_t id, std::string_view list) const {
  if (!removed_->empty() && removed_->count(id)) return false;
  if (!disabled_ids_->empty() && disabled_ids_->count(id)) return false;
  return disabled_->empty() || !disabled_->count(std::string(list));
}

void IndexSnapshot::CollectPdq(const Hash256& query, int radius, Dihedral variant,
                               std::vector<Match>* out) const {
  thread_local std::vector<std::pair<int64_t, int>> found;
  for (const auto& seg : segments_) {
    seg->SearchPdq(query.data(), radius, &found);
    for (const auto& [row, distance] : found) {
      const Segment::Row r = seg->PdqRow(row);
      if (!Visible(r.id, r.list)) continue;
      out->push_back({r.id, r.list, r.category, r.reference, distance, variant});
    }
  }
}

void IndexSnapshot::MatchPdq(const Hash256& query, int radius,
                             std::vector<Match>* out) const {
  out->clear();
  CollectPdq(query, radius, Dihedral::kOriginal, out);
  std::sort(out->begin(), out->end(), ByDistanceThenId);
}

void IndexSnapshot::MatchPdqDihedral(const std::array<Hash256, 8>& variants,
                                     int radius, std::vector<Match>* out) const {
  out->clear();
  for (int v = 0; v < models::kDihedralCount; ++v) {
    CollectPdq(variants[v], radius, static_cast<Dihedral>(v), out);
  }
  // One match per entry: the smallest distance, then the first variant.
  std::sort(out->begin(), out->end(), [](const Match& a, const Match& b) {
    return std::tie(a.id, a.distance, a.variant) < std::tie(b.id, b.distance, b.variant);
  });
  out->erase(std::unique(out->begin(), out->end(),
                         [](const Match& a, const Match& b) { return a.id == b.id; }),
             out->end());
  std::sort(out->begin(), out->end(), ByDistanceThenId);
}

void IndexSnapshot::MatchExact(SignalType type, const uint8_t* digest,
                               std::vector<Match>* out) const {
  out->clear();
  for (const auto& seg : segments_) {
    const auto [begin, end] = seg->FindExact(type, digest);
    for (uint32_t i = begin; i < end; ++i) {
      const Segment::Row r = seg->ExactRow(i);
      if (!Visible(r.id, r.list)) continue;
      out->push_back({r.id, r.list, r.category, r.reference, 0, Dihedral::kOriginal});
    }
  }
  std::sort(out->begin(), out->end(), ByDistanceThenId);
}

void IndexSnapshot::HeldIds(std::string_view list, SignalType type, const uint8_t* value,
                            std::vector<uint64_t>* ids) const {
  ids->clear();
  auto add = [&](const Segment::Row& r) {
    if (r.list != list || (!removed_->empty() && removed_->count(r.id))) return;
    ids->push_back(r.id);
  };
  thread_local std::vector<std::pair<int64_t, int>> found;
  for (const auto& seg : segments_) {
    if (type == SignalType::kPdq) {
      seg->SearchPdq(value, 0, &found);
      for (const auto& [row, distance] : found) add(seg->PdqRow(row));
    } else {
      const auto [begin, end] = seg->FindExact(type, value);
      for (uint32_t i = begin; i < end; ++i) add(seg->ExactRow(i));
    }
  }
  std::sort(ids->begin(), ids->end());
  ids->erase(std::unique(ids->begin(), ids->end()), ids->end());
}

// --- IndexLoader ------------------------------------------------------------------

struct IndexLoader::Impl {
  struct Part {
    size_t begin = 0;     // this part's first PDQ row in columns
    size_t capacity = 0;  // entries announced
    size_t count = 0;     // entries added
    size_t pdq = 0;       // PDQ rows added
    uint64_t first_id = 0;
    uint64_t last_id = 0;
    bool increasing = true;
    std::vector<std::pair<std::string, std::string>> labels;  // (list, category)
    std::unordered_map<std::string, uint32_t> label_ids;      // when labels are many
    uint32_t last_label = UINT32_MAX;
    std::string references;
    std::vector<IndexEntry> exact;

    uint32_t Label(std::string_view list, std::string_view category);
  };
  Segment::Columns columns;
  std::array<Part, 2> parts;
};

uint32_t IndexLoader::Impl::Part::Label(std::string_view list, std::string_view category) {
  // (list, category) pairs are few: a short scan finds them, a map once
  // there are many.
  auto same = [&](uint32_t i) {
    return labels[i].first == list && labels[i].second == category;
  };
  if (last_label != UINT32_MAX && same(last_label)) return last_label;
  constexpr size_t kScanUpTo = 16;
  if (labels.size() <= kScanUpTo) {
    for (uint32_t i = 0; i < labels.size(); ++i) {
      if (same(i)) return last_label = i;
    }
  } else {
    std::string key;
    key.reserve(list.size() + category.size() + 1);
    key.append(list).push_back('\0');
    key.append(category);
    if (auto it = label_ids.find(key); it != label_ids.end()) return last_label = it->second;
  }
  const auto label = static_cast<uint32_t>(labels.size());
  labels.emplace_back(std::string(list), std::string(category));
  if (labels.size() > kScanUpTo) {
    if (label_ids.empty()) {
      for (uint32_t i = 0; i < labels.size(); ++i) {
        label_ids.try_emplace(labels[i].first + '\0' + labels[i].second, i);
      }
    } else {
      label_ids.try_emplace(labels.back().first + '\0' + labels.back().second, label);
    }
  }
  return last_label = label;
}

IndexLoader::IndexLoader(size_t part0_entries, size_t part1_entries)
    : impl_(std::make_unique<Impl>()) {
  const size_t total = part0_entries + part1_entries;
  impl_->parts[0].capacity = part0_entries;
  impl_->parts[1].begin = part0_entries;
  impl_->parts[1].capacity = part1_entries;
  impl_->columns.codes.resize(4 * total);
  impl_->columns.pdq_meta.resize(total);
}

IndexLoader::~IndexLoader() = default;

void IndexLoader::Add(int part, uint64_t id, std::string_view list, SignalType type,
                      const std::array<uint8_t, 32>& value, std::string_view category,
                      std::string_view reference) {
  Impl::Part& p = impl_->parts[static_cast<size_t>(part)];
  if (p.count++ >= p.capacity) return;  // reported by AddLoaded
  if (p.count == 1) {
    p.first_id = id;
  } else if (id <= p.last_id) {
    p.increasing = false;
  }
  p.last_id = id;
  const uint32_t label = p.Label(list, category);
  if (type == SignalType::kPdq) {
    const size_t row = p.begin + p.pdq++;
    std::memcpy(&impl_->columns.codes[4 * row], value.data(), 32);
    impl_->columns.pdq_meta[row] = {id, label, static_cast<uint32_t>(reference.size()),
                                    p.references.size()};
    p.references.append(reference);
    return;
  }
  IndexEntry& e = p.exact.emplace_back();
  e.id = id;
  e.list = list;
  e.type = type;
  e.value = value;
  if (type == SignalType::kMd5) std::fill(e.value.begin() + 16, e.value.end(), 0);
  e.category = category;
  e.reference = reference;
}

// --- HashIndex --------------------------------------------------------------------

struct HashIndex::Graveyard {
  std::mutex mu;
  std::condition_variable changed;
  std::vector<const IndexSnapshot*> dead;  // guarded by mu
  bool destroying = false;                 // guarded by mu
  bool stopped = false;                    // guarded by mu: the index is gone
  uint64_t released = 0;                   // guarded by mu

  // The deleter of published snapshots: a reader dropping the last
  // reference only queues the snapshot.
  struct Deleter {
    std::shared_ptr<Graveyard> graveyard;
    void operator()(const IndexSnapshot* snapshot) const {
      {
        std::lock_guard lock(graveyard->mu);
        if (!graveyard->stopped) {
          graveyard->dead.push_back(snapshot);
          graveyard->changed.notify_all();
          return;
        }
      }
      delete snapshot;
    }
  };
};

HashIndex::HashIndex(HashIndexOptions options)
    : options_(options), graveyard_(std::make_shared<Graveyard>()) {
  {
    std::lock_guard lock(mu_);
    base_ = Segment::Build({}, nullptr, {}, options_.num_substrings);
    delta_ = recent_ = base_;
    removed_shared_ = std::make_shared<const std::unordered_set<uint64_t>>();
    disabled_shared_ = std::make_shared<const std::unordered_set<std::string>>();
    disabled_ids_shared_ = std::make_shared<const std::unordered_set<uint64_t>>();
    Publish();
  }
  // Each thread lowers its priority and names itself before the index is
  // used.
  constexpr int kThreads = 3;
  std::latch started(kThreads);
  int running = 0;
  auto start = [&](std::thread* thread, const char* name, void (HashIndex::*body)()) {
    *thread = std::thread([this, &started, name, body] {
      YieldToQueries(name);
      started.count_down();
      (this->*body)();
    });
    ++running;
  };
  try {
    start(&releaser_, "bantay-release", &HashIndex::Releaser);
    start(&folder_, "bantay-fold", &HashIndex::Folder);
    start(&merger_, "bantay-merge", &HashIndex::Merger);
  } catch (...) {
    // No thread to be had: those started are stopped (once past the latch,
    // which they use) before the error goes on.
    started.count_down(kThreads - running);
    started.wait();
    StopThreads();
    throw;
  }
  started.wait();
}

HashIndex::~HashIndex() { StopThreads(); }

void HashIndex::StopThreads() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  fold_work_.notify_all();
  merge_work_.notify_all();
  if (merger_.joinable()) merger_.join();
  if (folder_.joinable()) folder_.join();
  {
    std::lock_guard lock(graveyard_->mu);
    graveyard_->stopped = true;
  }
  graveyard_->changed.notify_all();
  // Destroys what is queued; later releases happen in place.
  if (releaser_.joinable()) releaser_.join();
}

void HashIndex::Releaser() {
  std::unique_lock lock(graveyard_->mu);
  while (true) {
    graveyard_->changed.wait(lock,
                             [&] { return graveyard_->stopped || !graveyard_->dead.empty(); });
    if (graveyard_->dead.empty()) return;  // stopped
    std::vector<const IndexSnapshot*> dead;
    dead.swap(graveyard_->dead);
    graveyard_->destroying = true;
    lock.unlock();
    for (const IndexSnapshot* snapshot : dead) delete snapshot;
    lock.lock();
    graveyard_->destroying = false;
    graveyard_->released += dead.size();
    graveyard_->changed.notify_all();
  }
}

uint64_t HashIndex::released_snapshots() const {
  std::lock_guard lock(graveyard_->mu);
  return graveyard_->released;
}

void HashIndex::Publish() {
  std::vector<std::shared_ptr<const Segment>> segments;
  for (const auto& seg : {base_, delta_, recent_}) {
    if (seg->total() > 0) segments.push_back(seg);
  }
  std::shared_ptr<const IndexSnapshot> next(
      new IndexSnapshot(++version_, std::move(segments), removed_shared_, removed_by_type_,
                        disabled_shared_, disabled_ids_shared_, store_version_),
      Graveyard::Deleter{graveyard_});
  std::shared_ptr<const IndexSnapshot> previous;  // released outside the lock
  std::lock_guard lock(current_mu_);
  previous = std::move(current_);
  current_ = std::move(next);
}

std::optional<SignalType> HashIndex::TypeOf(uint64_t id) const {
  for (const auto& seg : {base_, delta_, recent_}) {
    if (std::optional<SignalType> type = seg->TypeOf(id)) return type;
  }
  return std::nullopt;
}

Status HashIndex::Add(std::vector<IndexEntry> entries) {
  std::unique_lock lock(mu_);
  // Batches in increasing id order (a store's load, an import) have no
  // repeated id; others are checked with a set (10M set nodes would cost
  // seconds at a replica's start).
  const bool increasing =
      std::adjacent_find(entries.begin(), entries.end(), [](const IndexEntry& a,
                                                            const IndexEntry& b) {
        return a.id >= b.id;
      }) == entries.end();
  // Ids above every id ever added (new entries of a store, in order)
  // cannot be held, removed or repeated: only other batches are checked
  // entry by entry (a lookup in a 10M base is a few cache misses).
  const bool fresh = increasing && (entries.empty() || entries.front().id > max_id_);
  std::unordered_set<uint64_t> batch;
  for (const IndexEntry& e : entries) {
    if (fresh) break;
    if (!increasing && !batch.insert(e.id).second) {
      return Error(ErrorCode::kInvalidArgument,
                   "entry id " + std::to_string(e.id) + " is repeated in the batch");
    }
    if (!removed_.empty() && removed_.count(e.id)) {
      return Error(ErrorCode::kInvalidArgument,
                   "entry id " + std::to_string(e.id) + " was removed; ids are not reused");
    }
    if (recent_ids_.count(e.id) || base_->Contains(e.id) ||
        delta_->Contains(e.id)) {
      return Error(ErrorCode::kInvalidArgument,
                   "entry id " + std::to_string(e.id) + " is already in the index");
    }
  }
  for (IndexEntry& e : entries) {
    if (e.type == SignalType::kMd5) std::fill(e.value.begin() + 16, e.value.end(), 0);
    max_id_ = std::max(max_id_, e.id);
  }
  if (base_->total() + delta_->total() + recent_->total() == 0 &&
      removed_.empty() &&
      entries.size() >= options_.recent_limit) {
    // The first load of an empty index (a replica starting) becomes the
    // base at once rather than passing through the tiers.
    base_ = Segment::Build({}, nullptr, entries, options_.num_substrings);
    Publish();
    return {};
  }
  for (const IndexEntry& e : entries) recent_ids_.insert(e.id);
  // Appended to the recent tier's tables: while the background thread is
  // busy merging, the recent tier grows, and a rebuild per batch would not.
  recent_ = Segment::Build({recent_.get()}, nullptr, entries, 0, /*append_to_first=*/true);
  recent_entries_.insert(recent_entries_.end(), std::make_move_iterator(entries.begin()),
                         std::make_move_iterator(entries.end()));
  Publish();
  if (FoldWork()) fold_work_.notify_one();
  // A writer that outpaces the background work waits for it, once its
  // entries are visible: the recent tier is copied by every Add, and the
  // tiers beside the base cost every query (see the header).
  const size_t backlog = std::max(options_.recent_backlog, options_.recent_limit);
  auto behind = [&] {
    return recent_entries_.size() >= backlog ||
           (merging_ && delta_->total() - frozen_entries_ >= MergeThreshold());
  };
  folded_.wait(lock, [&] { return stop_ || !behind(); });
  return {};
}

Status HashIndex::AddLoaded(IndexLoader& loader) {
  std::unique_lock lock(mu_);
  IndexLoader::Impl& im = *loader.impl_;
  auto& [p0, p1] = im.parts;
  if (base_->total() + delta_->total() + recent_->total() > 0 ||
      !removed_.empty()) {
    return Error(ErrorCode::kInvalidArgument, "a loaded base needs an empty index");
  }
  if (p0.count > p0.capacity || p1.count > p1.capacity) {
    return Error(ErrorCode::kInvalidArgument, "more entries loaded than announced");
  }
  if (!p0.increasing || !p1.increasing ||
      (p0.count > 0 && p1.count > 0 && p0.last_id >= p1.first_id)) {
    return Error(ErrorCode::kInvalidArgument, "loaded entry ids do not increase");
  }
  Segment::Columns& c = im.columns;
  // Part 1's rows join part 0's: its labels renumbered, its references
  // after part 0's, its PDQ rows moved down over any gap.
  std::vector<uint32_t> relabel(p1.labels.size());
  for (size_t i = 0; i < p1.labels.size(); ++i) {
    relabel[i] = p0.Label(p1.labels[i].first, p1.labels[i].second);
  }
  const uint64_t shift = p0.references.size();
  for (size_t r = p1.begin; r < p1.begin + p1.pdq; ++r) {
    c.pdq_meta[r].label = relabel[c.pdq_meta[r].label];
    c.pdq_meta[r].ref_offset += shift;
  }
  if (p0.pdq < p1.begin && p1.pdq > 0) {
    std::memmove(&c.codes[4 * p0.pdq], &c.codes[4 * p1.begin], 32 * p1.pdq);
    std::memmove(&c.pdq_meta[p0.pdq], &c.pdq_meta[p1.begin], sizeof(Segment::Meta) * p1.pdq);
  }
  const size_t n_pdq = p0.pdq + p1.pdq;
  c.codes.resize(4 * n_pdq);
  c.pdq_meta.resize(n_pdq);
  c.labels = std::move(p0.labels);
  c.references = std::move(p0.references);
  c.references.append(p1.references);
  p1.references = {};
  c.exact = std::move(p0.exact);
  c.exact.insert(c.exact.end(), std::make_move_iterator(p1.exact.begin()),
                 std::make_move_iterator(p1.exact.end()));
  max_id_ = p1.count > 0 ? p1.last_id : p0.count > 0 ? p0.last_id : 0;
  base_ = Segment::FromColumns(std::move(c), options_.num_substrings);
  im = IndexLoader::Impl();
  Publish();
  return {};
}

Status HashIndex::Remove(const std::vector<uint64_t>& ids) {
  std::lock_guard lock(mu_);
  std::unordered_set<uint64_t> batch;
  std::array<size_t, 3> by_type{};
  for (uint64_t id : ids) {
    if (!batch.insert(id).second) continue;
    const std::optional<SignalType> type = TypeOf(id);
    if (removed_.count(id) || !type) {
      return Error(ErrorCode::kNotFound, "entry id " + std::to_string(id) + " is not in the index");
    }
    ++by_type[static_cast<int>(*type)];
  }
  removed_.insert(batch.begin(), batch.end());
  for (int t = 0; t < 3; ++t) removed_by_type_[t] += by_type[t];
  removed_shared_ = std::make_shared<const std::unordered_set<uint64_t>>(removed_);
  size_t forgotten = 0;
  for (uint64_t id : batch) forgotten += disabled_ids_.erase(id);
  if (forgotten > 0) {
    disabled_ids_shared_ = std::make_shared<const std::unordered_set<uint64_t>>(disabled_ids_);
  }
  Publish();
  return {};
}

void HashIndex::SetListEnabled(const std::string& list, bool enabled) {
  std::lock_guard lock(mu_);
  if (enabled) {
    disabled_.erase(list);
  } else {
    disabled_.insert(list);
  }
  disabled_shared_ = std::make_shared<const std::unordered_set<std::string>>(disabled_);
  Publish();
}

void HashIndex::SetEntriesEnabled(const std::vector<uint64_t>& ids, bool enabled) {
  std::lock_guard lock(mu_);
  for (uint64_t id : ids) {
    if (enabled) {
      disabled_ids_.erase(id);
    } else {
      disabled_ids_.insert(id);
    }
  }
  disabled_ids_shared_ = std::make_shared<const std::unordered_set<uint64_t>>(disabled_ids_);
  Publish();
}

void HashIndex::SetStoreVersion(uint64_t version) {
  std::lock_guard lock(mu_);
  store_version_ = version;
  Publish();
}

bool HashIndex::FoldWork() const {
  return !recent_entries_.empty() &&
         (recent_entries_.size() >= options_.recent_limit || force_merge_);
}

size_t HashIndex::MergeThreshold() const {
  return std::max<size_t>(options_.merge_threshold, 1);
}

bool HashIndex::FreezeDue() const {
  // A forced merge waits for the folds that take the entries added before
  // MergeNow (later ones may go on arriving: they go to the next delta).
  return !merging_ && (force_merge_ ? folds_ >= force_after_folds_
                                    : delta_->total() >= MergeThreshold());
}

void HashIndex::MergeNow() {
  {
    std::lock_guard lock(mu_);
    force_merge_ = true;
    // The fold running now, if any, and the one that takes the recent
    // entries it did not take, if any. (Counting the running fold's own
    // entries again asked for a fold that never came once the writer
    // stopped: a forced merge then never started.)
    const size_t waiting = recent_entries_.size() - (folding_ ? fold_taken_ : 0);
    force_after_folds_ = folds_ + (folding_ ? 1 : 0) + (waiting > 0 ? 1 : 0);
  }
  fold_work_.notify_one();
  merge_work_.notify_one();
}

void HashIndex::WaitForMerge() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] {
    return !folding_ && !merging_ && !FoldWork() && !force_merge_ &&
           delta_->total() < MergeThreshold();
  });
  lock.unlock();
  std::unique_lock released(graveyard_->mu);
  graveyard_->changed.wait(released, [this] {
    return graveyard_->dead.empty() && !graveyard_->destroying;
  });
}

void HashIndex::Folder() {
  std::unique_lock lock(mu_);
  while (true) {
    folding_ = false;
    idle_.notify_all();
    // A due freeze goes first (the merger waits for folds to end, and a
    // folder that kept folding would never let it in).
    // A merger waiting to trim the delta goes first too.
    if (FreezeDue() || trimming_) merge_work_.notify_one();
    fold_work_.wait(lock,
                    [this] { return stop_ || (FoldWork() && !FreezeDue() && !trimming_); });
    if (stop_) return;
    folding_ = true;
    FoldRecent(lock);
  }
}

void HashIndex::Merger() {
  std::unique_lock lock(mu_);
  while (true) {
    merging_ = false;
    idle_.notify_all();
    folded_.notify_all();
    fold_work_.notify_one();
    // Between merges, memory blocks kept for the next merge are given back
    // once unused for kReleaseAfter.
    while (!merge_work_.wait_for(lock, kReleaseAfter,
                                 [this] { return stop_ || (!folding_ && FreezeDue()); })) {
      lock.unlock();
      ReleaseIdleBlocks(std::chrono::duration<double>(kReleaseAfter).count());
      lock.lock();
    }
    if (stop_) return;
    merging_ = true;
    // A merge that only appends the delta to the base's tables costs one
    // linear pass; a full rebuild (which also drops removed entries) is
    // kept for when tombstones pile up, or when asked.
    const bool full = force_merge_ || removed_.size() > base_->total() / 20;
    force_merge_ = false;
    if (delta_->total() > 0 || (full && !removed_.empty())) {
      MergeBase(lock, full);
      // Blocks not reused by the last merges go back (back-to-back merges
      // reuse the blocks the one before freed, within a second or two).
      lock.unlock();
      ReleaseIdleBlocks(std::chrono::duration<double>(kReleaseBetweenMerges).count());
      lock.lock();
    }
  }
}

void HashIndex::FoldRecent(std::unique_lock<std::mutex>& lock) {
  const size_t taken = recent_entries_.size();
  fold_taken_ = taken;
  // The writer only appends to recent_entries_ meanwhile: the taken ones
  // can be moved out (their husks are erased below).
  std::vector<IndexEntry> entries(std::make_move_iterator(recent_entries_.begin()),
                                  std::make_move_iterator(recent_entries_.end()));
  std::shared_ptr<const Segment> delta = delta_;
  lock.unlock();  // the rebuild runs while readers and writers go on
  std::shared_ptr<const Segment> folded = Segment::Build(
      {delta.get()}, nullptr, entries, options_.num_substrings, /*append_to_first=*/true);
  lock.lock();
  // delta_ is still `delta`: the merger freezes and trims it only while no
  // fold runs.
  delta_ = std::move(folded);
  for (const IndexEntry& e : entries) recent_ids_.erase(e.id);
  recent_entries_.erase(recent_entries_.begin(),
                        recent_entries_.begin() + static_cast<ptrdiff_t>(taken));
  recent_ = Segment::Build({}, nullptr, recent_entries_, 0);
  ++folds_;
  Publish();
  folded_.notify_all();
}

void HashIndex::MergeBase(std::unique_lock<std::mutex>& lock, bool full) {
  // The delta is frozen: its entries are merged into a new base while later
  // folds go on extending the delta (so the recent tier stays small however
  // long the merge takes). The delta keeps the frozen entries until the new
  // base comes in: queries search one tier beside the base, not two (a
  // tier costs a query 6-15 us, mostly for its probes, whatever its size).
  std::shared_ptr<const Segment> base = base_, frozen = delta_;
  frozen_entries_ = frozen->total();
  fold_work_.notify_one();
  std::unordered_set<uint64_t> removed;
  if (full) removed = removed_;  // an append keeps removed entries (and their tombstones)
  lock.unlock();
  std::function<bool(uint64_t)> keep;
  if (!removed.empty()) keep = [&](uint64_t id) { return !removed.count(id); };
  std::shared_ptr<const Segment> merged = Segment::Build(
      {base.get(), frozen.get()}, keep, {}, options_.num_substrings, /*append_to_first=*/!full);
  lock.lock();
  // The frozen entries leave the delta as the merged base comes in: folds
  // wait (the running one ends first) while the delta is rebuilt without
  // them, so that no entry is in two tiers of a snapshot.
  trimming_ = true;
  merge_work_.wait(lock, [this] { return !folding_; });
  std::shared_ptr<const Segment> delta = delta_;
  lock.unlock();
  // (Nothing frozen: a full merge for removals only.)
  std::shared_ptr<const Segment> trimmed = delta;
  if (frozen->total() > 0) {
    trimmed = Segment::Build(
        {delta.get()}, [&](uint64_t id) { return !frozen->Contains(id); }, {},
        options_.num_substrings);
  }
  lock.lock();
  trimming_ = false;
  fold_work_.notify_one();
  // Only this thread replaces base_ (and delta_ while trimming_).
  // Tombstones go only for the entries the merge dropped: ids removed while
  // merging, and removed entries among those added since the freeze, keep
  // theirs.
  base_ = std::move(merged);
  delta_ = std::move(trimmed);
  frozen_entries_ = 0;
  for (uint64_t id : removed) {
    if (!recent_ids_.count(id) && !delta_->Contains(id)) removed_.erase(id);
  }
  removed_by_type_ = {};
  for (uint64_t id : removed_) {
    if (std::optional<SignalType> type = TypeOf(id)) ++removed_by_type_[static_cast<int>(*type)];
  }
  removed_shared_ = std::make_shared<const std::unordered_set<uint64_t>>(removed_);
  Publish();
  folded_.notify_all();
}

}  // namespace bantay::matcher
