// Letterbox and pillarbox trimming: finding the content rectangle of a frame
// whose uniform borders (black bars, or bars of any solid colour: grey,
// sepia, white) were added when it was fitted into another aspect ratio, so
// that it is hashed as its unbordered original was. A pillarboxed copy of a
// video hashes far from the original (on the reference's chair and pattern
// videos, no frame within distance 31); trimmed, it matches again (figures
// in tests/models/border_trim_test.cc).
//
// The rule. Each side is scanned from the edge inwards, one line (a row for
// top and bottom, a column for left and right) at a time:
//   - the side's border colour is the per-channel median of its first
//     min_border lines;
//   - a line belongs to the border when at least line_fraction of its pixels
//     are within `tolerance` of the border colour in every channel (so video
//     and JPEG noise, and a logo, caption or thin crossing line covering
//     less than 1 - line_fraction of it, do not end the border);
//   - up to max_gap lines that do not belong to it (a thin line parallel to
//     the edge, the rows of a logo) are passed over when a border line
//     follows them; the border ends after its last border line.
// Guards, so that real content is not trimmed away:
//   - a border must be at least min_border lines thick (a thin frame line
//     drawn around a picture is left alone);
//   - it must end at an edge: within min_border lines after it, some line
//     has at least edge_fraction of its pixels further than edge_contrast
//     from the border colour (a gradient that fades to black, or a dark
//     scene where a small bright object sits on a dark background, has no
//     such edge and is left whole);
//   - borders are trimmed in pairs: top and bottom together, left and right
//     together, both sides at least min_border thick and of the same colour
//     (within tolerance); a bar on one side only is left alone;
//   - the content keeps at least min_content_fraction of the width and of
//     the height (a solid image, or an almost solid one, is left whole).
// Letterbox and pillarbox at once (windowbox) are found by looking for rows
// and columns a second time inside what the first pass kept.
//
// What it cannot tell apart: content that itself looks like bars, e.g. an
// object photographed against a perfectly uniform background with sharp
// margins on two opposite sides, or a test card with black sides (the
// reference's test-padded-dimensions video), is trimmed like a letterboxed
// frame. And a hash list may hold hashes of bordered copies (the reference
// publishes chair-orig-22-sd-bar with its bars): a trimmed frame no longer
// matches those. So trimming is opt-in (HashOptions::trim_borders,
// VideoHashOptions::trim_borders), for frames where bars are expected
// (streams, re-encoded video), and a matcher should query the untrimmed hash
// as well (ImageHashes::untrimmed).
//
// Cost (one core, -O3): 0.2 ms for a letterboxed 640x360 frame, 0.8 ms at
// 1920x1080, 25-110 us for frames without bars; a uniform frame (a camera
// that is off) is the worst case, 1 ms at 640x360 and 2.8 ms at 1080p.
//
// Thread safety: FindContentRect is a pure function of its arguments.
#ifndef BANTAY_MODELS_BORDER_TRIM_H_
#define BANTAY_MODELS_BORDER_TRIM_H_

#include "bantay/models/pdq.h"

namespace bantay::models {

struct BorderTrimOptions {
  // Largest difference, in any channel, between a border pixel and the
  // border colour (0..255).
  int tolerance = 16;
  // Smallest fraction of a line's pixels within tolerance for the line to
  // belong to the border.
  double line_fraction = 0.9;
  // A border is at least this many lines thick: the larger of the two.
  int min_border_pixels = 4;
  double min_border_fraction = 0.02;  // of the dimension across the border
  // Lines that do not belong to the border passed over when a border line
  // follows: the larger of the two.
  int max_gap_pixels = 2;
  double max_gap_fraction = 0.01;
  // The edge after a border: this fraction of a line's pixels further than
  // edge_contrast (any channel) from the border colour.
  int edge_contrast = 32;
  double edge_fraction = 0.25;
  // The content keeps at least this fraction of the width and of the height.
  double min_content_fraction = 0.25;
};

// A rectangle in pixel coordinates: columns [x, x + width), rows
// [y, y + height).
struct ContentRect {
  int x = 0;
  int y = 0;
  int width = 0;
  int height = 0;

  bool operator==(const ContentRect&) const = default;
};

// The content rectangle of `pixels` (1, 3 or 4 channels; a fourth channel
// is ignored) after removing borders as described above; the whole image
// when it has none (or is empty, or has invalid options). Reads the pixels
// only; allocates nothing proportional to the image.
ContentRect FindContentRect(const PixelView& pixels,
                            const BorderTrimOptions& options = {});

// The part of `pixels` inside `rect` (which must lie inside it), sharing
// its memory.
PixelView CropPixelView(const PixelView& pixels, const ContentRect& rect);

}  // namespace bantay::models

#endif  // BANTAY_MODELS_BORDER_TRIM_H_
