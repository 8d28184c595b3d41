// Segment: an immutable set of index entries with its search structures
// (PDQ codes in an IndexBinaryMIH, MD5/SHA-256 in a hash table) and compact
// metadata (interned list/category pairs, references in one arena).
#ifndef BANTAY_MATCHER_SEGMENT_H_
#define BANTAY_MATCHER_SEGMENT_H_

#include <array>
#include <optional>
#include <cstring>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bantay/matcher/hash_index.h"
#include "bantay/matcher/index_binary_mih.h"

namespace bantay::matcher {

class Segment {
 public:
  struct Row {
    uint64_t id;
    SignalType type;
    const uint8_t* value;  // 32 bytes
    std::string_view list;
    std::string_view category;
    std::string_view reference;
  };

  struct Meta {
    uint64_t id;
    uint32_t label;  // index into labels_
    uint32_t ref_length;
    uint64_t ref_offset;
  };
  // A segment's contents laid out as the segment holds them, filled by
  // IndexLoader while a store is read (no IndexEntry per row).
  struct Columns {
    HugeVector<uint64_t> codes;  // PDQ codes, 4 words each, by increasing id
    HugeVector<Meta> pdq_meta;   // the same rows
    std::vector<std::pair<std::string, std::string>> labels;  // (list, category)
    std::string references;
    std::vector<IndexEntry> exact;  // MD5 (zero-padded) and SHA-256 entries
  };
  // A segment from columns (ids unique and increasing in pdq_meta).
  static std::shared_ptr<const Segment> FromColumns(Columns columns, int num_substrings);

  // Builds from rows of existing segments (filtered by keep) and new
  // entries. Entries must have ids unique across all inputs. With
  // append_to_first (and no keep), the PDQ tables of from[0] are extended
  // with the other rows (IndexBinaryMIH::Appended) instead of rebuilt, when
  // the other rows' ids all follow from[0]'s; otherwise it rebuilds.
  static std::shared_ptr<const Segment> Build(
      const std::vector<const Segment*>& from,
      const std::function<bool(uint64_t id)>& keep,
      const std::vector<IndexEntry>& added, int num_substrings,
      bool append_to_first = false);

  size_t size(SignalType type) const;
  size_t total() const { return counts_[0] + counts_[1] + counts_[2]; }
  bool Contains(uint64_t id) const { return TypeOf(id).has_value(); }
  std::optional<SignalType> TypeOf(uint64_t id) const;
  size_t MemoryBytes() const;

  // PDQ rows within radius: (row number, distance).
  void SearchPdq(const uint8_t* query, int radius,
                 std::vector<std::pair<int64_t, int>>* out) const;
  Row PdqRow(int64_t row) const;
  // Exact rows equal to the digest: [begin, end) of exact row numbers.
  std::pair<uint32_t, uint32_t> FindExact(SignalType type, const uint8_t* digest) const;
  Row ExactRow(uint32_t row) const;

 private:
  explicit Segment(int num_substrings)
      : pdq_(std::make_unique<IndexBinaryMIH>(num_substrings)) {}

  struct Pending {
    uint64_t id;
    SignalType type;
    std::array<uint8_t, 32> value;
    uint32_t label;
    std::string_view reference;
    // Where the reference already is in the new segment's arena (a row of
    // an appended-to segment), or kAppend.
    static constexpr uint64_t kAppend = UINT64_MAX;
    uint64_t ref_offset = kAppend;
  };
  struct ExactKey {
    std::array<uint8_t, 32> value;
    SignalType type;
    bool operator==(const ExactKey&) const = default;
  };
  struct ExactKeyHash {
    size_t operator()(const ExactKey& k) const {
      uint64_t h;
      std::memcpy(&h, k.value.data(), 8);
      return static_cast<size_t>(h ^ static_cast<uint64_t>(k.type));
    }
  };

  Row MakeRow(const Meta& m, SignalType type, const uint8_t* value) const;
  Meta AppendMeta(const Pending& p);
  // Adds exact rows (sorted here by type, value, id) to the exact tables.
  void AddExact(HugeVector<Pending>::iterator begin, HugeVector<Pending>::iterator end);

  std::unique_ptr<IndexBinaryMIH> pdq_;
  HugeVector<Meta> pdq_meta_;  // by MIH position, sorted by id
  std::vector<Meta> exact_meta_;
  std::vector<ExactKey> exact_keys_;  // sorted by (key, id)
  std::unordered_map<ExactKey, std::pair<uint32_t, uint32_t>, ExactKeyHash> exact_index_;
  std::vector<std::pair<uint64_t, SignalType>> exact_ids_;  // sorted
  std::vector<std::pair<std::string, std::string>> labels_;  // (list, category)
  std::string references_;
  std::array<size_t, 3> counts_{};
};

}  // namespace bantay::matcher

#endif  // BANTAY_MATCHER_SEGMENT_H_
