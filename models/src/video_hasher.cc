// Video files hashed as vPDQ does (ThreatExchange vpdq/cpp, hashing/
// filehasher.cpp and pdqbufferhasher.cpp): every decoded frame is numbered
// from 0; a frame is hashed when its number is a multiple of
// int(seconds_per_hash * fps) (or every frame); the frame is brought to
// 8-bit RGB at its own size (or scaled to a square first), its luminance
// hashed with PDQ *without* the 512x512 resize that still images get
// (pdqHash256FromFloatLuma on the whole frame), and its timestamp is
// float(frame_number) / float(fps), with fps the stream's average frame rate.
//
// The reference decodes with libavcodec and converts with libswscale; here
// OpenCV's VideoCapture does both through the same libraries (its FFmpeg
// backend), so at full size the RGB pixels are the reference's. Scaling to
// a square is done here on the luminance (see FrameHasher::Downscale), close
// to but not the same as the reference (measured in
// tests/models/video_hasher_test.cc).
#include "bantay/models/video_hasher.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <numbers>
#include <string>
#include <vector>

#include "bantay/models/border_trim.h"
#include "bantay/models/pdq.h"

namespace bantay::models {
namespace {

bool HasAt(std::span<const uint8_t> head, size_t at, std::string_view magic) {
  return head.size() >= at + magic.size() &&
         std::memcmp(head.data() + at, magic.data(), magic.size()) == 0;
}

// ISO base media files start with a box; these are the box types a
// QuickTime or MP4 file starts with in practice.
bool IsIsoBaseMedia(std::span<const uint8_t> head) {
  for (std::string_view box : {"ftyp", "moov", "mdat", "wide", "free", "skip", "pnot"}) {
    if (HasAt(head, 4, box)) return true;
  }
  return false;
}

// HEIF and AVIF still images are ISO base media files too; their major
// brands say they are pictures, not video.
bool IsStillImageBrand(std::span<const uint8_t> head) {
  if (!HasAt(head, 4, "ftyp")) return false;
  for (std::string_view brand : {"heic", "heix", "mif1", "avif"}) {
    if (HasAt(head, 8, brand)) return true;
  }
  return false;
}

bool IsTransportStream(std::span<const uint8_t> head) {
  // Three packets: 188 bytes each, or 192 with a 4-byte time code in front
  // (M2TS, as cameras and Blu-ray write).
  for (size_t packet : {size_t{188}, size_t{192}}) {
    const size_t first = packet - 188;
    if (head.size() > first + 2 * packet && head[first] == 0x47 &&
        head[first + packet] == 0x47 && head[first + 2 * packet] == 0x47) {
      return true;
    }
  }
  return false;
}

constexpr std::array<uint8_t, 16> kAsfHeaderGuid = {
    0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11,
    0xA6, 0xD9, 0x00, 0xAA, 0x00, 0x62, 0xCE, 0x6C};

Error ErrnoError(int err, const std::string& path) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return Error(ErrorCode::kNotFound, path + ": no such file");
    case EACCES:
    case EPERM:
      return Error(ErrorCode::kPermissionDenied, path + ": permission denied");
    case EISDIR:
      return Error(ErrorCode::kUnsupportedFormat, path + ": is a directory");
    default:
      return Error(ErrorCode::kIo, path + ": " + std::strerror(err));
  }
}

