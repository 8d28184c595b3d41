#include "bantay/models/border_trim.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "bantay/models/image_hasher.h"
#include "bantay/models/video_hasher.h"
#include "test_images.h"

namespace bantay::models {

void PrintTo(const ContentRect& r, std::ostream* os) {
  *os << "{x " << r.x << ", y " << r.y << ", " << r.width << "x" << r.height
      << "}";
}

namespace {

// Measured once (decoding and hashing are deterministic): PDQ distance
// between a 640x360 pattern letterboxed to 640x480 and the pattern itself,
// and between a fast-mode trimmed hash and the compatible hash of the
// unbordered picture.
constexpr int kUntrimmedDistance = 92;
constexpr int kFastTrimmedDistance = 4;
// Of the first 90 frames of pattern-sd-grey-bar, trimmed and scaled to
// 128x128, how many match the full-size hashes of its original.
constexpr int kDownscaledTrimmedMatching = 86;

using testing::Encode;
using testing::MakePattern;
using testing::TestDataPath;

PixelView View(const cv::Mat& m) {
  return PixelView{m.data, m.cols, m.rows, m.channels(), m.step[0], false};
}

ContentRect Find(const cv::Mat& m, const BorderTrimOptions& options = {}) {
  return FindContentRect(View(m), options);
}

ContentRect Whole(const cv::Mat& m) { return {0, 0, m.cols, m.rows}; }

// `content` inside bars of the given thickness and colour.
cv::Mat Framed(const cv::Mat& content, int top, int bottom, int left, int right,
               cv::Scalar colour) {
  cv::Mat out;
  cv::copyMakeBorder(content, out, top, bottom, left, right,
                     cv::BORDER_CONSTANT, colour);
  return out;
}

cv::Mat Jpeg(const cv::Mat& m, int quality) {
  return cv::imdecode(Encode(m, ".jpg", {cv::IMWRITE_JPEG_QUALITY, quality}),
                      cv::IMREAD_COLOR);
}

// Benign generated content of a natural-image kind: smooth blobs, texture
// and edges, no uniform rows or columns.
cv::Mat Textured(int width, int height, uint32_t seed) {
  std::mt19937 rng(seed);
  // OpenCV's global generator, seeded here: its state otherwise depends on
  // the tests run before in the same process.
  cv::theRNG().state = seed;
  cv::Mat noise(height / 8 + 1, width / 8 + 1, CV_8UC3);
  cv::randu(noise, cv::Scalar::all(30), cv::Scalar::all(230));
  cv::Mat smooth;
  cv::resize(noise, smooth, {width, height}, 0, 0, cv::INTER_CUBIC);
  cv::Mat grain(height, width, CV_8UC3);
  cv::randn(grain, cv::Scalar::all(0), cv::Scalar::all(12));
  cv::Mat out = smooth + grain;
  cv::circle(out, {width / 3, height / 2}, std::min(width, height) / 6,
             {40, 80, 200}, 3);
  return out;
}

// Additive Gaussian noise (video grain) of standard deviation sd, signed.
cv::Mat WithNoise(const cv::Mat& m, double sd, uint64_t seed) {
  cv::Mat noise(m.size(), CV_16SC3);
  cv::RNG rng(seed);
  rng.fill(noise, cv::RNG::NORMAL, 0, sd);
  cv::Mat wide;
  m.convertTo(wide, CV_16SC3);
  cv::Mat out;
  cv::Mat(wide + noise).convertTo(out, CV_8UC3);
  return out;
}

// The found rectangle holds the whole true content and exceeds it by at
// most `slack` pixels on each side.
void ExpectAround(const ContentRect& found, const ContentRect& truth, int slack,
                  const std::string& what) {
  EXPECT_LE(found.x, truth.x) << what;
  EXPECT_LE(found.y, truth.y) << what;
  EXPECT_GE(found.x + found.width, truth.x + truth.width) << what;
  EXPECT_GE(found.y + found.height, truth.y + truth.height) << what;
  EXPECT_GE(found.x, truth.x - slack) << what;
  EXPECT_GE(found.y, truth.y - slack) << what;
  EXPECT_LE(found.x + found.width, truth.x + truth.width + slack) << what;
  EXPECT_LE(found.y + found.height, truth.y + truth.height + slack) << what;
}

// --- bars found exactly
// ---------------------------------------------------------------

TEST(BorderTrimTest, BlackLetterboxExact) {
  const cv::Mat frame =
      Framed(MakePattern(640, 360), 60, 60, 0, 0, cv::Scalar::all(0));
  EXPECT_EQ(Find(frame), (ContentRect{0, 60, 640, 360}));
}

TEST(BorderTrimTest, PillarboxOfAnyColourExact) {
  const cv::Mat content = Textured(480, 480, 1);
  // B, G, R: black, grey, sepia, white, red, dark blue.
  for (const cv::Scalar& colour :
       {cv::Scalar(0, 0, 0), cv::Scalar(128, 128, 128),
        cv::Scalar(94, 126, 158), cv::Scalar(255, 255, 255),
        cv::Scalar(0, 0, 200), cv::Scalar(60, 10, 10)}) {
    const cv::Mat frame = Framed(content, 0, 0, 80, 80, colour);
    EXPECT_EQ(Find(frame), (ContentRect{80, 0, 480, 480})) << colour;
  }
}

TEST(BorderTrimTest, UnequalOppositeBarsExact) {
  const cv::Mat frame =
      Framed(MakePattern(500, 300), 37, 52, 21, 14, cv::Scalar::all(16));
  EXPECT_EQ(Find(frame), (ContentRect{21, 37, 500, 300}));
}

TEST(BorderTrimTest, WindowboxAllFourSides) {
  const cv::Mat content = Textured(400, 240, 2);
  EXPECT_EQ(Find(Framed(content, 40, 40, 60, 60, cv::Scalar::all(0))),
            (ContentRect{60, 40, 400, 240}));
  // Letterbox bars of one colour inside pillarbox bars of another: found
  // on the second look at the rows, once the columns are gone.
  const cv::Mat inner =
      Framed(content, 40, 40, 0, 0, cv::Scalar(128, 128, 128));
  const cv::Mat frame = Framed(inner, 0, 0, 120, 120, cv::Scalar::all(0));
  EXPECT_EQ(Find(frame), (ContentRect{120, 40, 400, 240}));
}

TEST(BorderTrimTest, GreyAndFourChannelViews) {
  const cv::Mat frame =
      Framed(Textured(320, 240, 3), 30, 30, 40, 40, cv::Scalar::all(0));
  cv::Mat grey, bgra;
  cv::cvtColor(frame, grey, cv::COLOR_BGR2GRAY);
  cv::cvtColor(frame, bgra, cv::COLOR_BGR2BGRA);
  const ContentRect expected{40, 30, 320, 240};
  EXPECT_EQ(Find(frame), expected);
  EXPECT_EQ(Find(grey), expected);
  EXPECT_EQ(Find(bgra), expected);
  // A view into a larger buffer (row stride wider than the row).
  cv::Mat wide = cv::Mat::zeros(frame.rows, frame.cols + 50, CV_8UC3);
  frame.copyTo(wide(cv::Rect(0, 0, frame.cols, frame.rows)));
  PixelView view = View(wide);
  view.width = frame.cols;
  EXPECT_EQ(FindContentRect(view), expected);
}

TEST(BorderTrimTest, LargeFramesAreSampledButExact) {
  // 1920 px rows are read every second pixel; bars still found exactly.
  const cv::Mat frame =
      Framed(Textured(1440, 1080, 4), 0, 0, 240, 240, cv::Scalar::all(0));
  EXPECT_EQ(Find(frame), (ContentRect{240, 0, 1440, 1080}));
}

// --- noise, compression, logos and lines in the bars
// ------------------------------------

TEST(BorderTrimTest, VideoGrainInBarsAndContent) {
  const cv::Mat frame =
      Framed(Textured(480, 360, 5), 60, 60, 0, 0, cv::Scalar::all(8));
  for (double sd : {1.0, 3.0, 5.0}) {
    EXPECT_EQ(Find(WithNoise(frame, sd, 7)), (ContentRect{0, 60, 480, 360}))
        << sd;
  }
}

TEST(BorderTrimTest, JpegCompressionWithinTwoPixels) {
  // Bars on 8-pixel block boundaries and off them (ringing in the block
  // that straddles the edge; chroma upsampling blurs even an aligned edge by
  // a pixel); the rectangle found holds all the content and is at most 2
  // pixels larger on any side at quality 50 and over, 5 at quality 30 (a
  // sepia bar: measured 77 -> 72).
  struct Case {
    int top, bottom, left, right;
  };
  for (const Case c :
       {Case{64, 64, 0, 0}, Case{61, 59, 0, 0}, Case{0, 0, 80, 80},
        Case{0, 0, 77, 83}, Case{45, 43, 67, 70}}) {
    for (const cv::Scalar& colour :
         {cv::Scalar::all(0), cv::Scalar(94, 126, 158)}) {
      const cv::Mat frame = Framed(MakePattern(480, 352), c.top, c.bottom,
                                   c.left, c.right, colour);
      for (int quality : {95, 75, 50, 30}) {
        const std::string what =
            "bars " + std::to_string(c.top) + "/" + std::to_string(c.bottom) +
            "/" + std::to_string(c.left) + "/" + std::to_string(c.right) +
            " q" + std::to_string(quality) + " colour " +
            std::to_string(static_cast<int>(colour[0]));
        ExpectAround(Find(Jpeg(frame, quality)), {c.left, c.top, 480, 352},
                     quality >= 50 ? 2 : 5, what);
      }
    }
  }
}

TEST(BorderTrimTest, LogoInTheBarIsPassedOver) {
  cv::Mat frame =
      Framed(Textured(640, 360, 6), 60, 60, 0, 0, cv::Scalar::all(0));
  // A channel logo (56 px, under a tenth of the row) in the top bar, a
  // caption in the bottom bar.
  cv::rectangle(frame, {560, 10}, {615, 45}, {255, 255, 255}, cv::FILLED);
  cv::circle(frame, {587, 27}, 12, {0, 0, 200}, cv::FILLED);
  cv::putText(frame, "BANTAY", {250, 465}, cv::FONT_HERSHEY_SIMPLEX, 0.6,
              {230, 230, 230}, 1);
  EXPECT_EQ(Find(frame), (ContentRect{0, 60, 640, 360}));
  // Were every pixel of a bar line required, the bar would end at the logo.
  BorderTrimOptions every_pixel;
  every_pixel.line_fraction = 1;
  EXPECT_EQ(Find(frame, every_pixel), (ContentRect{0, 0, 640, 480}));
}

TEST(BorderTrimTest, ThinLinesInTheBarArePassedOver) {
  cv::Mat frame =
      Framed(Textured(640, 360, 8), 60, 60, 0, 0, cv::Scalar::all(0));
  // A line along the bar (two rows, the whole width) and lines across it.
  cv::line(frame, {0, 20}, {639, 20}, {128, 128, 128}, 1);
  cv::line(frame, {0, 21}, {639, 21}, {128, 128, 128}, 1);
  cv::line(frame, {320, 0}, {320, 59}, {255, 255, 255}, 2);
  cv::line(frame, {100, 420}, {100, 479}, {255, 255, 255}, 1);
  EXPECT_EQ(Find(frame), (ContentRect{0, 60, 640, 360}));
  BorderTrimOptions no_gaps;
  no_gaps.max_gap_pixels = 0;
  no_gaps.max_gap_fraction = 0;
  EXPECT_EQ(Find(frame, no_gaps), (ContentRect{0, 20, 640, 400}));
  // The same on a line at the very edge (a border colour taken from the
  // outer line alone would be the line's).
  cv::line(frame, {0, 479}, {639, 479}, {200, 200, 200}, 1);
  EXPECT_EQ(Find(frame), (ContentRect{0, 60, 640, 360}));
}

// --- content left whole
// ---------------------------------------------------------------

TEST(BorderTrimTest, PicturesWithoutBarsAreLeftWhole) {
  for (const cv::Mat& m :
       {MakePattern(640, 480), MakePattern(300, 500), Textured(512, 512, 9),
        Jpeg(MakePattern(640, 480), 50)}) {
    EXPECT_EQ(Find(m), Whole(m));
  }
  cv::Mat random(240, 320, CV_8UC3);
  cv::theRNG().state = 20261205;  // not left to the tests before
  cv::randu(random, cv::Scalar::all(0), cv::Scalar::all(256));
  EXPECT_EQ(Find(random), Whole(random));
}

TEST(BorderTrimTest, ReferencePhotographsAreLeftWhole) {
  // The 44 images of the PDQ reference set (photographs, edits of them,
  // every colour mode): none has bars, and none is trimmed.
  const auto expected = testing::ReadExpectedCsv("pdq/expected-pdq.csv");
  ASSERT_EQ(expected.size(), 44u);
  HashOptions options;
  options.trim_borders = true;
  options.digests = false;
  ImageHasher hasher(options);
  for (const auto& [path, columns] : expected) {
    Result<ImageHashes> h = hasher.Hash(testing::ReadTestFile("pdq/" + path));
    ASSERT_TRUE(h.ok()) << path;
    EXPECT_EQ(h->content, (ContentRect{0, 0, h->width, h->height})) << path;
    EXPECT_FALSE(h->has_untrimmed) << path;
    EXPECT_EQ(h->pdq.hash.ToHex(), columns[0]) << path;
  }
}

TEST(BorderTrimTest, SolidImagesAreLeftWhole) {
  for (const cv::Scalar& colour :
       {cv::Scalar::all(0), cv::Scalar::all(255), cv::Scalar::all(128),
        cv::Scalar(30, 90, 200)}) {
    const cv::Mat solid(360, 640, CV_8UC3, colour);
    EXPECT_EQ(Find(solid), Whole(solid)) << colour;
    EXPECT_EQ(Find(WithNoise(solid, 3, 11)), Whole(solid)) << colour;
    EXPECT_EQ(Find(Jpeg(solid, 40)), Whole(solid)) << colour;
  }
  // Almost solid: a small object in the middle leaves less than a quarter
  // of each dimension between the "bars".
  cv::Mat dot(480, 640, CV_8UC3, cv::Scalar::all(0));
  cv::circle(dot, {320, 240}, 50, {255, 255, 255}, cv::FILLED);
  EXPECT_EQ(Find(dot), Whole(dot));
}

TEST(BorderTrimTest, GradientsAreLeftWhole) {
  cv::Mat vertical(480, 640, CV_8UC3), across(480, 640, CV_8UC3),
      valley(480, 640, CV_8UC3), radial(480, 640, CV_8UC3);
  for (int y = 0; y < 480; ++y) {
    for (int x = 0; x < 640; ++x) {
      vertical.at<cv::Vec3b>(y, x) =
          cv::Vec3b::all(static_cast<uint8_t>(y * 255 / 479));
      across.at<cv::Vec3b>(y, x) =
          cv::Vec3b(static_cast<uint8_t>(x * 255 / 639), 100,
                    static_cast<uint8_t>(255 - x * 255 / 639));
      // Black at both ends, bright in the middle: rows fade to the same
      // colour at the top and the bottom, with no edge.
      valley.at<cv::Vec3b>(y, x) = cv::Vec3b::all(
          static_cast<uint8_t>(255 * std::sin(3.14159 * y / 479)));
      const double r = std::hypot(x - 320.0, y - 240.0) / 400.0;
      radial.at<cv::Vec3b>(y, x) =
          cv::Vec3b::all(static_cast<uint8_t>(255 * (1 - std::min(r, 1.0))));
    }
  }
  for (const cv::Mat& m : {vertical, across, valley, radial}) {
    EXPECT_EQ(Find(m), Whole(m));
    EXPECT_EQ(Find(Jpeg(m, 60)), Whole(m));
  }
  // The valley's rows are uniform: only the edge guard keeps them.
  BorderTrimOptions no_edge_guard;
  no_edge_guard.edge_contrast = 16;
  EXPECT_EQ(Find(valley, no_edge_guard), (ContentRect{0, 14, 640, 452}));
}

TEST(BorderTrimTest, DarkScenesAreLeftWhole) {
  // A dim room: smooth dark shapes, grain, a lamp a fifth of the width
  // across in the middle; and the same without the lamp.
  cv::Mat small(12, 16, CV_8UC3);
  // OpenCV's global generator, seeded here: its state otherwise depends on
  // the tests run before in the same process.
  cv::theRNG().state = 20261204;
  cv::randu(small, cv::Scalar::all(6), cv::Scalar::all(26));
  cv::Mat dark;
  cv::resize(small, dark, {640, 480}, 0, 0, cv::INTER_CUBIC);
  const cv::Mat grainy = WithNoise(dark, 2, 13);
  EXPECT_EQ(Find(grainy), Whole(grainy));
  cv::Mat lamp = grainy.clone();
  cv::ellipse(lamp, {320, 240}, {64, 90}, 0, 0, 360, {180, 220, 240},
              cv::FILLED);
  EXPECT_EQ(Find(lamp), Whole(lamp));
  EXPECT_EQ(Find(Jpeg(lamp, 70)), Whole(lamp));
  // What keeps it whole is the edge guard: the lamp covers under a quarter
  // of the rows that meet it. Without it the rows above and below the lamp
  // go as bars.
  BorderTrimOptions no_edge_guard;
  no_edge_guard.edge_fraction = 0.1;
  EXPECT_EQ(Find(lamp, no_edge_guard), (ContentRect{0, 162, 640, 157}));
}

TEST(BorderTrimTest, ThinFrameLineIsLeftAlone) {
  for (int thickness : {1, 3, 6}) {
    cv::Mat framed = Textured(640, 480, 14);
    cv::rectangle(framed, {0, 0}, {639, 479}, {0, 0, 0}, 2 * thickness - 1);
    // Drawn centred on the outline: `thickness` pixels inside the image.
    EXPECT_EQ(Find(framed), Whole(framed)) << thickness;
    cv::rectangle(framed, {0, 0}, {639, 479}, {255, 255, 255},
                  2 * thickness - 1);
    EXPECT_EQ(Find(framed), Whole(framed)) << thickness;
  }
}

TEST(BorderTrimTest, BarsMustComeInPairsOfOneColour) {
  const cv::Mat content = Textured(640, 400, 15);
  // One side only.
  EXPECT_EQ(Find(Framed(content, 80, 0, 0, 0, cv::Scalar::all(0))),
            (ContentRect{0, 0, 640, 480}));
  // Two sides of different colours.
  cv::Mat two = Framed(content, 40, 40, 0, 0, cv::Scalar::all(0));
  two(cv::Rect(0, 440, 640, 40)).setTo(cv::Scalar::all(255));
  EXPECT_EQ(Find(two), Whole(two));
  // Both present, within tolerance of each other: trimmed.
  two(cv::Rect(0, 440, 640, 40)).setTo(cv::Scalar::all(12));
  EXPECT_EQ(Find(two), (ContentRect{0, 40, 640, 400}));
}

TEST(BorderTrimTest, ThicknessAndContentGuards) {
  const cv::Mat content = Textured(640, 400, 16);
  // A bar must be at least 2% of the height: 9 rows of 418
  // (ceil(8.36)), but 8 rows of 416 are under ceil(8.32) = 9.
  EXPECT_EQ(Find(Framed(content, 8, 8, 0, 0, cv::Scalar::all(0))),
            (ContentRect{0, 0, 640, 416}));
  EXPECT_EQ(Find(Framed(content, 9, 9, 0, 0, cv::Scalar::all(0))),
            (ContentRect{0, 9, 640, 400}));
  // Content must keep a quarter of the height: 100 of 400 rows is enough,
  // 99 of 400 is not.
  const cv::Mat strip = Textured(640, 100, 17);
  EXPECT_EQ(Find(Framed(strip, 150, 150, 0, 0, cv::Scalar::all(0))),
            (ContentRect{0, 150, 640, 100}));
  const cv::Mat thinner = Textured(640, 99, 17);
  EXPECT_EQ(Find(Framed(thinner, 150, 151, 0, 0, cv::Scalar::all(0))),
            (ContentRect{0, 0, 640, 400}));
  // Options move the guards.
  BorderTrimOptions options;
  options.min_border_pixels = 8;
  options.min_border_fraction = 0;
  EXPECT_EQ(Find(Framed(content, 8, 8, 0, 0, cv::Scalar::all(0)), options),
            (ContentRect{0, 8, 640, 400}));
  options.min_content_fraction = 0.2;
  EXPECT_EQ(Find(Framed(thinner, 150, 151, 0, 0, cv::Scalar::all(0)), options),
            (ContentRect{0, 150, 640, 99}));
}

TEST(BorderTrimTest, DegenerateInputsGiveTheWholeImage) {
  EXPECT_EQ(FindContentRect(PixelView{}), (ContentRect{0, 0, 0, 0}));
  const cv::Mat tiny =
      Framed(MakePattern(4, 4), 2, 2, 2, 2, cv::Scalar::all(0));
  EXPECT_EQ(Find(tiny), Whole(tiny));
  const cv::Mat frame =
      Framed(MakePattern(320, 200), 20, 20, 0, 0, cv::Scalar::all(0));
  PixelView two_channels = View(frame);
  two_channels.channels = 2;
  EXPECT_EQ(FindContentRect(two_channels), Whole(frame));
  PixelView short_stride = View(frame);
  short_stride.row_stride = 100;
  EXPECT_EQ(FindContentRect(short_stride), Whole(frame));
  for (auto bad : {+[](BorderTrimOptions& o) { o.tolerance = -1; },
                   +[](BorderTrimOptions& o) { o.line_fraction = 0; },
                   +[](BorderTrimOptions& o) { o.min_border_pixels = 0; },
                   +[](BorderTrimOptions& o) { o.edge_fraction = 1.5; },
                   +[](BorderTrimOptions& o) { o.min_content_fraction = 0; }}) {
    BorderTrimOptions options;
    bad(options);
    EXPECT_EQ(Find(frame, options), Whole(frame));
  }
  EXPECT_EQ(Find(frame), (ContentRect{0, 20, 320, 200}));
}

TEST(BorderTrimTest, CropPixelView) {
  const cv::Mat frame =
      Framed(MakePattern(320, 200), 20, 20, 30, 30, cv::Scalar::all(0));
  const PixelView view = View(frame);
  const PixelView crop = CropPixelView(view, {30, 20, 320, 200});
  EXPECT_EQ(crop.data, frame.ptr<uint8_t>(20) + 30 * 3);
  EXPECT_EQ(crop.width, 320);
  EXPECT_EQ(crop.height, 200);
  EXPECT_EQ(crop.channels, 3);
  EXPECT_EQ(crop.row_stride, view.row_stride);
}

// --- in image hashing
// ------------------------------------------------------------------

TEST(BorderTrimTest, ImageHasherHashesTheContentOnly) {
  const cv::Mat content = MakePattern(640, 360);
  const cv::Mat frame = Framed(content, 60, 60, 0, 0, cv::Scalar::all(0));
  const std::vector<uint8_t> png = Encode(frame, ".png");

  ImageHasher plain;
  Result<ImageHashes> content_hash = plain.Hash(Encode(content, ".png"));
  Result<ImageHashes> untrimmed = plain.Hash(png);
  ASSERT_TRUE(content_hash.ok() && untrimmed.ok());
  EXPECT_EQ(untrimmed->content, (ContentRect{0, 0, 640, 480}));
  EXPECT_FALSE(untrimmed->has_untrimmed);

  HashOptions options;
  options.trim_borders = true;
  ImageHasher trimming(options);
  Result<ImageHashes> trimmed = trimming.Hash(png);
  ASSERT_TRUE(trimmed.ok());
  EXPECT_EQ(trimmed->content, (ContentRect{0, 60, 640, 360}));
  EXPECT_EQ(trimmed->width, 640);
  EXPECT_EQ(trimmed->height, 480);
  // The same pixels as the unbordered picture: the same hash, bit for bit.
  EXPECT_EQ(trimmed->pdq.hash, content_hash->pdq.hash);
  EXPECT_EQ(trimmed->pdq.quality, content_hash->pdq.quality);
  EXPECT_EQ(HammingDistance(untrimmed->pdq.hash, content_hash->pdq.hash),
            kUntrimmedDistance);
  // The whole image's hash comes along, for lists made from bordered copies.
  EXPECT_TRUE(trimmed->has_untrimmed);
  EXPECT_EQ(trimmed->untrimmed.hash, untrimmed->pdq.hash);
  EXPECT_EQ(trimmed->untrimmed.quality, untrimmed->pdq.quality);

  // A picture without bars hashes as without the option.
  Result<ImageHashes> again = trimming.Hash(Encode(content, ".png"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->content, (ContentRect{0, 0, 640, 360}));
  EXPECT_EQ(again->pdq.hash, content_hash->pdq.hash);
  EXPECT_FALSE(again->has_untrimmed);
}

TEST(BorderTrimTest, FastModeTrimsInReducedPixels) {
  const cv::Mat content = MakePattern(1600, 900);
  const cv::Mat frame = Framed(content, 0, 0, 200, 200, cv::Scalar::all(0));
  const std::vector<uint8_t> jpeg =
      Encode(frame, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 90});
  HashOptions options;
  options.fast = true;
  options.trim_borders = true;
  ImageHasher fast(options);
  Result<ImageHashes> h = fast.Hash(jpeg);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->decode_scale, 2);  // 2000x900 -> 1000x450
  // 100 reduced pixels of bar on each side, in full-size pixels.
  EXPECT_EQ(h->content, (ContentRect{200, 0, 1600, 900}));
  ASSERT_TRUE(h->has_untrimmed);
  options.trim_borders = false;
  ImageHasher fast_whole(options);
  Result<ImageHashes> whole = fast_whole.Hash(jpeg);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(h->untrimmed.hash, whole->pdq.hash);
  ImageHasher compatible;
  Result<ImageHashes> reference =
      compatible.Hash(Encode(content, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 90}));
  ASSERT_TRUE(reference.ok());
  EXPECT_EQ(HammingDistance(h->pdq.hash, reference->pdq.hash),
            kFastTrimmedDistance);
}

