#include "bantay/models/image_hasher.h"

#include <gtest/gtest.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <opencv2/core/utility.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <filesystem>
#include <random>

#include "test_images.h"

namespace bantay::models {
namespace {

using testing::Encode;
using testing::MakePattern;

PixelView View(const cv::Mat& m) {
  return {m.data, m.cols, m.rows, m.channels(), m.step[0], false};
}

Hash256 PixelHash(const cv::Mat& m) {
  PdqHasher hasher;
  return hasher.Hash(View(m)).hash;
}

// Lossless formats decode to the very pixels encoded, so the file's hash is
// exactly the hash of the pixels.
class LosslessFormatTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LosslessFormatTest, FileHashEqualsPixelHash) {
  const cv::Mat image = MakePattern(700, 410);
  std::vector<int> params;
  if (GetParam() == ".webp") params = {cv::IMWRITE_WEBP_QUALITY, 101};
  const auto bytes = Encode(image, GetParam(), params);
  ImageHasher hasher;
  Result<ImageHashes> h = hasher.Hash(bytes);
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  EXPECT_EQ(h->pdq.hash, PixelHash(image));
  EXPECT_EQ(h->width, 700);
  EXPECT_EQ(h->height, 410);
  EXPECT_EQ(h->decode_scale, 1);
  EXPECT_TRUE(h->has_digests);
  EXPECT_EQ(h->digests.sha256, Sha256(bytes));
  EXPECT_EQ(h->digests.md5, Md5(bytes));
}

INSTANTIATE_TEST_SUITE_P(Formats, LosslessFormatTest,
                         ::testing::Values(".png", ".webp", ".bmp", ".tiff"),
                         [](const auto& param_info) { return param_info.param.substr(1); });

TEST(ImageHasherTest, GreyPngHashesAsGrey) {
  cv::Mat grey;
  cv::cvtColor(MakePattern(300, 200), grey, cv::COLOR_BGR2GRAY);
  ImageHasher hasher;
  Result<ImageHashes> h = hasher.Hash(Encode(grey, ".png"));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->pdq.hash, PixelHash(grey));
}

TEST(ImageHasherTest, SixteenBitPngHashesAsItsHighByte) {
  const cv::Mat image = MakePattern(320, 240);
  cv::Mat deep;
  image.convertTo(deep, CV_16UC3, 257.0);  // v -> v*257, high byte v
  ImageHasher hasher;
  Result<ImageHashes> h = hasher.Hash(Encode(deep, ".png"));
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  EXPECT_EQ(h->pdq.hash, PixelHash(image));
}

TEST(ImageHasherTest, AlphaPngHashesAsItsColour) {
  const cv::Mat image = MakePattern(320, 240);
  cv::Mat bgra;
  cv::cvtColor(image, bgra, cv::COLOR_BGR2BGRA);
  for (int y = 0; y < bgra.rows; ++y) {
    for (int x = 0; x < bgra.cols; ++x) bgra.at<cv::Vec4b>(y, x)[3] = (x * 7) & 255;
  }
  ImageHasher hasher;
  Result<ImageHashes> h = hasher.Hash(Encode(bgra, ".png"));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->pdq.hash, PixelHash(image));
}

TEST(ImageHasherTest, DigestsCanBeSkipped) {
  ImageHasher hasher({.digests = false});
  Result<ImageHashes> h = hasher.Hash(Encode(MakePattern(64, 64), ".png"));
  ASSERT_TRUE(h.ok());
  EXPECT_FALSE(h->has_digests);
}

TEST(ImageHasherTest, ExifOrientationIsIgnoredAsByTheReference) {
  // exif-rotn-6.jpg is stored landscape with orientation 6 (rotate 90 cw to
  // display); the reference hashes the stored pixels.
  ImageHasher hasher;
  Result<ImageHashes> h =
      hasher.Hash(testing::ReadTestFile("pdq/reg-test-input/exif-rotn/exif-rotn-6.jpg"));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->width, 4032);
  EXPECT_EQ(h->height, 3024);
  EXPECT_EQ(h->pdq.hash.ToHex(),
            "e8783aad54ae0b63653192c279592d6ad4b5434a5fcd7071f7abcb594b481a94");
}

