#include "bantay/models/image_probe.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <string>

#include <webp/decode.h>

namespace bantay::models {
namespace {

uint32_t Be16(const uint8_t* p) { return uint32_t{p[0]} << 8 | p[1]; }
uint32_t Be32(const uint8_t* p) { return Be16(p) << 16 | Be16(p + 2); }
uint32_t Le16(const uint8_t* p) { return uint32_t{p[1]} << 8 | p[0]; }
uint32_t Le32(const uint8_t* p) { return Le16(p + 2) << 16 | Le16(p); }

bool StartsWith(std::span<const uint8_t> bytes, const char* magic, size_t n,
                size_t offset = 0) {
  return bytes.size() >= offset + n &&
         std::memcmp(bytes.data() + offset, magic, n) == 0;
}

Error Truncated(ImageFormat format) {
  return Error(ErrorCode::kCorruptData,
               std::string(ImageFormatName(format)) + " header is truncated");
}

Result<ImageInfo> Checked(ImageFormat format, int64_t width, int64_t height) {
  if (width <= 0 || height <= 0) {
    return Error(ErrorCode::kCorruptData,
                 std::string(ImageFormatName(format)) +
                     " header declares an empty or negative size");
  }
  return ImageInfo{format, width, height};
}

// Walks the marker segments up to the first start-of-frame marker (ITU T.81
// B.1.1.3): SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
Result<ImageInfo> ProbeJpeg(std::span<const uint8_t> b) {
  size_t pos = 2;
  while (true) {
    while (pos < b.size() && b[pos] != 0xFF) ++pos;  // tolerate stray bytes
    while (pos < b.size() && b[pos] == 0xFF) ++pos;  // fill bytes
    if (pos >= b.size()) return Truncated(ImageFormat::kJpeg);
    const uint8_t marker = b[pos++];
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7))
      continue;  // markers without a length
    if (marker == 0xD9 || marker == 0xDA) {
      return Error(ErrorCode::kCorruptData, "jpeg has no frame header");
    }
    if (pos + 2 > b.size()) return Truncated(ImageFormat::kJpeg);
    const uint32_t length = Be16(&b[pos]);
    if (length < 2) return Error(ErrorCode::kCorruptData, "jpeg segment length");
    const bool is_sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 &&
                        marker != 0xC8 && marker != 0xCC;
    if (is_sof) {
      if (pos + 7 > b.size()) return Truncated(ImageFormat::kJpeg);
      // length(2) precision(1) height(2) width(2)
      return Checked(ImageFormat::kJpeg, Be16(&b[pos + 5]), Be16(&b[pos + 3]));
    }
    pos += length;
  }
}

Result<ImageInfo> ProbePng(std::span<const uint8_t> b) {
  // signature(8) length(4) "IHDR"(4) width(4) height(4)
  if (b.size() < 24) return Truncated(ImageFormat::kPng);
  if (std::memcmp(&b[12], "IHDR", 4) != 0) {
    return Error(ErrorCode::kCorruptData, "png does not start with IHDR");
  }
  return Checked(ImageFormat::kPng, Be32(&b[16]), Be32(&b[20]));
}

// A WebP file's size as OpenCV reads it: libwebp's WebPGetFeatures over the
// first 32 bytes, which is also the test by which cv::imdecode takes a buffer
// for WebP. A RIFF/WEBP file that test refuses is handed to the next decoder
// whose signature matches. GDCM's (DICOM: "DICM" at byte 128) is one: it
// reads only files, so OpenCV first writes the image's bytes to a temporary
// file, and its reader aborts the process on some inputs. So a file the test
// refuses is refused here, and no WebP that is not decoded as WebP reaches a
// decoder.
Result<ImageInfo> ProbeWebp(std::span<const uint8_t> b) {
  constexpr size_t kOpenCvWebpHeader = 32;
  if (b.size() < kOpenCvWebpHeader) return Truncated(ImageFormat::kWebp);
  WebPBitstreamFeatures features{};
  switch (WebPGetFeatures(b.data(), kOpenCvWebpHeader, &features)) {
    case VP8_STATUS_OK:
      break;
    case VP8_STATUS_NOT_ENOUGH_DATA:
      return Truncated(ImageFormat::kWebp);
    default:
      return Error(ErrorCode::kCorruptData, "webp header is not valid");
  }
  // OpenCV 4.6 decodes no animation (its decoder fails on one).
  if (features.has_animation != 0) {
    return Error(ErrorCode::kUnsupportedFormat, "animated webp is not supported");
  }
  return Checked(ImageFormat::kWebp, features.width, features.height);
}

