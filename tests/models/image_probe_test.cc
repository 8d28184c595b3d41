#include "bantay/models/image_probe.h"

#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

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

// A WebP header is read as OpenCV's WebP decoder reads it (libwebp, over the
// first 32 bytes), which is also how cv::imdecode picks that decoder: what it
// refuses would go to another decoder (GDCM's, which aborts on some input).
TEST(ProbeTest, WebpHeadersAreReadAsOpenCvReadsThem) {
  const auto lossless =
      Encode(MakePattern(300, 17), ".webp", {cv::IMWRITE_WEBP_QUALITY, 101});
  // An ICC profile: the header's first 32 bytes end inside it.
  Result<ImageInfo> info = ProbeImage(testing::ExtendedWebp(lossless, 300, 17, 0x20, 100));
  ASSERT_TRUE(info.ok()) << info.error().ToString();
  EXPECT_EQ(info->format, ImageFormat::kWebp);
  EXPECT_EQ(info->width, 300);
  EXPECT_EQ(info->height, 17);

  // The VP8X chunk's size is not 10: libwebp refuses the header. A file with
  // "DICM" at byte 128 (OpenCV would give it to GDCM), the input image_fuzz
  // reported in CI, and one made here.
  const std::vector<uint8_t> marked =
      testing::ReadTestFile("../fuzz/corpus/image_fuzz/webp-vp8x-size-wrong-dicm-at-128.webp");
  ASSERT_EQ(std::string(marked.begin() + 128, marked.begin() + 132), "DICM");
  info = ProbeImage(marked);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(info.error().message(), "webp header is not valid");
  const std::vector<uint8_t> found =
      testing::ReadTestFile("../fuzz/corpus/image_fuzz/webp-vp8x-size-wrong-ci.webp");
  ASSERT_EQ(found.size(), 131u);
  info = ProbeImage(found);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(info.error().message(), "webp header is not valid");
  auto vp8x = testing::ExtendedWebp(lossless, 300, 17, 0, 0);
  vp8x[16] = 11;
  info = ProbeImage(vp8x);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().message(), "webp header is not valid");

  // Fewer than 32 bytes: OpenCV does not take them for WebP.
  info = ProbeImage(std::span(lossless).first(31));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(info.error().message(), "webp header is truncated");

  // An animation (OpenCV 4.6 decodes none).
  info = ProbeImage(testing::ExtendedWebp(lossless, 300, 17, 0x02, 0));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code(), ErrorCode::kUnsupportedFormat);
  EXPECT_EQ(info.error().message(), "animated webp is not supported");
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

// A 4x3 grey TIFF whose size fields are `size_fields`, with its one strip.
std::vector<uint8_t> GreyTiff(std::vector<testing::TiffField> size_fields, bool big_endian = false) {
  std::vector<testing::TiffField> fields = std::move(size_fields);
  for (const testing::TiffField& f : testing::GreyTiffFields(3, 12)) fields.push_back(f);
  std::vector<uint8_t> pixels(12);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(20 * i);
  return testing::MakeTiff(fields, pixels, big_endian);
}

void SetField(std::vector<testing::TiffField>* fields, uint16_t tag, uint32_t value) {
  for (testing::TiffField& f : *fields) {
    if (f.tag == tag) f.value = value;
  }
}

cv::Mat Decoded(const std::vector<uint8_t>& bytes) {
  return cv::imdecode(bytes, cv::IMREAD_ANYCOLOR | cv::IMREAD_IGNORE_ORIENTATION);
}

TEST(ProbeTiffTest, ReadsShortAndLongSizesInBothByteOrders) {
  for (bool big_endian : {false, true}) {
    const auto bytes = GreyTiff({{256, 3, 1, 4}, {257, 4, 1, 3}}, big_endian);
    Result<ImageInfo> info = ProbeImage(bytes);
    ASSERT_TRUE(info.ok()) << info.error().ToString();
    EXPECT_EQ(info->format, ImageFormat::kTiff);
    EXPECT_EQ(info->width, 4);
    EXPECT_EQ(info->height, 3);
    EXPECT_EQ(info->tile_width, 0);
    EXPECT_EQ(info->tile_height, 0);
    EXPECT_EQ(info->strip_rows, 3);
    const cv::Mat decoded = Decoded(bytes);
    EXPECT_EQ(decoded.cols, 4);
    EXPECT_EQ(decoded.rows, 3);
  }
}

