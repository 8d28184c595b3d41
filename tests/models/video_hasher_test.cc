#include "bantay/models/video_hasher.h"

#include <gtest/gtest.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "test_images.h"

namespace bantay::models {
namespace {

using testing::Encode;
using testing::MakePattern;
using testing::ReadTestFile;
using testing::TempDir;
using testing::TestDataPath;

// Frame hashes of the reference vPDQ, from tests/data/vpdq (see its README).
std::vector<std::string> ReferenceLines(const std::string& name) {
  std::ifstream in(TestDataPath("vpdq/" + name));
  EXPECT_TRUE(in.good()) << name;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<VideoFrameHash> Reference(const std::string& name) {
  std::vector<VideoFrameHash> frames;
  for (const std::string& line : ReferenceLines(name)) {
    Result<VideoFrameHash> f = ParseVideoFrameHash(line);
    EXPECT_TRUE(f.ok()) << line;
    if (f.ok()) frames.push_back(*f);
  }
  return frames;
}

VideoHashes HashOk(const std::string& path, const VideoHashOptions& options = {}) {
  Result<VideoHashes> h = HashVideoFile(path, options);
  EXPECT_TRUE(h.ok()) << h.error().ToString();
  return h.ok() ? *h : VideoHashes{};
}

std::string Timestamp(const std::string& line) { return line.substr(line.rfind(',') + 1); }

struct Agreement {
  int max_bits = 0;       // over the frames of reference quality >= min_quality
  double mean_bits = 0;
  int frames = 0;
  int max_quality_difference = 0;  // over all frames
};

// Frame by frame against the reference file: the same frame numbers and
// timestamp text, and the Hamming distances of the hashes.
Agreement Compare(const VideoHashes& ours, const std::string& reference_file,
                  int min_quality) {
  const std::vector<std::string> lines = ReferenceLines(reference_file);
  const std::vector<VideoFrameHash> reference = Reference(reference_file);
  Agreement a;
  EXPECT_EQ(ours.frames.size(), reference.size());
  int64_t total = 0;
  for (size_t i = 0; i < std::min(ours.frames.size(), reference.size()); ++i) {
    const VideoFrameHash& f = ours.frames[i];
    EXPECT_EQ(f.frame_number, reference[i].frame_number) << i;
    EXPECT_EQ(Timestamp(FormatVideoFrameHash(f)), Timestamp(lines[i])) << i;
    a.max_quality_difference =
        std::max(a.max_quality_difference, std::abs(f.quality - reference[i].quality));
    if (reference[i].quality < min_quality) continue;
    const int d = HammingDistance(f.pdq, reference[i].pdq);
    a.max_bits = std::max(a.max_bits, d);
    total += d;
    ++a.frames;
  }
  if (a.frames > 0) a.mean_bits = static_cast<double>(total) / a.frames;
  std::cout << reference_file << ": " << a.frames << " frames of quality >= " << min_quality
            << ", max " << a.max_bits << " bits, mean " << a.mean_bits << " bits\n";
  return a;
}

// PDQ's interoperability rule: within 10 bits of the reference for
// quality >= 80.
constexpr int kInteropBits = 10;

const std::string kDoorknob = TestDataPath("vpdq/doorknob-hd-no-bar.mp4");
const std::string kPadded = TestDataPath("vpdq/test-padded-dimensions.mp4");
const std::string kChairGrey = TestDataPath("vpdq/chair-22-sd-grey-bar.mp4");

// --- agreement with the reference vPDQ ----------------------------------------

TEST(VideoHasherTest, DoorknobAgreesWithReference) {
  const VideoHashes h = HashOk(kDoorknob);
  EXPECT_EQ(h.width, 1280);
  EXPECT_EQ(h.height, 720);
  EXPECT_EQ(h.fps, 30.0);
  EXPECT_EQ(h.frames_decoded, 120);
  EXPECT_EQ(h.frames_declared, 120);
  EXPECT_FALSE(h.truncated);
  EXPECT_FALSE(h.incomplete);
  ASSERT_EQ(h.frames.size(), 120u);
  const Agreement a = Compare(h, "doorknob-hd-no-bar.txt", 80);
  EXPECT_EQ(a.frames, 28);
  // Measured: max 4, mean 1.93 bits. Half the video is dark (quality under
  // 50), where hashes are noise and differ by up to 76 bits.
  EXPECT_LE(a.max_bits, kInteropBits);
  EXPECT_LE(a.max_quality_difference, 1);
}

TEST(VideoHasherTest, PaddedDimensionsAreIdenticalToReference) {
  // 1080 is not a multiple of the codec's 16-pixel blocks: the decoder
  // crops the coded frame, and the padding must not reach the hash.
  const VideoHashes h = HashOk(kPadded);
  EXPECT_EQ(h.width, 1080);
  EXPECT_EQ(h.height, 1080);
  EXPECT_EQ(h.frames_decoded, 150);
  const std::vector<std::string> lines = ReferenceLines("test-padded-dimensions.txt");
  ASSERT_EQ(h.frames.size(), 150u);
  ASSERT_EQ(lines.size(), 150u);
  const Agreement a = Compare(h, "test-padded-dimensions.txt", 80);
  EXPECT_EQ(a.frames, 150);
  EXPECT_LE(a.max_bits, kInteropBits);
  // On this video the decoded pixels are the reference's: every line is
  // byte for byte the reference's.
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(FormatVideoFrameHash(h.frames[i]), lines[i]);
  }
}

TEST(VideoHasherTest, GreyBarChairAgreesWithReference) {
  const VideoHashes h = HashOk(kChairGrey);
  EXPECT_EQ(h.width, 480);
  EXPECT_EQ(h.height, 720);
  EXPECT_EQ(h.frames_decoded, 673);
  const Agreement a = Compare(h, "chair-22-sd-grey-bar.txt", 80);
  EXPECT_EQ(a.frames, 673);
  EXPECT_LE(a.max_bits, kInteropBits);  // measured: max 6, mean 1.29
}

TEST(VideoHasherTest, DownscaledFramesAgreeWithReference128) {
  VideoHashOptions options;
  options.downscale_to = 128;
  const VideoHashes chair = HashOk(kChairGrey, options);
  EXPECT_EQ(chair.width, 480);  // the video's own size
  const Agreement a = Compare(chair, "chair-22-sd-grey-bar-128x128.txt", 80);
  EXPECT_EQ(a.frames, 673);
  EXPECT_LE(a.max_bits, kInteropBits);  // measured: max 6, mean 1.75

  const VideoHashes door = HashOk(kDoorknob, options);
  // Measured: frames of quality >= 80 max 16 (one frame of quality 85 next
  // to the dark part), mean 3.29; of quality >= 90 max 8.
  const Agreement b = Compare(door, "doorknob-hd-no-bar-128x128.txt", 90);
  EXPECT_EQ(b.frames, 28);
  EXPECT_LE(b.max_bits, kInteropBits);
}

// --- sampling and limits ---------------------------------------------------------

TEST(VideoHasherTest, SecondsPerHashSamplesEveryNthFrame) {
  const VideoHashes all = HashOk(kDoorknob);
  ASSERT_EQ(all.frames.size(), 120u);
  VideoHashOptions options;
  options.seconds_per_hash = 1.0;  // 30 fps: frames 0, 30, 60, 90
  VideoHashes h = HashOk(kDoorknob, options);
  EXPECT_EQ(h.frames_decoded, 120);
  ASSERT_EQ(h.frames.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(h.frames[i].frame_number, static_cast<int64_t>(30 * i));
    EXPECT_EQ(h.frames[i].timestamp, static_cast<double>(i));
    EXPECT_EQ(h.frames[i].pdq, all.frames[30 * i].pdq);
    EXPECT_EQ(h.frames[i].quality, all.frames[30 * i].quality);
  }
  options.seconds_per_hash = 0.5;  // every 15th frame
  h = HashOk(kDoorknob, options);
  ASSERT_EQ(h.frames.size(), 8u);
  EXPECT_EQ(h.frames[7].frame_number, 105);
  EXPECT_EQ(FormatVideoFrameHash(h.frames[7]).substr(
                FormatVideoFrameHash(h.frames[7]).rfind(',')),
            ",3.500");
  // Less than a frame: every frame, as vPDQ does.
  options.seconds_per_hash = 0.01;
  EXPECT_EQ(HashOk(kDoorknob, options).frames.size(), 120u);
  // More than the video: only the first frame.
  options.seconds_per_hash = 60;
  h = HashOk(kDoorknob, options);
  ASSERT_EQ(h.frames.size(), 1u);
  EXPECT_EQ(h.frames[0].frame_number, 0);
}

TEST(VideoHasherTest, MaxFramesTruncates) {
  VideoHashOptions options;
  options.max_frames = 10;
  VideoHashes h = HashOk(kDoorknob, options);
  EXPECT_EQ(h.frames_decoded, 10);
  EXPECT_TRUE(h.truncated);
  EXPECT_FALSE(h.incomplete);
  ASSERT_EQ(h.frames.size(), 10u);
  EXPECT_EQ(h.frames[9].frame_number, 9);
  // Exactly the video's length is not a truncation.
  options.max_frames = 120;
  h = HashOk(kDoorknob, options);
  EXPECT_EQ(h.frames_decoded, 120);
  EXPECT_FALSE(h.truncated);
  options.max_frames = 121;
  EXPECT_FALSE(HashOk(kDoorknob, options).truncated);
  // With sampling, the limit counts decoded frames, not hashed ones.
  options.max_frames = 31;
  options.seconds_per_hash = 1;
  h = HashOk(kDoorknob, options);
  EXPECT_EQ(h.frames_decoded, 31);
  EXPECT_EQ(h.frames.size(), 2u);
  EXPECT_TRUE(h.truncated);
}

TEST(VideoHasherTest, FrameSizeLimitIsCheckedBeforeDecoding) {
  VideoHashOptions options;
  options.max_pixels_per_frame = 1280 * 720 - 1;
  Result<VideoHashes> h = HashVideoFile(kDoorknob, options);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code(), ErrorCode::kTooLarge);
  EXPECT_EQ(h.error().message(),
            kDoorknob + ": video declares 1280x720 pixels a frame, over the limit of 921599");
  options.max_pixels_per_frame = 1280 * 720;
  options.max_frames = 1;
  EXPECT_EQ(HashOk(kDoorknob, options).frames.size(), 1u);
}

TEST(VideoHasherTest, InvalidOptions) {
  VideoHashOptions options;
  options.seconds_per_hash = -1;
  EXPECT_EQ(HashVideoFile(kDoorknob, options).error().code(), ErrorCode::kInvalidArgument);
  options = {};
  options.seconds_per_hash = NAN;
  EXPECT_EQ(HashVideoFile(kDoorknob, options).error().code(), ErrorCode::kInvalidArgument);
  options = {};
  options.max_frames = -1;
  EXPECT_EQ(HashVideoFile(kDoorknob, options).error().code(), ErrorCode::kInvalidArgument);
  options = {};
  options.downscale_to = -128;
  EXPECT_EQ(HashVideoFile(kDoorknob, options).error().code(), ErrorCode::kInvalidArgument);
  options = {};
  options.max_pixels_per_frame = 0;
  EXPECT_EQ(HashVideoFile(kDoorknob, options).error().code(), ErrorCode::kInvalidArgument);
}

// --- damaged and wrong files -------------------------------------------------------

std::vector<uint8_t> Head(const std::vector<uint8_t>& bytes, size_t n) {
  return {bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n)};
}

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

