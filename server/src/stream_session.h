// Stream sessions (issue 6, protocol in the streams section of
// server/openapi.json): the policy a session is created with, and the state
// of one session from the frames it is shown to its stream verdict. Nothing
// here knows about transports, threads or the index: the registry
// (streams.h) feeds it, and tests drive it frame by frame.
//
// A frame goes through, in order:
//   1. arrival (Arrive): a frame whose stream time is below the last
//      accepted one is refused (out_of_order); a frame less than
//      sample_interval_ms of stream time after the last sampled frame is
//      "not_sampled" and costs nothing more; otherwise it is sampled and
//      goes to hashing (the sampling slot is used even if the frame is then
//      dropped or turns out undecodable);
//   2. after hashing (Evaluate): quality under quality_min -> "low_quality"
//      (outside the window); within skip_distance bits of the last frame
//      that was searched -> "skipped", which repeats that frame's verdict
//      into the window without a search; otherwise it is searched ->
//      "match" or "no_match".
// The window holds the last `window` frames that were searched or skipped.
// Stream verdict: "match" once k of them matched (latched for the life of
// the session), else "suspect" when one of them matched, else "clean".
//
// Thread safety: StreamPolicy is a value; StreamState is not thread-safe
// (the registry holds a lock around it).
#ifndef BANTAY_SERVER_STREAM_SESSION_H_
#define BANTAY_SERVER_STREAM_SESSION_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bantay/models/hash256.h"
#include "bantay/models/status.h"

namespace bantay::server {

struct StreamPolicy {
  int64_t sample_interval_ms = 1000;  // 0..3'600'000; 0: every frame
  int quality_min = 50;               // 0..100
  int window = 10;                    // 1..kMaxWindow
  int k = 2;                          // 1..window
  int skip_distance = 8;              // -1 (off)..256
  bool trim_borders = true;
  bool dihedral = true;
  int radius = 31;                    // 0..the server's match radius
  std::string label;                  // at most kMaxLabelBytes

  static constexpr int kMaxWindow = 100;
  static constexpr size_t kMaxLabelBytes = 128;
  static constexpr int64_t kMaxSampleIntervalMs = 3'600'000;
};

// What the server and the caller's key allow a policy.
struct PolicyLimits {
  int max_radius = 31;   // the server's [match] radius: the default and the maximum
  int min_quality = 50;  // the server's [match] min_quality: the default quality_min
  // Lab keys may narrow the radius and lower quality_min, as on
  // /v1/match; for other keys either would make the stream an oracle for
  // a reference hash's distance (bisecting the radius), which their match
  // answers never give.
  bool lab = false;
};

// Reads the JSON body of POST /v1/streams (an empty body: every default).
// Members are optional; unknown members, wrong types and values out of
// bounds are kInvalidArgument naming the member; a radius other than the
// server's, or a quality_min under the server's min_quality, from a key
// that is not a lab's is kPermissionDenied.
Result<StreamPolicy> ParseStreamPolicy(std::string_view body, const PolicyLimits& limits);
// The policy with every member resolved, as a JSON object's text.
std::string StreamPolicyJson(const StreamPolicy& policy);

enum class FrameVerdict { kMatch, kNoMatch, kSkipped, kLowQuality, kNotSampled, kDropped, kError };
enum class StreamVerdict { kClean, kSuspect, kMatch };
std::string_view FrameVerdictName(FrameVerdict verdict);
std::string_view StreamVerdictName(StreamVerdict verdict);

// One entry of the index a frame matched (copied out of the snapshot).
struct StreamMatch {
  std::string list;
  std::string category;
  std::string ref;
  int distance = 0;
};

// What the index said about one frame's hash.
using StreamSearch = std::function<std::vector<StreamMatch>(const models::Hash256&)>;

// The outcome of one frame: the frame event, and the stream state when the
// stream verdict changed with it.
struct FrameOutcome {
  FrameVerdict verdict = FrameVerdict::kError;
  std::string frame_event;    // JSON text
  std::string verdict_event;  // JSON text; empty when the verdict did not change
};

class StreamState {
 public:
  // `created_unix_ms`: wall clock (for created_at/updated_at); `lab`: frame
  // events may carry the distance of a match.
  StreamState(std::string id, StreamPolicy policy, bool lab, int64_t created_unix_ms);

