#include "bantay/models/border_trim.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace bantay::models {
namespace {

// Lines longer than this are sampled at a regular stride (a 1080p row is
// read every second pixel): the decision needs fractions, not every pixel,
// and this bounds the cost per line.
constexpr int kMaxSamplesPerLine = 1024;

enum class Side { kTop, kBottom, kLeft, kRight };

using Colour = std::array<int, 3>;

// One line of the image (a row or a column inside the current rectangle),
// read as `samples` pixels `step` bytes apart.
struct Line {
  const uint8_t* first = nullptr;
  ptrdiff_t step = 0;
  int samples = 0;
};

class Scanner {
 public:
  Scanner(const PixelView& pixels, const BorderTrimOptions& options)
      : px_(pixels),
        opt_(options),
        colour_channels_(pixels.channels >= 3 ? 3 : 1) {}

  // The thickness of the border on `side` of `rect`, and its colour, or 0
  // when there is none that passes the single-side guards. A border may be
  // at most max_thickness lines thick (else 0: the side is uniform too far).
  int Border(const ContentRect& rect, Side side, int full_dimension,
             int max_thickness, Colour* colour) const {
    const int min_border = std::max(
        opt_.min_border_pixels,
        static_cast<int>(std::ceil(opt_.min_border_fraction * full_dimension)));
    const int max_gap = std::max(
        opt_.max_gap_pixels,
        static_cast<int>(std::ceil(opt_.max_gap_fraction * full_dimension)));
    if (min_border < 1 || min_border > max_thickness) return 0;
    *colour = MedianColour(rect, side, min_border);
    int last = -1;  // the innermost line found to belong to the border
    int gap = 0;
    for (int i = 0; i <= max_thickness; ++i) {
      if (WithinFraction(LineAt(rect, side, i), *colour) >=
          opt_.line_fraction) {
        last = i;
        gap = 0;
      } else if (++gap > max_gap) {
        break;
      }
    }
    const int thickness = last + 1;
    if (thickness < min_border || thickness > max_thickness) return 0;
    // The edge is looked for within min_border lines past the border (JPEG
    // ringing blurs it over a few). No further: a gradient whose first
    // min_border lines are within tolerance of the border colour changes by
    // at most `tolerance` over the next min_border lines, so it shows no
    // edge as long as edge_contrast >= 2 * tolerance.
    const int lines = LinesAcross(rect, side);
    for (int i = thickness; i < std::min(thickness + min_border, lines); ++i) {
      if (BeyondFraction(LineAt(rect, side, i), *colour) >=
          opt_.edge_fraction) {
        return thickness;
      }
    }
    return 0;
  }

  // True when two border colours are the same within tolerance.
  bool SameColour(const Colour& a, const Colour& b) const {
    for (int c = 0; c < colour_channels_; ++c) {
      if (std::abs(a[c] - b[c]) > opt_.tolerance) return false;
    }
    return true;
  }

 private:
  static bool Horizontal(Side side) {
    return side == Side::kTop || side == Side::kBottom;
  }

  // How many lines of this orientation the rectangle holds.
  static int LinesAcross(const ContentRect& rect, Side side) {
    return Horizontal(side) ? rect.height : rect.width;
  }

  // Line i counted inwards from `side` (i < LinesAcross).
  Line LineAt(const ContentRect& rect, Side side, int i) const {
    const auto stride = static_cast<ptrdiff_t>(px_.row_stride);
    const ptrdiff_t channels = px_.channels;
    int x = rect.x;
    int y = rect.y;
    int length = 0;
    ptrdiff_t along = 0;
    switch (side) {
      case Side::kTop:
        y += i;
        break;
      case Side::kBottom:
        y += rect.height - 1 - i;
        break;
      case Side::kLeft:
        x += i;
        break;
      case Side::kRight:
        x += rect.width - 1 - i;
        break;
    }
    if (Horizontal(side)) {
      length = rect.width;
      along = channels;
    } else {
      length = rect.height;
      along = stride;
    }
    const int sample_stride =
        (length + kMaxSamplesPerLine - 1) / kMaxSamplesPerLine;
    Line line;
    line.first = px_.data + y * stride + x * channels;
    line.step = along * sample_stride;
    line.samples = (length + sample_stride - 1) / sample_stride;
    return line;
  }

  // The largest difference over the colour channels.
  int Difference(const uint8_t* p, const Colour& colour) const {
    int d = std::abs(p[0] - colour[0]);
    if (colour_channels_ == 3) {
      d = std::max({d, std::abs(p[1] - colour[1]), std::abs(p[2] - colour[2])});
    }
    return d;
  }

  double WithinFraction(const Line& line, const Colour& colour) const {
    int within = 0;
    const uint8_t* p = line.first;
    for (int k = 0; k < line.samples; ++k, p += line.step) {
      within += Difference(p, colour) <= opt_.tolerance;
    }
    return static_cast<double>(within) / line.samples;
  }

