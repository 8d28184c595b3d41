// `bantay match --video FILE | --video-hashes FILE --vpdq REF...`: whole-video
// matching with vPDQ's two percentages, offline, against vPDQ hash files.
#include "video_match_command.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#include "bantay/client/cli.h"
#include "bantay/models/text.h"
#include "bantay/models/video_hasher.h"
#include "command_util.h"

namespace bantay::client {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr std::string_view kVideoMatchUsage =
    R"(Usage: bantay match --video FILE [--every S] [--trim-borders] [--max-frames N]
                    --vpdq REF [--vpdq REF ...] [--distance D] [--quality Q]
                    [--query-threshold P] [--compared-threshold P]
       bantay match --video-hashes FILE.txt --vpdq REF ... (the same options)

Whole-video matching as vPDQ does it: the query video's frame hashes (from
FILE, decoded in memory, or read from a vPDQ hash file) against each REF, a
vPDQ hash file (`frame_number,quality,pdq_hex,timestamp` a line, as
`bantay hash --video` writes and ThreatExchange publishes) or a directory of
them (*.txt, in byte order, not recursive). Frames below the quality
threshold are left out and equal hashes counted once on each side; the
query-match percentage is the share of the query's hashes within the
distance of some hash of REF, the compared-match percentage the share of
REF's hashes within the distance of some hash of the query. A REF matches
when both reach their thresholds. One JSON line per REF, in the order given:
  {"query":"clip.mp4","compared":"ref.txt","query_hashes":N,"compared_hashes":M,
   "query_match_percent":P,"compared_match_percent":P,"match":true}
and for a REF that cannot be read {"compared":"...","error":{"code","message"}}.

Options:
  --video FILE          the query video (any container OpenCV's FFmpeg reads)
  --video-hashes FILE   the query as a vPDQ hash file instead
  --vpdq REF            a hash file or directory to compare with (repeatable)
  --every S             hash one frame every S seconds of video time
                        (default: every frame; the reference files hash every
                        frame)
  --trim-borders        remove letterbox/pillarbox borders before hashing
  --max-frames N        stop decoding the query after N frames
  --distance D          frame match distance, 0..256 (default 31)
  --quality Q           frames below this PDQ quality are left out, 0..100
                        (default 50)
  --query-threshold P   query-match percentage needed, 0..100 (default 80)
  --compared-threshold P
                        compared-match percentage needed, 0..100 (default 0)
  -h, --help            this text

Exit status: 0 every REF compared; 1 some REF could not be read; 2 usage
error or an unreadable query.
)";

struct VideoMatchOptions {
  std::string video, video_hashes;
  std::vector<std::string> refs;
  models::VideoHashOptions hashing;
  int distance = 31;
  int quality = 50;
  double query_threshold = 80;
  double compared_threshold = 0;
};

bool ParsePercent(const std::string& text, double* value) {
  size_t used = 0;
  try {
    *value = std::stod(text, &used);
  } catch (const std::exception&) {
    return false;
  }
  return used == text.size() && std::isfinite(*value) && *value >= 0 &&
         *value <= 100;
}

// A vPDQ hash file: one frame a line; blank lines are skipped, anything else
// that is not a frame line is an error naming the line.
Result<std::vector<models::VideoFrameHash>> ReadHashFile(
    const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return Error(ErrorCode::kNotFound, path + ": not a readable regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(ErrorCode::kIo, path + ": cannot be opened");
  std::vector<models::VideoFrameHash> frames;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    Result<models::VideoFrameHash> frame = models::ParseVideoFrameHash(line);
    if (!frame.ok()) {
      return Error(
          ErrorCode::kInvalidArgument,
          path + ":" + std::to_string(number) + ": " + frame.error().message());
    }
    frames.push_back(*frame);
  }
  if (in.bad()) return Error(ErrorCode::kIo, path + ": read error");
  return frames;
}

