#include <gtest/gtest.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <streambuf>
#include <thread>

#include "bantay/client/cli.h"
#include "cli_run.h"
#include "test_images.h"

namespace bantay::client {
namespace {

namespace json = boost::json;
using bantay::testing::TempDir;

using bantay::testing::CliRun;

CliRun Match(const std::vector<std::string>& args) {
  return bantay::testing::RunCommand(RunMatchCommand, args);
}

std::vector<uint8_t> Text(const std::string& s) { return {s.begin(), s.end()}; }

// The reference's hashes of its own dihedral test images (expected-pdq.csv).
constexpr char kOriginal[] = "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";
constexpr char kRotate90[] = "30a10efdf1c83f429013d48d0ffffc52e34e0e35ada952a9d29605215aa9e5af";
constexpr char kSharpenALot[] = "d0f8f0cec0f4a84f0e370a22238f67f0b36a2ef596231e1d73e6a39c4e9c9b22";

std::string ListFile(const TempDir& dir) {
  return dir.Write("list.txt", Text(std::string("# benign reference hashes\n") +
                                    "pdq " + kOriginal + " case-1\n" +
                                    kRotate90 + " case-2\n" +
                                    "\n"
                                    "pdq " + kSharpenALot + "\n"));
}

TEST(MatchCommandTest, OneQueryExactMatchesSortedByDistance) {
  TempDir dir;
  CliRun run = Match({"--index", ListFile(dir), "--pdq", kOriginal});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(run.out, std::string("{\"query\":\"") + kOriginal +
                         "\",\"matches\":[{\"list\":\"list.txt\",\"category\":\"\",\"ref\":\"case-1\",\"distance\":0,\"variant\":"
                         "\"original\"},{\"list\":\"list.txt\",\"category\":\"\",\"ref\":\"list.txt:5\",\"distance\":14,\"variant\":"
                         "\"original\"}]}\n");
}

TEST(MatchCommandTest, RadiusBoundaryIsInclusive) {
  TempDir dir;
  const std::string list = ListFile(dir);
  EXPECT_EQ(Match({"--index", list, "--pdq", kOriginal, "--radius", "14"}).lines[0].at("matches").as_array().size(), 2u);
  EXPECT_EQ(Match({"--index", list, "--pdq", kOriginal, "--radius", "13"}).lines[0].at("matches").as_array().size(), 1u);
  EXPECT_EQ(Match({"--index", list, "--pdq", kOriginal, "--radius", "0"}).lines[0].at("matches").as_array().size(), 1u);
}

TEST(MatchCommandTest, DihedralFindsTheRotatedCopy) {
  TempDir dir;
  CliRun run = Match({"--index", ListFile(dir), "--pdq", kOriginal, "--dihedral"});
  ASSERT_EQ(run.status, kExitOk);
  const json::array& m = run.lines[0].at("matches").as_array();
  ASSERT_EQ(m.size(), 3u);
  // Distance 14 twice: the rotated copy, and the sharpened original; by ref.
  EXPECT_EQ(m[1].at("ref").as_string(), "case-2");
  EXPECT_EQ(m[1].at("variant").as_string(), "rotate90");
  EXPECT_EQ(m[1].at("distance").as_int64(), 14);
  EXPECT_EQ(m[2].at("ref").as_string(), "list.txt:5");
  EXPECT_EQ(m[2].at("variant").as_string(), "original");
}

TEST(MatchCommandTest, QueryFileKeepsOrderAndReportsBadLines) {
  TempDir dir;
  const std::string queries = dir.Write(
      "q.txt", Text(std::string(kRotate90) + "\nnot-a-hash\n" + kOriginal + "\n"));
  for (const char* threads : {"1", "2", "3"}) {
    CliRun run = Match({"--index", ListFile(dir), "--pdq-file", queries, "--threads", threads});
    EXPECT_EQ(run.status, kExitSomeFailed);
    ASSERT_EQ(run.lines.size(), 3u);
    EXPECT_EQ(run.lines[0].at("line").as_int64(), 1);
    EXPECT_EQ(run.lines[0].at("query").as_string(), kRotate90);
    EXPECT_EQ(run.lines[0].at("matches").as_array()[0].at("ref").as_string(), "case-2");
    EXPECT_EQ(json::serialize(run.lines[1]),
              "{\"line\":2,\"query\":\"not-a-hash\",\"error\":\"line 2: a PDQ hash is 64 "
              "hexadecimal digits, got 10 characters\"}");
    EXPECT_EQ(run.lines[2].at("line").as_int64(), 3);
    EXPECT_EQ(run.lines[2].at("query").as_string(), kOriginal);
  }
}

// A query file is read as a hash list is (bantay index import's local_file
// lines): each output line carries the number of the line it answers, so
// that outputs pair with inputs although comments and blank lines give none.
TEST(MatchCommandTest, QueryFileTakesHashListLinesAndNamesEachLine) {
  TempDir dir;
  const std::string md5(32, 'a');
  const std::string sha256(64, 'b');
  const std::string list = dir.Write(
      "exact.txt", Text(std::string("pdq ") + kOriginal + " case-1\n" + kRotate90 +
                        " case-2\nmd5 " + md5 + " case-3\nsha256 " + sha256 + "\n"));
  const std::string queries = dir.Write(
      "q.txt", Text(std::string("\xEF\xBB\xBF# queries of case 42\n") +  // 1
                    "\n" +                                                // 2
                    "pdq " + kOriginal + " item-7\n" +                    // 3
                    "  " + kRotate90 + "\r\n" +                           // 4
                    "MD5 " + std::string(32, 'A') + " item-9\n" +         // 5
                    "sha256 " + sha256 + "\n" +                           // 6
                    "sha256 " + std::string(64, 'c') + " item-11\n" +     // 7
                    "pdq 12345 item-12\n" +                               // 8
                    " \t\n" +                                             // 9
                    "phash " + kOriginal + "\n" +                         // 10
                    kOriginal + " item-14 extra\n" +                      // 11
                    "   # an indented comment\n" +                        // 12
                    kOriginal + "\n" +                                    // 13
                    "ph\xFF" "ash " + kOriginal));                          // 14, no newline
  const std::string m1 =
      "{\"list\":\"exact.txt\",\"category\":\"\",\"ref\":\"case-1\",\"distance\":0,"
      "\"variant\":\"original\"}";
  const std::string m2 =
      "{\"list\":\"exact.txt\",\"category\":\"\",\"ref\":\"case-2\",\"distance\":0,"
      "\"variant\":\"original\"}";
  const std::string expected =
      std::string("{\"line\":3,\"query\":\"") + kOriginal +
      "\",\"signal\":\"pdq\",\"ref\":\"item-7\",\"matches\":[" + m1 + "]}\n" +
      "{\"line\":4,\"query\":\"" + kRotate90 + "\",\"signal\":\"pdq\",\"matches\":[" + m2 +
      "]}\n" +
      "{\"line\":5,\"query\":\"" + md5 +
      "\",\"signal\":\"md5\",\"ref\":\"item-9\",\"matches\":[{\"list\":\"exact.txt\","
      "\"category\":\"\",\"ref\":\"case-3\",\"distance\":0,\"variant\":\"original\"}]}\n" +
      "{\"line\":6,\"query\":\"" + sha256 +
      "\",\"signal\":\"sha256\",\"matches\":[{\"list\":\"exact.txt\",\"category\":\"\","
      "\"ref\":\"exact.txt:4\",\"distance\":0,\"variant\":\"original\"}]}\n" +
      "{\"line\":7,\"query\":\"" + std::string(64, 'c') +
      "\",\"signal\":\"sha256\",\"ref\":\"item-11\",\"matches\":[]}\n" +
      "{\"line\":8,\"query\":\"pdq 12345 item-12\",\"error\":\"line 8: a PDQ hash is 64 "
      "hexadecimal digits, got 5 characters\"}\n" +
      "{\"line\":10,\"query\":\"phash " + kOriginal +
      "\",\"error\":\"line 10: unknown signal type 'phash' (pdq, md5 or sha256)\"}\n" +
      "{\"line\":11,\"query\":\"" + kOriginal +
      " item-14 extra\",\"error\":\"line 11: too many columns (expected [TYPE] VALUE "
      "[REFERENCE])\"}\n" +
      "{\"line\":13,\"query\":\"" + kOriginal + "\",\"signal\":\"pdq\",\"matches\":[" +
      m1 + "]}\n" +
      "{\"line\":14,\"query\":\"ph\\\\xffash " + kOriginal +
      "\",\"error\":\"line 14: unknown signal type 'ph\\\\xffash' (pdq, md5 or sha256)\"}\n";
  for (const char* threads : {"1", "3"}) {
    CliRun run = Match({"--index", list, "--pdq-file", queries, "--radius", "0",
                        "--threads", threads});
    EXPECT_EQ(run.status, kExitSomeFailed) << threads;
    EXPECT_EQ(run.out, expected) << threads;
    EXPECT_EQ(run.err, "") << threads;
  }
  // Only good lines: exit status 0; a file of comments gives no line.
  const std::string good = dir.Write("good.txt", Text("# none\nmd5 " + md5 + "\n"));
  CliRun run = Match({"--index", list, "--pdq-file", good});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(run.out, "{\"line\":2,\"query\":\"" + md5 +
                         "\",\"signal\":\"md5\",\"matches\":[{\"list\":\"exact.txt\","
                         "\"category\":\"\",\"ref\":\"case-3\",\"distance\":0,\"variant\":"
                         "\"original\"}]}\n");
  const std::string comments = dir.Write("comments.txt", Text("# none\n\n"));
  run = Match({"--index", list, "--pdq-file", comments});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(run.out, "");
}

// A --pdq-file line is read whole only up to 65536 bytes, as bantay index
// import's lines: one without an end (/dev/zero through a pipe) would take
// all memory. A line of 65536 bytes is a line (a bad one here); one byte
// more ends the run, after the lines before it are answered.
TEST(MatchCommandTest, AQueryLineOverTheLimitEndsTheRun) {
  TempDir dir;
  const std::string list = ListFile(dir);
  const std::string longest = "pdq " + std::string(kOriginal) + " " + std::string(65536 - 69, 'r');
  ASSERT_EQ(longest.size(), 65536u);
  const std::string at_limit =
      dir.Write("at-limit.txt", Text(std::string(kOriginal) + "\n" + longest + "\n" + kRotate90 + "\n"));
  CliRun run = Match({"--index", list, "--pdq-file", at_limit});
  EXPECT_EQ(run.status, kExitSomeFailed) << run.err;
  ASSERT_EQ(run.lines.size(), 3u) << run.out;
  EXPECT_EQ(run.lines[0].at("line").as_int64(), 1);
  EXPECT_EQ(json::serialize(run.lines[1]),
            "{\"line\":2,\"query\":\"" + longest +
                "\",\"error\":\"line 2: reference is longer than 256 bytes (65467)\"}");
  EXPECT_EQ(run.lines[2].at("line").as_int64(), 3);
  EXPECT_EQ(run.err, "");

  const std::string over = dir.Write(
      "over.txt", Text(std::string(kOriginal) + "\nnot-a-hash\n" + longest + "r\n" + kRotate90 + "\n"));
  run = Match({"--index", list, "--pdq-file", over, "--threads", "2"});
  EXPECT_EQ(run.status, kExitUsage);
  ASSERT_EQ(run.lines.size(), 2u) << run.out;
  EXPECT_EQ(run.lines[0].at("line").as_int64(), 1);
  EXPECT_EQ(run.lines[0].at("matches").as_array().size(), 2u);
  EXPECT_EQ(json::serialize(run.lines[1]),
            "{\"line\":2,\"query\":\"not-a-hash\",\"error\":\"line 2: a PDQ hash is 64 "
            "hexadecimal digits, got 10 characters\"}");
  EXPECT_EQ(run.err, "bantay match: " + over +
                         ":3: a line longer than 65536 bytes (no hash line is near that); the "
                         "lines before it are answered, none after\n");

  // No line break at all.
  const std::string zeros = dir.Write("zeros.bin", std::vector<uint8_t>(200000, 0));
  run = Match({"--index", list, "--pdq-file", zeros});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "bantay match: " + zeros +
                         ":1: a line longer than 65536 bytes (no hash line is near that); the "
                         "lines before it are answered, none after\n");
}

// A list longer than a batch is numbered through, and a byte order mark is
// taken off the first line only, as when a list is read whole.
TEST(MatchCommandTest, AQueryFileLongerThanABatchIsNumberedThrough) {
  TempDir dir;
  std::string text = std::string("\xEF\xBB\xBF") + kOriginal + "\n";
  for (int line = 2; line <= 4096; ++line) text += "# comment " + std::to_string(line) + "\n";
  text += std::string("\xEF\xBB\xBF") + kOriginal + "\n";  // 4097
  text += std::string(kRotate90) + " item-4098\n";
  for (int line = 4099; line <= 9000; ++line) text += "\n";
  text += "bad-9001";
  const std::string queries = dir.Write("q.txt", Text(text));
  CliRun run = Match({"--index", ListFile(dir), "--pdq-file", queries, "--threads", "2"});
  EXPECT_EQ(run.status, kExitSomeFailed) << run.err;
  ASSERT_EQ(run.lines.size(), 4u) << run.out;
  EXPECT_EQ(run.lines[0].at("line").as_int64(), 1);
  EXPECT_EQ(run.lines[0].at("query").as_string(), kOriginal);
  EXPECT_EQ(run.lines[0].at("matches").as_array().size(), 2u);
  EXPECT_EQ(json::serialize(run.lines[1]),
            "{\"line\":4097,\"query\":\"\xEF\xBB\xBF" + std::string(kOriginal) +
                "\",\"error\":\"line 4097: a PDQ hash is 64 hexadecimal digits, got 67 "
                "characters\"}");
  EXPECT_EQ(run.lines[2].at("line").as_int64(), 4098);
  EXPECT_EQ(run.lines[2].at("ref").as_string(), "item-4098");
  EXPECT_EQ(run.lines[2].at("matches").as_array()[0].at("ref").as_string(), "case-2");
  EXPECT_EQ(json::serialize(run.lines[3]),
            "{\"line\":9001,\"query\":\"bad-9001\",\"error\":\"line 9001: a PDQ hash is 64 "
            "hexadecimal digits, got 8 characters\"}");
}

// A stream buffer that several threads may write and read.
class SharedOutput : public std::streambuf {
 public:
  std::string Text() {
    std::lock_guard lock(mu_);
    return text_;
  }
  // Waits until the text holds `part`, 20 s at most.
  bool WaitFor(const std::string& part) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, std::chrono::seconds(20),
                             [&] { return text_.find(part) != std::string::npos; });
  }

 protected:
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) xsputn(reinterpret_cast<const char*>(&c), 1);
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard lock(mu_);
    text_.append(s, static_cast<size_t>(n));
    changed_.notify_all();
    return n;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::string text_;
};

