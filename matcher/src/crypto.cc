#include "bantay/matcher/crypto.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "bantay/models/digest.h"

namespace bantay::matcher {
namespace {

// EVP calls on valid, fixed-size inputs fail only on allocation failure or a
// broken OpenSSL install. Returning a wrong ciphertext, digest or signature
// would be worse than stopping, so those paths abort.
void CheckOpenSsl(bool ok) {
  if (!ok) std::abort();
}

// OpenSSL keeps failures in a thread-local queue that TLS code in the same
// thread reads later; a failure this module has already turned into an
// Error must not be left there to be misreported.
Error OpenSslError(ErrorCode code, std::string message) {
  ERR_clear_error();
  return Error(code, std::move(message));
}

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

// EVP length arguments are int; larger inputs go through in chunks.
constexpr size_t kMaxEvpChunk = size_t{1} << 30;

// EVP_DigestSign/Verify of Ed25519 take the whole message at once, and an
// empty span may have a null data pointer.
const uint8_t* NonNullData(std::span<const uint8_t> bytes) {
  static constexpr uint8_t kEmpty = 0;
  return bytes.empty() ? &kEmpty : bytes.data();
}

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Key files and PEM keys are a few hundred bytes; anything much larger is
// not one, and is refused before it is read into memory.
constexpr size_t kMaxSecretFileSize = 64 * 1024;

std::string ErrnoText(int err) { return std::generic_category().message(err); }

// Reads a small file that may hold a secret. The buffer is allocated once
// at its final capacity, so no copy of the contents is left behind by a
// reallocation; the caller wipes it after use.
Result<std::string> ReadSecretFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return Error(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 "cannot open " + path + ": " + ErrnoText(err));
  }
  std::string contents(kMaxSecretFileSize + 1, '\0');
  size_t total = 0;
  int err = 0;
  while (total < contents.size()) {
    const ssize_t n =
        read(fd, contents.data() + total, contents.size() - total);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) break;
    total += static_cast<size_t>(n);
  }
  close(fd);
  if (err != 0 || total > kMaxSecretFileSize) {
    Wipe({reinterpret_cast<uint8_t*>(contents.data()), contents.size()});
    if (err != 0) {
      return Error(ErrorCode::kIo,
                   "cannot read " + path + ": " + ErrnoText(err));
    }
    return Error(ErrorCode::kInvalidArgument,
                 path + " is larger than a key file can be");
  }
  contents.resize(total);
  return contents;
}

void WipeString(std::string* s) {
  Wipe({reinterpret_cast<uint8_t*>(s->data()), s->size()});
}

std::string_view TrimWhitespace(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  const size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(kSpace) - begin + 1);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string DataKeyId(const std::array<uint8_t, 32>& bytes) {
  Sha256Hasher hasher;
  const Digest32 digest =
      hasher.Update("bantay-data-key-id").Update(bytes).Finish();
  return models::ToHex(std::span<const uint8_t>(digest).first(8));
}

// Copies a memory BIO's contents into a string.
std::string BioContents(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  CheckOpenSsl(size >= 0);
  return std::string(data, static_cast<size_t>(size));
}

// A PEM reader must never ask for a passphrase on the terminal (the default
// callback does, for an encrypted key): a server has nobody to answer it.
int RefusePassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/,
                     void* /*userdata*/) {
  return -1;
}

BioPtr ReadOnlyBio(std::string_view pem) {
  if (pem.size() > INT_MAX) return nullptr;
  // BIO_new_mem_buf refuses a null pointer, which an empty view may hold.
  if (pem.empty()) pem = "";
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  CheckOpenSsl(bio != nullptr);
  return bio;
}

PublicKey RawPublicKey(EVP_PKEY* pkey) {
  PublicKey key{};
  size_t len = key.size();
  CheckOpenSsl(EVP_PKEY_get_raw_public_key(pkey, key.data(), &len) == 1 &&
               len == key.size());
  return key;
}

}  // namespace

void RandomBytes(std::span<uint8_t> out) {
  while (!out.empty()) {
    const size_t n = std::min(out.size(), kMaxEvpChunk);
    CheckOpenSsl(RAND_bytes(out.data(), static_cast<int>(n)) == 1);
    out = out.subspan(n);
  }
}

