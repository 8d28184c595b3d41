#include "bantay/models/image_hasher.h"

#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
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

TEST(ImageHasherBadInputTest, PixelLimitIsConfigurable) {
  const auto png = Encode(MakePattern(100, 50), ".png");
  ExpectError(png, ErrorCode::kTooLarge,
              "image declares 100x50 pixels, over the limit of 4999",
              {.max_pixels = 4999});
  EXPECT_TRUE(ImageHasher({.max_pixels = 5000}).Hash(png).ok());
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
      if (!h.ok()) {
        EXPECT_NE(h.error().code(), ErrorCode::kInternal) << ext;
      }
    }
  }
}

}  // namespace
}  // namespace bantay::models
