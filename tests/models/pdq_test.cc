#include "bantay/models/pdq.h"

#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "test_images.h"

namespace bantay::models {
namespace {

PixelView View(const cv::Mat& m) {
  return {m.data, m.cols, m.rows, m.channels(), m.step[0], false};
}

TEST(PdqTest, UniformImageHasQualityZeroAndIsFlagged) {
  for (int value : {0, 128, 255}) {
    cv::Mat flat(300, 400, CV_8UC3, cv::Scalar(value, value, value));
    PdqHasher hasher;
    PdqResult r = hasher.Hash(View(flat));
    EXPECT_EQ(r.quality, 0) << value;
    EXPECT_TRUE(r.low_quality());
  }
}

TEST(PdqTest, StructuredImageHasFullQuality) {
  PdqHasher hasher;
  PdqResult r = hasher.Hash(View(testing::MakePattern(640, 360)));
  EXPECT_EQ(r.quality, 100);
  EXPECT_FALSE(r.low_quality());
}

TEST(PdqTest, ImagesUnderFivePixelsHashToZero) {
  cv::Mat tiny = testing::MakePattern(4, 40);
  PdqHasher hasher;
  PdqResult r = hasher.Hash(View(tiny), /*dihedral=*/true);
  EXPECT_EQ(r.hash, Hash256());
  EXPECT_EQ(r.quality, 0);
  EXPECT_TRUE(r.has_dihedral);
  for (const Hash256& d : r.dihedral) EXPECT_EQ(d, Hash256());
  // Five pixels is enough.
  EXPECT_NE(hasher.Hash(View(testing::MakePattern(5, 40))).hash, Hash256());
}

TEST(PdqTest, GreyPixelsHashAsTheirOwnLuminance) {
  cv::Mat colour = testing::MakePattern(200, 150);
  cv::Mat grey;
  cv::cvtColor(colour, grey, cv::COLOR_BGR2GRAY);
  cv::Mat grey3;
  cv::cvtColor(grey, grey3, cv::COLOR_GRAY2BGR);
  PdqHasher hasher;
  // A grey image and the same grey as three channels are close but not
  // bit-identical (0.299+0.587+0.114 is not exactly 1 in float), as in the
  // reference; both must be valid hashes of the same picture.
  const PdqResult a = hasher.Hash(View(grey));
  const PdqResult b = hasher.Hash(View(grey3));
  EXPECT_LE(HammingDistance(a.hash, b.hash), 2);
  // The luminance path with the grey values as floats is exactly the grey
  // pixel path.
  cv::Mat grey_float;
  grey.convertTo(grey_float, CV_32F);
  const PdqResult c = hasher.HashLuma(grey_float.ptr<float>(), grey.rows, grey.cols);
  EXPECT_EQ(c.hash, a.hash);
  EXPECT_EQ(c.quality, a.quality);
}

TEST(PdqTest, RgbOrderFlagSwapsChannels) {
  cv::Mat bgr = testing::MakePattern(120, 90);
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  PdqHasher hasher;
  PixelView rgb_view = View(rgb);
  rgb_view.rgb = true;
  EXPECT_EQ(hasher.Hash(rgb_view).hash, hasher.Hash(View(bgr)).hash);
  EXPECT_NE(hasher.Hash(View(rgb)).hash, hasher.Hash(View(bgr)).hash);
}

TEST(PdqTest, AlphaChannelIsIgnored) {
  cv::Mat bgr = testing::MakePattern(300, 200);
  cv::Mat bgra;
  cv::cvtColor(bgr, bgra, cv::COLOR_BGR2BGRA);
  PdqHasher hasher;
  EXPECT_EQ(hasher.Hash(View(bgra)).hash, hasher.Hash(View(bgr)).hash);
}

TEST(PdqTest, LargeImagesAreSampledTo512ByNearestNeighbour) {
  // An image over 512 px hashes as its nearest-neighbour 512x512 sample
  // (source index floor(x * old / 512)).
  cv::Mat big = testing::MakePattern(1600, 900);
  cv::Mat sampled(512, 512, CV_8UC3);
  for (int y = 0; y < 512; ++y) {
    for (int x = 0; x < 512; ++x) {
      sampled.at<cv::Vec3b>(y, x) = big.at<cv::Vec3b>(y * 900 / 512, x * 1600 / 512);
    }
  }
  PdqHasher hasher;
  EXPECT_EQ(hasher.Hash(View(big)).hash, hasher.Hash(View(sampled)).hash);
}

TEST(PdqTest, DihedralHashesMatchRotatedPixels) {
  // A photograph rotated in pixel space matches (distance <= 31) the
  // dihedral hash derived from the original's DCT, and not the original.
  // They are not identical: the decimation grid is not symmetric under
  // rotation; the reference's own rotated bridge files are 0-18 bits from
  // its derived hashes.
  const auto jpeg = testing::ReadTestFile("pdq/bridge-mods/square-512x512.jpg");
  cv::Mat square = cv::imdecode(jpeg, cv::IMREAD_COLOR);
  ASSERT_EQ(square.cols, 512);
  PdqHasher hasher;
  const PdqResult original = hasher.Hash(View(square), /*dihedral=*/true);
  struct Case {
    Dihedral variant;
    int rotate_code;  // -1: flip instead
    int flip_code;
  };
  const Case cases[] = {
      {Dihedral::kRotate90, cv::ROTATE_90_COUNTERCLOCKWISE, 0},
      {Dihedral::kRotate180, cv::ROTATE_180, 0},
      {Dihedral::kRotate270, cv::ROTATE_90_CLOCKWISE, 0},
      {Dihedral::kFlipX, -1, 0},
      {Dihedral::kFlipY, -1, 1},
  };
  for (const Case& c : cases) {
    cv::Mat moved;
    if (c.rotate_code >= 0) {
      cv::rotate(square, moved, c.rotate_code);
    } else {
      cv::flip(square, moved, c.flip_code);
    }
    const PdqResult r = hasher.Hash(View(moved));
    EXPECT_LE(HammingDistance(r.hash, original.dihedral[static_cast<int>(c.variant)]),
              kPdqMatchThreshold)
        << DihedralName(c.variant);
    EXPECT_GT(HammingDistance(r.hash, original.hash), 64) << DihedralName(c.variant);
  }
  cv::Mat transposed = square.t();
  EXPECT_LE(HammingDistance(hasher.Hash(View(transposed)).hash,
                            original.dihedral[static_cast<int>(Dihedral::kFlipPlus1)]),
            kPdqMatchThreshold);
}

TEST(PdqTest, NamesOfDihedralVariants) {
  EXPECT_EQ(DihedralName(Dihedral::kOriginal), "original");
  EXPECT_EQ(DihedralName(Dihedral::kRotate270), "rotate270");
  EXPECT_EQ(DihedralName(Dihedral::kFlipPlus1), "flip_plus1");
  EXPECT_EQ(DihedralName(Dihedral::kFlipMinus1), "flip_minus1");
}

}  // namespace
}  // namespace bantay::models