TEST(ProbeTiffTest, ASizeGivenTwiceIsRefused) {
  // libtiff decodes the first of the two widths: a header read by the last
  // one would let a wide picture pass as a narrow one.
  const auto bytes = GreyTiff({{256, 3, 1, 4}, {256, 3, 1, 2}, {257, 3, 1, 3}});
  EXPECT_EQ(Decoded(bytes).cols, 4);
  Result<ImageInfo> info = ProbeImage(bytes);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(info.error().message(), "tiff gives field 256 twice");

  info = ProbeImage(GreyTiff({{256, 3, 1, 4}, {257, 3, 1, 3}, {257, 4, 1, 3}}));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().message(), "tiff gives field 257 twice");
}

TEST(ProbeTiffTest, ASizeOfAnotherTypeOrCountIsRefused) {
  // LONG8 (type 16) in a classic TIFF: libtiff reads the 8-byte value at the
  // offset in the value field (the data: 6), where the value field itself
  // reads 122 (that offset).
  std::vector<testing::TiffField> fields = {{256, 16, 1, testing::kTiffDataOffset},
                                            {257, 3, 1, 3}};
  for (const testing::TiffField& f : testing::GreyTiffFields(3, 18)) fields.push_back(f);
  const auto data_offset = static_cast<uint32_t>(8 + 2 + 12 * fields.size() + 4);
  ASSERT_EQ(data_offset, 122u);
  SetField(&fields, 273, data_offset + 8);  // StripOffsets: the pixels after the LONG8
  std::vector<uint8_t> data = {6, 0, 0, 0, 0, 0, 0, 0};
  data.resize(8 + 18, 0x80);
  const std::vector<uint8_t> bytes = testing::MakeTiff(fields, data);
  EXPECT_EQ(Decoded(bytes).cols, 6);
  Result<ImageInfo> info = ProbeImage(bytes);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(info.error().message(), "tiff field 256 is not one SHORT or LONG");

  for (const testing::TiffField& odd : {testing::TiffField{256, 1, 1, 4},    // BYTE
                                        testing::TiffField{256, 9, 1, 4},    // SLONG
                                        testing::TiffField{256, 4, 2, 4}}) {  // two LONGs
    info = ProbeImage(GreyTiff({odd, {257, 3, 1, 3}}));
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.error().message(), "tiff field 256 is not one SHORT or LONG");
  }
}

TEST(ProbeTiffTest, TilesAreReadWithTheImageSize) {
  std::vector<testing::TiffField> fields = {{256, 3, 1, 4}, {257, 3, 1, 3}};
  for (const testing::TiffField& f : testing::GreyTiffFields(3, 256, 16, 16)) fields.push_back(f);
  const auto bytes = testing::MakeTiff(fields, std::vector<uint8_t>(256, 0x40));
  Result<ImageInfo> info = ProbeImage(bytes);
  ASSERT_TRUE(info.ok()) << info.error().ToString();
  EXPECT_EQ(info->width, 4);
  EXPECT_EQ(info->height, 3);
  EXPECT_EQ(info->tile_width, 16);
  EXPECT_EQ(info->tile_height, 16);

  SetField(&fields, 322, 0);  // TileWidth
  info = ProbeImage(testing::MakeTiff(fields, std::vector<uint8_t>(256, 0x40)));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().message(), "tiff declares an empty tile size");
}

TEST(ProbeTiffTest, StripsOfNoRowsAreRefused) {
  std::vector<testing::TiffField> fields = {{256, 3, 1, 4}, {257, 3, 1, 3}};
  for (const testing::TiffField& f : testing::GreyTiffFields(0, 12)) fields.push_back(f);
  Result<ImageInfo> info = ProbeImage(testing::MakeTiff(fields, std::vector<uint8_t>(12, 0x40)));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(info.error().message(), "tiff declares strips of no rows");
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

TEST(JpegScansTest, CountsTheScansAfterTheHeaders) {
  const cv::Mat image = MakePattern(64, 48);
  EXPECT_EQ(CountJpegScans(Encode(image, ".jpg")), 1u);
  // libjpeg's progressive script: 10 scans for colour, 6 for grey.
  EXPECT_EQ(CountJpegScans(Encode(image, ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1})), 10u);
  cv::Mat grey;
  cv::cvtColor(image, grey, cv::COLOR_BGR2GRAY);
  EXPECT_EQ(CountJpegScans(Encode(grey, ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1})), 6u);
  const auto jpeg = Encode(image, ".jpg");
  EXPECT_EQ(CountJpegScans(std::span(jpeg).first(100)), 0u);  // headers only
  EXPECT_EQ(CountJpegScans({}), 0u);
}

}  // namespace
}  // namespace bantay::models
