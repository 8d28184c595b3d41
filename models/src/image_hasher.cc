#include "bantay/models/image_hasher.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

namespace bantay::models {

namespace {

// Gives OpenCV the same block for every decode: each decode starts from an
// empty cv::Mat (so that a decoder that fails before allocating leaves it
// empty, not holding the previous image), yet no frame pays for the page
// faults of a fresh allocation. One block is kept (the largest asked for
// so far, up to kMaxKept: a larger picture gets its own, freed after it);
// a Mat using this allocator must not outlive it.
class RecyclingAllocator : public cv::MatAllocator {
 public:
  // A 4K frame of 3 channels is 24.9 MB.
  static constexpr size_t kMaxKept = 32u << 20;

  ~RecyclingAllocator() override { cv::fastFree(block_); }

  // Called before each decode: what WipeBlock wipes is what this decode
  // was lent.
  void BeginDecode() const { lent_this_decode_ = 0; }

  cv::UMatData* allocate(int dims, const int* sizes, int type, void* data, size_t* step,
                         cv::AccessFlag, cv::UMatUsageFlags) const override {
    // Dense layout, last dimension fastest (what cv::Mat::create asks for).
    size_t total = CV_ELEM_SIZE(type);
    for (int i = dims - 1; i >= 0; --i) {
      if (step != nullptr) {
        if (data != nullptr && step[i] != cv::Mat::AUTO_STEP) {
          total = step[i];
        } else {
          step[i] = total;
        }
      }
      total *= static_cast<size_t>(sizes[i]);
    }
    auto* u = new cv::UMatData(this);
    u->size = total;
    if (data != nullptr) {
      u->data = u->origdata = static_cast<uchar*>(data);
      u->flags |= cv::UMatData::USER_ALLOCATED;
      return u;
    }
    if (total > kMaxKept) {  // not recycled
      u->data = u->origdata = static_cast<uchar*>(cv::fastMalloc(total));
      return u;
    }
    if (block_ == nullptr || block_size_ < total || lent_) {
      if (!lent_) cv::fastFree(block_);
      uchar* fresh = static_cast<uchar*>(cv::fastMalloc(total));
      if (lent_) {  // a second Mat at once: not recycled
        u->data = u->origdata = fresh;
        return u;
      }
      block_ = fresh;
      block_size_ = total;
    }
    lent_ = true;
    lent_this_decode_ = std::max(lent_this_decode_, total);
    u->data = u->origdata = block_;
    return u;
  }

  bool allocate(cv::UMatData* u, cv::AccessFlag, cv::UMatUsageFlags) const override {
    return u != nullptr;
  }

  void deallocate(cv::UMatData* u) const override {
    if (u == nullptr) return;
    CV_Assert(u->urefcount == 0 && u->refcount == 0);
    if (!(u->flags & cv::UMatData::USER_ALLOCATED)) {
      if (u->origdata == block_) {
        lent_ = false;
      } else {
        // Not recycled (over kMaxKept, or a second Mat at once): wiped
        // here, since a decoder that fails releases it unwiped.
        explicit_bzero(u->origdata, u->size);
        cv::fastFree(u->origdata);
      }
    }
    delete u;
  }

  // Overwrites what this decode was lent of the kept block (after a
  // decoder failed part way: what it decoded was not wiped). Nothing when
  // the decoder failed before allocating (a bad header costs no wipe).
  void WipeBlock() const {
    if (block_ != nullptr && !lent_ && lent_this_decode_ > 0) {
      explicit_bzero(block_, lent_this_decode_);
    }
    lent_this_decode_ = 0;
  }

