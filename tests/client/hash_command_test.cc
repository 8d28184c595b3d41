#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <opencv2/imgproc.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "bantay/client/cli.h"
#include "bantay/matcher/import_formats.h"
#include "bantay/models/hash256.h"
#include "bantay/models/video_hasher.h"
#include "cli_run.h"
#include "scan_testing.h"
#include "test_images.h"

namespace bantay::client {
namespace {

namespace json = boost::json;
using bantay::testing::Encode;
using bantay::testing::MakePattern;
using bantay::testing::TempDir;
using bantay::testing::TestDataPath;

using bantay::testing::CliRun;

CliRun Hash(const std::vector<std::string>& args) {
  return bantay::testing::RunCommand(RunHashCommand, args);
}

const std::string kAaa = TestDataPath("pdq/bridge-mods/aaa-orig.jpg");
constexpr char kAaaPdq[] =
    "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";
// md5sum / sha256sum of the file.
constexpr char kAaaMd5[] = "d35c785545392755e7e4164457657269";
constexpr char kAaaSha256[] =
    "b5b0799616df52d475a3968dc7e54f1d0724c912244ffa6175bc786375dd7298";

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// One byte as two lower-case hex digits.
std::string FormatHex(unsigned char c) {
  static constexpr char kDigits[] = "0123456789abcdef";
  return {kDigits[c >> 4], kDigits[c & 15]};
}

TEST(HashCommandTest, OneFileGivesOneExactJsonLine) {
  CliRun run = Hash({kAaa});
  EXPECT_EQ(run.status, kExitOk);
  EXPECT_EQ(run.err, "");
  EXPECT_EQ(run.out, "{\"path\":\"" + kAaa + "\",\"pdq\":\"" + kAaaPdq +
                         "\",\"quality\":100,\"md5\":\"" + kAaaMd5 +
                         "\",\"sha256\":\"" + kAaaSha256 +
                         "\",\"width\":1600,\"height\":1004,\"low_quality\":false}\n");
}

TEST(HashCommandTest, DihedralHashesInReferenceOrder) {
  CliRun run = Hash({"--dihedral", kAaa});
  ASSERT_EQ(run.status, kExitOk);
  ASSERT_EQ(run.lines.size(), 1u);
  const auto expected =
      testing::ReadExpectedCsv("pdq/expected-pdq-dihedral.csv").at("bridge-mods/aaa-orig.jpg");
  const json::array& variants = run.lines[0].at("pdq_dihedral").as_array();
  ASSERT_EQ(variants.size(), 8u);
  for (size_t v = 0; v < 8; ++v) {
    EXPECT_EQ(variants[v].as_string(), expected[1 + v]) << v;
  }
}

TEST(HashCommandTest, LowQualityIsFlagged) {
  CliRun run = Hash({TestDataPath("pdq/misc-images/small.jpg")});
  ASSERT_EQ(run.status, kExitOk);
  ASSERT_EQ(run.lines.size(), 1u);
  EXPECT_EQ(run.lines[0].at("quality").as_int64(), 0);
  EXPECT_EQ(run.lines[0].at("low_quality").as_bool(), true);
}

TEST(HashCommandTest, BadFilesGiveErrorLinesAndTheRunGoesOn) {
  TempDir dir;
  const std::string empty = dir.Write("empty.jpg", {});
  const auto jpeg = bantay::testing::ReadTestFile("pdq/bridge-mods/aaa-orig.jpg");
  const std::string cut =
      dir.Write("cut.jpg", {jpeg.begin(), jpeg.begin() + 5000});
  const std::string missing = dir.path() + "/missing.png";
  CliRun run = Hash({empty, kAaa, cut, missing});
  EXPECT_EQ(run.status, kExitSomeFailed);
  ASSERT_EQ(run.lines.size(), 4u);
  EXPECT_EQ(json::serialize(run.lines[0]),
            "{\"path\":\"" + empty +
                "\",\"error\":\"not a JPEG, PNG, WebP, BMP or TIFF image\"}");
  EXPECT_EQ(run.lines[1].at("pdq").as_string(), kAaaPdq);
  EXPECT_EQ(json::serialize(run.lines[2]),
            "{\"path\":\"" + cut +
                "\",\"error\":\"jpeg is truncated (no end-of-image marker)\"}");
  EXPECT_EQ(json::serialize(run.lines[3]),
            "{\"path\":\"" + missing + "\",\"error\":\"no such file or directory\"}");
}

TEST(HashCommandTest, DecompressionBombIsAnErrorLine) {
  TempDir dir;
  auto png = Encode(MakePattern(8, 8), ".png");
  const uint8_t huge[4] = {0x00, 0x01, 0x86, 0xA0};  // 100000
  std::copy(huge, huge + 4, png.begin() + 16);
  std::copy(huge, huge + 4, png.begin() + 20);
  const std::string bomb = dir.Write("bomb.png", png);
  CliRun run = Hash({bomb});
  EXPECT_EQ(run.status, kExitSomeFailed);
  ASSERT_EQ(run.lines.size(), 1u);
  EXPECT_EQ(run.lines[0].at("error").as_string(),
            "image declares 100000x100000 pixels, over the limit of 150000000");
  run = Hash({"--max-pixels", "40", kAaa});
  EXPECT_EQ(run.lines[0].at("error").as_string(),
            "image declares 1600x1004 pixels, over the limit of 40");
}

// A JPEG of many scans costs a pass over the picture each: refused before
// decoding over --max-jpeg-scans (default 500), hashed as its pixels under.
TEST(HashCommandTest, JpegScanLimit) {
  TempDir dir;
  const std::string many = dir.Write("many-scans.jpg", bantay::testing::JpegWithScans(501));
  CliRun run = Hash({many});
  EXPECT_EQ(run.status, kExitSomeFailed);
  ASSERT_EQ(run.lines.size(), 1u);
  EXPECT_EQ(run.lines[0].at("error").as_string(), "jpeg has 501 scans, over the limit of 500");
  run = Hash({"--max-jpeg-scans", "501", many});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  ASSERT_EQ(run.lines.size(), 1u);
  const std::string few = dir.Write("few-scans.jpg", bantay::testing::JpegWithScans(20));
  CliRun reference = Hash({few});
  ASSERT_EQ(reference.status, kExitOk) << reference.err;
  EXPECT_EQ(run.lines[0].at("pdq"), reference.lines[0].at("pdq"));
  run = Hash({"--max-jpeg-scans", "19", few});
  EXPECT_EQ(run.lines[0].at("error").as_string(), "jpeg has 20 scans, over the limit of 19");
  for (const char* bad : {"0", "-1", "many", "2147483648"}) {
    CliRun usage = Hash({"--max-jpeg-scans", bad, few});
    EXPECT_EQ(usage.status, kExitUsage) << bad;
    EXPECT_EQ(usage.err, "bantay hash: --max-jpeg-scans needs a positive integer\n");
  }
}

TEST(HashCommandTest, DirectoryNeedsRecursion) {
  TempDir dir;
  dir.Write("a.png", Encode(MakePattern(64, 64), ".png"));
  CliRun run = Hash({dir.path()});
  EXPECT_EQ(run.status, kExitSomeFailed);
  ASSERT_EQ(run.lines.size(), 1u);
  EXPECT_EQ(run.lines[0].at("error").as_string(),
            "is a directory (use -r to hash the images under it)");
}

TEST(HashCommandTest, RecursiveWalkHashesImagesInNameOrderAndSkipsOthers) {
  TempDir dir;
  const cv::Mat picture = MakePattern(300, 200);
  const auto png = Encode(picture, ".png");
  const std::string b = dir.Write("b.png", png);
  const std::string a = dir.Write("sub/deeper/a.webp", Encode(picture, ".webp", {cv::IMWRITE_WEBP_QUALITY, 101}));
  const std::string c = dir.Write("sub/c.jpg.txt", Encode(picture, ".jpg"));  // content decides
  dir.Write("notes.txt", {'h', 'i'});
  dir.Write("sub/empty", {});
  std::filesystem::create_directory_symlink(dir.path(), dir.path() + "/loop");
  CliRun run = Hash({"-r", dir.path()});
  EXPECT_EQ(run.status, kExitOk) << run.out;
  ASSERT_EQ(run.lines.size(), 3u) << run.out;
  EXPECT_EQ(run.lines[0].at("path").as_string(), b);
  EXPECT_EQ(run.lines[1].at("path").as_string(), c);
  EXPECT_EQ(run.lines[2].at("path").as_string(), a);
  // Lossless PNG and WebP of one picture: the same hash.
  EXPECT_EQ(run.lines[0].at("pdq"), run.lines[2].at("pdq"));
}

// A walk does not follow links: a link to a file (here to an image outside
// the tree) is an error record, its target not hashed; a link to a
// directory is skipped, as before.
// With -r each file is hashed once: a PATH given twice, or inside a
// directory PATH, is hashed as part of that one (standard error says so),
// unless the walk would not hash it (a file that is not an image keeps its
// error line). Without -r, every PATH is hashed as given.
TEST(HashCommandTest, RecursiveWalkHashesEachFileOnce) {
  TempDir dir;
  const std::string root = dir.path() + "/d";
  const std::string a = dir.Write("d/a.png", Encode(MakePattern(64, 48), ".png"));
  const std::string b = dir.Write("d/sub/b.png", Encode(MakePattern(48, 64), ".png"));
  const std::string notes = dir.Write("d/notes.txt", {'n'});
  const std::string resolved = std::filesystem::canonical(root).string();
  auto paths = [](const CliRun& run) {
    std::vector<std::string> out;
    for (const json::object& line : run.lines) out.emplace_back(line.at("path").as_string());
    return out;
  };
  CliRun run = Hash({"-r", root, root});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(paths(run), (std::vector<std::string>{a, b}));
  EXPECT_EQ(run.err, "bantay hash: " + root + " is the same as " + root + " (" + resolved +
                         "); hashed once, under " + root + "\n");

  run = Hash({"-r", root + "/sub", root, a, notes});
  EXPECT_EQ(run.status, kExitSomeFailed) << run.err;
  EXPECT_EQ(paths(run), (std::vector<std::string>{a, b, notes}));
  EXPECT_TRUE(run.lines[2].contains("error")) << run.out;
  EXPECT_EQ(run.err, "bantay hash: " + root + "/sub is inside " + root + " (" + resolved +
                         "/sub); hashed once, under " + root + "\n" + "bantay hash: " + a +
                         " is inside " + root + " (" + resolved + "/a.png); hashed once, under " +
                         root + "\n");

  const std::string list = dir.path() + "/list.txt";
  run = Hash({"-r", root, root, "--out", list});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  std::ifstream written(list);
  const std::string text((std::istreambuf_iterator<char>(written)),
                         std::istreambuf_iterator<char>());
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;

  run = Hash({a, a});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(paths(run), (std::vector<std::string>{a, a}));
  EXPECT_EQ(run.err, "");
}

TEST(HashCommandTest, RecursiveWalkReportsLinksToFilesWithoutFollowingThem) {
  TempDir dir, outside;
  const std::string target = outside.Write("photo.jpg", bantay::testing::ReadTestFile("pdq/bridge-mods/aaa-orig.jpg"));
  const std::string b = dir.Write("b.png", Encode(MakePattern(300, 200), ".png"));
  const std::string link = dir.path() + "/a-link.jpg";
  std::filesystem::create_symlink(target, link);
  std::filesystem::create_directory_symlink(outside.path(), dir.path() + "/c-dir-link");
  CliRun run = Hash({"-r", dir.path()});
  EXPECT_EQ(run.status, kExitSomeFailed) << run.out;
  ASSERT_EQ(run.lines.size(), 2u) << run.out;
  EXPECT_EQ(json::serialize(run.lines[0]),
            "{\"path\":\"" + link + "\",\"error\":\"symbolic link, not followed (name it as a PATH to hash its target)\"}");
  EXPECT_EQ(run.lines[1].at("path").as_string(), b);
  // Named as a PATH, the link is followed.
  CliRun named = Hash({link});
  EXPECT_EQ(named.status, kExitOk) << named.out;
  ASSERT_EQ(named.lines.size(), 1u);
  EXPECT_EQ(named.lines[0].at("pdq").as_string(), kAaaPdq);
}

// The access times of the directories walked, and of the files read, are
// evidence: -r opens directories with O_NOATIME (where allowed: the owner
// or root), as bantay scan does. Their atimes are set far in the past, so a
// relatime mount would update them on a plain read (shown on a control).
// bantay hash -r opens a file of its walk where the walk examined it, and
// checks it: an image replaced by a link to another image, or by another
// image, between the walk and the open (the hook) is an error line, and
// what took its place is not hashed.
TEST(HashCommandTest, RecursiveWalkDoesNotHashWhatTookAFilesPlace) {
  TempDir dir, outside;
  const std::string a = dir.Write("a.png", Encode(MakePattern(64, 48), ".png"));
  const std::string b = dir.Write("b.png", Encode(MakePattern(48, 64), ".png"));
  const std::string c = dir.Write("c.png", Encode(MakePattern(64, 64), ".png"));
  const std::string other = outside.Write("other.jpg", bantay::testing::ReadTestFile(
                                                           "pdq/bridge-mods/aaa-orig.jpg"));
  SetWalkOpenHookForTesting([&](const std::string& path) {
    const std::string moved = outside.path() + "/moved";
    if (path == a) {
      ASSERT_EQ(symlink(other.c_str(), moved.c_str()), 0);
      ASSERT_EQ(rename(moved.c_str(), a.c_str()), 0);
    } else if (path == b) {
      ASSERT_EQ(std::filesystem::copy_file(other, moved), true);
      ASSERT_EQ(rename(moved.c_str(), b.c_str()), 0);
    }
  });
  CliRun run = Hash({"-r", dir.path()});
  SetWalkOpenHookForTesting(nullptr);
  EXPECT_EQ(run.status, kExitSomeFailed);
  ASSERT_EQ(run.lines.size(), 3u) << run.out;
  EXPECT_EQ(json::serialize(run.lines[0]),
            "{\"path\":\"" + a +
                "\",\"error\":\"changed during the scan: a symbolic link is in its place "
                "since the walk examined it; not followed\"}");
  EXPECT_EQ(json::serialize(run.lines[1]),
            "{\"path\":\"" + b +
                "\",\"error\":\"changed during the scan: another file is in its place since "
                "the walk examined it (device and inode differ); not read\"}");
  EXPECT_EQ(run.lines[2].at("path").as_string(), c);
  EXPECT_EQ(run.lines[2].at("width").as_int64(), 64);
  EXPECT_EQ(run.out.find(kAaaPdq), std::string::npos) << run.out;
}

TEST(HashCommandTest, RecursiveWalkLeavesAccessTimesAlone) {
  TempDir dir;
  const std::string root = dir.path() + "/tree";
  const std::string image = dir.Write("tree/sub/a.png", Encode(MakePattern(64, 64), ".png"));
  const std::string control = dir.path() + "/control";
  std::filesystem::create_directory(control);
  const struct timespec kLongAgo = {978307200, 5};  // 2001-01-01
  auto set_atime = [&](const std::string& path) {
    const struct timespec times[2] = {kLongAgo, {0, UTIME_OMIT}};
    ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
  };
  auto atime = [](const std::string& path) {
    struct stat st {};
    EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
    return std::pair<int64_t, int64_t>(st.st_atim.tv_sec, st.st_atim.tv_nsec);
  };
  const std::pair<int64_t, int64_t> long_ago(kLongAgo.tv_sec, kLongAgo.tv_nsec);
  for (const std::string& path : {root, root + "/sub", image, control}) set_atime(path);
  CliRun run = Hash({"-r", root});
  EXPECT_EQ(run.status, kExitOk) << run.out;
  ASSERT_EQ(run.lines.size(), 1u) << run.out;
  EXPECT_EQ(run.lines[0].at("path").as_string(), image);
  EXPECT_EQ(atime(root), long_ago);
  EXPECT_EQ(atime(root + "/sub"), long_ago);
  EXPECT_EQ(atime(image), long_ago);
  // The control: listing a directory without O_NOATIME moves its atime.
  int entries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(control)) {
    (void)entry;
    ++entries;
  }
  EXPECT_EQ(entries, 0);
  EXPECT_NE(atime(control), long_ago);
}

// A name that is not UTF-8 (Latin-1 here) keeps its exact bytes in
// "path_hex", next to "path" with U+FFFD for the bytes that are not UTF-8,
// as in bantay scan's report.
TEST(HashCommandTest, NamesThatAreNotUtf8KeepTheirBytes) {
  TempDir dir;
  const std::string image =
      dir.Write("caf\xe9.png", Encode(MakePattern(64, 64), ".png"));
  const std::string text = dir.Write("caf\xe9.jpg", {'h', 'i'});
  auto hex = [](const std::string& bytes) {
    std::string out;
    for (unsigned char c : bytes) {
      char two[3];
      std::snprintf(two, sizeof two, "%02x", c);
      out += two;
    }
    return out;
  };
  const std::string shown = dir.path() + "/caf\xef\xbf\xbd";
  for (const auto& args : {std::vector<std::string>{"-r", dir.path()},
                           std::vector<std::string>{image, text}}) {
    CliRun run = Hash(args);
    // A walk skips the text file; named as a PATH, it is an error.
    EXPECT_EQ(run.status, args[0] == "-r" ? kExitOk : kExitSomeFailed) << run.out;
    ASSERT_EQ(run.lines.size(), args[0] == "-r" ? 1u : 2u) << run.out;
    EXPECT_TRUE(json::serialize(run.lines[0])
                    .starts_with("{\"path\":\"" + shown + ".png\",\"path_hex\":\"" +
                                 hex(image) + "\",\"pdq\":\""))
        << run.out;
    if (args[0] != "-r") {
      EXPECT_EQ(json::serialize(run.lines[1]),
                "{\"path\":\"" + shown + ".jpg\",\"path_hex\":\"" + hex(text) +
                    "\",\"error\":\"" +
                    std::string(run.lines[1].at("error").as_string()) + "\"}");
    }
  }
}

// In CSV too: the path column has U+FFFD for the bytes that are not UTF-8
// (the file stays readable as UTF-8), and the last column, path_hex, the
// exact bytes; empty for a UTF-8 name. With every option's columns.
TEST(HashCommandTest, CsvNamesThatAreNotUtf8KeepTheirBytes) {
  TempDir dir;
  const std::string image = dir.Write("caf\xe9,1.png", Encode(MakePattern(64, 64), ".png"));
  const std::string missing = dir.path() + "/caf\xe9\xff.jpg";
  const std::string plain = dir.Write("plain.png", Encode(MakePattern(64, 64), ".png"));
  std::string image_hex, missing_hex;
  for (unsigned char c : image) image_hex += FormatHex(c);
  for (unsigned char c : missing) missing_hex += FormatHex(c);
  const std::string shown = dir.path() + "/caf\xef\xbf\xbd";
  CliRun run = Hash({"--csv", image, missing, plain});
  EXPECT_EQ(run.status, kExitSomeFailed);
  const std::vector<std::string> rows = Lines(run.out);
  ASSERT_EQ(rows.size(), 4u) << run.out;
  EXPECT_EQ(rows[0], "path,pdq,quality,md5,sha256,width,height,low_quality,error,path_hex");
  const std::string hashes = rows[1].substr(rows[1].find("\","));
  EXPECT_EQ(rows[1], "\"" + shown + ",1.png" + hashes);
  EXPECT_TRUE(hashes.ends_with(",64,64,false,," + image_hex)) << rows[1];
  EXPECT_EQ(rows[2], shown + "\xef\xbf\xbd.jpg,,,,,,,,no such file or directory," + missing_hex);
  EXPECT_EQ(rows[3], plain + hashes.substr(1, hashes.size() - 1 - image_hex.size()));
  for (const char* option : {"--dihedral", "--trim-borders"}) {
    run = Hash({"--csv", option, image, missing});
    const std::vector<std::string> more = Lines(run.out);
    ASSERT_EQ(more.size(), 3u) << run.out;
    EXPECT_TRUE(more[0].ends_with(",error,path_hex")) << more[0];
    EXPECT_TRUE(more[1].ends_with(",," + image_hex)) << more[1];
    EXPECT_TRUE(more[2].ends_with(",no such file or directory," + missing_hex)) << more[2];
    EXPECT_EQ(std::count(more[1].begin(), more[1].end(), ','),
              std::count(more[0].begin(), more[0].end(), ',') + 1);  // the name's comma
    EXPECT_EQ(std::count(more[2].begin(), more[2].end(), ','),
              std::count(more[0].begin(), more[0].end(), ','));
  }
}

TEST(HashCommandTest, CsvOutput) {
  TempDir dir;
  const std::string odd = dir.Write("with,comma \"q\".jpg",
                                    bantay::testing::ReadTestFile("pdq/bridge-mods/aaa-orig.jpg"));
  CliRun run = Hash({"--csv", odd, dir.path() + "/none"});
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(run.out,
            "path,pdq,quality,md5,sha256,width,height,low_quality,error,path_hex\n"
            "\"" + dir.path() + "/with,comma \"\"q\"\".jpg\"," + kAaaPdq + ",100," +
                kAaaMd5 + "," + kAaaSha256 + ",1600,1004,false,,\n" +
                dir.path() + "/none,,,,,,,,no such file or directory,\n");
}

// A path a spreadsheet would run as a formula gets a leading apostrophe
// (the names on seized media are chosen by whoever made them).
TEST(HashCommandTest, CsvCellsASpreadsheetWouldRunAreNeutralised) {
  TempDir dir;
  dir.Write("=HYPERLINK(1).jpg", bantay::testing::ReadTestFile("pdq/bridge-mods/aaa-orig.jpg"));
  const std::filesystem::path cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  CliRun run = Hash({"--csv", "=HYPERLINK(1).jpg", "+cmd"});
  std::filesystem::current_path(cwd);
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(run.out,
            std::string("path,pdq,quality,md5,sha256,width,height,low_quality,error,path_hex\n") +
                "'=HYPERLINK(1).jpg," + kAaaPdq + ",100," + kAaaMd5 + "," + kAaaSha256 +
                ",1600,1004,false,,\n"
                "'+cmd,,,,,,,,no such file or directory,\n");
}

TEST(HashCommandTest, CsvWithDihedralHasEightMoreColumns) {
  CliRun run = Hash({"--csv", "--dihedral", kAaa});
  ASSERT_EQ(run.status, kExitOk);
  std::istringstream lines(run.out);
  std::string header, row;
  std::getline(lines, header);
  std::getline(lines, row);
  EXPECT_EQ(header,
            "path,pdq,quality,md5,sha256,width,height,low_quality,pdq_original,"
            "pdq_rotate90,pdq_rotate180,pdq_rotate270,pdq_flipx,pdq_flipy,"
            "pdq_flip_plus1,pdq_flip_minus1,error,path_hex");
  EXPECT_EQ(std::count(row.begin(), row.end(), ','), 17);
}

TEST(HashCommandTest, FastModeReportsANearbyHash) {
  TempDir dir;
  const std::string frame = dir.Write(
      "frame.jpg", Encode(MakePattern(1920, 1080), ".jpg", {cv::IMWRITE_JPEG_QUALITY, 90}));
  CliRun compatible = Hash({frame});
  CliRun fast = Hash({"--fast", frame});
  ASSERT_EQ(fast.status, kExitOk);
  EXPECT_EQ(fast.lines[0].at("width").as_int64(), 1920);
  EXPECT_EQ(fast.lines[0].at("sha256"), compatible.lines[0].at("sha256"));
}

TEST(HashCommandTest, UsageErrors) {
  EXPECT_EQ(Hash({}).status, kExitUsage);
  CliRun unknown = Hash({"--bogus", kAaa});
  EXPECT_EQ(unknown.status, kExitUsage);
  EXPECT_EQ(unknown.out, "");
  EXPECT_EQ(unknown.err.rfind("bantay hash: unknown option '--bogus'\n", 0), 0u);
  EXPECT_EQ(Hash({"--max-pixels", "many", kAaa}).status, kExitUsage);
  EXPECT_EQ(Hash({"--max-pixels"}).status, kExitUsage);
  CliRun twice = Hash({"--max-pixels", "10", "--max-pixels", "2000000", kAaa});
  EXPECT_EQ(twice.status, kExitUsage);
  EXPECT_EQ(twice.err, "bantay hash: --max-pixels is given twice; it takes one value\n");
  EXPECT_EQ(twice.out, "");
  CliRun help = Hash({"--help"});
  EXPECT_EQ(help.status, kExitOk);
  EXPECT_EQ(help.out.rfind("Usage: bantay hash", 0), 0u);
}

TEST(HashCommandTest, AFailedWriteOfStandardOutputIsAnError) {
  CliRun run = bantay::testing::RunCommandWithFailingOutput(RunHashCommand, {kAaa});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_EQ(run.err, "bantay hash: cannot write standard output\n");
  CliRun video = bantay::testing::RunCommandWithFailingOutput(
      RunHashCommand, {"--video", "--max-frames", "2", TestDataPath("vpdq/doorknob-hd-no-bar.mp4")});
  EXPECT_EQ(video.status, kExitUsage);
  EXPECT_TRUE(video.err.ends_with("bantay hash: cannot write standard output\n")) << video.err;
}

// --- hash lists (--out) ------------------------------------------------------

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(HashCommandTest, OutWritesAListThatImportReadsBack) {
  TempDir dir, out_dir;
  const cv::Mat flat(64, 64, CV_8UC3, cv::Scalar(128, 128, 128));
  dir.Write("a.png", Encode(MakePattern(300, 200), ".png"));
  const auto cafe = Encode(MakePattern(200, 300), ".png");
  dir.Write("caf\xe9.png", cafe);  // a name that is not UTF-8
  dir.Write("flat.png", Encode(flat, ".png"));                       // quality 0
  dir.Write("notes.txt", {'h', 'i'});
  dir.Write("odd%name.png", Encode(MakePattern(256, 256), ".png"));
  dir.Write("sub/with space.jpg", bantay::testing::ReadTestFile("pdq/bridge-mods/aaa-orig.jpg"));
  const std::string list = out_dir.path() + "/list.txt";
  CliRun run = Hash({"-r", dir.path(), "--out", list});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "bantay hash: " + dir.path() +
                         "/flat.png: quality 0 is under 50, left out of the list\n"
                         "bantay hash: 4 hashes written to " + list +
                         " (1 of low quality left out, 0 files failed)\n");
  EXPECT_EQ(std::filesystem::status(list).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);

