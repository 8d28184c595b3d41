// Building the in-memory HashIndex from a Store (or a snapshot) and keeping
// it current with the store's change feed.
//
// Thread safety: as HashIndex (one writer at a time; readers unaffected).
#ifndef BANTAY_MATCHER_STORE_INDEX_H_
#define BANTAY_MATCHER_STORE_INDEX_H_

#include <cstdint>
#include <vector>

#include "bantay/matcher/hash_index.h"
#include "bantay/matcher/store.h"
#include "bantay/models/status.h"

namespace bantay::matcher {

IndexEntry ToIndexEntry(const StoredEntry& entry);

// Loads every entry of the store (decrypting it) into an empty index, with
// its disabled entries and lists, and labels it with the store version read
// in the same transaction, which it returns.
Result<uint64_t> LoadIndexFromStore(Store& store, HashIndex* index);

// Loads entries and lists already read (a snapshot) into an empty index.
Status LoadIndexFromEntries(std::vector<StoredEntry> entries, const std::vector<ListInfo>& lists,
                            uint64_t store_version, HashIndex* index);

// Applies a change set (Store::ChangesSince(the index's store version)):
// removals and disablings first, then additions and enablings, so that no
// intermediate snapshot matches something neither version matches; then
// labels the index with changes.to_version. kInvalidArgument (nothing
// applied) when changes.from_version is not the index's store version.
Status ApplyChangeSet(const ChangeSet& changes, HashIndex* index);

}  // namespace bantay::matcher

#endif  // BANTAY_MATCHER_STORE_INDEX_H_