Result<ImageInfo> ProbeBmp(std::span<const uint8_t> b) {
  if (b.size() < 26) return Truncated(ImageFormat::kBmp);
  const uint32_t header_size = Le32(&b[14]);
  if (header_size == 12) {  // BITMAPCOREHEADER: 16-bit unsigned sizes
    return Checked(ImageFormat::kBmp, Le16(&b[18]), Le16(&b[20]));
  }
  const auto width = static_cast<int32_t>(Le32(&b[18]));
  const auto height = static_cast<int32_t>(Le32(&b[22]));
  // A negative height means rows stored top-down.
  return Checked(ImageFormat::kBmp, width,
                 height < 0 ? -int64_t{height} : int64_t{height});
}

// First IFD of a classic TIFF (TIFF 6.0, section 2): ImageWidth (256),
// ImageLength (257), RowsPerStrip (278) and, when tiled, TileWidth (322)
// and TileLength (323).
// libtiff takes the first of two entries with the same tag and reads a
// field of type LONG8 from elsewhere in the file, so a size given twice or
// in any type but one SHORT or LONG could be decoded larger than it reads
// here: refused. BigTIFF is not supported by OpenCV's memory decoder either.
Result<ImageInfo> ProbeTiff(std::span<const uint8_t> b) {
  if (b.size() < 8) return Truncated(ImageFormat::kTiff);
  const bool le = b[0] == 'I';
  auto u16 = [&](size_t at) { return le ? Le16(&b[at]) : Be16(&b[at]); };
  auto u32 = [&](size_t at) { return le ? Le32(&b[at]) : Be32(&b[at]); };
  const size_t ifd = u32(4);
  if (ifd + 2 > b.size()) return Truncated(ImageFormat::kTiff);
  const size_t count = u16(ifd);
  static constexpr uint32_t kTags[] = {256, 257, 322, 323, 278};
  int64_t values[5] = {0, 0, 0, 0, 0};
  bool seen[5] = {false, false, false, false, false};
  for (size_t i = 0; i < count; ++i) {
    const size_t entry = ifd + 2 + 12 * i;
    if (entry + 12 > b.size()) return Truncated(ImageFormat::kTiff);
    const uint32_t tag = u16(entry);
    const auto* known = std::find(std::begin(kTags), std::end(kTags), tag);
    if (known == std::end(kTags)) continue;
    const size_t k = static_cast<size_t>(known - std::begin(kTags));
    const uint32_t type = u16(entry + 2);
    if (seen[k]) {
      return Error(ErrorCode::kCorruptData,
                   "tiff gives field " + std::to_string(tag) + " twice");
    }
    if ((type != 3 && type != 4) || u32(entry + 4) != 1) {
      return Error(ErrorCode::kCorruptData,
                   "tiff field " + std::to_string(tag) + " is not one SHORT or LONG");
    }
    seen[k] = true;
    values[k] = type == 3 ? u16(entry + 8) : u32(entry + 8);
  }
  Result<ImageInfo> info = Checked(ImageFormat::kTiff, values[0], values[1]);
  if (!info.ok()) return info;
  if (!seen[2] && !seen[3]) {
    if (seen[4] && values[4] <= 0) {
      return Error(ErrorCode::kCorruptData, "tiff declares strips of no rows");
    }
    info->strip_rows = values[4];
    return info;
  }
  if (values[2] <= 0 || values[3] <= 0) {
    return Error(ErrorCode::kCorruptData, "tiff declares an empty tile size");
  }
  info->tile_width = values[2];
  info->tile_height = values[3];
  return info;
}

