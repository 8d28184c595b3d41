// Metrics: the server's counters and histograms, rendered as Prometheus text
// (exposition format 0.0.4) for GET /metrics.
//
// Thread safety: every method is thread-safe. Recording is cheap: counters
// and histogram buckets are atomics; label sets (route x status, list) are
// found under a shared lock and created once under an exclusive one.
#ifndef BANTAY_SERVER_METRICS_H_
#define BANTAY_SERVER_METRICS_H_

#include <atomic>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>

namespace bantay::server {

class Metrics {
 public:
  // Histogram bucket upper bounds, in seconds.
  static constexpr double kLatencyBuckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                               0.05,   0.1,   0.25,   0.5,   1.0,  2.5,
                                               5.0,    10.0};

  // One finished request: `route` is the route template ("/v1/lists/{list}",
  // or "unmatched"), never the raw path (which could hold anything).
  void RecordRequest(const std::string& route, int status, double seconds);
  void RecordMatch(const std::string& list);
  void RecordRateLimited();
  void RecordOverloaded();
  void SetIndex(uint64_t version, uint64_t pdq, uint64_t md5, uint64_t sha256);
  // One attempt to bring the index up to the store's version (a poll, or
  // the sync after a change): a success sets the time of the last one.
  void RecordIndexSync(bool ok);
  // One change set the index verified and applied, by how it was verified:
  // hashing only the entries it added after the state's hashes, taking the
  // hashes this server's writer signed over the same state, or hashing the
  // whole state (O(entries)).
  enum class ChangeVerified { kAppended, kWriter, kHashed };
  void RecordChangeVerified(ChangeVerified how);
  void SetQueueDepth(int64_t depth);
  void AddConnections(int64_t delta);
  // Stream sessions: how many are open, each frame's verdict ("match",
  // "no_match", "skipped", "low_quality", "not_sampled", "dropped",
  // "error"), and stream verdict changes.
  void SetStreamsActive(int64_t count);
  void RecordStreamFrame(std::string_view verdict);
  void RecordStreamVerdictChange();
  // The webhook sender's counters (copied in before each rendering).
  struct WebhookCounts {
    uint64_t delivered = 0, failed = 0, dropped = 0, rejected = 0, abandoned = 0, retries = 0,
             in_queue = 0;
  };
  void SetWebhookCounts(const WebhookCounts& counts);

  // The whole exposition text:
  //   bantay_requests_total{route="...",status="200"} N
  //   bantay_request_duration_seconds_bucket{route="...",le="0.0005"} N ... le="+Inf"
  //   bantay_request_duration_seconds_sum{route="..."} S
  //   bantay_request_duration_seconds_count{route="..."} N
  //   bantay_matches_total{list="..."} N
  //   bantay_index_last_sync_timestamp_seconds T   (0 before the first)
  //   bantay_index_sync_failures_total N
  //   bantay_index_version N
  //   bantay_index_changes_verified_total{how="appended"|"hashed"|"writer"} N
  //   bantay_index_entries{type="pdq"|"md5"|"sha256"} N
  //   bantay_compute_queue_depth N
  //   bantay_connections N
  //   bantay_rate_limited_total N
  //   bantay_overloaded_total N
  //   bantay_stream_frames_total{verdict="..."} N   (every verdict, from 0)
  //   bantay_stream_verdict_changes_total N
  //   bantay_streams_active N
  //   bantay_webhook_events_total{outcome="delivered"|"failed"|"dropped"|
  //                               "rejected"|"abandoned"} N
  //   bantay_webhook_queue N
  //   bantay_webhook_retries_total N
  // each family with its # HELP and # TYPE lines; label values escaped
  // (backslash, double quote, newline); families and label sets sorted.
  std::string Render() const;

 private:
  // Defined here (not in metrics.cc) so that Metrics can be destroyed
  // where only this header is seen.
  struct Histogram {
    std::atomic<uint64_t> buckets[std::size(kLatencyBuckets) + 1] = {};  // last: +Inf
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> sum_nanos{0};
  };
  struct Counter {
    std::atomic<uint64_t> value{0};
  };
  mutable std::shared_mutex mu_;
  std::map<std::pair<std::string, int>, std::unique_ptr<Counter>> requests_;  // mu_
  std::map<std::string, std::unique_ptr<Histogram>> latency_;                 // mu_
  std::map<std::string, std::unique_ptr<Counter>> matches_;                   // mu_
  std::atomic<uint64_t> index_version_{0};
  std::atomic<uint64_t> entries_[3] = {};
  std::atomic<int64_t> last_sync_unix_s_{0};
  std::atomic<uint64_t> sync_failures_{0};
  std::atomic<uint64_t> changes_verified_[3] = {};  // by ChangeVerified
  std::atomic<int64_t> queue_depth_{0};
  std::atomic<int64_t> connections_{0};
  std::atomic<uint64_t> rate_limited_{0};
  std::atomic<uint64_t> overloaded_{0};
  std::atomic<int64_t> streams_active_{0};
  std::atomic<uint64_t> stream_frames_[7] = {};  // by kStreamFrameVerdicts
  std::atomic<uint64_t> stream_verdict_changes_{0};
  mutable std::mutex webhook_mu_;
  WebhookCounts webhook_;  // guarded by webhook_mu_
};

}  // namespace bantay::server

#endif  // BANTAY_SERVER_METRICS_H_
