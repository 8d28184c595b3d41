// `bantay scan`: bulk scans of seized media for labs. Walks directory trees
// (one thread, in a fixed order), hashes files on worker threads (MD5 and
// SHA-256 of every regular file, PDQ of images, vPDQ frame hashes of videos
// with --videos), matches them against a local index or a server, and writes
// one report record per entry, in walk order — so that the report of an
// interrupted scan is a prefix of the full one and --resume completes it.
//
// Evidence is never modified: files are opened read-only with O_NOATIME
// where allowed, and nothing of them is written anywhere but their hashes.
// What is read is what the walk examined: each file is opened by the walk,
// relative to its directory, and checked (OpenWalkEntry).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bantay/client/cli.h"
#include "bantay/models/digest.h"
#include "bantay/models/image_hasher.h"
#include "bantay/models/image_probe.h"
#include "bantay/models/video_hasher.h"
#include "command_util.h"
#include "scan_matcher.h"
#include "scan_report.h"
#include "scan_testing.h"
#include "scan_walker.h"
#include "store_options.h"

namespace bantay::client {
namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

constexpr int kExitStopped = 3;
constexpr int kExitInterrupted = 130;

constexpr std::string_view kScanUsage =
    R"(Usage: bantay scan PATH... (--index WHAT | --store URL | --server URL)
                 [--report FILE | --csv FILE] [--resume | --overwrite]
                 [--threads N] [--videos] [--every SECONDS] [--dihedral]
                 [--radius R] [--follow-symlinks] [--max-files N]
                 [--max-pixels N] [--max-jpeg-scans N]
                 [--progress auto|bar|lines|none]

Scans directory trees of seized media. Every regular file is read (read-only,
without updating its access time where the system allows it) and gets its
MD5 and SHA-256; images (JPEG, PNG, WebP, BMP, TIFF, told by content, not by
name) get their PDQ hash; videos (MP4/QuickTime, Matroska/WebM, AVI, MPEG,
FLV, ASF, told by content) get vPDQ frame hashes with --videos. All of them
are matched exactly against the index: PDQ within the radius, MD5 and SHA-256
by equality. Nothing but hashes is written, and nothing is written next to the
evidence. Each entry is scanned once: a PATH that is, resolved, inside
another PATH, or the same as an earlier one (a link to it), is scanned as
part of that one, and standard error says so; the report's "scan" record
still names every PATH as given. A PATH behind a directory of the other
that cannot be listed is scanned itself (that walk would not reach it).

The report has one record per entry, in a fixed order (depth first, names in
byte order), as JSON lines (default, to standard output or --report FILE):
  {"path":"...","kind":"image","format":"jpeg","size":N,"mtime":"...Z",
   "md5":"...","sha256":"...","pdq":"...","quality":Q,"width":W,"height":H,
   "pdq_checked":true,"verdict":"match","matches":[{"list":"...",
   "category":"...","ref":"...","signal":"pdq","distance":D,
   "variant":"original"}]}
kind is image, video, other, symlink, special or unknown; verdict is match,
no_match, skipped (links and special files, which are never opened) or error
(with "error":{"code","message"}); a file that is damaged still gets its MD5
and SHA-256 checked. A file is opened relative to the directory the walk
listed and checked to be the file the walk examined (device and inode): one
replaced since (by another file, or a link to elsewhere; or its directory
by another) is an error record, "changed during the scan: ...", not read.
Videos add frames_hashed, frames_matched, duration, and per match the number
of frames and the first matching time. A path that is not UTF-8 has U+FFFD
for its bad bytes and follows as "path_hex", its exact bytes in hex. With
--csv FILE the same fields are CSV columns (several matches joined with |),
path_hex the last (empty for a UTF-8 path).

Provenance records, which have a "record" member (entry records never do),
frame the entries: the first record is
  {"record":"scan","tool":"bantay","version":"...","started":"...Z",
   "host":"...","roots":[{"path":"...","resolved":"..."}],
   "index":{"kind":"list","path":"...","sha256":"..."},"options":{...},
   "format":"json"}
(the index: a list's SHA-256 of its bytes; a store's or snapshot's
store_id, version, signed root and active count; a server's url; the
options: those that change records), and a scan that went through every
entry ends with {"record":"end","finished":"...Z","entries":N,...} (the
counts of the summary). In a CSV report each is a row of one cell, '#' and
the same JSON; the "scan" row comes before the column names.

A scan stopped by Ctrl-C (or SIGTERM, or --max-files) leaves a report of the
entries finished so far; the same command with --resume continues it without
rehashing them, after a {"record":"resumed","time":"...Z",...} record, and
the finished report's records are those of a scan that was never stopped.
--resume refuses a report made with another index (a list whose bytes
changed, another store version), other roots or other options, and a report
without a "scan" record (made by an older bantay); a finished report is
left as it is. Progress goes to standard error: a bar on a terminal,
a line every 10 s otherwise, and a summary at the end.

Where to match (one of):
  --index WHAT      a hash list, a store URL or a snapshot file, as for
                    bantay match (a snapshot's signature is verified against
                    --public-key before it is used)
  --store URL       a store, sqlite:PATH or postgresql://...
  --key FILE        the data key of a store or snapshot (env
                    BANTAY_DATA_KEY_FILE or BANTAY_DATA_KEY)
  --public-key FILE the public key a snapshot must be signed with (env
                    BANTAY_PUBLIC_KEY_FILE)
  --server URL      a bantay-server: only hashes are sent (POST
                    /v1/match/batch), with --api-key-file, --ca,
                    --client-cert, --client-key as for bantay match

Options:
  --report FILE     write the JSON-lines report to FILE
  --csv FILE        write a CSV report to FILE instead
  --resume          continue the report FILE of an interrupted scan
  --overwrite       replace an existing report FILE (without --resume or
                    --overwrite an existing report is never touched)
  --threads N       hashing threads (default: the number of cores)
  --videos          hash the frames of videos (vPDQ); without it videos get
                    their MD5 and SHA-256 only
  --every SECONDS   with --videos, one frame every SECONDS of video time
                    (default 1; 0 for every frame)
  --dihedral        also match the 8 rotations and flips of each image
  --radius R        PDQ match distance, 0..64 (default 31)
  --follow-symlinks follow symbolic links (anywhere; loops are reported);
                    each file and directory is then scanned once, under the
                    first path that reaches it: one a link leads to again
                    (or a link led to first) is skipped, and standard error
                    names both paths (hard links reached without a symbolic
                    link stay entries of their own); by default links are
                    reported with their target, not followed (reading a
                    link's target may update the link's own access time:
                    Linux has no O_NOATIME for links)
  --max-files N     stop after N entries, as if interrupted
  --max-pixels N    refuse images and video frames declaring more pixels
                    (default 150000000), before decoding
  --max-jpeg-scans N  refuse JPEGs of more than N scans (default 500; each
                    scan is a pass over the whole picture), before decoding
  --progress MODE   auto (default), bar, lines or none
  -h, --help        this text

Exit status: 0 all entries scanned without error; 1 all scanned, some with
errors (each in the report); 2 usage error, an index that cannot be loaded,
a server that cannot be reached, a report that cannot be written; 3 stopped
by --max-files; 130 interrupted (Ctrl-C, SIGTERM). Matches do not change the
exit status: read the report or the summary.
)";