  // The hashes the JSON mode prints for the same files (the one whose name
  // is not UTF-8 through a copy, as JSON text needs UTF-8).
  const std::string cafe_copy = out_dir.Write("cafe.png", cafe);
  auto pdq_of = [&](const std::string& name) {
    CliRun printed = Hash({name == "caf\xe9.png" ? cafe_copy : dir.path() + "/" + name});
    EXPECT_EQ(printed.lines.size(), 1u) << name;
    return printed.lines.empty() ? std::string()
                                 : std::string(printed.lines[0].at("pdq").as_string());
  };
  EXPECT_EQ(pdq_of("sub/with space.jpg"), kAaaPdq);
  EXPECT_EQ(ReadText(list), "pdq " + pdq_of("a.png") + " a.png\n" +
                                "pdq " + pdq_of("caf\xe9.png") + " caf%E9.png\n" +
                                "pdq " + pdq_of("odd%name.png") + " odd%25name.png\n" +
                                "pdq " + std::string(kAaaPdq) + " sub/with%20space.jpg\n");

  std::ifstream in(list);
  matcher::ImportOptions options;
  options.default_list = "lab";
  options.source_name = "list.txt";
  Result<matcher::ParsedImport> parsed = matcher::ParseImport(in, options);
  ASSERT_TRUE(parsed.ok()) << parsed.error().ToString();
  EXPECT_TRUE(parsed->errors.empty());
  const std::vector<std::pair<std::string, std::string>> expected = {
      {pdq_of("a.png"), "a.png"},
      {pdq_of("caf\xe9.png"), "caf%E9.png"},
      {pdq_of("odd%name.png"), "odd%25name.png"},
      {kAaaPdq, "sub/with%20space.jpg"}};
  ASSERT_EQ(parsed->records.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const matcher::ImportRecord& r = parsed->records[i];
    EXPECT_EQ(r.type, matcher::SignalType::kPdq);
    EXPECT_EQ(r.value, models::Hash256::FromHex(expected[i].first)->bytes()) << i;
    EXPECT_EQ(r.reference, expected[i].second);
    EXPECT_EQ(r.list, "lab");
    EXPECT_EQ(r.line, static_cast<int>(i) + 1);
  }
}

