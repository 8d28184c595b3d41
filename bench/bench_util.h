// Timing helpers shared by the benchmark programs that time by hand.
#ifndef BANTAY_BENCH_BENCH_UTIL_H_
#define BANTAY_BENCH_BENCH_UTIL_H_

#include <algorithm>
#include <chrono>
#include <vector>

namespace bantay::bench {

using Clock = std::chrono::steady_clock;

inline double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// The median (the upper one of an even count) of repeated measurements.
inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace bantay::bench

#endif  // BANTAY_BENCH_BENCH_UTIL_H_
