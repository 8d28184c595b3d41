#include "bantay/matcher/index_binary_mih.h"

#include <faiss/IndexBinaryFlat.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/index_io.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/IDSelector.h>

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <map>
#include <unordered_map>
#include <mutex>
#include <new>
#include <queue>
#include <thread>

namespace bantay::matcher {
namespace {

constexpr int kCodeBytes = 32;
constexpr int kCodeBits = 256;
// Below this many codes a scan (N * 32 bytes, 128 KB) is as fast as probing.
constexpr faiss::Index::idx_t kMinCodesForTables = 4096;
// Builds from this many codes use two threads.
constexpr faiss::Index::idx_t kParallelBuildFrom = 1'000'000;
constexpr int kPrefetchAhead = 12;
// Inline tables: runs prefetched ahead, and at most this many entries of a
// run (the hardware prefetcher follows a long run).
constexpr size_t kPrefetchRunsAhead = 16;
constexpr uint32_t kPrefetchEntries = 32;

inline int Distance(const uint64_t* a, const uint64_t* b) {
  return __builtin_popcountll(a[0] ^ b[0]) + __builtin_popcountll(a[1] ^ b[1]) +
         __builtin_popcountll(a[2] ^ b[2]) + __builtin_popcountll(a[3] ^ b[3]);
}

// Bits [offset, offset + bits) of the code, bits <= 32.
inline uint32_t Substring(const uint64_t* w, int offset, int bits) {
  const int word = offset >> 6;
  const int shift = offset & 63;
  uint64_t v = w[word] >> shift;
  if (shift + bits > 64) v |= w[word + 1] << (64 - shift);
  return static_cast<uint32_t>(v & ((uint64_t{1} << bits) - 1));
}

double Choose(int n, int k) {
  double c = 1;
  for (int i = 0; i < k; ++i) c = c * (n - i) / (i + 1);
  return c;
}

// Calls f(key') for every key' within Hamming distance `radius` of key in
// `bits` bits.
template <typename F>
void ForEachKeyWithin(uint32_t key, int bits, int radius, F&& f) {
  f(key);
  if (radius >= 1) {
    for (int i = 0; i < bits; ++i) f(key ^ (1u << i));
  }
  if (radius >= 2) {
    for (int i = 0; i < bits; ++i) {
      for (int j = i + 1; j < bits; ++j) f(key ^ (1u << i) ^ (1u << j));
    }
  }
  // Radius 3 and more: combinations of exactly d flipped bits, in
  // lexicographic order of the positions.
  for (int d = 3; d <= radius && d <= bits; ++d) {
    int pos[32];
    for (int i = 0; i < d; ++i) pos[i] = i;
    while (true) {
      uint32_t mask = 0;
      for (int i = 0; i < d; ++i) mask |= 1u << pos[i];
      f(key ^ mask);
      int i = d - 1;
      while (i >= 0 && pos[i] == bits - d + i) --i;
      if (i < 0) break;
      ++pos[i];
      for (int j = i + 1; j < d; ++j) pos[j] = pos[j - 1] + 1;
    }
  }
}

// The members [begin, end) of a probed bucket of tables_[table].
struct Run {
  uint32_t table;
  uint32_t begin;
  uint32_t end;
};
struct Scratch {
  std::vector<uint32_t> keys;        // probe keys
  std::vector<uint32_t> tables;      // the table of each probe key
  std::vector<Run> runs;             // non-empty probed buckets
  std::vector<uint32_t> candidates;  // code numbers to verify
};
Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

// Blocks in use (their mapped sizes) and freed blocks kept for reuse.
struct BlockPool {
  struct Kept {
    void* p;
    std::chrono::steady_clock::time_point since;
  };
  std::mutex mu;
  std::unordered_map<void*, size_t> live;  // guarded by mu
  std::multimap<size_t, Kept> kept;        // by size; guarded by mu
  size_t kept_bytes = 0;                   // guarded by mu
};

BlockPool& Pool() {
  static auto* pool = new BlockPool;  // never destroyed: blocks may be freed during exit
  return *pool;
}

// Sorts (bucket, code number) pairs of increasing code numbers by bucket,
// stably (so numbers stay increasing within a bucket): an LSD radix sort on
// the bucket's `bits` bits, in passes of up to 12 bits (std::sort of the
// pairs of a fold cost more than the rest of the fold).
void SortByBucket(HugeVector<std::pair<uint32_t, uint32_t>>& v, int bits,
                  HugeVector<std::pair<uint32_t, uint32_t>>* buffer) {
  buffer->resize(v.size());
  const int passes = (bits + 11) / 12;
  const int pass_bits = (bits + passes - 1) / passes;
  std::vector<uint32_t> count((size_t{1} << pass_bits) + 1);
  for (int pass = 0; pass < passes; ++pass) {
    const int shift = pass * pass_bits;
    const uint32_t mask = (1u << pass_bits) - 1;
    std::fill(count.begin(), count.end(), 0);
    for (const auto& e : v) ++count[((e.first >> shift) & mask) + 1];
    for (size_t b = 1; b < count.size(); ++b) count[b] += count[b - 1];
    for (const auto& e : v) (*buffer)[count[(e.first >> shift) & mask]++] = e;
    v.swap(*buffer);
  }
}

// A copy of a table's bucket starts and members with new codes merged in:
// `added` holds (bucket, code number) sorted by bucket, `make` turns a number
// into a member. Bucket b starts after the old members of buckets < b and
// the new codes of buckets < b; the new codes of a bucket follow its old
// ones. Between two buckets that receive new codes, old members and bucket
// starts move as whole runs.
template <typename T, typename Make>
void MergeIntoCopy(const HugeVector<uint32_t>& old_start, const HugeVector<T>& old_members,
                   const HugeVector<std::pair<uint32_t, uint32_t>>& added,
                   HugeVector<uint32_t>* start, HugeVector<T>* members, Make make) {
  const size_t buckets = old_start.size() - 1;
  start->resize(buckets + 1);
  members->resize(old_members.size() + added.size());
  size_t next_bucket = 0;  // bucket starts set below this
  uint32_t copied = 0;     // old members copied
  T* dst = members->data();
  for (size_t a = 0; a < added.size();) {
    const uint32_t bucket = added[a].first;
    const auto shift = static_cast<uint32_t>(a);  // new codes before this bucket
    for (; next_bucket <= bucket; ++next_bucket) {
      (*start)[next_bucket] = old_start[next_bucket] + shift;
    }
    const uint32_t end = old_start[bucket + 1];
    dst = std::copy(old_members.begin() + copied, old_members.begin() + end, dst);
    copied = end;
    for (; a < added.size() && added[a].first == bucket; ++a) *dst++ = make(added[a].second);
  }
  for (; next_bucket <= buckets; ++next_bucket) {
    (*start)[next_bucket] = old_start[next_bucket] + static_cast<uint32_t>(added.size());
  }
  std::copy(old_members.begin() + copied, old_members.end(), dst);
}

constexpr size_t kPage = 4096;

size_t RoundUp(size_t bytes, size_t unit) { return (bytes + unit - 1) / unit * unit; }

// A new mapping of `size` bytes (a multiple of 4 KB; of 2 MB from 2 MB on,
// then aligned to 2 MB with huge pages asked for).
void* MapBlock(size_t size) {
  const size_t align = size >= kHugeBlock ? kHugeBlock : kPage;
  void* raw = mmap(nullptr, size + align - kPage, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  auto* p = static_cast<char*>(raw);
  char* aligned = reinterpret_cast<char*>(RoundUp(reinterpret_cast<uintptr_t>(p), align));
  if (aligned > p) munmap(p, static_cast<size_t>(aligned - p));
  const size_t tail = static_cast<size_t>(p + size + align - kPage - (aligned + size));
  if (tail > 0) munmap(aligned + size, tail);
  if (align == kHugeBlock) madvise(aligned, size, MADV_HUGEPAGE);  // advice only
  return aligned;
}

}  // namespace

void* AllocateBlock(size_t bytes) {
  BlockPool& pool = Pool();
  {
    std::lock_guard lock(pool.mu);
    // The smallest kept block that holds `bytes`: whole when it would not
    // waste half of itself; a large request is cut from the front of a
    // larger block (at a 2 MB boundary, the rest stays kept).
    auto it = pool.kept.lower_bound(bytes);
    if (it != pool.kept.end()) {
      const size_t size = it->first;
      const BlockPool::Kept block = it->second;
      const size_t cut = RoundUp(bytes + bytes / 4, kHugeBlock);
      if (size <= bytes + bytes / 2) {
        pool.kept.erase(it);
        pool.kept_bytes -= size;
        pool.live.emplace(block.p, size);
        return block.p;
      }
      if (bytes >= kHugeBlock && cut < size) {
        pool.kept.erase(it);
        pool.kept.emplace(size - cut, BlockPool::Kept{static_cast<char*>(block.p) + cut, block.since});
        pool.kept_bytes -= cut;
        pool.live.emplace(block.p, cut);
        return block.p;
      }
    }
  }
  // A quarter more than asked: the next, larger copy of a growing segment
  // fits into this block once it is freed. Pages never written cost nothing.
  size_t size = RoundUp(bytes + bytes / 4, kPage);
  if (size >= kHugeBlock) size = RoundUp(size, kHugeBlock);
  void* p = MapBlock(size);
  std::lock_guard lock(pool.mu);
  pool.live.emplace(p, size);
  return p;
}

void FreeBlock(void* p) {
  BlockPool& pool = Pool();
  std::vector<std::pair<void*, size_t>> unmap;
  {
    std::lock_guard lock(pool.mu);
    auto live = pool.live.find(p);
    const size_t size = live->second;
    pool.live.erase(live);
    pool.kept.emplace(size, BlockPool::Kept{p, std::chrono::steady_clock::now()});
    pool.kept_bytes += size;
    // Over the bound: the oldest blocks go first.
    while (pool.kept_bytes > kMaxKeptBytes) {
      auto oldest = pool.kept.begin();
      for (auto it = pool.kept.begin(); it != pool.kept.end(); ++it) {
        if (it->second.since < oldest->second.since) oldest = it;
      }
      unmap.emplace_back(oldest->second.p, oldest->first);
      pool.kept_bytes -= oldest->first;
      pool.kept.erase(oldest);
    }
  }
  for (const auto& [q, size] : unmap) munmap(q, size);  // outside the lock
}

size_t ReleaseIdleBlocks(double idle_seconds) {
  BlockPool& pool = Pool();
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::pair<void*, size_t>> unmap;
  size_t kept_bytes;
  {
    std::lock_guard lock(pool.mu);
    for (auto it = pool.kept.begin(); it != pool.kept.end();) {
      if (std::chrono::duration<double>(now - it->second.since).count() >= idle_seconds) {
        unmap.emplace_back(it->second.p, it->first);
        pool.kept_bytes -= it->first;
        it = pool.kept.erase(it);
      } else {
        ++it;
      }
    }
    kept_bytes = pool.kept_bytes;
  }
  for (const auto& [q, size] : unmap) munmap(q, size);
  return kept_bytes;
}

IndexBinaryMIH::IndexBinaryMIH(int num_substrings, Layout layout)
    : faiss::IndexBinary(kDimension), requested_substrings_(num_substrings),
      requested_layout_(layout) {
  FAISS_THROW_IF_NOT_MSG(num_substrings == 0 ||
                             (num_substrings >= 11 && num_substrings <= 32),
                         "num_substrings must be 0 (automatic) or 11..32 (substrings of at most 24 bits)");
}

void IndexBinaryMIH::add(idx_t n, const uint8_t* x) {
  FAISS_THROW_IF_NOT_MSG(ntotal + n <= UINT32_MAX, "too many codes");
  const size_t old = codes_.size();
  codes_.resize(old + 4 * static_cast<size_t>(n));
  std::memcpy(codes_.data() + old, x, static_cast<size_t>(n) * kCodeBytes);
  ntotal += n;
  Rebuild();
}

void IndexBinaryMIH::reset() {
  codes_.clear();
  tables_.clear();
  inline_ = false;
  ntotal = 0;
}

size_t IndexBinaryMIH::remove_ids(const faiss::IDSelector& sel) {
  size_t kept = 0;
  for (idx_t i = 0; i < ntotal; ++i) {
    if (sel.is_member(i)) continue;
    std::memmove(&codes_[4 * kept], &codes_[4 * static_cast<size_t>(i)], kCodeBytes);
    ++kept;
  }
  const size_t removed = static_cast<size_t>(ntotal) - kept;
  codes_.resize(4 * kept);
  ntotal = static_cast<idx_t>(kept);
  Rebuild();
  return removed;
}

void IndexBinaryMIH::reconstruct(idx_t key, uint8_t* recons) const {
  FAISS_THROW_IF_NOT(key >= 0 && key < ntotal);
  std::memcpy(recons, code(key), kCodeBytes);
}

IndexBinaryMIH::Shape IndexBinaryMIH::ChooseShape(idx_t n) const {
  Shape shape;
  if (n < kMinCodesForTables) return shape;
  shape.inline_members = requested_layout_ == Layout::kInline ||
                         (requested_layout_ == Layout::kAuto && n <= kInlineMaxCodes);
  shape.m = requested_substrings_;
  if (shape.m == 0 && shape.inline_members) {
    // Candidates cost little when inline, probes (a random read each) much:
    // 16 substrings of 16 bits need 17 probes each at radius 31.
    shape.m = 16;
  } else if (shape.m == 0) {
    shape.m = static_cast<int>(std::lround(kCodeBits / std::log2(static_cast<double>(n))));
    shape.m = std::clamp(shape.m, 11, 16);
  }
  return shape;
}

void IndexBinaryMIH::Rebuild() {
  tables_.clear();
  const Shape shape = ChooseShape(ntotal);
  inline_ = shape.inline_members;
  const int m = shape.m;
  if (m == 0) return;
  tables_.resize(m);
  int offset = 0;
  for (int k = 0; k < m; ++k) {
    Table& t = tables_[k];
    t.bit_offset = offset;
    t.bits = kCodeBits / m + (k < kCodeBits % m ? 1 : 0);
    offset += t.bits;
    t.high_word = ((t.bit_offset + t.bits - 1) / 64 + 1) % 4;
  }
  auto build_table = [this](Table& t) {
    // Counting sort of the code numbers by substring value.
    t.bucket_start.assign((size_t{1} << t.bits) + 1, 0);
    for (idx_t i = 0; i < ntotal; ++i) {
      ++t.bucket_start[Substring(&codes_[4 * i], t.bit_offset, t.bits) + 1];
    }
    for (size_t b = 1; b < t.bucket_start.size(); ++b) {
      t.bucket_start[b] += t.bucket_start[b - 1];
    }
    // The bucket starts serve as the fill cursors (no second array of 2^b
    // words to allocate and touch): afterwards bucket_start[b] holds the
    // start of bucket b+1, and one shift puts them back.
    uint32_t* cursor = t.bucket_start.data();
    auto fill = [&](auto& members, auto make) {
      members.resize(static_cast<size_t>(ntotal));
      for (idx_t i = 0; i < ntotal; ++i) {
        const uint64_t* c = &codes_[4 * i];
        members[cursor[Substring(c, t.bit_offset, t.bits)]++] = make(c, static_cast<uint32_t>(i));
      }
    };
    if (inline_) {
      fill(t.entries, [&t](const uint64_t* c, uint32_t i) { return t.MakeEntry(c, i); });
    } else {
      fill(t.members, [](const uint64_t*, uint32_t i) { return i; });
    }
    std::memmove(cursor + 1, cursor, (t.bucket_start.size() - 1) * sizeof(uint32_t));
    cursor[0] = 0;
  };
  // The tables are independent: a large build (a replica loading its
  // index) uses a second core for every other table.
  const bool two_threads = ntotal >= kParallelBuildFrom && std::thread::hardware_concurrency() > 1;
  std::thread helper;
  if (two_threads) {
    helper = std::thread([&] {
      for (int k = 1; k < m; k += 2) build_table(tables_[k]);
    });
  }
  for (int k = 0; k < m; k += two_threads ? 2 : 1) build_table(tables_[k]);
  if (helper.joinable()) helper.join();
}

std::unique_ptr<IndexBinaryMIH> IndexBinaryMIH::Appended(idx_t n, const uint8_t* x) const {
  auto out = std::make_unique<IndexBinaryMIH>(requested_substrings_, requested_layout_);
  out->codes_.reserve(codes_.size() + 4 * static_cast<size_t>(n));
  out->codes_ = codes_;
  out->codes_.resize(codes_.size() + 4 * static_cast<size_t>(n));
  if (n > 0) {  // x may be null when there is nothing to append
    std::memcpy(out->codes_.data() + codes_.size(), x, static_cast<size_t>(n) * kCodeBytes);
  }
  out->ntotal = ntotal + n;
  FAISS_THROW_IF_NOT_MSG(out->ntotal <= UINT32_MAX, "too many codes");
  // A new size that calls for another shape (more or fewer substrings,
  // another layout) is built anew; that happens once in a while as an index
  // grows (at 2^21 codes, and when round(256 / log2 N) changes).
  if (tables_.empty() || ChooseShape(out->ntotal) != Shape{num_substrings(), inline_}) {
    out->Rebuild();
    return out;
  }
  out->inline_ = inline_;
  out->tables_.resize(tables_.size());
  // The new codes of one table, by (bucket, code number).
  HugeVector<std::pair<uint32_t, uint32_t>> added(static_cast<size_t>(n)), sort_buffer;
  for (size_t k = 0; k < tables_.size(); ++k) {
    const Table& old = tables_[k];
    Table& t = out->tables_[k];
    t.bit_offset = old.bit_offset;
    t.bits = old.bits;
    t.high_word = old.high_word;
    for (idx_t j = 0; j < n; ++j) {
      const auto number = static_cast<uint32_t>(ntotal + j);
      added[static_cast<size_t>(j)] = {
          Substring(&out->codes_[4 * static_cast<size_t>(number)], t.bit_offset, t.bits), number};
    }
    SortByBucket(added, t.bits, &sort_buffer);
    if (inline_) {
      MergeIntoCopy(old.bucket_start, old.entries, added, &t.bucket_start, &t.entries,
                    [&](uint32_t number) {
                      return t.MakeEntry(&out->codes_[4 * static_cast<size_t>(number)], number);
                    });
    } else {
      MergeIntoCopy(old.bucket_start, old.members, added, &t.bucket_start, &t.members,
                    [](uint32_t number) { return number; });
    }
  }
  return out;
}

size_t IndexBinaryMIH::MemoryBytes() const {
  size_t bytes = codes_.capacity() * sizeof(uint64_t);
  for (const Table& t : tables_) {
    bytes += (t.bucket_start.capacity() + t.members.capacity()) * sizeof(uint32_t) +
             t.entries.capacity() * sizeof(Entry);
  }
  return bytes;
}

void IndexBinaryMIH::ScanLeq(const uint64_t* q, int radius,
                             std::vector<std::pair<idx_t, int>>* out) const {
  const uint64_t* c = codes_.data();
  for (idx_t i = 0; i < ntotal; ++i, c += 4) {
    const int dist = Distance(q, c);
    if (dist <= radius) out->emplace_back(i, dist);
  }
}

void IndexBinaryMIH::RangeSearchLeq(const uint8_t* query, int radius,
                                    std::vector<std::pair<idx_t, int>>* out) const {
  out->clear();
  if (radius < 0) return;
  uint64_t q[4];
  std::memcpy(q, query, kCodeBytes);
  const int m = static_cast<int>(tables_.size());
  if (m == 0) {
    ScanLeq(q, radius, out);
    return;
  }
  // Pigeonhole with the remainder (Norouzi et al., section 3): r = m*s + a.
  const int s = radius / m;
  const int a = radius % m;
  double probes = 0;
  for (int k = 0; k < m; ++k) {
    const int rk = k <= a ? s : s - 1;
    for (int i = 0; i <= rk; ++i) probes += Choose(tables_[k].bits, i);
  }
  // Each probe costs about a cache miss, each candidate another; a scan
  // reads 32 bytes a code sequentially.
  const double expected_candidates =
      probes * static_cast<double>(ntotal) / std::ldexp(1.0, tables_[0].bits);
  if (probes + expected_candidates > static_cast<double>(ntotal) / 8) {
    ScanLeq(q, radius, out);
    return;
  }

  Scratch& scratch = ThreadScratch();
  std::vector<uint32_t>& candidates = scratch.candidates;
  std::vector<uint32_t>& keys = scratch.keys;
  std::vector<uint32_t>& tables = scratch.tables;
  std::vector<Run>& runs = scratch.runs;
  candidates.clear();
  keys.clear();
  tables.clear();
  runs.clear();
  // First the bucket runs of every probe (bucket starts prefetched ahead),
  // then their members (each run prefetched ahead: a run is a random place
  // in a large array, so reading runs one after the other would wait for
  // memory at every probe).
  for (int k = 0; k < m; ++k) {
    const int rk = k <= a ? s : s - 1;
    if (rk < 0) continue;
    const Table& t = tables_[k];
    ForEachKeyWithin(Substring(q, t.bit_offset, t.bits), t.bits, rk,
                     [&](uint32_t key) { keys.push_back(key); });
    tables.resize(keys.size(), static_cast<uint32_t>(k));
  }
  // Over all tables' probes at once: a table may have only 17 of them.
  const size_t n_keys = keys.size();
  for (size_t i = 0; i < n_keys; ++i) {
    if (i + kPrefetchAhead < n_keys) {
      __builtin_prefetch(tables_[tables[i + kPrefetchAhead]].bucket_start.data() +
                         keys[i + kPrefetchAhead]);
    }
    const uint32_t* starts = tables_[tables[i]].bucket_start.data();
    const uint32_t begin = starts[keys[i]];
    const uint32_t end = starts[keys[i] + 1];
    if (begin != end) runs.push_back({tables[i], begin, end});
  }
  const size_t n_runs = runs.size();
  if (inline_) {
    // (Written out in the loop: GCC takes a function that only prefetches
    // for one without effects and drops its calls.)
    for (size_t i = 0; i < n_runs + kPrefetchRunsAhead; ++i) {
      if (i < n_runs) {
        const Run& r = runs[i];
        const Entry* e = tables_[r.table].entries.data() + r.begin;
        const uint32_t n = std::min(r.end - r.begin, kPrefetchEntries);
        for (uint32_t j = 0; j < n; j += 4) __builtin_prefetch(e + j);
        __builtin_prefetch(e + n - 1);
      }
      if (i < kPrefetchRunsAhead) continue;
      const Run& run = runs[i - kPrefetchRunsAhead];
      const Table& t = tables_[run.table];
      const uint64_t high = q[t.high_word];
      const auto low = static_cast<uint32_t>(q[(t.high_word + 1) % 4]);
      const Entry* e = t.entries.data();
      for (uint32_t j = run.begin, end = run.end; j < end; ++j) {
        const int bound = __builtin_popcountll(e[j].high ^ high) + __builtin_popcount(e[j].low ^ low);
        if (bound <= radius) candidates.push_back(e[j].number);
      }
    }
  } else {
    for (size_t i = 0; i < n_runs; ++i) {
      if (i + kPrefetchAhead < n_runs) {
        const Run& r = runs[i + kPrefetchAhead];
        __builtin_prefetch(tables_[r.table].members.data() + r.begin);
      }
      const uint32_t* members = tables_[runs[i].table].members.data();
      candidates.insert(candidates.end(), members + runs[i].begin, members + runs[i].end);
    }
  }
  const size_t n_candidates = candidates.size();
  const uint64_t* codes = codes_.data();
  for (size_t i = 0; i < n_candidates; ++i) {
    if (i + kPrefetchAhead < n_candidates) {
      __builtin_prefetch(codes + 4 * static_cast<size_t>(candidates[i + kPrefetchAhead]));
    }
    const uint32_t id = candidates[i];
    const int dist = Distance(q, codes + 4 * static_cast<size_t>(id));
    if (dist <= radius) out->emplace_back(id, dist);
  }
  // A code near the query can sit in the probed buckets of several
  // substrings.
  std::sort(out->begin(), out->end());
  out->erase(std::unique(out->begin(), out->end()), out->end());
}

void IndexBinaryMIH::range_search(idx_t n, const uint8_t* x, int radius,
                                  faiss::RangeSearchResult* result,
                                  const faiss::SearchParameters*) const {
  std::vector<std::vector<std::pair<idx_t, int>>> found(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 16) if (n > 1)
  for (idx_t i = 0; i < n; ++i) {
    RangeSearchLeq(x + kCodeBytes * i, radius - 1, &found[static_cast<size_t>(i)]);
  }
  // do_allocation takes the counts in lims and makes them offsets.
  for (idx_t i = 0; i < n; ++i) result->lims[i] = found[i].size();
  result->do_allocation();
  for (idx_t i = 0; i < n; ++i) {
    size_t at = result->lims[i];
    for (const auto& [label, dist] : found[i]) {
      result->labels[at] = label;
      result->distances[at] = static_cast<float>(dist);
      ++at;
    }
  }
}

void IndexBinaryMIH::search(idx_t n, const uint8_t* x, idx_t k,
                            int32_t* distances, idx_t* labels,
                            const faiss::SearchParameters*) const {
  // Neighbours within the PDQ match radius come from the tables; when fewer
  // than k are that close, the exact answer needs a scan.
#pragma omp parallel for schedule(dynamic, 16) if (n > 1)
  for (idx_t i = 0; i < n; ++i) {
    std::vector<std::pair<idx_t, int>> near;
    RangeSearchLeq(x + kCodeBytes * i, 31, &near);
    if (static_cast<idx_t>(near.size()) < k) {
      uint64_t q[4];
      std::memcpy(q, x + kCodeBytes * i, kCodeBytes);
      near.clear();
      ScanLeq(q, kCodeBits, &near);
    }
    std::vector<std::pair<int, idx_t>> by_distance;
    by_distance.reserve(near.size());
    for (const auto& [label, dist] : near) by_distance.emplace_back(dist, label);
    const size_t keep = std::min<size_t>(static_cast<size_t>(k), by_distance.size());
    std::partial_sort(by_distance.begin(), by_distance.begin() + keep, by_distance.end());
    for (idx_t j = 0; j < k; ++j) {
      const bool have = static_cast<size_t>(j) < keep;
      distances[i * k + j] = have ? by_distance[j].first : std::numeric_limits<int32_t>::max();
      labels[i * k + j] = have ? by_distance[j].second : -1;
    }
  }
}

Status WriteMih(const IndexBinaryMIH& index, const std::string& path) {
  try {
    faiss::IndexBinaryFlat flat(IndexBinaryMIH::kDimension);
    if (index.ntotal > 0) flat.add(index.ntotal, index.code(0));
    faiss::write_index_binary(&flat, path.c_str());
  } catch (const faiss::FaissException& e) {
    return Error(ErrorCode::kIo, "cannot write " + path);
  }
  return {};
}

Result<std::unique_ptr<IndexBinaryMIH>> ReadMih(const std::string& path, int num_substrings) {
  std::unique_ptr<faiss::IndexBinary> read;
  try {
    read.reset(faiss::read_index_binary(path.c_str()));
  } catch (const faiss::FaissException& e) {
    return Error(ErrorCode::kCorruptData, "not a FAISS binary index file: " + path);
  }
  auto* flat = dynamic_cast<faiss::IndexBinaryFlat*>(read.get());
  if (flat == nullptr || flat->d != IndexBinaryMIH::kDimension) {
    return Error(ErrorCode::kCorruptData,
                 "expected a 256-bit IndexBinaryFlat in " + path);
  }
  auto mih = std::make_unique<IndexBinaryMIH>(num_substrings);
  if (flat->ntotal > 0) mih->add(flat->ntotal, flat->xb.data());
  return mih;
}

}  // namespace bantay::matcher