  double BeyondFraction(const Line& line, const Colour& colour) const {
    int beyond = 0;
    const uint8_t* p = line.first;
    for (int k = 0; k < line.samples; ++k, p += line.step) {
      beyond += Difference(p, colour) > opt_.edge_contrast;
    }
    return static_cast<double>(beyond) / line.samples;
  }

  // Per-channel median of the first `lines` lines from `side`.
  Colour MedianColour(const ContentRect& rect, Side side, int lines) const {
    std::array<std::array<int, 256>, 3> histogram{};
    int count = 0;
    for (int i = 0; i < lines; ++i) {
      const Line line = LineAt(rect, side, i);
      const uint8_t* p = line.first;
      for (int k = 0; k < line.samples; ++k, p += line.step) {
        for (int c = 0; c < colour_channels_; ++c) ++histogram[c][p[c]];
      }
      count += line.samples;
    }
    Colour colour{};
    for (int c = 0; c < colour_channels_; ++c) {
      int seen = 0;
      int v = 0;
      while (v < 255 && (seen += histogram[c][v]) * 2 < count) ++v;
      colour[c] = v;
    }
    return colour;
  }

  const PixelView& px_;
  const BorderTrimOptions& opt_;
  const int colour_channels_;
};

bool ValidOptions(const BorderTrimOptions& o) {
  return o.tolerance >= 0 && o.tolerance <= 255 && o.line_fraction > 0 &&
         o.line_fraction <= 1 && o.min_border_pixels >= 1 &&
         o.min_border_fraction >= 0 && o.min_border_fraction <= 1 &&
         o.max_gap_pixels >= 0 && o.max_gap_fraction >= 0 &&
         o.max_gap_fraction <= 1 && o.edge_contrast >= 0 &&
         o.edge_contrast <= 255 && o.edge_fraction > 0 &&
         o.edge_fraction <= 1 && o.min_content_fraction > 0 &&
         o.min_content_fraction <= 1;
}

}  // namespace

ContentRect FindContentRect(const PixelView& pixels,
                            const BorderTrimOptions& options) {
  ContentRect rect{0, 0, std::max(pixels.width, 0), std::max(pixels.height, 0)};
  if (pixels.data == nullptr || pixels.width <= 0 || pixels.height <= 0 ||
      (pixels.channels != 1 && pixels.channels != 3 && pixels.channels != 4) ||
      pixels.row_stride < static_cast<size_t>(pixels.width) * pixels.channels ||
      !ValidOptions(options)) {
    return rect;
  }
  const Scanner scanner(pixels, options);
  const int min_height =
      std::max(1, static_cast<int>(
                      std::ceil(options.min_content_fraction * pixels.height)));
  const int min_width = std::max(
      1,
      static_cast<int>(std::ceil(options.min_content_fraction * pixels.width)));
  // Rows, then columns, then rows again if the columns changed (and so on):
  // the second time finds bars whose lines first crossed bars of another
  // colour (windowbox).
  const auto trim_rows = [&] {
    const int room = rect.height - min_height;
    Colour top_colour{}, bottom_colour{};
    const int top =
        scanner.Border(rect, Side::kTop, pixels.height, room, &top_colour);
    if (top == 0) return false;
    const int bottom = scanner.Border(rect, Side::kBottom, pixels.height, room,
                                      &bottom_colour);
    if (bottom == 0 || top + bottom > room ||
        !scanner.SameColour(top_colour, bottom_colour)) {
      return false;
    }
    rect.y += top;
    rect.height -= top + bottom;
    return true;
  };
  const auto trim_columns = [&] {
    const int room = rect.width - min_width;
    Colour left_colour{}, right_colour{};
    const int left =
        scanner.Border(rect, Side::kLeft, pixels.width, room, &left_colour);
    if (left == 0) return false;
    const int right =
        scanner.Border(rect, Side::kRight, pixels.width, room, &right_colour);
    if (right == 0 || left + right > room ||
        !scanner.SameColour(left_colour, right_colour)) {
      return false;
    }
    rect.x += left;
    rect.width -= left + right;
    return true;
  };
  bool rows_pending = true;
  bool columns_pending = true;
  while (rows_pending || columns_pending) {
    if (rows_pending) {
      rows_pending = false;
      if (trim_rows()) columns_pending = true;
    }
    if (columns_pending) {
      columns_pending = false;
      if (trim_columns()) rows_pending = true;
    }
  }
  return rect;
}

PixelView CropPixelView(const PixelView& pixels, const ContentRect& rect) {
  PixelView out = pixels;
  out.data = pixels.data + static_cast<size_t>(rect.y) * pixels.row_stride +
             static_cast<size_t>(rect.x) * pixels.channels;
  out.width = rect.width;
  out.height = rect.height;
  return out;
}

}  // namespace bantay::models
