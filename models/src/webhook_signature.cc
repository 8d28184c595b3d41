#include "bantay/models/webhook_signature.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "bantay/models/digest.h"

namespace bantay::models {
namespace {

constexpr std::string_view kScheme = "v1=";
constexpr size_t kMacBytes = 32;
// 18 digits stay far below INT64_MAX seconds, so no overflow in the window
// arithmetic below.
constexpr size_t kMaxTimestampDigits = 18;

using Mac = std::array<uint8_t, kMacBytes>;

Mac ComputeMac(std::string_view secret, std::string_view timestamp,
               std::string_view body) {
  std::string message;
  message.reserve(timestamp.size() + 1 + body.size());
  message.append(timestamp);
  message.push_back('.');
  message.append(body);
  // HMAC() wants a non-null key pointer even for an empty key.
  static const unsigned char kEmpty = 0;
  const void* key = secret.empty() ? static_cast<const void*>(&kEmpty)
                                   : static_cast<const void*>(secret.data());
  Mac mac{};
  unsigned int len = 0;
  // Fails only on allocation failure or a broken OpenSSL install; a wrong
  // MAC would be worse than stopping.
  if (HMAC(EVP_sha256(), key, static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(message.data()),
           message.size(), mac.data(), &len) == nullptr ||
      len != kMacBytes) {
    std::abort();
  }
  OPENSSL_cleanse(message.data(), message.size());
  return mac;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string SignWebhook(std::string_view secret, std::string_view timestamp,
                        std::string_view body) {
  const Mac mac = ComputeMac(secret, timestamp, body);
  return std::string(kScheme) + ToHex(mac);
}

Result<std::chrono::sys_seconds> VerifyWebhook(
    std::string_view secret, std::string_view timestamp_header,
    std::string_view signature_header, std::string_view body,
    std::chrono::system_clock::time_point now, std::chrono::seconds window) {
  if (secret.empty()) {
    return Error(ErrorCode::kInvalidArgument, "the webhook secret is empty");
  }
  int64_t seconds = 0;
  {
    const char* begin = timestamp_header.data();
    const char* end = begin + timestamp_header.size();
    const auto [ptr, ec] = std::from_chars(begin, end, seconds);
    // from_chars accepts a leading '-'; the header is digits only.
    if (timestamp_header.empty() ||
        timestamp_header.size() > kMaxTimestampDigits ||
        timestamp_header.front() == '-' || ec != std::errc() || ptr != end) {
      return Error(ErrorCode::kInvalidArgument,
                   "Bantay-Timestamp is not a decimal number of seconds");
    }
  }
  if (signature_header.substr(0, kScheme.size()) != kScheme) {
    return Error(ErrorCode::kInvalidArgument,
                 "Bantay-Signature does not start with v1=");
  }
  const std::string_view hex = signature_header.substr(kScheme.size());
  if (hex.size() != 2 * kMacBytes) {
    return Error(ErrorCode::kInvalidArgument,
                 "Bantay-Signature is not v1= and 64 hex digits");
  }
  Mac received{};
  for (size_t i = 0; i < kMacBytes; ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return Error(ErrorCode::kInvalidArgument,
                   "Bantay-Signature is not v1= and 64 hex digits");
    }
    received[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  const Mac expected = ComputeMac(secret, timestamp_header, body);
  if (CRYPTO_memcmp(expected.data(), received.data(), kMacBytes) != 0) {
    return Error(ErrorCode::kPermissionDenied,
                 "the webhook signature does not match");
  }
  const std::chrono::sys_seconds signed_at{std::chrono::seconds(seconds)};
  if (signed_at + window < now) {
    return Error(ErrorCode::kPermissionDenied,
                 "the webhook timestamp is stale (older than the replay "
                 "window)");
  }
  if (signed_at - window > now) {
    return Error(ErrorCode::kPermissionDenied,
                 "the webhook timestamp is in the future (beyond the replay "
                 "window)");
  }
  return signed_at;
}

}  // namespace bantay::models