ErrorCode CodeOf(const std::string& path) {
  Result<VideoHashes> h = HashVideoFile(path);
  EXPECT_FALSE(h.ok()) << path;
  return h.ok() ? ErrorCode::kInternal : h.error().code();
}

TEST(VideoHasherTest, TruncatedMp4WithIndexFirstGivesItsFramesAndSaysIncomplete) {
  TempDir dir;
  const auto bytes = ReadTestFile("vpdq/doorknob-hd-no-bar.mp4");
  // The index (moov) comes before the frames here, so half the file still
  // opens and decodes up to the cut.
  const std::string half = dir.Write("half.mp4", Head(bytes, bytes.size() / 2));
  const VideoHashes h = HashOk(half);
  EXPECT_EQ(h.frames_declared, 120);
  EXPECT_EQ(h.frames_decoded, 51);
  EXPECT_TRUE(h.incomplete);
  EXPECT_FALSE(h.truncated);
  const VideoHashes all = HashOk(kDoorknob);
  ASSERT_EQ(h.frames.size(), 51u);
  for (size_t i = 0; i < h.frames.size(); ++i) EXPECT_EQ(h.frames[i].pdq, all.frames[i].pdq);
}

TEST(VideoHasherTest, TruncatedMp4WithIndexLastDoesNotOpen) {
  TempDir dir;
  const auto bytes = ReadTestFile("vpdq/test-padded-dimensions.mp4");
  const std::string half = dir.Write("half.mp4", Head(bytes, bytes.size() / 2));
  EXPECT_EQ(CodeOf(half), ErrorCode::kUnsupportedFormat);
}

