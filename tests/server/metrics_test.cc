#include "metrics.h"

#include <gtest/gtest.h>

#include <chrono>

#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace bantay::server {
namespace {

constexpr char kFamiliesBeforeMatches[] =
    "# HELP bantay_compute_queue_depth Tasks waiting for the compute pool.\n"
    "# TYPE bantay_compute_queue_depth gauge\n";

// A successful sync sets the time of the last one (Unix seconds, read
// from the clock between the two bounds).
TEST(MetricsTest, ASuccessfulSyncSetsItsTime) {
  Metrics metrics;
  auto unix_now = [] {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  const int64_t before = unix_now();
  metrics.RecordIndexSync(true);
  const int64_t after = unix_now();
  const std::string text = metrics.Render();
  const std::string name = "\nbantay_index_last_sync_timestamp_seconds ";
  const size_t at = text.find(name);
  ASSERT_NE(at, std::string::npos);
  const int64_t value = std::stoll(text.substr(at + name.size()));
  EXPECT_GE(value, before);
  EXPECT_LE(value, after);
  EXPECT_NE(text.find("\nbantay_index_sync_failures_total 0\n"), std::string::npos);
}

TEST(MetricsTest, EmptyRender) {
  Metrics metrics;
  EXPECT_EQ(
      metrics.Render(),
      "# HELP bantay_compute_queue_depth Tasks waiting for the compute pool.\n"
      "# TYPE bantay_compute_queue_depth gauge\n"
      "bantay_compute_queue_depth 0\n"
      "# HELP bantay_connections Connections open.\n"
      "# TYPE bantay_connections gauge\n"
      "bantay_connections 0\n"
      "# HELP bantay_index_changes_verified_total Change sets the index verified and applied, "
      "by how: hashing only the entries added (appended), with the hashes this server's writer "
      "signed over the same state (writer), or hashing the whole state (hashed).\n"
      "# TYPE bantay_index_changes_verified_total counter\n"
      "bantay_index_changes_verified_total{how=\"appended\"} 0\n"
      "bantay_index_changes_verified_total{how=\"hashed\"} 0\n"
      "bantay_index_changes_verified_total{how=\"writer\"} 0\n"
      "# HELP bantay_index_entries Active entries of the serving index, by "
      "hash type.\n"
      "# TYPE bantay_index_entries gauge\n"
      "bantay_index_entries{type=\"md5\"} 0\n"
      "bantay_index_entries{type=\"pdq\"} 0\n"
      "bantay_index_entries{type=\"sha256\"} 0\n"
      "# HELP bantay_index_last_sync_timestamp_seconds Unix time of the last successful "
      "check of the store for changes.\n"
      "# TYPE bantay_index_last_sync_timestamp_seconds gauge\n"
      "bantay_index_last_sync_timestamp_seconds 0\n"
      "# HELP bantay_index_sync_failures_total Failed attempts to bring the index up to the "
      "store's version.\n"
      "# TYPE bantay_index_sync_failures_total counter\n"
      "bantay_index_sync_failures_total 0\n"
      "# HELP bantay_index_version Store version of the serving index.\n"
      "# TYPE bantay_index_version gauge\n"
      "bantay_index_version 0\n"
      "# HELP bantay_matches_total Matches found, by list.\n"
      "# TYPE bantay_matches_total counter\n"
      "# HELP bantay_overloaded_total Requests refused with 503 because a "
      "queue was full.\n"
      "# TYPE bantay_overloaded_total counter\n"
      "bantay_overloaded_total 0\n"
      "# HELP bantay_rate_limited_total Requests refused with 429 because the "
      "key's bucket "
      "was empty.\n"
      "# TYPE bantay_rate_limited_total counter\n"
      "bantay_rate_limited_total 0\n"
      "# HELP bantay_request_duration_seconds Request latency in seconds, by "
      "route "
      "template.\n"
      "# TYPE bantay_request_duration_seconds histogram\n"
      "# HELP bantay_requests_total Requests answered, by route template and "
      "HTTP status.\n"
      "# TYPE bantay_requests_total counter\n"
      "# HELP bantay_stream_frames_total Stream frames, by frame verdict "
      "(dropped: replaced by a newer frame or refused by a full compute "
      "queue).\n"
      "# TYPE bantay_stream_frames_total counter\n"
      "bantay_stream_frames_total{verdict=\"dropped\"} 0\n"
      "bantay_stream_frames_total{verdict=\"error\"} 0\n"
      "bantay_stream_frames_total{verdict=\"low_quality\"} 0\n"
      "bantay_stream_frames_total{verdict=\"match\"} 0\n"
      "bantay_stream_frames_total{verdict=\"no_match\"} 0\n"
      "bantay_stream_frames_total{verdict=\"not_sampled\"} 0\n"
      "bantay_stream_frames_total{verdict=\"skipped\"} 0\n"
      "# HELP bantay_stream_verdict_changes_total Stream verdict changes "
      "(clean, suspect, match).\n"
      "# TYPE bantay_stream_verdict_changes_total counter\n"
      "bantay_stream_verdict_changes_total 0\n"
      "# HELP bantay_streams_active Stream sessions open.\n"
      "# TYPE bantay_streams_active gauge\n"
      "bantay_streams_active 0\n"
      "# HELP bantay_webhook_events_total Webhook events (stream verdict "
      "changes) by outcome: delivered, failed (refused or out of attempts), "
      "dropped (queue full), rejected (URL or secret refused), abandoned (at "
      "shutdown).\n"
      "# TYPE bantay_webhook_events_total counter\n"
      "bantay_webhook_events_total{outcome=\"abandoned\"} 0\n"
      "bantay_webhook_events_total{outcome=\"delivered\"} 0\n"
      "bantay_webhook_events_total{outcome=\"dropped\"} 0\n"
      "bantay_webhook_events_total{outcome=\"failed\"} 0\n"
      "bantay_webhook_events_total{outcome=\"rejected\"} 0\n"
      "# HELP bantay_webhook_queue Webhook events held (waiting, in flight or "
      "waiting for a retry).\n"
      "# TYPE bantay_webhook_queue gauge\n"
      "bantay_webhook_queue 0\n"
      "# HELP bantay_webhook_retries_total Webhook delivery attempts after the "
      "first.\n"
      "# TYPE bantay_webhook_retries_total counter\n"
      "bantay_webhook_retries_total 0\n");
}

TEST(MetricsTest, RenderOfAFewRecordings) {
  Metrics metrics;
  // Recorded out of order: the text is sorted anyway.
  metrics.RecordRequest("/v1/match", 429, 0.02);
  metrics.RecordRequest("/v1/match", 200, 0.0003);
  metrics.RecordRequest("/healthz", 200, 12.5);  // over every bound: +Inf only
  metrics.RecordRequest("/v1/match", 200,
                        0.001);  // on a bound: counted in it (le)
  metrics.RecordMatch("demo");
  metrics.RecordMatch("abc");
  metrics.RecordMatch("demo");
  metrics.RecordRateLimited();
  metrics.RecordOverloaded();
  metrics.RecordOverloaded();
  metrics.RecordOverloaded();
  metrics.SetIndex(7, 100, 20, 30);
  metrics.RecordIndexSync(false);
  metrics.RecordIndexSync(false);
  metrics.RecordChangeVerified(Metrics::ChangeVerified::kAppended);
  metrics.RecordChangeVerified(Metrics::ChangeVerified::kWriter);
  metrics.RecordChangeVerified(Metrics::ChangeVerified::kAppended);
  metrics.SetQueueDepth(4);
  metrics.AddConnections(5);
  metrics.AddConnections(-2);

  EXPECT_EQ(
      metrics.Render(),
      "# HELP bantay_compute_queue_depth Tasks waiting for the compute pool.\n"
      "# TYPE bantay_compute_queue_depth gauge\n"
      "bantay_compute_queue_depth 4\n"
      "# HELP bantay_connections Connections open.\n"
      "# TYPE bantay_connections gauge\n"
      "bantay_connections 3\n"
      "# HELP bantay_index_changes_verified_total Change sets the index verified and applied, "
      "by how: hashing only the entries added (appended), with the hashes this server's writer "
      "signed over the same state (writer), or hashing the whole state (hashed).\n"
      "# TYPE bantay_index_changes_verified_total counter\n"
      "bantay_index_changes_verified_total{how=\"appended\"} 2\n"
      "bantay_index_changes_verified_total{how=\"hashed\"} 0\n"
      "bantay_index_changes_verified_total{how=\"writer\"} 1\n"
      "# HELP bantay_index_entries Active entries of the serving index, by "
      "hash type.\n"
      "# TYPE bantay_index_entries gauge\n"
      "bantay_index_entries{type=\"md5\"} 20\n"
      "bantay_index_entries{type=\"pdq\"} 100\n"
      "bantay_index_entries{type=\"sha256\"} 30\n"
      "# HELP bantay_index_last_sync_timestamp_seconds Unix time of the last successful "
      "check of the store for changes.\n"
      "# TYPE bantay_index_last_sync_timestamp_seconds gauge\n"
      "bantay_index_last_sync_timestamp_seconds 0\n"
      "# HELP bantay_index_sync_failures_total Failed attempts to bring the index up to the "
      "store's version.\n"
      "# TYPE bantay_index_sync_failures_total counter\n"
      "bantay_index_sync_failures_total 2\n"
      "# HELP bantay_index_version Store version of the serving index.\n"
      "# TYPE bantay_index_version gauge\n"
      "bantay_index_version 7\n"
      "# HELP bantay_matches_total Matches found, by list.\n"
      "# TYPE bantay_matches_total counter\n"
      "bantay_matches_total{list=\"abc\"} 1\n"
      "bantay_matches_total{list=\"demo\"} 2\n"
      "# HELP bantay_overloaded_total Requests refused with 503 because a "
      "queue was full.\n"
      "# TYPE bantay_overloaded_total counter\n"
      "bantay_overloaded_total 3\n"
      "# HELP bantay_rate_limited_total Requests refused with 429 because the "
      "key's bucket "
      "was empty.\n"
      "# TYPE bantay_rate_limited_total counter\n"
      "bantay_rate_limited_total 1\n"
      "# HELP bantay_request_duration_seconds Request latency in seconds, by "
      "route template.\n"
      "# TYPE bantay_request_duration_seconds histogram\n"
      "bantay_request_duration_seconds_bucket{route=\"/"
      "healthz\",le=\"0.0005\"} 0\n"
      "bantay_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.001\"} "
      "0\n"
      "bantay_request_duration_seconds_bucket{route=\"/"
      "healthz\",le=\"0.0025\"} 0\n"
      "bantay_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.005\"} "
      "0\n"
      "bantay_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.01\"} "
      "0\n"
      "bantay_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.025\"} "
      "0\n"
      "bantay_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.05\"} "
      "0\n"
      "bantay_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.1\"} "
      "0\n"
      "bantay_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.25\"} "
      "0\n"
      "bantay_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.5\"} "
      "0\n"
      "bantay_request_duration_seconds_bucket{route=\"/healthz\",le=\"1\"} 0\n"
      "bantay_request_duration_seconds_bucket{route=\"/healthz\",le=\"2.5\"} "
      "0\n"
      "bantay_request_duration_seconds_bucket{route=\"/healthz\",le=\"5\"} 0\n"
      "bantay_request_duration_seconds_bucket{route=\"/healthz\",le=\"10\"} 0\n"
      "bantay_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} "
      "1\n"
      "bantay_request_duration_seconds_sum{route=\"/healthz\"} 12.5\n"
      "bantay_request_duration_seconds_count{route=\"/healthz\"} 1\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/"
      "match\",le=\"0.0005\"} 1\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/"
      "match\",le=\"0.001\"} 2\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/"
      "match\",le=\"0.0025\"} 2\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/"
      "match\",le=\"0.005\"} 2\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/match\",le=\"0.01\"} "
      "2\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/"
      "match\",le=\"0.025\"} 3\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/match\",le=\"0.05\"} "
      "3\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/match\",le=\"0.1\"} "
      "3\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/match\",le=\"0.25\"} "
      "3\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/match\",le=\"0.5\"} "
      "3\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/match\",le=\"1\"} 3\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/match\",le=\"2.5\"} "
      "3\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/match\",le=\"5\"} 3\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/match\",le=\"10\"} "
      "3\n"
      "bantay_request_duration_seconds_bucket{route=\"/v1/match\",le=\"+Inf\"} "
      "3\n"
      "bantay_request_duration_seconds_sum{route=\"/v1/match\"} 0.0213\n"
      "bantay_request_duration_seconds_count{route=\"/v1/match\"} 3\n"
      "# HELP bantay_requests_total Requests answered, by route template and "
      "HTTP status.\n"
      "# TYPE bantay_requests_total counter\n"
      "bantay_requests_total{route=\"/healthz\",status=\"200\"} 1\n"
      "bantay_requests_total{route=\"/v1/match\",status=\"200\"} 2\n"
      "bantay_requests_total{route=\"/v1/match\",status=\"429\"} 1\n"
      "# HELP bantay_stream_frames_total Stream frames, by frame verdict "
      "(dropped: replaced by a newer frame or refused by a full compute "
      "queue).\n"
      "# TYPE bantay_stream_frames_total counter\n"
      "bantay_stream_frames_total{verdict=\"dropped\"} 0\n"
      "bantay_stream_frames_total{verdict=\"error\"} 0\n"
      "bantay_stream_frames_total{verdict=\"low_quality\"} 0\n"
      "bantay_stream_frames_total{verdict=\"match\"} 0\n"
      "bantay_stream_frames_total{verdict=\"no_match\"} 0\n"
      "bantay_stream_frames_total{verdict=\"not_sampled\"} 0\n"
      "bantay_stream_frames_total{verdict=\"skipped\"} 0\n"
      "# HELP bantay_stream_verdict_changes_total Stream verdict changes "
      "(clean, suspect, match).\n"
      "# TYPE bantay_stream_verdict_changes_total counter\n"
      "bantay_stream_verdict_changes_total 0\n"
      "# HELP bantay_streams_active Stream sessions open.\n"
      "# TYPE bantay_streams_active gauge\n"
      "bantay_streams_active 0\n"
      "# HELP bantay_webhook_events_total Webhook events (stream verdict "
      "changes) by outcome: delivered, failed (refused or out of attempts), "
      "dropped (queue full), rejected (URL or secret refused), abandoned (at "
      "shutdown).\n"
      "# TYPE bantay_webhook_events_total counter\n"
      "bantay_webhook_events_total{outcome=\"abandoned\"} 0\n"
      "bantay_webhook_events_total{outcome=\"delivered\"} 0\n"
      "bantay_webhook_events_total{outcome=\"dropped\"} 0\n"
      "bantay_webhook_events_total{outcome=\"failed\"} 0\n"
      "bantay_webhook_events_total{outcome=\"rejected\"} 0\n"
      "# HELP bantay_webhook_queue Webhook events held (waiting, in flight or "
      "waiting for a retry).\n"
      "# TYPE bantay_webhook_queue gauge\n"
      "bantay_webhook_queue 0\n"
      "# HELP bantay_webhook_retries_total Webhook delivery attempts after the "
      "first.\n"
      "# TYPE bantay_webhook_retries_total counter\n"
      "bantay_webhook_retries_total 0\n");
}


// Lines of one family, without its # HELP and # TYPE lines.
std::string Samples(const std::string& text, const std::string& family) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    const std::string line = text.substr(pos, end - pos + 1);
    if (line.rfind(family, 0) == 0) out += line;
    pos = end + 1;
  }
  return out;
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  Metrics metrics;
  metrics.RecordMatch("back\\slash \"quoted\"\nnext line");
  metrics.RecordRequest("a\"b", 404, 0.0);
  const std::string text = metrics.Render();
  EXPECT_EQ(Samples(text, "bantay_matches_total{"),
            "bantay_matches_total{list=\"back\\\\slash \\\"quoted\\\"\\nnext "
            "line\"} 1\n");
  EXPECT_EQ(Samples(text, "bantay_requests_total{"),
            "bantay_requests_total{route=\"a\\\"b\",status=\"404\"} 1\n");
  EXPECT_EQ(Samples(text, "bantay_request_duration_seconds_count"),
            "bantay_request_duration_seconds_count{route=\"a\\\"b\"} 1\n");
}

