// Receiving Bantay's webhooks on a platform's side.
//
// When a stream's verdict changes, the server POSTs the stream's state event
// (JSON) to the URL configured for the platform's API key, with
//   Bantay-Timestamp: <unix seconds>
//   Bantay-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
//   Bantay-Event-Id:  <32 hex, the same for every retry of one event>
// A receiver should:
//   1. call VerifyWebhook with the shared secret, both header values, the
//      body bytes exactly as received (before any JSON parsing) and its
//      clock, and reject the request (e.g. 401) when it fails;
//   2. answer 2xx quickly (within 10 s) and do the work afterwards: any other
//      answer than 2xx or 4xx (408 and 429 excepted) makes the server try
//      again with backoff (1 s, 2 s, 4 s, ..., at most 6 tries, Retry-After
//      honoured);
//   3. ignore an event id it has already handled (retries of a delivery whose
//      answer was lost carry the same id).
// Timestamps older or newer than the replay window (5 minutes) are rejected,
// so receivers need a roughly correct clock.
//
// The functions are those of bantay/models/webhook_signature.h (shared with
// the server's sender), named here in bantay::client.
#ifndef BANTAY_CLIENT_WEBHOOK_H_
#define BANTAY_CLIENT_WEBHOOK_H_

#include "bantay/models/webhook_signature.h"

namespace bantay::client {

using models::kWebhookEventIdHeader;
using models::kWebhookReplayWindow;
using models::kWebhookSignatureHeader;
using models::kWebhookTimestampHeader;
using models::SignWebhook;
using models::VerifyWebhook;

}  // namespace bantay::client

#endif  // BANTAY_CLIENT_WEBHOOK_H_
