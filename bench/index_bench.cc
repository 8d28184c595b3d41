// Exact radius-31 search over PDQ codes: Bantay's IndexBinaryMIH against
// the baselines, in one run.
//
// Workloads (fixed seeds):
//   random-10M   10M uniformly random 256-bit codes plus, for each of 2000
//                queries, near-duplicates planted at random distances 0..40
//   random-1M    the same with 1M codes
//   clustered-1M 100k centres with 10 codes each within distance 20 of the
//                centre; queries within 15 bits of a centre
// Baselines, same codes and queries:
//   hma          faiss::IndexBinaryIDMap2(IndexBinaryMultiHash(256, 16, 16)),
//                nflip=1: Meta HMA's configuration
//   scan         a plain 4x64-bit popcount loop over all codes
// Reported: single-core queries/s (median of 5 passes), recall against the
// scan, 8-variant dihedral queries/s, index memory and build time, batched
// queries on 1 and 2 threads, MD5/SHA-256 lookups/s, and query throughput
// while 1M entries are added to a live HashIndex of 10M.
//
// Run: build/bin/index_bench            (everything, ~15 min, ~9 GB of RAM)
//      build/bin/index_bench --quick    (1M only, no HMA at 10M)
//      build/bin/index_bench --live     (only the live-update part: 3 cycles
//                                        of 5 s idle, then 1M entries added in
//                                        batches of 10k and merged, then 5 s
//                                        idle; HashIndex
//                                        options from LIVE_MERGE, LIVE_RECENT,
//                                        LIVE_BACKLOG when set)
//      build/bin/index_bench --tiers    (query CPU against a 10M base with a
//                                        delta tier of 0..1M entries)
#include <faiss/IndexBinaryHash.h>
#include <faiss/IndexIDMap.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bantay/matcher/hash_index.h"
#include "bantay/matcher/index_binary_mih.h"
#include "bantay/models/digest.h"
#include "bantay/models/pdq.h"
#include "bench_util.h"

