// `bantay scan` on a generated tree: images (by content, whatever their
// names), a damaged image, non-media files, nested directories, a non-ASCII
// name, a FIFO, a symbolic link loop, unreadable entries; record by record;
// resume after --max-files, after a cut-off record, after SIGINT and SIGKILL;
// evidence left untouched (access times included).
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "bantay/client/cli.h"
#include "bantay/models/digest.h"
#include "cli_run.h"
#include "scan_testing.h"
#include "test_images.h"
#include "tls_test_util.h"

namespace bantay::client {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using bantay::testing::CliRun;
using bantay::testing::Encode;
using bantay::testing::MakePattern;
using bantay::testing::ReadTestFile;
using bantay::testing::TempDir;

CliRun Scan(const std::vector<std::string>& args) {
  return bantay::testing::RunCommand(RunScanCommand, args);
}

constexpr char kAaaPdq[] =
    "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";
constexpr char kAaaMd5[] = "d35c785545392755e7e4164457657269";
constexpr char kAaaSha256[] =
    "b5b0799616df52d475a3968dc7e54f1d0724c912244ffa6175bc786375dd7298";
// bridge-mods/sharpen-a-lot.jpg: 14 bits from aaa-orig.
constexpr char kSharpPdq[] =
    "d0f8f0cec0f4a84f0e370a22238f67f0b36a2ef596231e1d73e6a39c4e9c9b22";
constexpr char kSharpMd5[] = "b4606bb5c4b6f71ff9745cfd97bf070e";
constexpr char kSharpSha256[] =
    "ed086e12a054a9f8f32da1c60b8ccecc7954cfae78573f888a8b6ad8a1e78cdb";
constexpr char kSmallMd5[] = "33d9a49e6f9a0c732182afa3e89ea841";
constexpr char kSmallSha256[] =
    "329479790610cd0a2668eea439374cf279ef58d7330400dbb4e3569429ef5e3d";

// 2026-01-02T03:04:05.123456789Z, set on every generated entry so that the
// records' mtime is known.
constexpr time_t kMtimeSec = 1767323045;
constexpr long kMtimeNsec = 123456789;
constexpr char kMtimeText[] = "2026-01-02T03:04:05.123456789Z";

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

void SetMtime(const std::string& path) {
  struct timespec times[2];
  times[0].tv_sec = kMtimeSec - 86400;  // atime older than mtime: relatime
  times[0].tv_nsec = 0;                 // would update it on a plain read
  times[1].tv_sec = kMtimeSec;
  times[1].tv_nsec = kMtimeNsec;
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0)
      << path;
}

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

std::string Hex(const models::Md5Digest& d) { return models::ToHex(d); }

// Now, as the report's times are written (RFC 3339, UTC, nanoseconds).
std::string NowText() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const int64_t ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now).count();
  const time_t secs = static_cast<time_t>(ns / 1'000'000'000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<long long>(ns % 1'000'000'000));
  return buf;
}
std::string Hex(const models::Sha256Digest& d) { return models::ToHex(d); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The entry records of a JSON-lines report, whose first line must be its
// "scan" record; provenance records (those with a "record" member) are left
// out.
std::vector<json::object> JsonLines(const std::string& text) {
  std::vector<json::object> out;
  std::istringstream in(text);
  bool first = true;
  for (std::string line; std::getline(in, line); first = false) {
    json::object o = json::parse(line).as_object();
    if (first) {
      EXPECT_EQ(o["record"], "scan") << line;
    }
    if (!o.contains("record")) out.push_back(std::move(o));
  }
  return out;
}

// The lines of the entry records of a report (JSON lines, or CSV rows
// without the column names), checked to start with its "scan" record and to
// end with its "end" record when `finished`.
std::string Entries(const std::string& text, bool finished = true) {
  std::istringstream in(text);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  if (lines.empty()) {
    ADD_FAILURE() << "no scan record";
    return "";
  }
  const bool csv = lines[0].starts_with("\"#{");
  EXPECT_TRUE(lines[0].starts_with(csv ? "\"#{\"\"record\"\":\"\"scan\"\","
                                       : "{\"record\":\"scan\","))
      << lines[0];
  const std::string end = csv ? "\"#{\"\"record\"\":\"\"end\"\","
                              : "{\"record\":\"end\",";
  EXPECT_EQ(lines.back().starts_with(end), finished) << lines.back();
  std::string out;
  for (size_t i = csv ? 2 : 1; i < lines.size() - (finished ? 1 : 0); ++i) {
    out += lines[i] + "\n";
  }
  return out;
}

// A report with what differs by nature between two runs of one scan taken
// out: the times of its "scan", "resumed" and "end" records, and its
// "resumed" records (a --resume run adds one where it began).
std::string SameScan(const std::string& report) {
  static const std::regex kResumed(
      R"re((^|\n)"?#?\{"{1,2}record"{1,2}:"{1,2}resumed"{1,2}[^\n]*)re");
  static const std::regex kTime(
      R"re(("{1,2})(started|finished)"{1,2}:"{1,2}[0-9T:.Z-]+)re");
  return std::regex_replace(std::regex_replace(report, kResumed, ""), kTime,
                            "$1$2$1:$1T");
}

// The scanned tree:
//   aaa.jpg                 the reference photo, on the list (pdq)
//   b/c.dat                 a JPEG under another name, 14 bits away
//   b/deeper/pattern.png    a generated picture, not on any list
//   corrupt.jpg             the first 20,000 bytes of aaa.jpg
//   fifo                    a named pipe (never opened)
//   loop -> .               a link back to the root
//   notes.txt               text, on the list by its MD5
//   random.jpg              random bytes under an image name
//   ñandú é.png             the reference's low-quality JPEG, non-ASCII name
class ScanTree {
 public:
  ScanTree() {
    root_ = dir_.path() + "/evidence";
    const auto aaa = ReadTestFile("pdq/bridge-mods/aaa-orig.jpg");
    Put("aaa.jpg", aaa);
    Put("b/c.dat", ReadTestFile("pdq/bridge-mods/sharpen-a-lot.jpg"));
    pattern_ = Encode(MakePattern(320, 240), ".png");
    Put("b/deeper/pattern.png", pattern_);
    corrupt_.assign(aaa.begin(), aaa.begin() + 20000);
    Put("corrupt.jpg", corrupt_);
    EXPECT_EQ(mkfifo((root_ + "/fifo").c_str(), 0644), 0);
    EXPECT_EQ(symlink(".", (root_ + "/loop").c_str()), 0);
    notes_ = "benign case notes\n";
    Put("notes.txt", {notes_.begin(), notes_.end()});
    random_ = RandomBytes(5000, 7);
    Put("random.jpg", random_);
    Put("\xc3\xb1" "and\xc3\xba \xc3\xa9.png",
        ReadTestFile("pdq/misc-images/small.jpg"));
    for (const char* p : {"aaa.jpg", "b/c.dat", "b/deeper/pattern.png",
                          "corrupt.jpg", "fifo", "loop", "notes.txt",
                          "random.jpg", "\xc3\xb1" "and\xc3\xba \xc3\xa9.png"}) {
      SetMtime(root_ + "/" + p);
    }
    // The list: aaa's PDQ, and the notes by MD5; plus an unrelated entry.
    list_ = dir_.path() + "/known.txt";
    std::ofstream list(list_);
    list << "pdq " << kAaaPdq << " case-aaa\n"
         << "md5 " << Hex(models::Md5(Bytes(notes_))) << " case-notes\n"
         << "pdq " << std::string(64, '0') << " case-zero\n";
  }

  const std::string& root() const { return root_; }
  const std::string& list() const { return list_; }
  std::string dir() const { return dir_.path(); }
  std::string Path(const std::string& relative) const {
    return root_ + "/" + relative;
  }

  // The expected records of a scan with the default options, in walk order.
  std::vector<std::string> Expected() const {
    std::vector<std::string> lines;
    auto add = [&](json::object o) { lines.push_back(json::serialize(o)); };
    add({{"path", Path("aaa.jpg")},
         {"kind", "image"},
         {"format", "jpeg"},
         {"size", 361182},
         {"mtime", kMtimeText},
         {"md5", kAaaMd5},
         {"sha256", kAaaSha256},
         {"pdq", kAaaPdq},
         {"quality", 100},
         {"width", 1600},
         {"height", 1004},
         {"pdq_checked", true},
         {"verdict", "match"},
         {"matches", json::array{json::object{{"list", "known.txt"},
                                              {"category", ""},
                                              {"ref", "case-aaa"},
                                              {"signal", "pdq"},
                                              {"distance", 0},
                                              {"variant", "original"}}}}});
    add({{"path", Path("b/c.dat")},
         {"kind", "image"},
         {"format", "jpeg"},
         {"size", 571940},
         {"mtime", kMtimeText},
         {"md5", kSharpMd5},
         {"sha256", kSharpSha256},
         {"pdq", kSharpPdq},
         {"quality", 100},
         {"width", 1600},
         {"height", 1004},
         {"pdq_checked", true},
         {"verdict", "match"},
         {"matches", json::array{json::object{{"list", "known.txt"},
                                              {"category", ""},
                                              {"ref", "case-aaa"},
                                              {"signal", "pdq"},
                                              {"distance", 14},
                                              {"variant", "original"}}}}});
    const auto pattern_digests = models::ComputeDigests(pattern_);
    add({{"path", Path("b/deeper/pattern.png")},
         {"kind", "image"},
         {"format", "png"},
         {"size", static_cast<int64_t>(pattern_.size())},
         {"mtime", kMtimeText},
         {"md5", Hex(pattern_digests.md5)},
         {"sha256", Hex(pattern_digests.sha256)},
         {"pdq", PatternPdq()},
         {"quality", 100},
         {"width", 320},
         {"height", 240},
         {"pdq_checked", true},
         {"verdict", "no_match"}});
    const auto corrupt_digests = models::ComputeDigests(corrupt_);
    add({{"path", Path("corrupt.jpg")},
         {"kind", "image"},
         {"format", "jpeg"},
         {"size", 20000},
         {"mtime", kMtimeText},
         {"md5", Hex(corrupt_digests.md5)},
         {"sha256", Hex(corrupt_digests.sha256)},
         {"pdq_checked", false},
         {"verdict", "error"},
         {"error", json::object{{"code", "corrupt_data"},
                                {"message", CorruptMessage()}}}});
    add({{"path", Path("fifo")},
         {"kind", "special"},
         {"mtime", kMtimeText},
         {"verdict", "skipped"},
         {"note", "not a regular file: not opened"}});
    add({{"path", Path("loop")},
         {"kind", "symlink"},
         {"mtime", kMtimeText},
         {"link_target", "."},
         {"verdict", "skipped"},
         {"note",
          "symbolic link, not followed (--follow-symlinks follows links)"}});
    add({{"path", Path("notes.txt")},
         {"kind", "other"},
         {"size", static_cast<int64_t>(notes_.size())},
         {"mtime", kMtimeText},
         {"md5", Hex(models::Md5(Bytes(notes_)))},
         {"sha256", Hex(models::Sha256(Bytes(notes_)))},
         {"verdict", "match"},
         {"matches", json::array{json::object{{"list", "known.txt"},
                                              {"category", ""},
                                              {"ref", "case-notes"},
                                              {"signal", "md5"},
                                              {"distance", 0}}}}});
    const auto random_digests = models::ComputeDigests(random_);
    add({{"path", Path("random.jpg")},
         {"kind", "other"},
         {"size", 5000},
         {"mtime", kMtimeText},
         {"md5", Hex(random_digests.md5)},
         {"sha256", Hex(random_digests.sha256)},
         {"verdict", "no_match"}});
    add({{"path", Path("\xc3\xb1" "and\xc3\xba \xc3\xa9.png")},
         {"kind", "image"},
         {"format", "jpeg"},
         {"size", 1756},
         {"mtime", kMtimeText},
         {"md5", kSmallMd5},
         {"sha256", kSmallSha256},
         {"pdq", "0007001f003f003f007f00ff00ff00ff01ff01ff01ff03ff03ff03ff03ff03ff"},
         {"quality", 0},
         {"width", 0},
         {"height", 0},
         {"pdq_checked", false},
         {"verdict", "no_match"},
         {"note", "PDQ quality under 50: the hash is not matched"}});
    return lines;
  }

  // Filled in by the test from `bantay hash` (the PDQ module's own tests
  // check its hashes; here only that the scan reports the same).
  std::string pattern_pdq;
  std::string corrupt_message;
  int small_width = 0;
  int small_height = 0;

 private:
  void Put(const std::string& relative, const std::vector<uint8_t>& bytes) {
    dir_.Write("evidence/" + relative, bytes);
  }
  std::string PatternPdq() const { return pattern_pdq; }
  std::string CorruptMessage() const { return corrupt_message; }

  TempDir dir_;
  std::string root_;
  std::string list_;
  std::vector<uint8_t> pattern_;
  std::vector<uint8_t> corrupt_;
  std::string notes_;
  std::vector<uint8_t> random_;
};

class ScanCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CliRun hashed = bantay::testing::RunCommand(
        RunHashCommand, {tree_.Path("b/deeper/pattern.png"),
                         tree_.Path("corrupt.jpg"),
                         tree_.Path("\xc3\xb1" "and\xc3\xba \xc3\xa9.png")});
    ASSERT_EQ(hashed.lines.size(), 3u) << hashed.out << hashed.err;
    tree_.pattern_pdq = std::string(hashed.lines[0].at("pdq").as_string());
    tree_.corrupt_message = std::string(hashed.lines[1].at("error").as_string());
    expected_ = tree_.Expected();
    // The low-quality picture's size, as the hasher gives it.
    json::object small = json::parse(expected_.back()).as_object();
    small["width"] = hashed.lines[2].at("width");
    small["height"] = hashed.lines[2].at("height");
    expected_.back() = json::serialize(small);
  }

  std::string ExpectedReport() const {
    std::string report;
    for (const std::string& line : expected_) report += line + "\n";
    return report;
  }

  ScanTree tree_;
  std::vector<std::string> expected_;
};

