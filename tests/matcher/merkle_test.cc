#include "bantay/matcher/merkle.h"

#include <gtest/gtest.h>

#include <bit>
#include <string>
#include <string_view>
#include <vector>

#include "bantay/models/digest.h"
#include "test_images.h"

namespace bantay::matcher {
namespace {

using models::ToHex;

using bantay::testing::FromHex;

Digest32 DigestFromHex(std::string_view hex) {
  Digest32 out{};
  const std::vector<uint8_t> bytes = FromHex(hex);
  EXPECT_EQ(bytes.size(), out.size());
  std::copy_n(bytes.begin(), std::min(bytes.size(), out.size()), out.begin());
  return out;
}

// --- RFC 6962 section 2.1, written out as the RFC states it -----------------

Digest32 Sha256Of(const std::vector<uint8_t>& bytes) {
  return models::Sha256(bytes);
}

Digest32 ReferenceLeafHash(std::span<const uint8_t> leaf) {
  std::vector<uint8_t> input = {0x00};
  input.insert(input.end(), leaf.begin(), leaf.end());
  return Sha256Of(input);
}

Digest32 ReferenceNodeHash(const Digest32& left, const Digest32& right) {
  std::vector<uint8_t> input = {0x01};
  input.insert(input.end(), left.begin(), left.end());
  input.insert(input.end(), right.begin(), right.end());
  return Sha256Of(input);
}

// The largest power of two smaller than n (n > 1).
size_t Split(size_t n) { return std::bit_floor(n - 1); }

// MTH(D[n]) over leaf hashes.
Digest32 ReferenceRoot(std::span<const Digest32> d) {
  if (d.empty()) return Sha256Of({});
  if (d.size() == 1) return d[0];
  const size_t k = Split(d.size());
  return ReferenceNodeHash(ReferenceRoot(d.first(k)),
                           ReferenceRoot(d.subspan(k)));
}

// PATH(m, D[n]).
std::vector<Digest32> ReferencePath(size_t m, std::span<const Digest32> d) {
  if (d.size() <= 1) return {};
  const size_t k = Split(d.size());
  std::vector<Digest32> path;
  if (m < k) {
    path = ReferencePath(m, d.first(k));
    path.push_back(ReferenceRoot(d.subspan(k)));
  } else {
    path = ReferencePath(m - k, d.subspan(k));
    path.push_back(ReferenceRoot(d.first(k)));
  }
  return path;
}

// The length of PATH(m, D[n]), without hashing.
size_t ReferencePathLength(size_t m, size_t n) {
  if (n <= 1) return 0;
  const size_t k = Split(n);
  return 1 + (m < k ? ReferencePathLength(m, k)
                    : ReferencePathLength(m - k, n - k));
}

// Distinct leaves: the leaf hashes of the 4-byte big-endian numbers 0..n-1.
std::vector<Digest32> Leaves(size_t n) {
  std::vector<Digest32> leaves;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t bytes[4] = {
        static_cast<uint8_t>(i >> 24), static_cast<uint8_t>(i >> 16),
        static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
    leaves.push_back(ReferenceLeafHash(bytes));
  }
  return leaves;
}

// --- Published vectors -------------------------------------------------------

// The Certificate Transparency test leaves and the roots of the trees of
// their first 1..8 entries, as published in transparency-dev/merkle
// (testonly/constants.go, from the C++ CT log's merkle_tree_test.cc).
constexpr std::string_view kCtLeaves[] = {"",
                                          "00",
                                          "10",
                                          "2021",
                                          "3031",
                                          "40414243",
                                          "5051525354555657",
                                          "606162636465666768696a6b6c6d6e6f"};
constexpr std::string_view kCtRoots[] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

std::vector<Digest32> CtLeafHashes() {
  std::vector<Digest32> hashes;
  for (std::string_view leaf : kCtLeaves)
    hashes.push_back(MerkleLeafHash(FromHex(leaf)));
  return hashes;
}

TEST(MerkleTest, EmptyTreeIsTheSha256OfNothing) {
  EXPECT_EQ(ToHex(MerkleRoot({})),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(MerkleTest, LeafAndNodeHashesArePrefixed) {
  EXPECT_EQ(ToHex(MerkleLeafHash({})), kCtRoots[0]);
  const std::vector<uint8_t> leaf = {0x10, 0x20};
  EXPECT_EQ(MerkleLeafHash(leaf), Sha256Of({0x00, 0x10, 0x20}));
  const Digest32 a = MerkleLeafHash(leaf);
  const Digest32 b = MerkleLeafHash({});
  EXPECT_EQ(MerkleNodeHash(a, b), ReferenceNodeHash(a, b));
  EXPECT_NE(MerkleNodeHash(a, b), MerkleNodeHash(b, a));
}

TEST(MerkleTest, CertificateTransparencyRoots) {
  const std::vector<Digest32> leaves = CtLeafHashes();
  for (size_t n = 1; n <= leaves.size(); ++n) {
    EXPECT_EQ(ToHex(MerkleRoot(std::span(leaves).first(n))), kCtRoots[n - 1])
        << n;
  }
}

// Audit paths published with the same leaves (transparency-dev/merkle,
// proof/verify_test.go).
TEST(MerkleTest, CertificateTransparencyAuditPaths) {
  struct Vector {
    size_t index;
    size_t size;
    std::vector<std::string_view> path;
  };
  const Vector vectors[] = {
      {0,
       8,
       {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
      {5,
       8,
       {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
      {2,
       3,
       {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
      {1,
       5,
       {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
      {0, 1, {}},
  };
  const std::vector<Digest32> leaves = CtLeafHashes();
  for (const Vector& v : vectors) {
    const std::span<const Digest32> tree = std::span(leaves).first(v.size);
    std::vector<Digest32> expected;
    for (std::string_view hex : v.path) expected.push_back(DigestFromHex(hex));
    EXPECT_EQ(MerkleInclusionProof(tree, v.index), expected)
        << v.index << " of " << v.size;
    EXPECT_TRUE(VerifyMerkleInclusion(leaves[v.index], v.index, v.size,
                                      expected,
                                      DigestFromHex(kCtRoots[v.size - 1])))
        << v.index << " of " << v.size;
  }
}

// --- Against the recursive definition ----------------------------------------

TEST(MerkleTest, RootMatchesTheRecursiveDefinition) {
  const std::vector<Digest32> leaves = Leaves(4097);
  for (size_t n = 0; n <= 130; ++n) {
    const std::span<const Digest32> tree = std::span(leaves).first(n);
    ASSERT_EQ(MerkleRoot(tree), ReferenceRoot(tree)) << n;
  }
  for (size_t n : {255, 256, 257, 1000, 1023, 1024, 1025, 4095, 4096, 4097}) {
    const std::span<const Digest32> tree = std::span(leaves).first(n);
    ASSERT_EQ(MerkleRoot(tree), ReferenceRoot(tree)) << n;
  }
}

// From 65536 leaves the two subtrees are hashed on two threads: the same
// root, at the sizes around the threshold and its next power of two.
TEST(MerkleTest, LargeTreesHashedOnTwoThreadsGiveTheSameRoot) {
  const std::vector<Digest32> leaves = Leaves(131073);
  for (size_t n : {65535, 65536, 65537, 100000, 131071, 131072, 131073}) {
    const std::span<const Digest32> tree = std::span(leaves).first(n);
    ASSERT_EQ(MerkleRoot(tree), ReferenceRoot(tree)) << n;
  }
}

// A frontier made of n leaves and then grown leaf by leaf has, at every
// size, the root of the recursive definition; one grown from empty, too.
TEST(MerkleTest, AFrontierGivesTheRootAsLeavesAreAppended) {
  const std::vector<Digest32> leaves = Leaves(140);
  MerkleFrontier grown;
  EXPECT_EQ(grown.size(), 0u);
  EXPECT_EQ(grown.Root(), ReferenceRoot({}));
  for (size_t n = 0; n < leaves.size(); ++n) {
    MerkleFrontier from_n(std::span<const Digest32>(leaves).first(n));
    ASSERT_EQ(from_n.size(), n);
    ASSERT_EQ(from_n.Root(), ReferenceRoot(std::span(leaves).first(n))) << n;
    for (size_t m = n; m < std::min(leaves.size(), n + 40); ++m) {
      ASSERT_EQ(from_n.Root(), ReferenceRoot(std::span(leaves).first(m))) << n << " + " << m - n;
      from_n.Append(leaves[m]);
    }
    grown.Append(leaves[n]);
    ASSERT_EQ(grown.size(), n + 1);
    ASSERT_EQ(grown.Root(), ReferenceRoot(std::span(leaves).first(n + 1))) << n + 1;
  }
}

// Made of just fewer leaves than are hashed on two threads, of a power of
// two that is (MerkleRoot splits it), and of more (its largest subtree on a
// thread of its own); then appended to, across a power of two.
TEST(MerkleTest, ALargeFrontierGivesTheRootAsLeavesAreAppended) {
  const std::vector<Digest32> leaves = Leaves(131075);
  for (size_t n : {65535, 65536, 65537, 131069}) {
    MerkleFrontier frontier(std::span<const Digest32>(leaves).first(n));
    for (size_t m = n; m < n + 6; ++m) {
      ASSERT_EQ(frontier.Root(), ReferenceRoot(std::span(leaves).first(m))) << m;
      frontier.Append(leaves[m]);
    }
  }
}

// A frontier read in place from items, some of which have no leaf: the
// root of the leaves there are, small, on two threads (133,333 leaves),
// and at a power of two (131,072 leaves: the two halves make one tree);
// then appended to.
TEST(MerkleTest, AFrontierOfItemsSkipsThoseWithoutALeaf) {
  const std::vector<Digest32> items = Leaves(200000);
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{196608}, size_t{200000}}) {
    auto leaf_of = [&](size_t i) { return i % 3 != 0 ? &items[i] : nullptr; };
    std::vector<Digest32> leaves;
    for (size_t i = 0; i < n; ++i) {
      if (leaf_of(i) != nullptr) leaves.push_back(items[i]);
    }
    MerkleFrontier frontier = MerkleFrontierOf(n, leaf_of);
    ASSERT_EQ(frontier.size(), leaves.size()) << n;
    ASSERT_EQ(frontier.Root(), ReferenceRoot(leaves)) << n;
    // Its right edge is the tree's: leaves appended carry as they should.
    for (size_t m = 0; m < 3; ++m) {
      leaves.push_back(items[m]);
      frontier.Append(items[m]);
      ASSERT_EQ(frontier.Root(), ReferenceRoot(leaves)) << n << " + " << m + 1;
    }
  }
}

// Join takes a complete tree and one no larger after it; anything else is
// refused, not joined into a tree RFC 6962 does not make.
TEST(MerkleTest, AJoinTakesACompleteTreeAndOneNoLargerAfterIt) {
  const std::vector<Digest32> leaves = Leaves(9);
  const std::span<const Digest32> all(leaves);
  const MerkleFrontier four(all.first(4));
  for (size_t right : {0, 1, 3, 4}) {
    Result<MerkleFrontier> joined =
        MerkleFrontier::Join(four, MerkleFrontier(all.subspan(4, right)));
    ASSERT_TRUE(joined.ok()) << right;
    EXPECT_EQ(joined->size(), 4 + right);
    EXPECT_EQ(joined->Root(), ReferenceRoot(all.first(4 + right))) << right;
  }
  const MerkleFrontier three(all.first(3));
  const MerkleFrontier five(all.first(5));
  for (const auto& [left, right] : {std::pair(&three, &three), std::pair(&four, &five),
                                    std::pair(&five, &three)}) {
    Result<MerkleFrontier> joined = MerkleFrontier::Join(*left, *right);
    ASSERT_FALSE(joined.ok());
    EXPECT_EQ(joined.error().code(), ErrorCode::kInvalidArgument);
  }
  Result<MerkleFrontier> empty = MerkleFrontier::Join(MerkleFrontier(), MerkleFrontier());
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code(), ErrorCode::kInvalidArgument);
}

TEST(MerkleTest, ProofsMatchTheRecursiveDefinitionAndVerify) {
  const std::vector<Digest32> leaves = Leaves(70);
  for (size_t n = 1; n <= leaves.size(); ++n) {
    const std::span<const Digest32> tree = std::span(leaves).first(n);
    const Digest32 root = ReferenceRoot(tree);
    for (size_t m = 0; m < n; ++m) {
      const std::vector<Digest32> proof = MerkleInclusionProof(tree, m);
      ASSERT_EQ(proof, ReferencePath(m, tree)) << m << " of " << n;
      ASSERT_TRUE(VerifyMerkleInclusion(tree[m], m, n, proof, root))
          << m << " of " << n;
    }
  }
}

TEST(MerkleTest, ChangedProofsDoNotVerify) {
  const std::vector<Digest32> leaves = Leaves(70);
  const Digest32 other = MerkleLeafHash(FromHex("ff"));
  for (size_t n = 1; n <= leaves.size(); ++n) {
    const std::span<const Digest32> tree = std::span(leaves).first(n);
    const Digest32 root = MerkleRoot(tree);
    for (size_t m = 0; m < n; ++m) {
      const std::vector<Digest32> proof = MerkleInclusionProof(tree, m);
      const std::string where = std::to_string(m) + " of " + std::to_string(n);

      for (size_t i = 0; i < proof.size(); ++i) {
        for (size_t bit : {0, 100, 255}) {
          std::vector<Digest32> changed = proof;
          changed[i][bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
          ASSERT_FALSE(VerifyMerkleInclusion(tree[m], m, n, changed, root))
              << where << ", element " << i << ", bit " << bit;
        }
      }
      Digest32 changed_leaf = tree[m];
      changed_leaf[31] ^= 1;
      ASSERT_FALSE(VerifyMerkleInclusion(changed_leaf, m, n, proof, root))
          << where;
      Digest32 changed_root = root;
      changed_root[0] ^= 0x80;
      ASSERT_FALSE(VerifyMerkleInclusion(tree[m], m, n, proof, changed_root))
          << where;

      if (m > 0) {
        ASSERT_FALSE(VerifyMerkleInclusion(tree[m], m - 1, n, proof, root))
            << where;
      }
      if (m + 1 < n) {
        ASSERT_FALSE(VerifyMerkleInclusion(tree[m], m + 1, n, proof, root))
            << where;
      }
      ASSERT_FALSE(VerifyMerkleInclusion(tree[m], n, n, proof, root)) << where;
      ASSERT_FALSE(VerifyMerkleInclusion(tree[m], m, m, proof, root)) << where;

      // A tree size whose audit path for m has another length. (Sizes with
      // paths of the same length can pass: the verifier sees only sizes and
      // hashes, which is why a signed tree head binds the root to its size.)
      for (size_t size = m + 1; size <= 2 * n + 1; ++size) {
        if (ReferencePathLength(m, size) == proof.size()) continue;
        ASSERT_FALSE(VerifyMerkleInclusion(tree[m], m, size, proof, root))
            << where << ", claimed size " << size;
      }

      std::vector<Digest32> longer = proof;
      longer.push_back(other);
      ASSERT_FALSE(VerifyMerkleInclusion(tree[m], m, n, longer, root)) << where;
      longer = proof;
      longer.insert(longer.begin(), other);
      ASSERT_FALSE(VerifyMerkleInclusion(tree[m], m, n, longer, root)) << where;
      if (!proof.empty()) {
        const std::vector<Digest32> shorter(proof.begin(), proof.end() - 1);
        ASSERT_FALSE(VerifyMerkleInclusion(tree[m], m, n, shorter, root))
            << where;
        const std::vector<Digest32> no_first(proof.begin() + 1, proof.end());
        ASSERT_FALSE(VerifyMerkleInclusion(tree[m], m, n, no_first, root))
            << where;
      }
    }
  }
}

TEST(MerkleTest, OutOfRangeIndexHasNoProof) {
  const std::vector<Digest32> leaves = Leaves(5);
  EXPECT_TRUE(MerkleInclusionProof(leaves, 5).empty());
  EXPECT_TRUE(MerkleInclusionProof({}, 0).empty());
  EXPECT_FALSE(VerifyMerkleInclusion(leaves[0], 0, 0, {}, MerkleRoot({})));
}

}  // namespace
}  // namespace bantay::matcher
