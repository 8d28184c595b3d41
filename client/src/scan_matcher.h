// Where `bantay scan` matches what it computed for a file: a local index
// (hash list, store or verified snapshot) or a bantay-server. Both give the
// matches of one file, merged per list entry.
#ifndef BANTAY_CLIENT_SCAN_MATCHER_H_
#define BANTAY_CLIENT_SCAN_MATCHER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bantay/client/http_client.h"
#include "bantay/matcher/hash_index.h"
#include "bantay/models/digest.h"
#include "bantay/models/hash256.h"
#include "bantay/models/pdq.h"
#include "bantay/models/status.h"
#include "scan_report.h"

namespace bantay::client {

struct PdqQuery {
  models::Hash256 hash;
  int quality = 0;
  models::Dihedral variant = models::Dihedral::kOriginal;
  double timestamp = -1;  // videos: the frame's time; -1 for images
};

// What one file gave: its digests (when it could be read) and PDQ hashes to
// match — one (or the 8 dihedral variants, in Dihedral order) for an image,
// the frames of quality >= 50 for a video.
struct FileSignals {
  bool has_digests = false;
  models::ExactDigests digests{};
  std::vector<PdqQuery> pdq;
  bool dihedral = false;  // pdq holds the 8 variants of one image
  bool video = false;
};

struct FileMatches {
  std::vector<ScanMatch> matches;  // sorted: distance, signal, list, reference
  int64_t frames_matched = 0;      // videos
};

class ScanMatcher {
 public:
  virtual ~ScanMatcher() = default;
  // Called from several worker threads at once, each with its own index
  // 0..workers-1. An error ends the scan (the server cannot be reached).
  virtual Result<FileMatches> Match(const FileSignals& signals, int worker) = 0;
};

std::unique_ptr<ScanMatcher> MakeLocalMatcher(
    std::shared_ptr<const matcher::IndexSnapshot> snapshot, int radius);

struct ServerMatcherOptions {
  ClientOptions client;
  int workers = 1;
  int radius = -1;  // -1: the server's (platform keys may not set it)
  int max_batch_items = 100;
};
std::unique_ptr<ScanMatcher> MakeServerMatcher(ServerMatcherOptions options);

}  // namespace bantay::client

#endif  // BANTAY_CLIENT_SCAN_MATCHER_H_