// The lines of a --pdq-file are answered as they come and not kept: a FIFO
// whose writer waits for the answer to each line before it writes the next
// (as a program feeding hashes one at a time does) gets each answer, and an
// endless stream of bad lines is answered in bounded memory.
TEST(MatchCommandTest, QueryLinesFromAFifoAreAnsweredAsTheyCome) {
  TempDir dir;
  const std::string list = ListFile(dir);
  const std::string fifo = dir.path() + "/queries";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  SharedOutput shared;
  std::ostream out(&shared);
  std::ostringstream err;
  bool answered_one_at_a_time = true;
  std::thread writer([&] {
    std::ofstream queries(fifo);
    for (int line = 1; line <= 3; ++line) {
      queries << "bad-" << line << std::endl;
      answered_one_at_a_time &= shared.WaitFor("{\"line\":" + std::to_string(line) + ",");
    }
    queries << kOriginal << std::endl;
  });
  const int status = RunMatchCommand({"--index", list, "--pdq-file", fifo}, out, err);
  writer.join();
  EXPECT_TRUE(answered_one_at_a_time) << shared.Text();
  EXPECT_EQ(status, kExitSomeFailed) << err.str();
  std::string expected;
  for (int line = 1; line <= 3; ++line) {
    expected += "{\"line\":" + std::to_string(line) + ",\"query\":\"bad-" + std::to_string(line) +
                "\",\"error\":\"line " + std::to_string(line) +
                ": a PDQ hash is 64 hexadecimal digits, got 5 characters\"}\n";
  }
  const std::string text = shared.Text();
  EXPECT_TRUE(text.starts_with(expected)) << text;
  EXPECT_TRUE(text.ends_with("\"variant\":\"original\"}]}\n")) << text;
  EXPECT_NE(text.find("{\"line\":4,\"query\":\"" + std::string(kOriginal) + "\""), std::string::npos)
      << text;
  EXPECT_EQ(err.str(), "");
}

