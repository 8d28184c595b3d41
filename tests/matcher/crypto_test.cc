#include "bantay/matcher/crypto.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "bantay/models/digest.h"
#include "test_images.h"

namespace bantay::matcher {
namespace {

using models::ToHex;

using bantay::testing::FromHex;

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::vector<uint8_t> Concat(
    std::initializer_list<std::span<const uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (auto part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

bool AllZero(std::span<const uint8_t> bytes) {
  return std::all_of(bytes.begin(), bytes.end(),
                     [](uint8_t b) { return b == 0; });
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

DataKey KeyFromHex(std::string_view hex) {
  Result<DataKey> key = DataKeyFromHex(hex);
  EXPECT_TRUE(key.ok());
  return key.ok() ? *key : DataKey{};
}

// --- AES-256-GCM -------------------------------------------------------------

// Test Case 16 of McGrew and Viega, "The Galois/Counter Mode of Operation
// (GCM)" (the NIST submission): AES-256, 96-bit IV, 60-byte plaintext,
// 20-byte additional data.
constexpr std::string_view kGcmKey =
    "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
constexpr std::string_view kGcmIv = "cafebabefacedbaddecaf888";
constexpr std::string_view kGcmPlaintext =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
constexpr std::string_view kGcmAad = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
constexpr std::string_view kGcmCiphertext =
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
constexpr std::string_view kGcmTag = "76fc6ece0f4e1768cddf8853bb2d551b";

class GcmVectorTest : public ::testing::Test {
 protected:
  Aead aead_{KeyFromHex(kGcmKey)};
  const std::vector<uint8_t> plaintext_ = FromHex(kGcmPlaintext);
  const std::vector<uint8_t> aad_ = FromHex(kGcmAad);
  const std::vector<uint8_t> sealed_ =
      Concat({FromHex(kGcmIv), FromHex(kGcmCiphertext), FromHex(kGcmTag)});
};

TEST_F(GcmVectorTest, OpensTheSpecificationVector) {
  ASSERT_EQ(sealed_.size(), plaintext_.size() + Aead::kOverhead);
  std::vector<uint8_t> out(plaintext_.size(), 0xaa);
  ASSERT_TRUE(aead_.Open(sealed_, aad_, out).ok());
  EXPECT_EQ(out, plaintext_);
}

TEST_F(GcmVectorTest, AnyChangedByteOfTheMessageIsRefusedAndZeroed) {
  for (size_t i = 0; i < sealed_.size(); ++i) {
    std::vector<uint8_t> changed = sealed_;
    changed[i] ^= 0x01;
    std::vector<uint8_t> out(plaintext_.size(), 0xaa);
    Status status = aead_.Open(changed, aad_, out);
    ASSERT_FALSE(status.ok()) << "byte " << i;
    EXPECT_EQ(status.error().code(), ErrorCode::kCorruptData) << "byte " << i;
    EXPECT_TRUE(AllZero(out)) << "byte " << i;
  }
}

TEST_F(GcmVectorTest, AnyChangedByteOfTheAadIsRefusedAndZeroed) {
  for (size_t i = 0; i < aad_.size(); ++i) {
    std::vector<uint8_t> changed = aad_;
    changed[i] ^= 0x80;
    std::vector<uint8_t> out(plaintext_.size(), 0xaa);
    Status status = aead_.Open(sealed_, changed, out);
    ASSERT_FALSE(status.ok()) << "byte " << i;
    EXPECT_EQ(status.error().code(), ErrorCode::kCorruptData) << "byte " << i;
    EXPECT_TRUE(AllZero(out)) << "byte " << i;
  }
  std::vector<uint8_t> out(plaintext_.size(), 0xaa);
  Status missing = aead_.Open(sealed_, {}, out);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::kCorruptData);
}

TEST_F(GcmVectorTest, WrongKeyIsRefused) {
  std::vector<uint8_t> key = FromHex(kGcmKey);
  key[31] ^= 0x01;
  Aead other(KeyFromHex(ToHex(key)));
  std::vector<uint8_t> out(plaintext_.size(), 0xaa);
  Status status = other.Open(sealed_, aad_, out);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code(), ErrorCode::kCorruptData);
  EXPECT_TRUE(AllZero(out));
}

TEST_F(GcmVectorTest, WrongSizesAreRefused) {
  std::vector<uint8_t> out(plaintext_.size() + 1, 0xaa);
  Status wrong_buffer = aead_.Open(sealed_, aad_, out);
  ASSERT_FALSE(wrong_buffer.ok());
  EXPECT_EQ(wrong_buffer.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(AllZero(out));

  std::vector<uint8_t> too_short(sealed_.begin(),
                                 sealed_.begin() + Aead::kOverhead - 1);
  std::vector<uint8_t> none;
  Status short_message = aead_.Open(too_short, aad_, none);
  ASSERT_FALSE(short_message.ok());
  EXPECT_EQ(short_message.error().code(), ErrorCode::kCorruptData);
}

TEST(AeadTest, RoundTripsOfManySizes) {
  Aead aead(GenerateDataKey());
  const std::vector<uint8_t> aad = {1, 2,  3,  4,  5,  6,  7,  8,
                                    9, 10, 11, 12, 13, 14, 15, 16};
  for (size_t size : {0, 1, 16, 32, 48, 1000}) {
    std::vector<uint8_t> plaintext(size);
    RandomBytes(plaintext);
    for (std::span<const uint8_t> a :
         {std::span<const uint8_t>(aad), std::span<const uint8_t>()}) {
      std::vector<uint8_t> sealed;
      aead.Seal(plaintext, a, &sealed);
      ASSERT_EQ(sealed.size(), size + Aead::kOverhead);
      std::vector<uint8_t> out(size, 0xaa);
      ASSERT_TRUE(aead.Open(sealed, a, out).ok()) << size;
      EXPECT_EQ(out, plaintext) << size;
    }
  }
}

TEST(AeadTest, SealAppendsAndUsesAFreshNonceEachTime) {
  Aead aead(GenerateDataKey());
  const std::vector<uint8_t> plaintext(48, 0x5a);
  const std::vector<uint8_t> prefix = {9, 8, 7};
  std::vector<uint8_t> first = prefix;
  std::vector<uint8_t> second;
  aead.Seal(plaintext, {}, &first);
  aead.Seal(plaintext, {}, &second);
  ASSERT_EQ(first.size(), prefix.size() + plaintext.size() + Aead::kOverhead);
  EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), first.begin()));
  const std::vector<uint8_t> first_message(first.begin() + 3, first.end());
  EXPECT_NE(first_message, second);
  EXPECT_FALSE(std::equal(second.begin(), second.begin() + Aead::kNonceSize,
                          first_message.begin()));
  std::vector<uint8_t> out(plaintext.size());
  ASSERT_TRUE(aead.Open(first_message, {}, out).ok());
  EXPECT_EQ(out, plaintext);
}

TEST(AeadTest, KeyIdIsTheDataKeys) {
  DataKey key = GenerateDataKey();
  Aead aead(key);
  EXPECT_EQ(aead.key_id(), key.id);
}

// --- Data keys and key files
// ---------------------------------------------------

constexpr std::string_view kFixedKeyHex =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

TEST(DataKeyTest, IdIsTheFirstEightBytesOfTheTaggedSha256) {
  const std::vector<uint8_t> bytes = FromHex(kFixedKeyHex);
  const models::Sha256Digest digest =
      models::Sha256(Concat({Bytes("bantay-data-key-id"), bytes}));
  const std::string expected = ToHex(std::span<const uint8_t>(digest).first(8));
  ASSERT_EQ(expected.size(), 16u);

  DataKey key = KeyFromHex(kFixedKeyHex);
  EXPECT_EQ(std::vector<uint8_t>(key.bytes.begin(), key.bytes.end()), bytes);
  EXPECT_EQ(key.id, expected);
  EXPECT_EQ(DataKeyToHex(key), kFixedKeyHex);
}

TEST(DataKeyTest, HexParsingTrimsWhitespaceAndAcceptsUpperCase) {
  std::string upper(kFixedKeyHex);
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  Result<DataKey> key = DataKeyFromHex(" \t" + upper + "\r\n");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(DataKeyToHex(*key), kFixedKeyHex);
}

TEST(DataKeyTest, MalformedHexIsRefusedWithoutRepeatingIt) {
  const std::string bad_digit = std::string(kFixedKeyHex.substr(0, 63)) + "g";
  for (const std::string& hex : {std::string(kFixedKeyHex.substr(0, 62)),
                                 std::string(kFixedKeyHex) + "00", bad_digit,
                                 std::string(kFixedKeyHex.substr(0, 32)) + " " +
                                     std::string(kFixedKeyHex.substr(32)),
                                 std::string()}) {
    Result<DataKey> key = DataKeyFromHex(hex);
    ASSERT_FALSE(key.ok()) << hex;
    EXPECT_EQ(key.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(key.error().message().find("0001020304"), std::string::npos);
  }
}

TEST(DataKeyTest, GeneratedKeysDiffer) {
  DataKey a = GenerateDataKey();
  DataKey b = GenerateDataKey();
  EXPECT_NE(a.bytes, b.bytes);
  EXPECT_NE(a.id, b.id);
  EXPECT_EQ(a.id.size(), 16u);
  EXPECT_EQ(a.id, KeyFromHex(DataKeyToHex(a)).id);
}

TEST(KeyFileTest, RoundTripWithMode0600) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/data.key";
  DataKey key = KeyFromHex(kFixedKeyHex);
  ASSERT_TRUE(WriteDataKeyFile(path, key).ok());

  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(ReadText(path), std::string(kFixedKeyHex) + "\n");

  Result<DataKey> read = ReadDataKeyFile(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->bytes, key.bytes);
  EXPECT_EQ(read->id, key.id);
}

TEST(KeyFileTest, AnExistingFileIsNeverOverwritten) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/data.key";
  DataKey first = KeyFromHex(kFixedKeyHex);
  ASSERT_TRUE(WriteDataKeyFile(path, first).ok());
  Status second = WriteDataKeyFile(path, GenerateDataKey());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(second.error().message().find("already exists"), std::string::npos);
  EXPECT_EQ(ReadText(path), std::string(kFixedKeyHex) + "\n");
}

