// Signatures of Bantay's webhook events (docs: notes on issue 6, "Webhooks").
//
// The server POSTs each event with the headers
//   Bantay-Timestamp: <unix seconds, decimal>
//   Bantay-Signature: v1=<lower-case hex HMAC-SHA256(secret,
//   "<timestamp>.<body>")> Bantay-Event-Id:  <32 hex, the same for every retry
//   of one event>
// A receiver recomputes the HMAC over the exact body bytes it received and
// rejects timestamps outside a replay window (5 minutes by default), so that
// a captured request cannot be replayed later. Within the window, receivers
// that must not act twice on one event deduplicate by Bantay-Event-Id.
//
// Both sides use these functions: the server's sender signs, the client
// library (bantay/client/webhook.h) re-exports VerifyWebhook for platforms.
// They live here because the server does not depend on the client library.
//
// Thread safety: free functions without shared state.
#ifndef BANTAY_MODELS_WEBHOOK_SIGNATURE_H_
#define BANTAY_MODELS_WEBHOOK_SIGNATURE_H_

#include <chrono>
#include <string>
#include <string_view>

#include "bantay/models/status.h"

namespace bantay::models {

inline constexpr std::string_view kWebhookTimestampHeader = "Bantay-Timestamp";
inline constexpr std::string_view kWebhookSignatureHeader = "Bantay-Signature";
inline constexpr std::string_view kWebhookEventIdHeader = "Bantay-Event-Id";
inline constexpr std::chrono::seconds kWebhookReplayWindow{300};

// The Bantay-Signature value for one delivery: "v1=" and 64 lower-case hex
// digits of HMAC-SHA256(secret, timestamp + "." + body). `timestamp` is the
// Bantay-Timestamp value sent with it.
std::string SignWebhook(std::string_view secret, std::string_view timestamp,
                        std::string_view body);

// Checks one received delivery: the headers as received (without the
// names), the body bytes exactly as received, and the receiver's clock.
// Returns the signed timestamp when:
//   - the secret is not empty;
//   - timestamp_header is 1 to 18 decimal digits (unix seconds);
//   - signature_header is "v1=" followed by exactly 64 hex digits;
//   - the HMAC matches (compared in constant time);
//   - |now - timestamp| <= window.
// Errors: kInvalidArgument for an empty secret or a malformed header (the
// message says which), kPermissionDenied for a signature that does not match
// and for a timestamp outside the window ("stale" or "in the future"). The
// signature is checked before the time, so that an attacker learns nothing
// about the window from unsigned requests.
Result<std::chrono::sys_seconds> VerifyWebhook(
    std::string_view secret, std::string_view timestamp_header,
    std::string_view signature_header, std::string_view body,
    std::chrono::system_clock::time_point now,
    std::chrono::seconds window = kWebhookReplayWindow);

}  // namespace bantay::models

#endif  // BANTAY_MODELS_WEBHOOK_SIGNATURE_H_