TEST(VideoHasherTest, DamagedFramesGiveCorruptData) {
  TempDir dir;
  const auto bytes = ReadTestFile("vpdq/doorknob-hd-no-bar.mp4");
  // The index intact (ftyp, moov, free: 5725 bytes), the coded frames
  // replaced by random bytes or cut off.
  std::vector<uint8_t> garbled = Head(bytes, 5733);
  const auto noise = RandomBytes(bytes.size() - garbled.size(), 7);
  garbled.insert(garbled.end(), noise.begin(), noise.end());
  EXPECT_EQ(CodeOf(dir.Write("garbled.mp4", garbled)), ErrorCode::kCorruptData);
  EXPECT_EQ(CodeOf(dir.Write("no-frames.mp4", Head(bytes, 5725))), ErrorCode::kCorruptData);
}

TEST(VideoHasherTest, RandomBytesBehindAnMp4HeaderDoNotOpen) {
  TempDir dir;
  const std::string ftyp("\x00\x00\x00\x20" "ftypisom\x00\x00\x02\x00" "isomiso2avc1mp41", 32);
  std::vector<uint8_t> bytes(ftyp.begin(), ftyp.end());
  const auto noise = RandomBytes(100000, 11);
  bytes.insert(bytes.end(), noise.begin(), noise.end());
  const std::string path = dir.Write("random.mp4", bytes);
  ASSERT_EQ(DetectVideoFormat(bytes), VideoFormat::kMp4);
  Result<VideoHashes> h = HashVideoFile(path);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code(), ErrorCode::kUnsupportedFormat);
  EXPECT_EQ(h.error().message(),
            path + ": no video stream that can be decoded (damaged mp4 file, or a codec "
                   "FFmpeg does not decode)");
}

