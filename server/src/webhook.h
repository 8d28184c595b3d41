// Delivery of signed webhook events (stream verdict changes) to the URLs
// platforms configured for their API keys.
//
// Protocol: bantay/models/webhook_signature.h. Each event is POSTed as
// application/json with Bantay-Timestamp, Bantay-Signature (signed again
// for every attempt, with that attempt's time) and Bantay-Event-Id (random,
// the same for every attempt of one event).
//
// Delivery runs on the sender's own thread and io_context, never on the
// server's I/O or compute threads: Enqueue only takes a short lock and posts.
// Events wait in a bounded queue; at most kMaxInFlight attempts run at once
// and at most kMaxInFlightPerDestination to one scheme/host/port, so a slow
// or dead receiver holds at most that many slots, each for at most
// `timeout`, and deliveries to other receivers go on meanwhile. Delivery
// order is not guaranteed (retries overtake nothing on purpose, but
// concurrent attempts finish in any order).
//
// Outcome of one attempt (one fresh connection, `Connection: close`):
//   2xx                                     delivered
//   408, 429, 5xx, connect/TLS I/O errors,  retried after first_backoff,
//   timeouts, a broken answer               2x, 4x, ... (Retry-After in
//                                           seconds honoured, capped at
//                                           kMaxRetryAfter), at most
//                                           max_attempts attempts in all
//   other statuses (4xx, 3xx: redirects     failed at once
//   are not followed, 1xx), a certificate
//   that does not verify (CA or host name)
// https:// URLs are verified against ca_file (or the system's trust store)
// with the host name (or IP address) of the URL; http:// URLs are accepted
// only with allow_plain_http (tests, loopback receivers).
//
// Host names are looked up on a short-lived thread per lookup (getaddrinfo
// cannot be cancelled), so a dead name server costs its destination the
// attempt's timeout and nothing else; Stop does not wait for lookups.
//
// Webhook URLs come from the server's configuration, not from requests, so
// no address is refused as private or loopback.
//
// Thread safety: Enqueue, stats and Stop may be called from any thread.
#ifndef BANTAY_SERVER_WEBHOOK_H_
#define BANTAY_SERVER_WEBHOOK_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "bantay/models/status.h"

namespace bantay::server {

struct WebhookOptions {
  // Events held at once (waiting, in flight or waiting for a retry); Enqueue
  // refuses more.
  size_t queue_limit = 1000;
  // Attempts per event, the first included (>= 1).
  int max_attempts = 6;
  // Wait before the second attempt; doubled before each further one.
  std::chrono::milliseconds first_backoff{1000};
  // Limit of one attempt: resolving, connecting, TLS handshake, sending and
  // reading the answer's header.
  std::chrono::milliseconds timeout{10000};
  bool allow_plain_http = false;
  std::string ca_file;  // PEM trust anchors; empty: the system's trust store
};

class WebhookSender {
 public:
  static constexpr int kMaxInFlight = 16;
  static constexpr int kMaxInFlightPerDestination = 2;
  static constexpr std::chrono::seconds kMaxRetryAfter{60};

  // Counters since construction. in_queue is the number of events held now;
  // every accepted event ends as exactly one of delivered, failed or
  // abandoned.
  struct Stats {
    uint64_t delivered = 0;  // answered 2xx
    uint64_t failed = 0;     // gave up: refused answer or attempts exhausted
    uint64_t dropped = 0;    // Enqueue refused: queue full
    uint64_t rejected = 0;   // Enqueue refused: URL or secret not acceptable
    uint64_t retries = 0;    // attempts after the first, over all events
    uint64_t abandoned = 0;  // still held when the sender stopped
    uint64_t in_queue = 0;
  };

  // Starts the delivery thread. Errors: kInvalidArgument for options out of
  // range (queue_limit 0, max_attempts < 1, a timeout or backoff <= 0) or a
  // ca_file that is missing or holds no PEM certificate; kInternal when the
  // system's trust store cannot be loaded.
  static Result<std::unique_ptr<WebhookSender>> Create(WebhookOptions options);

  // Stops (see Stop).
  ~WebhookSender();
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  // Queues one event: `body` (JSON) POSTed to `url`, signed with `secret`.
  // Never blocks. False (and counted) when the queue is full (dropped), when
  // the URL is not https://HOST[:PORT][/PATH][?QUERY] (or http:// with
  // allow_plain_http; no user information, no fragment) or the secret is
  // empty (rejected), or after Stop (dropped). Neither URL nor secret is ever
  // logged.
  bool Enqueue(std::string url, std::string secret, std::string body);

  Stats stats() const;

  // Stops the thread promptly: attempts in flight are cut off, events that
  // wait are abandoned (counted). Idempotent; later Enqueue calls return
  // false. Must not be called from a delivery (there are no callbacks).
  void Stop();

 private:
  struct Impl;
  explicit WebhookSender(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bantay::server

#endif  // BANTAY_SERVER_WEBHOOK_H_