TEST(HashCommandTest, OutReportsFailuresAndFilesGivenByPath) {
  TempDir dir;
  const std::string list = dir.path() + "/list.txt";
  const std::string cut = dir.Write(
      "cut.jpg", [] {
        auto jpeg = bantay::testing::ReadTestFile("pdq/bridge-mods/aaa-orig.jpg");
        jpeg.resize(5000);
        return jpeg;
      }());
  CliRun run = Hash({"--out", list, kAaa, cut});
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "bantay hash: " + cut + ": jpeg is truncated (no end-of-image marker)\n"
                     "bantay hash: 1 hashes written to " + list +
                     " (0 of low quality left out, 1 files failed)\n");
  // A file given by path keeps that path as its reference.
  EXPECT_EQ(ReadText(list), "pdq " + std::string(kAaaPdq) + " " + kAaa + "\n");

  // A name too long for a reference (the store allows 256 bytes).
  TempDir tree;
  tree.Write(std::string(120, 'd') + "/" + std::string(140, 'f') + ".jpg",
             bantay::testing::ReadTestFile("pdq/bridge-mods/aaa-orig.jpg"));
  run = Hash({"-r", tree.path(), "--out", list});
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_NE(run.err.find(": the path is too long for a list reference (265 bytes, at most 256)\n"),
            std::string::npos)
      << run.err;
  EXPECT_EQ(ReadText(list), "");

  run = Hash({"--out", dir.path() + "/missing/list.txt", kAaa});
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(run.err, "bantay hash: cannot write " + dir.path() +
                         "/missing/list.txt: No such file or directory\n");
}