// --- the reference videos
// ----------------------------------------------------------------
//
// Pillarboxed edits of the reference's chair and pattern videos (480x720,
// 32-pixel black bars left and right) hashed with and without trimming,
// against the frame hashes of their unbordered 720x1280 originals
// (tests/data/vpdq, see its README). A frame matches a video when it is
// within distance 31 of some frame of it; all frames count, whatever their
// quality. Decoding is deterministic, so the counts are exact.

std::vector<VideoFrameHash> HashFile(const std::string& name) {
  std::ifstream in(TestDataPath("vpdq/" + name));
  EXPECT_TRUE(in.good()) << name;
  std::vector<VideoFrameHash> frames;
  for (std::string line; std::getline(in, line);) {
    Result<VideoFrameHash> f = ParseVideoFrameHash(line);
    EXPECT_TRUE(f.ok()) << line;
    if (f.ok()) frames.push_back(*f);
  }
  return frames;
}

int FramesMatching(const std::vector<VideoFrameHash>& query,
                   const std::vector<VideoFrameHash>& video) {
  int n = 0;
  for (const VideoFrameHash& q : query) {
    n += std::any_of(video.begin(), video.end(), [&](const VideoFrameHash& v) {
      return HammingDistance(q.pdq, v.pdq) <= kPdqMatchThreshold;
    });
  }
  return n;
}