void Wipe(std::span<uint8_t> bytes) {
  OPENSSL_cleanse(bytes.data(), bytes.size());
}

// --- Data keys -------------------------------------------------------------

DataKey GenerateDataKey() {
  DataKey key;
  RandomBytes(key.bytes);
  key.id = DataKeyId(key.bytes);
  return key;
}

Result<DataKey> DataKeyFromHex(std::string_view hex) {
  hex = TrimWhitespace(hex);
  DataKey key;
  const Error invalid(ErrorCode::kInvalidArgument,
                      "a data key is 64 hexadecimal digits");
  if (hex.size() != 2 * key.bytes.size()) return invalid;
  for (size_t i = 0; i < key.bytes.size(); ++i) {
    const int high = HexValue(hex[2 * i]);
    const int low = HexValue(hex[2 * i + 1]);
    if (high < 0 || low < 0) {
      Wipe(key.bytes);
      return invalid;
    }
    key.bytes[i] = static_cast<uint8_t>(high << 4 | low);
  }
  key.id = DataKeyId(key.bytes);
  return key;
}

std::string DataKeyToHex(const DataKey& key) {
  return models::ToHex(key.bytes);
}

Result<DataKey> ReadDataKeyFile(const std::string& path) {
  Result<std::string> contents = ReadSecretFile(path);
  if (!contents.ok()) return contents.error();
  Result<DataKey> key = DataKeyFromHex(*contents);
  WipeString(&*contents);
  if (!key.ok()) {
    return Error(ErrorCode::kInvalidArgument,
                 path + " does not hold a data key (64 hexadecimal digits)");
  }
  return key;
}

Status WriteDataKeyFile(const std::string& path, const DataKey& key) {
  std::string contents = DataKeyToHex(key) + "\n";
  Status status = WriteSecretFile(path, contents);
  WipeString(&contents);
  return status;
}

Status WriteSecretFile(const std::string& path, std::string_view contents) {
  // O_EXCL makes "does not exist yet" and "create" one step, so an existing
  // key is never truncated, even by a concurrent writer.
  const int fd =
      open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    if (err == EEXIST) {
      return Error(ErrorCode::kInvalidArgument, path + " already exists");
    }
    return Error(ErrorCode::kIo,
                 "cannot create " + path + ": " + ErrnoText(err));
  }
  int err = 0;
  std::string_view rest = contents;
  while (!rest.empty()) {
    const ssize_t n = write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  // A key must be on disk before anything is encrypted with it.
  if (err == 0 && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && err == 0) err = errno;
  if (err == 0) {
    // The new directory entry too, or a crash could lose the file.
    const std::filesystem::path parent =
        std::filesystem::path(path).parent_path();
    const std::string dir = parent.empty() ? "." : parent.string();
    const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
      err = errno;
    } else {
      if (fsync(dir_fd) != 0) err = errno;
      close(dir_fd);
    }
    if (err == 0) return {};
  }
  // A partial key file would be refused on the next attempt as existing.
  unlink(path.c_str());
  return Error(ErrorCode::kIo, "cannot write " + path + ": " + ErrnoText(err));
}

// --- Aead ------------------------------------------------------------------

// One context per direction, each keyed once: per message only the nonce is
// set, which keeps Open of a 48-byte value free of allocations and of the
// key schedule.
struct Aead::Impl {
  CipherCtxPtr encrypt{EVP_CIPHER_CTX_new()};
  CipherCtxPtr decrypt{EVP_CIPHER_CTX_new()};
};

Aead::Aead(const DataKey& key)
    : impl_(std::make_unique<Impl>()), key_id_(DataKeyId(key.bytes)) {
  CheckOpenSsl(impl_->encrypt != nullptr && impl_->decrypt != nullptr);
  CheckOpenSsl(EVP_EncryptInit_ex(impl_->encrypt.get(), EVP_aes_256_gcm(),
                                  nullptr, key.bytes.data(), nullptr) == 1);
  CheckOpenSsl(EVP_DecryptInit_ex(impl_->decrypt.get(), EVP_aes_256_gcm(),
                                  nullptr, key.bytes.data(), nullptr) == 1);
}

Aead::~Aead() = default;

