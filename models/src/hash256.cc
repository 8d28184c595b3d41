#include "bantay/models/hash256.h"

#include "bantay/models/digest.h"

namespace bantay::models {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Result<Hash256> Hash256::FromHex(std::string_view hex) {
  if (hex.size() != kHexChars) {
    return Error(ErrorCode::kInvalidArgument,
                 "a PDQ hash is 64 hexadecimal digits, got " +
                     std::to_string(hex.size()) + " characters");
  }
  std::array<uint8_t, kBytes> bytes;
  for (int i = 0; i < kBytes; ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return Error(ErrorCode::kInvalidArgument,
                   "non-hexadecimal character at position " +
                       std::to_string(hi < 0 ? 2 * i : 2 * i + 1));
    }
    bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return Hash256(bytes);
}

std::string Hash256::ToHex() const { return models::ToHex(bytes_); }

int Hash256::PopCount() const {
  static const Hash256 kZero;
  return HammingDistance(*this, kZero);
}

}  // namespace bantay::models