TEST(KeyFileTest, BadContentIsRefused) {
  testing::TempDir dir;
  for (const std::string& content :
       {std::string(kFixedKeyHex.substr(0, 60)) + "\n",
        std::string("not a key\n"),
        std::string(kFixedKeyHex) + "\n" + std::string(kFixedKeyHex) + "\n",
        std::string()}) {
    const std::string path =
        dir.Write("bad.key", {content.begin(), content.end()});
    Result<DataKey> key = ReadDataKeyFile(path);
    ASSERT_FALSE(key.ok()) << content;
    EXPECT_EQ(key.error().code(), ErrorCode::kInvalidArgument) << content;
  }
}

TEST(KeyFileTest, SurroundingWhitespaceIsAccepted) {
  testing::TempDir dir;
  const std::string content = "\n  " + std::string(kFixedKeyHex) + "  \r\n\n";
  Result<DataKey> key = ReadDataKeyFile(
      dir.Write("spaced.key", {content.begin(), content.end()}));
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(DataKeyToHex(*key), kFixedKeyHex);
}

TEST(KeyFileTest, MissingFilesAndDirectories) {
  testing::TempDir dir;
  Result<DataKey> missing = ReadDataKeyFile(dir.path() + "/missing.key");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);

  Result<DataKey> directory = ReadDataKeyFile(dir.path());
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.error().code(), ErrorCode::kIo);

  Status no_parent = WriteSecretFile(dir.path() + "/no/such/dir/data.key", "x");
  ASSERT_FALSE(no_parent.ok());
  EXPECT_EQ(no_parent.error().code(), ErrorCode::kIo);
}