TEST(VideoHasherTest, FilesThatAreNotVideos) {
  TempDir dir;
  const std::string png = dir.Write("picture.mp4", Encode(MakePattern(64, 48), ".png"));
  Result<VideoHashes> h = HashVideoFile(png);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code(), ErrorCode::kUnsupportedFormat);
  EXPECT_EQ(h.error().message(),
            png + ": not a video container Bantay reads (MP4/QuickTime, Matroska/WebM, "
                  "AVI, MPEG-TS, MPEG-PS, FLV, ASF)");
  EXPECT_EQ(CodeOf(dir.Write("empty.mp4", {})), ErrorCode::kUnsupportedFormat);
  // An HLS playlist would make FFmpeg open the files or URLs it names.
  const std::string playlist = "#EXTM3U\n#EXTINF:10,\nhttp://example.invalid/a.ts\n";
  EXPECT_EQ(CodeOf(dir.Write("list.m3u8", {playlist.begin(), playlist.end()})),
            ErrorCode::kUnsupportedFormat);
  EXPECT_EQ(CodeOf(dir.path()), ErrorCode::kUnsupportedFormat);
}

TEST(VideoHasherTest, MissingFile) {
  TempDir dir;
  Result<VideoHashes> h = HashVideoFile(dir.path() + "/none.mp4");
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(h.error().message(), dir.path() + "/none.mp4: no such file");
  EXPECT_EQ(CodeOf(kDoorknob + "/x"), ErrorCode::kNotFound);
}