TEST(ImageHasherFastTest, ReducesLargeJpegsOnly) {
  const auto big_jpeg = Encode(MakePattern(1920, 1080), ".jpg", {cv::IMWRITE_JPEG_QUALITY, 90});
  ImageHasher fast({.fast = true});
  ImageHasher compatible;
  Result<ImageHashes> f = fast.Hash(big_jpeg);
  Result<ImageHashes> c = compatible.Hash(big_jpeg);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(c.ok());
  // 1080 / 4 = 270 >= 256, 1080 / 8 < 256.
  EXPECT_EQ(f->decode_scale, 4);
  EXPECT_EQ(c->decode_scale, 1);
  EXPECT_EQ(f->width, 1920);  // the image's own size, not the reduced one
  EXPECT_EQ(f->height, 1080);
  EXPECT_EQ(f->digests.sha256, c->digests.sha256);

  // A JPEG too small to reduce, and any PNG, hash exactly as compatible mode.
  const auto small_jpeg = Encode(MakePattern(500, 300), ".jpg");
  Result<ImageHashes> fs = fast.Hash(small_jpeg);
  ASSERT_TRUE(fs.ok());
  EXPECT_EQ(fs->decode_scale, 1);
  EXPECT_EQ(fs->pdq.hash, compatible.Hash(small_jpeg)->pdq.hash);
  const auto png = Encode(MakePattern(1920, 1080), ".png");
  Result<ImageHashes> fp = fast.Hash(png);
  ASSERT_TRUE(fp.ok());
  EXPECT_EQ(fp->decode_scale, 1);
  EXPECT_EQ(fp->pdq.hash, compatible.Hash(png)->pdq.hash);
}

TEST(ImageHasherFastTest, MinimumSideChoosesTheReduction) {
  const auto jpeg = Encode(MakePattern(2048, 2048), ".jpg");
  EXPECT_EQ(ImageHasher({.fast = true, .fast_min_side = 256}).Hash(jpeg)->decode_scale, 8);
  EXPECT_EQ(ImageHasher({.fast = true, .fast_min_side = 512}).Hash(jpeg)->decode_scale, 4);
  EXPECT_EQ(ImageHasher({.fast = true, .fast_min_side = 1024}).Hash(jpeg)->decode_scale, 2);
  EXPECT_EQ(ImageHasher({.fast = true, .fast_min_side = 1025}).Hash(jpeg)->decode_scale, 1);
}

// --- Bad input: a clear error, never a crash -------------------------------

void ExpectError(const std::vector<uint8_t>& bytes, ErrorCode code,
                 const std::string& message, HashOptions options = {}) {
  ImageHasher hasher(options);
  Result<ImageHashes> h = hasher.Hash(bytes);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code(), code) << h.error().ToString();
  EXPECT_EQ(h.error().message(), message);
}

TEST(ImageHasherBadInputTest, EmptyInput) {
  ExpectError({}, ErrorCode::kUnsupportedFormat,
              "not a JPEG, PNG, WebP, BMP or TIFF image");
}

TEST(ImageHasherBadInputTest, RandomBytes) {
  std::mt19937 rng(7);
  std::vector<uint8_t> noise(5000);
  for (auto& b : noise) b = static_cast<uint8_t>(rng());
  noise[0] = 0x00;  // not by chance a JPEG/PNG/... signature
  ExpectError(noise, ErrorCode::kUnsupportedFormat,
              "not a JPEG, PNG, WebP, BMP or TIFF image");
}

TEST(ImageHasherBadInputTest, TruncatedJpeg) {
  const auto jpeg = testing::ReadTestFile("pdq/bridge-mods/aaa-orig.jpg");
  for (size_t keep : {jpeg.size() / 2, jpeg.size() - 2, size_t{2000}}) {
    ExpectError({jpeg.begin(), jpeg.begin() + static_cast<long>(keep)},
                ErrorCode::kCorruptData,
                "jpeg is truncated (no end-of-image marker)");
  }
}

