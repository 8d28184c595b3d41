#include "bantay/models/digest.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <memory>

namespace bantay::models {
namespace {

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

// The EVP calls fail only on allocation failure or a broken OpenSSL install;
// neither is recoverable here, so they abort rather than return a wrong digest.
template <size_t N>
std::array<uint8_t, N> Digest(const EVP_MD* md, std::span<const uint8_t> bytes) {
  std::array<uint8_t, N> out{};
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  unsigned int len = 0;
  if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1 || len != N) {
    std::abort();
  }
  return out;
}

}  // namespace

Md5Digest Md5(std::span<const uint8_t> bytes) {
  return Digest<16>(EVP_md5(), bytes);
}

Sha256Digest Sha256(std::span<const uint8_t> bytes) {
  return Digest<32>(EVP_sha256(), bytes);
}

ExactDigests ComputeDigests(std::span<const uint8_t> bytes) {
  return {Md5(bytes), Sha256(bytes)};
}

struct DigestStream::Contexts {
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> md5{EVP_MD_CTX_new()};
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> sha256{EVP_MD_CTX_new()};

  void Init() {
    if (!md5 || !sha256 ||
        EVP_DigestInit_ex(md5.get(), EVP_md5(), nullptr) != 1 ||
        EVP_DigestInit_ex(sha256.get(), EVP_sha256(), nullptr) != 1) {
      std::abort();
    }
  }
};

DigestStream::DigestStream() : contexts_(std::make_unique<Contexts>()) {
  contexts_->Init();
}

DigestStream::~DigestStream() = default;

void DigestStream::Update(std::span<const uint8_t> bytes) {
  if (EVP_DigestUpdate(contexts_->md5.get(), bytes.data(), bytes.size()) != 1 ||
      EVP_DigestUpdate(contexts_->sha256.get(), bytes.data(), bytes.size()) !=
          1) {
    std::abort();
  }
}

ExactDigests DigestStream::Finish() {
  ExactDigests out{};
  unsigned int md5_len = 0, sha_len = 0;
  if (EVP_DigestFinal_ex(contexts_->md5.get(), out.md5.data(), &md5_len) != 1 ||
      EVP_DigestFinal_ex(contexts_->sha256.get(), out.sha256.data(),
                         &sha_len) != 1 ||
      md5_len != out.md5.size() || sha_len != out.sha256.size()) {
    std::abort();
  }
  contexts_->Init();
  return out;
}

std::string ToHex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return out;
}

}  // namespace bantay::models