TEST(KeyFileTest, MessagesNeverContainTheKey) {
  testing::TempDir dir;
  // One digit short: the file holds most of a key, which must not be echoed.
  const std::string content = std::string(kFixedKeyHex.substr(0, 63)) + "\n";
  Result<DataKey> key =
      ReadDataKeyFile(dir.Write("short.key", {content.begin(), content.end()}));
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.error().message().find("0a0b0c0d"), std::string::npos);
}

// --- Ed25519 -----------------------------------------------------------------

struct Ed25519Vector {
  std::string_view secret;
  std::string_view public_key;
  std::string_view message;
  std::string_view signature;
};

// RFC 8032 section 7.1, TEST 1 and TEST 2.
constexpr Ed25519Vector kRfc8032Vectors[] = {
    {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
    {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
};

// TEST 1's key as PKCS#8 (RFC 8410: 302e020100300506032b657004220420 ||
// seed) and as SubjectPublicKeyInfo (302a300506032b6570032100 || key), in
// base64 as coreutils' base64 writes those DER bytes.
constexpr std::string_view kTest1PrivatePem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";
constexpr std::string_view kTest1PublicPem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
    "-----END PUBLIC KEY-----\n";

template <size_t N>
std::array<uint8_t, N> ArrayFromHex(std::string_view hex) {
  std::array<uint8_t, N> out{};
  const std::vector<uint8_t> bytes = FromHex(hex);
  EXPECT_EQ(bytes.size(), N);
  std::copy_n(bytes.begin(), std::min(N, bytes.size()), out.begin());
  return out;
}

SigningKey KeyFromSeed(std::string_view hex) {
  Result<SigningKey> key = SigningKey::FromSeed(FromHex(hex));
  if (!key.ok()) {
    ADD_FAILURE() << key.error().ToString();
    return SigningKey::Generate();
  }
  return std::move(key).value();
}

TEST(Ed25519Test, Rfc8032Vectors) {
  for (const Ed25519Vector& v : kRfc8032Vectors) {
    SigningKey key = KeyFromSeed(v.secret);
    const std::vector<uint8_t> message = FromHex(v.message);
    EXPECT_EQ(ToHex(key.public_key()), v.public_key);
    const Signature signature = key.Sign(message);
    EXPECT_EQ(ToHex(signature), v.signature);
    EXPECT_TRUE(VerifySignature(ArrayFromHex<32>(v.public_key), message,
                                ArrayFromHex<64>(v.signature)));
  }
}

TEST(Ed25519Test, VerificationFailsForAnyChange) {
  const Ed25519Vector& v = kRfc8032Vectors[1];
  const PublicKey public_key = ArrayFromHex<32>(v.public_key);
  const Signature signature = ArrayFromHex<64>(v.signature);
  const std::vector<uint8_t> message = FromHex(v.message);

  EXPECT_FALSE(VerifySignature(public_key, Bytes("s"), signature));
  EXPECT_FALSE(VerifySignature(public_key, {}, signature));
  EXPECT_FALSE(VerifySignature(public_key, Bytes("rr"), signature));
  for (size_t i = 0; i < signature.size(); i += 7) {
    Signature changed = signature;
    changed[i] ^= 0x04;
    EXPECT_FALSE(VerifySignature(public_key, message, changed)) << i;
  }
  for (size_t i = 0; i < public_key.size(); i += 5) {
    PublicKey changed = public_key;
    changed[i] ^= 0x10;
    EXPECT_FALSE(VerifySignature(changed, message, signature)) << i;
  }
  EXPECT_FALSE(VerifySignature(ArrayFromHex<32>(kRfc8032Vectors[0].public_key),
                               message, signature));
}

TEST(Ed25519Test, FromSeedRefusesOtherLengths) {
  for (size_t size : {0, 31, 33, 64}) {
    Result<SigningKey> key =
        SigningKey::FromSeed(std::vector<uint8_t>(size, 1));
    ASSERT_FALSE(key.ok()) << size;
    EXPECT_EQ(key.error().code(), ErrorCode::kInvalidArgument);
  }
}

TEST(Ed25519Test, GeneratedKeysSignAndDiffer) {
  SigningKey a = SigningKey::Generate();
  SigningKey b = SigningKey::Generate();
  EXPECT_NE(a.public_key(), b.public_key());
  const Signature signature = a.Sign(Bytes("index version 7"));
  EXPECT_TRUE(
      VerifySignature(a.public_key(), Bytes("index version 7"), signature));
  EXPECT_FALSE(
      VerifySignature(b.public_key(), Bytes("index version 7"), signature));
}

TEST(Ed25519Test, PemEncodingsOfAKnownKey) {
  SigningKey key = KeyFromSeed(kRfc8032Vectors[0].secret);
  EXPECT_EQ(key.ToPem(), kTest1PrivatePem);
  EXPECT_EQ(PublicKeyToPem(key.public_key()), kTest1PublicPem);

  Result<SigningKey> parsed = SigningKey::FromPem(kTest1PrivatePem);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(ToHex(parsed->public_key()), kRfc8032Vectors[0].public_key);
  EXPECT_EQ(ToHex(parsed->Sign({})), kRfc8032Vectors[0].signature);

  Result<PublicKey> public_key = PublicKeyFromPem(kTest1PublicPem);
  ASSERT_TRUE(public_key.ok());
  EXPECT_EQ(ToHex(*public_key), kRfc8032Vectors[0].public_key);
}

TEST(Ed25519Test, PemRoundTripsOfGeneratedKeys) {
  SigningKey key = SigningKey::Generate();
  Result<SigningKey> parsed = SigningKey::FromPem(key.ToPem());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->public_key(), key.public_key());
  EXPECT_EQ(parsed->Sign(Bytes("m")), key.Sign(Bytes("m")));

  Result<PublicKey> public_key =
      PublicKeyFromPem(PublicKeyToPem(key.public_key()));
  ASSERT_TRUE(public_key.ok());
  EXPECT_EQ(*public_key, key.public_key());
}

TEST(Ed25519Test, PemFiles) {
  testing::TempDir dir;
  const std::string private_path = dir.path() + "/signing.pem";
  const std::string public_path = dir.path() + "/signing.pub.pem";
  SigningKey key = SigningKey::Generate();
  ASSERT_TRUE(WriteSecretFile(private_path, key.ToPem()).ok());
  ASSERT_TRUE(
      WriteSecretFile(public_path, PublicKeyToPem(key.public_key())).ok());

  Result<SigningKey> read = SigningKey::ReadPemFile(private_path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->public_key(), key.public_key());
  Result<PublicKey> read_public = ReadPublicKeyPemFile(public_path);
  ASSERT_TRUE(read_public.ok());
  EXPECT_EQ(*read_public, key.public_key());

  Result<SigningKey> missing =
      SigningKey::ReadPemFile(dir.path() + "/missing.pem");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  Result<PublicKey> missing_public =
      ReadPublicKeyPemFile(dir.path() + "/missing.pem");
  ASSERT_FALSE(missing_public.ok());
  EXPECT_EQ(missing_public.error().code(), ErrorCode::kNotFound);

  // Each reader refuses the other's file.
  Result<SigningKey> swapped = SigningKey::ReadPemFile(public_path);
  ASSERT_FALSE(swapped.ok());
  EXPECT_EQ(swapped.error().code(), ErrorCode::kInvalidArgument);
  Result<PublicKey> swapped_public = ReadPublicKeyPemFile(private_path);
  ASSERT_FALSE(swapped_public.ok());
  EXPECT_EQ(swapped_public.error().code(), ErrorCode::kInvalidArgument);
}

// PEM of an EC P-256 key made with OpenSSL directly.
struct EcPems {
  std::string private_pem;
  std::string public_pem;
  std::string encrypted_ed25519_pem;
};

EcPems MakeOtherPems() {
  EcPems pems;
  EVP_PKEY* ec = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  EVP_PKEY* ed = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (ec == nullptr || ed == nullptr) {
    ADD_FAILURE() << "key generation failed";
    return pems;
  }
  auto write = [](auto&& writer) {
    BIO* bio = BIO_new(BIO_s_mem());
    EXPECT_EQ(writer(bio), 1);
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<size_t>(size));
    BIO_free(bio);
    return out;
  };
  pems.private_pem = write([&](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, ec, nullptr, nullptr, 0, nullptr,
                                    nullptr);
  });
  pems.public_pem =
      write([&](BIO* bio) { return PEM_write_bio_PUBKEY(bio, ec); });
  static char kPassphrase[] = "passphrase";
  pems.encrypted_ed25519_pem = write([&](BIO* bio) {
    return PEM_write_bio_PKCS8PrivateKey(bio, ed, EVP_aes_256_cbc(), nullptr, 0,
                                         nullptr, kPassphrase);
  });
  EVP_PKEY_free(ec);
  EVP_PKEY_free(ed);
  return pems;
}

