#include "bantay/matcher/hash_index.h"

#include <algorithm>

#include "segment.h"

namespace bantay::matcher {
namespace {

using models::Dihedral;
using models::Hash256;

bool ByDistanceThenId(const Match& a, const Match& b) {
  return a.distance != b.distance ? a.distance < b.distance : a.id < b.id;
}

const std::unordered_set<uint64_t> kNoIds;

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
               "unknown signal type '" + std::string(name) + "' (pdq, md5 or sha256)");
}

// --- IndexSnapshot ------------------------------------------------------------

IndexSnapshot::IndexSnapshot(
    uint64_t version, std::shared_ptr<const Segment> base,
    std::shared_ptr<const Segment> delta,
    std::shared_ptr<const std::unordered_set<uint64_t>> removed,
    std::array<size_t, 3> removed_by_type,
    std::shared_ptr<const std::unordered_set<std::string>> disabled)
    : version_(version),
      base_(std::move(base)),
      delta_(std::move(delta)),
      removed_(std::move(removed)),
      removed_by_type_(removed_by_type),
      disabled_(std::move(disabled)) {}

IndexSnapshot::~IndexSnapshot() = default;

size_t IndexSnapshot::size(SignalType type) const {
  return base_->size(type) + delta_->size(type) - removed_by_type_[static_cast<int>(type)];
}

bool IndexSnapshot::Contains(uint64_t id) const {
  return !removed_->count(id) && (base_->Contains(id) || delta_->Contains(id));
}

size_t IndexSnapshot::MemoryBytes() const {
  return base_->MemoryBytes() + delta_->MemoryBytes();
}

bool IndexSnapshot::ListEnabled(const std::string& list) const {
  return !disabled_->count(list);
}

bool IndexSnapshot::Visible(uint64_t id, std::string_view list) const {
  if (!removed_->empty() && removed_->count(id)) return false;
  return disabled_->empty() || !disabled_->count(std::string(list));
}

