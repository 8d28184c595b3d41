// Timing helpers shared by the benchmark programs that time by hand.
#ifndef BANTAY_BENCH_BENCH_UTIL_H_
#define BANTAY_BENCH_BENCH_UTIL_H_

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
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

// The figures of repeated measurements, space-separated ("[a b c]" in the
// reports).
inline std::string Join(const std::vector<double>& v, const char* format) {
  std::string out;
  char text[64];
  for (double x : v) {
    std::snprintf(text, sizeof text, format, x);
    if (!out.empty()) out += " ";
    out += text;
  }
  return out;
}

// CPU seconds (utime + stime, fields 14 and 15) of a /proc/.../stat file:
// a process, a thread (/proc/self/task/TID/stat, /proc/thread-self/stat).
inline double StatCpuSeconds(const std::string& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The fields after the command name (in parentheses) start at field 3.
  std::stringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int k = 3; k <= 15 && fields >> field; ++k) {
    if (k == 14) utime = std::stod(field);
    if (k == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace bantay::bench

#endif  // BANTAY_BENCH_BENCH_UTIL_H_