void Aead::Seal(std::span<const uint8_t> plaintext,
                std::span<const uint8_t> aad, std::vector<uint8_t>* out) {
  EVP_CIPHER_CTX* ctx = impl_->encrypt.get();
  const size_t start = out->size();
  out->resize(start + kOverhead + plaintext.size());
  uint8_t* nonce = out->data() + start;
  uint8_t* ciphertext = nonce + kNonceSize;
  uint8_t* tag = ciphertext + plaintext.size();
  // A random 96-bit nonce: NIST SP 800-38D (section 8.3) allows 2^32
  // messages per key this way, which keeps the chance of a repeated nonce
  // negligible; a key nearing that count must be rotated.
  RandomBytes({nonce, kNonceSize});
  CheckOpenSsl(EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce) == 1);
  int len = 0;
  for (size_t at = 0; at < aad.size(); at += kMaxEvpChunk) {
    const size_t n = std::min(aad.size() - at, kMaxEvpChunk);
    CheckOpenSsl(EVP_EncryptUpdate(ctx, nullptr, &len, aad.data() + at,
                                   static_cast<int>(n)) == 1);
  }
  for (size_t at = 0; at < plaintext.size(); at += kMaxEvpChunk) {
    const size_t n = std::min(plaintext.size() - at, kMaxEvpChunk);
    CheckOpenSsl(EVP_EncryptUpdate(ctx, ciphertext + at, &len,
                                   plaintext.data() + at,
                                   static_cast<int>(n)) == 1 &&
                 static_cast<size_t>(len) == n);
  }
  CheckOpenSsl(EVP_EncryptFinal_ex(ctx, tag, &len) == 1 && len == 0);
  CheckOpenSsl(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTagSize, tag) ==
               1);
}

Status Aead::Open(std::span<const uint8_t> sealed, std::span<const uint8_t> aad,
                  std::span<uint8_t> plaintext) {
  if (sealed.size() < kOverhead) {
    Wipe(plaintext);
    return Error(ErrorCode::kCorruptData,
                 "a sealed message is at least " + std::to_string(kOverhead) +
                     " bytes, got " + std::to_string(sealed.size()));
  }
  if (plaintext.size() != sealed.size() - kOverhead) {
    Wipe(plaintext);
    return Error(ErrorCode::kInvalidArgument,
                 "the plaintext buffer must be " +
                     std::to_string(sealed.size() - kOverhead) +
                     " bytes, got " + std::to_string(plaintext.size()));
  }
  EVP_CIPHER_CTX* ctx = impl_->decrypt.get();
  const uint8_t* nonce = sealed.data();
  const uint8_t* ciphertext = nonce + kNonceSize;
  // EVP_CTRL_GCM_SET_TAG takes a non-const pointer.
  std::array<uint8_t, kTagSize> tag;
  std::copy_n(ciphertext + plaintext.size(), kTagSize, tag.begin());

  CheckOpenSsl(EVP_DecryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce) == 1);
  int len = 0;
  for (size_t at = 0; at < aad.size(); at += kMaxEvpChunk) {
    const size_t n = std::min(aad.size() - at, kMaxEvpChunk);
    CheckOpenSsl(EVP_DecryptUpdate(ctx, nullptr, &len, aad.data() + at,
                                   static_cast<int>(n)) == 1);
  }
  for (size_t at = 0; at < plaintext.size(); at += kMaxEvpChunk) {
    const size_t n = std::min(plaintext.size() - at, kMaxEvpChunk);
    CheckOpenSsl(EVP_DecryptUpdate(ctx, plaintext.data() + at, &len,
                                   ciphertext + at, static_cast<int>(n)) == 1 &&
                 static_cast<size_t>(len) == n);
  }
  CheckOpenSsl(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kTagSize,
                                   tag.data()) == 1);
  if (EVP_DecryptFinal_ex(ctx, nullptr, &len) != 1) {
    // The plaintext is unauthenticated: none of it may be used.
    Wipe(plaintext);
    return OpenSslError(ErrorCode::kCorruptData,
                        "a sealed message does not authenticate (wrong key, "
                        "wrong associated data, or modified bytes)");
  }
  return {};
}

// --- Ed25519 ---------------------------------------------------------------

struct SigningKey::Impl {
  PkeyPtr pkey;
};

SigningKey::SigningKey(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)), public_key_(RawPublicKey(impl_->pkey.get())) {}

