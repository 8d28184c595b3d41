// IndexBinaryMIH: exact Hamming range search over 256-bit codes by
// multi-index hashing, as a FAISS binary index.
//
// Multi-index hashing (Norouzi, Punjani, Fleet, "Fast Search in Hamming
// Space with Multi-Index Hashing", CVPR 2012): each code is cut into m
// disjoint substrings of about log2(N) bits, and each substring indexes a
// table. If two codes are within distance r = m*q + a (0 <= a < m), then one
// of the first a+1 substrings is within q of the query's, or one of the
// others within q-1. So probing every bucket within those radii of the
// query's substrings finds every neighbour (exact: no neighbour is missed),
// and a full-code popcount keeps only those within r.
//
// Tables are compact: for each substring, one array of bucket starts (2^b+1
// offsets) and one array of members sorted by bucket (a counting sort), so a
// probe is two reads and a contiguous run, with no hash maps or per-bucket
// vectors. Members are code numbers, or (up to 2^21 codes) code numbers with
// 96 more bits of the code, which drop nearly all candidates without reading
// their codes (see Layout). Bucket starts, runs and candidate codes are
// prefetched ahead of use. Small indexes (under 4096 codes) and radii whose
// probe count would exceed a scan are answered by a linear popcount scan
// instead.
//
// FAISS conventions: labels are positions 0..ntotal-1 (add_with_ids is not
// supported: wrap in faiss::IndexBinaryIDMap2 for ids), range_search
// returns distances < radius (strict), search is exact k-NN. add() rebuilds
// the tables, so add in large batches; const methods are thread-safe and
// batched calls run on OpenMP threads. faiss::write_index_binary has no
// registry for new binary index types, so WriteMih/ReadMih store the codes
// in FAISS's own IndexBinaryFlat format and rebuild the tables on reading.
#ifndef BANTAY_MATCHER_INDEX_BINARY_MIH_H_
#define BANTAY_MATCHER_INDEX_BINARY_MIH_H_

#include <faiss/IndexBinary.h>

#include "bantay/models/status.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace bantay::matcher {

// Memory for the index's arrays. Arrays of 64 KB and more come from
// AllocateBlock: their own mappings, those of 2 MB and more on 2 MB
// boundaries with transparent huge pages asked for (madvise): the tables
// are read at random, and with 4 KB pages nearly every probe would also
// miss the TLB.
//
// Freed blocks are kept for reuse. Folds and merges build a new copy of a
// segment just before the old one is freed, and fresh memory is expensive
// here: the first write to each 4 KB page faults, ~10 us a page on this
// machine class (0.9 s per 320 MB; a merge into a 10M base writes 1.5 GB),
// where a kept block costs nothing. New blocks are mapped a quarter larger
// than asked, so the next, larger copy of a growing segment fits into the
// block of the previous one (unwritten pages cost nothing). Kept blocks are
// unmapped by ReleaseIdleBlocks (HashIndex's merge thread calls it) once
// unused for a while, and beyond kMaxKeptBytes at once. Thread-safe.
inline constexpr size_t kBlockMin = size_t{64} << 10;
inline constexpr size_t kHugeBlock = size_t{2} << 20;
inline constexpr size_t kMaxKeptBytes = size_t{8} << 30;  // address space, not all resident
void* AllocateBlock(size_t bytes);  // bytes >= kBlockMin
void FreeBlock(void* p);
// Unmaps kept blocks unused for at least `idle_seconds`; returns the bytes
// still kept.
size_t ReleaseIdleBlocks(double idle_seconds);