TEST(HashCommandTest, OutUsageErrors) {
  for (const char* option : {"--dihedral", "--fast", "--csv", "--trim-borders"}) {
    CliRun run = Hash({"--out", "/dev/null", option, kAaa});
    EXPECT_EQ(run.status, kExitUsage) << option;
    EXPECT_EQ(run.err, std::string("bantay hash: ") + option + " cannot be used with --out\n");
  }
  EXPECT_EQ(Hash({kAaa, "--out"}).status, kExitUsage);
}

// --- videos (--video) -------------------------------------------------------------

const std::string kPadded = TestDataPath("vpdq/test-padded-dimensions.mp4");
const std::string kDoorknob = TestDataPath("vpdq/doorknob-hd-no-bar.mp4");

TEST(HashCommandTest, VideoPrintsTheReferenceHashFileFormat) {
  CliRun run = Hash({"--video", kPadded});
  EXPECT_EQ(run.status, kExitOk);
  EXPECT_EQ(run.err, "");
  // On this video the decoded frames are the reference's pixels: the
  // output is the reference vPDQ hash file, byte for byte.
  EXPECT_EQ(run.out, ReadText(TestDataPath("vpdq/test-padded-dimensions.txt")));
}

TEST(HashCommandTest, VideoSamplingAndLimits) {
  CliRun run = Hash({"--video", "--every", "1", kDoorknob});
  EXPECT_EQ(run.status, kExitOk);
  std::vector<std::string> lines = Lines(run.out);
  ASSERT_EQ(lines.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(lines[i].substr(0, lines[i].find(',')), std::to_string(30 * i));
    EXPECT_EQ(lines[i].substr(lines[i].rfind(',') + 1), std::to_string(i) + ".000");
  }
  run = Hash({"--video", "--downscale", "128", "--max-frames", "3", kDoorknob});
  EXPECT_EQ(run.status, kExitOk);
  EXPECT_EQ(Lines(run.out).size(), 3u);
  EXPECT_EQ(run.err, "bantay hash: " + kDoorknob + ": stopped after 3 frames (--max-frames)\n");

  run = Hash({"--video", "--max-pixels", "1000", kDoorknob});
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "bantay hash: " + kDoorknob +
                         ": video declares 1280x720 pixels a frame, over the limit of 1000\n");
}