enum class ProgressMode { kAuto, kBar, kLines, kNone };

struct ScanOptions {
  std::vector<std::string> roots;       // as given (the report's header)
  std::vector<std::string> walk_roots;  // without those others cover
  std::string index;
  StoreOptions keys;
  ClientOptions client;
  std::string api_key_file;
  std::string report;
  ReportFormat format = ReportFormat::kJsonLines;
  bool resume = false;
  bool overwrite = false;
  int threads = 0;
  bool videos = false;
  double every = 1;
  bool dihedral = false;
  int radius = -1;  // -1: the default (local) or the server's
  bool follow_symlinks = false;
  int64_t max_files = 0;
  int64_t max_pixels = models::kDefaultMaxPixels;
  int max_jpeg_scans = models::kDefaultMaxJpegScans;
  ProgressMode progress = ProgressMode::kAuto;
};

Error ErrnoError(int err, const std::string& what) {
  switch (err) {
    case ENOENT:
      return Error(ErrorCode::kNotFound, what + ": no such file");
    case EACCES:
    case EPERM:
      return Error(ErrorCode::kPermissionDenied, what + ": permission denied");
    default:
      return Error(ErrorCode::kIo, what + ": " + std::strerror(err));
  }
}

std::function<void(const std::string&)>& AfterReadHook() {
  static std::function<void(const std::string&)> hook;
  return hook;
}