 private:
  // allocate/deallocate are const in the interface; the allocator belongs
  // to one ImageHasher, used by one thread at a time.
  mutable uchar* block_ = nullptr;
  mutable size_t block_size_ = 0;
  mutable bool lent_ = false;
  mutable size_t lent_this_decode_ = 0;
};

}  // namespace

struct ImageHasher::Decoded {
  RecyclingAllocator allocator;  // declared first: outlives `mat`
  cv::Mat mat;
};

namespace {

// Reduction for fast mode: the largest of 8, 4, 2 that leaves both sides at
// least min_side, else 1.
int FastScale(const ImageInfo& info, int min_side) {
  for (int scale : {8, 4, 2}) {
    if (info.width / scale >= min_side && info.height / scale >= min_side) {
      return scale;
    }
  }
  return 1;
}

int ReducedGreyFlag(int scale) {
  switch (scale) {
    case 2:
      return cv::IMREAD_REDUCED_GRAYSCALE_2;
    case 4:
      return cv::IMREAD_REDUCED_GRAYSCALE_4;
    default:
      return cv::IMREAD_REDUCED_GRAYSCALE_8;
  }
}

void Wipe(cv::Mat& mat) {
  if (mat.empty()) return;
  if (mat.isContinuous()) {
    explicit_bzero(mat.data, mat.total() * mat.elemSize());
  } else {
    for (int y = 0; y < mat.rows; ++y) {
      explicit_bzero(mat.ptr(y), static_cast<size_t>(mat.cols) * mat.elemSize());
    }
  }
}

}  // namespace

ImageHasher::ImageHasher(HashOptions options)
    : options_(options), decoded_(std::make_unique<Decoded>()) {}

ImageHasher::~ImageHasher() { Wipe(decoded_->mat); }

Result<ImageInfo> ImageHasher::Decode(std::span<const uint8_t> bytes,
                                      int* scale) {
  Result<ImageInfo> probed = ProbeImage(bytes);
  if (!probed.ok()) return probed.error();
  const ImageInfo& info = *probed;
  if (info.width > options_.max_pixels / info.height) {
    return Error(ErrorCode::kTooLarge,
                 "image declares " + std::to_string(info.width) + "x" +
                     std::to_string(info.height) + " pixels, over the limit of " +
                     std::to_string(options_.max_pixels));
  }
  if (info.tile_width > 0 && info.tile_width > options_.max_pixels / info.tile_height) {
    return Error(ErrorCode::kTooLarge,
                 "image declares tiles of " + std::to_string(info.tile_width) + "x" +
                     std::to_string(info.tile_height) + " pixels, over the limit of " +
                     std::to_string(options_.max_pixels));
  }
  if (info.strip_rows > 0 && info.width > options_.max_pixels / info.strip_rows) {
    return Error(ErrorCode::kTooLarge,
                 "image declares strips of " + std::to_string(info.width) + "x" +
                     std::to_string(info.strip_rows) + " pixels, over the limit of " +
                     std::to_string(options_.max_pixels));
  }
  if (info.format == ImageFormat::kJpeg) {
    if (Status complete = CheckJpegComplete(bytes); !complete.ok()) {
      return complete.error();
    }
    if (const size_t scans = CountJpegScans(bytes);
        scans > static_cast<size_t>(options_.max_jpeg_scans)) {
      return Error(ErrorCode::kTooLarge, "jpeg has " + std::to_string(scans) +
                                             " scans, over the limit of " +
                                             std::to_string(options_.max_jpeg_scans));
    }
  }
  *scale = 1;
  int flags = cv::IMREAD_ANYCOLOR | cv::IMREAD_IGNORE_ORIENTATION;
  if (options_.fast && info.format == ImageFormat::kJpeg) {
    *scale = FastScale(info, options_.fast_min_side);
    if (*scale > 1) flags = ReducedGreyFlag(*scale) | cv::IMREAD_IGNORE_ORIENTATION;
  }
  cv::Mat& mat = decoded_->mat;
  // Empty before decoding: a decoder that fails on the header leaves the Mat
  // as it was, and one that still held the previous image would pass for a
  // decoded picture (of the previous image's size, its pixels wiped or not).
  // The block goes back to the allocator, which hands it out again.
  mat.release();
  mat.allocator = &decoded_->allocator;
  decoded_->allocator.BeginDecode();
  auto failed = [&] {
    // A decoder that failed after allocating has released the Mat itself,
    // with what it had decoded in it.
    Wipe(mat);
    mat.release();
    decoded_->allocator.WipeBlock();
    return Error(ErrorCode::kCorruptData,
                 std::string(ImageFormatName(info.format)) + " could not be decoded");
  };
  try {
    // imdecode picks the first decoder whose signature test takes the bytes.
    // ProbeImage accepts, for each format, only what that format's own
    // OpenCV decoder takes (for WebP, libwebp's header test), and no decoder
    // registered before it takes those bytes: no other decoder (GDCM's, for
    // one) is ever reached.
    // The const_cast is for cv::Mat's constructor only: imdecode reads.
    const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1,
                          const_cast<uint8_t*>(bytes.data()));
    cv::imdecode(encoded, flags, &mat);
  } catch (const cv::Exception& e) {
    return failed();
  }
  if (mat.empty() || mat.depth() != CV_8U ||
      (mat.channels() != 1 && mat.channels() != 3)) {
    return failed();
  }
  ImageInfo decoded = info;
  decoded.width = *scale > 1 ? info.width : mat.cols;
  decoded.height = *scale > 1 ? info.height : mat.rows;
  return decoded;
}

