// `bantay hash`: local hashing of image files, one JSON (or CSV) record per
// file, or a hash list for `bantay index import` (--out); and of video
// files, vPDQ frame hash lines (--video). Nothing of an image or video is
// written anywhere: image bytes are read into memory, hashed and dropped,
// and video frames are decoded from the file in memory.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <boost/json.hpp>

#include "bantay/client/cli.h"
#include "bantay/client/file_reader.h"
#include "bantay/models/text.h"
#include "command_util.h"
#include "scan_report.h"
#include "scan_walker.h"
#include "bantay/models/image_hasher.h"
#include "bantay/models/video_hasher.h"

namespace bantay::client {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using models::Dihedral;
using models::ImageHashes;

constexpr std::string_view kHashUsage =
    R"(Usage: bantay hash [-r] [--dihedral] [--fast] [--csv] [--trim-borders]
                   [--max-pixels N] [--max-jpeg-scans N] PATH...
       bantay hash [-r] [--max-pixels N] [--max-jpeg-scans N] --out LIST PATH...
       bantay hash --video [--every SECONDS] [--downscale N] [--max-frames N]
                   [--trim-borders] [--max-pixels N] FILE...

Hashes image files (JPEG, PNG, WebP, BMP, TIFF, told apart by content) with
PDQ, bit-compatible with Meta's reference, and MD5/SHA-256 of their bytes.
Prints one JSON object per line:
  {"path":"...","pdq":"<64 hex>","quality":N,"md5":"<hex>","sha256":"<hex>",
   "width":W,"height":H,"low_quality":false}
A hash of quality under 50 is marked "low_quality":true and should not be
matched. A file that cannot be read or decoded gives {"path":"...","error":"..."}
and the run goes on. A path that is not UTF-8 is printed with U+FFFD for the
bytes that are not, and follows as "path_hex", its exact bytes in hex (with
--csv, the last column, path_hex, empty for a path that is UTF-8).

With --out LIST, nothing is printed on standard output: the PDQ hashes are
written to LIST as a hash list that `bantay index import` reads, one
`pdq <64 hex> <reference>` line per image, where the reference is the path
relative to the directory walked (or the path given, for a file), with
spaces, control characters and '%' written as %XX. Hashes of quality under
50 are left out; they, failures and a summary are reported on standard error.

With --video, each FILE is a video (MP4/QuickTime, Matroska/WebM, AVI,
MPEG-TS/PS, FLV, ASF) whose frames are hashed as Meta's vPDQ does, one line
per hashed frame, exactly as vPDQ's hash files:
  frame_number,quality,pdq_hex,timestamp_seconds
When several FILEs are given, each one's lines follow a line `# FILE`.

Options:
  -r, --recursive   descend into directories (as bantay scan does: names in
                    byte order, directories opened without updating their
                    access time where allowed); files that are not images
                    are skipped (symbolic links to directories are not
                    followed; a file is opened where the walk examined it
                    and checked: one replaced since is an error line,
                    "changed during the scan: ..."). Each file is hashed
                    once: a PATH that is, resolved, inside a directory PATH
                    or the same as an earlier PATH is hashed as part of that
                    one, and standard error says so
  --dihedral        also print "pdq_dihedral": the hashes of the 8 rotations
                    and flips, in the order original, rotate90, rotate180,
                    rotate270, flipx, flipy, flip_plus1, flip_minus1
  --fast            decode large JPEGs at reduced size (several times faster;
                    a few bits from the compatible hash, see bench/README.md)
  --csv             CSV with a header line instead of JSON lines; its last
                    columns are error and path_hex
  --trim-borders    hash only the picture inside letterbox/pillarbox borders
                    (uniform bars of any colour, found on each image or video
                    frame; see models/include/bantay/models/border_trim.h),
                    so that a bordered copy hashes as its original does.
                    Images then also print "content":{"x":..,"y":..,
                    "width":..,"height":..}, the part hashed, and when that
                    is not the whole image "pdq_untrimmed", the hash of the
                    whole image (lists made from bordered copies match that
                    one; CSV: columns content_x, content_y, content_width,
                    content_height, pdq_untrimmed). Videos print the same
                    hash lines, and on standard error how many frames had
                    borders removed. Hash lists are made without it, so not
                    with --out
  --max-pixels N    refuse images, or videos whose frames, declare more than
                    N pixels (default 150000000), checked before decoding
  --max-jpeg-scans N  refuse JPEGs of more than N scans (default 500; each
                    scan is a pass over the whole picture), before decoding
  --out LIST        write a hash list for `bantay index import` (see above)
  --video           hash video files (see above)
  --every SECONDS   with --video: one frame every SECONDS of video time
                    (vPDQ's seconds per hash; default: every frame)
  --downscale N     with --video: scale frames to NxN before hashing (as
                    vPDQ's -128x128 hash files, N = 128)
  --max-frames N    with --video: stop after N decoded frames
  -h, --help        this text

Exit status: 0 every file hashed, 1 some file failed (for videos also: a file
that ends before the frames it declares), 2 usage error.
)";

struct HashCommandOptions {
  bool recursive = false;
  bool csv = false;
  models::HashOptions hash;
  std::string out_list;  // --out
  bool video = false;
  models::VideoHashOptions video_options;
  std::vector<std::string> paths;
};

// Where the hashes of images go: printed records, or a hash list.
class Sink {
 public:
  virtual ~Sink() = default;
  // reference: the image's name in a hash list (see ListReference).
  virtual void Hashed(const std::string& path, const std::string& reference,
                      const ImageHashes& hashes) = 0;
  virtual void Failed(const std::string& path, const std::string& error) = 0;
};

class Printer : public Sink {
 public:
  Printer(std::ostream& out, bool csv, bool dihedral, bool content)
      : out_(out), csv_(csv), dihedral_(dihedral), content_(content) {
    if (csv_) {
      out_ << "path,pdq,quality,md5,sha256,width,height,low_quality";
      if (dihedral_) {
        for (int v = 0; v < models::kDihedralCount; ++v) {
          out_ << ",pdq_" << models::DihedralName(static_cast<Dihedral>(v));
        }
      }
      if (content_) out_ << ",content_x,content_y,content_width,content_height,pdq_untrimmed";
      out_ << ",error,path_hex\n";
    }
  }

  void Hashed(const std::string& path, const std::string& /*reference*/,
              const ImageHashes& h) override {
    const std::string pdq = h.pdq.hash.ToHex();
    const std::string md5 = models::ToHex(h.digests.md5);
    const std::string sha256 = models::ToHex(h.digests.sha256);
    if (csv_) {
      const TextAndHex name = BytesAsText(path);
      out_ << CsvField(name.text) << ',' << pdq << ',' << h.pdq.quality << ','
           << md5 << ',' << sha256 << ',' << h.width << ',' << h.height << ','
           << (h.pdq.low_quality() ? "true" : "false");
      if (dihedral_) {
        for (const auto& d : h.pdq.dihedral) out_ << ',' << d.ToHex();
      }
      if (content_) {
        out_ << ',' << h.content.x << ',' << h.content.y << ',' << h.content.width << ','
             << h.content.height << ',' << (h.has_untrimmed ? h.untrimmed.hash.ToHex() : "");
      }
      out_ << ",," << name.hex << '\n';
      return;
    }
    json::object o;
    PutBytes(&o, "path", path);
    o["pdq"] = pdq;
    o["quality"] = h.pdq.quality;
    o["md5"] = md5;
    o["sha256"] = sha256;
    o["width"] = h.width;
    o["height"] = h.height;
    if (dihedral_) {
      json::array variants;
      for (const auto& d : h.pdq.dihedral) variants.emplace_back(d.ToHex());
      o["pdq_dihedral"] = std::move(variants);
    }
    if (content_) {
      o["content"] = {{"x", h.content.x},
                      {"y", h.content.y},
                      {"width", h.content.width},
                      {"height", h.content.height}};
      if (h.has_untrimmed) o["pdq_untrimmed"] = h.untrimmed.hash.ToHex();
    }
    o["low_quality"] = h.pdq.low_quality();
    out_ << json::serialize(o) << '\n';
  }

  void Failed(const std::string& path, const std::string& error) override {
    if (csv_) {
      const TextAndHex name = BytesAsText(path);
      out_ << CsvField(name.text) << ",,,,,,,";
      if (dihedral_) out_ << std::string(models::kDihedralCount, ',');
      if (content_) out_ << ",,,,,";
      out_ << ',' << CsvField(error) << ',' << name.hex << '\n';
      return;
    }
    json::object o;
    PutBytes(&o, "path", path);
    o["error"] = error;
    out_ << json::serialize(o) << '\n';
  }

 private:
  std::ostream& out_;
  bool csv_;
  bool dihedral_;
  bool content_;
};

// The store's import refuses references over 256 bytes and with control
// characters or whitespace (they separate columns); see import_formats.h.
constexpr size_t kMaxReferenceBytes = 256;

// A path as one whitespace-free, printable UTF-8 token: bytes that are
// spaces, control characters or '%' (and, in a name that is not UTF-8,
// every byte over 0x7F) become %XX, so that the name can be recovered.
std::string ListReference(std::string_view path) {
  const bool utf8 = models::IsValidUtf8(path);
  std::string out;
  for (char ch : path) {
    const auto c = static_cast<uint8_t>(ch);
    if (c <= 0x20 || c == 0x7f || c == '%' || (c >= 0x80 && !utf8)) {
      char hex[4];
      std::snprintf(hex, sizeof(hex), "%%%02X", c);
      out += hex;
    } else {
      out += ch;
    }
  }
  return out;
}

// Writes `pdq <hex> <reference>` lines; reports on `err`.
class ListWriter : public Sink {
 public:
  ListWriter(std::FILE* file, std::ostream& err) : file_(file), err_(err) {}

  void Hashed(const std::string& path, const std::string& reference,
              const ImageHashes& h) override {
    if (h.pdq.low_quality()) {
      ++low_quality_;
      err_ << "bantay hash: " << path << ": quality " << h.pdq.quality << " is under "
           << models::kPdqMinQuality << ", left out of the list\n";
      return;
    }
    const std::string name = ListReference(reference);
    if (name.size() > kMaxReferenceBytes) {
      Failed(path, "the path is too long for a list reference (" + std::to_string(name.size()) +
                       " bytes, at most " + std::to_string(kMaxReferenceBytes) + ")");
      return;
    }
    const std::string line = "pdq " + h.pdq.hash.ToHex() + " " + name + "\n";
    if (std::fputs(line.c_str(), file_) < 0) write_failed_ = true;
    ++written_;
  }

  void Failed(const std::string& path, const std::string& error) override {
    ++failed_;
    err_ << "bantay hash: " << path << ": " << error << "\n";
  }

  int64_t written() const { return written_; }
  int64_t low_quality() const { return low_quality_; }
  int64_t failed() const { return failed_; }
  bool write_failed() const { return write_failed_; }

 private:
  std::FILE* file_;
  std::ostream& err_;
  int64_t written_ = 0;
  int64_t low_quality_ = 0;
  int64_t failed_ = 0;
  bool write_failed_ = false;
};

// Opening a FIFO waits for a writer (for ever), opening a device may act on
// it: neither is ever opened.
constexpr char kNotRegular[] =
    "not a regular file (a FIFO, socket or device is never opened)";

class HashRun {
 public:
  HashRun(const HashCommandOptions& options, Sink& sink)
      : options_(options), hasher_(options.hash), sink_(sink) {}

  void Path(const std::string& path) {
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (ec || !fs::exists(st)) {
      Fail(path, "no such file or directory");
    } else if (fs::is_directory(st)) {
      if (options_.recursive) {
        root_ = path;
        Walk(path);
      } else {
        Fail(path, "is a directory (use -r to hash the images under it)");
      }
    } else if (!fs::is_regular_file(st)) {
      Fail(path, kNotRegular);
    } else {
      File(path);
    }
  }

  bool any_failed() const { return any_failed_; }

 private:
  // bantay scan's walk: depth-first, entries in byte order of their names
  // (so that two runs over the same tree print the same lines in the same
  // order), directories opened with O_NOATIME where allowed (their access
  // times are evidence too), FIFOs and devices never opened.
  void Walk(const std::string& dir) {
    WalkTrees({dir}, WalkOptions{}, [this](WalkEntry&& entry) {
      switch (entry.kind) {
        case WalkEntry::Kind::kFile:
          WalkFile(entry);
          break;
        case WalkEntry::Kind::kSymlink: {
          // Links are not followed (their targets may be outside the
          // tree): one to a file is reported, not hashed; others are
          // skipped.
          struct stat st;
          if (stat(entry.path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
            Fail(entry.path,
                 "symbolic link, not followed (name it as a PATH to hash its "
                 "target)");
          }
          break;
        }
        case WalkEntry::Kind::kSpecial:  // not an image, never opened
        case WalkEntry::Kind::kDuplicate:  // links are not followed: none
          break;
        case WalkEntry::Kind::kError:
          Fail(entry.path, entry.error.message());
          break;
      }
      return true;
    });
  }

  // A file of the walk, opened where the walk examined it (relative to
  // its directory, checked to be that file: a link or another file put in
  // its place since is an error line, not hashed). Only files whose
  // content is an image are hashed; the rest of a tree (documents,
  // archives) is not an error.
  void WalkFile(const WalkEntry& entry) {
    Result<Fd> fd = OpenWalkEntry(entry);
    if (!fd.ok()) {
      Fail(entry.path, fd.error().message());
      return;
    }
    Result<std::vector<uint8_t>> head = ReadOpenFileHead(fd->get(), 16);
    if (head.ok() &&
        models::DetectImageFormat(*head) == models::ImageFormat::kUnknown) {
      return;
    }
    Hash(entry.path,
         fs::path(entry.path).lexically_relative(root_).generic_string(),
         ReadWholeOpenFile(fd->get()));
  }

  // A file named as a PATH (a link named so is followed).
  void File(const std::string& path) { Hash(path, path, ReadWholeFile(path)); }

  void Hash(const std::string& path, const std::string& reference,
            const Result<std::vector<uint8_t>>& bytes) {
    if (!bytes.ok()) {
      Fail(path, bytes.error().message());
      return;
    }
    Result<ImageHashes> hashes = hasher_.Hash(*bytes);
    if (!hashes.ok()) {
      Fail(path, hashes.error().message());
      return;
    }
    sink_.Hashed(path, reference, *hashes);
  }

  void Fail(const std::string& path, const std::string& error) {
    any_failed_ = true;
    sink_.Failed(path, error);
  }

  const HashCommandOptions& options_;
  models::ImageHasher hasher_;
  Sink& sink_;
  fs::path root_;  // the directory being walked
  bool any_failed_ = false;
};

// The PATHs to hash. With -r each file is hashed once, as bantay scan
// scans each entry once: a PATH that resolves (links followed) to the same
// path as an earlier one, or to a path inside a directory PATH whose walk
// gets down to it, is left out, and err says so; unless that walk would
// not hash it (a file that is not an image, a FIFO: named, it gets its
// error record). Without -r, every PATH is hashed as given.
std::vector<std::string> PathsToHash(const HashCommandOptions& options,
                                     std::ostream& err) {
  if (!options.recursive) return options.paths;
  std::vector<std::string> paths;
  const std::vector<CoveredRoot> covered = CoveredRoots(options.paths);
  auto walk_hashes = [](const CoveredRoot& c) {
    std::error_code ec;
    if (fs::is_directory(c.resolved, ec)) return true;
    if (!fs::is_regular_file(c.resolved, ec)) return false;
    Result<std::vector<uint8_t>> head = ReadFileHead(c.resolved, 16);
    return head.ok() &&
           models::DetectImageFormat(*head) != models::ImageFormat::kUnknown;
  };
  for (size_t i = 0, next = 0; i < options.paths.size(); ++i) {
    if (next < covered.size() && covered[next].root == i) {
      const CoveredRoot& c = covered[next++];
      if (walk_hashes(c)) {
        const std::string& by = options.paths[c.by];
        err << "bantay hash: " << options.paths[i]
            << (c.same ? " is the same as " : " is inside ") << by << " ("
            << c.resolved << "); hashed once, under " << by << "\n";
        continue;
      }
    }
    paths.push_back(options.paths[i]);
  }
  return paths;
}

bool ParseDouble(std::string_view s, double* value) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *value);
  return ec == std::errc() && end == s.data() + s.size() && std::isfinite(*value);
}

int RunVideos(const HashCommandOptions& options, std::ostream& out, std::ostream& err) {
  bool any_failed = false;
  for (const std::string& path : options.paths) {
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (!ec && fs::exists(st) && !fs::is_regular_file(st) && !fs::is_directory(st)) {
      any_failed = true;
      err << "bantay hash: " << path << ": " << kNotRegular << "\n";
      continue;
    }
    Result<models::VideoHashes> hashes = models::HashVideoFile(path, options.video_options);
    if (!hashes.ok()) {
      any_failed = true;
      err << "bantay hash: " << hashes.error().message() << "\n";
      continue;
    }
    if (options.paths.size() > 1) out << "# " << path << "\n";
    for (const models::VideoFrameHash& frame : hashes->frames) {
      out << models::FormatVideoFrameHash(frame) << "\n";
    }
    out.flush();
    if (hashes->incomplete) {
      any_failed = true;
      err << "bantay hash: " << path << ": decoding ended after " << hashes->frames_decoded
          << " of the " << hashes->frames_declared
          << " frames the file declares (truncated or damaged); the frames decoded are "
             "hashed\n";
    }
    if (hashes->truncated) {
      err << "bantay hash: " << path << ": stopped after " << hashes->frames_decoded
          << " frames (--max-frames)\n";
    }
    if (options.video_options.trim_borders) {
      err << "bantay hash: " << path << ": borders removed from " << hashes->frames_trimmed
          << " of " << hashes->frames.size() << " hashed frames\n";
    }
  }
  if (!FlushOutput(out, err, "hash")) return kExitUsage;
  return any_failed ? kExitSomeFailed : kExitOk;
}

int RunList(const HashCommandOptions& options, std::ostream& err) {
  // Created private to the user: a hash list says which files a lab holds.
  const int fd = open(options.out_list.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    err << "bantay hash: cannot write " << options.out_list << ": " << std::strerror(errno)
        << "\n";
    return kExitSomeFailed;
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(fdopen(fd, "w"), &std::fclose);
  if (!file) {
    close(fd);
    err << "bantay hash: cannot write " << options.out_list << "\n";
    return kExitSomeFailed;
  }
  ListWriter writer(file.get(), err);
  HashRun run(options, writer);
  for (const std::string& path : PathsToHash(options, err)) run.Path(path);
  const bool write_failed = writer.write_failed() || std::fclose(file.release()) != 0;
  if (write_failed) {
    err << "bantay hash: writing " << options.out_list << " failed\n";
    return kExitSomeFailed;
  }
  err << "bantay hash: " << writer.written() << " hashes written to " << options.out_list
      << " (" << writer.low_quality() << " of low quality left out, " << writer.failed()
      << " files failed)\n";
  return run.any_failed() || writer.failed() > 0 ? kExitSomeFailed : kExitOk;
}

}  // namespace

int RunHashCommand(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err) {
  HashCommandOptions options;
  bool only_paths = false;
  std::string video_only;  // the last option that applies only to videos
  if (std::string repeated =
          RepeatedOption(args, {"--max-pixels", "--max-jpeg-scans", "--out",
                                "--every", "--downscale", "--max-frames"});
      !repeated.empty()) {
    err << "bantay hash: " << repeated << "\n";
    return kExitUsage;
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (only_paths || a.empty() || a[0] != '-' || a == "-") {
      options.paths.push_back(a);
    } else if (a == "--") {
      only_paths = true;
    } else if (a == "-h" || a == "--help") {
      out << kHashUsage;
      return kExitOk;
    } else if (a == "-r" || a == "--recursive") {
      options.recursive = true;
    } else if (a == "--dihedral") {
      options.hash.dihedral = true;
    } else if (a == "--fast") {
      options.hash.fast = true;
    } else if (a == "--csv") {
      options.csv = true;
    } else if (a == "--trim-borders") {
      options.hash.trim_borders = true;
      options.video_options.trim_borders = true;
    } else if (a == "--max-pixels") {
      int64_t n = 0;
      if (i + 1 >= args.size() || !ParseInt64(args[i + 1], &n) || n <= 0) {
        err << "bantay hash: --max-pixels needs a positive integer\n";
        return kExitUsage;
      }
      options.hash.max_pixels = n;
      options.video_options.max_pixels_per_frame = n;
      ++i;
    } else if (a == "--max-jpeg-scans") {
      int n = 0;
      if (i + 1 >= args.size() || !ParseInt(args[i + 1], &n) || n <= 0) {
        err << "bantay hash: --max-jpeg-scans needs a positive integer\n";
        return kExitUsage;
      }
      options.hash.max_jpeg_scans = n;
      ++i;
    } else if (a == "--out") {
      if (i + 1 >= args.size() || args[i + 1].empty()) {
        err << "bantay hash: --out needs a file name\n";
        return kExitUsage;
      }
      options.out_list = args[++i];
    } else if (a == "--video") {
      options.video = true;
      video_only = a;
    } else if (a == "--every") {
      double seconds = 0;
      if (i + 1 >= args.size() || !ParseDouble(args[i + 1], &seconds) || seconds <= 0) {
        err << "bantay hash: --every needs a positive number of seconds\n";
        return kExitUsage;
      }
      options.video_options.seconds_per_hash = seconds;
      video_only = a;
      ++i;
    } else if (a == "--downscale" || a == "--max-frames") {
      int64_t n = 0;
      const int64_t most = a == "--downscale" ? 4096 : INT64_MAX;
      if (i + 1 >= args.size() || !ParseInt64(args[i + 1], &n) || n <= 0 || n > most) {
        err << "bantay hash: " << a << " needs a positive integer"
            << (a == "--downscale" ? " (at most 4096)" : "") << "\n";
        return kExitUsage;
      }
      if (a == "--downscale") {
        options.video_options.downscale_to = static_cast<int>(n);
      } else {
        options.video_options.max_frames = n;
      }
      video_only = a;
      ++i;
    } else {
      err << "bantay hash: unknown option '" << a << "'\n" << kHashUsage;
      return kExitUsage;
    }
  }
  if (options.paths.empty()) {
    err << "bantay hash: no PATH given\n" << kHashUsage;
    return kExitUsage;
  }
  if (options.video) {
    const char* image_only = options.recursive        ? "-r"
                             : options.hash.dihedral  ? "--dihedral"
                             : options.hash.fast      ? "--fast"
                             : options.csv            ? "--csv"
                             : !options.out_list.empty() ? "--out"
                                                         : nullptr;
    if (image_only != nullptr) {
      err << "bantay hash: " << image_only << " is for images, not with --video\n";
      return kExitUsage;
    }
    return RunVideos(options, out, err);
  }
  if (!video_only.empty()) {
    err << "bantay hash: " << video_only << " needs --video\n";
    return kExitUsage;
  }
  if (!options.out_list.empty()) {
    // A list holds the compatible hashes only, one per image.
    const char* not_with_list = options.hash.dihedral       ? "--dihedral"
                                : options.hash.fast         ? "--fast"
                                : options.csv               ? "--csv"
                                : options.hash.trim_borders ? "--trim-borders"
                                                            : nullptr;
    if (not_with_list != nullptr) {
      err << "bantay hash: " << not_with_list << " cannot be used with --out\n";
      return kExitUsage;
    }
    options.hash.digests = false;
    return RunList(options, err);
  }
  Printer printer(out, options.csv, options.hash.dihedral, options.hash.trim_borders);
  HashRun run(options, printer);
  for (const std::string& path : PathsToHash(options, err)) run.Path(path);
  if (!FlushOutput(out, err, "hash")) return kExitUsage;
  return run.any_failed() ? kExitSomeFailed : kExitOk;
}

}  // namespace bantay::client