// Root reads any file: then the call runs in a child process that has
// become the user nobody; the child's exit status carries the error code.
TEST(VideoHasherTest, UnreadableFile) {
  TempDir dir;
  ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0);
  const std::string path = dir.Write("locked.mp4", ReadTestFile("vpdq/doorknob-hd-no-bar.mp4"));
  std::filesystem::permissions(path, std::filesystem::perms::none);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (geteuid() == 0 && (setgroups(0, nullptr) != 0 || setgid(65534) != 0 ||
                           setuid(65534) != 0)) {
      _exit(100);
    }
    Result<VideoHashes> h = HashVideoFile(path);
    _exit(h.ok() ? 101 : static_cast<int>(h.error().code()));
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), static_cast<int>(ErrorCode::kPermissionDenied));
}

TEST(VideoHasherTest, NameThatLooksLikeAUrlIsAFile) {
  // "http://host/v.mp4" relative to the working directory is the file
  // http:/host/v.mp4; FFmpeg must read that file, not go to the network.
  TempDir dir;
  dir.Write("http:/example.invalid/v.mp4", ReadTestFile("vpdq/test-padded-dimensions.mp4"));
  const std::filesystem::path before = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  VideoHashOptions options;
  options.max_frames = 2;
  Result<VideoHashes> h = HashVideoFile("http://example.invalid/v.mp4", options);
  std::filesystem::current_path(before);
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  EXPECT_EQ(h->frames.size(), 2u);
}

TEST(VideoHasherTest, ConcurrentCallsAgree) {
  VideoHashOptions options;
  options.max_frames = 40;
  const VideoHashes alone = HashOk(kPadded, options);
  std::vector<VideoHashes> results(3);
  std::vector<std::thread> threads;
  for (auto& r : results) {
    threads.emplace_back([&r, &options] { r = HashOk(kPadded, options); });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) {
    ASSERT_EQ(r.frames.size(), alone.frames.size());
    for (size_t i = 0; i < r.frames.size(); ++i) EXPECT_EQ(r.frames[i].pdq, alone.frames[i].pdq);
  }
}

// --- container signatures ------------------------------------------------------------

std::vector<uint8_t> Bytes(std::string_view s) { return {s.begin(), s.end()}; }

