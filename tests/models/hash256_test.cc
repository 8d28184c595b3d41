#include "bantay/models/hash256.h"

#include <gtest/gtest.h>

namespace bantay::models {
namespace {

constexpr char kBridge[] =
    "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";

TEST(Hash256Test, HexRoundTripIsIdentity) {
  Result<Hash256> h = Hash256::FromHex(kBridge);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->ToHex(), kBridge);
  EXPECT_EQ(h->bytes()[0], 0xd8);
  EXPECT_EQ(h->bytes()[31], 0x22);
}

TEST(Hash256Test, UpperCaseIsAcceptedAndPrintedLowerCase) {
  Result<Hash256> h = Hash256::FromHex(
      "D8F8F0CEE0F4A84F0637022A078F67F0B36E2ED596621E1D33E6339C4E9C9B22");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->ToHex(), kBridge);
}

TEST(Hash256Test, RejectsWrongLengths) {
  for (const std::string& bad :
       {std::string(), std::string(63, 'a'), std::string(65, 'a'),
        std::string(128, 'a')}) {
    Result<Hash256> h = Hash256::FromHex(bad);
    ASSERT_FALSE(h.ok()) << bad.size();
    EXPECT_EQ(h.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(h.error().message(),
              "a PDQ hash is 64 hexadecimal digits, got " +
                  std::to_string(bad.size()) + " characters");
  }
}

TEST(Hash256Test, RejectsNonHexCharacters) {
  std::string hex = kBridge;
  hex[10] = 'g';
  Result<Hash256> h = Hash256::FromHex(hex);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(h.error().message(), "non-hexadecimal character at position 10");

  hex = kBridge;
  hex[63] = ' ';
  EXPECT_EQ(Hash256::FromHex(hex).error().message(),
            "non-hexadecimal character at position 63");
  hex = kBridge;
  hex[0] = '0';
  hex[1] = 'x';
  EXPECT_EQ(Hash256::FromHex(hex).error().message(),
            "non-hexadecimal character at position 1");
}

TEST(Hash256Test, BitNumberingFollowsTheReference) {
  // Bit k lives in 16-bit word k/16, and words print from 15 down to 0.
  Hash256 h;
  h.SetBit(0);
  EXPECT_EQ(h.ToHex(), std::string(63, '0') + "1");
  Hash256 top;
  top.SetBit(255);
  EXPECT_EQ(top.ToHex(), "8" + std::string(63, '0'));
  Hash256 mid;
  mid.SetBit(17);  // word 1, bit 1: the 4th-last group of 4 hex digits
  EXPECT_EQ(mid.ToHex(), std::string(56, '0') + "00020000");
  EXPECT_TRUE(mid.GetBit(17));
  EXPECT_FALSE(mid.GetBit(16));
}

TEST(Hash256Test, HammingDistance) {
  const Hash256 zero;
  Hash256 ones = *Hash256::FromHex(std::string(64, 'f'));
  EXPECT_EQ(HammingDistance(zero, zero), 0);
  EXPECT_EQ(HammingDistance(zero, ones), 256);
  EXPECT_EQ(ones.PopCount(), 256);
  Hash256 a = *Hash256::FromHex(kBridge);
  EXPECT_EQ(a.PopCount(), 128);  // a PDQ hash splits at the median
  std::array<uint8_t, 32> bytes = a.bytes();
  for (int k : {0, 63, 64, 127, 128, 200, 255}) {
    bytes[31 - k / 8] ^= static_cast<uint8_t>(1u << (k % 8));
  }
  const Hash256 b(bytes);
  EXPECT_EQ(HammingDistance(a, b), 7);
  // The sharpen-a-lot variant of the same photograph, from the reference data.
  Hash256 c = *Hash256::FromHex(
      "d0f8f0cec0f4a84f0e370a22238f67f0b36a2ef596231e1d73e6a39c4e9c9b22");
  EXPECT_EQ(HammingDistance(a, c), 14);
}

TEST(Hash256Test, OrderingAndEquality) {
  Hash256 a = *Hash256::FromHex(std::string(63, '0') + "1");
  Hash256 b = *Hash256::FromHex("1" + std::string(63, '0'));
  EXPECT_LT(a, b);
  EXPECT_NE(a, b);
  EXPECT_EQ(a, *Hash256::FromHex(a.ToHex()));
}

}  // namespace
}  // namespace bantay::models