struct ReferenceVideo {
  const char* video;
  const char* original;                // hash file of the unbordered original
  std::vector<const char*> unrelated;  // hash files of unrelated videos
  int frames;
  int frames_trimmed;
  int matching_untrimmed;  // frames matching the original
  int matching_trimmed;
};

class ReferenceVideoTest : public ::testing::TestWithParam<ReferenceVideo> {};

TEST_P(ReferenceVideoTest, MatchRatesWithAndWithoutTrimming) {
  const ReferenceVideo& c = GetParam();
  VideoHashOptions options;
  Result<VideoHashes> untrimmed =
      HashVideoFile(TestDataPath(std::string("vpdq/") + c.video), options);
  options.trim_borders = true;
  Result<VideoHashes> trimmed =
      HashVideoFile(TestDataPath(std::string("vpdq/") + c.video), options);
  ASSERT_TRUE(untrimmed.ok() && trimmed.ok());
  ASSERT_EQ(untrimmed->frames.size(), static_cast<size_t>(c.frames));
  ASSERT_EQ(trimmed->frames.size(), static_cast<size_t>(c.frames));
  EXPECT_EQ(untrimmed->frames_trimmed, 0);
  EXPECT_EQ(trimmed->frames_trimmed, c.frames_trimmed);
  const std::vector<VideoFrameHash> original = HashFile(c.original);
  EXPECT_EQ(FramesMatching(untrimmed->frames, original), c.matching_untrimmed);
  EXPECT_EQ(FramesMatching(trimmed->frames, original), c.matching_trimmed);
  // No frame matches an unrelated video, trimmed or not.
  for (const char* other : c.unrelated) {
    const std::vector<VideoFrameHash> unrelated = HashFile(other);
    EXPECT_EQ(FramesMatching(untrimmed->frames, unrelated), 0) << other;
    EXPECT_EQ(FramesMatching(trimmed->frames, unrelated), 0) << other;
  }
}

