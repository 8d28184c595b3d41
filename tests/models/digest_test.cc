#include "bantay/models/digest.h"

#include <gtest/gtest.h>

#include <string_view>

namespace bantay::models {
namespace {

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Test vectors of RFC 1321 and FIPS 180-2.
TEST(DigestTest, Md5KnownAnswers) {
  EXPECT_EQ(ToHex(Md5(Bytes(""))), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(ToHex(Md5(Bytes("abc"))), "900150983cd24fb0d6963f7d28e17f72");
}

TEST(DigestTest, Sha256KnownAnswers) {
  EXPECT_EQ(ToHex(Sha256(Bytes(""))),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(ToHex(Sha256(Bytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(DigestTest, ComputeDigestsGivesBoth) {
  ExactDigests d = ComputeDigests(Bytes("abc"));
  EXPECT_EQ(ToHex(d.md5), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(ToHex(d.sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// The FIPS 180-2 two-block message, fed in uneven pieces, and the stream
// starting over after Finish.
TEST(DigestTest, StreamInPiecesEqualsOneShot) {
  const std::string_view message =
      "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  DigestStream stream;
  stream.Update(Bytes(message.substr(0, 1)));
  stream.Update(Bytes(message.substr(1, 0)));
  stream.Update(Bytes(message.substr(1, 30)));
  stream.Update(Bytes(message.substr(31)));
  ExactDigests d = stream.Finish();
  EXPECT_EQ(ToHex(d.sha256),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(ToHex(d.md5), ToHex(Md5(Bytes(message))));
  stream.Update(Bytes("abc"));
  d = stream.Finish();
  EXPECT_EQ(ToHex(d.md5), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(ToHex(stream.Finish().md5), "d41d8cd98f00b204e9800998ecf8427e");
}

}  // namespace
}  // namespace bantay::models