template <typename T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}  // NOLINT
  T* allocate(size_t n) {
    if (n * sizeof(T) < kBlockMin) return std::allocator<T>().allocate(n);
    return static_cast<T*>(AllocateBlock(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) {
    if (n * sizeof(T) < kBlockMin) {
      std::allocator<T>().deallocate(p, n);
    } else {
      FreeBlock(p);
    }
  }
  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const { return true; }
};

template <typename T>
using HugeVector = std::vector<T, HugePageAllocator<T>>;

class IndexBinaryMIH : public faiss::IndexBinary {
 public:
  static constexpr int kDimension = 256;  // bits a code

  // How a table holds the codes of a bucket:
  // - kNumbers: their code numbers (4 bytes a code a table); each candidate's
  //   code is then read at a random place to be checked;
  // - kInline: the number with 96 bits of the code from outside the table's
  //   substring (16 bytes a code a table). The distance on those bits is a
  //   lower bound of the full distance, so nearly every candidate farther
  //   than the radius is dropped while the bucket's run is read in order
  //   (a random 96-bit string is within 31 bits of another with probability
  //   ~3e-4); only the rest are checked against their full codes.
  // kAuto: kInline up to kInlineMaxCodes codes (it is about twice as fast at
  // 1M codes, where the numbers layout spends its time waiting for
  // candidates' codes), kNumbers above (where it would not fit the memory
  // budget: 10M codes in 16 tables would take 2.6 GB).
  enum class Layout { kAuto, kNumbers, kInline };
  static constexpr idx_t kInlineMaxCodes = idx_t{1} << 21;

  // num_substrings 0 chooses m at each build: round(256 / log2(ntotal)) within
  // 11..16 for the numbers layout, 16 for the inline one; otherwise 11..32 (a
  // substring of b bits costs 2^b * 4 bytes).
  explicit IndexBinaryMIH(int num_substrings = 0, Layout layout = Layout::kAuto);

  void add(idx_t n, const uint8_t* x) override;
  void reset() override;
  size_t remove_ids(const faiss::IDSelector& sel) override;
  void reconstruct(idx_t key, uint8_t* recons) const override;

  void search(idx_t n, const uint8_t* x, idx_t k, int32_t* distances,
              idx_t* labels,
              const faiss::SearchParameters* params = nullptr) const override;
  void range_search(idx_t n, const uint8_t* x, int radius,
                    faiss::RangeSearchResult* result,
                    const faiss::SearchParameters* params = nullptr) const override;

  // Every code within distance <= radius (0..256) of the 32-byte query, as
  // (position, distance), sorted by position. Thread-safe.
  void RangeSearchLeq(const uint8_t* query, int radius,
                      std::vector<std::pair<idx_t, int>>* out) const;

  // A new index holding this index's codes followed by n more (labels
  // ntotal.. for them). When this index has tables, the new codes are merged
  // into copies of them bucket by bucket, a linear pass that does not look
  // at the old codes again (far cheaper than add(), which rebuilds); the
  // substring layout is kept. Thread-safe (const).
  std::unique_ptr<IndexBinaryMIH> Appended(idx_t n, const uint8_t* x) const;

  // Bytes held by codes and tables.
  size_t MemoryBytes() const;
  int num_substrings() const { return static_cast<int>(tables_.size()); }
  // The layout of the tables (kNumbers when there are none).
  Layout layout() const { return inline_ ? Layout::kInline : Layout::kNumbers; }
  const uint8_t* code(idx_t i) const {
    return reinterpret_cast<const uint8_t*>(&codes_[4 * static_cast<size_t>(i)]);
  }

 private:
  // A member of an inline table: bits of its code and its number.
  struct Entry {
    uint64_t high;    // word high_word of the code
    uint32_t low;     // low half of word (high_word + 1) % 4
    uint32_t number;
  };
  struct Table {
    int bit_offset = 0;
    int bits = 0;
    int high_word = 0;                  // inline: the first word after the substring's
    HugeVector<uint32_t> bucket_start;  // 2^bits + 1
    HugeVector<uint32_t> members;       // numbers layout: code numbers, by bucket
    HugeVector<Entry> entries;          // inline layout: entries, by bucket
    Entry MakeEntry(const uint64_t* code, uint32_t number) const {
      return {code[high_word], static_cast<uint32_t>(code[(high_word + 1) % 4]), number};
    }
  };
  struct Shape {
    int m = 0;  // 0: no tables
    bool inline_members = false;
    bool operator==(const Shape&) const = default;
  };
  Shape ChooseShape(idx_t n) const;
  void Rebuild();
  void ScanLeq(const uint64_t* q, int radius,
               std::vector<std::pair<idx_t, int>>* out) const;

  int requested_substrings_;
  Layout requested_layout_;
  bool inline_ = false;
  HugeVector<uint64_t> codes_;  // 4 words a code
  std::vector<Table> tables_;    // empty: linear scan
};

// Writes the codes as a faiss::IndexBinaryFlat file (faiss::write_index_binary)
// and reads such a file back into an IndexBinaryMIH. FAISS errors are
// returned as kIo / kCorruptData.
Status WriteMih(const IndexBinaryMIH& index, const std::string& path);
Result<std::unique_ptr<IndexBinaryMIH>> ReadMih(const std::string& path,
                                               int num_substrings = 0);

}  // namespace bantay::matcher

#endif  // BANTAY_MATCHER_INDEX_BINARY_MIH_H_