TEST(HashCommandTest, SeveralVideosAndFailures) {
  TempDir dir;
  const auto bytes = bantay::testing::ReadTestFile("vpdq/doorknob-hd-no-bar.mp4");
  const std::string half = dir.Write("half.mp4", {bytes.begin(), bytes.begin() + bytes.size() / 2});
  const std::string missing = dir.path() + "/none.mp4";
  const std::string text = dir.Write("notes.mp4", {'h', 'i'});
  CliRun run = Hash({"--video", "--max-frames", "2", kPadded, missing, text, half});
  EXPECT_EQ(run.status, kExitSomeFailed);
  const std::vector<std::string> padded = Lines(ReadText(TestDataPath("vpdq/test-padded-dimensions.txt")));
  const std::vector<std::string> lines = Lines(run.out);
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[0], "# " + kPadded);
  EXPECT_EQ(lines[1], padded[0]);
  EXPECT_EQ(lines[2], padded[1]);
  EXPECT_EQ(lines[3], "# " + half);
  EXPECT_EQ(lines[4].substr(0, 2), "0,");
  EXPECT_EQ(lines[5].substr(0, 2), "1,");
  const std::vector<std::string> errors = Lines(run.err);
  ASSERT_EQ(errors.size(), 4u) << run.err;
  EXPECT_EQ(errors[0], "bantay hash: " + kPadded + ": stopped after 2 frames (--max-frames)");
  EXPECT_EQ(errors[1], "bantay hash: " + missing + ": no such file");
  EXPECT_EQ(errors[2], "bantay hash: " + text +
                           ": not a video container Bantay reads (MP4/QuickTime, "
                           "Matroska/WebM, AVI, MPEG-TS, MPEG-PS, FLV, ASF)");
  EXPECT_EQ(errors[3], "bantay hash: " + half + ": stopped after 2 frames (--max-frames)");

  // Without a limit, the cut file ends early: its 51 frames are printed
  // and the run fails.
  run = Hash({"--video", half});
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(Lines(run.out).size(), 51u);
  EXPECT_EQ(run.err, "bantay hash: " + half +
                         ": decoding ended after 51 of the 120 frames the file declares "
                         "(truncated or damaged); the frames decoded are hashed\n");
}

