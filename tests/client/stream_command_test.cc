// `bantay stream` without a server: the WebSocket frame header, the policy
// sent, the error of a server answer, the choice of frames by stream time,
// the video decoding with the reference videos' own timestamps, and the
// command line. Against the real server: tests/server/stream_cli_test.cc.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "bantay/client/cli.h"
#include "bantay/client/stream_client.h"
#include "cli_run.h"
#include "test_images.h"
#include "video_frames.h"

namespace bantay::client {
namespace {

using bantay::testing::CliRun;
using bantay::testing::RunCommand;
using bantay::testing::TempDir;
using bantay::testing::TestDataPath;

constexpr char kKey[] =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

TEST(FrameHeaderTest, LittleEndianFieldsAtTheirOffsets) {
  FrameHeader h;
  h.kind = FrameKind::kRawRgb;
  h.width = 0x01020304;
  h.height = 0x0a0b0c0d;
  h.sequence = 0xdeadbeef;
  h.t_ms = 0x1122334455667788ull;
  const std::array<uint8_t, 24> expected = {
      0x01, 0x02, 0x00, 0x00,  // version, kind, reserved
      0x04, 0x03, 0x02, 0x01,  // width
      0x0d, 0x0c, 0x0b, 0x0a,  // height
      0xef, 0xbe, 0xad, 0xde,  // sequence
      0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};  // t_ms
  EXPECT_EQ(EncodeFrameHeader(h), expected);

  Result<FrameHeader> back = DecodeFrameHeader(expected);
  ASSERT_TRUE(back.ok()) << back.error().ToString();
  EXPECT_EQ(back->kind, FrameKind::kRawRgb);
  EXPECT_EQ(back->width, 0x01020304u);
  EXPECT_EQ(back->height, 0x0a0b0c0du);
  EXPECT_EQ(back->sequence, 0xdeadbeefu);
  EXPECT_EQ(back->t_ms, 0x1122334455667788ull);
}

TEST(FrameHeaderTest, AnEncodedFrameHasNoSize) {
  FrameHeader h;
  h.sequence = 7;
  h.t_ms = 1000;
  const std::array<uint8_t, 24> expected = {1,    0,    0, 0, 0, 0, 0, 0,
                                            0,    0,    0, 0, 7, 0, 0, 0,
                                            0xe8, 0x03, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(EncodeFrameHeader(h), expected);
}

TEST(FrameHeaderTest, BadHeadersAreRefused) {
  std::array<uint8_t, 24> bytes = EncodeFrameHeader(FrameHeader{});
  Result<FrameHeader> r =
      DecodeFrameHeader(std::span<const uint8_t>(bytes).first(23));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "a frame header has 24 bytes");
  bytes[0] = 2;
  r = DecodeFrameHeader(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(), "frame header version 2, expected 1");
  bytes[0] = 1;
  bytes[3] = 1;
  r = DecodeFrameHeader(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(), "the frame header's reserved field is not 0");
}

TEST(StreamPolicyTest, OnlyTheFieldsSetAreSent) {
  EXPECT_EQ(StreamPolicyJson({}), "{}");
  StreamPolicy p;
  p.sample_interval_ms = 500;
  p.quality_min = 60;
  p.window = 5;
  p.k = 3;
  p.skip_distance = -1;
  p.trim_borders = false;
  p.dihedral = true;
  p.radius = 20;
  p.label = "cam \"7\"";
  EXPECT_EQ(
      StreamPolicyJson(p),
      R"({"sample_interval_ms":500,"quality_min":60,"window":5,"k":3,)"
      R"("skip_distance":-1,"trim_borders":false,"dihedral":true,"radius":20,)"
      R"("label":"cam \"7\""})");
}

TEST(ServerAnswerErrorTest, StatusAndTheServersErrorCode) {
  HttpResponse r;
  r.status = 400;
  r.body =
      R"({"error":{"code":"bad_request","message":"window: must be 1 to 100"}})";
  Error e = ServerAnswerError(r, "creating the stream session");
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(e.message(),
            "creating the stream session: HTTP 400 bad_request: window: must "
            "be 1 to 100");
  r.status = 401;
  r.body =
      R"({"error":{"code":"unauthorized","message":"a valid API key is required"}})";
  EXPECT_EQ(ServerAnswerError(r, "x").code(), ErrorCode::kPermissionDenied);
  r.status = 404;
  EXPECT_EQ(ServerAnswerError(r, "x").code(), ErrorCode::kNotFound);
  r.status = 429;
  EXPECT_EQ(ServerAnswerError(r, "x").code(), ErrorCode::kUnavailable);
  r.status = 503;
  EXPECT_EQ(ServerAnswerError(r, "x").code(), ErrorCode::kUnavailable);
  r.status = 500;
  r.body = "<html>oops</html>";
  e = ServerAnswerError(r, "x");
  EXPECT_EQ(e.code(), ErrorCode::kIo);
  EXPECT_EQ(e.message(), "x: HTTP 500");
}

TEST(FrameSamplerTest, FirstFrameThenOnePerInterval) {
  FrameSampler s(1000);
  std::vector<int64_t> taken;
  for (int64_t t :
       {0, 33, 967, 1000, 1033, 1999, 2000, 2001, 3500, 4499, 4500}) {
    if (s.Take(t)) taken.push_back(t);
  }
  EXPECT_EQ(taken, (std::vector<int64_t>{0, 1000, 2000, 3500, 4500}));
  FrameSampler every(0);
  taken.clear();
  for (int64_t t : {5, 5, 6}) {
    if (every.Take(t)) taken.push_back(t);
  }
  EXPECT_EQ(taken, (std::vector<int64_t>{5, 5, 6}));
}

struct Decoded {
  std::vector<int64_t> all;      // every frame's t
  std::vector<int64_t> sampled;  // the frames a 1 s sampler takes
  std::vector<uint8_t> first_jpeg;
};

Decoded DecodeAll(const std::string& name) {
  Decoded d;
  Result<std::unique_ptr<VideoFrameSource>> video =
      VideoFrameSource::Open(TestDataPath("vpdq/" + name), 1 << 24);
  EXPECT_TRUE(video.ok()) << video.error().ToString();
  if (!video.ok()) return d;
  FrameSampler sampler(1000);
  for (int64_t t = 0; (*video)->Next(&t);) {
    d.all.push_back(t);
    if (!sampler.Take(t)) continue;
    d.sampled.push_back(t);
    if (d.first_jpeg.empty()) {
      Result<std::vector<uint8_t>> jpeg = (*video)->EncodeJpeg(90);
      EXPECT_TRUE(jpeg.ok());
      if (jpeg.ok()) d.first_jpeg = std::move(*jpeg);
    }
  }
  EXPECT_EQ((*video)->frames_read(), static_cast<int64_t>(d.all.size()));
  return d;
}

// The container's timestamps: frame i at round(i * 1000 / 30) ms (both
// videos are 30 frames/s), as the reference hash files have them.
std::vector<int64_t> ThirtyFps(int frames) {
  std::vector<int64_t> t;
  for (int i = 0; i < frames; ++i) t.push_back(std::llround(i * 1000.0 / 30.0));
  return t;
}

TEST(VideoFrameSourceTest, ChairFramesWithTheirTimestamps) {
  const Decoded d = DecodeAll("chair-22-sd-grey-bar.mp4");
  EXPECT_EQ(d.all, ThirtyFps(673));
  std::vector<int64_t> seconds;
  for (int64_t t = 0; t <= 22000; t += 1000) seconds.push_back(t);
  EXPECT_EQ(d.sampled, seconds);
  const cv::Mat first = cv::imdecode(d.first_jpeg, cv::IMREAD_COLOR);
  EXPECT_EQ(first.cols, 480);
  EXPECT_EQ(first.rows, 720);
}

TEST(VideoFrameSourceTest, DoorknobFramesWithTheirTimestamps) {
  const Decoded d = DecodeAll("doorknob-hd-no-bar.mp4");
  EXPECT_EQ(d.all, ThirtyFps(120));
  EXPECT_EQ(d.sampled, (std::vector<int64_t>{0, 1000, 2000, 3000}));
  const cv::Mat first = cv::imdecode(d.first_jpeg, cv::IMREAD_COLOR);
  EXPECT_EQ(first.cols, 1280);
  EXPECT_EQ(first.rows, 720);
}

// A truncated MP4 (its sample tables declare 120 frames) ends early: the
// source says so once its frames run out, so that bantay stream does not
// call a stream of 52 frames clean as if it had seen the whole video.
TEST(VideoFrameSourceTest, ATruncatedVideoEndsEarly) {
  TempDir dir;
  const std::vector<uint8_t> doorknob =
      bantay::testing::ReadTestFile("vpdq/doorknob-hd-no-bar.mp4");
  const std::string cut = dir.Write(
      "cut.mp4",
      std::vector<uint8_t>(doorknob.begin(), doorknob.begin() + 240000));
  Result<std::unique_ptr<VideoFrameSource>> video =
      VideoFrameSource::Open(cut, 1 << 24);
  ASSERT_TRUE(video.ok()) << video.error().ToString();
  for (int64_t t = 0; (*video)->Next(&t);) {
  }
  EXPECT_EQ((*video)->frames_read(), 52);
  const Status end = (*video)->EndStatus();
  ASSERT_FALSE(end.ok());
  EXPECT_EQ(end.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(end.error().message(),
            cut + ": the video ends early: 52 of 120 frames decoded");

  Result<std::unique_ptr<VideoFrameSource>> whole = VideoFrameSource::Open(
      TestDataPath("vpdq/doorknob-hd-no-bar.mp4"), 1 << 24);
  ASSERT_TRUE(whole.ok());
  for (int64_t t = 0; (*whole)->Next(&t);) {
  }
  EXPECT_EQ((*whole)->frames_read(), 120);
  EXPECT_TRUE((*whole)->EndStatus().ok());
}

TEST(VideoFrameSourceTest, WhatIsNotAVideoIsRefused) {
  TempDir dir;
  dir.Write("notes.txt", std::vector<uint8_t>(100, 'a'));
  Result<std::unique_ptr<VideoFrameSource>> v =
      VideoFrameSource::Open(dir.path() + "/notes.txt", 1 << 24);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code(), ErrorCode::kUnsupportedFormat);
  v = VideoFrameSource::Open(dir.path() + "/missing.mp4", 1 << 24);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(v.error().message(), dir.path() + "/missing.mp4: no such file");
  v = VideoFrameSource::Open(TestDataPath("vpdq/doorknob-hd-no-bar.mp4"),
                             1280 * 720 - 1);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code(), ErrorCode::kTooLarge);
}

