#include "bantay/matcher/store_index.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "bantay/matcher/merkle.h"

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

Result<uint64_t> LoadIndexFromStore(Store& store, HashIndex* index,
                                    VerifiedStoreState* verified) {
  std::shared_ptr<const IndexSnapshot> snap = index->Snapshot();
  const bool empty = snap->size(SignalType::kPdq) + snap->size(SignalType::kMd5) +
                         snap->size(SignalType::kSha256) ==
                     0;
  if (verified != nullptr && (!empty || verified->version_ != 0 || verified->hashed_ != 0 ||
                              !verified->ids_.empty() || !verified->list_names_.empty())) {
    return Error(ErrorCode::kInvalidArgument,
                 "a verified load needs an empty index and a new VerifiedStoreState");
  }
  if (empty) {
    // The rows go straight into the index's layout while the store is read
    // (on two threads for a large store): no IndexEntry per row, no copy.
    std::unique_ptr<IndexLoader> loader;
    std::vector<uint64_t> disabled;
    std::vector<ListInfo> lists;
    uint64_t version = 0;
    // With `verified`: each part's next slot and first problem, and the
    // lists by name (built before the rows, then only read).
    std::array<size_t, 2> next{};
    std::array<Status, 2> problem;
    std::unordered_map<std::string_view, uint32_t> list_index;
    Status s = store.ReadIndexRows(
        [&](size_t part0, size_t part1) {
          loader = std::make_unique<IndexLoader>(part0, part1);
          if (verified == nullptr) return;
          for (const ListInfo& l : lists) verified->ListIndex(l.name);
          for (size_t i = 0; i < verified->list_names_.size(); ++i) {
            list_index.emplace(verified->list_names_[i], static_cast<uint32_t>(i));
          }
          verified->ids_.resize(part0 + part1);
          verified->leaves_.resize(part0 + part1);
          verified->tags_.resize(part0 + part1);
          next = {0, part0};
        },
        [&](int part, const IndexRow& row) {
          loader->Add(part, row.id, row.list, row.type, *row.value, row.category,
                      row.reference);
          if (verified == nullptr) return;
          Status& bad = problem[static_cast<size_t>(part)];
          size_t& i = next[static_cast<size_t>(part)];
          if (!bad.ok() || i >= verified->ids_.size()) return;
          const auto list = list_index.find(row.list);
          if (list == list_index.end()) {
            bad = Error(ErrorCode::kCorruptData, "entry " + std::to_string(row.id) +
                                                     " is in a list the store does not hold");
            return;
          }
          if (EntryLeafHash(row.id, row.type, *row.value, *row.salt, row.list, row.category,
                            row.reference) != *row.leaf) {
            bad = Error(ErrorCode::kCorruptData,
                        "entry " + std::to_string(row.id) +
                            ": its fields do not match its leaf hash (modified)");
            return;
          }
          verified->ids_[i] = row.id;
          verified->leaves_[i] = *row.leaf;
          verified->tags_[i] = list->second << 1 | (row.active ? 0u : 1u);
          ++i;
        },
        &disabled, &version, &lists);
    if (!s.ok()) return s.error();
    if (verified != nullptr) {
      for (const Status& p : problem) {
        if (!p.ok()) return p.error();
      }
      for (const ListInfo& l : lists) {
        verified->list_state_[verified->ListIndex(l.name)] = l.enabled ? 1 : 0;
      }
      Result<VersionRecord> record = store.Root(version);
      if (!record.ok()) {
        if (record.error().code() != ErrorCode::kNotFound) return record.error();
        return Error(ErrorCode::kCorruptData,
                     "the store is at version " + std::to_string(version) +
                         ", which has no signed record");
      }
      s = verified->Adopt(*record);
      if (!s.ok()) return s.error();
    }
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

// --- VerifiedStoreState ------------------------------------------------------

VerifiedStoreState::VerifiedStoreState(const std::array<uint8_t, 16>& store_id,
                                       const PublicKey& key)
    : store_id_(store_id), key_(key) {}

uint32_t VerifiedStoreState::ListIndex(std::string_view name) {
  for (size_t i = 0; i < list_names_.size(); ++i) {
    if (list_names_[i] == name) return static_cast<uint32_t>(i);
  }
  list_names_.emplace_back(name);
  list_state_.push_back(2);  // until the store's lists say otherwise
  return static_cast<uint32_t>(list_names_.size() - 1);
}

Status VerifiedStoreState::HashEntries() {
  for (size_t i = hashed_; i < ids_.size(); ++i) {
    const uint32_t tag = tags_[i];
    if (list_state_[tag >> 1] == 2) {
      return Error(ErrorCode::kCorruptData, "entry " + std::to_string(ids_[i]) + " is in list " +
                                                list_names_[tag >> 1] +
                                                ", which the store does not hold");
    }
    entries_digest_.AddEntry(ids_[i], leaves_[i], (tag & 1) == 0, list_names_[tag >> 1]);
  }
  // The active leaves: the entry's status active, its list enabled.
  auto active = [&](size_t i) -> const Digest32* {
    const uint32_t tag = tags_[i];
    return (tag & 1) == 0 && list_state_[tag >> 1] == 1 ? &leaves_[i] : nullptr;
  };
  // The whole tree at once is hashed as MerkleRoot hashes it (on two
  // threads when large), read in place; a few appended leaves one by one.
  if (hashed_ == 0) {
    active_ = MerkleFrontierOf(ids_.size(), active);
  } else {
    Sha256Hasher hasher;
    for (size_t i = hashed_; i < ids_.size(); ++i) {
      if (const Digest32* leaf = active(i)) active_.Append(*leaf, hasher);
    }
  }
  hashed_ = ids_.size();
  return {};
}

std::vector<ListInfo> VerifiedStoreState::Lists() const {
  std::vector<std::array<uint64_t, 2>> counts(list_names_.size());
  for (const uint32_t tag : tags_) ++counts[tag >> 1][tag & 1];
  std::vector<ListInfo> lists;
  for (size_t i = 0; i < list_names_.size(); ++i) {
    if (list_state_[i] == 2) continue;
    ListInfo list;
    list.name = list_names_[i];
    list.enabled = list_state_[i] == 1;
    list.active = counts[i][0];
    list.disabled = counts[i][1];
    lists.push_back(std::move(list));
  }
  std::sort(lists.begin(), lists.end(),
            [](const ListInfo& a, const ListInfo& b) { return a.name < b.name; });
  return lists;
}

Result<Digest32> VerifiedStoreState::StateDigest() const {
  StateDigester digester = entries_digest_;  // hashed_ == ids_.size()
  std::vector<std::pair<std::string, bool>> lists;
  for (size_t i = 0; i < list_names_.size(); ++i) {
    if (list_state_[i] != 2) lists.emplace_back(list_names_[i], list_state_[i] == 1);
  }
  return digester.Finish(std::move(lists));
}

Status VerifiedStoreState::Adopt(const VersionRecord& record) {
  const std::string name = "version " + std::to_string(record.version);
  if (!VerifySignature(key_, VersionSigningMessage(store_id_, record), record.signature)) {
    return Error(ErrorCode::kCorruptData,
                 name + ": the signature does not verify against the trusted key");
  }
  Status hashed = HashEntries();
  if (!hashed.ok()) return hashed;
  if (active_.size() != record.active_count || active_.Root() != record.root) {
    return Error(ErrorCode::kCorruptData,
                 "the entries do not give the signed root of " + name +
                     " (entries changed outside the store)");
  }
  // Versions signed before schema 2 have no state digest: their disabled
  // entries and lists are the database's word (see server/README.md).
  if (record.state_digest) {
    Result<Digest32> state = StateDigest();
    if (!state.ok()) return Error(ErrorCode::kCorruptData, state.error().message());
    if (*state != *record.state_digest) {
      return Error(ErrorCode::kCorruptData,
                   "the entries' and lists' states do not give the signed state of " + name +
                       " (an entry's status, an entry or a list changed outside the store)");
    }
  }
  version_ = record.version;
  record_ = record;
  return {};
}

Result<VerifiedStoreState> VerifiedStoreState::Next(const ChangeSet& changes,
                                                    const Store* writer) const {
  if (changes.from_version != version_) {
    return Error(ErrorCode::kInvalidArgument,
                 "the changes are from version " + std::to_string(changes.from_version) +
                     " but the verified state is at version " + std::to_string(version_));
  }
  const std::string range = "the changes from version " + std::to_string(changes.from_version) +
                            " to " + std::to_string(changes.to_version);
  auto corrupt = [&](const std::string& what) {
    return Error(ErrorCode::kCorruptData, range + " do not verify: " + what);
  };
  if (changes.to_version < changes.from_version) {
    return corrupt("the store went back to an older version (an older copy of the database?)");
  }
  // The versions and their audit records: each signed, each chained on.
  const uint64_t count = changes.to_version - changes.from_version;
  if (changes.versions.size() != count || changes.audit.size() != count) {
    return corrupt("the store holds " + std::to_string(changes.versions.size()) +
                   " signed versions and " + std::to_string(changes.audit.size()) +
                   " audit records for them");
  }
  Digest32 prev = record_.audit_digest;
  bool state_signed = record_.state_digest.has_value();
  for (size_t i = 0; i < count; ++i) {
    const VersionRecord& v = changes.versions[i];
    const AuditRecord& a = changes.audit[i];
    const uint64_t expected = changes.from_version + 1 + i;
    const std::string name = std::to_string(expected);
    if (v.version != expected || a.seq != expected) {
      return corrupt("version or audit record " + name + " is missing");
    }
    if (!VerifySignature(key_, VersionSigningMessage(store_id_, v), v.signature)) {
      return corrupt("the signature of version " + name +
                     " does not verify against the trusted key");
    }
    if (AuditRecordDigest(a) != a.digest) {
      return corrupt("audit record " + name + " was modified (its digest does not match)");
    }
    if (a.prev_digest != prev) {
      return corrupt("audit record " + name + " does not link to the record before it");
    }
    if (v.audit_digest != a.digest) {
      return corrupt("version " + name + " is not bound to audit record " + name);
    }
    // No store goes back to signing the root alone (an older Bantay writing
    // to an upgraded store would, and its versions sign no disabled state).
    if (state_signed && !v.state_digest) {
      return corrupt("version " + name +
                     " is signed without a state digest, after a version signed with one");
    }
    state_signed = v.state_digest.has_value();
    prev = a.digest;
  }

  // The upserts' fields give their stored leaves; ids ascend.
  if (changes.upsert_leaves.size() != changes.upserts.size()) {
    return Error(ErrorCode::kInvalidArgument, "a change set without the leaf hash of each upsert");
  }
  for (size_t i = 0; i < changes.upserts.size(); ++i) {
    const StoredEntry& e = changes.upserts[i];
    if (i > 0 && e.id <= changes.upserts[i - 1].id) {
      return Error(ErrorCode::kInvalidArgument, "a change set whose upserts are not in id order");
    }
    if (EntryLeafHash(e) != changes.upsert_leaves[i]) {
      return corrupt("entry " + std::to_string(e.id) +
                     ": its fields do not match its leaf hash (modified)");
    }
  }
  std::vector<uint64_t> removed = changes.removed;
  std::sort(removed.begin(), removed.end());
  for (const StoredEntry& e : changes.upserts) {
    // Ids are never given out twice, so a removed entry cannot be back.
    if (std::binary_search(removed.begin(), removed.end(), e.id)) {
      return corrupt("entry " + std::to_string(e.id) + " was removed but is in the store");
    }
  }

  // The entries after the changes, as ApplyChangeSet makes them, merged in
  // id order.
  VerifiedStoreState next(store_id_, key_);
  next.list_names_ = list_names_;
  next.list_state_.assign(list_state_.size(), 2);
  for (const auto& [list, enabled] : changes.lists) {
    next.list_state_[next.ListIndex(list)] = enabled ? 1 : 0;
  }
  const size_t capacity = ids_.size() + changes.upserts.size();
  next.ids_.reserve(capacity);
  next.leaves_.reserve(capacity);
  next.tags_.reserve(capacity);
  auto add_upsert = [&](size_t u) {
    const StoredEntry& e = changes.upserts[u];
    next.ids_.push_back(e.id);
    next.leaves_.push_back(changes.upsert_leaves[u]);
    next.tags_.push_back(next.ListIndex(e.list) << 1 |
                         (e.status == EntryStatus::kActive ? 0u : 1u));
  };
  size_t u = 0;
  for (size_t i = 0; i < ids_.size(); ++i) {
    const uint64_t id = ids_[i];
    for (; u < changes.upserts.size() && changes.upserts[u].id < id; ++u) add_upsert(u);
    if (u < changes.upserts.size() && changes.upserts[u].id == id) {
      // Only an entry's state changes: its fields (and leaf) stay.
      if (changes.upsert_leaves[u] != leaves_[i]) {
        return corrupt("entry " + std::to_string(id) + " is not the entry it was");
      }
      add_upsert(u++);
      continue;
    }
    if (!std::binary_search(removed.begin(), removed.end(), id)) {
      next.ids_.push_back(id);
      next.leaves_.push_back(leaves_[i]);
      next.tags_.push_back(tags_[i]);
    }
  }
  for (; u < changes.upserts.size(); ++u) add_upsert(u);
  // Only entries added (or changed: an entry added and disabled since), all
  // after every one held, and no list held changing state (any entry held
  // may be in it): the hashes of the entries held go on.
  bool appended = removed.empty() && hashed_ == ids_.size() &&
                  (changes.upserts.empty() || ids_.empty() ||
                   changes.upserts.front().id > ids_.back());
  for (size_t i = 0; appended && i < list_state_.size(); ++i) {
    appended = next.list_state_[i] == list_state_[i];
  }
  if (appended) {
    next.entries_digest_ = entries_digest_;
    next.active_ = active_;
    next.hashed_ = hashed_;
    next.appended_ = true;
  }
  const VersionRecord& target = count > 0 ? changes.versions.back() : record_;
  if (!appended && writer != nullptr && count > 0) {
    const Store::StateView view{next.ids_, next.leaves_, next.tags_, next.list_names_,
                                next.list_state_};
    if (writer->SignedThis(target, view, &next.entries_digest_, &next.active_)) {
      next.hashed_ = next.ids_.size();
      next.from_writer_ = true;
    }
  }
  Status adopted = next.Adopt(target);
  if (!adopted.ok()) return corrupt(adopted.error().message());
  return next;
}

}  // namespace bantay::matcher
