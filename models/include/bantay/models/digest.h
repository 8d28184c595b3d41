// Exact hashes of raw bytes (MD5 and SHA-256) through OpenSSL's EVP
// interface, as hash lists carry them next to PDQ.
//
// Thread safety: free functions without shared state.
#ifndef BANTAY_MODELS_DIGEST_H_
#define BANTAY_MODELS_DIGEST_H_

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace bantay::models {

using Md5Digest = std::array<uint8_t, 16>;
using Sha256Digest = std::array<uint8_t, 32>;

Md5Digest Md5(std::span<const uint8_t> bytes);
Sha256Digest Sha256(std::span<const uint8_t> bytes);

// Both digests in one call (each over the same bytes).
struct ExactDigests {
  Md5Digest md5;
  Sha256Digest sha256;
};
ExactDigests ComputeDigests(std::span<const uint8_t> bytes);

// Both digests of a byte stream fed in pieces (files too large to hold in
// memory, such as videos). Not thread-safe; one per stream.
class DigestStream {
 public:
  DigestStream();
  ~DigestStream();
  DigestStream(const DigestStream&) = delete;
  DigestStream& operator=(const DigestStream&) = delete;

  void Update(std::span<const uint8_t> bytes);
  // The digests of everything fed since construction or the last Finish;
  // the stream then starts over.
  ExactDigests Finish();

 private:
  struct Contexts;
  std::unique_ptr<Contexts> contexts_;
};

// Lower-case hexadecimal of any byte string.
std::string ToHex(std::span<const uint8_t> bytes);

}  // namespace bantay::models

#endif  // BANTAY_MODELS_DIGEST_H_