// Reads [offset, offset + n) or up to the end of the file.
Result<size_t> ReadAt(int fd, uint8_t* data, size_t n, int64_t offset) {
  size_t done = 0;
  while (done < n) {
    const ssize_t got = pread(fd, data + done, n - done,
                              static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "read");
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

// Images larger than this are not decoded (their digests still are).
constexpr int64_t kMaxImageBytes = int64_t{1} << 30;
constexpr size_t kStreamChunk = size_t{1} << 20;

// What the first read of a file gave: how many bytes (at the start of the
// worker's buffer), and whether there may be more (the read was not short).
struct Head {
  size_t bytes = 0;
  bool more = false;
};

// What a worker keeps between files: its hasher and buffers.
struct Worker {
  explicit Worker(const models::HashOptions& options) : hasher(options) {}
  models::ImageHasher hasher;
  models::DigestStream digests;
  std::vector<uint8_t> buffer;
};

class FileScanner {
 public:
  FileScanner(const ScanOptions& options, ScanMatcher* matcher)
      : options_(options), matcher_(matcher) {}

  // The record of one walk entry; for a file, `opened` is the file opened
  // by the walk (OpenWalkEntry), or no descriptor and the error that gave.
  // An error return ends the scan.
  Result<ScanRecord> Scan(const WalkEntry& entry, Fd opened,
                          const std::optional<Error>& open_error,
                          Worker& worker, int index) {
    ScanRecord r;
    r.path = entry.path;
    switch (entry.kind) {
      case WalkEntry::Kind::kError:
        r.kind = "unknown";
        r.error = entry.error;
        return r;
      case WalkEntry::Kind::kSymlink:
        r.kind = "symlink";
        r.mtime_ns = entry.mtime_ns;
        r.link_target = entry.link_target;
        r.note = "symbolic link, not followed (--follow-symlinks follows links)";
        return r;
      case WalkEntry::Kind::kSpecial:
        r.kind = "special";
        r.mtime_ns = entry.mtime_ns;
        r.link_target = entry.link_target;
        r.note = "not a regular file: not opened";
        return r;
      case WalkEntry::Kind::kFile:
        break;
      case WalkEntry::Kind::kDuplicate:  // never given a record
        return Error(ErrorCode::kInternal, "a duplicate entry was scanned");
    }
    FileSignals signals;
    ScanFile(entry, std::move(opened), open_error, worker, &r, &signals);
    if (!signals.has_digests && signals.pdq.empty()) return r;
    Result<FileMatches> matched = matcher_->Match(signals, index);
    if (!matched.ok()) return matched.error();
    r.matches = std::move(matched->matches);
    if (signals.video) r.frames_matched = matched->frames_matched;
    return r;
  }

 private:
  void ScanFile(const WalkEntry& entry, Fd fd,
                const std::optional<Error>& open_error, Worker& worker,
                ScanRecord* r, FileSignals* signals) {
    r->kind = "unknown";
    r->size = entry.size;
    r->mtime_ns = entry.mtime_ns;
    r->link_target = entry.link_target;
    if (fd.get() < 0) {
      r->error = open_error.value_or(
          Error(ErrorCode::kInternal, "the file was not opened"));
      return;
    }
    struct stat st;
    if (fstat(fd.get(), &st) != 0) {
      r->error = ErrnoError(errno, "stat");
      return;
    }
    if (!S_ISREG(st.st_mode)) {
      r->kind = "special";
      r->size.reset();
      r->note = "not a regular file: not read";
      return;
    }
    r->size = st.st_size;
    r->mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 +
                  st.st_mtim.tv_nsec;
    ReadContents(entry, fd.get(), st, worker, r, signals);
    if (AfterReadHook()) AfterReadHook()(entry.path);
    // The size and time reported are from before the reading: a file that
    // changed meanwhile (still being written, or tampered with) has hashes
    // of neither version, perhaps.
    struct stat after;
    if (fstat(fd.get(), &after) != 0) {
      r->error = ErrnoError(errno, "stat");
    } else if (after.st_size != st.st_size ||
               after.st_mtim.tv_sec != st.st_mtim.tv_sec ||
               after.st_mtim.tv_nsec != st.st_mtim.tv_nsec) {
      const std::string what =
          after.st_size != st.st_size
              ? "size " + std::to_string(st.st_size) + " -> " +
                    std::to_string(after.st_size) + " bytes"
              : "modification time";
      r->error = Error(ErrorCode::kIo,
                       "changed while it was read (" + what +
                           "): the hashes may be of neither version; scan it "
                           "again");
    }
  }

  // The file's contents: type, digests, PDQ hash or frame hashes. st: its
  // fstat before reading.
  void ReadContents(const WalkEntry& entry, int fd, const struct stat& st,
                    Worker& worker, ScanRecord* r, FileSignals* signals) {
    // One read tells the type and, for a file of up to kStreamChunk bytes,
    // holds all of it: a byte more than the size is asked for, so that a
    // short read shows the end.
    const size_t first = static_cast<size_t>(std::clamp<int64_t>(
        st.st_size + 1, static_cast<int64_t>(models::kVideoProbeBytes),
        static_cast<int64_t>(kStreamChunk)));
    std::vector<uint8_t>& buffer = worker.buffer;
    if (buffer.size() < first) buffer.resize(first);
    Result<size_t> got = ReadAt(fd, buffer.data(), first, 0);
    if (!got.ok()) {
      r->error = got.error();
      std::fill_n(buffer.begin(), first, 0);
      return;
    }
    Head head{*got, *got == first};
    const std::span<const uint8_t> head_bytes(
        buffer.data(), std::min(head.bytes, models::kVideoProbeBytes));
    if (const models::ImageFormat image = models::DetectImageFormat(head_bytes);
        image != models::ImageFormat::kUnknown) {
      r->kind = "image";
      r->format = models::ImageFormatName(image);
      if (st.st_size <= kMaxImageBytes) {
        ScanImage(fd, st.st_size, head, worker, r, signals);
        return;
      }
      r->error = Error(ErrorCode::kTooLarge,
                       "image file over " + std::to_string(kMaxImageBytes) +
                           " bytes: not decoded");
    } else if (const models::VideoFormat video =
                   models::DetectVideoFormat(head_bytes);
               video != models::VideoFormat::kUnknown) {
      r->kind = "video";
      r->format = models::VideoFormatName(video);
    } else {
      r->kind = "other";
    }
    if (Status digested = StreamDigests(fd, head, worker, signals);
        !digested.ok()) {
      r->error = digested.error();
      return;
    }
    SetDigests(*signals, r);
    if (r->kind == "video") {
      if (options_.videos) {
        ScanVideo(entry.path, fd, r, signals);
      } else {
        r->note = "video frames not hashed (--videos hashes them)";
      }
    }
  }

  // The image's `size` bytes (the size from fstat): the first head.bytes
  // are in the worker's buffer already.
  void ScanImage(int fd, int64_t size, const Head& head, Worker& worker,
                 ScanRecord* r, FileSignals* signals) {
    const size_t want = static_cast<size_t>(size);
    std::vector<uint8_t>& buffer = worker.buffer;
    size_t have = head.bytes;
    if (head.more && have < want) {
      if (buffer.size() < want) buffer.resize(want);
      Result<size_t> got = ReadAt(fd, buffer.data() + have, want - have,
                                  static_cast<int64_t>(have));
      if (!got.ok()) {
        r->error = got.error();
        std::fill_n(buffer.begin(), want, 0);
        return;
      }
      have += *got;
    }
    // A file that shrank while it was read is taken as it now is, one that
    // grew as it was.
    const std::span<const uint8_t> bytes(buffer.data(), std::min(have, want));
    Result<models::ImageHashes> hashed = worker.hasher.Hash(bytes);
    if (!hashed.ok()) {
      // A damaged image may still be on a list by its exact hash.
      signals->digests = models::ComputeDigests(bytes);
      signals->has_digests = true;
      r->error = hashed.error();
    } else {
      signals->digests = hashed->digests;
      signals->has_digests = true;
      const models::PdqResult& pdq = hashed->pdq;
      r->pdq = pdq.hash.ToHex();
      r->quality = pdq.quality;
      r->width = hashed->width;
      r->height = hashed->height;
      if (pdq.low_quality()) {
        r->note = "PDQ quality under " + std::to_string(models::kPdqMinQuality) +
                  ": the hash is not matched";
      } else {
        r->pdq_checked = true;
        if (options_.dihedral) {
          signals->dihedral = true;
          for (int v = 0; v < models::kDihedralCount; ++v) {
            signals->pdq.push_back({pdq.dihedral[static_cast<size_t>(v)],
                                    pdq.quality, static_cast<models::Dihedral>(v),
                                    -1});
          }
        } else {
          signals->pdq.push_back({pdq.hash, pdq.quality,
                                  models::Dihedral::kOriginal, -1});
        }
      }
    }
    std::fill_n(buffer.begin(), have, 0);
    SetDigests(*signals, r);
  }

  // MD5 and SHA-256 of the whole file, to its end, in chunks; the first
  // head.bytes are in the worker's buffer already.
  static Status StreamDigests(int fd, const Head& head, Worker& worker,
                              FileSignals* signals) {
    std::vector<uint8_t>& chunk = worker.buffer;
    worker.digests.Update({chunk.data(), head.bytes});
    // The buffer may be longer (an earlier image): only what was read is
    // overwritten afterwards.
    const size_t used = head.more ? kStreamChunk : head.bytes;
    if (head.more) {
      if (chunk.size() < kStreamChunk) chunk.resize(kStreamChunk);
      int64_t offset = static_cast<int64_t>(head.bytes);
      for (;;) {
        Result<size_t> got = ReadAt(fd, chunk.data(), kStreamChunk, offset);
        if (!got.ok()) {
          worker.digests.Finish();
          std::fill_n(chunk.begin(), used, 0);
          return got.error();
        }
        if (*got == 0) break;
        worker.digests.Update({chunk.data(), *got});
        offset += static_cast<int64_t>(*got);
      }
    }
    std::fill_n(chunk.begin(), used, 0);
    signals->digests = worker.digests.Finish();
    signals->has_digests = true;
    return {};
  }

  // fd: the file the walk examined, open. The decoder opens a path: the
  // descriptor's own (/proc/self/fd/N reopens that very file), not the
  // path of the entry, which may lead elsewhere by now.
  void ScanVideo(const std::string& path, int fd, ScanRecord* r,
                 FileSignals* signals) {
    models::VideoHashOptions video;
    video.seconds_per_hash = options_.every;
    video.max_pixels_per_frame = options_.max_pixels;
    std::string opened = "/proc/self/fd/" + std::to_string(fd);
    if (access(opened.c_str(), F_OK) != 0) opened = path;  // no /proc
    Result<models::VideoHashes> hashed = models::HashVideoFile(opened, video);
    if (!hashed.ok()) {
      // Its messages name the path it opened.
      const std::string& message = hashed.error().message();
      r->error = message.starts_with(opened)
                     ? Error(hashed.error().code(),
                             path + message.substr(opened.size()))
                     : hashed.error();
      return;
    }
    r->width = hashed->width;
    r->height = hashed->height;
    r->frames_hashed = static_cast<int64_t>(hashed->frames.size());
    if (hashed->fps > 0) {
      r->duration = static_cast<double>(hashed->frames_decoded) / hashed->fps;
    }
    signals->video = true;
    for (const models::VideoFrameHash& f : hashed->frames) {
      if (f.quality < models::kPdqMinQuality) continue;
      signals->pdq.push_back(
          {f.pdq, f.quality, models::Dihedral::kOriginal, f.timestamp});
    }
    r->pdq_checked = !signals->pdq.empty();
    if (hashed->incomplete) {
      // The frames before the damage are still matched.
      r->error = Error(ErrorCode::kCorruptData,
                       "the video ends early: " +
                           std::to_string(hashed->frames_decoded) + " of " +
                           std::to_string(hashed->frames_declared) +
                           " frames decoded");
    }
    if (!r->pdq_checked) {
      r->note = "no frame of PDQ quality " +
                std::to_string(models::kPdqMinQuality) +
                " or more: frames not matched";
    }
  }

  static void SetDigests(const FileSignals& signals, ScanRecord* r) {
    if (!signals.has_digests) return;
    r->md5 = models::ToHex(signals.digests.md5);
    r->sha256 = models::ToHex(signals.digests.sha256);
  }

  const ScanOptions& options_;
  ScanMatcher* matcher_;
};

// What the summary counts; the bytes only of the entries read by this run.
struct Counters : RecordCounts {
  int64_t bytes = 0;
};

std::string WithCommas(int64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string Hms(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld",
                static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60),
                static_cast<long long>(s % 60));
  return buf;
}

std::string NowIsoTime() {
  return IsoTime(std::chrono::duration_cast<std::chrono::nanoseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count());
}

// The walk, the workers and the in-order writer.
class ScanRun {
 public:
  // kept: the records of the report resumed (counted in the summary and
  // the exit status with those written now).
  // preamble: what the report gets before the records of this run (its
  // "scan" record, or the "resumed" one).
  ScanRun(const ScanOptions& options, ScanMatcher* matcher,
          const std::unordered_set<std::string>* done, const Counters& kept,
          int report_fd, std::string preamble, std::ostream& out,
          std::ostream& err, bool bar, bool lines)
      : options_(options),
        scanner_(options, matcher),
        done_(done),
        kept_(kept),
        report_fd_(report_fd),
        out_(out),
        err_(err),
        bar_(bar),
        lines_(lines),
        pending_(std::move(preamble)) {}

  // Returns the exit status.
  int Run() {
    start_ = Clock::now();
    written_ok_ = Flush(/*sync=*/false);
    if (written_ok_) {
      std::thread walker([this] { Walk(); });
      std::vector<std::thread> workers;
      const int n = options_.threads;
      for (int i = 0; i < n; ++i) workers.emplace_back([this, i] { Work(i); });
      Supervise();
      for (auto& t : workers) t.join();
      walker.join();
    }
    const int status = ExitStatus();
    // A scan that went through every entry says so: a report without an
    // "end" record is not finished.
    if (written_ok_ && (status == kExitOk || status == kExitSomeFailed)) {
      pending_ += FormatProvenance(EndRecord(), options_.format);
    }
    if (written_ok_) written_ok_ = Flush(/*sync=*/true);
    Summary();
    return written_ok_ ? status : kExitUsage;
  }

 private:
  struct Task {
    uint64_t seq;
    WalkEntry entry;
    Fd fd;  // a file opened by the walk, or none
    std::optional<Error> open_error;  // why a file has none
  };

  // A finished entry waiting for its turn in the report.
  struct Finished {
    bool ready = false;
    std::string line;
    Counters counts;
  };

  static constexpr size_t kMaxQueued = 256;
  static constexpr int64_t kMaxQueuedBytes = int64_t{256} << 20;
  static constexpr uint64_t kMaxAhead = 4096;
  static constexpr int64_t kPrefetchBytes = int64_t{64} << 20;
  // How soon the main thread notices a stop signal.
  static constexpr std::chrono::milliseconds kSignalPoll{50};

  void Walk() {
    int64_t emitted = 0;
    WalkTrees(options_.walk_roots, {options_.follow_symlinks},
              [&](WalkEntry&& entry) {
                if (entry.kind == WalkEntry::Kind::kDuplicate) {
                  ReportDuplicate(entry);
                  return true;
                }
                if (done_ != nullptr && done_->count(entry.path) != 0) {
                  return true;  // in the report already (--resume)
                }
                if (options_.max_files > 0 && emitted >= options_.max_files) {
                  std::lock_guard lock(mu_);
                  stopped_by_limit_ = true;
                  return false;
                }
                ++emitted;
                Fd fd;
                std::optional<Error> open_error;
                if (entry.kind == WalkEntry::Kind::kFile) {
                  Result<Fd> opened = Prefetch(entry);
                  if (opened.ok()) {
                    fd = std::move(*opened);
                  } else {
                    open_error = opened.error();
                  }
                }
                return Push(std::move(entry), std::move(fd),
                            std::move(open_error));
              });
    std::lock_guard lock(mu_);
    walk_done_ = true;
    tasks_cv_.notify_all();
    results_cv_.notify_all();
  }

  // On standard error, as a PATH inside another is: an entry given already
  // under another path (links followed) is not scanned again.
  void ReportDuplicate(const WalkEntry& entry) {
    std::lock_guard lock(mu_);
    if (bar_shown_) err_ << "\r\033[K";
    const std::string& first = entry.duplicate_of;
    err_ << "bantay scan: " << entry.path
         << (entry.duplicate_directory ? " is the same directory as "
                                       : " is the same file as ")
         << first << " (the same device and inode, through a symbolic link)"
         << (entry.duplicate_directory ? "; its entries are scanned once, under "
                                       : "; it is scanned once, as ")
         << first << "\n";
  }

  // Opens the file for its worker, where it must be opened: in the walk,
  // relative to its directory, checked to be the file the walk examined
  // (OpenWalkEntry); and asks the kernel to start reading it while the
  // workers are busy with the ones before it (I/O overlapped with hashing
  // on slow disks). A file that cannot be opened gets the error in its
  // record.
  static Result<Fd> Prefetch(const WalkEntry& entry) {
    Result<Fd> opened = OpenWalkEntry(entry);
    if (opened.ok()) {
      posix_fadvise(opened->get(), 0,
                    static_cast<off_t>(std::min(entry.size, kPrefetchBytes)),
                    POSIX_FADV_WILLNEED);
    }
    return opened;
  }

  bool Room() const {  // requires mu_
    return tasks_.size() < kMaxQueued && queued_bytes_ < kMaxQueuedBytes &&
           next_seq_ - next_write_ < kMaxAhead;
  }

  // A blocked walk resumes once the queue is half empty, not at every
  // free place: one wake-up for many files.
  bool RoomToResume() const {  // requires mu_
    return tasks_.size() <= kMaxQueued / 2 &&
           (queued_bytes_ <= kMaxQueuedBytes / 2 || tasks_.empty()) &&
           next_seq_ - next_write_ <= kMaxAhead / 2;
  }

  void WakeWalkerIfRoom() {  // requires mu_
    if (walker_waiting_ && RoomToResume()) space_cv_.notify_one();
  }

  bool Push(WalkEntry&& entry, Fd fd, std::optional<Error> open_error) {
    std::unique_lock lock(mu_);
    if (!stopping_ && !Room()) {
      walker_waiting_ = true;
      space_cv_.wait(lock, [&] { return stopping_ || RoomToResume(); });
      walker_waiting_ = false;
    }
    if (stopping_) return false;
    total_.entries += 1;
    total_.bytes += entry.size;
    queued_bytes_ += entry.size;
    tasks_.push_back({next_seq_++, std::move(entry), std::move(fd),
                      std::move(open_error)});
    tasks_cv_.notify_one();
    return true;
  }

  void Work(int index) {
    models::HashOptions hash;
    hash.dihedral = options_.dihedral;
    hash.max_pixels = options_.max_pixels;
    hash.max_jpeg_scans = options_.max_jpeg_scans;
    Worker worker(hash);
    for (;;) {
      Task task;
      {
        std::unique_lock lock(mu_);
        tasks_cv_.wait(lock,
                       [&] { return stopping_ || walk_done_ || !tasks_.empty(); });
        if (stopping_ || tasks_.empty()) break;
        task = std::move(tasks_.front());
        tasks_.pop_front();
        queued_bytes_ -= task.entry.size;
        WakeWalkerIfRoom();
      }
      Result<ScanRecord> record = scanner_.Scan(
          task.entry, std::move(task.fd), task.open_error, worker, index);
      if (!record.ok()) {
        std::lock_guard lock(mu_);
        if (!fatal_) {
          fatal_ = true;
          fatal_message_ = task.entry.path + ": " + record.error().message();
        }
        Stop();
        break;
      }
      // Formatted here, on the workers, in parallel.
      Complete(task.seq, FormatRecord(*record, options_.format), Count(*record));
    }
    std::lock_guard lock(mu_);
    ++workers_done_;
    results_cv_.notify_all();
  }

  void Stop() {  // requires mu_
    stopping_ = true;
    tasks_cv_.notify_all();
    space_cv_.notify_all();
    results_cv_.notify_all();
  }

  // Records are written in walk order as soon as they are next in order
  // (one write for all that are ready), so that a killed scan loses only
  // the files in progress. The worker that completes the next record
  // writes it, with those after it that are ready, while no other worker
  // writes; a record completed meanwhile is taken by that writer before it
  // lets go. No thread is woken to write a record.
  void Complete(uint64_t seq, std::string line, const Counters& counts) {
    std::unique_lock lock(mu_);
    Finished& f = finished_[seq % kMaxAhead];
    f.ready = true;
    f.line = std::move(line);
    f.counts = counts;
    if (writing_ || seq != next_write_) return;
    writing_ = true;
    while (written_ok_ && finished_[next_write_ % kMaxAhead].ready) {
      for (Finished* next = &finished_[next_write_ % kMaxAhead]; next->ready;
           next = &finished_[next_write_ % kMaxAhead]) {
        pending_ += next->line;
        Add(next->counts);
        next->ready = false;
        next->line.clear();
        ++next_write_;
      }
      WakeWalkerIfRoom();
      lock.unlock();
      const bool ok = Flush(/*sync=*/false);
      lock.lock();
      if (!ok) Stop();
    }
    writing_ = false;
    if (AllWritten()) results_cv_.notify_all();
  }

  bool AllWritten() const {  // requires mu_
    return (walk_done_ && next_write_ == next_seq_ && !writing_) ||
           workers_done_ == options_.threads;
  }

  // The main thread: shows progress and notices a stop signal until every
  // record is written or the workers have stopped.
  void Supervise() {
    const auto interval = bar_ ? std::chrono::milliseconds(200)
                               : std::chrono::milliseconds(10'000);
    auto next_progress = Clock::now() + interval;
    std::unique_lock lock(mu_);
    for (;;) {
      const auto wake = std::min(next_progress, Clock::now() + kSignalPoll);
      results_cv_.wait_until(lock, wake, [&] {
        return AllWritten() || (StopSignalReceived() != 0 && !stopping_);
      });
      if (StopSignalReceived() != 0 && !stopping_) {
        interrupted_ = true;
        Stop();
      }
      if (AllWritten()) break;
      const auto now = Clock::now();
      if (now >= next_progress) {
        if (bar_ || lines_) Progress();
        next_progress = now + interval;
      }
    }
  }

  int ExitStatus() const {
    if (!written_ok_ || fatal_) return kExitUsage;
    if (StopSignalReceived() != 0 || interrupted_) return kExitInterrupted;
    if (stopped_by_limit_) return kExitStopped;
    return done_counts_.errors + kept_.errors > 0 ? kExitSomeFailed : kExitOk;
  }

  // The whole report's counts (with the records kept by --resume).
  boost::json::object EndRecord() const {
    const Counters& d = done_counts_;
    const Counters& k = kept_;
    return {{"record", "end"},
            {"finished", NowIsoTime()},
            {"entries", k.entries + d.entries},
            {"images", k.images + d.images},
            {"videos", k.videos + d.videos},
            {"others", k.others + d.others},
            {"skipped", k.skipped + d.skipped},
            {"matched", k.matched + d.matched},
            {"errors", k.errors + d.errors}};
  }

  static Counters Count(const ScanRecord& r) {
    Counters c;
    c.Count(r.kind, !r.matches.empty(), static_cast<bool>(r.error));
    c.bytes = r.size.value_or(0);
    return c;
  }

  void Add(const Counters& c) {  // requires mu_
    done_counts_.entries += c.entries;
    done_counts_.bytes += c.bytes;
    done_counts_.matched += c.matched;
    done_counts_.errors += c.errors;
    done_counts_.images += c.images;
    done_counts_.videos += c.videos;
    done_counts_.others += c.others;
    done_counts_.skipped += c.skipped;
  }

  bool Flush(bool sync) {
    if (!pending_.empty()) {
      if (report_fd_ >= 0) {
        size_t off = 0;
        while (off < pending_.size()) {
          const ssize_t n =
              write(report_fd_, pending_.data() + off, pending_.size() - off);
          if (n < 0) {
            if (errno == EINTR) continue;
            write_error_ = std::strerror(errno);
            written_ok_ = false;
            return false;
          }
          off += static_cast<size_t>(n);
        }
      } else {
        out_ << pending_;
        out_.flush();
        if (!out_) {
          written_ok_ = false;
          return false;
        }
      }
      pending_.clear();
    }
    if (sync && report_fd_ >= 0 && fsync(report_fd_) != 0) {
      write_error_ = std::strerror(errno);
      written_ok_ = false;
      return false;
    }
    return true;
  }

  void Progress() {  // requires mu_
    const double elapsed =
        std::chrono::duration<double>(Clock::now() - start_).count();
    const Counters& d = done_counts_;
    const double files_s = elapsed > 0 ? static_cast<double>(d.entries) / elapsed : 0;
    const double mb_s =
        elapsed > 0 ? static_cast<double>(d.bytes) / 1e6 / elapsed : 0;
    char rates[96];
    std::snprintf(rates, sizeof rates, "%.0f files/s, %.1f MB/s", files_s, mb_s);
    std::string of = walk_done_ ? " of " + WithCommas(total_.entries) : "";
    std::string eta;
    if (walk_done_ && files_s > 0) {
      eta = ", ETA " + Hms(static_cast<double>(total_.entries - d.entries) /
                             files_s);
    }
    const std::string text = WithCommas(d.entries) + of + " entries, " + rates +
                             ", " + WithCommas(d.matched) + " matched, " +
                             WithCommas(d.errors) + " errors" + eta;
    if (bar_) {
      std::string bar;
      if (walk_done_ && total_.entries > 0) {
        const int filled = static_cast<int>(
            30 * static_cast<double>(d.entries) / static_cast<double>(total_.entries));
        bar = "[" + std::string(static_cast<size_t>(filled), '#') +
              std::string(static_cast<size_t>(30 - filled), '.') + "] ";
      }
      err_ << "\r\033[K" << bar << text << std::flush;
      bar_shown_ = true;
    } else {
      err_ << "bantay scan: " << text << ", " << Hms(elapsed) << "\n"
           << std::flush;
    }
  }

  void Summary() {
    std::lock_guard lock(mu_);
    if (bar_shown_) err_ << "\r\033[K";
    const double elapsed =
        std::chrono::duration<double>(Clock::now() - start_).count();
    const Counters& d = done_counts_;
    const Counters& k = kept_;
    char rates[128];
    std::snprintf(rates, sizeof rates, "%.1f s (%.0f files/s, %.1f MB/s)",
                  elapsed,
                  elapsed > 0 ? static_cast<double>(d.entries) / elapsed : 0.0,
                  elapsed > 0 ? static_cast<double>(d.bytes) / 1e6 / elapsed : 0.0);
    // The whole report; bytes and rates are this run's.
    err_ << "bantay scan: " << WithCommas(k.entries + d.entries) << " entries ("
         << WithCommas(k.images + d.images) << " images, "
         << WithCommas(k.videos + d.videos) << " videos, "
         << WithCommas(k.others + d.others) << " other files, "
         << WithCommas(k.skipped + d.skipped) << " links/special skipped";
    if (k.entries > 0) {
      err_ << "; " << WithCommas(k.entries) << " kept from the report, "
           << WithCommas(d.entries) << " scanned now";
    }
    err_ << "), " << WithCommas(d.bytes) << " bytes in " << rates << "; "
         << WithCommas(k.matched + d.matched) << " matched, "
         << WithCommas(k.errors + d.errors) << " with errors\n";
    if (fatal_) err_ << "bantay scan: stopped: " << fatal_message_ << "\n";
    if (!written_ok_ && report_fd_ < 0) {
      err_ << "bantay scan: cannot write standard output\n";
    } else if (!written_ok_) {
      err_ << "bantay scan: cannot write the report: " << write_error_ << "\n";
    }
    if (fatal_ || interrupted_ || StopSignalReceived() != 0 ||
        stopped_by_limit_) {
      err_ << "bantay scan: the report holds the entries finished so far; run "
              "the same command with --resume to continue\n";
    }
  }

  const ScanOptions& options_;
  FileScanner scanner_;
  const std::unordered_set<std::string>* done_;
  const Counters kept_;
  const int report_fd_;
  std::ostream& out_;
  std::ostream& err_;
  const bool bar_;
  const bool lines_;
  Clock::time_point start_;
  std::string pending_;  // records not yet written; the writer's own

  std::mutex mu_;
  std::condition_variable tasks_cv_;
  std::condition_variable space_cv_;
  std::condition_variable results_cv_;
  std::deque<Task> tasks_;
  int64_t queued_bytes_ = 0;
  bool walker_waiting_ = false;
  uint64_t next_seq_ = 0;
  uint64_t next_write_ = 0;
  // Entry seq at seq % kMaxAhead (the walk stays fewer than kMaxAhead
  // entries ahead of the report).
  std::vector<Finished> finished_ = std::vector<Finished>(kMaxAhead);
  bool writing_ = false;  // a worker is writing records
  bool walk_done_ = false;
  bool stopping_ = false;
  bool stopped_by_limit_ = false;
  bool interrupted_ = false;
  bool fatal_ = false;
  std::string fatal_message_;
  int workers_done_ = 0;
  Counters total_;
  Counters done_counts_;
  bool written_ok_ = true;
  std::string write_error_;
  bool bar_shown_ = false;
};

// The report's "scan" record for this invocation: the tool, the roots as
// given and resolved, the index's identity (index_id: LoadIndex's, or none
// for a server), the options that change records, the report's format,
// the start time and the host. --threads, --max-files and --progress
// change no record and are left out.
json::object ScanHeader(const ScanOptions& o, const json::object& index_id) {
  namespace fs = std::filesystem;
  json::array roots;
  for (const std::string& root : o.roots) {
    json::object r;
    PutBytes(&r, "path", root);
    std::error_code ec;
    fs::path resolved = fs::weakly_canonical(fs::absolute(root, ec), ec);
    if (ec) resolved = fs::absolute(root, ec);
    PutBytes(&r, "resolved", resolved.string());
    roots.push_back(std::move(r));
  }
  json::object index;
  if (o.index.empty()) {
    index = {{"kind", "server"}, {"url", o.client.url}};
  } else {
    index["kind"] = index_id.at("kind");
    if (IsStoreUrl(o.index)) {
      index["url"] = StoreUrlWithoutPassword(o.index);
    } else {
      PutBytes(&index, "path", o.index);
    }
    for (const auto& [key, value] : index_id) index[key] = value;
  }
  json::object options;
  options["videos"] = o.videos;
  if (o.videos) {
    if (o.every == static_cast<double>(static_cast<int64_t>(o.every))) {
      options["every"] = static_cast<int64_t>(o.every);
    } else {
      options["every"] = o.every;
    }
  }
  options["dihedral"] = o.dihedral;
  // null: the server's.
  if (o.radius >= 0 || !o.index.empty()) {
    options["radius"] = o.radius >= 0 ? o.radius : models::kPdqMatchThreshold;
  } else {
    options["radius"] = nullptr;
  }
  options["min_quality"] = models::kPdqMinQuality;
  options["max_pixels"] = o.max_pixels;
  options["max_jpeg_scans"] = o.max_jpeg_scans;
  options["follow_symlinks"] = o.follow_symlinks;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  json::object header{{"record", "scan"},
                      {"tool", "bantay"},
                      {"version", kBantayVersion},
                      {"started", NowIsoTime()}};
  PutBytes(&header, "host", host);
  header["roots"] = std::move(roots);
  header["index"] = std::move(index);
  header["options"] = std::move(options);
  header["format"] = o.format == ReportFormat::kCsv ? "csv" : "json";
  return header;
}

// What makes the records of `now` (this invocation's "scan" record) other
// than those of `made` (the report's), named for the user; "" when nothing
// does (the start time and the host do not).
std::string HeaderDifference(const json::object& made, const json::object& now) {
  static constexpr std::pair<std::string_view, std::string_view> kCompared[] = {
      {"tool", "another tool"},       {"version", "another bantay version"},
      {"roots", "other scan roots"},  {"index", "another index"},
      {"options", "other options"},   {"format", "another format"}};
  auto text = [](const json::value* v) {
    return v == nullptr ? std::string("none") : json::serialize(*v);
  };
  for (const auto& [key, what] : kCompared) {
    const json::value* was = made.if_contains(key);
    const json::value* is = now.if_contains(key);
    if (was != nullptr && is != nullptr && *was == *is) continue;
    if (key == "options" && was != nullptr && was->is_object()) {
      // Named one by one.
      std::string differing;
      json::object all = was->as_object();
      for (const auto& [name, value] : is->as_object()) all[name] = value;
      for (const auto& [name, value] : all) {
        const json::value* a = was->as_object().if_contains(name);
        const json::value* b = is->as_object().if_contains(name);
        if (a != nullptr && b != nullptr && *a == *b) continue;
        differing += std::string(differing.empty() ? "" : "; ") +
                     std::string(name) + ": " + text(a) + " in the report, " +
                     text(b) + " now";
      }
      return std::string(what) + " (" + differing + ")";
    }
    return std::string(what) + " (" + text(was) + " in the report, " +
           text(is) + " now)";
  }
  return "";
}

// Opens (or creates) the report file; with --resume, reads what it holds,
// checks that it was made as this invocation would make it (header: this
// invocation's "scan" record), and cuts off a record that a killed scan left
// incomplete. *preamble: what this run writes before its records (the
// "scan" record, or the "resumed" one). A report that is finished (has an
// "end" record) is not opened: *report_fd stays -1.
Status OpenReport(const ScanOptions& options, const json::object& header,
                  ExistingReport* existing, int* report_fd,
                  std::string* preamble) {
  const std::string& path = options.report;
  struct stat st;
  const bool exists = stat(path.c_str(), &st) == 0;
  if (exists && !options.resume && !options.overwrite) {
    return Error(ErrorCode::kInvalidArgument,
                 "the report " + path +
                     " exists: --resume continues it, --overwrite replaces it");
  }
  if (exists && options.resume) {
    if (Status read = ReadExistingReport(path, options.format, existing);
        !read.ok()) {
      return read;
    }
    if (existing->header) {
      if (const std::string differs = HeaderDifference(*existing->header, header);
          !differs.empty()) {
        return Error(ErrorCode::kInvalidArgument,
                     "cannot resume the report " + path +
                         ": it was made with " + differs +
                         "; its records and this scan's would not be of one "
                         "scan (start a new report)");
      }
    }
    if (existing->end) return {};
  }
  if (existing->header) {
    *preamble = FormatProvenance({{"record", "resumed"},
                                  {"time", NowIsoTime()},
                                  {"host", header.at("host")},
                                  {"kept", existing->counts.entries}},
                                 options.format);
  } else {
    *preamble = FormatProvenance(header, options.format);
    if (options.format == ReportFormat::kCsv) *preamble += CsvHeader();
  }
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC;
  if (!options.resume) flags |= O_TRUNC;
  const int fd = open(path.c_str(), flags, 0640);
  if (fd < 0) return ErrnoError(errno, "cannot open the report " + path);
  if (options.resume && exists) {
    if (ftruncate(fd, static_cast<off_t>(existing->complete_bytes)) != 0 ||
        lseek(fd, 0, SEEK_END) < 0) {
      const int e = errno;
      close(fd);
      return ErrnoError(e, "cannot continue the report " + path);
    }
  }
  *report_fd = fd;
  return {};
}

// The scanned PATH that holds the report (or is it), compared resolved
// (links followed; the report's directory when the report does not exist
// yet), or "" when none does. A report among the evidence would be scanned
// as evidence, and --overwrite would replace an evidence file.
std::string RootHoldingReport(const std::vector<std::string>& roots,
                              const std::string& report) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path absolute = fs::absolute(report, ec);
  if (ec) return "";
  const fs::path resolved = fs::weakly_canonical(absolute, ec);
  if (ec) return "";
  for (const std::string& root : roots) {
    const fs::path resolved_root = fs::canonical(root, ec);
    if (ec) continue;  // the walk reports it
    if (IsWithin(resolved, resolved_root)) return root;
  }
  return "";
}

bool ParseDouble(const std::string& s, double* value) {
  char* end = nullptr;
  errno = 0;
  *value = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size() && errno == 0;
}

}  // namespace