SigningKey::SigningKey(SigningKey&&) noexcept = default;
SigningKey& SigningKey::operator=(SigningKey&&) noexcept = default;
SigningKey::~SigningKey() = default;

SigningKey SigningKey::Generate() {
  auto impl = std::make_unique<Impl>();
  impl->pkey.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  CheckOpenSsl(impl->pkey != nullptr);
  return SigningKey(std::move(impl));
}

Result<SigningKey> SigningKey::FromSeed(std::span<const uint8_t> seed) {
  if (seed.size() != 32) {
    return Error(ErrorCode::kInvalidArgument,
                 "an Ed25519 private key is 32 bytes, got " +
                     std::to_string(seed.size()));
  }
  auto impl = std::make_unique<Impl>();
  impl->pkey.reset(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                                seed.data(), seed.size()));
  CheckOpenSsl(impl->pkey != nullptr);
  return SigningKey(std::move(impl));
}

Result<SigningKey> SigningKey::FromPem(std::string_view pem) {
  BioPtr bio = ReadOnlyBio(pem);
  auto impl = std::make_unique<Impl>();
  if (bio) {
    impl->pkey.reset(
        PEM_read_bio_PrivateKey(bio.get(), nullptr, RefusePassphrase, nullptr));
  }
  if (impl->pkey == nullptr) {
    return OpenSslError(ErrorCode::kInvalidArgument,
                        "not an unencrypted PEM private key");
  }
  if (EVP_PKEY_get_base_id(impl->pkey.get()) != EVP_PKEY_ED25519) {
    return OpenSslError(ErrorCode::kInvalidArgument,
                        "the PEM private key is not an Ed25519 key");
  }
  return SigningKey(std::move(impl));
}

Result<SigningKey> SigningKey::ReadPemFile(const std::string& path) {
  Result<std::string> pem = ReadSecretFile(path);
  if (!pem.ok()) return pem.error();
  Result<SigningKey> key = FromPem(*pem);
  WipeString(&*pem);
  if (!key.ok()) {
    return Error(key.error().code(), path + ": " + key.error().message());
  }
  return key;
}

std::string SigningKey::ToPem() const {
  // The secure-memory BIO clears its buffer when freed.
  BioPtr bio(BIO_new(BIO_s_secmem()));
  CheckOpenSsl(bio != nullptr);
  CheckOpenSsl(PEM_write_bio_PrivateKey(bio.get(), impl_->pkey.get(), nullptr,
                                        nullptr, 0, nullptr, nullptr) == 1);
  return BioContents(bio.get());
}

Signature SigningKey::Sign(std::span<const uint8_t> message) const {
  Signature signature{};
  size_t len = signature.size();
  MdCtxPtr ctx(EVP_MD_CTX_new());
  // Ed25519 hashes the message itself (PureEdDSA): no digest is named.
  CheckOpenSsl(ctx != nullptr &&
               EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr,
                                  impl_->pkey.get()) == 1 &&
               EVP_DigestSign(ctx.get(), signature.data(), &len,
                              NonNullData(message), message.size()) == 1 &&
               len == signature.size());
  return signature;
}

std::string PublicKeyToPem(const PublicKey& key) {
  PkeyPtr pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                           key.data(), key.size()));
  CheckOpenSsl(pkey != nullptr);
  BioPtr bio(BIO_new(BIO_s_mem()));
  CheckOpenSsl(bio != nullptr &&
               PEM_write_bio_PUBKEY(bio.get(), pkey.get()) == 1);
  return BioContents(bio.get());
}

Result<PublicKey> PublicKeyFromPem(std::string_view pem) {
  BioPtr bio = ReadOnlyBio(pem);
  PkeyPtr pkey;
  if (bio) {
    pkey.reset(
        PEM_read_bio_PUBKEY(bio.get(), nullptr, RefusePassphrase, nullptr));
  }
  if (pkey == nullptr) {
    return OpenSslError(ErrorCode::kInvalidArgument, "not a PEM public key");
  }
  if (EVP_PKEY_get_base_id(pkey.get()) != EVP_PKEY_ED25519) {
    return OpenSslError(ErrorCode::kInvalidArgument,
                        "the PEM public key is not an Ed25519 key");
  }
  return RawPublicKey(pkey.get());
}