TEST_F(ScanCommandTest, EveryEntryGetsItsExactRecordInWalkOrder) {
  CliRun run = Scan({tree_.root(), "--index", tree_.list(), "--threads", "2",
                     "--progress", "none"});
  EXPECT_EQ(run.status, kExitSomeFailed) << run.err;  // corrupt.jpg
  const std::vector<json::object> lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), expected_.size()) << run.out;
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(json::serialize(lines[i]), expected_[i]) << i;
  }
  EXPECT_EQ(Entries(run.out), ExpectedReport());
  EXPECT_NE(run.err.find("bantay scan: 9 entries (5 images, 0 videos, 2 other "
                         "files, 2 links/special skipped)"),
            std::string::npos)
      << run.err;
  EXPECT_NE(run.err.find("; 3 matched, 1 with errors\n"), std::string::npos)
      << run.err;
}

TEST_F(ScanCommandTest, OneThreadAndManyThreadsGiveTheSameReport) {
  CliRun one = Scan({tree_.root(), "--index", tree_.list(), "--threads", "1",
                     "--progress", "none"});
  CliRun many = Scan({tree_.root(), "--index", tree_.list(), "--threads", "7",
                      "--progress", "none"});
  EXPECT_EQ(Entries(one.out), ExpectedReport());
  EXPECT_EQ(Entries(many.out), ExpectedReport());
}

TEST_F(ScanCommandTest, SeveralRootsAndSingleFiles) {
  CliRun run = Scan({tree_.Path("notes.txt"), tree_.Path("b"), "--index",
                     tree_.list(), "--progress", "none"});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(Entries(run.out), expected_[6] + "\n" + expected_[1] + "\n" + expected_[2] +
                         "\n");
}

// Overlapping PATHs (one inside another, the same one twice, a link to
// one) give each entry once, under the PATH that covers the others; the
// report's header still names every PATH as given.
TEST_F(ScanCommandTest, OverlappingPathsGiveEachEntryOnce) {
  const std::string b = tree_.Path("b");
  const std::string deeper = tree_.Path("b/deeper");
  const std::string link = tree_.dir() + "/to-b";
  ASSERT_EQ(symlink(b.c_str(), link.c_str()), 0);
  const std::string b_resolved = fs::canonical(b).string();
  const std::string deeper_resolved = fs::canonical(deeper).string();
  const std::string c_resolved = fs::canonical(tree_.Path("b/c.dat")).string();
  const std::string b_entries = expected_[1] + "\n" + expected_[2] + "\n";
  auto note = [](const std::string& path, const char* how, const std::string& by,
                 const std::string& resolved) {
    return "bantay scan: " + path + how + by + " (" + resolved +
           "); its entries are scanned once, under " + by + "\n";
  };
  struct Case {
    std::vector<std::string> roots;
    std::string notes;
  };
  const std::vector<Case> cases = {
      {{b, deeper}, note(deeper, " is inside ", b, deeper_resolved)},
      {{deeper, b}, note(deeper, " is inside ", b, deeper_resolved)},
      {{b, b}, note(b, " is the same as ", b, b_resolved)},
      {{b, link}, note(link, " is the same as ", b, b_resolved)},
      {{deeper, tree_.Path("b/c.dat"), b, deeper + "/"},
       note(deeper, " is inside ", b, deeper_resolved) +
           note(tree_.Path("b/c.dat"), " is inside ", b, c_resolved) +
           note(deeper + "/", " is inside ", b, deeper_resolved)},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = c.roots;
    for (const char* a : {"--index", "", "--progress", "none"}) args.push_back(a);
    args[args.size() - 3] = tree_.list();
    CliRun run = Scan(args);
    EXPECT_EQ(run.status, kExitOk) << run.err;
    EXPECT_EQ(Entries(run.out), b_entries) << c.roots[0] << " " << c.roots[1];
    EXPECT_TRUE(run.err.starts_with(c.notes)) << run.err;
    EXPECT_EQ(run.err.find(c.notes, 1), std::string::npos) << run.err;
    const json::object header =
        json::parse(run.out.substr(0, run.out.find('\n'))).as_object();
    const json::array& roots = header.at("roots").as_array();
    ASSERT_EQ(roots.size(), c.roots.size()) << run.out;
    for (size_t i = 0; i < roots.size(); ++i) {
      EXPECT_EQ(roots[i].at("path").as_string(), c.roots[i]);
    }
  }
  // A link to the directory first: its path is the one the entries get.
  CliRun run = Scan({link, b, "--index", tree_.list(), "--progress", "none"});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  const std::vector<json::object> lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), 2u) << run.out;
  EXPECT_EQ(lines[0].at("path").as_string(), link + "/c.dat");
  EXPECT_EQ(lines[1].at("path").as_string(), link + "/deeper/pattern.png");
  EXPECT_TRUE(run.err.starts_with(note(b, " is the same as ", link, b_resolved)))
      << run.err;
}

TEST_F(ScanCommandTest, FollowingLinksReportsTheLoop) {
  CliRun run = Scan({tree_.root(), "--index", tree_.list(), "--follow-symlinks",
                     "--progress", "none"});
  const std::vector<json::object> lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), expected_.size());
  EXPECT_EQ(json::serialize(lines[5]),
            json::serialize(json::object{
                {"path", tree_.Path("loop")},
                {"kind", "unknown"},
                {"verdict", "error"},
                {"error",
                 json::object{{"code", "invalid_argument"},
                              {"message",
                               "symbolic link loop: leads back into a "
                               "directory being scanned"}}}}));
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i != 5) {
      EXPECT_EQ(json::serialize(lines[i]), expected_[i]) << i;
    }
  }
}

// With links followed, a file or directory that a link leads to is scanned
// once, under the first path that reaches it, whichever PATH the link is in
// (as overlapping PATHs are), and standard error names both paths; hard
// links reached without a symbolic link stay entries of their own.
TEST_F(ScanCommandTest, FollowingLinksScansEachFileAndDirectoryOnce) {
  const std::string b = tree_.Path("b");
  const std::string other = tree_.dir() + "/other";
  ASSERT_EQ(mkdir(other.c_str(), 0755), 0);
  ASSERT_EQ(symlink(tree_.Path("b/c.dat").c_str(), (other + "/to-c.dat").c_str()), 0);
  ASSERT_EQ(symlink(tree_.Path("b/deeper").c_str(), (other + "/to-deeper").c_str()), 0);
  ASSERT_EQ(link(tree_.Path("b/c.dat").c_str(), tree_.Path("b/hard.dat").c_str()), 0);
  auto same_file = [](const std::string& path, const std::string& first) {
    return "bantay scan: " + path + " is the same file as " + first +
           " (the same device and inode, through a symbolic link); it is scanned once, as " +
           first + "\n";
  };
  auto same_directory = [](const std::string& path, const std::string& first) {
    return "bantay scan: " + path + " is the same directory as " + first +
           " (the same device and inode, through a symbolic link); its entries are scanned "
           "once, under " +
           first + "\n";
  };
  auto paths = [](const CliRun& run) {
    std::vector<std::string> out;
    for (const json::object& line : JsonLines(run.out)) {
      out.emplace_back(line.at("path").as_string());
      EXPECT_NE(line.at("verdict").as_string(), "error") << json::serialize(line);
    }
    return out;
  };
  CliRun run = Scan({b, other, "--index", tree_.list(), "--follow-symlinks", "--progress", "none"});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(paths(run), (std::vector<std::string>{tree_.Path("b/c.dat"),
                                                  tree_.Path("b/deeper/pattern.png"),
                                                  tree_.Path("b/hard.dat")}));
  EXPECT_TRUE(run.err.starts_with(
      same_file(other + "/to-c.dat", tree_.Path("b/c.dat")) +
      same_directory(other + "/to-deeper", tree_.Path("b/deeper")) + "bantay scan: 3 entries ("))
      << run.err;

  // The link first: the entries get the paths through it, and the files
  // reached without a link afterwards (the hard link too: a symbolic link
  // led to that file first) are the ones left out.
  run = Scan({other, b, "--index", tree_.list(), "--follow-symlinks", "--progress", "none"});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(paths(run), (std::vector<std::string>{other + "/to-c.dat",
                                                  other + "/to-deeper/pattern.png"}));
  EXPECT_TRUE(run.err.starts_with(same_file(tree_.Path("b/c.dat"), other + "/to-c.dat") +
                                  same_directory(tree_.Path("b/deeper"), other + "/to-deeper") +
                                  same_file(tree_.Path("b/hard.dat"), other + "/to-c.dat") +
                                  "bantay scan: 2 entries ("))
      << run.err;
  // Stopped after the first entry and resumed: the same entries.
  const std::string whole = tree_.dir() + "/whole.jsonl";
  const std::string parts = tree_.dir() + "/parts.jsonl";
  Scan({other, b, "--index", tree_.list(), "--follow-symlinks", "--report", whole,
        "--progress", "none"});
  EXPECT_EQ(Scan({other, b, "--index", tree_.list(), "--follow-symlinks", "--report", parts,
                  "--max-files", "1", "--progress", "none"})
                .status,
            3);
  CliRun rest = Scan({other, b, "--index", tree_.list(), "--follow-symlinks", "--report",
                      parts, "--resume", "--progress", "none"});
  EXPECT_EQ(rest.status, kExitOk) << rest.err;
  EXPECT_EQ(SameScan(ReadFile(parts)), SameScan(ReadFile(whole)));
  EXPECT_EQ(JsonLines(ReadFile(parts)).size(), 2u);

  // Without following, the links are entries of their own, as before.
  run = Scan({b, other, "--index", tree_.list(), "--progress", "none"});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(paths(run),
            (std::vector<std::string>{tree_.Path("b/c.dat"), tree_.Path("b/deeper/pattern.png"),
                                      tree_.Path("b/hard.dat"), other + "/to-c.dat",
                                      other + "/to-deeper"}));
  EXPECT_TRUE(run.err.starts_with("bantay scan: 5 entries (")) << run.err;
}

