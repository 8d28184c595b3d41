// Merkle trees of the transparency log, as defined by RFC 6962 section 2.1
// (Certificate Transparency): SHA-256, leaf hash = SHA-256(0x00 || leaf),
// node hash = SHA-256(0x01 || left || right), a tree of n > 1 leaves split at
// the largest power of two smaller than n, the empty tree's hash is
// SHA-256 of the empty string. Inclusion proofs are RFC 6962's audit paths
// (section 2.1.1), so that any RFC 6962 verifier can check them.
//
// Thread safety: free functions without shared state; a MerkleFrontier is
// a value (one thread at a time).
#ifndef BANTAY_MATCHER_MERKLE_H_
#define BANTAY_MATCHER_MERKLE_H_

#include <cstdint>
#include <span>
#include <vector>

#include "bantay/matcher/crypto.h"

namespace bantay::matcher {

Digest32 MerkleLeafHash(std::span<const uint8_t> leaf);
Digest32 MerkleNodeHash(const Digest32& left, const Digest32& right);

// The tree hash of leaves given by their leaf hashes. Linear time, and
// memory of about half the input.
Digest32 MerkleRoot(std::span<const Digest32> leaf_hashes);

// The right edge of a tree, so that leaves can be appended and the root
// found again in O(log n) node hashes rather than n: the hashes of the
// complete subtrees its leaves split into, one for each bit set in the leaf
// count, the largest (leftmost) first. Appending a leaf is a carry: the
// subtrees of equal size at the end join. The root folds them right to left
// (RFC 6962 splits at the largest power of two, so the first subtree is the
// left child of the root and the rest is its right child, and so on down).
class MerkleFrontier {
 public:
  MerkleFrontier() = default;
  // The frontier of these leaves: the same node hashes as MerkleRoot (and,
  // for a large tree, its two threads).
  explicit MerkleFrontier(std::span<const Digest32> leaf_hashes);

  void Append(const Digest32& leaf_hash);
  uint64_t size() const { return size_; }
  // The tree hash of the leaves so far (MerkleRoot of them).
  Digest32 Root() const;

 private:
  uint64_t size_ = 0;
  std::vector<Digest32> subtrees_;
};

// The audit path of leaf `index` (< leaf_hashes.size()), from the leaf's
// sibling up to the root's child.
std::vector<Digest32> MerkleInclusionProof(std::span<const Digest32> leaf_hashes,
                                           size_t index);

// Whether `proof` shows that `leaf_hash` is leaf `index` of a tree of
// `tree_size` leaves with hash `root`.
bool VerifyMerkleInclusion(const Digest32& leaf_hash, uint64_t index,
                           uint64_t tree_size, std::span<const Digest32> proof,
                           const Digest32& root);

}  // namespace bantay::matcher

#endif  // BANTAY_MATCHER_MERKLE_H_
