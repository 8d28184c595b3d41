// `bantay hash`: local hashing of image files, one JSON (or CSV) record per
// file. Nothing of an image is written anywhere: the bytes are read into
// memory, hashed, and dropped.
#include <algorithm>
#include <charconv>
#include <filesystem>
#include <ostream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <boost/json.hpp>

#include "bantay/client/cli.h"
#include "bantay/client/file_reader.h"
#include "bantay/models/image_hasher.h"

namespace bantay::client {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using models::Dihedral;
using models::ImageHashes;

constexpr std::string_view kHashUsage =
    R"(Usage: bantay hash [-r] [--dihedral] [--fast] [--csv] [--max-pixels N] PATH...

Hashes image files (JPEG, PNG, WebP, BMP, TIFF, told apart by content) with
PDQ, bit-compatible with Meta's reference, and MD5/SHA-256 of their bytes.
Prints one JSON object per line:
  {"path":"...","pdq":"<64 hex>","quality":N,"md5":"<hex>","sha256":"<hex>",
   "width":W,"height":H,"low_quality":false}
A hash of quality under 50 is marked "low_quality":true and should not be
matched. A file that cannot be read or decoded gives {"path":"...","error":"..."}
and the run goes on.

Options:
  -r, --recursive   descend into directories; files that are not images are
                    skipped (symbolic links to directories are not followed)
  --dihedral        also print "pdq_dihedral": the hashes of the 8 rotations
                    and flips, in the order original, rotate90, rotate180,
                    rotate270, flipx, flipy, flip_plus1, flip_minus1
  --fast            decode large JPEGs at reduced size (several times faster;
                    a few bits from the compatible hash, see bench/README.md)
  --csv             CSV with a header line instead of JSON lines
  --max-pixels N    refuse images declaring more than N pixels
                    (default 150000000), checked before decoding
  -h, --help        this text

Exit status: 0 every file hashed, 1 some file failed, 2 usage error.
)";

struct HashCommandOptions {
  bool recursive = false;
  bool csv = false;
  models::HashOptions hash;
  std::vector<std::string> paths;
};

class Printer {
 public:
  Printer(std::ostream& out, bool csv, bool dihedral)
      : out_(out), csv_(csv), dihedral_(dihedral) {
    if (csv_) {
      out_ << "path,pdq,quality,md5,sha256,width,height,low_quality";
      if (dihedral_) {
        for (int v = 0; v < models::kDihedralCount; ++v) {
          out_ << ",pdq_" << models::DihedralName(static_cast<Dihedral>(v));
        }
      }
      out_ << ",error\n";
    }
  }

  void Hashed(const std::string& path, const ImageHashes& h) {
    const std::string pdq = h.pdq.hash.ToHex();
    const std::string md5 = models::ToHex(h.digests.md5);
    const std::string sha256 = models::ToHex(h.digests.sha256);
    if (csv_) {
      out_ << CsvField(path) << ',' << pdq << ',' << h.pdq.quality << ','
           << md5 << ',' << sha256 << ',' << h.width << ',' << h.height << ','
           << (h.pdq.low_quality() ? "true" : "false");
      if (dihedral_) {
        for (const auto& d : h.pdq.dihedral) out_ << ',' << d.ToHex();
      }
      out_ << ",\n";
      return;
    }
    json::object o;
    o["path"] = path;
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
    o["low_quality"] = h.pdq.low_quality();
    out_ << json::serialize(o) << '\n';
  }

  void Failed(const std::string& path, const std::string& error) {
    if (csv_) {
      out_ << CsvField(path) << ",,,,,,,";
      if (dihedral_) out_ << std::string(models::kDihedralCount, ',');
      out_ << ',' << CsvField(error) << '\n';
      return;
    }
    json::object o;
    o["path"] = path;
    o["error"] = error;
    out_ << json::serialize(o) << '\n';
  }

 private:
  // RFC 4180: quote a field holding a comma, quote or line break.
  static std::string CsvField(const std::string& s) {
    if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
    std::string quoted = "\"";
    for (char c : s) {
      if (c == '"') quoted += '"';
      quoted += c;
    }
    return quoted + '"';
  }

  std::ostream& out_;
  bool csv_;
  bool dihedral_;
};

class HashRun {
 public:
  HashRun(const HashCommandOptions& options, std::ostream& out)
      : options_(options),
        hasher_(options.hash),
        printer_(out, options.csv, options.hash.dihedral) {}

  void Path(const std::string& path) {
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (ec || !fs::exists(st)) {
      Fail(path, "no such file or directory");
    } else if (fs::is_directory(st)) {
      if (options_.recursive) {
        Walk(path);
      } else {
        Fail(path, "is a directory (use -r to hash the images under it)");
      }
    } else {
      File(path, /*from_walk=*/false);
    }
  }

  bool any_failed() const { return any_failed_; }

 private:
  // Depth-first, entries in byte order of their names, so that two runs over
  // the same tree print the same lines in the same order.
  void Walk(const fs::path& dir) {
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec) {
      Fail(dir.string(), "cannot read directory: " + ec.message());
      return;
    }
    std::vector<fs::directory_entry> entries;
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      if (ec) break;
      entries.push_back(*it);
    }
    if (ec) Fail(dir.string(), "cannot read directory: " + ec.message());
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return a.path() < b.path(); });
    for (const auto& entry : entries) {
      std::error_code type_ec;
      if (entry.is_symlink(type_ec)) {
        if (entry.is_regular_file(type_ec)) File(entry.path().string(), true);
        continue;  // links to directories are not followed
      }
      if (entry.is_directory(type_ec)) {
        Walk(entry.path());
      } else if (entry.is_regular_file(type_ec)) {
        File(entry.path().string(), true);
      }
    }
  }

  void File(const std::string& path, bool from_walk) {
    if (from_walk) {
      // Only files whose content is an image are hashed in a walk; the rest
      // of a tree (documents, archives) is not an error.
      Result<std::vector<uint8_t>> head = ReadFileHead(path, 16);
      if (head.ok() &&
          models::DetectImageFormat(*head) == models::ImageFormat::kUnknown) {
        return;
      }
    }
    Result<std::vector<uint8_t>> bytes = ReadWholeFile(path);
    if (!bytes.ok()) {
      Fail(path, bytes.error().message());
      return;
    }
    Result<ImageHashes> hashes = hasher_.Hash(*bytes);
    if (!hashes.ok()) {
      Fail(path, hashes.error().message());
      return;
    }
    printer_.Hashed(path, *hashes);
  }

  void Fail(const std::string& path, const std::string& error) {
    any_failed_ = true;
    printer_.Failed(path, error);
  }

  const HashCommandOptions& options_;
  models::ImageHasher hasher_;
  Printer printer_;
  bool any_failed_ = false;
};

bool ParseInt64(std::string_view s, int64_t* value) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *value);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

int RunHashCommand(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err) {
  HashCommandOptions options;
  bool only_paths = false;
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
    } else if (a == "--max-pixels") {
      int64_t n = 0;
      if (i + 1 >= args.size() || !ParseInt64(args[i + 1], &n) || n <= 0) {
        err << "bantay hash: --max-pixels needs a positive integer\n";
        return kExitUsage;
      }
      options.hash.max_pixels = n;
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
  HashRun run(options, out);
  for (const std::string& path : options.paths) run.Path(path);
  out.flush();
  return run.any_failed() ? kExitSomeFailed : kExitOk;
}

}  // namespace bantay::client
