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
};

// Reads the format and the stored dimensions from the header. Errors:
// kUnsupportedFormat (unknown signature), kCorruptData (a header that is
// truncated or declares zero or negative dimensions).
Result<ImageInfo> ProbeImage(std::span<const uint8_t> bytes);

// A JPEG is complete when an end-of-image marker follows its first scan.
// libjpeg decodes a truncated file without failing (it pads the missing
// part with grey and warns), so truncation is checked here. kCorruptData
// when the marker is missing.
Status CheckJpegComplete(std::span<const uint8_t> bytes);

}  // namespace bantay::models

#endif  // BANTAY_MODELS_IMAGE_PROBE_H_
