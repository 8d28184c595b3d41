#include "metrics.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <mutex>
#include <string_view>

namespace bantay::server {

namespace {

// A week; beyond it a latency is a bug, and sum_nanos must not overflow.
constexpr double kMaxSeconds = 7 * 24 * 3600.0;

// The shortest text that reads back as `value`, never in exponent form
// (Prometheus reads both, but le="5e-04" would be a surprise to a reader).
std::string FormatDouble(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value,
                                    std::chars_format::fixed);
  return std::string(buffer, result.ptr);
}

// Exposition format 0.0.4: backslash, double quote and line feed escaped.
std::string EscapeLabel(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

void AppendHeader(std::string* out, std::string_view name,
                  std::string_view type, std::string_view help) {
  *out += "# HELP ";
  *out += name;
  *out += ' ';
  *out += help;
  *out += "\n# TYPE ";
  *out += name;
  *out += ' ';
  *out += type;
  *out += '\n';
}

template <typename T>
void AppendSample(std::string* out, std::string_view name,
                  std::string_view labels, T value) {
  *out += name;
  if (!labels.empty()) {
    *out += '{';
    *out += labels;
    *out += '}';
  }
  *out += ' ';
  *out += std::to_string(value);
  *out += '\n';
}

template <typename Map, typename Key>
typename Map::mapped_type::element_type* FindOrCreate(std::shared_mutex* mu,
                                                      Map* map,
                                                      const Key& key) {
  {
    std::shared_lock lock(*mu);
    auto it = map->find(key);
    if (it != map->end()) return it->second.get();
  }
  std::unique_lock lock(*mu);
  auto& slot = (*map)[key];
  if (!slot) slot = std::make_unique<typename Map::mapped_type::element_type>();
  return slot.get();
}

}  // namespace

void Metrics::RecordRequest(const std::string& route, int status,
                            double seconds) {
  if (!(seconds >= 0)) seconds = 0;  // also NaN
  if (seconds > kMaxSeconds) seconds = kMaxSeconds;

  FindOrCreate(&mu_, &requests_, std::make_pair(route, status))
      ->value.fetch_add(1, std::memory_order_relaxed);

  Histogram* histogram = FindOrCreate(&mu_, &latency_, route);
  size_t bucket = 0;
  while (bucket < std::size(kLatencyBuckets) &&
         seconds > kLatencyBuckets[bucket])
    ++bucket;
  histogram->buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  histogram->sum_nanos.fetch_add(
      static_cast<uint64_t>(std::llround(seconds * 1e9)),
      std::memory_order_relaxed);
  histogram->count.fetch_add(1, std::memory_order_relaxed);
}

void Metrics::RecordMatch(const std::string& list) {
  FindOrCreate(&mu_, &matches_, list)
      ->value.fetch_add(1, std::memory_order_relaxed);
}

void Metrics::RecordRateLimited() {
  rate_limited_.fetch_add(1, std::memory_order_relaxed);
}

void Metrics::RecordOverloaded() {
  overloaded_.fetch_add(1, std::memory_order_relaxed);
}

void Metrics::RecordIndexSync(bool ok) {
  if (!ok) {
    sync_failures_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  last_sync_unix_s_.store(std::chrono::duration_cast<std::chrono::seconds>(now).count(),
                          std::memory_order_relaxed);
}

void Metrics::RecordChangeVerified(ChangeVerified how) {
  changes_verified_[static_cast<int>(how)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::SetIndex(uint64_t version, uint64_t pdq, uint64_t md5,
                       uint64_t sha256) {
  index_version_.store(version, std::memory_order_relaxed);
  entries_[0].store(pdq, std::memory_order_relaxed);
  entries_[1].store(md5, std::memory_order_relaxed);
  entries_[2].store(sha256, std::memory_order_relaxed);
}

void Metrics::SetQueueDepth(int64_t depth) {
  queue_depth_.store(depth, std::memory_order_relaxed);
}

void Metrics::AddConnections(int64_t delta) {
  connections_.fetch_add(delta, std::memory_order_relaxed);
}

namespace {

// In the order of the exposition (sorted).
constexpr std::string_view kStreamFrameVerdicts[] = {
    "dropped", "error", "low_quality", "match", "no_match", "not_sampled", "skipped"};

}  // namespace

void Metrics::SetStreamsActive(int64_t count) {
  streams_active_.store(count, std::memory_order_relaxed);
}

void Metrics::RecordStreamFrame(std::string_view verdict) {
  for (size_t i = 0; i < std::size(kStreamFrameVerdicts); ++i) {
    if (kStreamFrameVerdicts[i] == verdict) {
      stream_frames_[i].fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
}

void Metrics::SetWebhookCounts(const WebhookCounts& counts) {
  std::lock_guard lock(webhook_mu_);
  webhook_ = counts;
}

void Metrics::RecordStreamVerdictChange() {
  stream_verdict_changes_.fetch_add(1, std::memory_order_relaxed);
}

std::string Metrics::Render() const {
  std::string out;
  out.reserve(4096);
  constexpr auto relaxed = std::memory_order_relaxed;

  // Families in name order.
  AppendHeader(&out, "bantay_compute_queue_depth", "gauge",
               "Tasks waiting for the compute pool.");
  AppendSample(&out, "bantay_compute_queue_depth", "",
               queue_depth_.load(relaxed));

  AppendHeader(&out, "bantay_connections", "gauge", "Connections open.");
  AppendSample(&out, "bantay_connections", "", connections_.load(relaxed));

  AppendHeader(&out, "bantay_index_changes_verified_total", "counter",
               "Change sets the index verified and applied, by how: hashing only the entries "
               "added (appended), with the hashes this server's writer signed over the same "
               "state (writer), or hashing the whole state (hashed).");
  AppendSample(&out, "bantay_index_changes_verified_total", "how=\"appended\"",
               changes_verified_[static_cast<int>(ChangeVerified::kAppended)].load(relaxed));
  AppendSample(&out, "bantay_index_changes_verified_total", "how=\"hashed\"",
               changes_verified_[static_cast<int>(ChangeVerified::kHashed)].load(relaxed));
  AppendSample(&out, "bantay_index_changes_verified_total", "how=\"writer\"",
               changes_verified_[static_cast<int>(ChangeVerified::kWriter)].load(relaxed));

  AppendHeader(&out, "bantay_index_entries", "gauge",
               "Active entries of the serving index, by hash type.");
  AppendSample(&out, "bantay_index_entries", "type=\"md5\"",
               entries_[1].load(relaxed));
  AppendSample(&out, "bantay_index_entries", "type=\"pdq\"",
               entries_[0].load(relaxed));
  AppendSample(&out, "bantay_index_entries", "type=\"sha256\"",
               entries_[2].load(relaxed));

  AppendHeader(&out, "bantay_index_last_sync_timestamp_seconds", "gauge",
               "Unix time of the last successful check of the store for changes.");
  AppendSample(&out, "bantay_index_last_sync_timestamp_seconds", "",
               last_sync_unix_s_.load(relaxed));

  AppendHeader(&out, "bantay_index_sync_failures_total", "counter",
               "Failed attempts to bring the index up to the store's version.");
  AppendSample(&out, "bantay_index_sync_failures_total", "", sync_failures_.load(relaxed));

  AppendHeader(&out, "bantay_index_version", "gauge",
               "Store version of the serving index.");
  AppendSample(&out, "bantay_index_version", "", index_version_.load(relaxed));

  std::shared_lock lock(mu_);

  AppendHeader(&out, "bantay_matches_total", "counter",
               "Matches found, by list.");
  for (const auto& [list, counter] : matches_) {
    AppendSample(&out, "bantay_matches_total",
                 "list=\"" + EscapeLabel(list) + "\"",
                 counter->value.load(relaxed));
  }

  AppendHeader(&out, "bantay_overloaded_total", "counter",
               "Requests refused with 503 because a queue was full.");
  AppendSample(&out, "bantay_overloaded_total", "", overloaded_.load(relaxed));

  AppendHeader(&out, "bantay_rate_limited_total", "counter",
               "Requests refused with 429 because the key's bucket was empty.");
  AppendSample(&out, "bantay_rate_limited_total", "",
               rate_limited_.load(relaxed));

  AppendHeader(&out, "bantay_request_duration_seconds", "histogram",
               "Request latency in seconds, by route template.");
  for (const auto& [route, histogram] : latency_) {
    const std::string route_label = "route=\"" + EscapeLabel(route) + "\"";
    // The count is the sum of the buckets read here, so that it equals the
    // +Inf bucket even while requests are being recorded.
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= std::size(kLatencyBuckets); ++i) {
      cumulative += histogram->buckets[i].load(relaxed);
      const std::string le = i < std::size(kLatencyBuckets)
                                 ? FormatDouble(kLatencyBuckets[i])
                                 : "+Inf";
      AppendSample(&out, "bantay_request_duration_seconds_bucket",
                   route_label + ",le=\"" + le + "\"", cumulative);
    }
    out += "bantay_request_duration_seconds_sum{" + route_label + "} " +
           FormatDouble(
               static_cast<double>(histogram->sum_nanos.load(relaxed)) / 1e9) +
           "\n";
    AppendSample(&out, "bantay_request_duration_seconds_count", route_label,
                 cumulative);
  }

  AppendHeader(&out, "bantay_requests_total", "counter",
               "Requests answered, by route template and HTTP status.");
  for (const auto& [key, counter] : requests_) {
    AppendSample(&out, "bantay_requests_total",
                 "route=\"" + EscapeLabel(key.first) + "\",status=\"" +
                     std::to_string(key.second) + "\"",
                 counter->value.load(relaxed));
  }

  AppendHeader(&out, "bantay_stream_frames_total", "counter",
               "Stream frames, by frame verdict (dropped: replaced by a newer "
               "frame or refused by a full compute queue).");
  for (size_t i = 0; i < std::size(kStreamFrameVerdicts); ++i) {
    AppendSample(&out, "bantay_stream_frames_total",
                 "verdict=\"" + std::string(kStreamFrameVerdicts[i]) + "\"",
                 stream_frames_[i].load(relaxed));
  }

  AppendHeader(&out, "bantay_stream_verdict_changes_total", "counter",
               "Stream verdict changes (clean, suspect, match).");
  AppendSample(&out, "bantay_stream_verdict_changes_total", "",
               stream_verdict_changes_.load(relaxed));

  AppendHeader(&out, "bantay_streams_active", "gauge",
               "Stream sessions open.");
  AppendSample(&out, "bantay_streams_active", "", streams_active_.load(relaxed));

  WebhookCounts webhook;
  {
    std::lock_guard webhook_lock(webhook_mu_);
    webhook = webhook_;
  }
  AppendHeader(&out, "bantay_webhook_events_total", "counter",
               "Webhook events (stream verdict changes) by outcome: delivered, "
               "failed (refused or out of attempts), dropped (queue full), "
               "rejected (URL or secret refused), abandoned (at shutdown).");
  AppendSample(&out, "bantay_webhook_events_total", "outcome=\"abandoned\"", webhook.abandoned);
  AppendSample(&out, "bantay_webhook_events_total", "outcome=\"delivered\"", webhook.delivered);
  AppendSample(&out, "bantay_webhook_events_total", "outcome=\"dropped\"", webhook.dropped);
  AppendSample(&out, "bantay_webhook_events_total", "outcome=\"failed\"", webhook.failed);
  AppendSample(&out, "bantay_webhook_events_total", "outcome=\"rejected\"", webhook.rejected);
  AppendHeader(&out, "bantay_webhook_queue", "gauge",
               "Webhook events held (waiting, in flight or waiting for a retry).");
  AppendSample(&out, "bantay_webhook_queue", "", webhook.in_queue);
  AppendHeader(&out, "bantay_webhook_retries_total", "counter",
               "Webhook delivery attempts after the first.");
  AppendSample(&out, "bantay_webhook_retries_total", "", webhook.retries);
  return out;
}

}  // namespace bantay::server