TEST(HashCommandTest, VideoUsageErrors) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--video", "--every", "0", kPadded}, "bantay hash: --every needs a positive number of seconds\n"},
      {{"--video", "--every", "-1", kPadded}, "bantay hash: --every needs a positive number of seconds\n"},
      {{"--video", "--every", "soon", kPadded}, "bantay hash: --every needs a positive number of seconds\n"},
      {{"--video", "--every", "inf", kPadded}, "bantay hash: --every needs a positive number of seconds\n"},
      {{"--video", "--every"}, "bantay hash: --every needs a positive number of seconds\n"},
      {{"--video", "--downscale", "0", kPadded}, "bantay hash: --downscale needs a positive integer (at most 4096)\n"},
      {{"--video", "--downscale", "4097", kPadded}, "bantay hash: --downscale needs a positive integer (at most 4096)\n"},
      {{"--video", "--max-frames", "x", kPadded}, "bantay hash: --max-frames needs a positive integer\n"},
      {{"--every", "1", kPadded}, "bantay hash: --every needs --video\n"},
      {{"--downscale", "128", kPadded}, "bantay hash: --downscale needs --video\n"},
      {{"--video", "-r", kPadded}, "bantay hash: -r is for images, not with --video\n"},
      {{"--video", "--csv", kPadded}, "bantay hash: --csv is for images, not with --video\n"},
      {{"--video", "--dihedral", kPadded}, "bantay hash: --dihedral is for images, not with --video\n"},
      {{"--video", "--out", "/dev/null", kPadded}, "bantay hash: --out is for images, not with --video\n"},
  };
  for (const auto& [args, message] : cases) {
    CliRun run = Hash(args);
    EXPECT_EQ(run.status, kExitUsage) << message;
    EXPECT_EQ(run.out, "");
    EXPECT_EQ(run.err, message);
  }
}

