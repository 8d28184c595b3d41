// VerifyWebhook and SignWebhook (bantay/client/webhook.h): exact accept and
// reject decisions with fixed timestamps and a fixed clock.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "bantay/client/webhook.h"

namespace bantay::client {
namespace {

using std::chrono::seconds;
using std::chrono::system_clock;

constexpr char kSecret[] = "whsec_test";
constexpr char kTimestamp[] = "1700000000";
constexpr char kBody[] = R"({"stream":"s1","verdict":"match"})";
// `printf '%s' '1700000000.{"stream":"s1","verdict":"match"}' |
//  openssl dgst -sha256 -mac HMAC -macopt key:whsec_test`
constexpr char kSignature[] =
    "v1=6547df5f47f258de398657f9f88b5209b2270998dc69717077685ae4819cb37b";

system_clock::time_point At(int64_t unix_seconds) {
  return system_clock::time_point(seconds(unix_seconds));
}

void ExpectError(const Result<std::chrono::sys_seconds>& r, ErrorCode code,
                 const std::string& message) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), code) << r.error().ToString();
  EXPECT_EQ(r.error().message(), message);
}

TEST(SignWebhookTest, MatchesOpensslHmac) {
  EXPECT_EQ(SignWebhook(kSecret, kTimestamp, kBody), kSignature);
  // `printf '%s' '1700000000.' | openssl dgst -sha256 -mac HMAC -macopt key:k`
  EXPECT_EQ(
      SignWebhook("k", kTimestamp, ""),
      "v1=5c2999a43333a6877f49c8003f235c4f6de40f85b1b7414b70bd470a8db53d97");
}

TEST(VerifyWebhookTest, AcceptsWithinTheWindowAndReturnsTheSignedTime) {
  for (int64_t now : {int64_t{1700000000}, int64_t{1700000000} + 300,
                      int64_t{1700000000} - 300, int64_t{1700000000} + 1}) {
    const auto r =
        VerifyWebhook(kSecret, kTimestamp, kSignature, kBody, At(now));
    ASSERT_TRUE(r.ok()) << now << ": " << r.error().ToString();
    EXPECT_EQ(r->time_since_epoch(), seconds(1700000000));
  }
  // Upper-case hex is the same signature.
  std::string upper = kSignature;
  for (size_t i = 3; i < upper.size(); ++i) {
    upper[i] = static_cast<char>(toupper(static_cast<unsigned char>(upper[i])));
  }
  EXPECT_TRUE(
      VerifyWebhook(kSecret, kTimestamp, upper, kBody, At(1700000000)).ok());
  // A narrower window given by the caller.
  EXPECT_TRUE(VerifyWebhook(kSecret, kTimestamp, kSignature, kBody,
                            At(1700000010), seconds(10))
                  .ok());
}

TEST(VerifyWebhookTest, RejectsStaleAndFutureTimestamps) {
  ExpectError(VerifyWebhook(kSecret, kTimestamp, kSignature, kBody,
                            At(1700000000 + 301)),
              ErrorCode::kPermissionDenied,
              "the webhook timestamp is stale (older than the replay window)");
  ExpectError(VerifyWebhook(kSecret, kTimestamp, kSignature, kBody,
                            At(1700000000 - 301)),
              ErrorCode::kPermissionDenied,
              "the webhook timestamp is in the future (beyond the replay "
              "window)");
  // One second past a 10 s window, and sub-second clocks count.
  ExpectError(VerifyWebhook(kSecret, kTimestamp, kSignature, kBody,
                            At(1700000011), seconds(10)),
              ErrorCode::kPermissionDenied,
              "the webhook timestamp is stale (older than the replay window)");
  EXPECT_FALSE(VerifyWebhook(kSecret, kTimestamp, kSignature, kBody,
                             At(1700000300) + std::chrono::milliseconds(1))
                   .ok());
}

TEST(VerifyWebhookTest, RejectsTamperedBodyWrongSecretAndMovedTimestamp) {
  const std::string mismatch = "the webhook signature does not match";
  std::string tampered = kBody;
  tampered[tampered.find("match")] = 'n';
  ExpectError(
      VerifyWebhook(kSecret, kTimestamp, kSignature, tampered, At(1700000000)),
      ErrorCode::kPermissionDenied, mismatch);
  ExpectError(VerifyWebhook(kSecret, kTimestamp, kSignature,
                            std::string(kBody) + " ", At(1700000000)),
              ErrorCode::kPermissionDenied, mismatch);
  ExpectError(VerifyWebhook("whsec_tesT", kTimestamp, kSignature, kBody,
                            At(1700000000)),
              ErrorCode::kPermissionDenied, mismatch);
  // A captured signature with a fresh timestamp.
  ExpectError(
      VerifyWebhook(kSecret, "1700000001", kSignature, kBody, At(1700000001)),
      ErrorCode::kPermissionDenied, mismatch);
  // One flipped bit of the MAC.
  std::string flipped = kSignature;
  flipped.back() = flipped.back() == 'b' ? 'a' : 'b';
  ExpectError(
      VerifyWebhook(kSecret, kTimestamp, flipped, kBody, At(1700000000)),
      ErrorCode::kPermissionDenied, mismatch);
  // The signature is checked before the time: a forged request far in the
  // past says "does not match", not "stale".
  ExpectError(
      VerifyWebhook(kSecret, kTimestamp, flipped, kBody, At(1800000000)),
      ErrorCode::kPermissionDenied, mismatch);
}

TEST(VerifyWebhookTest, RejectsMalformedHeaders) {
  const std::string bad_time =
      "Bantay-Timestamp is not a decimal number of seconds";
  for (const char* ts :
       {"", "-1", "+1700000000", " 1700000000", "1700000000 ", "17e8",
        "1700000000.0", "0x65", "1234567890123456789"}) {
    ExpectError(VerifyWebhook(kSecret, ts, kSignature, kBody, At(1700000000)),
                ErrorCode::kInvalidArgument, bad_time);
  }
  const std::string hex = std::string(kSignature).substr(3);
  ExpectError(VerifyWebhook(kSecret, kTimestamp, hex, kBody, At(1700000000)),
              ErrorCode::kInvalidArgument,
              "Bantay-Signature does not start with v1=");
  ExpectError(
      VerifyWebhook(kSecret, kTimestamp, "v2=" + hex, kBody, At(1700000000)),
      ErrorCode::kInvalidArgument, "Bantay-Signature does not start with v1=");
  ExpectError(VerifyWebhook(kSecret, kTimestamp, "", kBody, At(1700000000)),
              ErrorCode::kInvalidArgument,
              "Bantay-Signature does not start with v1=");
  const std::string bad_sig = "Bantay-Signature is not v1= and 64 hex digits";
  for (const std::string& sig :
       {"v1=" + hex.substr(1), "v1=" + hex + "0", std::string("v1="),
        "v1=" + hex.substr(0, 63) + "g", " v1=" + hex.substr(1),
        "v1=" + hex + ",v1=" + hex}) {
    ExpectError(
        VerifyWebhook(kSecret, kTimestamp, sig, kBody, At(1700000000)),
        ErrorCode::kInvalidArgument,
        sig[0] == ' ' ? "Bantay-Signature does not start with v1=" : bad_sig);
  }
  ExpectError(VerifyWebhook("", kTimestamp, kSignature, kBody, At(1700000000)),
              ErrorCode::kInvalidArgument, "the webhook secret is empty");
}

}  // namespace
}  // namespace bantay::client