TEST_F(ScanCommandTest, LinkToAFileOutsideTheTreeIsNotFollowed) {
  TempDir outside;
  const std::string target = outside.Write(
      "photo.jpg", ReadTestFile("pdq/bridge-mods/aaa-orig.jpg"));
  ASSERT_EQ(symlink(target.c_str(), tree_.Path("b/outside.jpg").c_str()), 0);
  CliRun run = Scan({tree_.Path("b"), "--index", tree_.list(), "--progress",
                     "none"});
  std::vector<json::object> lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[2].at("path").as_string(), tree_.Path("b/outside.jpg"));
  EXPECT_EQ(lines[2].at("kind").as_string(), "symlink");
  EXPECT_EQ(lines[2].at("link_target").as_string(), target);
  EXPECT_EQ(lines[2].at("verdict").as_string(), "skipped");
  EXPECT_FALSE(lines[2].contains("md5"));

  run = Scan({tree_.Path("b"), "--index", tree_.list(), "--follow-symlinks",
              "--progress", "none"});
  lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[2].at("kind").as_string(), "image");
  EXPECT_EQ(lines[2].at("md5").as_string(), kAaaMd5);
  EXPECT_EQ(lines[2].at("verdict").as_string(), "match");
}

// A file that grows while it is read: its record keeps the size and time
// from before, and hashes that may be of neither version, so it is marked.
TEST_F(ScanCommandTest, AFileThatChangesWhileItIsReadIsMarked) {
  const std::string photo = tree_.Path("aaa.jpg");
  SetScanAfterReadHookForTesting([&](const std::string& path) {
    if (path == photo) std::ofstream(photo, std::ios::app) << "grown";
  });
  CliRun run = Scan({photo, tree_.Path("notes.txt"), "--index", tree_.list(),
                     "--progress", "none"});
  SetScanAfterReadHookForTesting(nullptr);
  EXPECT_EQ(run.status, kExitSomeFailed) << run.err;
  const std::vector<json::object> lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), 2u) << run.out;
  json::object expected = json::parse(expected_[0]).as_object();
  expected["error"] = json::object{
      {"code", "io_error"},
      {"message",
       "changed while it was read (size 361182 -> 361187 bytes): the hashes "
       "may be of neither version; scan it again"}};
  EXPECT_EQ(json::value(lines[0]), json::value(expected)) << run.out;
  EXPECT_EQ(json::serialize(lines[1]), expected_[6]);
}

// What the walk examined is what is read: a file is opened relative to the
// directory the walk listed, and checked by device and inode. Between the
// walk and the open (the hook), a file replaced by another, one replaced by
// a link, and a directory replaced by a link to a lookalike elsewhere: the
// replaced entries get an error record and nothing of what took their
// place is read; a file in a directory that was moved away is still read
// through the walk's descriptor of that directory.
TEST_F(ScanCommandTest, WhatTookTheWalksEntriesPlaceIsNotRead) {
  TempDir outside;
  const std::string photo = outside.Write(
      "photo.jpg", ReadTestFile("pdq/bridge-mods/aaa-orig.jpg"));
  outside.Write("b/c.dat", RandomBytes(100, 3));
  outside.Write("b/deeper/other.png", Encode(MakePattern(64, 64), ".png"));
  std::vector<std::string> hooked;
  SetWalkOpenHookForTesting([&](const std::string& path) {
    hooked.push_back(path);
    const std::string moved = tree_.dir() + "/moved-" + fs::path(path).filename().string();
    if (path == tree_.Path("aaa.jpg")) {
      std::ofstream(moved) << "another file";
      ASSERT_EQ(rename(moved.c_str(), path.c_str()), 0);
    } else if (path == tree_.Path("notes.txt")) {
      ASSERT_EQ(symlink(photo.c_str(), moved.c_str()), 0);
      ASSERT_EQ(rename(moved.c_str(), path.c_str()), 0);
    } else if (path == tree_.Path("b/c.dat")) {
      ASSERT_EQ(rename(tree_.Path("b").c_str(), moved.c_str()), 0);
      ASSERT_EQ(symlink((outside.path() + "/b").c_str(), tree_.Path("b").c_str()), 0);
    }
  });
  CliRun run = Scan({tree_.root(), "--index", tree_.list(), "--threads", "1",
                     "--progress", "none"});
  SetWalkOpenHookForTesting(nullptr);
  EXPECT_EQ(run.status, kExitSomeFailed) << run.err;
  // The regular files, but for b/deeper/pattern.png (not walked).
  EXPECT_EQ(hooked.size(), 6u);
  const std::vector<json::object> lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), expected_.size()) << run.out;
  auto changed = [&](const std::string& relative, int64_t size, const std::string& message) {
    return json::serialize(json::object{
        {"path", tree_.Path(relative)},
        {"kind", "unknown"},
        {"size", size},
        {"mtime", kMtimeText},
        {"verdict", "error"},
        {"error", json::object{{"code", "io_error"},
                               {"message", "changed during the scan: " + message}}}});
  };
  EXPECT_EQ(json::serialize(lines[0]),
            changed("aaa.jpg", 361182,
                    "another file is in its place since the walk examined it (device "
                    "and inode differ); not read"));
  EXPECT_EQ(json::serialize(lines[1]), expected_[1]);  // through b's descriptor
  EXPECT_EQ(json::serialize(lines[2]),
            json::serialize(json::object{
                {"path", tree_.Path("b/deeper")},
                {"kind", "unknown"},
                {"verdict", "error"},
                {"error", json::object{{"code", "io_error"},
                                       {"message",
                                        "changed during the scan: another directory is in "
                                        "its place since the walk examined it (device and "
                                        "inode differ); not walked"}}}}));
  for (size_t i : {3, 4, 5, 7, 8}) EXPECT_EQ(json::serialize(lines[i]), expected_[i]) << i;
  EXPECT_EQ(json::serialize(lines[6]),
            changed("notes.txt", 18,
                    "a symbolic link is in its place since the walk examined it; not "
                    "followed"));
}

// With links followed, a link pointed elsewhere since the walk followed it
// leads to another file: not read either.
TEST_F(ScanCommandTest, ALinkPointedElsewhereSinceTheWalkIsNotFollowed) {
  TempDir outside;
  const std::string link = outside.path() + "/to-notes.txt";
  ASSERT_EQ(symlink(tree_.Path("notes.txt").c_str(), link.c_str()), 0);
  SetWalkOpenHookForTesting([&](const std::string& path) {
    if (path != link) return;
    const std::string moved = outside.path() + "/moved";
    ASSERT_EQ(symlink(tree_.Path("random.jpg").c_str(), moved.c_str()), 0);
    ASSERT_EQ(rename(moved.c_str(), link.c_str()), 0);
  });
  CliRun run = Scan({outside.path(), "--index", tree_.list(), "--follow-symlinks",
                     "--progress", "none"});
  SetWalkOpenHookForTesting(nullptr);
  EXPECT_EQ(run.status, kExitSomeFailed) << run.err;
  const std::vector<json::object> lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), 1u) << run.out;
  EXPECT_EQ(json::serialize(lines[0]),
            json::serialize(json::object{
                {"path", link},
                {"kind", "unknown"},
                {"size", 18},
                {"mtime", kMtimeText},
                {"verdict", "error"},
                {"error", json::object{{"code", "io_error"},
                                       {"message",
                                        "changed during the scan: another file is in its "
                                        "place since the walk examined it (device and inode "
                                        "differ); not read"}}}}));
}

// A link named as a PATH is followed, to a file as to a directory (as
// find -H does), and the record says so with its link_target.
TEST_F(ScanCommandTest, ALinkNamedAsAPathIsFollowedAndRecorded) {
  const std::string link = tree_.dir() + "/to-file.jpg";
  ASSERT_EQ(symlink(tree_.Path("aaa.jpg").c_str(), link.c_str()), 0);
  CliRun run = Scan({link, "--index", tree_.list(), "--progress", "none"});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  const std::vector<json::object> lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), 1u) << run.out;
  json::object expected = json::parse(expected_[0]).as_object();
  expected["path"] = link;
  expected["link_target"] = tree_.Path("aaa.jpg");
  EXPECT_EQ(json::value(lines[0]), json::value(expected)) << run.out;
}

// A link that cannot be resolved (a loop of links) is an I/O error of that
// entry, not an invalid argument.
TEST(ScanLinkLoopTest, ALoopOfLinksIsAnIoError) {
  TempDir dir;
  const std::string root = dir.path() + "/tree";
  std::filesystem::create_directory(root);
  ASSERT_EQ(symlink("self", (root + "/self").c_str()), 0);
  const std::string list = dir.path() + "/list.txt";
  std::ofstream(list) << "pdq " << kAaaPdq << " case-aaa\n";
  CliRun run = Scan({root, "--index", list, "--follow-symlinks", "--progress", "none"});
  EXPECT_EQ(run.status, kExitSomeFailed) << run.err;
  EXPECT_EQ(Entries(run.out),
            "{\"path\":\"" + root +
                "/self\",\"kind\":\"unknown\",\"verdict\":\"error\",\"error\":{"
                "\"code\":\"io_error\",\"message\":\"follow link: too many levels of "
                "symbolic links\"}}\n");
}

TEST_F(ScanCommandTest, CsvReportHasOneRowPerEntry) {
  const std::string report = tree_.dir() + "/report.csv";
  CliRun run = Scan({tree_.root(), "--index", tree_.list(), "--csv", report,
                     "--progress", "none"});
  EXPECT_EQ(run.status, kExitSomeFailed) << run.err;
  EXPECT_EQ(run.out, "");
  const std::string csv = ReadFile(report);
  std::istringstream in(csv);
  std::vector<std::string> rows;
  for (std::string line; std::getline(in, line);) rows.push_back(line);
  // The "scan" record, the column names, the entries, the "end" record.
  ASSERT_EQ(rows.size(), 3 + expected_.size()) << csv;
  EXPECT_TRUE(rows[0].starts_with("\"#{\"\"record\"\":\"\"scan\"\",")) << rows[0];
  EXPECT_TRUE(rows.back().starts_with("\"#{\"\"record\"\":\"\"end\"\",")) << rows.back();
  EXPECT_EQ(rows[1],
            "path,kind,format,size,mtime,md5,sha256,pdq,quality,width,height,"
            "pdq_checked,frames_hashed,frames_matched,verdict,match_count,"
            "lists,categories,references,signals,distances,error_code,"
            "error_message,note,link_target,path_hex");
  EXPECT_EQ(rows[2], tree_.Path("aaa.jpg") + ",image,jpeg,361182," +
                         kMtimeText + "," + kAaaMd5 + "," + kAaaSha256 + "," +
                         kAaaPdq +
                         ",100,1600,1004,true,,,match,1,known.txt,,"
                         "case-aaa,pdq,0,,,,,");
  EXPECT_EQ(rows[6], tree_.Path("fifo") + ",special,,," + kMtimeText +
                         ",,,,,,,,,,skipped,0,,,,,,,,not a regular file: not "
                         "opened,,");
  // The non-ASCII name, unquoted (no comma, quote or line break in it).
  EXPECT_EQ(rows[10].substr(0, tree_.Path("\xc3\xb1" "and\xc3\xba \xc3\xa9.png").size()),
            tree_.Path("\xc3\xb1" "and\xc3\xba \xc3\xa9.png"));
}