// --- letterbox/pillarbox trimming (--trim-borders) ----------------------------------

TEST(HashCommandTest, TrimBordersHashesThePictureInsideTheBars) {
  // The reference photograph, decoded, with 200-pixel black bars left and
  // right, stored losslessly: trimmed, it hashes exactly as the photograph.
  TempDir dir;
  const cv::Mat photo = cv::imread(kAaa, cv::IMREAD_COLOR);
  ASSERT_EQ(photo.cols, 1600);
  cv::Mat pillarboxed;
  cv::copyMakeBorder(photo, pillarboxed, 0, 0, 200, 200, cv::BORDER_CONSTANT, cv::Scalar::all(0));
  const std::string bordered = dir.Write("pillarboxed.png", Encode(pillarboxed, ".png"));

  const CliRun plain = Hash({bordered});
  ASSERT_EQ(plain.status, kExitOk);
  ASSERT_EQ(plain.lines.size(), 1u);
  const std::string untrimmed_pdq(plain.lines[0].at("pdq").as_string());
  EXPECT_NE(untrimmed_pdq, kAaaPdq);
  EXPECT_FALSE(plain.lines[0].contains("content"));

  CliRun run = Hash({"--trim-borders", bordered, kAaa});
  EXPECT_EQ(run.status, kExitOk);
  EXPECT_EQ(run.err, "");
  ASSERT_EQ(run.lines.size(), 2u);
  EXPECT_EQ(run.lines[0].at("pdq").as_string(), kAaaPdq);
  EXPECT_EQ(run.lines[0].at("width").as_int64(), 2000);
  EXPECT_EQ(json::serialize(run.lines[0].at("content")),
            R"({"x":200,"y":0,"width":1600,"height":1004})");
  EXPECT_EQ(run.lines[0].at("pdq_untrimmed").as_string(), untrimmed_pdq);
  // A picture without bars: the whole of it, and no second hash.
  EXPECT_EQ(run.lines[1].at("pdq").as_string(), kAaaPdq);
  EXPECT_EQ(json::serialize(run.lines[1].at("content")),
            R"({"x":0,"y":0,"width":1600,"height":1004})");
  EXPECT_FALSE(run.lines[1].contains("pdq_untrimmed"));

  run = Hash({"--csv", "--trim-borders", bordered, kAaa});
  EXPECT_EQ(run.status, kExitOk);
  const std::vector<std::string> lines = Lines(run.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0],
            "path,pdq,quality,md5,sha256,width,height,low_quality,content_x,content_y,"
            "content_width,content_height,pdq_untrimmed,error,path_hex");
  EXPECT_EQ(lines[1].substr(lines[1].find(",2000,1004,")),
            ",2000,1004,false,200,0,1600,1004," + untrimmed_pdq + ",,");
  EXPECT_EQ(lines[2].substr(lines[2].find(",1600,1004,")), ",1600,1004,false,0,0,1600,1004,,,");
}