TEST(ImageHasherBadInputTest, TruncatedPng) {
  const auto png = Encode(MakePattern(400, 300), ".png");
  ExpectError({png.begin(), png.begin() + static_cast<long>(png.size() / 2)},
              ErrorCode::kCorruptData, "png could not be decoded");
}

TEST(ImageHasherBadInputTest, JpegSignatureWithGarbage) {
  std::vector<uint8_t> bytes(300, 0x55);
  const uint8_t header[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10};
  std::copy(std::begin(header), std::end(header), bytes.begin());
  ExpectError(bytes, ErrorCode::kCorruptData, "jpeg header is truncated");
}

std::vector<uint8_t> PngDeclaring(uint32_t width, uint32_t height) {
  auto png = Encode(MakePattern(8, 8), ".png");
  for (int i = 0; i < 4; ++i) {
    png[16 + i] = static_cast<uint8_t>(width >> (24 - 8 * i));
    png[20 + i] = static_cast<uint8_t>(height >> (24 - 8 * i));
  }
  return png;
}

TEST(ImageHasherBadInputTest, DecompressionBombIsRefusedFromTheHeader) {
  ExpectError(PngDeclaring(100000, 100000), ErrorCode::kTooLarge,
              "image declares 100000x100000 pixels, over the limit of 150000000");
}

TEST(ImageHasherBadInputTest, BombPastAHighLimitStillFailsCleanly) {
  // With Bantay's limit lifted, OpenCV's own limit (2^30 pixels) refuses it:
  // still an error, not an allocation of 30 GB.
  ExpectError(PngDeclaring(100000, 100000), ErrorCode::kCorruptData,
              "png could not be decoded", {.max_pixels = int64_t{1} << 40});
}

TEST(ImageHasherBadInputTest, TiffTileBombIsRefusedFromTheHeader) {
  // A 4x3 TIFF of one 16384x16384 tile: the decoder allocates the whole tile
  // (1 GB) before it finds that the file holds 256 bytes of it.
  std::vector<testing::TiffField> fields = {{256, 3, 1, 4}, {257, 3, 1, 3}};
  for (const testing::TiffField& f : testing::GreyTiffFields(3, 256, 16384, 16384)) {
    fields.push_back(f);
  }
  ExpectError(testing::MakeTiff(fields, std::vector<uint8_t>(256, 0x40)), ErrorCode::kTooLarge,
              "image declares tiles of 16384x16384 pixels, over the limit of 150000000");
}

TEST(ImageHasherBadInputTest, TiffStripBombIsRefusedFromTheHeader) {
  // 12090x20 in strips of 63,508 rows (more than the image has, which the
  // format allows): the decoder allocated a strip of 12090 x 63508 pixels
  // of 4 bytes (3 GB) for it. Found by image_fuzz.
  std::vector<testing::TiffField> fields = {{256, 3, 1, 12090}, {257, 3, 1, 20}};
  for (const testing::TiffField& f : testing::GreyTiffFields(63508, 256)) fields.push_back(f);
  ExpectError(testing::MakeTiff(fields, std::vector<uint8_t>(256, 0x40)), ErrorCode::kTooLarge,
              "image declares strips of 12090x63508 pixels, over the limit of 150000000");
}