// Who made the seized media chose its names and link targets, and a list's
// references come from elsewhere: a CSV cell a spreadsheet would run as a
// formula (= + - @ tab CR) gets a leading apostrophe (as does one that
// starts with an apostrophe, so that the reading is unambiguous), and the
// '|' (and '\\') inside a joined match value is escaped with a '\\'.
TEST(ScanCsvTest, CellsASpreadsheetWouldRunAreNeutralised) {
  TempDir dir;
  const std::string root = dir.path() + "/ev";
  dir.Write("ev/a.txt", {'a'});
  dir.Write("ev/b.txt", {'b'});
  ASSERT_EQ(symlink("+1+cmd", (root + "/c-link").c_str()), 0);
  ASSERT_EQ(symlink("'quoted", (root + "/d-link").c_str()), 0);
  const std::string a_md5 = Hex(models::Md5(Bytes("a")));
  const std::string b_md5 = Hex(models::Md5(Bytes("b")));
  const std::string list = dir.path() + "/list.txt";
  std::ofstream(list) << "md5 " << a_md5 << " =cmd|x\n"
                      << "md5 " << a_md5 << " back\\slash\n"
                      << "md5 " << b_md5 << " @SUM(1)\n";
  const std::string report = dir.path() + "/r.csv";
  CliRun run = Scan({root, "--index", list, "--csv", report, "--progress", "none"});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  std::istringstream in(ReadFile(report));
  std::vector<std::string> rows;
  for (std::string line; std::getline(in, line);) rows.push_back(line);
  ASSERT_EQ(rows.size(), 7u);
  const std::string a_sha = Hex(models::Sha256(Bytes("a")));
  const std::string b_sha = Hex(models::Sha256(Bytes("b")));
  const std::string a_mtime = rows[2].substr(root.size() + 16, 30);
  EXPECT_EQ(rows[2], root + "/a.txt,other,,1," + a_mtime + "," + a_md5 + "," + a_sha +
                         ",,,,,,,,match,2,list.txt|list.txt,|,'=cmd\\|x|back\\\\slash,"
                         "md5|md5,0|0,,,,,");
  const std::string b_mtime = rows[3].substr(root.size() + 16, 30);
  EXPECT_EQ(rows[3], root + "/b.txt,other,,1," + b_mtime + "," + b_md5 + "," + b_sha +
                         ",,,,,,,,match,1,list.txt,,'@SUM(1),md5,0,,,,,");
  EXPECT_TRUE(rows[4].ends_with(",'+1+cmd,")) << rows[4];
  EXPECT_TRUE(rows[5].ends_with(",''quoted,")) << rows[5];

  // A PATH that starts like a formula; resuming reads its cell back. The
  // PATH is in the "scan" record too, inside its one cell, which starts
  // with '#'.
  dir.Write("=HYPERLINK(1).txt", {'a'});
  dir.Write("z.txt", {'z'});
  const std::string cli = std::string(BANTAY_CLI) + " scan '=HYPERLINK(1).txt' z.txt --index '" +
                          list + "' --csv f.csv --progress none 2>/dev/null";
  ASSERT_EQ(std::system(("cd '" + dir.path() + "' && " + cli).c_str()), 0);
  const std::string written = ReadFile(dir.path() + "/f.csv");
  EXPECT_NE(written.find("\n'=HYPERLINK(1).txt,other,"), std::string::npos) << written;
  EXPECT_TRUE(written.starts_with(
      "\"#{\"\"record\"\":\"\"scan\"\",\"\"tool\"\":\"\"bantay\"\","))
      << written;
  EXPECT_NE(written.find("\"\"roots\"\":[{\"\"path\"\":\"\"=HYPERLINK(1).txt\"\","),
            std::string::npos)
      << written;
  ASSERT_EQ(std::system(("cd '" + dir.path() + "' && " + cli + " --overwrite --max-files 1")
                            .c_str()),
            256 * 3);
  ASSERT_EQ(std::system(("cd '" + dir.path() + "' && " + cli + " --resume").c_str()), 0);
  const std::string resumed = ReadFile(dir.path() + "/f.csv");
  EXPECT_EQ(SameScan(resumed), SameScan(written));
  EXPECT_EQ(std::count(resumed.begin(), resumed.end(), '\n'),
            std::count(written.begin(), written.end(), '\n') + 1);  // "resumed"
}

TEST_F(ScanCommandTest, ResumeAfterMaxFilesGivesTheUninterruptedReport) {
  const std::string report = tree_.dir() + "/report.jsonl";
  const std::string whole = tree_.dir() + "/whole.jsonl";
  Scan({tree_.root(), "--index", tree_.list(), "--report", whole, "--progress",
        "none"});
  CliRun first = Scan({tree_.root(), "--index", tree_.list(), "--report",
                       report, "--max-files", "4", "--progress", "none"});
  EXPECT_EQ(first.status, 3) << first.err;
  // Stopped: no "end" record.
  EXPECT_EQ(Entries(ReadFile(report), /*finished=*/false),
            expected_[0] + "\n" + expected_[1] + "\n" + expected_[2] + "\n" +
                expected_[3] + "\n");
  EXPECT_NE(first.err.find("run the same command with --resume"),
            std::string::npos);

  // Without --resume (or --overwrite) the report is left alone.
  CliRun refused = Scan({tree_.root(), "--index", tree_.list(), "--report",
                         report, "--progress", "none"});
  EXPECT_EQ(refused.status, kExitUsage);
  EXPECT_EQ(refused.err, "bantay scan: the report " + report +
                             " exists: --resume continues it, --overwrite "
                             "replaces it\n");

  CliRun second = Scan({tree_.root(), "--index", tree_.list(), "--report",
                        report, "--resume", "--max-files", "2", "--progress",
                        "none"});
  EXPECT_EQ(second.status, 3) << second.err;
  EXPECT_NE(second.err.find("resuming: 4 entries already in"), std::string::npos);
  CliRun third = Scan({tree_.root(), "--index", tree_.list(), "--report",
                       report, "--resume", "--progress", "none"});
  // corrupt.jpg's error record is from the first run: the report has an
  // error, so the status says so.
  EXPECT_EQ(third.status, kExitSomeFailed) << third.err;
  // The records of the uninterrupted scan, with a "resumed" record where
  // each later run began.
  const std::string finished = ReadFile(report);
  EXPECT_EQ(Entries(SameScan(finished)), ExpectedReport());
  EXPECT_EQ(SameScan(finished), SameScan(ReadFile(whole)));
  const std::vector<std::string> lines = [&] {
    std::vector<std::string> v;
    std::istringstream in(finished);
    for (std::string line; std::getline(in, line);) v.push_back(line);
    return v;
  }();
  ASSERT_EQ(lines.size(), 1 + expected_.size() + 2 + 1);
  for (const size_t at : {size_t{5}, size_t{8}}) {
    const json::object resumed = json::parse(lines[at]).as_object();
    EXPECT_EQ(resumed.at("record"), "resumed");
    EXPECT_EQ(resumed.at("kept"), at == 5 ? 4 : 6);
    EXPECT_EQ(resumed.size(), 4u) << lines[at];  // record, time, host, kept
  }
  // Each run scanned only what the report did not hold yet; the summary
  // counts the whole report.
  EXPECT_NE(second.err.find("bantay scan: 6 entries (4 images, 0 videos, 0 "
                            "other files, 2 links/special skipped; 4 kept "
                            "from the report, 2 scanned now), "),
            std::string::npos)
      << second.err;
  EXPECT_NE(second.err.find("; 2 matched, 1 with errors\n"), std::string::npos)
      << second.err;
  EXPECT_NE(third.err.find("bantay scan: 9 entries (5 images, 0 videos, 2 "
                           "other files, 2 links/special skipped; 6 kept from "
                           "the report, 3 scanned now), "),
            std::string::npos)
      << third.err;
  EXPECT_NE(third.err.find("; 3 matched, 1 with errors\n"), std::string::npos)
      << third.err;
  // Resuming a finished report scans nothing and changes nothing; its
  // status is the report's.
  CliRun again = Scan({tree_.root(), "--index", tree_.list(), "--report",
                       report, "--resume", "--progress", "none"});
  EXPECT_EQ(again.status, kExitSomeFailed);
  EXPECT_EQ(ReadFile(report), finished);
  const json::object end = json::parse(lines.back()).as_object();
  EXPECT_EQ(again.err, "bantay scan: the report " + report +
                           " is finished (9 entries, 3 matched, 1 with errors; " +
                           std::string(end.at("finished").as_string()) +
                           "): nothing to resume\n");
}

TEST_F(ScanCommandTest, ResumeDropsARecordCutOffByAKill) {
  const std::string report = tree_.dir() + "/report.jsonl";
  Scan({tree_.root(), "--index", tree_.list(), "--report", report,
        "--progress", "none"});
  const std::string full = ReadFile(report);
  const size_t header = full.find('\n') + 1;
  // Nothing kept (no whole "scan" record: a new report), a record cut off,
  // the "end" record cut off.
  for (const size_t cut : {size_t{0}, header / 2, header + expected_[0].size() + 1 + 17,
                           full.size() - 1}) {
    {
      std::ofstream out(report, std::ios::binary | std::ios::trunc);
      out << full.substr(0, cut);
    }
    CliRun run = Scan({tree_.root(), "--index", tree_.list(), "--report",
                       report, "--resume", "--progress", "none"});
    const std::string resumed = ReadFile(report);
    EXPECT_EQ(SameScan(resumed), SameScan(full)) << "cut at " << cut;
    EXPECT_EQ(resumed.find("\"record\":\"resumed\"") != std::string::npos,
              cut > header)
        << "cut at " << cut;
  }
}

