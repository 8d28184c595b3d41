// The store's cryptography, on OpenSSL's EVP interface: AES-256-GCM for hash
// values at rest and for snapshots, Ed25519 for signed index versions, and
// the key files both use.
//
// Keys are secrets: they are never logged, never put into error messages,
// and key files are written with mode 0600. A data key is known by its key
// id (16 hex digits derived from the key by SHA-256), which is stored next to
// every value it encrypted, so that keys can rotate.
//
// Thread safety: free functions are thread-safe; an Aead object is not (use
// one per thread); SigningKey is immutable after construction and safe to
// share.
#ifndef BANTAY_MATCHER_CRYPTO_H_
#define BANTAY_MATCHER_CRYPTO_H_

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bantay/models/status.h"

namespace bantay::matcher {

using Digest32 = std::array<uint8_t, 32>;
using PublicKey = std::array<uint8_t, 32>;  // raw Ed25519 public key
using Signature = std::array<uint8_t, 64>;  // raw Ed25519 signature

// Fills `out` from OpenSSL's CSPRNG (RAND_bytes); aborts if it fails, as
// nothing safe can be done without randomness.
void RandomBytes(std::span<uint8_t> out);

// Overwrites memory in a way the compiler does not remove.
void Wipe(std::span<uint8_t> bytes);

// --- Data keys (AES-256) ---------------------------------------------------

struct DataKey {
  std::array<uint8_t, 32> bytes{};
  // Lower-case hex of the first 8 bytes of SHA-256("bantay-data-key-id" ||
  // bytes): names the key without revealing it.
  std::string id;
};

DataKey GenerateDataKey();
// 64 hex digits (surrounding whitespace ignored); kInvalidArgument otherwise
// (the message never repeats the input).
Result<DataKey> DataKeyFromHex(std::string_view hex);
std::string DataKeyToHex(const DataKey& key);
// A key file holds the key as 64 hex digits and a newline. kNotFound / kIo /
// kInvalidArgument.
Result<DataKey> ReadDataKeyFile(const std::string& path);
Status WriteDataKeyFile(const std::string& path, const DataKey& key);

// Writes a new file with mode 0600; kInvalidArgument if it already exists
// (a key is never overwritten by accident), kIo otherwise.
Status WriteSecretFile(const std::string& path, std::string_view contents);

// AES-256-GCM with a fresh random 96-bit nonce per message. A sealed message
// is nonce (12 bytes) || ciphertext || tag (16 bytes). The additional data
// (`aad`) is authenticated but not stored: Open must be given the same.
class Aead {
 public:
  static constexpr size_t kNonceSize = 12;
  static constexpr size_t kTagSize = 16;
  static constexpr size_t kOverhead = kNonceSize + kTagSize;

  explicit Aead(const DataKey& key);
  ~Aead();
  Aead(const Aead&) = delete;
  Aead& operator=(const Aead&) = delete;

  const std::string& key_id() const { return key_id_; }

  // Appends the sealed message to *out.
  void Seal(std::span<const uint8_t> plaintext, std::span<const uint8_t> aad,
            std::vector<uint8_t>* out);
  // Writes the plaintext (sealed.size() - kOverhead bytes) to `plaintext`
  // (which must be that size). kCorruptData when the message is too short
  // or its tag does not verify (wrong key, wrong aad, or modified bytes);
  // `plaintext` is then zeroed.
  Status Open(std::span<const uint8_t> sealed, std::span<const uint8_t> aad,
              std::span<uint8_t> plaintext);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string key_id_;
};

// --- Ed25519 signing keys ----------------------------------------------------

class SigningKey {
 public:
  static SigningKey Generate();
  // PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----") of an Ed25519 key.
  // kNotFound / kIo / kInvalidArgument (not PEM, or not Ed25519).
  static Result<SigningKey> ReadPemFile(const std::string& path);
  static Result<SigningKey> FromPem(std::string_view pem);
  // The 32-byte raw private key of RFC 8032 (what its test vectors call the
  // SECRET KEY); kInvalidArgument for another length. For tests and
  // known-answer checks: keys in use come from Generate.
  static Result<SigningKey> FromSeed(std::span<const uint8_t> seed);

  SigningKey(SigningKey&&) noexcept;
  SigningKey& operator=(SigningKey&&) noexcept;
  ~SigningKey();

  std::string ToPem() const;  // PKCS#8 PEM of the private key
  const PublicKey& public_key() const { return public_key_; }
  Signature Sign(std::span<const uint8_t> message) const;

 private:
  struct Impl;
  explicit SigningKey(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  PublicKey public_key_{};
};

// SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----") of an Ed25519 key.
std::string PublicKeyToPem(const PublicKey& key);
Result<PublicKey> PublicKeyFromPem(std::string_view pem);
Result<PublicKey> ReadPublicKeyPemFile(const std::string& path);

bool VerifySignature(const PublicKey& key, std::span<const uint8_t> message,
                     const Signature& signature);

// --- SHA-256 ---------------------------------------------------------------

// Incremental SHA-256 (for digests over many fields).
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  // A copy goes on from the same point (what was hashed so far is kept once
  // and finished in more than one way).
  Sha256Hasher(const Sha256Hasher& other);
  Sha256Hasher& operator=(const Sha256Hasher& other);
  Sha256Hasher(Sha256Hasher&&) noexcept;
  Sha256Hasher& operator=(Sha256Hasher&&) noexcept;

  Sha256Hasher& Update(std::span<const uint8_t> bytes);
  Sha256Hasher& Update(std::string_view bytes);
  // Big-endian fixed-width integers.
  Sha256Hasher& UpdateU64(uint64_t value);
  // A 4-byte big-endian length, then the bytes: unambiguous field framing.
  Sha256Hasher& UpdateField(std::string_view bytes);
  // The digest; the hasher is reset and can be used again.
  Digest32 Finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bantay::matcher

#endif  // BANTAY_MATCHER_CRYPTO_H_