TEST(ImageHasherTest, TiledTiffHashesAsItsPixels) {
  // 40x24 grey in one 48x32 tile (tiles are multiples of 16), Deflate-
  // compressed (zlib, level 9) from tile[y][x] = (5x + 40 (y / 4)) mod 256.
  const std::vector<uint8_t> tile = testing::FromHex(
      "78da6360e5e217919453d6d03532b77174f30e088d8a4fc9cc2baea86d6aef99386df682a5abd66fd9b9"
      "eff089b397aedf79f8ec35c320534facba0f5f7ffd67e1e4131e6cea89552721aba4ae6368663dd8d413"
      "abcec1d5cb3f24322e79b0a927565d466e51794d635bf760534facba095367cd5fb272dde6c1a69e5875"
      "3bf61e3a7ee6e2b5db834d3db1ea1e3c7df5fecbcf7fcc834d3d00b01e052e");
  cv::Mat grey(24, 40, CV_8UC1);
  for (int y = 0; y < grey.rows; ++y) {
    for (int x = 0; x < grey.cols; ++x) {
      grey.at<uint8_t>(y, x) = static_cast<uint8_t>((5 * x + 40 * (y / 4)) % 256);
    }
  }
  std::vector<testing::TiffField> fields = {{256, 3, 1, 40}, {257, 3, 1, 24}};
  for (testing::TiffField f :
       testing::GreyTiffFields(24, static_cast<uint32_t>(tile.size()), 48, 32)) {
    if (f.tag == 259) f.value = 8;  // Compression: Deflate
    fields.push_back(f);
  }
  Result<ImageHashes> h = ImageHasher().Hash(testing::MakeTiff(fields, tile));
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  EXPECT_EQ(h->width, 40);
  EXPECT_EQ(h->height, 24);
  EXPECT_EQ(h->pdq.hash, PixelHash(grey));
}

TEST(ImageHasherBadInputTest, JpegScanBombIsRefusedBeforeDecoding) {
  const auto bomb = testing::JpegWithScans(501);
  EXPECT_EQ(CountJpegScans(bomb), 501u);
  ExpectError(bomb, ErrorCode::kTooLarge, "jpeg has 501 scans, over the limit of 500");
  EXPECT_TRUE(ImageHasher().Hash(testing::JpegWithScans(500)).ok());
  // Configurable: the 10 scans of an ordinary progressive JPEG.
  const auto progressive = testing::JpegWithScans(10);
  EXPECT_TRUE(ImageHasher({.max_jpeg_scans = 10}).Hash(progressive).ok());
  ExpectError(progressive, ErrorCode::kTooLarge, "jpeg has 10 scans, over the limit of 9",
              {.max_jpeg_scans = 9});
}

TEST(ImageHasherBadInputTest, PixelLimitIsConfigurable) {
  const auto png = Encode(MakePattern(100, 50), ".png");
  ExpectError(png, ErrorCode::kTooLarge,
              "image declares 100x50 pixels, over the limit of 4999",
              {.max_pixels = 4999});
  EXPECT_TRUE(ImageHasher({.max_pixels = 5000}).Hash(png).ok());
}

// What a hasher answers for an image does not depend on what it hashed
// before: a file its decoder fails on is an error, not the previous
// picture (OpenCV's decoders leave the output as it was when the header
// fails, and the hasher keeps its decode buffer between calls).
TEST(ImageHasherBadInputTest, AFailedDecodeIsNotThePreviousImage) {
  for (bool wipe : {true, false}) {
    HashOptions options;
    options.wipe = wipe;
    ImageHasher reused(options);
    for (const char* ext : {".png", ".webp", ".jpg", ".bmp", ".tiff"}) {
      SCOPED_TRACE(std::string(ext) + (wipe ? " wiped" : " not wiped"));
      // The previous image: of the size the damaged file declares, and of
      // another size.
      const auto good = Encode(MakePattern(64, 48), ext);
      const Result<ImageHashes> good_hash = reused.Hash(good);
      ASSERT_TRUE(good_hash.ok()) << good_hash.error().ToString();
      for (const auto& previous : {good, Encode(MakePattern(90, 70), ext)}) {
        for (size_t keep : {size_t{30}, size_t{60}, good.size() / 3, good.size() - 10}) {
          if (keep >= good.size()) continue;
          ASSERT_TRUE(reused.Hash(previous).ok());
          const std::span<const uint8_t> cut(good.data(), keep);
          const Result<ImageHashes> again = reused.Hash(cut);
          ImageHasher fresh(options);
          const Result<ImageHashes> alone = fresh.Hash(cut);
          ASSERT_EQ(again.ok(), alone.ok()) << keep << " bytes";
          if (alone.ok()) {
            EXPECT_EQ(again->pdq.hash, alone->pdq.hash) << keep << " bytes";
            EXPECT_EQ(again->width, alone->width);
          } else {
            EXPECT_EQ(again.error().ToString(), alone.error().ToString()) << keep << " bytes";
          }
        }
      }
      // And the buffer is still good for the next picture.
      const Result<ImageHashes> after = reused.Hash(good);
      ASSERT_TRUE(after.ok());
      EXPECT_EQ(after->pdq.hash, good_hash->pdq.hash);
    }
  }
  // The audit's cases: 60 bytes of a PNG and 40 of a WebP (a whole header),
  // after a good image of another size.
  ImageHasher hasher;
  for (const char* ext : {".png", ".webp"}) {
    ASSERT_TRUE(hasher.Hash(Encode(MakePattern(34, 42), ext)).ok());
    const auto bytes = Encode(MakePattern(640, 480), ext);
    const size_t keep = std::string(ext) == ".png" ? 60 : 40;
    const Result<ImageHashes> h = hasher.Hash(std::span<const uint8_t>(bytes.data(), keep));
    ASSERT_FALSE(h.ok()) << ext << ": " << h->width << "x" << h->height;
    EXPECT_EQ(h.error().code(), ErrorCode::kCorruptData);
    EXPECT_EQ(h.error().message(), std::string(ext + 1) + " could not be decoded");
  }
}