namespace {

using bantay::matcher::HashIndex;
using bantay::matcher::IndexBinaryMIH;
using bantay::matcher::IndexEntry;
using bantay::matcher::SignalType;
using bantay::models::Hash256;
using idx_t = faiss::Index::idx_t;
using bantay::bench::Clock;
using bantay::bench::Median;
using bantay::bench::Seconds;
using bantay::bench::StatCpuSeconds;

size_t RssBytes() {
  std::ifstream status("/proc/self/statm");
  size_t pages_total = 0, pages_resident = 0;
  status >> pages_total >> pages_resident;
  return pages_resident * 4096;
}

struct Dataset {
  std::string name;
  std::vector<uint64_t> codes;    // 4 words a code
  std::vector<uint64_t> queries;  // 4 words a query
  idx_t n() const { return static_cast<idx_t>(codes.size() / 4); }
  size_t nq() const { return queries.size() / 4; }
  const uint8_t* code_bytes() const { return reinterpret_cast<const uint8_t*>(codes.data()); }
  const uint8_t* query(size_t i) const {
    return reinterpret_cast<const uint8_t*>(&queries[4 * i]);
  }
};

void FlipBits(uint64_t* w, int bits, std::mt19937_64& rng) {
  std::vector<int> pos(256);
  for (int i = 0; i < 256; ++i) pos[i] = i;
  for (int i = 0; i < bits; ++i) {
    std::swap(pos[i], pos[i + static_cast<int>(rng() % static_cast<unsigned>(256 - i))]);
    w[pos[i] / 64] ^= uint64_t{1} << (pos[i] % 64);
  }
}

Dataset Random(idx_t n, size_t nq, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Dataset d;
  d.name = "random-" + std::to_string(n / 1'000'000) + "M";
  d.codes.resize(4 * static_cast<size_t>(n));
  for (auto& w : d.codes) w = rng();
  d.queries.resize(4 * nq);
  for (auto& w : d.queries) w = rng();
  // Plant 1..4 near-duplicates of each query at distances 0..40.
  for (size_t q = 0; q < nq; ++q) {
    const int copies = 1 + static_cast<int>(rng() % 4);
    for (int c = 0; c < copies; ++c) {
      uint64_t* target = &d.codes[4 * (rng() % static_cast<uint64_t>(n))];
      std::memcpy(target, &d.queries[4 * q], 32);
      FlipBits(target, static_cast<int>(rng() % 41), rng);
    }
  }
  return d;
}

Dataset Clustered(idx_t n, size_t nq, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Dataset d;
  d.name = "clustered-" + std::to_string(n / 1'000'000) + "M";
  d.codes.resize(4 * static_cast<size_t>(n));
  std::vector<uint64_t> centres(4 * static_cast<size_t>(n / 10));
  for (auto& w : centres) w = rng();
  for (idx_t i = 0; i < n; ++i) {
    std::memcpy(&d.codes[4 * i], &centres[4 * (i / 10)], 32);
    FlipBits(&d.codes[4 * i], static_cast<int>(rng() % 21), rng);
  }
  d.queries.resize(4 * nq);
  for (size_t q = 0; q < nq; ++q) {
    std::memcpy(&d.queries[4 * q], &centres[4 * (rng() % (centres.size() / 4))], 32);
    FlipBits(&d.queries[4 * q], static_cast<int>(rng() % 16), rng);
  }
  return d;
}

// The baseline scan: 4 popcounts a code.
void Scan(const Dataset& d, const uint8_t* query, int radius, std::vector<idx_t>* out) {
  uint64_t q[4];
  std::memcpy(q, query, 32);
  out->clear();
  const uint64_t* c = d.codes.data();
  for (idx_t i = 0; i < d.n(); ++i, c += 4) {
    const int dist = __builtin_popcountll(q[0] ^ c[0]) + __builtin_popcountll(q[1] ^ c[1]) +
                     __builtin_popcountll(q[2] ^ c[2]) + __builtin_popcountll(q[3] ^ c[3]);
    if (dist <= radius) out->push_back(i);
  }
}

// Queries/s of f over the first `count` queries, median of `passes`.
double Rate(size_t count, int passes, const std::function<void(size_t)>& f) {
  std::vector<double> rates;
  for (int p = 0; p < passes; ++p) {
    const auto start = Clock::now();
    for (size_t i = 0; i < count; ++i) f(i);
    rates.push_back(static_cast<double>(count) / Seconds(start));
  }
  return Median(rates);
}

struct MihFigures {
  double qps = 0, dihedral_qps = 0, recall = 0, build_s = 0, memory_gb = 0;
  size_t found = 0;
};

MihFigures MeasureMih(const Dataset& d, size_t recall_queries) {
  MihFigures f;
  const size_t rss_before = RssBytes();
  const auto start = Clock::now();
  IndexBinaryMIH index;
  index.add(d.n(), d.code_bytes());
  f.build_s = Seconds(start);
  f.memory_gb = static_cast<double>(index.MemoryBytes()) / 1e9;
  std::printf("  [%s] MIH built in %.1f s, m=%d, %.2f GB (RSS +%.2f GB)\n", d.name.c_str(),
              f.build_s, index.num_substrings(), f.memory_gb,
              static_cast<double>(RssBytes() - rss_before) / 1e9);
  std::vector<std::pair<idx_t, int>> got;
  f.qps = Rate(d.nq(), 5, [&](size_t i) { index.RangeSearchLeq(d.query(i), 31, &got); });
  const size_t dihedral_n = std::min<size_t>(d.nq(), 500);
  f.dihedral_qps = Rate(dihedral_n, 5, [&](size_t i) {
    Hash256 h(*reinterpret_cast<const std::array<uint8_t, 32>*>(d.query(i)));
    for (const Hash256& v : bantay::models::DihedralFromHash(h)) {
      index.RangeSearchLeq(v.data(), 31, &got);
    }
  });
  // Recall: every code the scan finds within 31 must be found.
  size_t expected = 0, matched = 0;
  std::vector<idx_t> truth;
  for (size_t i = 0; i < recall_queries; ++i) {
    Scan(d, d.query(i), 31, &truth);
    index.RangeSearchLeq(d.query(i), 31, &got);
    expected += truth.size();
    for (idx_t t : truth) {
      matched += std::binary_search(got.begin(), got.end(), std::pair<idx_t, int>{t, 0},
                                    [](const auto& a, const auto& b) { return a.first < b.first; });
    }
    if (got.size() != truth.size()) std::printf("  !! query %zu: %zu vs %zu\n", i, got.size(), truth.size());
  }
  f.found = expected;
  f.recall = expected ? static_cast<double>(matched) / static_cast<double>(expected) : 1.0;

  // Batched: all queries in one range_search call on 1 and 2 threads.
  std::vector<uint8_t> batch(d.queries.size() * 8);
  std::memcpy(batch.data(), d.queries.data(), batch.size());
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    const double qps = Rate(1, 3, [&](size_t) {
      faiss::RangeSearchResult result(static_cast<idx_t>(d.nq()));
      index.range_search(static_cast<idx_t>(d.nq()), batch.data(), 32, &result);
    }) * static_cast<double>(d.nq());
    std::printf("  [%s] batched range_search of %zu queries, %d thread(s): %.0f q/s\n",
                d.name.c_str(), d.nq(), threads, qps);
  }
  omp_set_num_threads(1);
  return f;
}

