#include "segment.h"

#include <algorithm>
#include <unordered_map>

namespace bantay::matcher {
std::shared_ptr<const Segment> Segment::Build(
    const std::vector<const Segment*>& from,
    const std::function<bool(uint64_t id)>& keep,
    const std::vector<IndexEntry>& added, int num_substrings, bool append_to_first) {
  std::shared_ptr<Segment> seg(new Segment(num_substrings));
  // (list, category) pairs are few: each gets a number once.
  std::unordered_map<std::string, uint32_t> label_ids;
  auto intern = [&](std::string_view list, std::string_view category) {
    std::string key;
    key.reserve(list.size() + category.size() + 1);
    key.append(list).push_back('\0');
    key.append(category);
    auto [it, inserted] = label_ids.try_emplace(std::move(key), static_cast<uint32_t>(seg->labels_.size()));
    if (inserted) seg->labels_.emplace_back(std::string(list), std::string(category));
    return it->second;
  };
  // With append_to_first (and no filter), the first segment's PDQ rows
  // keep their positions, metadata and references: they are copied as
  // whole arrays, and only the other rows go through `rows`. That needs
  // every other PDQ row to follow the first segment's by id (a merge of
  // newer entries always does); otherwise everything is rebuilt.
  const Segment* first =
      append_to_first && !keep && !from.empty() && !from[0]->pdq_meta_.empty() ? from[0] : nullptr;
  if (first != nullptr) {
    const uint64_t last = first->pdq_meta_.back().id;
    auto earlier = [last](uint64_t id) { return id <= last; };
    for (size_t k = 1; k < from.size() && first != nullptr; ++k) {
      if (!from[k]->pdq_meta_.empty() && earlier(from[k]->pdq_meta_.front().id)) first = nullptr;
    }
    for (const IndexEntry& e : added) {
      if (first != nullptr && e.type == SignalType::kPdq && earlier(e.id)) first = nullptr;
    }
  }
  size_t total = added.size();
  for (const Segment* s : from) total += s->pdq_meta_.size() + s->exact_meta_.size();
  const size_t n_kept = first != nullptr ? first->pdq_meta_.size() : 0;
  HugeVector<Pending> rows;
  rows.reserve(total - n_kept);
  size_t ref_bytes = 0;
  if (first != nullptr) {
    // The first segment's labels are interned first, so they keep their
    // numbers.
    for (const auto& [list, category] : first->labels_) intern(list, category);
    seg->pdq_meta_.reserve(total);
    seg->pdq_meta_ = first->pdq_meta_;
    ref_bytes = first->references_.size();
  }
  for (const Segment* s : from) {
    std::vector<uint32_t> relabel(s->labels_.size());
    for (size_t i = 0; i < s->labels_.size(); ++i) {
      relabel[i] = intern(s->labels_[i].first, s->labels_[i].second);
    }
    auto take = [&](const Meta& m, SignalType type, const uint8_t* value) {
      if (keep && !keep(m.id)) return;
      Pending p{m.id, type, {}, relabel[m.label],
                std::string_view(s->references_).substr(m.ref_offset, m.ref_length)};
      // The first segment's references are copied with it: its other
      // rows keep their offsets.
      if (s == first) p.ref_offset = m.ref_offset;
      std::memcpy(p.value.data(), value, 32);
      rows.push_back(p);
    };
    if (s != first) {
      for (size_t i = 0; i < s->pdq_meta_.size(); ++i) {
        take(s->pdq_meta_[i], SignalType::kPdq, s->pdq_->code(static_cast<int64_t>(i)));
      }
    }
    for (size_t i = 0; i < s->exact_meta_.size(); ++i) {
      take(s->exact_meta_[i], s->exact_keys_[i].type, s->exact_keys_[i].value.data());
    }
  }
  uint32_t label = UINT32_MAX;  // consecutive entries usually share a label
  for (const IndexEntry& e : added) {
    if (label == UINT32_MAX || seg->labels_[label].first != e.list ||
        seg->labels_[label].second != e.category) {
      label = intern(e.list, e.category);
    }
    rows.push_back({e.id, e.type, e.value, label, e.reference});
  }
  // PDQ rows by id (so Contains is a binary search), exact rows by value
  // (AddExact).
  // (stable_partition copies every row through a buffer: skipped when the
  // rows are all PDQ, as large lists are.)
  auto is_pdq = [](const Pending& p) { return p.type == SignalType::kPdq; };
  auto pdq_end = std::all_of(rows.begin(), rows.end(), is_pdq)
                     ? rows.end()
                     : std::stable_partition(rows.begin(), rows.end(), is_pdq);
  // Merged segments arrive sorted by id already.
  auto by_id = [](const Pending& a, const Pending& b) { return a.id < b.id; };
  if (!std::is_sorted(rows.begin(), pdq_end, by_id)) std::sort(rows.begin(), pdq_end, by_id);
  for (const Pending& p : rows) {
    if (p.ref_offset == Pending::kAppend) ref_bytes += p.reference.size();
  }
  seg->references_.reserve(ref_bytes);
  if (first != nullptr) seg->references_ = first->references_;
  const size_t n_new = static_cast<size_t>(pdq_end - rows.begin());
  HugeVector<uint8_t> codes(n_new * 32);
  seg->pdq_meta_.reserve(n_kept + n_new);
  for (size_t i = 0; i < n_new; ++i) {
    std::memcpy(&codes[32 * i], rows[i].value.data(), 32);
    seg->pdq_meta_.push_back(seg->AppendMeta(rows[i]));
  }
  if (first != nullptr) {
    seg->pdq_ = first->pdq_->Appended(static_cast<faiss::Index::idx_t>(n_new), codes.data());
  } else if (n_new > 0) {
    seg->pdq_->add(static_cast<faiss::Index::idx_t>(n_new), codes.data());
  }
  seg->counts_[static_cast<int>(SignalType::kPdq)] = n_kept + n_new;
  seg->AddExact(pdq_end, rows.end());
  return seg;
}

Segment::Meta Segment::AppendMeta(const Pending& p) {
  if (p.ref_offset != Pending::kAppend) {
    return {p.id, p.label, static_cast<uint32_t>(p.reference.size()), p.ref_offset};
  }
  Meta m{p.id, p.label, static_cast<uint32_t>(p.reference.size()), references_.size()};
  references_.append(p.reference);
  return m;
}

void Segment::AddExact(HugeVector<Pending>::iterator begin, HugeVector<Pending>::iterator end) {
  std::sort(begin, end, [](const Pending& a, const Pending& b) {
    return std::tie(a.type, a.value, a.id) < std::tie(b.type, b.value, b.id);
  });
  for (auto it = begin; it != end; ++it) {
    const auto row = static_cast<uint32_t>(exact_meta_.size());
    exact_meta_.push_back(AppendMeta(*it));
    ExactKey key{it->value, it->type};
    exact_keys_.push_back(key);
    auto [slot, inserted] = exact_index_.try_emplace(key, row, row + 1);
    if (!inserted) slot->second.second = row + 1;
    exact_ids_.emplace_back(it->id, it->type);
    ++counts_[static_cast<int>(it->type)];
  }
  std::sort(exact_ids_.begin(), exact_ids_.end());
}

std::shared_ptr<const Segment> Segment::FromColumns(Columns columns, int num_substrings) {
  std::shared_ptr<Segment> seg(new Segment(num_substrings));
  const size_t n_pdq = columns.pdq_meta.size();
  seg->labels_ = std::move(columns.labels);
  seg->references_ = std::move(columns.references);
  seg->pdq_meta_ = std::move(columns.pdq_meta);
  if (n_pdq > 0) {
    seg->pdq_->add(static_cast<faiss::Index::idx_t>(n_pdq),
                   reinterpret_cast<const uint8_t*>(columns.codes.data()));
  }
  columns.codes = {};
  seg->counts_[static_cast<int>(SignalType::kPdq)] = n_pdq;
  if (columns.exact.empty()) return seg;
  std::unordered_map<std::string, uint32_t> label_ids;
  for (size_t i = 0; i < seg->labels_.size(); ++i) {
    label_ids.try_emplace(seg->labels_[i].first + '\0' + seg->labels_[i].second,
                          static_cast<uint32_t>(i));
  }
  HugeVector<Pending> rows;
  rows.reserve(columns.exact.size());
  for (const IndexEntry& e : columns.exact) {
    auto [it, inserted] = label_ids.try_emplace(e.list + '\0' + e.category,
                                                static_cast<uint32_t>(seg->labels_.size()));
    if (inserted) seg->labels_.emplace_back(e.list, e.category);
    rows.push_back({e.id, e.type, e.value, it->second, e.reference});
  }
  seg->AddExact(rows.begin(), rows.end());
  return seg;
}

size_t Segment::size(SignalType type) const { return counts_[static_cast<int>(type)]; }

std::optional<SignalType> Segment::TypeOf(uint64_t id) const {
  auto it = std::lower_bound(pdq_meta_.begin(), pdq_meta_.end(), id,
                             [](const Meta& m, uint64_t v) { return m.id < v; });
  if (it != pdq_meta_.end() && it->id == id) return SignalType::kPdq;
  auto e = std::lower_bound(exact_ids_.begin(), exact_ids_.end(), id,
                            [](const auto& p, uint64_t v) { return p.first < v; });
  if (e != exact_ids_.end() && e->first == id) return e->second;
  return std::nullopt;
}

size_t Segment::MemoryBytes() const {
  size_t bytes = pdq_->MemoryBytes() + references_.capacity() +
                 (pdq_meta_.capacity() + exact_meta_.capacity()) * sizeof(Meta) +
                 exact_keys_.capacity() * sizeof(ExactKey) +
                 exact_ids_.capacity() * sizeof(exact_ids_[0]) +
                 exact_index_.size() * (sizeof(ExactKey) + 2 * sizeof(uint32_t) + 16);
  for (const auto& [list, category] : labels_) bytes += list.capacity() + category.capacity();
  return bytes;
}

Segment::Row Segment::MakeRow(const Meta& m, SignalType type, const uint8_t* value) const {
  const auto& label = labels_[m.label];
  return {m.id,
          type,
          value,
          label.first,
          label.second,
          std::string_view(references_).substr(m.ref_offset, m.ref_length)};
}

Segment::Row Segment::PdqRow(int64_t row) const {
  return MakeRow(pdq_meta_[static_cast<size_t>(row)], SignalType::kPdq, pdq_->code(row));
}

Segment::Row Segment::ExactRow(uint32_t row) const {
  return MakeRow(exact_meta_[row], exact_keys_[row].type, exact_keys_[row].value.data());
}

void Segment::SearchPdq(const uint8_t* query, int radius,
                        std::vector<std::pair<int64_t, int>>* out) const {
  pdq_->RangeSearchLeq(query, radius, out);
}

std::pair<uint32_t, uint32_t> Segment::FindExact(SignalType type,
                                                 const uint8_t* digest) const {
  ExactKey key{{}, type};
  std::memcpy(key.value.data(), digest, type == SignalType::kMd5 ? 16 : 32);
  auto it = exact_index_.find(key);
  return it == exact_index_.end() ? std::pair<uint32_t, uint32_t>{0, 0} : it->second;
}

}  // namespace bantay::matcher