// WebPs that OpenCV's WebP decoder would not take (the VP8X chunk's size is
// wrong). The first has "DICM" at byte 128: cv::imdecode would copy it to a
// temporary file for GDCM's decoder, whose reader then runs on it. The
// second is the input image_fuzz reported in CI with GDCM's reader aborting
// the process (it does not reach GDCM alone: its "DICM" is at byte 125).
TEST(ImageHasherBadInputTest, AWebpOpenCvWouldNotReadAsWebpIsRefused) {
  ImageHasher hasher;
  for (const char* name : {"webp-vp8x-size-wrong-dicm-at-128.webp", "webp-vp8x-size-wrong-ci.webp"}) {
    const auto bytes = testing::ReadTestFile(std::string("../fuzz/corpus/image_fuzz/") + name);
    const Result<ImageHashes> h = hasher.Hash(bytes);
    ASSERT_FALSE(h.ok()) << name;
    EXPECT_EQ(h.error().code(), ErrorCode::kCorruptData) << name;
    EXPECT_EQ(h.error().message(), "webp header is not valid") << name;
  }
}

// A WebP that OpenCV does not take as WebP, with "DICM" at byte 128 in an
// ICC profile: cv::imdecode would give it to GDCM's decoder, which reads
// only files, so OpenCV would first write the image's bytes to a temporary
// file (OPENCV_TEMP_PATH). Refused before decoding: nothing is created there,
// by it or by any of the image_fuzz corpus.
TEST(ImageHasherBadInputTest, NoImageBytesGoToATemporaryFile) {
  const auto webp = Encode(MakePattern(64, 48), ".webp", {cv::IMWRITE_WEBP_QUALITY, 101});
  auto marked = testing::ExtendedWebp(webp, 64, 48, 0x20, 200);
  std::copy_n("DICM", 4, marked.begin() + 128);
  marked[16] = 11;  // the VP8X chunk's size: libwebp refuses the header
  std::vector<std::vector<uint8_t>> inputs = {marked};
  for (const auto& file : std::filesystem::directory_iterator(
           testing::TestDataPath("../fuzz/corpus/image_fuzz"))) {
    inputs.push_back(testing::ReadTestFile("../fuzz/corpus/image_fuzz/" +
                                           file.path().filename().string()));
  }
  ASSERT_GT(inputs.size(), 20u);

  const testing::TempDir dir;
  const int watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  ASSERT_GE(watch, 0);
  ASSERT_GE(inotify_add_watch(watch, dir.path().c_str(), IN_CREATE), 0);
  const char* before = std::getenv("OPENCV_TEMP_PATH");
  const std::string saved = before != nullptr ? before : "";
  ASSERT_EQ(setenv("OPENCV_TEMP_PATH", dir.path().c_str(), 1), 0);
  ImageHasher hasher;
  const Result<ImageHashes> h = hasher.Hash(marked);
  size_t hashed = 0;
  for (const auto& input : inputs) hashed += hasher.Hash(input).ok() ? 1 : 0;
  if (before != nullptr) {
    setenv("OPENCV_TEMP_PATH", saved.c_str(), 1);
  } else {
    unsetenv("OPENCV_TEMP_PATH");
  }
  alignas(inotify_event) char events[4096];
  const ssize_t got = read(watch, events, sizeof(events));
  const int read_errno = errno;
  close(watch);
  EXPECT_EQ(got, -1);
  EXPECT_EQ(read_errno, EAGAIN);  // no event: nothing was created
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(h.error().message(), "webp header is not valid");
  EXPECT_GT(hashed, 10u);
}