TEST(MatchCommandTest, BadIndexIsRefusedWithLineNumbers) {
  TempDir dir;
  const std::string list = dir.Write(
      "bad.txt", Text(std::string("pdq ") + kOriginal + "\npdq 12345\nphash " + kOriginal +
                      " x\nmd5 " + std::string(32, 'a') + "\n" + std::string(64, 'f') + "\n"));
  CliRun run = Match({"--index", list, "--pdq", kOriginal});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_EQ(run.out, "");
  // Line 5: a bare value that no PDQ hash can be (all 256 bits set).
  EXPECT_EQ(run.err,
            "bantay match: " + list + ":2: a PDQ hash is 64 hexadecimal digits, got 5 characters\n"
            "bantay match: " + list + ":3: unknown signal type 'phash' (pdq, md5 or sha256)\n"
            "bantay match: " + list + ":5: a bare value is read as PDQ, but this one sets 256 of "
            "its 256 bits where a PDQ hash sets 128: name its type (\"sha256 VALUE\"), or give "
            "the type of bare values\n"
            "bantay match: the index has 3 bad line(s); nothing matched\n");
}

TEST(MatchCommandTest, AnEmptyIndexIsRefused) {
  TempDir dir;
  const std::string empty = dir.Write("empty.txt", Text(""));
  for (const std::string& index : {std::string("/dev/null"), empty}) {
    CliRun run = Match({"--index", index, "--pdq", kOriginal});
    EXPECT_EQ(run.status, kExitUsage) << index;
    EXPECT_EQ(run.err, "bantay match: the index " + index +
                           " has no entries; matching against it would find nothing\n");
    EXPECT_EQ(run.out, "");
  }
}