TEST(MetricsTest, StatusesSortNumerically) {
  Metrics metrics;
  metrics.RecordRequest("/r", 503, 0.1);
  metrics.RecordRequest("/r", 200, 0.1);
  metrics.RecordRequest("/q", 404, 0.1);
  EXPECT_EQ(Samples(metrics.Render(), "bantay_requests_total{"),
            "bantay_requests_total{route=\"/q\",status=\"404\"} 1\n"
            "bantay_requests_total{route=\"/r\",status=\"200\"} 1\n"
            "bantay_requests_total{route=\"/r\",status=\"503\"} 1\n");
}

TEST(MetricsTest, OddLatenciesAreClamped) {
  Metrics metrics;
  metrics.RecordRequest("/r", 200, -1.0);
  metrics.RecordRequest("/r", 200, std::numeric_limits<double>::quiet_NaN());
  metrics.RecordRequest("/r", 200, 0.0);
  const std::string text = metrics.Render();
  EXPECT_EQ(
      Samples(
          text,
          "bantay_request_duration_seconds_bucket{route=\"/r\",le=\"0.0005\"}"),
      "bantay_request_duration_seconds_bucket{route=\"/r\",le=\"0.0005\"} 3\n");
  EXPECT_EQ(Samples(text, "bantay_request_duration_seconds_sum"),
            "bantay_request_duration_seconds_sum{route=\"/r\"} 0\n");

  Metrics huge;
  huge.RecordRequest("/r", 200, std::numeric_limits<double>::infinity());
  huge.RecordRequest("/r", 200, 1e300);
  const std::string huge_text = huge.Render();
  EXPECT_EQ(
      Samples(
          huge_text,
          "bantay_request_duration_seconds_bucket{route=\"/r\",le=\"+Inf\"}"),
      "bantay_request_duration_seconds_bucket{route=\"/r\",le=\"+Inf\"} 2\n");
  EXPECT_EQ(
      Samples(huge_text,
              "bantay_request_duration_seconds_bucket{route=\"/r\",le=\"10\"}"),
      "bantay_request_duration_seconds_bucket{route=\"/r\",le=\"10\"} 0\n");
  // Each is held at a week (604800 s).
  EXPECT_EQ(Samples(huge_text, "bantay_request_duration_seconds_sum"),
            "bantay_request_duration_seconds_sum{route=\"/r\"} 1209600\n");
}

