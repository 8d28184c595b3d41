// Signed and encrypted snapshots of one store version: a file a replica
// starts from, or a lab scans against offline.
//
// File layout (integers big-endian):
//   "BANTAYSNAP2\n"                       magic (12 bytes)
//   u32 header length, header             store id, version, the version's
//                                         signed record (root, active count,
//                                         audit digest, u8 1 and the state
//                                         digest or u8 0 for a version
//                                         without one, signature), the
//                                         signer's public key, the data key
//                                         id, the payload size
//   nonce (12 bytes), payload             AES-256-GCM ciphertext || tag of the
//                                         lists and every entry (any status),
//                                         with the header as additional data
//   signature (64 bytes)                  Ed25519 over "BANTAY-SNAPSHOT-1" ||
//                                         header || SHA-256(nonce || payload)
// Reading checks, in order: the format, the snapshot signature against the
// trusted public key, the authentication tag, the version's own signature,
// and that the active entries give the signed Merkle root and all of them
// and the lists the signed state digest. Files of format 1
// ("BANTAYSNAP1\n": no state digest byte) are still read. Any failure is
// an error naming what failed; nothing of an unverified file is returned.
//
// Thread safety: free functions without shared state.
#ifndef BANTAY_MATCHER_SNAPSHOT_H_
#define BANTAY_MATCHER_SNAPSHOT_H_

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "bantay/matcher/crypto.h"
#include "bantay/matcher/store.h"
#include "bantay/models/status.h"

namespace bantay::matcher {

inline constexpr std::string_view kSnapshotMagic = "BANTAYSNAP2\n";    // written
inline constexpr std::string_view kSnapshotMagicV1 = "BANTAYSNAP1\n";  // still read

struct SnapshotContents {
  std::array<uint8_t, 16> store_id{};
  VersionRecord version;
  std::vector<ListInfo> lists;  // active/disabled counts filled in
  std::vector<StoredEntry> entries;  // in id order
};

// Writes the store's current version to `path` (a new file, mode 0600;
// kInvalidArgument if it exists; written as `path`.partial-XXXXXX and
// renamed into place when complete, so that a process killed meanwhile
// leaves no `path`), encrypted under `key` and signed with
// the store's signing key (kPermissionDenied without one). Returns the
// version written.
Result<uint64_t> ExportSnapshot(Store& store, const DataKey& key, const SigningKey& signer,
                                const std::string& path);

// Reads and verifies a snapshot. kNotFound / kIo for the file;
// kUnsupportedFormat when it is not a snapshot; kCorruptData when it is
// truncated, its signature or tag does not verify, or its contents do not
// give the signed root; kPermissionDenied when it is encrypted under another
// key or signed by another key than `trusted_key`.
Result<SnapshotContents> ReadSnapshot(const std::string& path, const DataKey& key,
                                      const PublicKey& trusted_key);

// Whether a file starts with the snapshot magic (false when unreadable).
bool IsSnapshotFile(const std::string& path);

}  // namespace bantay::matcher

#endif  // BANTAY_MATCHER_SNAPSHOT_H_