TEST(StreamClientTest, BadUrlsAndUnreachableServers) {
  ClientOptions o;
  o.url = "ftp://127.0.0.1";
  o.api_key = kKey;
  Result<std::unique_ptr<StreamClient>> c = StreamClient::Open(o, {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(c.error().message(),
            "bad server URL: the scheme must be https or http");
  o.url = "https://127.0.0.1:1";
  c = StreamClient::Open(o, {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(c.error().message(),
            "cannot connect to 127.0.0.1:1: connection refused");
  o.api_key = "abc";
  c = StreamClient::Open(o, {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message(), "the API key must be 64 hexadecimal digits");
}

class StreamCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name :
         {"BANTAY_API_KEY", "BANTAY_API_KEY_FILE", "BANTAY_CA_FILE",
          "BANTAY_CLIENT_CERT_FILE", "BANTAY_CLIENT_KEY_FILE"}) {
      unsetenv(name);
    }
    std::ofstream(dir_.path() + "/key") << kKey << "\n";
  }
  CliRun Stream(std::vector<std::string> args) {
    return RunCommand(RunStreamCommand, args);
  }
  std::vector<std::string> With(std::vector<std::string> args) {
    for (const char* a :
         {"--server", "https://127.0.0.1:1", "--api-key-file"}) {
      args.push_back(a);
    }
    args.push_back(dir_.path() + "/key");
    return args;
  }
  TempDir dir_;
};

TEST_F(StreamCommandTest, Help) {
  CliRun run = Stream({"--help"});
  EXPECT_EQ(run.status, kExitOk);
  EXPECT_TRUE(run.out.starts_with("Usage: bantay stream FILE --server URL"))
      << run.out;
  EXPECT_NE(run.out.find("4 it reached \"match\""), std::string::npos);
  EXPECT_EQ(run.err, "");
}

TEST_F(StreamCommandTest, UsageErrors) {
  const std::string video = TestDataPath("vpdq/doorknob-hd-no-bar.mp4");
  struct Case {
    std::vector<std::string> args;
    std::string first_line;
  };
  const std::vector<Case> cases = {
      {{video}, "bantay stream: give one video FILE and --server URL"},
      {With({}), "bantay stream: give one video FILE and --server URL"},
      {With({video, video}),
       "bantay stream: give one video FILE and --server URL"},
      {With({video, "--k", "0"}),
       "bantay stream: --k must be an integer from 1 to 100"},
      {With({video, "--window", "101"}),
       "bantay stream: --window must be an integer from 1 to 100"},
      {With({video, "--quality", "x"}),
       "bantay stream: --quality must be an integer from 0 to 100"},
      {With({video, "--skip-distance", "-2"}),
       "bantay stream: --skip-distance must be an integer from -1 to 256"},
      {With({video, "--jpeg-quality", "0"}),
       "bantay stream: --jpeg-quality must be an integer from 1 to 100"},
      {With({video, "--every", "-1"}),
       "bantay stream: --every must be a number of seconds from 0 to 3600"},
      {With({video, "--every", "1s"}),
       "bantay stream: --every must be a number of seconds from 0 to 3600"},
      {With({video, "--k", "3", "--window", "2"}),
       "bantay stream: --k must not be over --window"},
      {With({video, "--fast"}),
       "bantay stream: unknown or incomplete option '--fast'"},
      {With({video, "--k", "1", "--k", "2"}),
       "bantay stream: --k is given twice; it takes one value"},
      {With({video, "--server", "https://127.0.0.1:2"}),
       "bantay stream: --server is given twice; it takes one value"},
      {{video, "--server", "https://127.0.0.1:1", "--label"},
       "bantay stream: unknown or incomplete option '--label'"},
      {{video, "--server", "https://127.0.0.1:1"},
       "bantay stream: no API key: give --api-key-file FILE (or set "
       "BANTAY_API_KEY_FILE or "
       "BANTAY_API_KEY)"},
  };
  for (const Case& c : cases) {
    CliRun run = Stream(c.args);
    EXPECT_EQ(run.status, kExitUsage) << c.first_line;
    EXPECT_EQ(run.err.substr(0, run.err.find('\n')), c.first_line);
    EXPECT_EQ(run.out, "");
  }
}

TEST_F(StreamCommandTest, InputAndConnectionErrorsExitOne) {
  CliRun run = Stream(With({dir_.path() + "/missing.mp4"}));
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(run.err,
            "bantay stream: " + dir_.path() + "/missing.mp4: no such file\n");
  EXPECT_EQ(run.out, "");

  run = Stream(With({TestDataPath("vpdq/doorknob-hd-no-bar.mp4")}));
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(
      run.err,
      "bantay stream: cannot connect to 127.0.0.1:1: connection refused\n");
  EXPECT_EQ(run.out, "");

  run = Stream({TestDataPath("vpdq/doorknob-hd-no-bar.mp4"), "--server",
                "https://127.0.0.1:1/v1", "--api-key-file",
                dir_.path() + "/key"});
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(
      run.err,
      "bantay stream: bad server URL: no path, query or fragment is allowed\n");
}

}  // namespace
}  // namespace bantay::client