TEST(MetricsTest, GaugesTakeTheLastValue) {
  Metrics metrics;
  metrics.SetIndex(1, 1, 1, 1);
  metrics.SetIndex(9, 8, 7, 6);
  metrics.SetQueueDepth(5);
  metrics.SetQueueDepth(2);
  metrics.AddConnections(-1);
  const std::string text = metrics.Render();
  EXPECT_EQ(Samples(text, "bantay_index_version "), "bantay_index_version 9\n");
  EXPECT_EQ(Samples(text, "bantay_index_entries{"),
            "bantay_index_entries{type=\"md5\"} 7\n"
            "bantay_index_entries{type=\"pdq\"} 8\n"
            "bantay_index_entries{type=\"sha256\"} 6\n");
  EXPECT_EQ(Samples(text, "bantay_compute_queue_depth "),
            "bantay_compute_queue_depth 2\n");
  EXPECT_EQ(Samples(text, "bantay_connections "), "bantay_connections -1\n");
}

TEST(MetricsTest, ConcurrentRecordingGivesExactCounts) {
  Metrics metrics;
  constexpr int kPerThread = 10000;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&metrics, t] {
      const std::string own = "/t" + std::to_string(t);
      for (int i = 0; i < kPerThread; ++i) {
        metrics.RecordRequest("/shared", 200, 0.002);
        metrics.RecordRequest(own, 500 + i % 2, 0.0);
        metrics.RecordMatch(i % 2 == 0 ? "even" : "odd");
        metrics.RecordRateLimited();
        metrics.AddConnections(1);
      }
    });
  }
  // Rendering while recording must be safe (and is checked by TSan builds).
  std::thread reader([&metrics] {
    for (int i = 0; i < 50; ++i) {
      const std::string text = metrics.Render();
      ASSERT_EQ(text.rfind(kFamiliesBeforeMatches, 0), 0u);
    }
  });
  for (std::thread& thread : threads) thread.join();
  reader.join();

  const std::string text = metrics.Render();
  EXPECT_EQ(Samples(text, "bantay_requests_total{"),
            "bantay_requests_total{route=\"/shared\",status=\"200\"} 40000\n"
            "bantay_requests_total{route=\"/t0\",status=\"500\"} 5000\n"
            "bantay_requests_total{route=\"/t0\",status=\"501\"} 5000\n"
            "bantay_requests_total{route=\"/t1\",status=\"500\"} 5000\n"
            "bantay_requests_total{route=\"/t1\",status=\"501\"} 5000\n"
            "bantay_requests_total{route=\"/t2\",status=\"500\"} 5000\n"
            "bantay_requests_total{route=\"/t2\",status=\"501\"} 5000\n"
            "bantay_requests_total{route=\"/t3\",status=\"500\"} 5000\n"
            "bantay_requests_total{route=\"/t3\",status=\"501\"} 5000\n");
  EXPECT_EQ(
      Samples(
          text,
          "bantay_request_duration_seconds_bucket{route=\"/shared\",le=\"0.0"),
      "bantay_request_duration_seconds_bucket{route=\"/shared\",le=\"0.0005\"} "
      "0\n"
      "bantay_request_duration_seconds_bucket{route=\"/shared\",le=\"0.001\"} "
      "0\n"
      "bantay_request_duration_seconds_bucket{route=\"/shared\",le=\"0.0025\"} "
      "40000\n"
      "bantay_request_duration_seconds_bucket{route=\"/shared\",le=\"0.005\"} "
      "40000\n"
      "bantay_request_duration_seconds_bucket{route=\"/shared\",le=\"0.01\"} "
      "40000\n"
      "bantay_request_duration_seconds_bucket{route=\"/shared\",le=\"0.025\"} "
      "40000\n"
      "bantay_request_duration_seconds_bucket{route=\"/shared\",le=\"0.05\"} "
      "40000\n");
  EXPECT_EQ(
      Samples(text, "bantay_request_duration_seconds_sum{route=\"/shared\"}"),
      "bantay_request_duration_seconds_sum{route=\"/shared\"} 80\n");
  EXPECT_EQ(
      Samples(text, "bantay_request_duration_seconds_count{route=\"/t2\"}"),
      "bantay_request_duration_seconds_count{route=\"/t2\"} 10000\n");
  EXPECT_EQ(Samples(text, "bantay_matches_total{"),
            "bantay_matches_total{list=\"even\"} 20000\n"
            "bantay_matches_total{list=\"odd\"} 20000\n");
  EXPECT_EQ(Samples(text, "bantay_rate_limited_total "),
            "bantay_rate_limited_total 40000\n");
  EXPECT_EQ(Samples(text, "bantay_connections "), "bantay_connections 40000\n");
}