double MeasureHma(const Dataset& d, size_t queries) {
  const auto start = Clock::now();
  const size_t rss_before = RssBytes();
  auto* multihash = new faiss::IndexBinaryMultiHash(256, 16, 16);
  multihash->nflip = 1;
  faiss::IndexBinaryIDMap2 index(multihash);
  index.own_fields = true;
  std::vector<idx_t> ids(static_cast<size_t>(d.n()));
  for (idx_t i = 0; i < d.n(); ++i) ids[i] = i;
  index.add_with_ids(d.n(), d.code_bytes(), ids.data());
  std::printf("  [%s] HMA index built in %.1f s (RSS +%.2f GB)\n", d.name.c_str(), Seconds(start),
              static_cast<double>(RssBytes() - rss_before) / 1e9);
  omp_set_num_threads(1);
  return Rate(queries, 3, [&](size_t i) {
    faiss::RangeSearchResult result(1);
    index.range_search(1, d.query(i), 32, &result);  // strict: distance <= 31
  });
}

double MeasureScan(const Dataset& d, size_t queries) {
  std::vector<idx_t> out;
  return Rate(queries, 3, [&](size_t i) { Scan(d, d.query(i), 31, &out); });
}

IndexEntry MakeEntry(uint64_t id, SignalType type, const std::array<uint8_t, 32>& value,
                     std::string reference) {
  return IndexEntry{id, "bench", type, value, "A1", std::move(reference)};
}