// The first bytes of a regular file, read only and without updating its
// access time where the kernel allows (O_NOATIME is for the file's owner).
Result<std::vector<uint8_t>> ReadHead(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoError(err, path);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return S_ISDIR(st.st_mode)
               ? ErrnoError(EISDIR, path)
               : Error(ErrorCode::kUnsupportedFormat, path + ": not a regular file");
  }
  std::vector<uint8_t> head(kVideoProbeBytes);
  size_t got = 0;
  while (got < head.size()) {
    const ssize_t n = read(fd, head.data() + got, head.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return ErrnoError(err, path);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  close(fd);
  head.resize(got);
  return head;
}

void Wipe(cv::Mat& mat) {
  if (!mat.empty()) mat.setTo(cv::Scalar::all(0));
}

// Lanczos window with a = 3, the kernel of libswscale's SWS_LANCZOS.
double Lanczos3(double x) {
  x = std::fabs(x);
  if (x < 1e-9) return 1.0;
  if (x >= 3.0) return 0.0;
  const double px = std::numbers::pi * x;
  return 3.0 * std::sin(px) * std::sin(px / 3.0) / (px * px);
}

// Resampling weights from `from` samples to `to`: Lanczos-3 centred on each
// output sample, widened by the reduction factor when shrinking (so that
// every input sample contributes, as libswscale's scalers do), samples
// outside the image taken from its edge, weights normalised to sum 1.
struct Taps {
  std::vector<int> first;    // per output sample: index into source/weight
  std::vector<int> count;
  std::vector<int> source;   // input sample of each tap
  std::vector<float> weight;
};

Taps LanczosTaps(int from, int to) {
  Taps t;
  const double scale = static_cast<double>(from) / to;
  const double stretch = std::max(scale, 1.0);
  const double radius = 3.0 * stretch;
  for (int i = 0; i < to; ++i) {
    const double centre = (i + 0.5) * scale - 0.5;
    const int lo = static_cast<int>(std::floor(centre - radius));
    const int hi = static_cast<int>(std::ceil(centre + radius));
    t.first.push_back(static_cast<int>(t.source.size()));
    double total = 0;
    for (int k = lo; k <= hi; ++k) {
      const double w = Lanczos3((k - centre) / stretch);
      if (w == 0.0) continue;
      t.source.push_back(std::clamp(k, 0, from - 1));
      t.weight.push_back(static_cast<float>(w));
      total += w;
    }
    t.count.push_back(static_cast<int>(t.source.size()) - t.first.back());
    for (int k = t.first.back(); k < static_cast<int>(t.source.size()); ++k) {
      t.weight[k] = static_cast<float>(t.weight[k] / total);
    }
  }
  return t;
}

// Hashes one frame at a time, keeping its buffers between frames.
class FrameHasher {
 public:
  FrameHasher(int downscale_to, bool trim_borders)
      : side_(downscale_to), trim_borders_(trim_borders) {}
  ~FrameHasher() { WipeBuffers(); }

  // frame: 8-bit B, G, R as VideoCapture delivers it. Every copy of the
  // frame made here is overwritten before returning. *trimmed: whether
  // borders were removed (trim_borders).
  PdqResult Hash(const cv::Mat& whole, bool* trimmed) {
    *trimmed = false;
    cv::Mat frame = whole;
    if (trim_borders_) {
      const PixelView view{whole.data, whole.cols, whole.rows, 3, whole.step[0], false};
      const ContentRect rect = FindContentRect(view);
      if (rect != ContentRect{0, 0, whole.cols, whole.rows}) {
        frame = whole(cv::Rect(rect.x, rect.y, rect.width, rect.height));
        *trimmed = true;
      }
    }
    const int rows = frame.rows;
    const int cols = frame.cols;
    luma_.resize(static_cast<size_t>(rows) * cols);
    for (int y = 0; y < rows; ++y) {
      const uint8_t* p = frame.ptr<uint8_t>(y);
      float* out = luma_.data() + static_cast<size_t>(y) * cols;
      // The reference's fillFloatLumaFromRGB, in its order of operations.
      for (int x = 0; x < cols; ++x, p += 3) {
        out[x] = 0.299f * static_cast<float>(p[2]) + 0.587f * static_cast<float>(p[1]) +
                 0.114f * static_cast<float>(p[0]);
      }
    }
    PdqResult result;
    if (side_ > 0) {
      Downscale(rows, cols);
      result = pdq_.HashLuma(scaled_.data(), side_, side_);
    } else {
      result = pdq_.HashLuma(luma_.data(), rows, cols);
    }
    WipeBuffers();
    return result;
  }

 private:
  // The reference's hash files for frames scaled to a square were made
  // with libswscale scaling the frame before its conversion to RGB. The
  // luminance of the RGB pixels is a linear function of the frame's Y plane
  // (the colour terms cancel), so scaling the luminance here is equivalent
  // up to rounding. Of the kernels tried against the reference's
  // `-128x128` files (OpenCV's INTER_AREA, bicubic and Lanczos-3 widened as
  // libswscale widens them), Lanczos-3 agrees best.
  void Downscale(int rows, int cols) {
    if (cols != taps_cols_) {
      across_ = LanczosTaps(cols, side_);
      taps_cols_ = cols;
    }
    if (rows != taps_rows_) {
      down_ = LanczosTaps(rows, side_);
      taps_rows_ = rows;
    }
    across_rows_.resize(static_cast<size_t>(rows) * side_);
    for (int y = 0; y < rows; ++y) {
      const float* in = luma_.data() + static_cast<size_t>(y) * cols;
      float* out = across_rows_.data() + static_cast<size_t>(y) * side_;
      for (int x = 0; x < side_; ++x) {
        float sum = 0;
        const int first = across_.first[x];
        for (int k = first; k < first + across_.count[x]; ++k) {
          sum += across_.weight[k] * in[across_.source[k]];
        }
        out[x] = sum;
      }
    }
    scaled_.assign(static_cast<size_t>(side_) * side_, 0.0f);
    for (int y = 0; y < side_; ++y) {
      float* out = scaled_.data() + static_cast<size_t>(y) * side_;
      const int first = down_.first[y];
      for (int k = first; k < first + down_.count[y]; ++k) {
        const float w = down_.weight[k];
        const float* in = across_rows_.data() + static_cast<size_t>(down_.source[k]) * side_;
        for (int x = 0; x < side_; ++x) out[x] += w * in[x];
      }
    }
  }

  void WipeBuffers() {
    std::fill(luma_.begin(), luma_.end(), 0.0f);
    std::fill(across_rows_.begin(), across_rows_.end(), 0.0f);
    std::fill(scaled_.begin(), scaled_.end(), 0.0f);
  }

  int side_;
  bool trim_borders_;
  PdqHasher pdq_;
  std::vector<float> luma_;         // the frame's luminance
  std::vector<float> across_rows_;  // scaled along rows: rows x side_
  std::vector<float> scaled_;       // side_ x side_
  Taps across_, down_;
  int taps_cols_ = 0, taps_rows_ = 0;
};

std::string Size(int64_t width, int64_t height) {
  return std::to_string(width) + "x" + std::to_string(height);
}

Result<VideoHashes> Decode(const std::string& path, VideoFormat format,
                           const VideoHashOptions& options) {
  // OpenCV's FFmpeg backend opens the file itself, by name, read only
  // (FFmpeg's file protocol opens for reading without O_NOATIME, and
  // VideoCapture has no way to pass it or an open descriptor, so the
  // access time may change). The "file:" prefix keeps FFmpeg from taking a
  // name such as "http://..." or "concat:..." for a network or other
  // protocol. Hardware decoders are left out: results must not depend on
  // the machine.
  cv::VideoCapture capture;
  if (!capture.open("file:" + path, cv::CAP_FFMPEG,
                    {cv::CAP_PROP_HW_ACCELERATION, cv::VIDEO_ACCELERATION_NONE})) {
    return Error(ErrorCode::kUnsupportedFormat,
                 path + ": no video stream that can be decoded (damaged " +
                     std::string(VideoFormatName(format)) +
                     " file, or a codec FFmpeg does not decode)");
  }
  // The reference hashes frames as they are stored, ignoring rotation
  // metadata.
  capture.set(cv::CAP_PROP_ORIENTATION_AUTO, 0);

  // The frame size the stream declares is checked before this function
  // decodes any frame. (Opening has already let FFmpeg probe the stream,
  // which for some codecs decodes a first frame; FFmpeg refuses frames over
  // its own limit of about 2^28 pixels.)
  VideoHashes out;
  const double width = capture.get(cv::CAP_PROP_FRAME_WIDTH);
  const double height = capture.get(cv::CAP_PROP_FRAME_HEIGHT);
  if (!(width >= 1 && height >= 1 && width < 1e9 && height < 1e9)) {
    return Error(ErrorCode::kCorruptData, path + ": the video stream declares no frame size");
  }
  out.width = static_cast<int>(width);
  out.height = static_cast<int>(height);
  if (static_cast<int64_t>(out.width) * out.height > options.max_pixels_per_frame) {
    return Error(ErrorCode::kTooLarge,
                 path + ": video declares " + Size(out.width, out.height) +
                     " pixels a frame, over the limit of " +
                     std::to_string(options.max_pixels_per_frame));
  }
  out.fps = capture.get(cv::CAP_PROP_FPS);
  if (!(out.fps > 0 && std::isfinite(out.fps))) {
    return Error(ErrorCode::kCorruptData, path + ": the video stream declares no frame rate");
  }
  // MP4 counts its frames in its sample tables; for other containers
  // OpenCV estimates the count from the duration, which says nothing about
  // truncation.
  if (format == VideoFormat::kMp4) {
    const double declared = capture.get(cv::CAP_PROP_FRAME_COUNT);
    if (declared > 0 && declared < 9e18) out.frames_declared = static_cast<int64_t>(declared);
  }

  // vPDQ's sampling: every frame_mod-th decoded frame.
  int64_t frame_mod = 1;
  if (options.seconds_per_hash > 0) {
    const double mod = options.seconds_per_hash * out.fps;
    frame_mod = mod >= 1 && mod < 9e18 ? static_cast<int64_t>(mod) : 1;
  }
  const float fps = static_cast<float>(out.fps);

  FrameHasher hasher(options.downscale_to, options.trim_borders);
  cv::Mat frame;
  while (true) {
    if (options.max_frames > 0 && out.frames_decoded == options.max_frames) {
      out.truncated = capture.grab();
      break;
    }
    if (!capture.grab()) break;
    const int64_t number = out.frames_decoded++;
    if (number % frame_mod != 0) continue;
    if (!capture.retrieve(frame) || frame.empty()) break;
    if (frame.type() != CV_8UC3) {
      Wipe(frame);
      return Error(ErrorCode::kInternal, path + ": the decoder did not give 8-bit colour frames");
    }
    if (static_cast<int64_t>(frame.cols) * frame.rows > options.max_pixels_per_frame) {
      Wipe(frame);
      return Error(ErrorCode::kTooLarge,
                   path + ": frame " + std::to_string(number) + " has " +
                       Size(frame.cols, frame.rows) + " pixels, over the limit of " +
                       std::to_string(options.max_pixels_per_frame));
    }
    bool trimmed = false;
    const PdqResult pdq = hasher.Hash(frame, &trimmed);
    Wipe(frame);
    out.frames_trimmed += trimmed;
    VideoFrameHash& f = out.frames.emplace_back();
    f.frame_number = number;
    f.quality = pdq.quality;
    f.pdq = pdq.hash;
    f.timestamp = static_cast<float>(number) / fps;
  }
  if (out.frames_decoded == 0) {
    return Error(ErrorCode::kCorruptData, path + ": no frame could be decoded");
  }
  out.incomplete = !out.truncated && out.frames_declared > 0 &&
                   out.frames_decoded < out.frames_declared;
  // The decoder's own frame buffers (inside FFmpeg and VideoCapture) are
  // released with `capture` but cannot be overwritten from here.
  return out;
}

}  // namespace