// The mains' guard: after it OpenCV can make no temporary file.
TEST(ImageHasherBadInputTest, AfterKeepImageBytesOffTheDiskOpenCvMakesNoTemporaryFile) {
  const char* before = std::getenv("OPENCV_TEMP_PATH");
  const std::string saved = before != nullptr ? before : "";
  const testing::TempDir dir;
  ASSERT_EQ(setenv("OPENCV_TEMP_PATH", dir.path().c_str(), 1), 0);
  const std::string made = cv::tempfile(".webp");
  EXPECT_EQ(made.rfind(dir.path() + "/", 0), 0u) << made;
  KeepImageBytesOffTheDisk();
  ASSERT_NE(std::getenv("OPENCV_TEMP_PATH"), nullptr);
  EXPECT_EQ(std::string(std::getenv("OPENCV_TEMP_PATH")), kNoTemporaryFilePath);
  EXPECT_EQ(cv::tempfile(".webp"), "");
  if (before != nullptr) {
    setenv("OPENCV_TEMP_PATH", saved.c_str(), 1);
  } else {
    unsetenv("OPENCV_TEMP_PATH");
  }
}

// cv::imdecode hands bytes to the first decoder whose signature test takes
// them, GDCM's (DICOM: "DICM" at byte 128) after those of the formats Bantay
// reads. A JPEG and a WebP carrying that mark in a comment and in an ICC
// profile still hash as themselves.
TEST(ImageHasherTest, FilesWithADicomMarkHashAsThemselves) {
  ImageHasher hasher;
  const auto jpeg = Encode(MakePattern(64, 48), ".jpg");
  std::vector<uint8_t> commented = {0xFF, 0xD8, 0xFF, 0xFE, 0x00, 132};  // COM of 130 bytes
  commented.resize(6 + 130, ' ');
  std::copy_n("DICM", 4, commented.begin() + 128);
  commented.insert(commented.end(), jpeg.begin() + 2, jpeg.end());
  const auto webp = Encode(MakePattern(64, 48), ".webp", {cv::IMWRITE_WEBP_QUALITY, 101});
  // The ICC profile's bytes begin at 38 (RIFF header 12, VP8X 18, ICCP's 8).
  auto profiled = testing::ExtendedWebp(webp, 64, 48, 0x20, 200);
  std::copy_n("DICM", 4, profiled.begin() + 128);
  for (const auto& [plain, marked] : {std::pair(jpeg, commented), std::pair(webp, profiled)}) {
    ASSERT_EQ(std::string(marked.begin() + 128, marked.begin() + 132), "DICM");
    const Result<ImageHashes> want = hasher.Hash(plain);
    const Result<ImageHashes> got = hasher.Hash(marked);
    ASSERT_TRUE(want.ok() && got.ok()) << (got.ok() ? "" : got.error().ToString());
    EXPECT_EQ(got->format, want->format);
    EXPECT_EQ(got->pdq.hash, want->pdq.hash);
  }
}

