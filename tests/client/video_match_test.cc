// `bantay match --video | --video-hashes ... --vpdq REF`: whole-video matching
// on the reference videos and hash files in tests/data/vpdq.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>
#include <vector>

#include "bantay/client/cli.h"
#include "cli_run.h"
#include "test_images.h"

namespace bantay::client {
namespace {

namespace json = boost::json;
using bantay::testing::CliRun;
using bantay::testing::TempDir;

const std::string kDir = std::string(BANTAY_TEST_DATA) + "/vpdq/";

CliRun Match(const std::vector<std::string>& args) {
  return bantay::testing::RunCommand(RunMatchCommand, args);
}

std::vector<uint8_t> Text(const std::string& s) { return {s.begin(), s.end()}; }

// The line for one compared file, as the command prints it.
std::string Line(const std::string& query, const std::string& compared,
                 int query_hashes, int compared_hashes,
                 const std::string& query_percent,
                 const std::string& compared_percent, bool match) {
  return "{\"query\":\"" + query + "\",\"compared\":\"" + compared +
         "\",\"query_hashes\":" + std::to_string(query_hashes) +
         ",\"compared_hashes\":" + std::to_string(compared_hashes) +
         ",\"query_match_percent\":" + query_percent +
         ",\"compared_match_percent\":" + compared_percent +
         ",\"match\":" + (match ? "true" : "false") + "}\n";
}

TEST(VideoMatchTest, AnEditedCopyMatchesItsOriginalAndNotAnUnrelatedVideo) {
  // chair-22-sd-grey-bar is a greyscale edit of chair-orig-22-sd-bar, with
  // the same bars; doorknob is unrelated. The -128x128 file hashes the same
  // video scaled down first, and still matches every frame.
  const std::string q = kDir + "chair-22-sd-grey-bar.txt";
  const CliRun run =
      Match({"--video-hashes", q, "--vpdq", kDir + "chair-orig-22-sd-bar.txt",
             "--vpdq", kDir + "doorknob-hd-no-bar.txt", "--vpdq",
             kDir + "chair-22-sd-grey-bar-128x128.txt"});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(
      run.out,
      Line(q, kDir + "chair-orig-22-sd-bar.txt", 656, 662, "100", "100", true) +
          Line(q, kDir + "doorknob-hd-no-bar.txt", 656, 60, "0", "0", false) +
          Line(q, kDir + "chair-22-sd-grey-bar-128x128.txt", 656, 660, "100",
               "100", true));
}

TEST(VideoMatchTest, AVideoFileIsHashedInMemoryAndCompared) {
  const std::string video = kDir + "chair-22-sd-grey-bar.mp4";
  const CliRun run =
      Match({"--video", video, "--vpdq", kDir + "chair-orig-22-sd-bar.txt"});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(run.out, Line(video, kDir + "chair-orig-22-sd-bar.txt", 659, 662,
                          "100", "100", true));
}

TEST(VideoMatchTest, TrimmedFramesMatchTheOriginalWithoutBarsOnly) {
  // The original as published without bars (hd-no-bar) matches only once
  // the bars are trimmed; the one with bars only untrimmed.
  const std::string video = kDir + "chair-22-sd-grey-bar.mp4";
  const std::vector<std::string> refs = {
      "--vpdq", kDir + "chair-orig-22-hd-no-bar.txt", "--vpdq",
      kDir + "chair-orig-22-sd-bar.txt"};
  std::vector<std::string> args = {"--video", video};
  args.insert(args.end(), refs.begin(), refs.end());
  CliRun run = Match(args);
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(run.out, Line(video, kDir + "chair-orig-22-hd-no-bar.txt", 659, 662,
                          "0", "0", false) +
                         Line(video, kDir + "chair-orig-22-sd-bar.txt", 659,
                              662, "100", "100", true));
  args.push_back("--trim-borders");
  run = Match(args);
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(run.out, Line(video, kDir + "chair-orig-22-hd-no-bar.txt", 659, 662,
                          "100", "100", true) +
                         Line(video, kDir + "chair-orig-22-sd-bar.txt", 659,
                              662, "0", "0", false));
}

TEST(VideoMatchTest, ThresholdsAreInclusiveAndBothMustBeReached) {
  // One frame a second of the 4 s doorknob video: 2 hashes of quality >= 50,
  // both among the reference's 60, which they cover 10% of.
  const std::string video = kDir + "doorknob-hd-no-bar.mp4";
  const std::string ref = kDir + "doorknob-hd-no-bar.txt";
  CliRun run = Match({"--video", video, "--every", "1", "--vpdq", ref});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(run.out, Line(video, ref, 2, 60, "100", "10", true));
  run = Match({"--video", video, "--every", "1", "--vpdq", ref,
               "--compared-threshold", "10"});
  EXPECT_EQ(run.out, Line(video, ref, 2, 60, "100", "10", true));
  run = Match({"--video", video, "--every", "1", "--vpdq", ref,
               "--compared-threshold", "10.5"});
  EXPECT_EQ(run.out, Line(video, ref, 2, 60, "100", "10", false));
  run = Match(
      {"--video", video, "--every", "1", "--vpdq", ref, "--quality", "101"});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_EQ(run.err,
            "bantay match: --quality must be an integer from 0 to 100\n");
}

TEST(VideoMatchTest, NothingComparableIsNoMatch) {
  // Every frame under the quality threshold: no hash is left on either side,
  // vPDQ says 0 and 0, and thresholds of 0 must not turn that into a match.
  TempDir dir;
  const std::string q =
      dir.Write("dim.txt", Text("0,10,"
                                "25ad26b96f58d2491a79f80f07f2c9936fe6083dfb4983"
                                "d8a4a36db40034df54,0.000\n"
                                "1,49,"
                                "a5ad26b96f58d2491a79f80f07f2c1936fe6083dfb4983"
                                "d8a4a36db40034df54,0.033\n"));
  CliRun run =
      Match({"--video-hashes", q, "--vpdq", q, "--query-threshold", "0"});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(run.out, Line(q, q, 0, 0, "0", "0", false));
  // At quality 49 one hash on each side is comparable, and matches.
  run = Match({"--video-hashes", q, "--vpdq", q, "--quality", "49"});
  EXPECT_EQ(run.out, Line(q, q, 1, 1, "100", "100", true));
}

TEST(VideoMatchTest,
     ADirectoryIsComparedFileByFileInByteOrderAndBadFilesAreReported) {
  TempDir dir;
  const std::string good = kDir + "doorknob-hd-no-bar.txt";
  const std::string q = kDir + "chair-22-sd-grey-bar.txt";
  dir.Write("b-bad.txt", Text("0,100,"
                              "25ad26b96f58d2491a79f80f07f2c9936fe6083dfb4983d8"
                              "a4a36db40034df54,0.000\n"
                              "\n"
                              "1,100,not-a-hash,0.033\n"));
  dir.Write("a-empty.txt", Text(""));
  dir.Write("c-ignored.csv", Text("not a hash file"));
  const CliRun run = Match({"--video-hashes", q, "--vpdq", dir.path(), "--vpdq",
                            good, "--vpdq", dir.path() + "/missing.txt"});
  EXPECT_EQ(run.status, kExitSomeFailed);
  ASSERT_EQ(run.lines.size(), 4u) << run.out;
  EXPECT_EQ(run.lines[0].at("compared").as_string(),
            dir.path() + "/a-empty.txt");
  EXPECT_EQ(run.lines[0].at("compared_hashes"), 0);
  EXPECT_EQ(run.lines[0].at("match"), false);
  EXPECT_EQ(run.lines[1].at("compared").as_string(), dir.path() + "/b-bad.txt");
  EXPECT_EQ(run.lines[1].at("error").at("code"), "invalid_argument");
  const std::string message(run.lines[1].at("error").at("message").as_string());
  EXPECT_EQ(message.rfind(dir.path() + "/b-bad.txt:3: ", 0), 0u) << message;
  EXPECT_EQ(run.lines[2].at("compared").as_string(), good);
  EXPECT_EQ(run.lines[2].at("match"), false);
  EXPECT_EQ(run.lines[3].at("compared").as_string(),
            dir.path() + "/missing.txt");
  EXPECT_EQ(run.lines[3].at("error").at("code"), "not_found");
}

TEST(VideoMatchTest, UsageErrors) {
  const std::string q = kDir + "chair-22-sd-grey-bar.txt";
  const std::string v = kDir + "doorknob-hd-no-bar.mp4";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--video", v, "--video-hashes", q, "--vpdq", q},
       "give exactly one of --video and --video-hashes"},
      {{"--video", v}, "give at least one --vpdq hash file or directory"},
      {{"--video-hashes", q, "--vpdq", q, "--every", "1"},
       "--every, --trim-borders and --max-frames apply to --video only"},
      {{"--video", v, "--vpdq", q, "--every", "0"},
       "--every needs a positive number of seconds"},
      {{"--video", v, "--vpdq", q, "--distance", "257"},
       "--distance must be an integer from 0 to 256"},
      {{"--video", v, "--vpdq", q, "--query-threshold", "100.5"},
       "--query-threshold must be a percentage from 0 to 100"},
      {{"--video", v, "--vpdq", q, "--compared-threshold", "x"},
       "--compared-threshold must be a percentage from 0 to 100"},
      {{"--video", v, "--vpdq"}, "unknown or incomplete option '--vpdq'"},
      {{"--video", v, "--video", v, "--vpdq", q},
       "--video is given twice; it takes one value"},
      {{"--video-hashes", q, "--vpdq", q, "--distance", "3", "--distance",
        "31"},
       "--distance is given twice; it takes one value"},
  };
  for (const auto& [args, message] : cases) {
    const CliRun run = Match(args);
    EXPECT_EQ(run.status, kExitUsage) << message;
    EXPECT_EQ(run.err, "bantay match: " + message + "\n");
    EXPECT_EQ(run.out, "");
  }
}

TEST(VideoMatchTest, AnUnreadableQueryIsAUsageLevelFailure) {
  TempDir dir;
  const std::string not_video =
      dir.Write("clip.mp4", Text("this is not a video"));
  CliRun run =
      Match({"--video", not_video, "--vpdq", kDir + "doorknob-hd-no-bar.txt"});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_EQ(run.err.rfind("bantay match: " + not_video + ": ", 0), 0u)
      << run.err;
  EXPECT_EQ(run.out, "");
  run = Match({"--video-hashes", dir.path() + "/none.txt", "--vpdq",
               kDir + "doorknob-hd-no-bar.txt"});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_EQ(run.err, "bantay match: " + dir.path() +
                         "/none.txt: not a readable regular file\n");
}

TEST(VideoMatchTest, HelpNamesTheOptions) {
  const CliRun run = Match({"--video", "--help"});
  EXPECT_EQ(run.status, kExitOk);
  EXPECT_NE(run.out.find("--compared-threshold P"), std::string::npos);
  EXPECT_NE(run.out.find("--trim-borders"), std::string::npos);
}

}  // namespace
}  // namespace bantay::client