TEST_F(ScanCommandTest, CsvResumeGivesTheUninterruptedReport) {
  const std::string whole = tree_.dir() + "/whole.csv";
  const std::string parts = tree_.dir() + "/parts.csv";
  // A comma and a line break in a name: a quoted CSV field over two lines.
  std::ofstream(tree_.Path("b/odd,name\nx.txt")) << "x";
  SetMtime(tree_.Path("b/odd,name\nx.txt"));
  Scan({tree_.root(), "--index", tree_.list(), "--csv", whole, "--progress",
        "none"});
  CliRun last;
  for (int n = 0; n < 12; ++n) {
    last = Scan({tree_.root(), "--index", tree_.list(), "--csv", parts,
                 n == 0 ? "--overwrite" : "--resume", "--max-files", "1",
                 "--progress", "none"});
    if (last.status != 3) break;
  }
  const std::string resumed = ReadFile(parts);
  EXPECT_EQ(SameScan(resumed), SameScan(ReadFile(whole)));
  // One "resumed" row for each of the 9 runs after the first.
  size_t resumed_rows = 0;
  for (size_t at = resumed.find("\n\"#{\"\"record\"\":\"\"resumed\"\",");
       at != std::string::npos;
       at = resumed.find("\n\"#{\"\"record\"\":\"\"resumed\"\",", at + 1)) {
    ++resumed_rows;
  }
  EXPECT_EQ(resumed_rows, 9u);
  // The last run's status and summary count the whole report (corrupt.jpg's
  // error record came from an earlier run).
  EXPECT_EQ(last.status, kExitSomeFailed) << last.err;
  EXPECT_NE(last.err.find("bantay scan: 10 entries (5 images, 0 videos, 3 "
                          "other files, 2 links/special skipped; 9 kept from "
                          "the report, 1 scanned now), "),
            std::string::npos)
      << last.err;
  EXPECT_NE(last.err.find("; 3 matched, 1 with errors\n"), std::string::npos)
      << last.err;
  EXPECT_NE(ReadFile(whole).find("\"" + tree_.Path("b/odd,name\nx.txt") + "\""),
            std::string::npos);
}

// File names need not be UTF-8 (old Windows or camera media); JSON must be.
// Such a name is written with U+FFFD for its bad bytes, and exactly as
// "path_hex"; resuming reads the exact bytes back.
TEST_F(ScanCommandTest, NamesThatAreNotUtf8AreKeptExactly) {
  const std::string odd = tree_.Path("b/bad\xff" "name\xc3.txt");
  std::ofstream(odd) << "x";
  const std::string report = tree_.dir() + "/report.jsonl";
  CliRun first = Scan({tree_.Path("b"), "--index", tree_.list(), "--report",
                       report, "--max-files", "1", "--progress", "none"});
  EXPECT_EQ(first.status, 3);
  const std::vector<json::object> lines = JsonLines(ReadFile(report));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].at("path").as_string(),
            tree_.Path("b/bad\xef\xbf\xbd" "name\xef\xbf\xbd.txt"));
  std::string hex;
  for (unsigned char c : odd) {
    static constexpr char kDigits[] = "0123456789abcdef";
    hex += kDigits[c >> 4];
    hex += kDigits[c & 15];
  }
  EXPECT_EQ(lines[0].at("path_hex").as_string(), hex);
  CliRun rest = Scan({tree_.Path("b"), "--index", tree_.list(), "--report",
                      report, "--resume", "--progress", "none"});
  EXPECT_EQ(rest.status, kExitOk) << rest.err;
  EXPECT_NE(rest.err.find("bantay scan: 3 entries (2 images, 0 videos, 1 "
                          "other files, 0 links/special skipped; 1 kept from "
                          "the report, 2 scanned now), "),
            std::string::npos)
      << rest.err;
  const std::vector<json::object> all = JsonLines(ReadFile(report));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(json::serialize(all[1]), expected_[1]);
  EXPECT_EQ(json::serialize(all[2]), expected_[2]);
}

// A link's target need not be UTF-8 either: "link_target_hex" has its bytes.
TEST_F(ScanCommandTest, LinkTargetsThatAreNotUtf8AreKeptExactly) {
  const std::string target = "gone\xfe" "dir/x\xc3.jpg";  // need not exist
  ASSERT_EQ(symlink(target.c_str(), tree_.Path("b/odd-link").c_str()), 0);
  ASSERT_EQ(symlink("plain-target.jpg", tree_.Path("b/plain-link").c_str()), 0);
  CliRun run = Scan({tree_.Path("b"), "--index", tree_.list(), "--progress", "none"});
  std::map<std::string, json::object> by_path;
  for (json::object& line : JsonLines(run.out)) {
    by_path[std::string(line.at("path").as_string())] = std::move(line);
  }
  ASSERT_EQ(by_path.count(tree_.Path("b/odd-link")), 1u) << run.out;
  const json::object& odd = by_path.at(tree_.Path("b/odd-link"));
  EXPECT_EQ(odd.at("kind").as_string(), "symlink");
  EXPECT_EQ(odd.at("link_target").as_string(), "gone\xef\xbf\xbd" "dir/x\xef\xbf\xbd.jpg");
  EXPECT_EQ(odd.at("link_target_hex").as_string(), "676f6e65fe6469722f78c32e6a7067");
  const json::object& plain = by_path.at(tree_.Path("b/plain-link"));
  EXPECT_EQ(plain.at("link_target").as_string(), "plain-target.jpg");
  EXPECT_FALSE(plain.contains("link_target_hex"));
}

// In a CSV report too: the path column has U+FFFD for the bytes that are
// not UTF-8, as a link target has (the file stays readable as UTF-8), and
// the last column, path_hex, the exact bytes (empty for a UTF-8 name);
// resuming reads them back from path_hex.
TEST_F(ScanCommandTest, CsvNamesThatAreNotUtf8KeepTheirBytesInPathHex) {
  const std::string odd = tree_.Path("b/bad\xff" "name\xc3.txt");
  std::ofstream(odd) << "x";
  SetMtime(odd);
  ASSERT_EQ(symlink("t\xfe", tree_.Path("b/link").c_str()), 0);
  SetMtime(tree_.Path("b/link"));
  std::string hex;
  for (unsigned char c : odd) {
    static constexpr char kDigits[] = "0123456789abcdef";
    hex += kDigits[c >> 4];
    hex += kDigits[c & 15];
  }
  const std::string whole = tree_.dir() + "/whole.csv";
  CliRun run = Scan({tree_.Path("b"), "--index", tree_.list(), "--csv", whole,
                     "--progress", "none"});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  std::istringstream in(ReadFile(whole));
  std::vector<std::string> rows;
  for (std::string line; std::getline(in, line);) rows.push_back(line);
  ASSERT_EQ(rows.size(), 7u) << ReadFile(whole);
  EXPECT_TRUE(rows[1].ends_with(",link_target,path_hex")) << rows[1];
  EXPECT_EQ(rows[2], tree_.Path("b/bad\xef\xbf\xbd" "name\xef\xbf\xbd.txt") +
                         ",other,,1," + kMtimeText + "," + Hex(models::Md5(Bytes("x"))) +
                         "," + Hex(models::Sha256(Bytes("x"))) +
                         ",,,,,,,,no_match,0,,,,,,,,,," + hex);
  EXPECT_TRUE(rows[3].starts_with(tree_.Path("b/c.dat") + ",image,")) << rows[3];
  EXPECT_TRUE(rows[3].ends_with(",,")) << rows[3];
  EXPECT_EQ(rows[5], tree_.Path("b/link") + ",symlink,,," + kMtimeText +
                         ",,,,,,,,,,skipped,0,,,,,,,,\"symbolic link, not followed "
                         "(--follow-symlinks follows links)\",t\xef\xbf\xbd,");
  // Interrupted after the first entry, then resumed: the same report.
  const std::string parts = tree_.dir() + "/parts.csv";
  EXPECT_EQ(Scan({tree_.Path("b"), "--index", tree_.list(), "--csv", parts,
                  "--max-files", "1", "--progress", "none"})
                .status,
            3);
  CliRun rest = Scan({tree_.Path("b"), "--index", tree_.list(), "--csv", parts,
                      "--resume", "--progress", "none"});
  EXPECT_EQ(rest.status, kExitOk) << rest.err;
  EXPECT_NE(rest.err.find("; 1 kept from the report, 3 scanned now), "), std::string::npos)
      << rest.err;
  EXPECT_EQ(SameScan(ReadFile(parts)), SameScan(ReadFile(whole)));

  // A report of an older bantay, without the column, is not continued.
  std::string older = ReadFile(whole);
  const size_t columns = older.find(",link_target,path_hex\n");
  ASSERT_NE(columns, std::string::npos);
  older.erase(columns + 12, 9);
  older.erase(older.find("\n\"#{\"\"record\"\":\"\"end\"\"") + 1);
  std::ofstream(parts, std::ios::binary | std::ios::trunc) << older;
  rest = Scan({tree_.Path("b"), "--index", tree_.list(), "--csv", parts, "--resume",
               "--progress", "none"});
  EXPECT_EQ(rest.status, kExitUsage);
  EXPECT_EQ(rest.err, "bantay scan: the report " + parts +
                          " has the CSV columns of an older bantay (fewer): rows of this "
                          "one's cannot follow them; start a new report\n");
  EXPECT_EQ(ReadFile(parts), older);
}

TEST_F(ScanCommandTest, ResumeRefusesAFileThatIsNotAReport) {
  const std::string report = tree_.dir() + "/report.jsonl";
  CliRun made = Scan({tree_.root(), "--index", tree_.list(), "--progress", "none"});
  const std::string header = made.out.substr(0, made.out.find('\n') + 1);
  std::ofstream(report) << header << "hello\n";
  CliRun run = Scan({tree_.root(), "--index", tree_.list(), "--report", report,
                     "--resume"});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_EQ(run.err, "bantay scan: " + report +
                         ":2: not a record of a bantay scan report\n");
  EXPECT_EQ(ReadFile(report), header + "hello\n");
}

// The CSV "scan" row's record: its one cell without the '#'.
json::object CsvProvenance(const std::string& row) {
  std::string cell;
  for (size_t i = 1; i + 1 < row.size(); ++i) {
    cell += row[i];
    if (row[i] == '"') ++i;  // a doubled quote
  }
  EXPECT_TRUE(cell.starts_with("#")) << row;
  return json::parse(cell.substr(1)).as_object();
}

