// Hash256: a 256-bit perceptual hash (PDQ) as a value type.
//
// Bit layout and text form are those of Meta's PDQ reference: bit k
// (k = 16*row + column of the 16x16 DCT) is bit k of the 256-bit number whose
// big-endian hexadecimal spelling is the 64-character hash text. The bytes are
// kept in that big-endian order, so bytes() is also what FAISS binary indexes
// and ThreatExchange/HMA tools call the code of the hash.
//
// Thread safety: a plain value; const methods may be called concurrently.
#ifndef BANTAY_MODELS_HASH256_H_
#define BANTAY_MODELS_HASH256_H_

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "bantay/models/status.h"

namespace bantay::models {

class Hash256 {
 public:
  static constexpr int kBits = 256;
  static constexpr int kBytes = 32;
  static constexpr int kHexChars = 64;

  // All bits zero.
  Hash256() = default;
  explicit Hash256(const std::array<uint8_t, kBytes>& bytes) : bytes_(bytes) {}

  // Parses exactly 64 hexadecimal digits (either case). Anything else (other
  // lengths, non-hex characters, whitespace, a "0x" prefix) is
  // kInvalidArgument.
  static Result<Hash256> FromHex(std::string_view hex);

  // 64 lower-case hexadecimal digits, as the reference prints them.
  std::string ToHex() const;

  // Bit k in the PDQ numbering (0 <= k < 256).
  bool GetBit(int k) const {
    return (bytes_[kBytes - 1 - (k >> 3)] >> (k & 7)) & 1;
  }
  void SetBit(int k) {
    bytes_[kBytes - 1 - (k >> 3)] |= static_cast<uint8_t>(1u << (k & 7));
  }
  int PopCount() const;

  const std::array<uint8_t, kBytes>& bytes() const { return bytes_; }
  const uint8_t* data() const { return bytes_.data(); }

  friend bool operator==(const Hash256&, const Hash256&) = default;
  friend auto operator<=>(const Hash256&, const Hash256&) = default;

 private:
  std::array<uint8_t, kBytes> bytes_{};
};

// Number of differing bits between two 32-byte codes. Compiled with the
// hardware POPCNT instruction (see BANTAY_ARCH in CMakeLists.txt).
inline int HammingDistance(const uint8_t* a, const uint8_t* b) {
  uint64_t x[4], y[4];
  std::memcpy(x, a, 32);
  std::memcpy(y, b, 32);
  return __builtin_popcountll(x[0] ^ y[0]) + __builtin_popcountll(x[1] ^ y[1]) +
         __builtin_popcountll(x[2] ^ y[2]) + __builtin_popcountll(x[3] ^ y[3]);
}

inline int HammingDistance(const Hash256& a, const Hash256& b) {
  return HammingDistance(a.data(), b.data());
}

}  // namespace bantay::models

#endif  // BANTAY_MODELS_HASH256_H_
