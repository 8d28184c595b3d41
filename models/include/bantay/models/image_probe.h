// Image format detection and header probing, without decoding.
//
// The format is told by content (magic bytes), never by a file name. The
// dimensions come from the header alone, so that a decompression bomb (a
// small file declaring a huge picture) is refused before any pixel buffer is
// allocated.
//
// Thread safety: pure functions.
#ifndef BANTAY_MODELS_IMAGE_PROBE_H_
#define BANTAY_MODELS_IMAGE_PROBE_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "bantay/models/status.h"

namespace bantay::models {

enum class ImageFormat { kUnknown, kJpeg, kPng, kWebp, kBmp, kTiff };

// "jpeg", "png", "webp", "bmp", "tiff" or "unknown".
std::string_view ImageFormatName(ImageFormat format);

// The format whose signature the bytes start with, or kUnknown.
ImageFormat DetectImageFormat(std::span<const uint8_t> bytes);

struct ImageInfo {
  ImageFormat format = ImageFormat::kUnknown;
  int64_t width = 0;   // as stored, before any EXIF orientation
  int64_t height = 0;
  // A tiled TIFF's tile size (0 otherwise). The decoder allocates a whole
  // tile, whatever the image's size, so a pixel limit applies to it too.
  int64_t tile_width = 0;
  int64_t tile_height = 0;
  // A TIFF in strips: its RowsPerStrip as given (0 when absent or tiled).
  // The decoder allocates a strip of width x RowsPerStrip pixels (4 bytes
  // each), even when RowsPerStrip is more than the image's height.
  int64_t strip_rows = 0;
};

// Reads the format and the stored dimensions from the header, as the
// decoder will read them: where a header could be read two ways (a TIFF
// field given twice, or in a type that the decoder reads from elsewhere in
// the file), it is refused, so that the size checked is the size decoded.
// A WebP header is read with libwebp as OpenCV's WebP decoder reads it (and
// picks it): one that decoder would not take is refused here.
// Errors: kUnsupportedFormat (unknown signature; an animated WebP),
// kCorruptData (a header that is truncated, declares zero or negative
// dimensions, is ambiguous, or that libwebp refuses).
Result<ImageInfo> ProbeImage(std::span<const uint8_t> bytes);

// A JPEG is complete when an end-of-image marker follows its first scan.
// libjpeg decodes a truncated file without failing (it pads the missing
// part with grey and warns), so truncation is checked here. kCorruptData
// when the marker is missing.
Status CheckJpegComplete(std::span<const uint8_t> bytes);

// The number of scans of a JPEG: start-of-scan markers (FF DA) from the
// first scan on, counted without decoding (0 when there is no scan). A
// progressive (or multi-scan) JPEG may repeat scans without limit and each
// costs the decoder a pass over the whole picture, so a file of a few
// kilobytes can keep a decoder busy for minutes; libjpeg itself sets no
// limit (libjpeg-turbo's TurboJPEG API refuses more than 500 scans when
// asked to). An FF DA pair in a table segment between scans is counted too:
// the count may be high for an odd file, never low.
size_t CountJpegScans(std::span<const uint8_t> bytes);

}  // namespace bantay::models

#endif  // BANTAY_MODELS_IMAGE_PROBE_H_