void SetScanAfterReadHookForTesting(
    std::function<void(const std::string&)> hook) {
  AfterReadHook() = std::move(hook);
}

int RunScanCommand(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err) {
  ScanOptions o;
  std::string store_url, csv;
  bool options_ended = false;
  auto usage = [&](const std::string& message) {
    err << "bantay scan: " << message << "\n";
    return kExitUsage;
  };
  if (std::string repeated = RepeatedOption(
          args,
          {"--index", "--store", "--server", "--api-key-file", "--ca",
           "--client-cert", "--client-key", "--key", "--public-key", "--report",
           "--csv", "--threads", "--radius", "--every", "--max-files",
           "--max-pixels", "--max-jpeg-scans", "--progress"});
      !repeated.empty()) {
    return usage(repeated);
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_ended || (!a.starts_with("-") && !a.empty())) {
      o.roots.push_back(a);
      continue;
    }
    if (a == "--key" || a == "--public-key") {
      bool missing = false;
      o.keys.Parse(args, &i, &missing);
      if (missing) return usage(a + " needs a value");
      continue;
    }
    auto value = [&](std::string* target) {
      if (i + 1 >= args.size()) return false;
      *target = args[++i];
      return true;
    };
    std::string text;
    if (a == "-h" || a == "--help") {
      out << kScanUsage;
      return kExitOk;
    } else if (a == "--") {
      options_ended = true;
    } else if (a == "--index" && value(&o.index)) {
    } else if (a == "--store" && value(&store_url)) {
    } else if (a == "--server" && value(&o.client.url)) {
    } else if (a == "--api-key-file" && value(&o.api_key_file)) {
    } else if (a == "--ca" && value(&o.client.ca_file)) {
    } else if (a == "--client-cert" && value(&o.client.client_cert_file)) {
    } else if (a == "--client-key" && value(&o.client.client_key_file)) {
    } else if (a == "--report" && value(&o.report)) {
    } else if (a == "--csv" && value(&csv)) {
    } else if (a == "--resume") {
      o.resume = true;
    } else if (a == "--overwrite") {
      o.overwrite = true;
    } else if (a == "--videos") {
      o.videos = true;
    } else if (a == "--dihedral") {
      o.dihedral = true;
    } else if (a == "--follow-symlinks") {
      o.follow_symlinks = true;
    } else if (a == "--threads" && value(&text)) {
      if (!ParseInt(text, &o.threads) || o.threads < 1 || o.threads > 256) {
        return usage("--threads must be an integer from 1 to 256");
      }
    } else if (a == "--radius" && value(&text)) {
      if (!ParseInt(text, &o.radius) || o.radius < 0 || o.radius > 64) {
        return usage("--radius must be an integer from 0 to 64");
      }
    } else if (a == "--every" && value(&text)) {
      if (!ParseDouble(text, &o.every) || !(o.every >= 0) || o.every > 3600) {
        return usage("--every must be a number of seconds from 0 to 3600");
      }
    } else if (a == "--max-files" && value(&text)) {
      if (!ParseInt64(text, &o.max_files) || o.max_files < 1) {
        return usage("--max-files must be a positive integer");
      }
    } else if (a == "--max-pixels" && value(&text)) {
      if (!ParseInt64(text, &o.max_pixels) || o.max_pixels < 1) {
        return usage("--max-pixels must be a positive integer");
      }
    } else if (a == "--max-jpeg-scans" && value(&text)) {
      if (!ParseInt(text, &o.max_jpeg_scans) || o.max_jpeg_scans < 1) {
        return usage("--max-jpeg-scans must be a positive integer");
      }
    } else if (a == "--progress" && value(&text)) {
      if (text == "auto") {
        o.progress = ProgressMode::kAuto;
      } else if (text == "bar") {
        o.progress = ProgressMode::kBar;
      } else if (text == "lines") {
        o.progress = ProgressMode::kLines;
      } else if (text == "none") {
        o.progress = ProgressMode::kNone;
      } else {
        return usage("--progress must be auto, bar, lines or none");
      }
    } else {
      err << "bantay scan: unknown or incomplete option '" << a << "'\n"
          << kScanUsage;
      return kExitUsage;
    }
  }

  if (o.roots.empty()) return usage("no PATH to scan given");
  if (!store_url.empty()) {
    if (!IsStoreUrl(store_url)) {
      return usage("--store takes sqlite:PATH or postgresql://...");
    }
    if (!o.index.empty()) return usage("give one of --index, --store, --server");
    o.index = store_url;
  }
  if (o.index.empty() == o.client.url.empty()) {
    return usage("give exactly one of --index, --store and --server");
  }
  if (!o.report.empty() && !csv.empty()) {
    return usage("give --report or --csv, not both");
  }
  if (!csv.empty()) {
    o.report = csv;
    o.format = ReportFormat::kCsv;
  }
  if ((o.resume || o.overwrite) && o.report.empty()) {
    return usage("--resume and --overwrite need --report FILE or --csv FILE");
  }
  if (o.resume && o.overwrite) return usage("give --resume or --overwrite, not both");
  if (!o.report.empty()) {
    if (const std::string root = RootHoldingReport(o.roots, o.report);
        !root.empty()) {
      return usage("the report " + o.report + " is inside the scanned path " +
                   root + "; write it outside the evidence");
    }
  }
  if (o.threads == 0) {
    o.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }

  // The matcher first: a scan that cannot match is not started.
  std::unique_ptr<ScanMatcher> matcher;
  matcher::HashIndex index;
  json::object index_id;
  if (!o.index.empty()) {
    o.keys.FromEnvironment();
    if (Status loaded = LoadIndex(o.index, o.keys, &index, &index_id);
        !loaded.ok()) {
      return usage(loaded.error().message());
    }
    index.MergeNow();
    index.WaitForMerge();
    matcher = MakeLocalMatcher(
        index.Snapshot(), o.radius >= 0 ? o.radius : models::kPdqMatchThreshold);
  } else {
    Result<std::string> key = ReadApiKey(o.api_key_file);
    if (!key.ok()) return usage(key.error().message());
    o.client.api_key = std::move(*key);
    ClientFilesFromEnvironment(&o.client);
    // Connecting once before the scan tells a wrong URL, certificate or key
    // at once instead of at the first file.
    Result<std::unique_ptr<HttpClient>> probe = HttpClient::Connect(o.client);
    if (!probe.ok()) return usage(probe.error().message());
    Result<HttpResponse> index_answer = (*probe)->Send("GET", "/v1/index");
    if (!index_answer.ok()) return usage(index_answer.error().message());
    if (index_answer->status == 401 || index_answer->status == 403) {
      return usage("the server refused the API key (HTTP " +
                   std::to_string(index_answer->status) + ")");
    }
    ServerMatcherOptions server;
    server.client = o.client;
    server.workers = o.threads;
    server.radius = o.radius;
    matcher = MakeServerMatcher(std::move(server));
  }

  const json::object header = ScanHeader(o, index_id);
  ExistingReport existing;
  int report_fd = -1;
  std::string preamble = FormatProvenance(header, o.format);
  if (!o.report.empty()) {
    Status opened = OpenReport(o, header, &existing, &report_fd, &preamble);
    if (!opened.ok()) return usage(opened.error().message());
    if (existing.end) {
      const RecordCounts& c = existing.counts;
      const json::value* finished = existing.end->if_contains("finished");
      err << "bantay scan: the report " << o.report << " is finished ("
          << WithCommas(c.entries) << " entries, " << WithCommas(c.matched)
          << " matched, " << WithCommas(c.errors) << " with errors"
          << (finished != nullptr && finished->is_string()
                  ? "; " + std::string(finished->as_string())
                  : std::string())
          << "): nothing to resume\n";
      return c.errors > 0 ? kExitSomeFailed : kExitOk;
    }
    if (o.resume && existing.counts.entries > 0) {
      err << "bantay scan: resuming: " << WithCommas(existing.counts.entries)
          << " entries already in " << o.report << "\n";
    }
  }
  if (o.videos) {
    // FFmpeg reports damaged streams on standard error, through the progress
    // display; the report has the error. (Unless the user asked otherwise.)
    setenv("OPENCV_FFMPEG_LOGLEVEL", "-8", /*overwrite=*/0);
  }
  const bool tty = isatty(STDERR_FILENO) == 1;
  const bool bar = o.progress == ProgressMode::kBar ||
                   (o.progress == ProgressMode::kAuto && tty);
  const bool lines = o.progress == ProgressMode::kLines ||
                     (o.progress == ProgressMode::kAuto && !tty);
  // Each entry once: a root inside another (or the same) is walked as part
  // of it. The header still names every root as given.
  const std::vector<CoveredRoot> covered = CoveredRoots(o.roots);
  for (size_t i = 0, next = 0; i < o.roots.size(); ++i) {
    if (next < covered.size() && covered[next].root == i) {
      const CoveredRoot& c = covered[next++];
      err << "bantay scan: " << o.roots[i]
          << (c.same ? " is the same as " : " is inside ") << o.roots[c.by]
          << " (" << c.resolved << "); its entries are scanned once, under "
          << o.roots[c.by] << "\n";
      continue;
    }
    o.walk_roots.push_back(o.roots[i]);
  }
  int status;
  {
    StopSignals signals;
    Counters kept;
    static_cast<RecordCounts&>(kept) = existing.counts;
    ScanRun run(o, matcher.get(), o.resume ? &existing.paths : nullptr, kept,
                report_fd, std::move(preamble), out, err, bar, lines);
    status = run.Run();
  }
  if (report_fd >= 0) close(report_fd);
  return status;
}

}  // namespace bantay::client
