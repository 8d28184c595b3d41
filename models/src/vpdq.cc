// vPDQ's text form of frame hashes and its whole-video comparison
// (https://github.com/facebook/ThreatExchange/tree/main/vpdq, README
// "Matching"; python-threatexchange's brute-force matcher).
#include <charconv>
#include <cmath>
#include <cstdio>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "bantay/models/text.h"
#include "bantay/models/video_hasher.h"

namespace bantay::models {
namespace {

// The frames vPDQ compares: quality at least quality_tolerance, and each
// hash once (its first frame). Quality is filtered first so that a hash
// seen at low quality and later at good quality is kept.
std::vector<Hash256> Comparable(std::span<const VideoFrameHash> frames,
                                int quality_tolerance) {
  std::vector<Hash256> kept;
  std::set<Hash256> seen;
  for (const VideoFrameHash& f : frames) {
    if (f.quality < quality_tolerance) continue;
    if (seen.insert(f.pdq).second) kept.push_back(f.pdq);
  }
  return kept;
}

// Percentage of `from` within distance_tolerance of some hash of `in`.
double MatchPercent(const std::vector<Hash256>& from,
                    const std::vector<Hash256>& in, int distance_tolerance) {
  size_t matched = 0;
  for (const Hash256& a : from) {
    for (const Hash256& b : in) {
      if (HammingDistance(a, b) <= distance_tolerance) {
        ++matched;
        break;
      }
    }
  }
  return static_cast<double>(matched) * 100.0 / static_cast<double>(from.size());
}

bool ParseNonNegative(std::string_view s, int64_t* value) {
  if (s.empty() || s[0] < '0' || s[0] > '9') return false;  // no sign, no space
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *value);
  return ec == std::errc() && end == s.data() + s.size();
}

Error BadLine(const std::string& why) {
  return Error(ErrorCode::kInvalidArgument, "not a vPDQ frame hash line: " + why);
}

}  // namespace

VideoComparison CompareVideos(std::span<const VideoFrameHash> query,
                              std::span<const VideoFrameHash> compared,
                              int distance_tolerance, int quality_tolerance) {
  const std::vector<Hash256> q = Comparable(query, quality_tolerance);
  const std::vector<Hash256> c = Comparable(compared, quality_tolerance);
  VideoComparison result;
  // vPDQ reports 0 and 0 when either side has no comparable frame.
  if (q.empty() || c.empty()) return result;
  result.query_match_percent = MatchPercent(q, c, distance_tolerance);
  result.compared_match_percent = MatchPercent(c, q, distance_tolerance);
  return result;
}

std::string FormatVideoFrameHash(const VideoFrameHash& frame) {
  char timestamp[64];
  std::snprintf(timestamp, sizeof(timestamp), "%.3f", frame.timestamp);
  return std::to_string(frame.frame_number) + ',' + std::to_string(frame.quality) +
         ',' + frame.pdq.ToHex() + ',' + timestamp;
}

Result<VideoFrameHash> ParseVideoFrameHash(std::string_view line) {
  std::string_view fields[4];
  size_t count = 0;
  for (size_t at = 0;;) {
    const size_t comma = line.find(',', at);
    if (count == 4) return BadLine("more than 4 fields");
    fields[count++] = line.substr(at, comma == std::string_view::npos ? comma : comma - at);
    if (comma == std::string_view::npos) break;
    at = comma + 1;
  }
  if (count != 4) {
    return BadLine("expected frame_number,quality,pdq_hex,timestamp");
  }
  VideoFrameHash f;
  if (!ParseNonNegative(fields[0], &f.frame_number)) {
    return BadLine("frame number '" + PrintableText(fields[0]) + "'");
  }
  int64_t quality = 0;
  if (!ParseNonNegative(fields[1], &quality) || quality > 100) {
    return BadLine("quality '" + PrintableText(fields[1]) + "' is not 0..100");
  }
  f.quality = static_cast<int>(quality);
  Result<Hash256> hash = Hash256::FromHex(fields[2]);
  if (!hash.ok()) return BadLine(hash.error().message());
  f.pdq = *hash;
  const std::string_view ts = fields[3];
  const auto [end, ec] = std::from_chars(ts.data(), ts.data() + ts.size(), f.timestamp,
                                         std::chars_format::fixed);
  if (ts.empty() || ts[0] < '0' || ts[0] > '9' || ec != std::errc() ||
      end != ts.data() + ts.size() || !std::isfinite(f.timestamp)) {
    return BadLine("timestamp '" + PrintableText(ts) + "'");
  }
  return f;
}

}  // namespace bantay::models