// The first record says how the report was made: the tool, the roots as
// given and resolved, the index (a list's SHA-256 of its bytes), the options
// that change records, the format, when and where; a finished scan's last
// record its end time and counts.
TEST_F(ScanCommandTest, TheReportSaysHowItWasMade) {
  const std::string notes = tree_.Path("b/../notes.txt");
  const std::string list_bytes = ReadFile(tree_.list());
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  std::string version;
  ASSERT_EQ(bantay::testing::RunProgram({BANTAY_CLI, "--version"},
                                        tree_.dir() + "/version.log", &version),
            0);
  ASSERT_TRUE(version.starts_with("bantay ")) << version;
  version = version.substr(7, version.size() - 8);
  EXPECT_EQ(version, "0.1.0");
  for (const bool csv : {false, true}) {
    const std::string report = tree_.dir() + (csv ? "/report.csv" : "/report.jsonl");
    const std::string before = NowText();
    CliRun run = Scan({tree_.root(), notes, "--index", tree_.list(),
                       csv ? "--csv" : "--report", report, "--dihedral",
                       "--radius", "20", "--max-pixels", "9000000",
                       "--progress", "none", "--threads", "3"});
    const std::string after = NowText();
    EXPECT_EQ(run.status, kExitSomeFailed) << run.err;
    std::istringstream in(ReadFile(report));
    std::vector<std::string> rows;
    for (std::string line; std::getline(in, line);) rows.push_back(line);
    ASSERT_GE(rows.size(), 2u);
    json::object header = csv ? CsvProvenance(rows.front())
                              : json::parse(rows.front()).as_object();
    json::object end = csv ? CsvProvenance(rows.back())
                           : json::parse(rows.back()).as_object();
    const std::string started(header["started"].as_string());
    const std::string finished(end["finished"].as_string());
    EXPECT_TRUE(std::regex_match(
        started, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z)")))
        << started;
    EXPECT_LE(before, started);
    EXPECT_LE(started, finished);
    EXPECT_LE(finished, after);
    const json::object expected{
        {"record", "scan"},
        {"tool", "bantay"},
        {"version", version},
        {"started", started},
        {"host", host},
        {"roots",
         json::array{
             json::object{{"path", tree_.root()},
                          {"resolved", fs::canonical(tree_.root()).string()}},
             json::object{{"path", notes},
                          {"resolved", fs::canonical(notes).string()}}}},
        {"index", json::object{{"kind", "list"},
                               {"path", tree_.list()},
                               {"sha256", Hex(models::Sha256(Bytes(list_bytes)))}}},
        {"options", json::object{{"videos", false},
                                 {"dihedral", true},
                                 {"radius", 20},
                                 {"min_quality", 50},
                                 {"max_pixels", 9000000},
                                 {"max_jpeg_scans", 500},
                                 {"follow_symlinks", false}}},
        {"format", csv ? "csv" : "json"}};
    EXPECT_EQ(json::serialize(header), json::serialize(expected));
    EXPECT_EQ(json::serialize(end),
              json::serialize(json::object{{"record", "end"},
                                           {"finished", finished},
                                           {"entries", 9},
                                           {"images", 5},
                                           {"videos", 0},
                                           {"others", 2},
                                           {"skipped", 2},
                                           {"matched", 3},
                                           {"errors", 1}}));
    // notes.txt is in the tree: scanned once, and named in the header.
    EXPECT_TRUE(run.err.starts_with("bantay scan: " + notes + " is inside " +
                                    tree_.root() + " (" +
                                    fs::canonical(notes).string() +
                                    "); its entries are scanned once, under " +
                                    tree_.root() + "\n"))
        << run.err;
    EXPECT_NE(run.err.find("bantay scan: 9 entries (5 images, 0 videos, 2 other "
                           "files, 2 links/special skipped), "),
              std::string::npos)
        << run.err;
    EXPECT_NE(run.err.find("; 3 matched, 1 with errors\n"), std::string::npos)
        << run.err;
  }
}

// --resume continues only a report made by the same invocation: the same
// index (a list whose bytes changed is another index), roots and options
// that change records. Anything else is refused, the report untouched.
TEST_F(ScanCommandTest, ResumeRefusesAReportMadeOtherwise) {
  const std::string root = fs::canonical(tree_.root()).string();
  for (const bool csv : {false, true}) {
    SCOPED_TRACE(csv ? "csv" : "json");
    const std::string report = tree_.dir() + (csv ? "/r.csv" : "/r.jsonl");
    auto args = [&](std::vector<std::string> extra) {
      std::vector<std::string> a = {csv ? "--csv" : "--report", report,
                                    "--progress", "none", "--index", tree_.list()};
      a.insert(a.end(), extra.begin(), extra.end());
      return a;
    };
    CliRun first = Scan(args({tree_.root(), "--overwrite", "--max-files", "2"}));
    ASSERT_EQ(first.status, 3) << first.err;
    const std::string stopped = ReadFile(report);
    const std::string refused = "bantay scan: cannot resume the report " + report +
                                ": it was made with ";
    const std::string end =
        "; its records and this scan's would not be of one scan (start a new "
        "report)\n";

    // The list's bytes changed.
    const std::string list_bytes = ReadFile(tree_.list());
    const std::string changed = list_bytes + "# a comment\n";
    std::ofstream(tree_.list(), std::ios::trunc) << changed;
    CliRun run = Scan(args({tree_.root(), "--resume"}));
    std::ofstream(tree_.list(), std::ios::trunc) << list_bytes;
    EXPECT_EQ(run.status, kExitUsage);
    auto index = [&](const std::string& bytes) {
      return json::serialize(json::object{
          {"kind", "list"},
          {"path", tree_.list()},
          {"sha256", Hex(models::Sha256(Bytes(bytes)))}});
    };
    EXPECT_EQ(run.err, refused + "another index (" + index(list_bytes) +
                           " in the report, " + index(changed) + " now)" + end);
    EXPECT_EQ(ReadFile(report), stopped);

    run = Scan(args({tree_.root(), "--resume", "--videos"}));
    EXPECT_EQ(run.status, kExitUsage);
    EXPECT_EQ(run.err, refused +
                           "other options (videos: false in the report, true "
                           "now; every: none in the report, 1 now)" +
                           end);
    EXPECT_EQ(ReadFile(report), stopped);

    run = Scan(args({tree_.Path("b"), "--resume"}));
    EXPECT_EQ(run.status, kExitUsage);
    EXPECT_EQ(run.err,
              refused + "other scan roots (" +
                  json::serialize(json::array{json::object{
                      {"path", tree_.root()}, {"resolved", root}}}) +
                  " in the report, " +
                  json::serialize(json::array{json::object{
                      {"path", tree_.Path("b")}, {"resolved", root + "/b"}}}) +
                  " now)" + end);
    EXPECT_EQ(ReadFile(report), stopped);

    // The same invocation (--threads changes no record) continues it.
    run = Scan(args({tree_.root(), "--resume", "--threads", "1"}));
    EXPECT_EQ(run.status, kExitSomeFailed) << run.err;
    EXPECT_EQ(run.err.find("cannot resume"), std::string::npos) << run.err;
    EXPECT_TRUE(ReadFile(report).starts_with(stopped));
    if (!csv) {
      EXPECT_EQ(JsonLines(ReadFile(report)).size(), expected_.size());
    }
  }
}

// A report of an older bantay has no "scan" record: what made it is not
// known, so it is not resumed.
TEST_F(ScanCommandTest, ResumeRefusesAReportWithoutItsScanRecord) {
  const std::string json_report = tree_.dir() + "/old.jsonl";
  const std::string csv_report = tree_.dir() + "/old.csv";
  const std::string old_json = expected_[0] + "\n" + expected_[1] + "\n";
  const std::string old_csv =
      "path,kind,format,size,mtime,md5,sha256,pdq,quality,width,height,"
      "pdq_checked,frames_hashed,frames_matched,verdict,match_count,lists,"
      "categories,references,signals,distances,error_code,error_message,note,"
      "link_target\n" +
      tree_.Path("notes.txt") + ",other,,18,,,,,,,,,,,no_match,0,,,,,,,,,\n";
  std::ofstream(json_report) << old_json;
  std::ofstream(csv_report) << old_csv;
  for (const auto& [flag, report, bytes] :
       {std::tuple{"--report", json_report, old_json},
        std::tuple{"--csv", csv_report, old_csv}}) {
    CliRun run = Scan({tree_.root(), "--index", tree_.list(), flag, report,
                       "--resume", "--progress", "none"});
    EXPECT_EQ(run.status, kExitUsage) << flag;
    EXPECT_EQ(run.err, "bantay scan: the report " + report +
                           " has no \"scan\" record (a report of an older "
                           "bantay): what made it is not known, so it cannot "
                           "be resumed; start a new report\n");
    EXPECT_EQ(ReadFile(report), bytes);
  }
}

TEST_F(ScanCommandTest, UsageErrors) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--index", tree_.list()}, "no PATH to scan given"},
      {{tree_.root()}, "give exactly one of --index, --store and --server"},
      {{tree_.root(), "--index", tree_.list(), "--server", "https://x"},
       "give exactly one of --index, --store and --server"},
      {{tree_.root(), "--index", tree_.list(), "--resume"},
       "--resume and --overwrite need --report FILE or --csv FILE"},
      {{tree_.root(), "--index", tree_.list(), "--report", "a", "--csv", "b"},
       "give --report or --csv, not both"},
      {{tree_.root(), "--index", tree_.list(), "--threads", "0"},
       "--threads must be an integer from 1 to 256"},
      {{tree_.root(), "--index", tree_.list(), "--radius", "65"},
       "--radius must be an integer from 0 to 64"},
      {{tree_.root(), "--index", tree_.list(), "--every", "-1"},
       "--every must be a number of seconds from 0 to 3600"},
      {{tree_.root(), "--index", tree_.list(), "--max-jpeg-scans", "0"},
       "--max-jpeg-scans must be a positive integer"},
      {{tree_.root(), "--index", tree_.list(), "--progress", "loud"},
       "--progress must be auto, bar, lines or none"},
      {{tree_.root(), "--store", "file.db"},
       "--store takes sqlite:PATH or postgresql://..."},
      {{tree_.root(), "--index", tree_.dir() + "/missing.txt"},
       "cannot read index " + tree_.dir() + "/missing.txt"},
  };
  for (const Case& c : cases) {
    CliRun run = Scan(c.args);
    EXPECT_EQ(run.status, kExitUsage) << c.message;
    EXPECT_EQ(run.err, "bantay scan: " + c.message + "\n");
    EXPECT_EQ(run.out, "");
  }
}

// An index with nothing in it would give a clean-looking report of no
// matches: a false negative. It is refused before anything is scanned.
TEST_F(ScanCommandTest, AnEmptyIndexIsRefused) {
  const std::string empty = tree_.dir() + "/empty.txt";
  std::ofstream(empty).close();
  const std::string comments = tree_.dir() + "/comments.txt";
  std::ofstream(comments) << "# nothing yet\n\n";
  for (const std::string& index : {std::string("/dev/null"), empty, comments}) {
    const std::string report = tree_.dir() + "/r.jsonl";
    CliRun run = Scan({tree_.root(), "--index", index, "--report", report,
                       "--progress", "none"});
    EXPECT_EQ(run.status, kExitUsage) << index;
    EXPECT_EQ(run.err, "bantay scan: the index " + index +
                           " has no entries; matching against it would find nothing\n");
    EXPECT_EQ(run.out, "");
    EXPECT_FALSE(fs::exists(report));
  }
}

// A report written into the scanned tree would be scanned as evidence, and
// with --overwrite it would replace an evidence file. Compared resolved.
TEST_F(ScanCommandTest, AReportInsideAScannedPathIsRefused) {
  const std::string photo = tree_.Path("aaa.jpg");
  ASSERT_EQ(chmod(photo.c_str(), 0444), 0);
  const std::string photo_bytes = ReadFile(photo);
  const std::string alias = tree_.dir() + "/alias";
  ASSERT_EQ(symlink(tree_.root().c_str(), alias.c_str()), 0);
  struct Case {
    std::vector<std::string> args;
    std::string report;
    std::string root;
  };
  const std::vector<Case> cases = {
      {{tree_.root(), "--report", photo, "--overwrite"}, photo, tree_.root()},
      {{tree_.root(), "--report", photo}, photo, tree_.root()},
      {{tree_.root(), "--csv", tree_.Path("b/new.csv")}, tree_.Path("b/new.csv"),
       tree_.root()},
      {{tree_.Path("notes.txt"), tree_.Path("b"), "--report",
        tree_.Path("b/deeper/../new.jsonl")},
       tree_.Path("b/deeper/../new.jsonl"), tree_.Path("b")},
      {{tree_.root(), "--report", alias + "/new.jsonl"}, alias + "/new.jsonl",
       tree_.root()},
      {{tree_.Path("notes.txt"), "--report", tree_.Path("notes.txt"),
        "--overwrite"},
       tree_.Path("notes.txt"), tree_.Path("notes.txt")},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = c.args;
    args.insert(args.end(), {"--index", tree_.list(), "--progress", "none"});
    CliRun run = Scan(args);
    EXPECT_EQ(run.status, kExitUsage) << c.report;
    EXPECT_EQ(run.err, "bantay scan: the report " + c.report +
                           " is inside the scanned path " + c.root +
                           "; write it outside the evidence\n");
    EXPECT_EQ(run.out, "");
  }
  EXPECT_EQ(ReadFile(photo), photo_bytes);
  EXPECT_FALSE(fs::exists(tree_.Path("b/new.csv")));
  EXPECT_FALSE(fs::exists(tree_.Path("b/new.jsonl")));
  EXPECT_FALSE(fs::exists(tree_.Path("new.jsonl")));
  // Beside the tree is outside it, even when its name starts like it.
  const std::string beside = tree_.root() + ".jsonl";
  CliRun ok = Scan({tree_.Path("b"), "--index", tree_.list(), "--report",
                    beside, "--progress", "none"});
  EXPECT_EQ(ok.status, kExitOk) << ok.err;
  EXPECT_EQ(Entries(ReadFile(beside)), expected_[1] + "\n" + expected_[2] + "\n");
}