TEST(MatchCommandTest, AFailedWriteOfStandardOutputIsAnError) {
  TempDir dir;
  CliRun run = bantay::testing::RunCommandWithFailingOutput(
      RunMatchCommand, {"--index", ListFile(dir), "--pdq", kOriginal});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_EQ(run.err, "bantay match: cannot write standard output\n");
}

TEST(MatchCommandTest, ARepeatedSingleValuedOptionIsRefused) {
  TempDir dir;
  const std::string list = ListFile(dir);
  const std::string other = dir.Write("other.txt", Text("pdq " + std::string(64, '1') + "\n"));
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--index", list, "--index", other, "--pdq", kOriginal}, "--index"},
      {{"--index", list, "--pdq", kOriginal, "--pdq", kRotate90}, "--pdq"},
      {{"--index", list, "--pdq", kOriginal, "--radius", "3", "--radius", "30"},
       "--radius"},
      {{"--server", "https://127.0.0.1:1", "--server", "https://127.0.0.1:2", "--pdq",
        kOriginal},
       "--server"},
  };
  for (const auto& [args, option] : cases) {
    CliRun run = Match(args);
    EXPECT_EQ(run.status, kExitUsage) << option;
    EXPECT_EQ(run.err, "bantay match: " + option + " is given twice; it takes one value\n");
    EXPECT_EQ(run.out, "");
  }
}

TEST(MatchCommandTest, UsageErrors) {
  TempDir dir;
  const std::string list = ListFile(dir);
  EXPECT_EQ(Match({"--pdq", kOriginal}).status, kExitUsage);
  EXPECT_EQ(Match({"--index", list}).status, kExitUsage);
  EXPECT_EQ(Match({"--index", list, "--pdq", kOriginal, "--pdq-file", "-"}).status, kExitUsage);
  EXPECT_EQ(Match({"--index", list, "--pdq", kOriginal, "--radius", "65"}).status, kExitUsage);
  EXPECT_EQ(Match({"--index", list, "--pdq", kOriginal, "--radius", "-1"}).status, kExitUsage);
  EXPECT_EQ(Match({"--index", list, "--pdq", kOriginal, "--threads", "0"}).status, kExitUsage);
  EXPECT_EQ(Match({"--index", dir.path() + "/none", "--pdq", kOriginal}).status, kExitUsage);
  CliRun help = Match({"--help"});
  EXPECT_EQ(help.status, kExitOk);
  EXPECT_EQ(help.out.rfind("Usage: bantay match", 0), 0u);
}

}  // namespace
}  // namespace bantay::client