TEST(DetectVideoFormatTest, EachContainer) {
  using B = std::vector<uint8_t>;
  EXPECT_EQ(DetectVideoFormat(ReadTestFile("vpdq/doorknob-hd-no-bar.mp4")), VideoFormat::kMp4);
  EXPECT_EQ(DetectVideoFormat(Bytes(std::string("\0\0\0\x14" "ftypqt  ", 12))), VideoFormat::kMp4);
  EXPECT_EQ(DetectVideoFormat(Bytes(std::string("\0\0\0\x08wide\0\0\0\0mdat", 16))),
            VideoFormat::kMp4);
  EXPECT_EQ(DetectVideoFormat(Bytes(std::string("\0\0\x01\0moov", 8))), VideoFormat::kMp4);
  EXPECT_EQ(DetectVideoFormat(B{0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x86, 0x81}),
            VideoFormat::kMatroska);
  EXPECT_EQ(DetectVideoFormat(Bytes(std::string("RIFF\x10\0\0\0AVI LIST", 16))), VideoFormat::kAvi);
  EXPECT_EQ(DetectVideoFormat(Bytes(std::string("RIFF\x10\0\0\0WAVEfmt ", 16))),
            VideoFormat::kUnknown);
  B ts(188 * 3, 0xFF);
  ts[0] = ts[188] = ts[376] = 0x47;
  EXPECT_EQ(DetectVideoFormat(ts), VideoFormat::kMpegTs);
  EXPECT_EQ(DetectVideoFormat(Head(ts, 376)), VideoFormat::kUnknown);  // two packets only
  ts[188] = 0;
  EXPECT_EQ(DetectVideoFormat(ts), VideoFormat::kUnknown);
  B m2ts(192 * 3, 0xFF);
  m2ts[4] = m2ts[196] = m2ts[388] = 0x47;
  EXPECT_EQ(DetectVideoFormat(m2ts), VideoFormat::kMpegTs);
  EXPECT_EQ(DetectVideoFormat(B{0x00, 0x00, 0x01, 0xBA, 0x44, 0x00}), VideoFormat::kMpegPs);
  EXPECT_EQ(DetectVideoFormat(B{0x00, 0x00, 0x01, 0xB3, 0x14, 0x00}), VideoFormat::kUnknown);
  EXPECT_EQ(DetectVideoFormat(B{'F', 'L', 'V', 0x01, 0x05, 0, 0, 0, 9}), VideoFormat::kFlv);
  EXPECT_EQ(DetectVideoFormat(B{0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11, 0xA6, 0xD9,
                                0x00, 0xAA, 0x00, 0x62, 0xCE, 0x6C}),
            VideoFormat::kAsf);
  EXPECT_EQ(DetectVideoFormat(B{0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11}),
            VideoFormat::kUnknown);  // ASF's GUID cut short
}

TEST(DetectVideoFormatTest, ImagesAndOtherBytesAreUnknown) {
  EXPECT_EQ(DetectVideoFormat(Encode(MakePattern(32, 32), ".jpg")), VideoFormat::kUnknown);
  EXPECT_EQ(DetectVideoFormat(Encode(MakePattern(32, 32), ".png")), VideoFormat::kUnknown);
  EXPECT_EQ(DetectVideoFormat(Encode(MakePattern(32, 32), ".webp")), VideoFormat::kUnknown);
  // HEIF and AVIF pictures are ISO base media files with picture brands.
  EXPECT_EQ(DetectVideoFormat(Bytes(std::string("\0\0\0\x18" "ftypheic\0\0\0\0mif1heic", 24))),
            VideoFormat::kUnknown);
  EXPECT_EQ(DetectVideoFormat(Bytes(std::string("\0\0\0\x18" "ftypavif\0\0\0\0mif1avif", 24))),
            VideoFormat::kUnknown);
  EXPECT_EQ(DetectVideoFormat({}), VideoFormat::kUnknown);
  EXPECT_EQ(DetectVideoFormat(Bytes("\0\0\0")), VideoFormat::kUnknown);
  EXPECT_EQ(DetectVideoFormat(Bytes("#EXTM3U\n")), VideoFormat::kUnknown);
}

TEST(DetectVideoFormatTest, Names) {
  EXPECT_EQ(VideoFormatName(VideoFormat::kUnknown), "unknown");
  EXPECT_EQ(VideoFormatName(VideoFormat::kMp4), "mp4");
  EXPECT_EQ(VideoFormatName(VideoFormat::kMatroska), "matroska");
  EXPECT_EQ(VideoFormatName(VideoFormat::kAvi), "avi");
  EXPECT_EQ(VideoFormatName(VideoFormat::kMpegTs), "mpegts");
  EXPECT_EQ(VideoFormatName(VideoFormat::kMpegPs), "mpegps");
  EXPECT_EQ(VideoFormatName(VideoFormat::kFlv), "flv");
  EXPECT_EQ(VideoFormatName(VideoFormat::kAsf), "asf");
}

