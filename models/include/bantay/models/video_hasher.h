// Video files: telling a video container from its first bytes, hashing its
// frames vPDQ-style (one PDQ hash per frame or per sampling interval, with
// the frame number, quality and timestamp), and comparing two videos' frame
// hashes with vPDQ's query-match and compared-match percentages.
//
// Frames are decoded with OpenCV's VideoCapture straight from the file (read
// only); nothing is written to disk, and each frame's pixel buffer is
// overwritten after it is hashed.
//
// Thread safety: HashVideoFile and the free functions are safe to call from
// several threads at once (each call has its own decoder).
#ifndef BANTAY_MODELS_VIDEO_HASHER_H_
#define BANTAY_MODELS_VIDEO_HASHER_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bantay/models/hash256.h"
#include "bantay/models/image_hasher.h"
#include "bantay/models/status.h"

namespace bantay::models {

enum class VideoFormat {
  kUnknown,
  kMp4,        // ISO base media: MP4, M4V, 3GP, QuickTime (ftyp/moov/mdat)
  kMatroska,   // Matroska and WebM (EBML header)
  kAvi,        // RIFF....AVI
  kMpegTs,     // MPEG transport stream (sync byte every 188 bytes)
  kMpegPs,     // MPEG program stream
  kFlv,        // Flash video
  kAsf,        // ASF/WMV
};

// "mp4", "matroska", "avi", "mpegts", "mpegps", "flv", "asf" or "unknown".
std::string_view VideoFormatName(VideoFormat format);

// How many leading bytes DetectVideoFormat wants to see (fewer are fine; a
// format whose signature needs more is then not recognised).
inline constexpr size_t kVideoProbeBytes = 512;

// The container whose signature the bytes start with, or kUnknown.
VideoFormat DetectVideoFormat(std::span<const uint8_t> head);

struct VideoHashOptions {
  // 0: hash every frame; otherwise one frame every this many seconds of
  // video time (vPDQ's seconds_per_hash), starting with the first frame.
  double seconds_per_hash = 0;
  // A video whose frames declare more pixels than this is refused
  // (kTooLarge) before any frame is decoded.
  int64_t max_pixels_per_frame = kDefaultMaxPixels;
  // Stop after this many decoded frames (0: no limit); the result says so.
  int64_t max_frames = 0;
  // 0: hash frames at their own size; otherwise frames are first scaled to
  // this many pixels square (the reference's `-128x128` hash files).
  int downscale_to = 0;
  // Hash only each frame's content rectangle, after removing letterbox/
  // pillarbox borders (FindContentRect with default options, see
  // border_trim.h), found frame by frame; scaling to a square, if asked,
  // comes after. Not part of vPDQ: hashes of a bordered video then match
  // those of its unbordered original.
  bool trim_borders = false;
};

// One line of a vPDQ hash file: `frame_number,quality,pdq_hex,timestamp`.
struct VideoFrameHash {
  int64_t frame_number = 0;  // 0-based, counting every decoded frame
  int quality = 0;           // PDQ quality, 0..100
  Hash256 pdq;
  double timestamp = 0;      // seconds of video time
};

struct VideoHashes {
  int width = 0;
  int height = 0;
  double fps = 0;
  int64_t frames_decoded = 0;
  bool truncated = false;  // stopped at max_frames
  // Decoding ended before the number of frames an MP4 container declares in
  // its sample tables: a truncated or damaged file, whose frames up to the
  // damage are still hashed. (Other containers do not state an exact count;
  // for them this stays false.)
  bool incomplete = false;
  int64_t frames_declared = 0;  // as an MP4 container states it (0: unknown)
  // With trim_borders: how many of the hashed frames had borders removed.
  int64_t frames_trimmed = 0;
  std::vector<VideoFrameHash> frames;
};

// Errors: kNotFound, kPermissionDenied, kUnsupportedFormat (not a regular
// file, a container DetectVideoFormat does not recognise, or no video stream
// OpenCV can decode), kTooLarge (frame size over the limit), kCorruptData
// (no frame could be decoded), kIo (reading the file's first bytes failed),
// kInvalidArgument (negative options).
Result<VideoHashes> HashVideoFile(const std::string& path,
                                  const VideoHashOptions& options = {});

// vPDQ's comparison of two videos: the percentage of the query's frames
// (of quality >= quality_tolerance, duplicates counted once) that are within
// distance_tolerance of some frame of the compared video, and the same the
// other way round.
struct VideoComparison {
  double query_match_percent = 0;
  double compared_match_percent = 0;
};

VideoComparison CompareVideos(std::span<const VideoFrameHash> query,
                              std::span<const VideoFrameHash> compared,
                              int distance_tolerance = 31,
                              int quality_tolerance = 50);

// The text line of a frame hash, as in the reference's hash files:
// `frame_number,quality,pdq_hex,timestamp` with three decimals.
std::string FormatVideoFrameHash(const VideoFrameHash& frame);

// Parses one such line. Errors: kInvalidArgument.
Result<VideoFrameHash> ParseVideoFrameHash(std::string_view line);

}  // namespace bantay::models

#endif  // BANTAY_MODELS_VIDEO_HASHER_H_
