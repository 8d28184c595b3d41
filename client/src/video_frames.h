// Internal to the `bantay stream` command: a video file's frames, decoded
// one at a time with OpenCV's VideoCapture straight from the file (nothing
// written to disk), each with its stream time from the container's
// timestamps, and re-encoded as JPEG for sending; and the choice of the
// frames to send, one per sampling interval of stream time.
#ifndef BANTAY_CLIENT_SRC_VIDEO_FRAMES_H_
#define BANTAY_CLIENT_SRC_VIDEO_FRAMES_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bantay/models/status.h"

namespace bantay::client {

// Chooses frames by stream time the way the server samples them: the first
// frame, then each frame at least interval_ms after the last one chosen
// (0: every frame). Sending only those, every frame sent is sampled by a
// session with the same interval.
class FrameSampler {
 public:
  explicit FrameSampler(int64_t interval_ms) : interval_ms_(interval_ms) {}
  // Whether to send the frame of stream time t_ms (non-decreasing).
  bool Take(int64_t t_ms) {
    if (last_ && t_ms - *last_ < interval_ms_) return false;
    last_ = t_ms;
    return true;
  }

 private:
  int64_t interval_ms_;
  std::optional<int64_t> last_;
};

// Not thread-safe: one thread reads a source.
class VideoFrameSource {
 public:
  // Opens the file for decoding (OpenCV's FFmpeg backend, software
  // decoding, frames as stored). Errors: kNotFound, kUnsupportedFormat (no
  // decodable video stream), kTooLarge (frames over max_pixels), kCorruptData
  // (no frame size or rate).
  static Result<std::unique_ptr<VideoFrameSource>> Open(const std::string& path,
                                                        int64_t max_pixels);
  ~VideoFrameSource();

  int width() const { return width_; }
  int height() const { return height_; }
  double fps() const { return fps_; }

  // Moves to the next frame without decoding its pixels; false at the end
  // of the video. *t_ms: its stream time in milliseconds from the stream's
  // start (the container's presentation time; frame number / fps when the
  // container has none), never below the previous frame's.
  bool Next(int64_t* t_ms);
  int64_t frames_read() const { return frames_read_; }

  // Once Next has returned false: kCorruptData when the video ended before
  // its end ("the video ends early: N of M frames decoded": fewer frames
  // than an MP4's sample tables declare, or a decoding failure), else OK.
  // (Other containers do not state an exact count of frames.)
  Status EndStatus() const;

  // Decodes the current frame and encodes it as JPEG of that quality
  // (1..100). The pixel buffer is overwritten afterwards. Errors:
  // kCorruptData (the frame does not decode), kInternal (encoding failed).
  Result<std::vector<uint8_t>> EncodeJpeg(int quality);

  VideoFrameSource(const VideoFrameSource&) = delete;
  VideoFrameSource& operator=(const VideoFrameSource&) = delete;

 private:
  struct Impl;
  VideoFrameSource() = default;
  std::unique_ptr<Impl> impl_;
  int width_ = 0, height_ = 0;
  double fps_ = 0;
  int64_t frames_read_ = 0;
  int64_t last_t_ms_ = 0;
  std::string path_;
  int64_t frames_declared_ = 0;  // MP4 only; 0: not known
  bool decode_failed_ = false;
};

}  // namespace bantay::client

#endif  // BANTAY_CLIENT_SRC_VIDEO_FRAMES_H_
