#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <sys/wait.h>

#include "bantay/client/cli.h"
#include "cli_run.h"
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

TEST(HashCommandTest, CsvOutput) {
  TempDir dir;
  const std::string odd = dir.Write("with,comma \"q\".jpg",
                                    bantay::testing::ReadTestFile("pdq/bridge-mods/aaa-orig.jpg"));
  CliRun run = Hash({"--csv", odd, dir.path() + "/none"});
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(run.out,
            "path,pdq,quality,md5,sha256,width,height,low_quality,error\n"
            "\"" + dir.path() + "/with,comma \"\"q\"\".jpg\"," + kAaaPdq + ",100," +
                kAaaMd5 + "," + kAaaSha256 + ",1600,1004,false,\n" +
                dir.path() + "/none,,,,,,,,no such file or directory\n");
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
            "pdq_flip_plus1,pdq_flip_minus1,error");
  EXPECT_EQ(std::count(row.begin(), row.end(), ','), 16);
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
  CliRun help = Hash({"--help"});
  EXPECT_EQ(help.status, kExitOk);
  EXPECT_EQ(help.out.rfind("Usage: bantay hash", 0), 0u);
}

// The real executable: exit statuses, and nothing written to the working
// or temporary directory.
int RunBinary(const std::string& args, const std::string& cwd, const std::string& tmp,
              std::string* out) {
  const std::string command = "cd '" + cwd + "' && TMPDIR='" + tmp + "' " +
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

}  // namespace
}  // namespace bantay::client