// Offset of the first start-of-scan segment, or 0 when there is none.
size_t FirstScanOffset(std::span<const uint8_t> b) {
  size_t pos = 2;
  while (pos + 4 <= b.size()) {
    if (b[pos] != 0xFF) return 0;
    const uint8_t marker = b[pos + 1];
    if (marker == 0xFF) {
      ++pos;
      continue;
    }
    if (marker == 0xDA) return pos;
    if (marker == 0xD9) return 0;
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
      pos += 2;
      continue;
    }
    pos += 2 + Be16(&b[pos + 2]);
  }
  return 0;
}

}  // namespace

Status CheckJpegComplete(std::span<const uint8_t> b) {
  const size_t scan = FirstScanOffset(b);
  if (scan == 0) {
    return Error(ErrorCode::kCorruptData, "jpeg has no image data (no scan)");
  }
  // Inside entropy-coded data 0xFF is always followed by 0x00 or a restart
  // marker, so an FF D9 after the scan header is the real end. Searching
  // from the back finds it at once in a complete file (trailing bytes after
  // the marker are allowed).
  for (size_t i = b.size() - 2; i > scan; --i) {
    if (b[i] == 0xFF && b[i + 1] == 0xD9) return {};
  }
  return Error(ErrorCode::kCorruptData,
               "jpeg is truncated (no end-of-image marker)");
}

size_t CountJpegScans(std::span<const uint8_t> b) {
  const size_t first = FirstScanOffset(b);
  if (first == 0) return 0;
  size_t scans = 0;
  const uint8_t* p = b.data() + first;
  const uint8_t* const end = b.data() + b.size();
  while (p + 1 < end) {
    p = static_cast<const uint8_t*>(std::memchr(p, 0xFF, static_cast<size_t>(end - p - 1)));
    if (p == nullptr) break;
    scans += p[1] == 0xDA;
    ++p;
  }
  return scans;
}

std::string_view ImageFormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kJpeg:
      return "jpeg";
    case ImageFormat::kPng:
      return "png";
    case ImageFormat::kWebp:
      return "webp";
    case ImageFormat::kBmp:
      return "bmp";
    case ImageFormat::kTiff:
      return "tiff";
    case ImageFormat::kUnknown:
      break;
  }
  return "unknown";
}

ImageFormat DetectImageFormat(std::span<const uint8_t> b) {
  if (StartsWith(b, "\xFF\xD8\xFF", 3)) return ImageFormat::kJpeg;
  if (StartsWith(b, "\x89PNG\r\n\x1A\n", 8)) return ImageFormat::kPng;
  if (StartsWith(b, "RIFF", 4) && StartsWith(b, "WEBP", 4, 8))
    return ImageFormat::kWebp;
  if (StartsWith(b, "BM", 2) && b.size() >= 18) return ImageFormat::kBmp;
  if (StartsWith(b, "II*\0", 4) || StartsWith(b, "MM\0*", 4))
    return ImageFormat::kTiff;
  return ImageFormat::kUnknown;
}

Result<ImageInfo> ProbeImage(std::span<const uint8_t> bytes) {
  switch (DetectImageFormat(bytes)) {
    case ImageFormat::kJpeg:
      return ProbeJpeg(bytes);
    case ImageFormat::kPng:
      return ProbePng(bytes);
    case ImageFormat::kWebp:
      return ProbeWebp(bytes);
    case ImageFormat::kBmp:
      return ProbeBmp(bytes);
    case ImageFormat::kTiff:
      return ProbeTiff(bytes);
    case ImageFormat::kUnknown:
      break;
  }
  return Error(ErrorCode::kUnsupportedFormat,
               "not a JPEG, PNG, WebP, BMP or TIFF image");
}

}  // namespace bantay::models