Result<PublicKey> ReadPublicKeyPemFile(const std::string& path) {
  Result<std::string> pem = ReadSecretFile(path);
  if (!pem.ok()) return pem.error();
  Result<PublicKey> key = PublicKeyFromPem(*pem);
  if (!key.ok()) {
    return Error(key.error().code(), path + ": " + key.error().message());
  }
  return key;
}

bool VerifySignature(const PublicKey& key, std::span<const uint8_t> message,
                     const Signature& signature) {
  PkeyPtr pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                           key.data(), key.size()));
  MdCtxPtr ctx(EVP_MD_CTX_new());
  const bool ok =
      pkey != nullptr && ctx != nullptr &&
      EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) ==
          1 &&
      EVP_DigestVerify(ctx.get(), signature.data(), signature.size(),
                       NonNullData(message), message.size()) == 1;
  if (!ok) ERR_clear_error();
  return ok;
}

// --- SHA-256 ---------------------------------------------------------------

namespace {

// SHA-256 fetched from the provider once: EVP_sha256() makes OpenSSL 3 look
// the algorithm up again at every EVP_DigestInit_ex, which costs about as
// much as hashing a Merkle node (a store's root hashes a million of them).
const EVP_MD* FetchedSha256() {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  CheckOpenSsl(md != nullptr);
  return md;
}

}  // namespace

struct Sha256Hasher::Impl {
  MdCtxPtr ctx{EVP_MD_CTX_new()};
};

Sha256Hasher::Sha256Hasher() : impl_(std::make_unique<Impl>()) {
  CheckOpenSsl(impl_->ctx != nullptr &&
               EVP_DigestInit_ex(impl_->ctx.get(), FetchedSha256(), nullptr) == 1);
}

Sha256Hasher::~Sha256Hasher() = default;

Sha256Hasher::Sha256Hasher(const Sha256Hasher& other) : Sha256Hasher() { *this = other; }

Sha256Hasher& Sha256Hasher::operator=(const Sha256Hasher& other) {
  if (this == &other) return *this;
  if (!other.impl_) {
    // A hasher moved from copies as a new one.
    Sha256Hasher fresh;
    impl_ = std::move(fresh.impl_);
    return *this;
  }
  if (!impl_) impl_ = std::make_unique<Impl>();  // moved from
  CheckOpenSsl(impl_->ctx != nullptr &&
               EVP_MD_CTX_copy_ex(impl_->ctx.get(), other.impl_->ctx.get()) == 1);
  return *this;
}

Sha256Hasher::Sha256Hasher(Sha256Hasher&&) noexcept = default;
Sha256Hasher& Sha256Hasher::operator=(Sha256Hasher&&) noexcept = default;

Sha256Hasher& Sha256Hasher::Update(std::span<const uint8_t> bytes) {
  if (!bytes.empty()) {
    CheckOpenSsl(
        EVP_DigestUpdate(impl_->ctx.get(), bytes.data(), bytes.size()) == 1);
  }
  return *this;
}

Sha256Hasher& Sha256Hasher::Update(std::string_view bytes) {
  return Update(AsBytes(bytes));
}

Sha256Hasher& Sha256Hasher::UpdateU64(uint64_t value) {
  std::array<uint8_t, 8> be;
  for (size_t i = 0; i < be.size(); ++i) {
    be[i] = static_cast<uint8_t>(value >> (56 - 8 * i));
  }
  return Update(be);
}

Sha256Hasher& Sha256Hasher::UpdateField(std::string_view bytes) {
  // A field of 4 GiB or more cannot be framed; no caller hashes one.
  CheckOpenSsl(bytes.size() <= UINT32_MAX);
  const auto size = static_cast<uint32_t>(bytes.size());
  const std::array<uint8_t, 4> be = {
      static_cast<uint8_t>(size >> 24), static_cast<uint8_t>(size >> 16),
      static_cast<uint8_t>(size >> 8), static_cast<uint8_t>(size)};
  return Update(be).Update(bytes);
}

Digest32 Sha256Hasher::Finish() {
  Digest32 digest{};
  unsigned int len = 0;
  CheckOpenSsl(EVP_DigestFinal_ex(impl_->ctx.get(), digest.data(), &len) == 1 &&
               len == digest.size() &&
               EVP_DigestInit_ex(impl_->ctx.get(), FetchedSha256(), nullptr) == 1);
  return digest;
}

}  // namespace bantay::matcher