void IndexSnapshot::CollectPdq(const Hash256& query, int radius, Dihedral variant,
                               std::vector<Match>* out) const {
  thread_local std::vector<std::pair<int64_t, int>> found;
  for (const Segment* seg : {base_.get(), delta_.get()}) {
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
  for (const Segment* seg : {base_.get(), delta_.get()}) {
    const auto [begin, end] = seg->FindExact(type, digest);
    for (uint32_t i = begin; i < end; ++i) {
      const Segment::Row r = seg->ExactRow(i);
      if (!Visible(r.id, r.list)) continue;
      out->push_back({r.id, r.list, r.category, r.reference, 0, Dihedral::kOriginal});
    }
  }
  std::sort(out->begin(), out->end(), ByDistanceThenId);
}

// --- HashIndex --------------------------------------------------------------------

HashIndex::HashIndex(HashIndexOptions options) : options_(options) {
  std::lock_guard lock(mu_);
  base_ = Segment::Build({}, nullptr, {}, options_.num_substrings);
  delta_ = base_;
  removed_shared_ = std::make_shared<const std::unordered_set<uint64_t>>();
  disabled_shared_ = std::make_shared<const std::unordered_set<std::string>>();
  Publish();
}

HashIndex::~HashIndex() {
  WaitForMerge();
  if (merge_thread_.joinable()) merge_thread_.join();
}

void HashIndex::Publish() {
  auto next = std::make_shared<const IndexSnapshot>(++version_, base_, delta_, removed_shared_,
                                                    removed_by_type_, disabled_shared_);
  std::shared_ptr<const IndexSnapshot> previous;  // released outside the lock
  std::lock_guard lock(current_mu_);
  previous = std::move(current_);
  current_ = std::move(next);
}

Status HashIndex::Add(std::vector<IndexEntry> entries) {
  std::lock_guard lock(mu_);
  std::unordered_set<uint64_t> batch;
  for (const IndexEntry& e : entries) {
    if (!batch.insert(e.id).second) {
      return Error(ErrorCode::kInvalidArgument,
                   "entry id " + std::to_string(e.id) + " is repeated in the batch");
    }
    if (removed_.count(e.id)) {
      return Error(ErrorCode::kInvalidArgument,
                   "entry id " + std::to_string(e.id) + " was removed; ids are not reused");
    }
    if (base_->Contains(e.id) || delta_->Contains(e.id)) {
      return Error(ErrorCode::kInvalidArgument,
                   "entry id " + std::to_string(e.id) + " is already in the index");
    }
  }
  for (IndexEntry& e : entries) {
    if (e.type == SignalType::kMd5) std::fill(e.value.begin() + 16, e.value.end(), 0);
  }
  delta_entries_.insert(delta_entries_.end(), std::make_move_iterator(entries.begin()),
                        std::make_move_iterator(entries.end()));
  delta_ = Segment::Build({}, nullptr, delta_entries_, options_.num_substrings);
  Publish();
  MaybeStartMerge();
  return {};
}

Status HashIndex::Remove(const std::vector<uint64_t>& ids) {
  std::lock_guard lock(mu_);
  std::unordered_set<uint64_t> batch;
  std::array<size_t, 3> by_type{};
  for (uint64_t id : ids) {
    if (!batch.insert(id).second) continue;
    std::optional<SignalType> type = base_->TypeOf(id);
    if (!type) type = delta_->TypeOf(id);
    if (removed_.count(id) || !type) {
      return Error(ErrorCode::kNotFound, "entry id " + std::to_string(id) + " is not in the index");
    }
    ++by_type[static_cast<int>(*type)];
  }
  removed_.insert(batch.begin(), batch.end());
  for (int t = 0; t < 3; ++t) removed_by_type_[t] += by_type[t];
  removed_shared_ = std::make_shared<const std::unordered_set<uint64_t>>(removed_);
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

void HashIndex::MaybeStartMerge() {
  if (merging_ || delta_entries_.size() < options_.merge_threshold) return;
  if (merge_thread_.joinable()) merge_thread_.join();
  merging_ = true;
  merge_thread_ = std::thread([this] { RunMerge(); });
}

void HashIndex::MergeNow() {
  std::unique_lock lock(mu_);
  merge_done_.wait(lock, [this] { return !merging_; });
  if (delta_entries_.empty() && removed_.empty()) return;
  if (merge_thread_.joinable()) merge_thread_.join();
  merging_ = true;
  merge_thread_ = std::thread([this] { RunMerge(); });
}

void HashIndex::WaitForMerge() {
  std::unique_lock lock(mu_);
  merge_done_.wait(lock, [this] { return !merging_; });
}

void HashIndex::RunMerge() {
  std::shared_ptr<const Segment> base, delta;
  std::unordered_set<uint64_t> removed;
  size_t delta_count;
  {
    std::lock_guard lock(mu_);
    base = base_;
    delta = delta_;
    removed = removed_;
    delta_count = delta_entries_.size();
  }
  // The long part runs without the lock: readers and writers go on.
  std::shared_ptr<const Segment> merged = Segment::Build(
      {base.get(), delta.get()}, [&](uint64_t id) { return !removed.count(id); }, {},
      options_.num_substrings);
  std::lock_guard lock(mu_);
  base_ = std::move(merged);
  // Entries added and ids removed while merging stay in the delta and the
  // tombstones.
  delta_entries_.erase(delta_entries_.begin(),
                       delta_entries_.begin() + static_cast<ptrdiff_t>(delta_count));
  delta_ = Segment::Build({}, nullptr, delta_entries_, options_.num_substrings);
  for (uint64_t id : removed) removed_.erase(id);
  removed_by_type_ = {};
  for (uint64_t id : removed_) {
    std::optional<SignalType> type = base_->TypeOf(id);
    if (!type) type = delta_->TypeOf(id);
    if (type) ++removed_by_type_[static_cast<int>(*type)];
  }
  removed_shared_ = std::make_shared<const std::unordered_set<uint64_t>>(removed_);
  Publish();
  merging_ = false;
  merge_done_.notify_all();
}

}  // namespace bantay::matcher
