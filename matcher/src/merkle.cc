#include "bantay/matcher/merkle.h"

#include <algorithm>
#include <array>
#include <exception>
#include <string>
#include <system_error>
#include <thread>

namespace bantay::matcher {
namespace {

constexpr uint8_t kLeafPrefix = 0x00;
constexpr uint8_t kNodePrefix = 0x01;

// The node in one buffer, hashed with one update (each update has a cost
// of its own, of the order of the node's hashing).
Digest32 NodeHash(Sha256Hasher& hasher, const Digest32& left,
                  const Digest32& right) {
  std::array<uint8_t, 1 + 2 * sizeof(Digest32)> node;
  node[0] = kNodePrefix;
  std::copy(left.begin(), left.end(), node.begin() + 1);
  std::copy(right.begin(), right.end(), node.begin() + 1 + left.size());
  return hasher.Update(node).Finish();
}

// The tree hash, built level by level from the leaves up. A level's last
// node, when it has no sibling, moves up unchanged. This gives RFC 6962's
// tree: its split at the largest power of two k < n makes the left subtree
// complete, so every level of it pairs evenly, and the odd node at the end of
// a level is always the right subtree's, which RFC 6962 also hashes only
// once it meets its left sibling.
//
// With `proof`, also collects the audit path of leaf `index`: at each level
// the sibling of the node on the leaf's way up, if it has one. These are
// exactly the nodes RFC 6962's PATH(m, D[n]) lists, in the same order (the
// deepest first); a level where the node moves up unchanged adds nothing,
// as in the RFC.
Digest32 Reduce(std::span<const Digest32> leaves, size_t index,
                std::vector<Digest32>* proof) {
  Sha256Hasher hasher;
  if (leaves.empty()) return hasher.Finish();
  if (leaves.size() == 1) return leaves[0];

  // The first level is read from the input and each later one overwrites
  // the front of this buffer, so memory stays at half the input.
  std::vector<Digest32> level((leaves.size() + 1) / 2);
  auto next_level = [&](std::span<const Digest32> nodes) {
    if (proof != nullptr && (index ^ 1) < nodes.size()) {
      proof->push_back(nodes[index ^ 1]);
    }
    const size_t pairs = nodes.size() / 2;
    for (size_t i = 0; i < pairs; ++i) {
      level[i] = NodeHash(hasher, nodes[2 * i], nodes[2 * i + 1]);
    }
    if (nodes.size() % 2 == 1) level[pairs] = nodes.back();
    index /= 2;
    return (nodes.size() + 1) / 2;
  };

  size_t size = next_level(leaves);
  while (size > 1) {
    size = next_level(std::span<const Digest32>(level).first(size));
  }
  return level[0];
}

}  // namespace

namespace internal {

uint64_t LargestPowerOfTwoBelow(uint64_t n) {
  uint64_t split = 1;
  while (split * 2 < n) split *= 2;
  return split;
}

bool RunBeside(const std::function<void()>& beside, const std::function<void()>& here) {
  std::exception_ptr failed;  // beside's (memory that ran out), thrown on here
  // Joined when it goes out of scope, whatever happens on this thread.
  std::jthread worker;
  try {
    worker = std::jthread([&] {
      try {
        beside();
      } catch (...) {
        failed = std::current_exception();
      }
    });
  } catch (const std::system_error&) {
    return false;  // no thread to be had
  }
  here();
  worker.join();
  if (failed) std::rethrow_exception(failed);
  return true;
}

}  // namespace internal

Digest32 MerkleLeafHash(std::span<const uint8_t> leaf) {
  Sha256Hasher hasher;
  return hasher.Update(std::span(&kLeafPrefix, 1)).Update(leaf).Finish();
}

Digest32 MerkleNodeHash(const Digest32& left, const Digest32& right) {
  Sha256Hasher hasher;
  return NodeHash(hasher, left, right);
}

Digest32 MerkleRoot(std::span<const Digest32> leaf_hashes) {
  // A large tree's two subtrees are hashed on two threads (a store's root
  // over a million entries is a million node hashes, in every change the
  // writer signs and every change a follower verifies). RFC 6962 splits at
  // the largest power of two below the size, so the halves are near equal.
  const size_t n = leaf_hashes.size();
  if (n < internal::kMerkleTwoThreadsFrom) return Reduce(leaf_hashes, 0, nullptr);
  const uint64_t split = internal::LargestPowerOfTwoBelow(n);
  Digest32 left{};
  Digest32 right{};
  if (!internal::RunBeside([&] { left = Reduce(leaf_hashes.first(split), 0, nullptr); },
                           [&] { right = Reduce(leaf_hashes.subspan(split), 0, nullptr); })) {
    return Reduce(leaf_hashes, 0, nullptr);  // no thread to be had
  }
  return MerkleNodeHash(left, right);
}

MerkleFrontier::MerkleFrontier(std::span<const Digest32> leaf_hashes)
    : MerkleFrontier(MerkleFrontierOf(leaf_hashes.size(),
                                      [&](size_t i) { return &leaf_hashes[i]; })) {}

void MerkleFrontier::Append(const Digest32& leaf_hash) {
  Sha256Hasher hasher;
  Append(leaf_hash, hasher);
}

void MerkleFrontier::Append(const Digest32& leaf_hash, Sha256Hasher& hasher) {
  Digest32 joined = leaf_hash;
  for (uint64_t carry = size_; (carry & 1) != 0; carry >>= 1) {
    joined = NodeHash(hasher, subtrees_.back(), joined);
    subtrees_.pop_back();
  }
  subtrees_.push_back(joined);
  ++size_;
}

Result<MerkleFrontier> MerkleFrontier::Join(const MerkleFrontier& left,
                                            const MerkleFrontier& right) {
  const uint64_t n = left.size_;
  if (n == 0 || (n & (n - 1)) != 0 || right.size_ > n) {
    return Error(ErrorCode::kInvalidArgument,
                 "a frontier of " + std::to_string(n) + " leaves cannot take one of " +
                     std::to_string(right.size_) + " after it (the left one must be complete, "
                     "and not the smaller)");
  }
  MerkleFrontier joined;
  joined.size_ = n + right.size_;
  if (right.size_ == n) {
    // Two complete trees of one size: one complete tree.
    joined.subtrees_ = {MerkleNodeHash(left.subtrees_[0], right.subtrees_[0])};
  } else {
    joined.subtrees_.reserve(1 + right.subtrees_.size());
    joined.subtrees_.push_back(left.subtrees_[0]);
    joined.subtrees_.insert(joined.subtrees_.end(), right.subtrees_.begin(),
                            right.subtrees_.end());
  }
  return joined;
}

Digest32 MerkleFrontier::Root() const {
  if (subtrees_.empty()) return Sha256Hasher().Finish();
  Sha256Hasher hasher;
  Digest32 root = subtrees_.back();
  for (size_t i = subtrees_.size() - 1; i-- > 0;) root = NodeHash(hasher, subtrees_[i], root);
  return root;
}

std::vector<Digest32> MerkleInclusionProof(
    std::span<const Digest32> leaf_hashes, size_t index) {
  std::vector<Digest32> proof;
  if (index >= leaf_hashes.size()) return proof;
  Reduce(leaf_hashes, index, &proof);
  return proof;
}

// The verification algorithm of RFC 9162 section 2.1.3.2, which checks
// RFC 6962 audit paths. fn is the node's index in its level and sn the last
// index of that level; where fn == sn and fn is even, the node has no
// sibling and moves up unchanged, so the walk skips those levels.
bool VerifyMerkleInclusion(const Digest32& leaf_hash, uint64_t index,
                           uint64_t tree_size, std::span<const Digest32> proof,
                           const Digest32& root) {
  if (index >= tree_size) return false;
  uint64_t fn = index;
  uint64_t sn = tree_size - 1;
  Digest32 r = leaf_hash;
  Sha256Hasher hasher;
  for (const Digest32& p : proof) {
    if (sn == 0) return false;
    if ((fn & 1) == 1 || fn == sn) {
      r = NodeHash(hasher, p, r);
      while ((fn & 1) == 0 && fn != 0) {
        fn >>= 1;
        sn >>= 1;
      }
    } else {
      r = NodeHash(hasher, r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && r == root;
}

}  // namespace bantay::matcher
