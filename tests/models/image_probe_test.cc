#include "bantay/models/image_probe.h"

#include <gtest/gtest.h>

#include "test_images.h"

namespace bantay::models {
namespace {

using testing::Encode;
using testing::MakePattern;

struct FormatCase {
  const char* ext;
  ImageFormat format;
};

class ProbeFormatTest : public ::testing::TestWithParam<FormatCase> {};

TEST_P(ProbeFormatTest, ReadsFormatAndSizeFromTheHeader) {
  const std::vector<uint8_t> bytes = Encode(MakePattern(37, 21), GetParam().ext);
  EXPECT_EQ(DetectImageFormat(bytes), GetParam().format);
  Result<ImageInfo> info = ProbeImage(bytes);
  ASSERT_TRUE(info.ok()) << info.error().ToString();
  EXPECT_EQ(info->format, GetParam().format);
  EXPECT_EQ(info->width, 37);
  EXPECT_EQ(info->height, 21);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, ProbeFormatTest,
    ::testing::Values(FormatCase{".jpg", ImageFormat::kJpeg},
                      FormatCase{".png", ImageFormat::kPng},
                      FormatCase{".webp", ImageFormat::kWebp},
                      FormatCase{".bmp", ImageFormat::kBmp},
                      FormatCase{".tiff", ImageFormat::kTiff}),
    [](const auto& param_info) { return std::string(param_info.param.ext + 1); });

TEST(ProbeTest, LosslessWebpHeader) {
  const auto bytes =
      Encode(MakePattern(300, 17), ".webp", {cv::IMWRITE_WEBP_QUALITY, 101});
  Result<ImageInfo> info = ProbeImage(bytes);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->width, 300);
  EXPECT_EQ(info->height, 17);
}

TEST(ProbeTest, ReferenceFilesKeepTheirStoredSize) {
  // EXIF orientation 6 does not change the stored size.
  Result<ImageInfo> info =
      ProbeImage(testing::ReadTestFile("pdq/reg-test-input/exif-rotn/exif-rotn-6.jpg"));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->width, 4032);
  EXPECT_EQ(info->height, 3024);
  info = ProbeImage(testing::ReadTestFile("pdq/misc-images/modes/CMYK.jpg"));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->width, 1600);
  EXPECT_EQ(info->height, 1004);
}

TEST(ProbeTest, UnknownContentIsUnsupported) {
  for (const std::vector<uint8_t>& bytes :
       {std::vector<uint8_t>{}, std::vector<uint8_t>{'G', 'I', 'F', '8', '9', 'a'},
        std::vector<uint8_t>(100, 0x42)}) {
    EXPECT_EQ(DetectImageFormat(bytes), ImageFormat::kUnknown);
    Result<ImageInfo> info = ProbeImage(bytes);
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.error().code(), ErrorCode::kUnsupportedFormat);
    EXPECT_EQ(info.error().message(), "not a JPEG, PNG, WebP, BMP or TIFF image");
  }
}

TEST(ProbeTest, TruncatedHeadersAreCorrupt) {
  const auto png = Encode(MakePattern(8, 8), ".png");
  Result<ImageInfo> info = ProbeImage(std::span(png).first(20));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(info.error().message(), "png header is truncated");

  const auto jpeg = Encode(MakePattern(8, 8), ".jpg");
  info = ProbeImage(std::span(jpeg).first(4));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(info.error().message(), "jpeg header is truncated");
}

TEST(ProbeTest, ZeroSizeIsCorrupt) {
  auto png = Encode(MakePattern(8, 8), ".png");
  png[16] = png[17] = png[18] = png[19] = 0;  // width 0
  Result<ImageInfo> info = ProbeImage(png);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(info.error().message(), "png header declares an empty or negative size");
}

TEST(ProbeTest, HugeDeclaredSizeIsReadWithoutDecoding) {
  auto png = Encode(MakePattern(8, 8), ".png");
  const uint8_t huge[4] = {0x00, 0x01, 0x86, 0xA0};  // 100000
  std::copy(huge, huge + 4, png.begin() + 16);
  std::copy(huge, huge + 4, png.begin() + 20);
  Result<ImageInfo> info = ProbeImage(png);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->width, 100000);
  EXPECT_EQ(info->height, 100000);
}

TEST(JpegCompleteTest, CompleteAndTruncated) {
  const auto jpeg = testing::ReadTestFile("pdq/bridge-mods/aaa-orig.jpg");
  EXPECT_TRUE(CheckJpegComplete(jpeg).ok());
  std::vector<uint8_t> trailing = jpeg;
  trailing.insert(trailing.end(), {0, 1, 2, 3});  // bytes after EOI are allowed
  EXPECT_TRUE(CheckJpegComplete(trailing).ok());
  Status cut = CheckJpegComplete(std::span(jpeg).first(jpeg.size() - 2));
  ASSERT_FALSE(cut.ok());
  EXPECT_EQ(cut.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(cut.error().message(), "jpeg is truncated (no end-of-image marker)");
  // Cut inside the headers: no scan at all.
  Status no_scan = CheckJpegComplete(std::span(jpeg).first(100));
  ASSERT_FALSE(no_scan.ok());
  EXPECT_EQ(no_scan.error().message(), "jpeg has no image data (no scan)");
}

}  // namespace
}  // namespace bantay::models