// The hash files a --vpdq argument names: itself, or a directory's *.txt.
Result<std::vector<std::string>> ExpandRef(const std::string& ref) {
  std::error_code ec;
  if (!fs::is_directory(ref, ec)) return std::vector<std::string>{ref};
  std::vector<std::string> files;
  for (const fs::directory_entry& entry : fs::directory_iterator(ref, ec)) {
    if (entry.path().extension() == ".txt")
      files.push_back(entry.path().string());
  }
  if (ec) return Error(ErrorCode::kIo, ref + ": " + ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

// The number of distinct hashes of quality >= `quality`, as CompareVideos
// counts them.
int64_t ComparableCount(const std::vector<models::VideoFrameHash>& frames,
                        int quality) {
  std::vector<std::string> seen;
  for (const models::VideoFrameHash& f : frames) {
    if (f.quality >= quality) seen.push_back(f.pdq.ToHex());
  }
  std::sort(seen.begin(), seen.end());
  return std::unique(seen.begin(), seen.end()) - seen.begin();
}

// A percentage as JSON text with at most 3 decimals and no trailing zeros
// ("100", "87.5"): Boost.JSON would write 1E2.
std::string PercentText(double percent) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3f", percent);
  std::string s = text;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

json::object ErrorLine(const std::string& compared, const Error& error) {
  return json::object{
      {"compared", models::Utf8Lossy(compared)},
      {"error", ErrorObject(ErrorCodeName(error.code()), error.message())}};
}

}  // namespace

bool IsVideoMatch(const std::vector<std::string>& args) {
  return std::any_of(args.begin(), args.end(), [](const std::string& a) {
    return a == "--video" || a == "--video-hashes";
  });
}

int RunVideoMatch(const std::vector<std::string>& args, std::ostream& out,
                  std::ostream& err) {
  VideoMatchOptions o;
  auto usage = [&](const std::string& message) {
    err << "bantay match: " << message << "\n";
    return kExitUsage;
  };
  if (std::any_of(args.begin(), args.end(), [](const std::string& a) {
        return a == "-h" || a == "--help";
      })) {
    out << kVideoMatchUsage;
    return kExitOk;
  }
  if (std::string repeated = RepeatedOption(
          args,
          {"--video", "--video-hashes", "--every", "--max-frames", "--distance",
           "--quality", "--query-threshold", "--compared-threshold"},
          {"--vpdq"});
      !repeated.empty()) {
    return usage(repeated);
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--trim-borders") {
      o.hashing.trim_borders = true;
      continue;
    }
    if (i + 1 >= args.size())
      return usage("unknown or incomplete option '" + a + "'");
    const std::string& v = args[++i];
    int64_t n = 0;
    if (a == "--video") {
      o.video = v;
    } else if (a == "--video-hashes") {
      o.video_hashes = v;
    } else if (a == "--vpdq") {
      o.refs.push_back(v);
    } else if (a == "--every") {
      double seconds = 0;
      try {
        size_t used = 0;
        seconds = std::stod(v, &used);
        if (used != v.size()) seconds = -1;
      } catch (const std::exception&) {
        seconds = -1;
      }
      if (!(seconds > 0) || !std::isfinite(seconds)) {
        return usage("--every needs a positive number of seconds");
      }
      o.hashing.seconds_per_hash = seconds;
    } else if (a == "--max-frames") {
      if (!ParseInt64(v, &n) || n < 1)
        return usage("--max-frames needs a positive integer");
      o.hashing.max_frames = n;
    } else if (a == "--distance") {
      if (!ParseInt(v, &o.distance) || o.distance < 0 || o.distance > 256) {
        return usage("--distance must be an integer from 0 to 256");
      }
    } else if (a == "--quality") {
      if (!ParseInt(v, &o.quality) || o.quality < 0 || o.quality > 100) {
        return usage("--quality must be an integer from 0 to 100");
      }
    } else if (a == "--query-threshold") {
      if (!ParsePercent(v, &o.query_threshold)) {
        return usage("--query-threshold must be a percentage from 0 to 100");
      }
    } else if (a == "--compared-threshold") {
      if (!ParsePercent(v, &o.compared_threshold)) {
        return usage("--compared-threshold must be a percentage from 0 to 100");
      }
    } else {
      return usage("unknown or incomplete option '" + a + "'\n" +
                   std::string(kVideoMatchUsage));
    }
  }
  if (o.video.empty() == o.video_hashes.empty()) {
    return usage("give exactly one of --video and --video-hashes");
  }
  if (o.refs.empty())
    return usage("give at least one --vpdq hash file or directory");
  if (!o.video_hashes.empty() &&
      (o.hashing.seconds_per_hash > 0 || o.hashing.trim_borders ||
       o.hashing.max_frames > 0)) {
    return usage(
        "--every, --trim-borders and --max-frames apply to --video only");
  }

  std::vector<models::VideoFrameHash> query;
  const std::string query_name = o.video.empty() ? o.video_hashes : o.video;
  if (!o.video.empty()) {
    Result<models::VideoHashes> hashes =
        models::HashVideoFile(o.video, o.hashing);
    if (!hashes.ok()) {
      err << "bantay match: " << o.video << ": " << hashes.error().message()
          << "\n";
      return kExitUsage;
    }
    query = std::move(hashes->frames);
  } else {
    Result<std::vector<models::VideoFrameHash>> frames =
        ReadHashFile(o.video_hashes);
    if (!frames.ok()) {
      err << "bantay match: " << frames.error().message() << "\n";
      return kExitUsage;
    }
    query = std::move(*frames);
  }
  const int64_t query_count = ComparableCount(query, o.quality);

  int status = kExitOk;
  for (const std::string& ref : o.refs) {
    Result<std::vector<std::string>> files = ExpandRef(ref);
    if (!files.ok()) {
      out << json::serialize(ErrorLine(ref, files.error())) << "\n";
      status = kExitSomeFailed;
      continue;
    }
    for (const std::string& file : *files) {
      Result<std::vector<models::VideoFrameHash>> compared = ReadHashFile(file);
      if (!compared.ok()) {
        out << json::serialize(ErrorLine(file, compared.error())) << "\n";
        status = kExitSomeFailed;
        continue;
      }
      const models::VideoComparison c =
          models::CompareVideos(query, *compared, o.distance, o.quality);
      const bool match = query_count > 0 &&
                         ComparableCount(*compared, o.quality) > 0 &&
                         c.query_match_percent >= o.query_threshold &&
                         c.compared_match_percent >= o.compared_threshold;
      out << "{\"query\":"
          << json::serialize(json::string(models::Utf8Lossy(query_name)))
          << ",\"compared\":" << json::serialize(json::string(models::Utf8Lossy(file)))
          << ",\"query_hashes\":" << query_count
          << ",\"compared_hashes\":" << ComparableCount(*compared, o.quality)
          << ",\"query_match_percent\":" << PercentText(c.query_match_percent)
          << ",\"compared_match_percent\":"
          << PercentText(c.compared_match_percent)
          << ",\"match\":" << (match ? "true" : "false") << "}\n";
    }
  }
  return status;
}

}  // namespace bantay::client