// --- whole-video comparison ---------------------------------------------------------

TEST(CompareVideosTest, AVideoMatchesItselfCompletely) {
  const auto door = Reference("doorknob-hd-no-bar.txt");
  const VideoComparison c = CompareVideos(door, door);
  EXPECT_EQ(c.query_match_percent, 100.0);
  EXPECT_EQ(c.compared_match_percent, 100.0);
}

TEST(CompareVideosTest, OurHashesMatchTheReferenceHashesOfTheSameVideo) {
  const VideoHashes ours = HashOk(kDoorknob);
  const VideoComparison c = CompareVideos(ours.frames, Reference("doorknob-hd-no-bar.txt"));
  EXPECT_EQ(c.query_match_percent, 100.0);
  EXPECT_EQ(c.compared_match_percent, 100.0);
}

TEST(CompareVideosTest, UnrelatedVideosDoNotMatch) {
  const auto door = Reference("doorknob-hd-no-bar.txt");
  const auto chair = Reference("chair-orig-22-sd-bar.txt");
  VideoComparison c = CompareVideos(door, chair);
  EXPECT_EQ(c.query_match_percent, 0.0);
  EXPECT_EQ(c.compared_match_percent, 0.0);
  // Not even the dark, featureless frames match when they are let in.
  c = CompareVideos(door, chair, 31, 0);
  EXPECT_EQ(c.query_match_percent, 0.0);
  EXPECT_EQ(c.compared_match_percent, 0.0);
}

TEST(CompareVideosTest, AnEditedCopyMatches) {
  const VideoComparison c =
      CompareVideos(Reference("chair-22-sd-grey-bar.txt"), Reference("chair-orig-22-sd-bar.txt"));
  EXPECT_EQ(c.query_match_percent, 100.0);
  EXPECT_EQ(c.compared_match_percent, 100.0);
}

Hash256 WithBits(int n) {
  Hash256 h;
  for (int k = 0; k < n; ++k) h.SetBit(k);
  return h;
}

VideoFrameHash Frame(const Hash256& h, int quality) {
  VideoFrameHash f;
  f.pdq = h;
  f.quality = quality;
  return f;
}

TEST(CompareVideosTest, QualityDuplicatesAndDistance) {
  const Hash256 a = WithBits(0);
  const Hash256 b = WithBits(100);
  const std::vector<VideoFrameHash> query = {Frame(a, 100), Frame(b, 40)};
  const std::vector<VideoFrameHash> compared = {Frame(b, 100)};
  VideoComparison c = CompareVideos(query, compared);
  // b is under the quality threshold in the query: a alone, unmatched.
  EXPECT_EQ(c.query_match_percent, 0.0);
  EXPECT_EQ(c.compared_match_percent, 0.0);
  c = CompareVideos(query, compared, 31, 0);
  EXPECT_EQ(c.query_match_percent, 50.0);
  EXPECT_EQ(c.compared_match_percent, 100.0);

  // Duplicates count once: 3 frames of a and 1 of b are 2 hashes.
  const std::vector<VideoFrameHash> repeated = {Frame(a, 90), Frame(a, 90), Frame(a, 90),
                                                Frame(b, 90)};
  c = CompareVideos(repeated, std::vector<VideoFrameHash>{Frame(a, 90)});
  EXPECT_EQ(c.query_match_percent, 50.0);
  EXPECT_EQ(c.compared_match_percent, 100.0);

  // Within the distance means at most distance_tolerance bits.
  const std::vector<VideoFrameHash> near = {Frame(WithBits(31), 100)};
  const std::vector<VideoFrameHash> far = {Frame(WithBits(32), 100)};
  const std::vector<VideoFrameHash> zero = {Frame(a, 100)};
  EXPECT_EQ(CompareVideos(near, zero).query_match_percent, 100.0);
  EXPECT_EQ(CompareVideos(far, zero).query_match_percent, 0.0);
  EXPECT_EQ(CompareVideos(far, zero, 32).query_match_percent, 100.0);

  // Nothing comparable on one side: 0 and 0.
  c = CompareVideos({}, zero);
  EXPECT_EQ(c.query_match_percent, 0.0);
  EXPECT_EQ(c.compared_match_percent, 0.0);
  c = CompareVideos(zero, std::vector<VideoFrameHash>{Frame(a, 49)});
  EXPECT_EQ(c.query_match_percent, 0.0);
  EXPECT_EQ(c.compared_match_percent, 0.0);
}

