#include "video_frames.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include "bantay/models/video_hasher.h"

namespace bantay::client {
namespace {

// Whether the file's content is an MP4/QuickTime container.
bool IsMp4(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> head(models::kVideoProbeBytes);
  in.read(reinterpret_cast<char*>(head.data()),
          static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  return models::DetectVideoFormat(head) == models::VideoFormat::kMp4;
}

}  // namespace

struct VideoFrameSource::Impl {
  cv::VideoCapture capture;
  cv::Mat frame;

  void Wipe() {
    if (!frame.empty() && frame.isContinuous()) {
      std::fill(frame.data, frame.data + frame.total() * frame.elemSize(),
                uint8_t{0});
    }
  }
};

VideoFrameSource::~VideoFrameSource() {
  if (impl_) impl_->Wipe();
}

Result<std::unique_ptr<VideoFrameSource>> VideoFrameSource::Open(
    const std::string& path, int64_t max_pixels) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    return Error(ErrorCode::kNotFound, path + ": no such file");
  }
  if (!std::filesystem::is_regular_file(status)) {
    return Error(ErrorCode::kUnsupportedFormat, path + ": not a regular file");
  }
  std::vector<uint8_t> head(models::kVideoProbeBytes);
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Error(ErrorCode::kIo, path + ": cannot be read");
    in.read(reinterpret_cast<char*>(head.data()),
            static_cast<std::streamsize>(head.size()));
    head.resize(static_cast<size_t>(in.gcount()));
  }
  const models::VideoFormat format = models::DetectVideoFormat(head);
  if (format == models::VideoFormat::kUnknown) {
    return Error(ErrorCode::kUnsupportedFormat,
                 path + ": not a video container Bantay reads");
  }
  std::unique_ptr<VideoFrameSource> source(new VideoFrameSource());
  source->impl_ = std::make_unique<Impl>();
  cv::VideoCapture& capture = source->impl_->capture;
  // As models/src/video_hasher.cc: "file:" keeps FFmpeg from taking the name
  // for another protocol; software decoding; frames as stored.
  try {
    if (!capture.open(
            "file:" + path, cv::CAP_FFMPEG,
            {cv::CAP_PROP_HW_ACCELERATION, cv::VIDEO_ACCELERATION_NONE})) {
      return Error(ErrorCode::kUnsupportedFormat,
                   path + ": no video stream that can be decoded");
    }
    capture.set(cv::CAP_PROP_ORIENTATION_AUTO, 0);
    const double width = capture.get(cv::CAP_PROP_FRAME_WIDTH);
    const double height = capture.get(cv::CAP_PROP_FRAME_HEIGHT);
    if (!(width >= 1 && height >= 1 && width < 1e9 && height < 1e9)) {
      return Error(ErrorCode::kCorruptData,
                   path + ": the video stream declares no frame size");
    }
    source->width_ = static_cast<int>(width);
    source->height_ = static_cast<int>(height);
    if (int64_t{source->width_} * source->height_ > max_pixels) {
      return Error(
          ErrorCode::kTooLarge,
          path + ": video frames of " + std::to_string(source->width_) + "x" +
              std::to_string(source->height_) + " pixels, over the limit of " +
              std::to_string(max_pixels));
    }
    source->fps_ = capture.get(cv::CAP_PROP_FPS);
    if (!(source->fps_ > 0 && std::isfinite(source->fps_))) {
      return Error(ErrorCode::kCorruptData,
                   path + ": the video stream declares no frame rate");
    }
    // As bantay hash --video: MP4 counts its frames in its sample tables;
    // for other containers OpenCV estimates the count from the duration.
    source->path_ = path;
    if (IsMp4(path)) {
      const double declared = capture.get(cv::CAP_PROP_FRAME_COUNT);
      if (declared > 0 && declared < 9e18) {
        source->frames_declared_ = static_cast<int64_t>(declared);
      }
    }
  } catch (const cv::Exception& e) {
    return Error(ErrorCode::kUnsupportedFormat, path + ": " + e.what());
  }
  return source;
}

bool VideoFrameSource::Next(int64_t* t_ms) {
  try {
    if (!impl_->capture.grab()) return false;
    const int64_t number = frames_read_++;
    const double pos = impl_->capture.get(cv::CAP_PROP_POS_MSEC);
    int64_t t = 0;
    if (std::isfinite(pos) && pos >= 0 && pos < 9e15 &&
        (pos > 0 || number == 0)) {
      t = std::llround(pos);
    } else {
      t = std::llround(static_cast<double>(number) * 1000.0 / fps_);
    }
    // The server refuses frames whose stream time goes back.
    t = std::max(t, last_t_ms_);
    last_t_ms_ = t;
    *t_ms = t;
    return true;
  } catch (const cv::Exception&) {
    decode_failed_ = true;
    return false;
  }
}

Status VideoFrameSource::EndStatus() const {
  if (frames_declared_ > 0 && frames_read_ < frames_declared_) {
    return Error(
        ErrorCode::kCorruptData,
        path_ + ": the video ends early: " + std::to_string(frames_read_) +
            " of " + std::to_string(frames_declared_) + " frames decoded");
  }
  if (decode_failed_) {
    return Error(ErrorCode::kCorruptData, path_ + ": decoding failed after " +
                                              std::to_string(frames_read_) +
                                              " frames");
  }
  return {};
}

Result<std::vector<uint8_t>> VideoFrameSource::EncodeJpeg(int quality) {
  std::vector<uint8_t> jpeg;
  try {
    if (!impl_->capture.retrieve(impl_->frame) || impl_->frame.empty()) {
      return Error(
          ErrorCode::kCorruptData,
          "frame " + std::to_string(frames_read_ - 1) + " does not decode");
    }
    if (int64_t{impl_->frame.cols} * impl_->frame.rows >
        int64_t{width_} * height_ * 4) {
      impl_->Wipe();
      return Error(ErrorCode::kTooLarge,
                   "a frame is larger than the stream declares");
    }
    const bool ok = cv::imencode(".jpg", impl_->frame, jpeg,
                                 {cv::IMWRITE_JPEG_QUALITY, quality});
    impl_->Wipe();
    if (!ok) return Error(ErrorCode::kInternal, "JPEG encoding failed");
  } catch (const cv::Exception& e) {
    impl_->Wipe();
    return Error(ErrorCode::kInternal,
                 std::string("JPEG encoding failed: ") + e.what());
  }
  return jpeg;
}

}  // namespace bantay::client