TEST(HashCommandTest, TrimBordersOnVideoFrames) {
  const std::string chair = TestDataPath("vpdq/chair-19-sd-bar.mp4");
  const CliRun plain = Hash({"--video", "--max-frames", "3", chair});
  CliRun run = Hash({"--video", "--trim-borders", "--max-frames", "3", chair});
  EXPECT_EQ(run.status, kExitOk);
  EXPECT_EQ(run.err, "bantay hash: " + chair + ": stopped after 3 frames (--max-frames)\n" +
                         "bantay hash: " + chair + ": borders removed from 3 of 3 hashed frames\n");
  const std::vector<std::string> trimmed = Lines(run.out);
  const std::vector<std::string> untrimmed = Lines(plain.out);
  ASSERT_EQ(trimmed.size(), 3u);
  ASSERT_EQ(untrimmed.size(), 3u);
  // Same frame numbers, qualities and timestamps; other hashes (the frames
  // without their 32-pixel bars; models/border_trim_test.cc shows them
  // matching the unbordered original).
  models::VideoHashOptions options;
  options.trim_borders = true;
  options.max_frames = 3;
  Result<models::VideoHashes> expected = models::HashVideoFile(chair, options);
  ASSERT_TRUE(expected.ok());
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(trimmed[i], models::FormatVideoFrameHash(expected->frames[i]));
    EXPECT_NE(trimmed[i], untrimmed[i]);
  }
  // A video without bars: the same lines as without the option.
  run = Hash({"--video", "--trim-borders", "--max-frames", "3", kDoorknob});
  EXPECT_EQ(run.err, "bantay hash: " + kDoorknob + ": stopped after 3 frames (--max-frames)\n" +
                         "bantay hash: " + kDoorknob + ": borders removed from 0 of 3 hashed frames\n");
  EXPECT_EQ(run.out, Hash({"--video", "--max-frames", "3", kDoorknob}).out);
}

// The real executable: exit statuses, and nothing written to the working
// or temporary directory.
int RunBinary(const std::string& args, const std::string& cwd, const std::string& tmp,
              std::string* out, const std::string& timeout_s = "") {
  const std::string command = "cd '" + cwd + "' && TMPDIR='" + tmp + "' " +
                              (timeout_s.empty() ? "" : "timeout " + timeout_s + " ") +
                              BANTAY_CLI + " " + args + " 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out->append(buffer, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(HashBinaryTest, ExitStatusesAndNoFilesWritten) {
  TempDir cwd, tmp;
  std::string out;
  EXPECT_EQ(RunBinary("hash '" + kAaa + "'", cwd.path(), tmp.path(), &out), 0);
  EXPECT_NE(out.find(kAaaPdq), std::string::npos);
  out.clear();
  EXPECT_EQ(RunBinary("hash -r '" + TestDataPath("pdq") + "'", cwd.path(), tmp.path(), &out), 0);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 44);
  out.clear();
  EXPECT_EQ(RunBinary("hash '" + kAaa + "' /nonexistent", cwd.path(), tmp.path(), &out), 1);
  out.clear();
  EXPECT_EQ(RunBinary("hash", cwd.path(), tmp.path(), &out), 2);
  EXPECT_EQ(RunBinary("nonsense", cwd.path(), tmp.path(), &out), 2);
  EXPECT_TRUE(std::filesystem::is_empty(cwd.path()));
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));
}

// The real executable with its standard output on /dev/full: the write fails
// when the buffered output is flushed.
TEST(HashBinaryTest, StandardOutputOnAFullDeviceIsAnError) {
  TempDir dir;
  const std::string err = dir.path() + "/err.txt";
  const std::string command =
      std::string(BANTAY_CLI) + " hash '" + kAaa + "' >/dev/full 2>'" + err + "'";
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_EQ(ReadText(err), "bantay hash: cannot write standard output\n");
}

// A FIFO (or device, or socket) is never opened: opening a FIFO waits for a
// writer, for ever. `timeout` only bounds the test should that come back.
TEST(HashBinaryTest, AFifoIsAnErrorRecordNotOpened) {
  TempDir dir;
  const std::string fifo = dir.path() + "/fifo.jpg";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  std::string out;
  EXPECT_EQ(RunBinary("hash '" + fifo + "' '" + kAaa + "'", dir.path(), dir.path(), &out, "60"),
            1);
  std::istringstream lines(out);
  std::string first, second;
  std::getline(lines, first);
  std::getline(lines, second);
  EXPECT_EQ(first, "{\"path\":\"" + fifo +
                       "\",\"error\":\"not a regular file (a FIFO, socket or device is never "
                       "opened)\"}");
  EXPECT_NE(second.find(kAaaPdq), std::string::npos) << out;
  const std::string err = dir.path() + "/err.txt";
  const int status = std::system(("timeout 60 " + std::string(BANTAY_CLI) + " hash --video '" +
                                  fifo + "' >/dev/null 2>'" + err + "'")
                                     .c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_EQ(ReadText(err), "bantay hash: " + fifo +
                               ": not a regular file (a FIFO, socket or device is never "
                               "opened)\n");
}

TEST(HashBinaryTest, VideoAndListWriteNothingElse) {
  TempDir cwd, tmp, lists;
  std::string out;
  EXPECT_EQ(RunBinary("hash --video '" + kPadded + "'", cwd.path(), tmp.path(), &out), 0);
  EXPECT_EQ(out, ReadText(TestDataPath("vpdq/test-padded-dimensions.txt")));
  out.clear();
  const std::string list = lists.path() + "/list.txt";
  EXPECT_EQ(RunBinary("hash -r '" + TestDataPath("pdq") + "' --out '" + list + "'", cwd.path(),
                      tmp.path(), &out),
            0);
  EXPECT_EQ(out, "");
  const std::string written = ReadText(list);
  // 44 reference images, of which 3 (misc-images/small.jpg, labelme-subset
  // q0003 and q0004) are of quality under 50 and left out.
  EXPECT_EQ(std::count(written.begin(), written.end(), '\n'), 41);
  EXPECT_NE(written.find("pdq " + std::string(kAaaPdq) + " bridge-mods/aaa-orig.jpg\n"),
            std::string::npos);
  EXPECT_TRUE(std::filesystem::is_empty(cwd.path()));
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(lists.path()),
                          std::filesystem::directory_iterator()),
            1);
}

}  // namespace
}  // namespace bantay::client