constexpr char kChairOriginal[] = "chair-orig-22-hd-no-bar.txt";
constexpr char kPatternOriginal[] = "pattern-hd-no-bar.txt";
constexpr char kDoorknob[] = "doorknob-hd-no-bar.txt";

INSTANTIATE_TEST_SUITE_P(
    Vpdq, ReferenceVideoTest,
    ::testing::Values(
        // Every frame of the bordered edits matches once trimmed, none before.
        ReferenceVideo{"chair-22-sd-grey-bar.mp4",
                       kChairOriginal,
                       {kPatternOriginal, kDoorknob},
                       673,
                       673,
                       0,
                       673},
        ReferenceVideo{"chair-19-sd-bar.mp4",
                       kChairOriginal,
                       {kPatternOriginal, kDoorknob},
                       564,
                       564,
                       0,
                       564},
        ReferenceVideo{"pattern-sd-grey-bar.mp4",
                       kPatternOriginal,
                       {kChairOriginal, kDoorknob},
                       206,
                       206,
                       0,
                       206},
        // A video without bars is not trimmed (its own reference hashes
        // match 87 of its 120 frames either way).
        ReferenceVideo{"doorknob-hd-no-bar.mp4",
                       kDoorknob,
                       {kChairOriginal, kPatternOriginal},
                       120,
                       0,
                       87,
                       87},
        // The cost: a test card whose picture has uniformly black sides
        // (1080x1080, black columns 0-235 and 844-1079) is trimmed too, and
        // then no longer matches hashes made of the whole frame.
        ReferenceVideo{"test-padded-dimensions.mp4",
                       "test-padded-dimensions.txt",
                       {kChairOriginal, kPatternOriginal, kDoorknob},
                       150,
                       150,
                       150,
                       0}),
    [](const ::testing::TestParamInfo<ReferenceVideo>& param) {
      std::string name = param.param.video;
      name = name.substr(0, name.find('.'));
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

TEST(BorderTrimTest, TrimmedFramesNoLongerMatchListsMadeFromBorderedCopies) {
  // The chair original as the reference also published it with its bars
  // (chair-orig-22-sd-bar): the bordered edit matches it untrimmed, and
  // trimmed does not. Hence ImageHashes::untrimmed.
  VideoHashOptions options;
  options.max_frames = 60;
  Result<VideoHashes> untrimmed =
      HashVideoFile(TestDataPath("vpdq/chair-22-sd-grey-bar.mp4"), options);
  options.trim_borders = true;
  Result<VideoHashes> trimmed =
      HashVideoFile(TestDataPath("vpdq/chair-22-sd-grey-bar.mp4"), options);
  ASSERT_TRUE(untrimmed.ok() && trimmed.ok());
  const std::vector<VideoFrameHash> bordered =
      HashFile("chair-orig-22-sd-bar.txt");
  EXPECT_EQ(FramesMatching(untrimmed->frames, bordered), 60);
  EXPECT_EQ(FramesMatching(trimmed->frames, bordered), 0);
}

TEST(BorderTrimTest, TrimmingThenDownscaling) {
  // vPDQ's 128x128 hashes of the trimmed content match the original's.
  VideoHashOptions options;
  options.trim_borders = true;
  options.downscale_to = 128;
  options.max_frames = 90;
  Result<VideoHashes> h =
      HashVideoFile(TestDataPath("vpdq/pattern-sd-grey-bar.mp4"), options);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->frames_trimmed, 90);
  EXPECT_EQ(FramesMatching(h->frames, HashFile(kPatternOriginal)),
            kDownscaledTrimmedMatching);
}

}  // namespace
}  // namespace bantay::models