TEST(Ed25519Test, OtherKeyTypesAndNonPemAreRefused) {
  const EcPems pems = MakeOtherPems();
  ASSERT_NE(pems.private_pem.find("-----BEGIN PRIVATE KEY-----"),
            std::string::npos);
  ASSERT_NE(pems.public_pem.find("-----BEGIN PUBLIC KEY-----"),
            std::string::npos);
  ASSERT_NE(
      pems.encrypted_ed25519_pem.find("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
      std::string::npos);

  for (std::string_view pem :
       {std::string_view(pems.private_pem),
        std::string_view(pems.encrypted_ed25519_pem),
        std::string_view(kTest1PublicPem), std::string_view("not pem"),
        std::string_view()}) {
    Result<SigningKey> key = SigningKey::FromPem(pem);
    ASSERT_FALSE(key.ok()) << pem;
    EXPECT_EQ(key.error().code(), ErrorCode::kInvalidArgument) << pem;
  }
  for (std::string_view pem :
       {std::string_view(pems.public_pem), std::string_view(kTest1PrivatePem),
        std::string_view("not pem"), std::string_view()}) {
    Result<PublicKey> key = PublicKeyFromPem(pem);
    ASSERT_FALSE(key.ok()) << pem;
    EXPECT_EQ(key.error().code(), ErrorCode::kInvalidArgument) << pem;
  }
}

// --- SHA-256 -----------------------------------------------------------------

TEST(Sha256HasherTest, MatchesTheDigestOfTheFramedBytes) {
  Sha256Hasher hasher;
  const std::vector<uint8_t> raw = {0xde, 0xad, 0xbe, 0xef};
  hasher.Update(raw)
      .Update("text")
      .UpdateU64(0x0102030405060708)
      .UpdateField("abc")
      .UpdateField("");
  const std::vector<uint8_t> expected_input = {
      0xde, 0xad, 0xbe, 0xef, 't', 'e',  'x', 't', 1,   2, 3, 4, 5, 6,
      7,    8,    0,    0,    0,   0x03, 'a', 'b', 'c', 0, 0, 0, 0};
  EXPECT_EQ(ToHex(hasher.Finish()), ToHex(models::Sha256(expected_input)));
}

TEST(Sha256HasherTest, FinishResets) {
  Sha256Hasher hasher;
  hasher.Update("abc");
  EXPECT_EQ(ToHex(hasher.Finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(ToHex(hasher.Finish()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  hasher.Update("ab").Update("c");
  EXPECT_EQ(ToHex(hasher.Finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// A copy goes on from where the original was; each finishes on its own.
TEST(Sha256HasherTest, ACopyGoesOnFromTheSamePoint) {
  Sha256Hasher hasher;
  hasher.Update("a");
  Sha256Hasher copy = hasher;
  hasher.Update("bc");
  copy.Update("b").Update("c");
  const std::string abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  EXPECT_EQ(ToHex(copy.Finish()), abc);
  Sha256Hasher assigned;
  assigned.Update("something else");
  hasher.Update("d");
  assigned = hasher;
  const std::string abcd = "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589";
  EXPECT_EQ(ToHex(hasher.Finish()), abcd);
  EXPECT_EQ(ToHex(assigned.Finish()), abcd);
  // Assigned into after a move.
  Sha256Hasher moved = std::move(assigned);
  copy.Update("abc");
  assigned = copy;
  EXPECT_EQ(ToHex(assigned.Finish()), abc);
  EXPECT_EQ(ToHex(moved.Finish()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256HasherTest, LongFieldLengthsAreBigEndian) {
  const std::string field(0x010203, 'x');
  Sha256Hasher hasher;
  hasher.UpdateField(field).UpdateU64(0xfedcba9876543210);
  // Sized up front: GCC 12 reports a false overflow for insert() into a
  // 4-byte vector in the ThreadSanitizer build.
  std::vector<uint8_t> expected_input(4 + field.size() + 8);
  const uint8_t length[4] = {0x00, 0x01, 0x02, 0x03};
  const uint8_t tail[8] = {0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
  std::copy(std::begin(length), std::end(length), expected_input.begin());
  std::copy(field.begin(), field.end(), expected_input.begin() + 4);
  std::copy(std::begin(tail), std::end(tail), expected_input.end() - 8);
  EXPECT_EQ(hasher.Finish(), models::Sha256(expected_input));
}

TEST(RandomBytesTest, FillsAndWipeZeroes) {
  std::vector<uint8_t> a(64, 0);
  std::vector<uint8_t> b(64, 0);
  RandomBytes(a);
  RandomBytes(b);
  EXPECT_NE(a, b);
  EXPECT_FALSE(AllZero(a));
  Wipe(a);
  EXPECT_TRUE(AllZero(a));
}

}  // namespace
}  // namespace bantay::matcher
