// Fuzz target: the bytes of an image, as a match request, a stream frame or
// a file of seized media brings them (untrusted in every case).
//
// Properties, besides no crash, leak or undefined behaviour (the libFuzzer
// build runs with AddressSanitizer and UBSan):
// - ImageHasher either hashes or answers one of the documented errors
//   (unsupported format, corrupt data, too large);
// - it hashes only what ProbeImage accepts, within the pixel limit;
// - the decoded picture has exactly the size the header declared (turned,
//   for a TIFF whose Orientation transposes it). The limit against
//   decompression bombs is applied to the header's size before decoding: a
//   file whose decoder sees a larger picture than ProbeImage reads would
//   walk around it.
// - no image's bytes are written to disk: OpenCV's temporary files (which it
//   writes for a decoder that reads only files, such as GDCM's) go to a
//   directory of the run's own, watched with inotify.
// The hashing options vary with the input's length, so every option meets
// every kind of input.
#include <sys/inotify.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <span>

#include "bantay/models/image_hasher.h"
#include "bantay/models/image_probe.h"
#include "fuzz_check.h"

namespace {

namespace models = bantay::models;
using bantay::ErrorCode;

// Small enough that a run stays fast; the property does not depend on it.
constexpr int64_t kMaxPixels = int64_t{1} << 20;

char temp_dir[] = "/tmp/image_fuzz_temp.XXXXXX";
// An inotify descriptor that reports files created in temp_dir.
int temp_watch = -1;

}  // namespace

// Before the first input (and any thread): OPENCV_TEMP_PATH is a fresh
// directory (removed at exit), watched.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  FUZZ_CHECK(mkdtemp(temp_dir) != nullptr, "mkdtemp");
  std::atexit([] { rmdir(temp_dir); });
  FUZZ_CHECK(setenv("OPENCV_TEMP_PATH", temp_dir, 1) == 0, "setenv");
  temp_watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  FUZZ_CHECK(temp_watch >= 0 && inotify_add_watch(temp_watch, temp_dir, IN_CREATE) >= 0,
             "inotify");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  const bantay::Result<models::ImageInfo> probed = models::ProbeImage(bytes);
  if (probed.ok() && probed->format == models::ImageFormat::kJpeg) {
    (void)models::CheckJpegComplete(bytes);
  }

  models::HashOptions options;
  options.max_pixels = kMaxPixels;
  options.dihedral = (size & 1) != 0;
  options.trim_borders = (size & 2) != 0;
  options.fast = (size & 4) != 0;
  options.fast_min_side = 16;
  models::ImageHasher hasher(options);
  FUZZ_CHECK(temp_watch >= 0, "LLVMFuzzerInitialize did not run");
  const bantay::Result<models::ImageHashes> hashed = hasher.Hash(bytes);
  alignas(inotify_event) char events[4096];
  FUZZ_CHECK(read(temp_watch, events, sizeof(events)) < 0,
             "the image's bytes went to a temporary file in %s", temp_dir);
  if (!hashed.ok()) {
    const ErrorCode code = hashed.error().code();
    FUZZ_CHECK(code == ErrorCode::kUnsupportedFormat || code == ErrorCode::kCorruptData ||
                   code == ErrorCode::kTooLarge,
               "%s", hashed.error().ToString().c_str());
    return 0;
  }
  FUZZ_CHECK(probed.ok(), "hashed bytes the probe refused: %s",
             probed.error().ToString().c_str());
  FUZZ_CHECK(probed->width * probed->height <= kMaxPixels, "%lldx%lld",
             static_cast<long long>(probed->width), static_cast<long long>(probed->height));
  FUZZ_CHECK(hashed->format == probed->format, "format");
  // OpenCV's TIFF decoder applies a TIFF Orientation of 5..8 (a transpose)
  // even when told to ignore orientation: the same pixels, turned.
  const bool turned = probed->format == models::ImageFormat::kTiff &&
                      hashed->width == probed->height && hashed->height == probed->width;
  FUZZ_CHECK((hashed->width == probed->width && hashed->height == probed->height) || turned,
             "decoded %dx%d, header %lldx%lld (%s)", hashed->width, hashed->height,
             static_cast<long long>(probed->width), static_cast<long long>(probed->height),
             std::string(models::ImageFormatName(probed->format)).c_str());
  FUZZ_CHECK(hashed->pdq.quality >= 0 && hashed->pdq.quality <= 100, "quality %d",
             hashed->pdq.quality);
  return 0;
}
