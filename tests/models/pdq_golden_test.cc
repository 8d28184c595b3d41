// Golden tests against Meta's reference: every JPEG and PNG listed in
// tests/data/pdq/expected-pdq.csv must hash to exactly the reference value
// (0 bits different) and quality, and the dihedral hashes must equal
// expected-pdq-dihedral.csv. No file needs a tolerance: OpenCV decodes these
// files with the same libjpeg-turbo/libpng the reference used.
#include <gtest/gtest.h>

#include <algorithm>

#include "bantay/models/image_hasher.h"
#include "test_images.h"

namespace bantay::models {
namespace {

std::vector<std::string> Paths(const std::string& csv) {
  std::vector<std::string> paths;
  for (const auto& [path, _] : testing::ReadExpectedCsv(csv)) paths.push_back(path);
  return paths;
}

// "bridge-mods/aaa-orig.jpg" -> "bridge_mods_aaa_orig_jpg"
std::string TestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

class PdqGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PdqGoldenTest, MatchesReferenceHashAndQuality) {
  static const auto expected = testing::ReadExpectedCsv("pdq/expected-pdq.csv");
  const auto& row = expected.at(GetParam());
  ImageHasher hasher;
  Result<ImageHashes> h = hasher.Hash(testing::ReadTestFile("pdq/" + GetParam()));
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  EXPECT_EQ(h->pdq.hash.ToHex(), row[0]);
  EXPECT_EQ(h->pdq.quality, std::stoi(row[1]));
  EXPECT_EQ(h->pdq.low_quality(), std::stoi(row[1]) < 50);
}

INSTANTIATE_TEST_SUITE_P(
    Reference, PdqGoldenTest,
    ::testing::ValuesIn(Paths("pdq/expected-pdq.csv")),
    TestName);

class PdqDihedralGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PdqDihedralGoldenTest, MatchesReferenceDihedralHashes) {
  static const auto expected =
      testing::ReadExpectedCsv("pdq/expected-pdq-dihedral.csv");
  const auto& row = expected.at(GetParam());  // quality, then 8 hashes
  ImageHasher hasher({.dihedral = true});
  Result<ImageHashes> h = hasher.Hash(testing::ReadTestFile("pdq/" + GetParam()));
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  ASSERT_TRUE(h->pdq.has_dihedral);
  EXPECT_EQ(h->pdq.quality, std::stoi(row[0]));
  for (int v = 0; v < kDihedralCount; ++v) {
    EXPECT_EQ(h->pdq.dihedral[v].ToHex(), row[1 + v])
        << DihedralName(static_cast<Dihedral>(v));
  }
  EXPECT_EQ(h->pdq.dihedral[0], h->pdq.hash);
}

INSTANTIATE_TEST_SUITE_P(
    Reference, PdqDihedralGoldenTest,
    ::testing::ValuesIn(Paths("pdq/expected-pdq-dihedral.csv")),
    TestName);

TEST(PdqGoldenSetTest, CoversEveryListedFile) {
  EXPECT_EQ(Paths("pdq/expected-pdq.csv").size(), 44u);
  EXPECT_EQ(Paths("pdq/expected-pdq-dihedral.csv").size(), 44u);
}

TEST(DihedralFromHashTest, ApproximatesTheImageDerivedVariants) {
  // Over the reference images of quality >= 50: median 4 bits, at most 30.
  const auto expected = testing::ReadExpectedCsv("pdq/expected-pdq-dihedral.csv");
  std::vector<int> distances;
  for (const auto& [path, row] : expected) {
    if (std::stoi(row[0]) < kPdqMinQuality) continue;
    const auto derived = DihedralFromHash(*Hash256::FromHex(row[1]));
    EXPECT_EQ(derived[0].ToHex(), row[1]);
    for (int v = 1; v < kDihedralCount; ++v) {
      distances.push_back(HammingDistance(derived[v], *Hash256::FromHex(row[1 + v])));
    }
  }
  std::sort(distances.begin(), distances.end());
  ASSERT_EQ(distances.size(), 287u);
  EXPECT_EQ(distances[distances.size() / 2], 4);
  EXPECT_EQ(distances.back(), 30);
}

}  // namespace
}  // namespace bantay::models