Result<ImageInfo> ImageHasher::DecodeOnly(std::span<const uint8_t> bytes) {
  int scale = 1;
  Result<ImageInfo> info = Decode(bytes, &scale);
  if (options_.wipe) Wipe(decoded_->mat);
  return info;
}

Result<ImageHashes> ImageHasher::Hash(std::span<const uint8_t> bytes) {
  int scale = 1;
  Result<ImageInfo> info = Decode(bytes, &scale);
  if (!info.ok()) return info.error();
  const cv::Mat& mat = decoded_->mat;
  PixelView view;
  view.data = mat.data;
  view.width = mat.cols;
  view.height = mat.rows;
  view.channels = mat.channels();
  view.row_stride = mat.step[0];

  ImageHashes out;
  out.format = info->format;
  out.width = static_cast<int>(info->width);
  out.height = static_cast<int>(info->height);
  out.decode_scale = scale;
  out.content = {0, 0, out.width, out.height};
  int hashed_width = out.width;
  int hashed_height = out.height;
  if (options_.trim_borders) {
    const ContentRect rect = FindContentRect(view);
    if (rect != ContentRect{0, 0, view.width, view.height}) {
      out.has_untrimmed = true;
      out.untrimmed = scale > 1 ? pdq_.HashReduced(view, out.width, out.height)
                                : pdq_.Hash(view);
      view = CropPixelView(view, rect);
      // In fast mode the rectangle is in reduced pixels; the part of the
      // full-size image it stands for is `scale` times larger (clipped where
      // the reduced image's last pixel covers less).
      out.content.x = rect.x * scale;
      out.content.y = rect.y * scale;
      out.content.width = std::min(rect.width * scale, out.width - out.content.x);
      out.content.height = std::min(rect.height * scale, out.height - out.content.y);
      hashed_width = out.content.width;
      hashed_height = out.content.height;
    }
  }
  out.pdq = scale > 1 ? pdq_.HashReduced(view, hashed_width, hashed_height,
                                         options_.dihedral)
                      : pdq_.Hash(view, options_.dihedral);
  if (options_.wipe) Wipe(decoded_->mat);
  if (options_.digests) {
    out.has_digests = true;
    out.digests = ComputeDigests(bytes);
  }
  return out;
}

void KeepImageBytesOffTheDisk() { setenv("OPENCV_TEMP_PATH", kNoTemporaryFilePath, 1); }

}  // namespace bantay::models