std::string_view VideoFormatName(VideoFormat format) {
  switch (format) {
    case VideoFormat::kMp4:
      return "mp4";
    case VideoFormat::kMatroska:
      return "matroska";
    case VideoFormat::kAvi:
      return "avi";
    case VideoFormat::kMpegTs:
      return "mpegts";
    case VideoFormat::kMpegPs:
      return "mpegps";
    case VideoFormat::kFlv:
      return "flv";
    case VideoFormat::kAsf:
      return "asf";
    case VideoFormat::kUnknown:
      break;
  }
  return "unknown";
}

VideoFormat DetectVideoFormat(std::span<const uint8_t> head) {
  if (IsIsoBaseMedia(head)) {
    return IsStillImageBrand(head) ? VideoFormat::kUnknown : VideoFormat::kMp4;
  }
  if (HasAt(head, 0, "\x1A\x45\xDF\xA3")) return VideoFormat::kMatroska;
  if (HasAt(head, 0, "RIFF") && HasAt(head, 8, "AVI ")) return VideoFormat::kAvi;
  if (IsTransportStream(head)) return VideoFormat::kMpegTs;
  if (HasAt(head, 0, std::string_view("\x00\x00\x01\xBA", 4))) return VideoFormat::kMpegPs;
  if (HasAt(head, 0, "FLV\x01")) return VideoFormat::kFlv;
  if (head.size() >= kAsfHeaderGuid.size() &&
      std::equal(kAsfHeaderGuid.begin(), kAsfHeaderGuid.end(), head.begin())) {
    return VideoFormat::kAsf;
  }
  return VideoFormat::kUnknown;
}

Result<VideoHashes> HashVideoFile(const std::string& path,
                                  const VideoHashOptions& options) {
  if (options.seconds_per_hash < 0 || !std::isfinite(options.seconds_per_hash) ||
      options.max_pixels_per_frame <= 0 || options.max_frames < 0 ||
      options.downscale_to < 0) {
    return Error(ErrorCode::kInvalidArgument, "invalid video hashing options");
  }
  Result<std::vector<uint8_t>> head = ReadHead(path);
  if (!head.ok()) return head.error();
  const VideoFormat format = DetectVideoFormat(*head);
  // Only containers recognised here reach FFmpeg, whose probing would
  // otherwise also accept playlists (HLS, concat) that open further files
  // or URLs, and still images.
  if (format == VideoFormat::kUnknown) {
    return Error(ErrorCode::kUnsupportedFormat,
                 path + ": not a video container Bantay reads (MP4/QuickTime, "
                        "Matroska/WebM, AVI, MPEG-TS, MPEG-PS, FLV, ASF)");
  }
  try {
    return Decode(path, format, options);
  } catch (const cv::Exception& e) {
    return Error(ErrorCode::kCorruptData, path + ": video decoding failed: " + e.err);
  }
}

}  // namespace bantay::models
