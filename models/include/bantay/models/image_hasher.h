// ImageHasher: from the bytes of an image file to its PDQ hash (and
// dihedral hashes), quality, size, MD5 and SHA-256.
//
// Decoding is done in memory with OpenCV for JPEG, PNG, WebP, BMP and TIFF,
// told apart by content. The header is read first and an image declaring
// more than max_pixels is refused before anything is allocated for it, as
// is a JPEG of more scans than max_jpeg_scans (a decoding-time bomb).
// Nothing is written to disk (OpenCV is given only bytes that its in-memory
// decoder for the probed format takes, so it never spills them to a
// temporary file for a decoder that reads files; KeepImageBytesOffTheDisk
// makes sure it could not), and the pixel buffers are overwritten after
// hashing.
//
// Compatible mode gives the reference's hash: full decode, EXIF orientation
// ignored as the reference's decoder ignores it, 8-bit grey kept as grey,
// colour (including palette, CMYK and 16-bit, brought to 8-bit by OpenCV)
// as B, G, R, alpha dropped. Fast mode (opt-in, for video frames and bulk
// scans) decodes large JPEGs at 1/2, 1/4 or 1/8 size in the DCT domain and
// only their luma; its deviation from compatible mode is measured in
// bench/pdq_bench.cc and documented in bench/README.md.
//
// Thread safety: an ImageHasher is not thread-safe (it reuses its buffers);
// use one per thread.
#ifndef BANTAY_MODELS_IMAGE_HASHER_H_
#define BANTAY_MODELS_IMAGE_HASHER_H_

#include <cstdint>
#include <memory>
#include <span>

#include "bantay/models/border_trim.h"
#include "bantay/models/digest.h"
#include "bantay/models/image_probe.h"
#include "bantay/models/pdq.h"
#include "bantay/models/status.h"

namespace bantay::models {

// 150 megapixels: larger than any camera sensor a lab is likely to meet,
// far under what would exhaust memory (3 bytes a pixel, about 450 MB).
inline constexpr int64_t kDefaultMaxPixels = 150'000'000;
// Scans of a JPEG (see CountJpegScans): libjpeg's own progressive mode
// writes 10, jpegtran's most elaborate scripts some dozens; 500 is the
// limit libjpeg-turbo's TurboJPEG API applies against scan bombs.
inline constexpr int kDefaultMaxJpegScans = 500;

struct HashOptions {
  bool dihedral = false;  // also compute the 8 dihedral hashes
  bool fast = false;      // reduced-size JPEG decoding (see above)
  bool digests = true;    // MD5 and SHA-256 of the bytes
  bool wipe = true;       // overwrite decoded pixels after hashing
  int64_t max_pixels = kDefaultMaxPixels;
  int max_jpeg_scans = kDefaultMaxJpegScans;
  // Fast mode shrinks a JPEG by the largest of 8, 4, 2 that keeps both
  // sides at least this long.
  int fast_min_side = 256;
  // Hash only the content rectangle, after removing letterbox/pillarbox
  // borders (FindContentRect with default options, see border_trim.h). For
  // frames of streams and re-encoded video. Hash lists are made without it,
  // from originals that may themselves have had borders, so when borders
  // are found the whole image is hashed too (ImageHashes::untrimmed) and a
  // matcher should try both.
  bool trim_borders = false;
};

struct ImageHashes {
  ImageFormat format = ImageFormat::kUnknown;
  int width = 0;   // of the decoded image (full size, even in fast mode)
  int height = 0;
  int decode_scale = 1;  // 1, or the JPEG reduction used by fast mode
  // The part of the image that was hashed, in full-size pixels: the whole
  // image unless trim_borders found borders.
  ContentRect content;
  // When trim_borders found borders: the hash of the whole image (without
  // dihedral variants), as it would be without the option.
  bool has_untrimmed = false;
  PdqResult untrimmed;
  PdqResult pdq;
  bool has_digests = false;
  ExactDigests digests{};
};

class ImageHasher {
 public:
  explicit ImageHasher(HashOptions options = {});
  ~ImageHasher();
  ImageHasher(const ImageHasher&) = delete;
  ImageHasher& operator=(const ImageHasher&) = delete;

  // Errors: kUnsupportedFormat (not one of the five formats),
  // kTooLarge (more than max_pixels declared, for the image or a TIFF
  // tile; a JPEG of more than max_jpeg_scans scans), kCorruptData
  // (truncated, undecodable, or a header that could be read two ways).
  Result<ImageHashes> Hash(std::span<const uint8_t> bytes);

  // Decodes only, as Hash would, and returns the decoded size (for
  // benchmarks that separate decoding from hashing).
  Result<ImageInfo> DecodeOnly(std::span<const uint8_t> bytes);

  const HashOptions& options() const { return options_; }

 private:
  struct Decoded;
  Result<ImageInfo> Decode(std::span<const uint8_t> bytes, int* scale);

  HashOptions options_;
  std::unique_ptr<Decoded> decoded_;
  PdqHasher pdq_;
};

// Points OpenCV's temporary files (OPENCV_TEMP_PATH) at a path under which
// none can be created. OpenCV writes an encoded image to one before a
// decoder that reads only files (GDCM's) opens it; ImageHasher passes it no
// bytes that would go there, and after this call none could be written (the
// decode would fail). For the start of main, before any thread runs: it sets
// an environment variable.
void KeepImageBytesOffTheDisk();

// The path KeepImageBytesOffTheDisk sets.
inline constexpr const char* kNoTemporaryFilePath = "/dev/null/bantay-keeps-images-off-the-disk";

}  // namespace bantay::models

#endif  // BANTAY_MODELS_IMAGE_HASHER_H_