// --- text form --------------------------------------------------------------------

TEST(VideoFrameHashTextTest, ReferenceLinesRoundTrip) {
  for (const std::string name :
       {"doorknob-hd-no-bar.txt", "doorknob-hd-no-bar-128x128.txt", "test-padded-dimensions.txt",
        "chair-orig-22-sd-bar.txt", "chair-22-sd-grey-bar.txt"}) {
    const std::vector<std::string> lines = ReferenceLines(name);
    ASSERT_FALSE(lines.empty()) << name;
    for (const std::string& line : lines) {
      Result<VideoFrameHash> f = ParseVideoFrameHash(line);
      ASSERT_TRUE(f.ok()) << line;
      EXPECT_EQ(FormatVideoFrameHash(*f), line);
    }
  }
}

TEST(VideoFrameHashTextTest, Fields) {
  Result<VideoFrameHash> f = ParseVideoFrameHash(
      "119,74,b4b64a53b4b64b4ba4b4a4b424a6b4b44b4bb4b4a4b60b95955f4a4bb5b62eb5,3.967");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->frame_number, 119);
  EXPECT_EQ(f->quality, 74);
  EXPECT_EQ(f->pdq.ToHex(), "b4b64a53b4b64b4ba4b4a4b424a6b4b44b4bb4b4a4b60b95955f4a4bb5b62eb5");
  EXPECT_EQ(f->timestamp, 3.967);
  VideoFrameHash g;
  g.frame_number = 7;
  g.quality = 100;
  g.timestamp = static_cast<float>(7) / 29.97f;
  EXPECT_EQ(FormatVideoFrameHash(g),
            "7,100,0000000000000000000000000000000000000000000000000000000000000000,0.234");
}

TEST(VideoFrameHashTextTest, BadLines) {
  const std::string hex = "b4b64a53b4b64b4ba4b4a4b424a6b4b44b4bb4b4a4b60b95955f4a4bb5b62eb5";
  for (const std::string& line : std::vector<std::string>{
           "",
           "1,100," + hex,                      // three fields
           "1,100," + hex + ",0.033,extra",     // five
           "-1,100," + hex + ",0.033",          // negative frame
           "+1,100," + hex + ",0.033",
           " 1,100," + hex + ",0.033",
           "x,100," + hex + ",0.033",
           "1,101," + hex + ",0.033",           // quality over 100
           "1,-5," + hex + ",0.033",
           "1,,"   + hex + ",0.033",
           "1,100," + hex.substr(1) + ",0.033",  // 63 digits
           "1,100," + hex + "0,0.033",
           "1,100,g" + hex.substr(1) + ",0.033",
           "1,100," + hex + ",",
           "1,100," + hex + ",-0.033",
           "1,100," + hex + ",nan",
           "1,100," + hex + ",inf",
           "1,100," + hex + ",1e3",
           "1,100," + hex + ",0.033 ",
           "1,100," + hex + ",0.033\r",
       }) {
    Result<VideoFrameHash> f = ParseVideoFrameHash(line);
    ASSERT_FALSE(f.ok()) << line;
    EXPECT_EQ(f.error().code(), ErrorCode::kInvalidArgument) << line;
  }
}

}  // namespace
}  // namespace bantay::models