// Standard output that cannot be written (a full disk, /dev/full) is an
// error: the records are lost, and exit 0 would say they were not.
TEST_F(ScanCommandTest, AFailedWriteOfStandardOutputIsAnError) {
  CliRun run = bantay::testing::RunCommandWithFailingOutput(
      RunScanCommand, {tree_.Path("b"), "--index", tree_.list(), "--progress", "none"});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_TRUE(run.err.ends_with("bantay scan: cannot write standard output\n")) << run.err;
}

// An option that takes one value, given twice: the second would silently
// replace the first (an examiner would believe both lists were checked).
TEST_F(ScanCommandTest, ARepeatedSingleValuedOptionIsRefused) {
  const std::string other = tree_.dir() + "/other.txt";
  std::ofstream(other) << "pdq " << std::string(64, '1') << " case-one\n";
  const std::string report = tree_.dir() + "/r.jsonl";
  struct Case {
    std::vector<std::string> args;
    std::string option;
  };
  const std::vector<Case> cases = {
      {{tree_.root(), "--index", tree_.list(), "--index", other}, "--index"},
      {{tree_.root(), "--index", tree_.list(), "--report", report, "--report",
        tree_.dir() + "/s.jsonl"},
       "--report"},
      {{tree_.root(), "--index", tree_.list(), "--csv", report, "--csv",
        report},
       "--csv"},
      {{tree_.root(), "--index", tree_.list(), "--threads", "2", "--threads",
        "2"},
       "--threads"},
      {{tree_.root(), "--store", "sqlite:a.db", "--store", "sqlite:b.db"},
       "--store"},
      {{tree_.root(), "--index", "s.snap", "--key", "a", "--key", "b"},
       "--key"},
  };
  for (const Case& c : cases) {
    CliRun run = Scan(c.args);
    EXPECT_EQ(run.status, kExitUsage) << c.option;
    EXPECT_EQ(run.err,
              "bantay scan: " + c.option + " is given twice; it takes one value\n");
    EXPECT_EQ(run.out, "");
  }
  EXPECT_FALSE(fs::exists(report));
  // After "--" the same words are paths (the same one twice: scanned once).
  CliRun paths = Scan({"--index", tree_.list(), "--progress", "none", "--",
                       tree_.Path("notes.txt"), tree_.Path("notes.txt")});
  EXPECT_EQ(paths.status, kExitOk) << paths.err;
  EXPECT_EQ(Entries(paths.out), expected_[6] + "\n");
}

// A JPEG of more scans than --max-jpeg-scans (default 500) gets an error
// record (too_large, before decoding) and its digests; the scan goes on.
TEST(ScanJpegScansTest, AJpegOfTooManyScansIsAnErrorRecord) {
  TempDir dir;
  const std::vector<uint8_t> jpeg = bantay::testing::JpegWithScans(501);
  dir.Write("evidence/many-scans.jpg", jpeg);
  const std::string line = std::string("pdq ") + kAaaPdq + "\n";
  const std::string list = dir.Write("known.txt", std::vector<uint8_t>(line.begin(), line.end()));
  const std::string root = dir.path() + "/evidence";
  CliRun run = Scan({root, "--index", list, "--progress", "none"});
  EXPECT_EQ(run.status, kExitSomeFailed) << run.err;
  std::vector<json::object> lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), 1u) << run.out;
  EXPECT_EQ(lines[0].at("verdict"), "error");
  EXPECT_EQ(json::serialize(lines[0].at("error")),
            R"({"code":"too_large","message":"jpeg has 501 scans, over the limit of 500"})");
  EXPECT_EQ(lines[0].at("md5").as_string(), Hex(models::Md5(jpeg)));
  run = Scan({root, "--index", list, "--progress", "none", "--max-jpeg-scans", "501"});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), 1u) << run.out;
  EXPECT_EQ(lines[0].at("verdict"), "no_match") << run.out;
  EXPECT_TRUE(lines[0].contains("pdq")) << run.out;
}

TEST_F(ScanCommandTest, RadiusAndDihedral) {
  // At radius 13 the sharpened copy (14 bits away) no longer matches.
  CliRun run = Scan({tree_.Path("b/c.dat"), "--index", tree_.list(),
                     "--radius", "13", "--progress", "none"});
  std::vector<json::object> lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].at("verdict").as_string(), "no_match");
  // A left-right mirrored copy matches only with --dihedral, as the variant
  // PDQ calls flipy (mirrored about the vertical axis).
  cv::Mat photo = cv::imdecode(ReadTestFile("pdq/bridge-mods/aaa-orig.jpg"),
                               cv::IMREAD_COLOR);
  cv::Mat mirrored;
  cv::flip(photo, mirrored, 1);
  TempDir dir;
  const std::string path = dir.Write("mirrored.png", Encode(mirrored, ".png"));
  run = Scan({path, "--index", tree_.list(), "--progress", "none"});
  lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].at("verdict").as_string(), "no_match");
  run = Scan({path, "--index", tree_.list(), "--dihedral", "--progress", "none"});
  lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), 1u);
  ASSERT_EQ(lines[0].at("verdict").as_string(), "match");
  const json::object& m = lines[0].at("matches").as_array()[0].as_object();
  EXPECT_EQ(m.at("ref").as_string(), "case-aaa");
  EXPECT_EQ(m.at("variant").as_string(), "flipy");
  // Not 0: the mirrored copy was decoded, flipped and re-encoded.
  EXPECT_EQ(m.at("distance").as_int64(), 12);
}

struct FileTimes {
  struct timespec atime, mtime, ctime;
};

FileTimes TimesOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return {st.st_atim, st.st_mtim, st.st_ctim};
}

bool Same(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

// Access times: the files' atimes are set older than their mtimes, so that
// a relatime mount updates them on a plain read — shown on a control file.
TEST_F(ScanCommandTest, EvidenceIsNotModifiedNotEvenItsAccessTimes) {
  std::vector<std::string> paths;
  for (const auto& entry : fs::recursive_directory_iterator(tree_.root())) {
    paths.push_back(entry.path().string());
  }
  paths.push_back(tree_.root());
  for (const auto& p : paths) SetMtime(p);
  std::vector<FileTimes> before;
  for (const auto& p : paths) before.push_back(TimesOf(p));

  CliRun run = Scan({tree_.root(), "--index", tree_.list(), "--threads", "2",
                     "--progress", "none"});
  EXPECT_EQ(Entries(run.out), ExpectedReport());
  for (size_t i = 0; i < paths.size(); ++i) {
    const FileTimes after = TimesOf(paths[i]);
    // Linux reads a link's target only through readlink, which touches the
    // link's own access time (there is no O_NOATIME for it): the one
    // exception, documented in --help.
    if (paths[i] != tree_.Path("loop")) {
      EXPECT_TRUE(Same(after.atime, before[i].atime)) << paths[i];
    }
    EXPECT_TRUE(Same(after.mtime, before[i].mtime)) << paths[i];
    EXPECT_TRUE(Same(after.ctime, before[i].ctime)) << paths[i];
  }
  // Nothing was added to the tree.
  size_t count = 0;
  for (const auto& entry : fs::recursive_directory_iterator(tree_.root())) {
    (void)entry;
    ++count;
  }
  EXPECT_EQ(count + 1, paths.size());

  // The control: a plain read of such a file does move its access time.
  const std::string control = tree_.dir() + "/control.txt";
  std::ofstream(control) << "x";
  SetMtime(control);
  const FileTimes c0 = TimesOf(control);
  EXPECT_EQ(ReadFile(control), "x");
  EXPECT_FALSE(Same(TimesOf(control).atime, c0.atime));
}

// Videos: told by content; with --videos their frames (one a second) are
// matched, and a damaged video's frames before the damage still are.
TEST(ScanVideoTest, VideoFramesMatchWithVideos) {
  TempDir dir;
  const auto doorknob = ReadTestFile("vpdq/doorknob-hd-no-bar.mp4");
  const std::string clip = dir.Write("tree/clip.mp4", doorknob);
  const std::string other = dir.Write(
      "tree/other.bin", ReadTestFile("vpdq/test-padded-dimensions.mp4"));
  const std::vector<uint8_t> cut_bytes(doorknob.begin(),
                                       doorknob.begin() + 240000);
  const std::string cut = dir.Write("tree/z-cut.mp4", cut_bytes);
  const std::string list = dir.path() + "/list.txt";
  // Frame 0 of the doorknob video, as the reference vPDQ hashed it.
  std::ofstream(list)
      << "pdq dadb999c25266273529cadac89cb52c22324ad3bce99726c38668d93c799f07c"
         " doorknob-0\n";

  CliRun plain = Scan({dir.path() + "/tree", "--index", list, "--progress",
                       "none"});
  EXPECT_EQ(plain.status, kExitOk) << plain.err;
  std::vector<json::object> lines = JsonLines(plain.out);
  ASSERT_EQ(lines.size(), 3u);
  const auto clip_digests = models::ComputeDigests(doorknob);
  EXPECT_EQ(json::serialize(lines[0]),
            json::serialize(json::object{
                {"path", clip},
                {"kind", "video"},
                {"format", "mp4"},
                {"size", static_cast<int64_t>(doorknob.size())},
                {"mtime", lines[0].at("mtime")},
                {"md5", Hex(clip_digests.md5)},
                {"sha256", Hex(clip_digests.sha256)},
                {"pdq_checked", false},
                {"verdict", "no_match"},
                {"note", "video frames not hashed (--videos hashes them)"}}));
  EXPECT_EQ(lines[1].at("kind").as_string(), "video");
  EXPECT_EQ(lines[2].at("kind").as_string(), "video");

  CliRun run = Scan({dir.path() + "/tree", "--index", list, "--videos",
                     "--progress", "none"});
  EXPECT_EQ(run.status, kExitSomeFailed) << run.err;  // the cut video
  lines = JsonLines(run.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(json::serialize(lines[0]),
            json::serialize(json::object{
                {"path", clip},
                {"kind", "video"},
                {"format", "mp4"},
                {"size", static_cast<int64_t>(doorknob.size())},
                {"mtime", lines[0].at("mtime")},
                {"md5", Hex(clip_digests.md5)},
                {"sha256", Hex(clip_digests.sha256)},
                {"width", 1280},
                {"height", 720},
                {"frames_hashed", 4},
                {"frames_matched", 1},
                {"duration", "4.000"},
                {"pdq_checked", true},
                {"verdict", "match"},
                {"matches",
                 json::array{json::object{{"list", "list.txt"},
                                          {"category", ""},
                                          {"ref", "doorknob-0"},
                                          {"signal", "pdq"},
                                          {"distance", 2},
                                          {"variant", "original"},
                                          {"frames", 1},
                                          {"first_timestamp", "0.000"}}}}}));
  EXPECT_EQ(lines[1].at("path").as_string(), other);
  EXPECT_EQ(lines[1].at("frames_hashed").as_int64(), 5);
  EXPECT_EQ(lines[1].at("frames_matched").as_int64(), 0);
  EXPECT_EQ(lines[1].at("verdict").as_string(), "no_match");
  // The cut copy: frames 0 and 30 were decoded before the damage; frame 0
  // still matches, and the record says the video is damaged.
  EXPECT_EQ(lines[2].at("path").as_string(), cut);
  EXPECT_EQ(lines[2].at("frames_hashed").as_int64(), 2);
  EXPECT_EQ(lines[2].at("frames_matched").as_int64(), 1);
  EXPECT_EQ(lines[2].at("verdict").as_string(), "match");
  EXPECT_EQ(json::serialize(lines[2].at("error")),
            "{\"code\":\"corrupt_data\",\"message\":\"the video ends early: "
            "52 of 120 frames decoded\"}");
}

// Runs the bantay binary with its standard output to out_path (and its
// standard error to err_path, when given); as the user nobody when the
// tests run as root (root reads every file).
int RunBantayUnprivileged(const std::vector<std::string>& args,
                          const std::string& out_path,
                          const std::string& err_path = "") {
  const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (out < 0) return -1;
  const int err = err_path.empty()
                      ? -1
                      : open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out, 1);
    if (err >= 0) dup2(err, 2);
    if (geteuid() == 0) {
      if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 ||
          setuid(65534) != 0) {
        _exit(120);
      }
    }
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(BANTAY_CLI));
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(BANTAY_CLI, argv.data());
    _exit(121);
  }
  close(out);
  if (err >= 0) close(err);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(ScanPermissionTest, UnreadableEntriesAreReportedAndTheScanGoesOn) {
  TempDir dir;
  ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0);
  const std::string readable =
      dir.Write("tree/a.jpg", ReadTestFile("pdq/bridge-mods/aaa-orig.jpg"));
  const std::string locked = dir.Write("tree/locked.jpg", {1, 2, 3, 4});
  const std::string closed = dir.path() + "/tree/closed";
  dir.Write("tree/closed/x.jpg", {1, 2, 3});
  ASSERT_EQ(chmod(locked.c_str(), 0), 0);
  ASSERT_EQ(chmod(closed.c_str(), 0), 0);
  const std::string list = dir.path() + "/list.txt";
  std::ofstream(list) << "pdq " << kAaaPdq << " case-aaa\n";
  ASSERT_EQ(chmod(list.c_str(), 0644), 0);

  const std::string out = dir.path() + "/out.jsonl";
  const int status = RunBantayUnprivileged(
      {"scan", dir.path() + "/tree", "--index", list, "--progress", "none"},
      out);
  chmod(closed.c_str(), 0755);
  EXPECT_EQ(status, kExitSomeFailed);
  const std::vector<json::object> lines = JsonLines(ReadFile(out));
  ASSERT_EQ(lines.size(), 3u) << ReadFile(out);
  EXPECT_EQ(lines[0].at("path").as_string(), readable);
  EXPECT_EQ(lines[0].at("verdict").as_string(), "match");
  EXPECT_EQ(json::serialize(lines[1]),
            json::serialize(json::object{
                {"path", closed},
                {"kind", "unknown"},
                {"verdict", "error"},
                {"error", json::object{{"code", "permission_denied"},
                                       {"message",
                                        "open directory: permission denied"}}}}));
  EXPECT_EQ(json::serialize(lines[2]),
            json::serialize(json::object{
                {"path", locked},
                {"kind", "unknown"},
                {"size", 4},
                {"mtime", lines[2].at("mtime")},
                {"verdict", "error"},
                {"error", json::object{{"code", "permission_denied"},
                                       {"message", "open: permission denied"}}}}));
}

