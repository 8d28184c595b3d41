#include "bantay/matcher/store_index.h"

#include <algorithm>
#include <memory>

namespace bantay::matcher {

IndexEntry ToIndexEntry(const StoredEntry& entry) {
  IndexEntry e;
  e.id = entry.id;
  e.list = entry.list;
  e.type = entry.type;
  e.value = entry.value;
  e.category = entry.category;
  e.reference = entry.reference;
  return e;
}

namespace {

// Fills an empty index: disabled states first, so that no snapshot shows
// them enabled, then the entries, then the version label.
Status Install(std::vector<IndexEntry> entries, const std::vector<uint64_t>& disabled,
               const std::vector<ListInfo>& lists, uint64_t store_version, HashIndex* index) {
  for (const ListInfo& l : lists) {
    if (!l.enabled) index->SetListEnabled(l.name, false);
  }
  if (!disabled.empty()) index->SetEntriesEnabled(disabled, false);
  if (!entries.empty()) {
    Status s = index->Add(std::move(entries));
    if (!s.ok()) return s;
  }
  index->SetStoreVersion(store_version);
  return {};
}

}  // namespace

Status LoadIndexFromEntries(std::vector<StoredEntry> entries, const std::vector<ListInfo>& lists,
                            uint64_t store_version, HashIndex* index) {
  std::vector<IndexEntry> batch;
  std::vector<uint64_t> disabled;
  batch.reserve(entries.size());
  for (StoredEntry& e : entries) {
    if (e.status == EntryStatus::kDisabled) disabled.push_back(e.id);
    batch.push_back(ToIndexEntry(e));
    Wipe(e.value);
  }
  entries.clear();
  entries.shrink_to_fit();
  return Install(std::move(batch), disabled, lists, store_version, index);
}

Result<uint64_t> LoadIndexFromStore(Store& store, HashIndex* index) {
  std::shared_ptr<const IndexSnapshot> snap = index->Snapshot();
  if (snap->size(SignalType::kPdq) + snap->size(SignalType::kMd5) +
          snap->size(SignalType::kSha256) ==
      0) {
    // The rows go straight into the index's layout while the store is read
    // (on two threads for a large store): no IndexEntry per row, no copy.
    std::unique_ptr<IndexLoader> loader;
    std::vector<uint64_t> disabled;
    std::vector<ListInfo> lists;
    uint64_t version = 0;
    Status s = store.ReadIndexRows(
        [&](size_t part0, size_t part1) { loader = std::make_unique<IndexLoader>(part0, part1); },
        [&](int part, const IndexRow& row) {
          loader->Add(part, row.id, row.list, row.type, *row.value, row.category,
                      row.reference);
        },
        &disabled, &version, &lists);
    if (!s.ok()) return s.error();
    for (const ListInfo& l : lists) {
      if (!l.enabled) index->SetListEnabled(l.name, false);
    }
    if (!disabled.empty()) index->SetEntriesEnabled(disabled, false);
    if (loader) {
      s = index->AddLoaded(*loader);
      if (!s.ok()) return s.error();
    }
    index->SetStoreVersion(version);
    return version;
  }
  std::vector<IndexEntry> entries;
  std::vector<uint64_t> disabled;
  std::vector<ListInfo> lists;
  uint64_t version = 0;
  Status s = store.ReadIndexEntries(&entries, &disabled, &version, &lists);
  if (!s.ok()) return s.error();
  s = Install(std::move(entries), disabled, lists, version, index);
  if (!s.ok()) return s.error();
  return version;
}

Status ApplyChangeSet(const ChangeSet& changes, HashIndex* index) {
  std::shared_ptr<const IndexSnapshot> snap = index->Snapshot();
  // A change set is a difference from one version: applied to another, it
  // could undo later changes.
  if (changes.from_version != snap->store_version() ||
      changes.to_version < changes.from_version) {
    return Error(ErrorCode::kInvalidArgument,
                 "the changes are from version " + std::to_string(changes.from_version) +
                     " but the index is at version " + std::to_string(snap->store_version()));
  }
  std::vector<uint64_t> remove, disable, enable;
  std::vector<IndexEntry> add;
  for (uint64_t id : changes.removed) {
    if (snap->Contains(id)) remove.push_back(id);
  }
  for (const StoredEntry& e : changes.upserts) {
    const bool active = e.status == EntryStatus::kActive;
    if (!snap->Contains(e.id)) {
      add.push_back(ToIndexEntry(e));
      if (!active) disable.push_back(e.id);
    } else if (active && !snap->EntryEnabled(e.id)) {
      enable.push_back(e.id);
    } else if (!active && snap->EntryEnabled(e.id)) {
      disable.push_back(e.id);
    }
  }
  if (!remove.empty()) {
    Status s = index->Remove(remove);
    if (!s.ok()) return s;
  }
  if (!disable.empty()) index->SetEntriesEnabled(disable, false);
  for (const auto& [list, enabled] : changes.lists) {
    if (!enabled && snap->ListEnabled(list)) index->SetListEnabled(list, false);
  }
  if (!add.empty()) {
    Status s = index->Add(std::move(add));
    if (!s.ok()) return s;
  }
  if (!enable.empty()) index->SetEntriesEnabled(enable, true);
  for (const auto& [list, enabled] : changes.lists) {
    if (enabled && !snap->ListEnabled(list)) index->SetListEnabled(list, true);
  }
  index->SetStoreVersion(changes.to_version);
  return {};
}

}  // namespace bantay::matcher