// An extended WebP with an ICC profile (as cameras and editors write them)
// hashes as the same picture without it.
TEST(ImageHasherTest, WebpWithAnIccProfileHashesAsWithout) {
  const auto simple = Encode(MakePattern(64, 48), ".webp", {cv::IMWRITE_WEBP_QUALITY, 101});
  ImageHasher hasher;
  const Result<ImageHashes> plain = hasher.Hash(simple);
  ASSERT_TRUE(plain.ok()) << plain.error().ToString();
  for (size_t icc : {size_t{0}, size_t{7}, size_t{3000}}) {
    const Result<ImageHashes> extended =
        hasher.Hash(testing::ExtendedWebp(simple, 64, 48, icc > 0 ? 0x20 : 0, icc));
    ASSERT_TRUE(extended.ok()) << icc << ": " << extended.error().ToString();
    EXPECT_EQ(extended->format, ImageFormat::kWebp);
    EXPECT_EQ(extended->width, 64);
    EXPECT_EQ(extended->height, 48);
    EXPECT_EQ(extended->pdq.hash, plain->pdq.hash) << icc;
  }
}

// A picture larger than the hasher keeps a buffer for (32 MB decoded) gets
// its own, and hashes as with a fresh hasher, before and after others.
TEST(ImageHasherTest, PicturesOverTheKeptBufferHashAsAlone) {
  const auto large = Encode(MakePattern(4000, 3000), ".jpg");  // 36 MB decoded
  const auto small = Encode(MakePattern(640, 480), ".png");
  ImageHasher fresh_large, fresh_small, reused;
  const Result<ImageHashes> want_large = fresh_large.Hash(large);
  const Result<ImageHashes> want_small = fresh_small.Hash(small);
  ASSERT_TRUE(want_large.ok() && want_small.ok());
  for (int round = 0; round < 2; ++round) {
    const Result<ImageHashes> a = reused.Hash(large);
    const Result<ImageHashes> b = reused.Hash(small);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->pdq.hash, want_large->pdq.hash);
    EXPECT_EQ(b->pdq.hash, want_small->pdq.hash);
    // A damaged PNG after the large picture: an error, not the picture.
    const Result<ImageHashes> cut =
        reused.Hash(std::span<const uint8_t>(small.data(), small.size() / 3));
    ASSERT_TRUE(reused.Hash(large).ok());
    const Result<ImageHashes> cut_after_large =
        reused.Hash(std::span<const uint8_t>(small.data(), 60));
    EXPECT_FALSE(cut.ok());
    ASSERT_FALSE(cut_after_large.ok());
    EXPECT_EQ(cut_after_large.error().message(), "png could not be decoded");
  }
}

TEST(ImageHasherBadInputTest, MangledFilesNeverCrash) {
  // Cuts and byte flips of every format: each gives a hash or a clean error.
  std::mt19937 rng(12345);
  const cv::Mat image = MakePattern(200, 120);
  ImageHasher hasher;
  for (const char* ext : {".jpg", ".png", ".webp", ".bmp", ".tiff"}) {
    const auto bytes = Encode(image, ext);
    for (int trial = 0; trial < 40; ++trial) {
      std::vector<uint8_t> mangled = bytes;
      if (trial % 2 == 0) {
        mangled.resize(rng() % bytes.size());
      } else {
        for (int k = 0; k < 8; ++k) {
          mangled[rng() % mangled.size()] = static_cast<uint8_t>(rng());
        }
      }
      Result<ImageHashes> h = hasher.Hash(mangled);
      ImageHasher fresh;
      Result<ImageHashes> alone = fresh.Hash(mangled);
      ASSERT_EQ(h.ok(), alone.ok()) << ext << " trial " << trial;
      if (!h.ok()) {
        EXPECT_NE(h.error().code(), ErrorCode::kInternal) << ext;
        EXPECT_EQ(h.error().ToString(), alone.error().ToString()) << ext << " trial " << trial;
      } else {
        EXPECT_EQ(h->pdq.hash, alone->pdq.hash) << ext << " trial " << trial;
      }
    }
  }
}

}  // namespace
}  // namespace bantay::models