// A PATH inside another PATH is scanned as part of it only when the walk of
// that one gets down to it: behind a directory the walk cannot list (mode
// -wx for the scanning user), it is scanned itself, else the files under it
// would be in no record.
TEST(ScanPermissionTest, APathBehindAnUnreadableDirectoryIsScannedItself) {
  TempDir dir;
  ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0);
  const std::string tree = dir.path() + "/tree";
  const std::string a = dir.Write("tree/a.txt", {'a'});
  const std::string locked = tree + "/locked";
  const std::string sub = locked + "/sub";
  const std::string b = dir.Write("tree/locked/sub/b.txt", {'b'});
  const std::string open_sub = tree + "/open/sub";
  dir.Write("tree/open/sub/c.txt", {'c'});
  for (const std::string& d : {tree, sub, tree + "/open", open_sub}) {
    ASSERT_EQ(chmod(d.c_str(), 0755), 0);
  }
  ASSERT_EQ(chmod(locked.c_str(), 0711), 0);  // others may pass, not list
  for (const std::string& f : {a, b, open_sub + "/c.txt"}) ASSERT_EQ(chmod(f.c_str(), 0644), 0);
  const std::string list = dir.path() + "/list.txt";
  std::ofstream(list) << "md5 " << Hex(models::Md5(Bytes("b"))) << " case-b\n";
  ASSERT_EQ(chmod(list.c_str(), 0644), 0);
  const std::string out = dir.path() + "/out.jsonl";
  const std::string err = dir.path() + "/err.txt";
  const json::object locked_record{
      {"path", locked},
      {"kind", "unknown"},
      {"verdict", "error"},
      {"error", json::object{{"code", "permission_denied"},
                             {"message", "open directory: permission denied"}}}};
  for (const auto& roots : {std::vector<std::string>{tree, sub},
                            std::vector<std::string>{sub, tree}}) {
    std::vector<std::string> args = {"scan"};
    args.insert(args.end(), roots.begin(), roots.end());
    for (const char* arg : {"--index", list.c_str(), "--progress", "none"}) args.push_back(arg);
    const int status = RunBantayUnprivileged(args, out, err);
    EXPECT_EQ(status, kExitSomeFailed) << roots[0];
    const std::vector<json::object> lines = JsonLines(ReadFile(out));
    ASSERT_EQ(lines.size(), 4u) << ReadFile(out);
    std::vector<std::string> paths;
    for (const json::object& line : lines) paths.emplace_back(line.at("path").as_string());
    const std::vector<std::string> tree_first = {a, locked, open_sub + "/c.txt", b};
    const std::vector<std::string> sub_first = {b, a, locked, open_sub + "/c.txt"};
    EXPECT_EQ(paths, roots[0] == tree ? tree_first : sub_first);
    const json::object& b_record = lines[roots[0] == tree ? 3 : 0];
    EXPECT_EQ(b_record.at("verdict").as_string(), "match");
    EXPECT_EQ(b_record.at("md5").as_string(), Hex(models::Md5(Bytes("b"))));
    EXPECT_EQ(json::serialize(lines[roots[0] == tree ? 1 : 2]), json::serialize(locked_record));
    EXPECT_EQ(ReadFile(err).find(" is inside "), std::string::npos) << ReadFile(err);
  }
  // A PATH behind readable directories is still scanned once, under the
  // other.
  const int status = RunBantayUnprivileged(
      {"scan", tree, open_sub, "--index", list, "--progress", "none"}, out, err);
  EXPECT_EQ(status, kExitSomeFailed);
  EXPECT_EQ(JsonLines(ReadFile(out)).size(), 3u) << ReadFile(out);
  EXPECT_TRUE(ReadFile(err).starts_with("bantay scan: " + open_sub + " is inside " + tree + " (" +
                                        fs::canonical(open_sub).string() +
                                        "); its entries are scanned once, under " + tree + "\n"))
      << ReadFile(err);
  chmod(locked.c_str(), 0755);
}

// The real binary, stopped by a real signal part-way, then resumed: the
// report equals that of a scan that was never stopped.
class ScanSignalTest : public ::testing::TestWithParam<int> {};

TEST_P(ScanSignalTest, StoppedBySignalThenResumedEqualsUninterrupted) {
  const int sig = GetParam();
  TempDir dir;
  const auto jpeg = Encode(MakePattern(640, 480), ".jpg");
  constexpr int kFiles = 120;
  for (int i = 0; i < kFiles; ++i) {
    dir.Write("tree/d" + std::to_string(i % 10) + "/f" + std::to_string(i) +
                  ".jpg",
              jpeg);
  }
  const std::string list = dir.path() + "/list.txt";
  std::ofstream(list) << "pdq " << std::string(64, '0') << " zero\n";
  const std::string whole = dir.path() + "/whole.jsonl";
  const std::string parts = dir.path() + "/parts.jsonl";
  ASSERT_EQ(bantay::testing::RunProgram(
                {BANTAY_CLI, "scan", dir.path() + "/tree", "--index", list,
                 "--report", whole, "--threads", "1", "--progress", "none"},
                dir.path() + "/whole.log"),
            kExitOk);
  ASSERT_EQ(JsonLines(ReadFile(whole)).size(), static_cast<size_t>(kFiles));

  bantay::testing::ChildProcess child;
  ASSERT_TRUE(child.Start({BANTAY_CLI, "scan", dir.path() + "/tree", "--index",
                           list, "--report", parts, "--threads", "1",
                           "--progress", "none"},
                          dir.path() + "/parts.log"));
  // Stop it once a few records are written.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    const std::string text = ReadFile(parts);
    if (std::count(text.begin(), text.end(), '\n') >= 3) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(kill(child.pid(), sig), 0);
  const int status = child.Wait();
  if (sig != SIGKILL) {
    EXPECT_EQ(status, 130);
    EXPECT_NE(bantay::testing::ReadTextFile(dir.path() + "/parts.log")
                  .find("run the same command with --resume"),
              std::string::npos);
  } else {
    EXPECT_EQ(status, -1);  // killed
  }
  const std::string stopped = ReadFile(parts);
  const size_t stopped_lines = static_cast<size_t>(
      std::count(stopped.begin(), stopped.end(), '\n'));
  EXPECT_GE(stopped_lines, 3u);
  EXPECT_LT(stopped_lines, static_cast<size_t>(kFiles));
  // What was written is the start of the full report (but for the start
  // time).
  const std::string full = ReadFile(whole);
  EXPECT_EQ(SameScan(full).compare(0, SameScan(stopped).size(), SameScan(stopped)), 0);

  ASSERT_EQ(bantay::testing::RunProgram(
                {BANTAY_CLI, "scan", dir.path() + "/tree", "--index", list,
                 "--report", parts, "--resume", "--threads", "2",
                 "--progress", "none"},
                dir.path() + "/resume.log"),
            kExitOk);
  const std::string resumed = ReadFile(parts);
  EXPECT_EQ(SameScan(resumed), SameScan(full));
  EXPECT_NE(resumed.find("{\"record\":\"resumed\","), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Signals, ScanSignalTest,
                         ::testing::Values(SIGINT, SIGTERM, SIGKILL),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return std::string(p.param == SIGINT    ? "SIGINT"
                                              : p.param == SIGTERM ? "SIGTERM"
                                                                   : "SIGKILL");
                         });

}  // namespace
}  // namespace bantay::client
