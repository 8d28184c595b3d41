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

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "bantay/matcher/crypto.h"

namespace bantay::matcher {

namespace internal {
// From this many leaves, a tree's two halves are hashed on two threads.
inline constexpr size_t kMerkleTwoThreadsFrom = size_t{1} << 16;
// The largest power of two smaller than n (> 1): where RFC 6962 splits.
uint64_t LargestPowerOfTwoBelow(uint64_t n);
// Runs `beside` on a thread of its own and `here` on this one, and waits
// for both; false (nothing run) when no thread could be started. An
// exception of `beside` is thrown here once both are done.
bool RunBeside(const std::function<void()>& beside, const std::function<void()>& here);
}  // namespace internal

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
  // The same with `hasher` (one hasher for many appends spares setting one
  // up for each).
  void Append(const Digest32& leaf_hash, Sha256Hasher& hasher);
  // The frontier of `left`'s leaves followed by `right`'s: `left` a
  // complete tree (its size a power of two) with at least as many leaves
  // as `right`, as RFC 6962 splits a tree. kInvalidArgument otherwise.
  static Result<MerkleFrontier> Join(const MerkleFrontier& left, const MerkleFrontier& right);
  uint64_t size() const { return size_; }
  // The tree hash of the leaves so far (MerkleRoot of them).
  Digest32 Root() const;

 private:
  uint64_t size_ = 0;
  std::vector<Digest32> subtrees_;
};

// Appends to `frontier` the leaves of items [begin, end), one by one on
// this thread: `leaf_of(i)` is item i's leaf hash, or nullptr for an item
// that has none (an entry not in the tree).
template <typename LeafOf>
void AppendLeavesOf(MerkleFrontier* frontier, size_t begin, size_t end, const LeafOf& leaf_of) {
  Sha256Hasher hasher;
  for (size_t i = begin; i < end; ++i) {
    if (const Digest32* leaf = leaf_of(i)) frontier->Append(*leaf, hasher);
  }
}

// The frontier of the leaves of `items` items in order (`leaf_of` as
// above): the same node hashes as MerkleFrontier(leaves), read
// in place, with no copy of the leaves. A large tree's first subtree is
// hashed on a thread of its own, as MerkleRoot does; `leaf_of` is then
// called from two threads at once (on separate items). Each item is read
// twice (counted, then hashed), those before the split once more (to find
// it).
template <typename LeafOf>
MerkleFrontier MerkleFrontierOf(size_t items, const LeafOf& leaf_of) {
  auto hash = [&](size_t begin, size_t end) {
    MerkleFrontier frontier;
    AppendLeavesOf(&frontier, begin, end, leaf_of);
    return frontier;
  };
  size_t leaves = 0;
  for (size_t i = 0; i < items; ++i) leaves += leaf_of(i) != nullptr ? 1 : 0;
  if (leaves < internal::kMerkleTwoThreadsFrom) return hash(0, items);
  // The item after the split-th leaf: the left subtree's items end there.
  const uint64_t split = internal::LargestPowerOfTwoBelow(leaves);
  size_t at = 0;
  for (uint64_t seen = 0; seen < split; ++at) seen += leaf_of(at) != nullptr ? 1 : 0;
  MerkleFrontier left, right;
  if (!internal::RunBeside([&] { left = hash(0, at); }, [&] { right = hash(at, items); })) {
    return hash(0, items);  // no thread to be had
  }
  // Left is complete and not the smaller, unless leaf_of changed its mind.
  if (Result<MerkleFrontier> joined = MerkleFrontier::Join(left, right); joined.ok()) {
    return std::move(*joined);
  }
  return hash(0, items);
}

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