std::array<uint8_t, 32> RandomValue(std::mt19937_64& rng) {
  std::array<uint8_t, 32> v;
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

void ExactLookups() {
  std::mt19937_64 rng(99);
  HashIndex index;
  std::vector<IndexEntry> entries;
  std::vector<std::array<uint8_t, 32>> keys;
  for (uint64_t i = 0; i < 2'000'000; ++i) {
    const SignalType type = i % 2 ? SignalType::kSha256 : SignalType::kMd5;
    std::array<uint8_t, 32> value = RandomValue(rng);
    if (type == SignalType::kMd5) std::fill(value.begin() + 16, value.end(), 0);
    keys.push_back(value);
    entries.push_back(MakeEntry(i + 1, type, value, ""));
  }
  (void)index.Add(std::move(entries));
  index.MergeNow();
  index.WaitForMerge();
  auto snap = index.Snapshot();
  std::vector<bantay::matcher::Match> m;
  size_t hits = 0;
  const double rate = Rate(keys.size(), 3, [&](size_t i) {
    // Half the lookups hit, half miss (a flipped byte).
    std::array<uint8_t, 32> k = keys[i];
    if (i % 4 >= 2) k[3] ^= 0x5A;
    snap->MatchExact(i % 2 ? SignalType::kSha256 : SignalType::kMd5, k.data(), &m);
    hits += m.size();
  });
  std::printf("  MD5/SHA-256 exact lookups over 2M entries: %.2f M lookups/s (%zu hits)\n",
              rate / 1e6, hits / 3);
}

// CPU seconds (user + system) of each of this process's threads, by tid.
std::map<int, double> ThreadCpu() {
  std::map<int, double> cpu;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    cpu[std::stoi(task.path().filename())] = StatCpuSeconds(task.path() / "stat");
  }
  return cpu;
}

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void LiveUpdates(const Dataset& d) {
  bantay::matcher::HashIndexOptions options;
  if (const char* v = std::getenv("LIVE_MERGE")) options.merge_threshold = std::stoul(v);
  if (const char* v = std::getenv("LIVE_RECENT")) options.recent_limit = std::stoul(v);
  if (const char* v = std::getenv("LIVE_BACKLOG")) options.recent_backlog = std::stoul(v);
  HashIndex index(options);
  {
    std::vector<IndexEntry> entries;
    entries.reserve(static_cast<size_t>(d.n()));
    for (idx_t i = 0; i < d.n(); ++i) {
      std::array<uint8_t, 32> value;
      std::memcpy(value.data(), &d.codes[4 * i], 32);
      char reference[24];
      std::snprintf(reference, sizeof(reference), "r%lld", static_cast<long long>(i));
      entries.push_back(MakeEntry(static_cast<uint64_t>(i) + 1, SignalType::kPdq, value, reference));
    }
    const auto start = Clock::now();
    (void)index.Add(std::move(entries));
    std::printf("  [live] HashIndex of %lld entries loaded in %.1f s, %.2f GB\n",
                static_cast<long long>(d.n()), Seconds(start),
                static_cast<double>(index.Snapshot()->MemoryBytes()) / 1e9);
  }
  // Let the machine settle after the load (gigabytes were just freed).
  std::this_thread::sleep_for(std::chrono::seconds(5));
  // One reader queries all along; the phase (0 idle, 1 adding) and the
  // cycle are read before and after each window of 500 queries, and a
  // window that spans a change is dropped. Idle periods of 5 s come before
  // each cycle and after the last, so each cycle's busy rate is compared
  // both with the idle rate just before it and with the mean of the idle
  // rates before and after it (as server_bench brackets its offline JPEG
  // rate): the host's speed drifts, and the index grows by 1M during the
  // cycle.
  constexpr int kCycles = 3;
  std::atomic<int> phase{0}, cycle{0};
  std::atomic<bool> stop{false};
  struct Window { double qps, cpu_us; };
  std::vector<Window> windows[kCycles + 1][2];  // [kCycles][0]: the idle after the last cycle
  std::atomic<int> reader_tid{0};
  std::thread reader([&] {
    reader_tid = static_cast<int>(gettid());
    std::vector<bantay::matcher::Match> m;
    size_t i = 0;
    while (!stop) {
      const int p = phase, c = cycle;
      const auto start = Clock::now();
      const double cpu = ThreadCpuSeconds();
      for (int k = 0; k < 500; ++k, ++i) {
        index.Snapshot()->MatchPdq(Hash256(*reinterpret_cast<const std::array<uint8_t, 32>*>(
                                       d.query(i % d.nq()))),
                                   31, &m);
      }
      const Window w{500 / Seconds(start), (ThreadCpuSeconds() - cpu) / 500 * 1e6};
      if (p == phase && c == cycle && c <= kCycles) windows[c][p].push_back(w);
    }
  });
  auto median_of = [](const std::vector<Window>& ws, double Window::*field) {
    std::vector<double> v;
    for (const Window& w : ws) v.push_back(w.*field);
    return v.empty() ? 0.0 : Median(v);
  };
  std::mt19937_64 rng(7);
  uint64_t next_id = static_cast<uint64_t>(d.n()) + 1;
  std::vector<double> ratios;
  for (int c = 0; c < kCycles; ++c) {
    std::this_thread::sleep_for(std::chrono::seconds(5));  // idle
    const size_t rss_idle = RssBytes();
    const std::map<int, double> cpu_before = ThreadCpu();
    phase = 1;
    // Visibility: a watcher polls (every 0.5 ms) for the first entry of
    // the batch being added; Add may return later than that (it waits when
    // the background work is behind).
    double max_visible = 0, max_add = 0;
    std::atomic<uint64_t> watched{0};
    std::atomic<double> visible_after{0};
    std::atomic<Clock::rep> call_time{0};
    std::atomic<bool> watching{true};
    std::thread watcher([&] {
      uint64_t done = 0;
      while (watching) {
        const uint64_t id = watched;
        if (id != done && index.Snapshot()->Contains(id)) {
          visible_after = std::chrono::duration<double>(
                              Clock::now() - Clock::time_point(Clock::duration(call_time.load())))
                              .count();
          done = id;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      }
    });
    const auto start = Clock::now();
    for (int batch = 0; batch < 100; ++batch) {
      std::vector<IndexEntry> entries;
      for (int k = 0; k < 10'000; ++k) {
        entries.push_back(MakeEntry(next_id++, SignalType::kPdq, RandomValue(rng), "new"));
      }
      const auto t = Clock::now();
      call_time = t.time_since_epoch().count();
      visible_after = -1;
      watched = entries.front().id;
      (void)index.Add(std::move(entries));
      max_add = std::max(max_add, Seconds(t));
      while (visible_after.load() < 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
      max_visible = std::max(max_visible, visible_after.load());
    }
    watching = false;
    watcher.join();
    const double add_s = Seconds(start);
    index.WaitForMerge();  // the background work of these adds, too
    const double busy_s = Seconds(start);
    const size_t rss_busy = RssBytes();
    const std::map<int, double> cpu_after = ThreadCpu();
    phase = 0;
    cycle = c + 1;
    double writer_cpu = 0, reader_cpu = 0, background_cpu = 0;
    for (const auto& [tid, seconds] : cpu_after) {
      const double used = seconds - (cpu_before.count(tid) ? cpu_before.at(tid) : 0.0);
      if (tid == static_cast<int>(getpid())) {
        writer_cpu += used;
      } else if (tid == reader_tid) {
        reader_cpu += used;
      } else {
        background_cpu += used;
      }
    }
    const double idle = median_of(windows[c][0], &Window::qps);
    const double busy = median_of(windows[c][1], &Window::qps);
    ratios.push_back(busy / idle);
    std::printf("  [live] cycle %d: 1M added in 100 batches in %.1f s (slowest batch visible after "
                "%.3f s, slowest Add call %.3f s), merged by %.1f s; index now %zu entries; "
                "resident memory %.2f GB before, %.2f GB after\n",
                c + 1, add_s, max_visible, max_add, busy_s, index.Snapshot()->size(SignalType::kPdq),
                static_cast<double>(rss_idle) / 1e9, static_cast<double>(rss_busy) / 1e9);
    std::printf("  [live] cycle %d: query rate idle %.0f q/s, while adding and merging %.0f q/s = "
                "%.2fx; reader CPU a query %.1f / %.1f us; cores used meanwhile: reader %.2f, "
                "writer %.2f, background %.2f\n",
                c + 1, idle, busy, busy / idle, median_of(windows[c][0], &Window::cpu_us),
                median_of(windows[c][1], &Window::cpu_us), reader_cpu / busy_s,
                writer_cpu / busy_s, background_cpu / busy_s);
  }
  std::this_thread::sleep_for(std::chrono::seconds(5));  // the idle after the last cycle
  stop = true;
  reader.join();
  std::vector<double> bracketed;
  for (int c = 0; c < kCycles; ++c) {
    const double before = median_of(windows[c][0], &Window::qps);
    const double after = median_of(windows[c + 1][0], &Window::qps);
    const double busy = median_of(windows[c][1], &Window::qps);
    bracketed.push_back(busy / ((before + after) / 2));
    std::printf("  [live] cycle %d: idle %.0f q/s before, %.0f after; while adding %.0f q/s = "
                "%.2fx the idle before, %.2fx the mean of before and after\n",
                c + 1, before, after, busy, busy / before, bracketed.back());
  }
  std::printf("  [live] query rate while adding / idle: median %.2fx of %d cycles against the idle "
              "before and after (%.2fx against the idle before only) (target >= 0.80)\n",
              Median(bracketed), kCycles, Median(ratios));
  // Memory kept for the next merge is given back once unused for 10 s.
  std::this_thread::sleep_for(std::chrono::seconds(22));
  std::printf("  [live] resident memory 22 s after the last merge: %.2f GB (index %.2f GB)\n",
              static_cast<double>(RssBytes()) / 1e9,
              static_cast<double>(index.Snapshot()->MemoryBytes()) / 1e9);
}

// Query cost (CPU of the querying thread) against a 10M base plus a delta
// tier of growing size.
void TierCosts(const Dataset& d) {
  bantay::matcher::HashIndexOptions options;
  options.merge_threshold = 100'000'000;
  HashIndex index(options);
  {
    std::vector<IndexEntry> entries;
    for (idx_t i = 0; i < d.n(); ++i) {
      std::array<uint8_t, 32> value;
      std::memcpy(value.data(), &d.codes[4 * i], 32);
      entries.push_back(MakeEntry(static_cast<uint64_t>(i) + 1, SignalType::kPdq, value, "r"));
    }
    (void)index.Add(std::move(entries));
  }
  std::mt19937_64 rng(7);
  uint64_t next_id = static_cast<uint64_t>(d.n()) + 1;
  size_t delta = 0;
  for (size_t target : {0, 100'000, 200'000, 500'000, 1'000'000}) {
    while (delta < target) {
      std::vector<IndexEntry> entries;
      for (int k = 0; k < 10'000; ++k) entries.push_back(MakeEntry(next_id++, SignalType::kPdq, RandomValue(rng), "new"));
      (void)index.Add(std::move(entries));
      delta += 10'000;
    }
    index.WaitForMerge();
    std::vector<bantay::matcher::Match> m;
    std::vector<double> per;
    for (int rep = 0; rep < 5; ++rep) {
      const double c0 = ThreadCpuSeconds();
      for (size_t i = 0; i < 2000; ++i) {
        index.Snapshot()->MatchPdq(Hash256(*reinterpret_cast<const std::array<uint8_t, 32>*>(d.query(i % d.nq()))), 31, &m);
      }
      per.push_back((ThreadCpuSeconds() - c0) / 2000 * 1e6);
    }
    std::printf("  [tiers] delta %zu: %.1f us CPU a query (median of 5 x 2000)\n", delta, Median(per));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (argc > 2 || (!mode.empty() && mode != "--quick" && mode != "--live" && mode != "--tiers")) {
    std::fprintf(mode == "--help" ? stdout : stderr,
                 "usage: index_bench [--quick | --live | --tiers]\n"
                 "  (no option: every part, ~15 min, ~9 GB of RAM; see the top of "
                 "bench/index_bench.cc)\n");
    return mode == "--help" ? 0 : 2;
  }
  const bool quick = mode == "--quick";
  const bool live_only = mode == "--live";
  omp_set_num_threads(1);
  if (mode == "--tiers") {
    TierCosts(Random(10'000'000, 2000, 3));
    return 0;
  }
  if (live_only) {
    LiveUpdates(Random(10'000'000, 2000, 3));
    return 0;
  }
  std::printf("Exact radius-31 search, 256-bit codes, one core unless said\n");

  Dataset r1 = Random(1'000'000, 2000, 1);
  const MihFigures m1 = MeasureMih(r1, 200);
  const double scan1 = MeasureScan(r1, 100);
  const double hma1 = MeasureHma(r1, 500);
  Dataset c1 = Clustered(1'000'000, 2000, 2);
  const MihFigures mc = MeasureMih(c1, 200);

  std::printf("\n%-14s %12s %12s %10s %10s\n", "dataset", "MIH q/s", "baseline", "ratio", "recall");
  std::printf("%-14s %12.0f %8.0f hma %9.0fx %9.2f%%  (target >= 20000 q/s)\n", "random-1M",
              m1.qps, hma1, m1.qps / hma1, 100 * m1.recall);
  std::printf("%-14s %12s %8.0f scan %8.0fx\n", "", "", scan1, m1.qps / scan1);
  std::printf("%-14s %12.0f %12s %9.2fx %9.2f%%  (vs random-1M; target >= 0.30)\n",
              "clustered-1M", mc.qps, "", mc.qps / m1.qps, 100 * mc.recall);
  std::printf("dihedral (8 variants) random-1M: %.0f q/s\n", m1.dihedral_qps);
  ExactLookups();
  if (quick) return 0;

  r1 = Dataset();
  c1 = Dataset();
  Dataset r10 = Random(10'000'000, 2000, 3);
  const MihFigures m10 = MeasureMih(r10, 100);
  const double scan10 = MeasureScan(r10, 20);
  const double hma10 = MeasureHma(r10, 100);
  std::printf("\n%-14s %12.0f %8.0f hma %9.0fx %9.2f%%  (target >= 3000 q/s, >= 100x hma)\n",
              "random-10M", m10.qps, hma10, m10.qps / hma10, 100 * m10.recall);
  std::printf("%-14s %12s %8.0f scan %8.0fx\n", "", "", scan10, m10.qps / scan10);
  std::printf("dihedral (8 variants) random-10M: %.0f q/s (target >= 400)\n", m10.dihedral_qps);
  std::printf("index memory %.2f GB (target <= 1.5), build %.1f s (target <= 30)\n",
              m10.memory_gb, m10.build_s);
  LiveUpdates(r10);
  return 0;
}