  const std::string& id() const { return id_; }
  const StreamPolicy& policy() const { return policy_; }
  StreamVerdict verdict() const { return verdict_; }

  // Step 1, on arrival. kOutOfOrder when t_ms is below the last accepted
  // stream time (nothing is counted); otherwise the frame is counted as
  // received and gets the index *frame (0 for the first). kNotSampled: the
  // frame is finished, *outcome holds its event. kSample: the frame is to
  // be hashed, then given to Evaluate, Dropped or Failed with its index.
  enum class Arrival { kOutOfOrder, kNotSampled, kSample };
  Arrival Arrive(int64_t t_ms, std::optional<uint32_t> seq, int64_t now_unix_ms,
                 uint64_t* frame, FrameOutcome* outcome);

  // Step 2: a sampled frame's hash and quality. `search` runs only when the
  // frame is neither low quality nor skipped.
  FrameOutcome Evaluate(uint64_t frame, int64_t t_ms, std::optional<uint32_t> seq,
                        const models::Hash256& hash, int quality, const StreamSearch& search,
                        int64_t now_unix_ms);
  // A sampled frame dropped by backpressure before it was hashed.
  FrameOutcome Dropped(uint64_t frame, int64_t t_ms, std::optional<uint32_t> seq,
                       int64_t now_unix_ms);
  // A sampled frame that could not be hashed (undecodable, too large...).
  // It does not use up its sampling interval: the next frame is sampled
  // (unless a later one has been already).
  FrameOutcome Failed(uint64_t frame, int64_t t_ms, std::optional<uint32_t> seq,
                      const Error& error, int64_t now_unix_ms);

  // The state, as GET /v1/streams/{id} answers it ("type":"verdict").
  std::string StateJson() const;
  // The final state of a session that ended, for the webhook: as StateJson
  // with "type":"ended" and "reason" ("deleted", "expired", "shutdown")
  // instead of "previous".
  std::string EndedJson(std::string_view reason) const;

  // Counters (also in StateJson).
  struct Counters {
    uint64_t received = 0, hashed = 0, matched = 0, skipped = 0, low_quality = 0,
             not_sampled = 0, dropped = 0, errors = 0;
  };
  const Counters& counters() const { return counters_; }

  static constexpr size_t kMaxMatches = 32;

 private:
  std::string FrameEvent(FrameVerdict verdict, uint64_t frame, int64_t t_ms,
                         std::optional<uint32_t> seq, std::optional<int> quality,
                         std::optional<int> distance, const Error* error) const;
  std::string StateJson(StreamVerdict previous) const;
  // StateJson's fields after "type" and either "previous" or "reason".
  std::string Json(std::string_view type, std::optional<StreamVerdict> previous,
                   std::string_view reason) const;
  // Pushes a searched or skipped frame into the window; the new verdict.
  void Push(bool matched, int64_t t_ms);

  const std::string id_;
  const StreamPolicy policy_;
  const bool lab_;
  const int64_t created_unix_ms_;
  int64_t updated_unix_ms_;
  std::optional<int64_t> last_t_;          // last accepted stream time
  std::optional<int64_t> last_sampled_t_;  // last sampled stream time
  std::optional<int64_t> before_last_sampled_t_;  // its value before that sample
  // The last frame that was searched: its hash, whether it matched, what.
  std::optional<models::Hash256> last_hash_;
  bool last_matched_ = false;
  std::deque<bool> window_;  // at most policy_.window, newest at the back
  int window_matches_ = 0;
  StreamVerdict verdict_ = StreamVerdict::kClean;
  StreamVerdict previous_ = StreamVerdict::kClean;
  std::optional<int64_t> first_match_t_;
  std::optional<int64_t> last_match_t_;
  std::vector<StreamMatch> matches_;  // distinct (list, ref), at most kMaxMatches
  Counters counters_;
};

// RFC 3339 UTC with milliseconds ("2026-12-04T19:17:16.123Z").
std::string Rfc3339(int64_t unix_ms);

}  // namespace bantay::server

#endif  // BANTAY_SERVER_STREAM_SESSION_H_