TEST(MetricsTest, StreamFramesByVerdictAndActiveStreams) {
  Metrics metrics;
  metrics.RecordStreamFrame("match");
  metrics.RecordStreamFrame("match");
  metrics.RecordStreamFrame("dropped");
  metrics.RecordStreamFrame("not_sampled");
  metrics.RecordStreamFrame("no such verdict");  // ignored
  metrics.RecordStreamVerdictChange();
  metrics.SetStreamsActive(3);
  metrics.SetStreamsActive(2);
  const std::string text = metrics.Render();
  EXPECT_EQ(Samples(text, "bantay_stream_frames_total{"),
            "bantay_stream_frames_total{verdict=\"dropped\"} 1\n"
            "bantay_stream_frames_total{verdict=\"error\"} 0\n"
            "bantay_stream_frames_total{verdict=\"low_quality\"} 0\n"
            "bantay_stream_frames_total{verdict=\"match\"} 2\n"
            "bantay_stream_frames_total{verdict=\"no_match\"} 0\n"
            "bantay_stream_frames_total{verdict=\"not_sampled\"} 1\n"
            "bantay_stream_frames_total{verdict=\"skipped\"} 0\n");
  EXPECT_EQ(Samples(text, "bantay_stream_verdict_changes_total "),
            "bantay_stream_verdict_changes_total 1\n");
  EXPECT_EQ(Samples(text, "bantay_streams_active "), "bantay_streams_active 2\n");
  metrics.SetWebhookCounts({.delivered = 4, .failed = 1, .dropped = 2, .rejected = 0,
                            .abandoned = 0, .retries = 3, .in_queue = 5});
  const std::string after = metrics.Render();
  EXPECT_EQ(Samples(after, "bantay_webhook_events_total{"),
            "bantay_webhook_events_total{outcome=\"abandoned\"} 0\n"
            "bantay_webhook_events_total{outcome=\"delivered\"} 4\n"
            "bantay_webhook_events_total{outcome=\"dropped\"} 2\n"
            "bantay_webhook_events_total{outcome=\"failed\"} 1\n"
            "bantay_webhook_events_total{outcome=\"rejected\"} 0\n");
  EXPECT_EQ(Samples(after, "bantay_webhook_queue "), "bantay_webhook_queue 5\n");
  EXPECT_EQ(Samples(after, "bantay_webhook_retries_total "), "bantay_webhook_retries_total 3\n");
}

}  // namespace
}  // namespace bantay::server
