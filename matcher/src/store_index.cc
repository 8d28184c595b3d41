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
    AppendLeavesOf(&active_, hashed_, ids_.size(), active);
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

namespace {

Error ChangesCorrupt(const ChangeSet& changes, const std::string& what) {
  return Error(ErrorCode::kCorruptData, "the changes from version " +
                                            std::to_string(changes.from_version) + " to " +
                                            std::to_string(changes.to_version) +
                                            " do not verify: " + what);
}

}  // namespace

Result<std::vector<uint64_t>> VerifiedStoreState::CheckChanges(const ChangeSet& changes) const {
  if (changes.from_version != version_) {
    return Error(ErrorCode::kInvalidArgument,
                 "the changes are from version " + std::to_string(changes.from_version) +
                     " but the verified state is at version " + std::to_string(version_));
  }
  auto corrupt = [&](const std::string& what) { return ChangesCorrupt(changes, what); };
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
  return removed;
}


Result<VerifiedStoreState> VerifiedStoreState::Next(const ChangeSet& changes,
                                                    const Store* writer) const {
  VerifiedStoreState next = *this;
  Result<Undo> advanced = next.Advance(changes, writer);
  if (!advanced.ok()) return advanced.error();
  return next;
}

Result<VerifiedStoreState::Undo> VerifiedStoreState::Advance(const ChangeSet& changes,
                                                             const Store* writer) {
  Result<std::vector<uint64_t>> checked = CheckChanges(changes);
  if (!checked.ok()) return checked.error();
  const std::vector<uint64_t>& removed = *checked;
  const std::vector<StoredEntry>& upserts = changes.upserts;
  // Where each upsert goes: an entry held (its index), or after every one.
  // An upsert among the entries held that is not one of them (ids handed
  // out out of order) makes the entries be merged again, as removals do.
  std::vector<size_t> held(upserts.size(), SIZE_MAX);
  bool rebuild = !removed.empty();
  for (size_t u = 0; u < upserts.size(); ++u) {
    const uint64_t id = upserts[u].id;
    if (ids_.empty() || id > ids_.back()) break;  // this one and the rest come after
    const auto at = std::lower_bound(ids_.begin(), ids_.end(), id);
    if (at == ids_.end() || *at != id) {
      rebuild = true;
      continue;
    }
    held[u] = static_cast<size_t>(at - ids_.begin());
    // Only an entry's state changes: its fields (and leaf) stay.
    if (changes.upsert_leaves[u] != leaves_[held[u]]) {
      return ChangesCorrupt(changes, "entry " + std::to_string(id) + " is not the entry it was");
    }
  }

  Undo undo;
  undo.version = version_;
  undo.record = record_;
  undo.entries_digest = entries_digest_;
  undo.active = active_;
  undo.hashed = hashed_;
  undo.appended = appended_;
  undo.from_writer = from_writer_;
  undo.list_names = list_names_;
  undo.list_state = list_state_;
  undo.size = ids_.size();

  // From here on this state changes: put back on any error or exception.
  try {
    std::fill(list_state_.begin(), list_state_.end(), 2);
    for (const auto& [list, enabled] : changes.lists) {
      list_state_[ListIndex(list)] = enabled ? 1 : 0;
    }
    auto tag_of = [&](size_t u) {
      const uint32_t disabled = upserts[u].status == EntryStatus::kActive ? 0u : 1u;
      return ListIndex(upserts[u].list) << 1 | disabled;
    };
    if (rebuild) {
      // The entries after the changes, as ApplyChangeSet makes them, merged
      // in id order; those before kept for Restore.
      undo.rebuilt = true;
      undo.ids = std::move(ids_);
      undo.leaves = std::move(leaves_);
      undo.tags_before_rebuild = std::move(tags_);
      const size_t capacity = undo.ids.size() + upserts.size();
      ids_.clear();
      leaves_.clear();
      tags_.clear();
      ids_.reserve(capacity);
      leaves_.reserve(capacity);
      tags_.reserve(capacity);
      size_t u = 0;
      auto add_upsert = [&] {
        ids_.push_back(upserts[u].id);
        leaves_.push_back(changes.upsert_leaves[u]);
        tags_.push_back(tag_of(u));
        ++u;
      };
      for (size_t i = 0; i < undo.ids.size(); ++i) {
        const uint64_t id = undo.ids[i];
        while (u < upserts.size() && upserts[u].id < id) add_upsert();
        if (u < upserts.size() && upserts[u].id == id) {
          add_upsert();  // checked above: the same leaf
          continue;
        }
        if (!std::binary_search(removed.begin(), removed.end(), id)) {
          ids_.push_back(id);
          leaves_.push_back(undo.leaves[i]);
          tags_.push_back(undo.tags_before_rebuild[i]);
        }
      }
      while (u < upserts.size()) add_upsert();
    } else {
      for (size_t u = 0; u < upserts.size(); ++u) {
        if (held[u] != SIZE_MAX) {
          const uint32_t tag = tag_of(u);
          if (tags_[held[u]] != tag) {
            undo.changed.emplace_back(held[u], tags_[held[u]]);
            tags_[held[u]] = tag;
          }
          continue;
        }
        // Geometric growth, as push_back's (an exact reserve would copy
        // every entry on each change that adds one).
        ids_.push_back(upserts[u].id);
        leaves_.push_back(changes.upsert_leaves[u]);
        tags_.push_back(tag_of(u));
      }
    }

    // Only entries added after every one held (or changed: an entry added
    // and disabled since), and no list held changing state (any entry held
    // may be in it): the hashes of the entries held go on.
    bool appended = !rebuild && hashed_ == undo.size &&
                    std::all_of(held.begin(), held.end(), [](size_t h) { return h == SIZE_MAX; });
    for (size_t i = 0; appended && i < undo.list_state.size(); ++i) {
      appended = list_state_[i] == undo.list_state[i];
    }
    appended_ = appended;
    from_writer_ = false;
    if (!appended) {
      entries_digest_ = StateDigester();
      active_ = MerkleFrontier();
      hashed_ = 0;
    }
    const uint64_t count = changes.to_version - changes.from_version;
    const VersionRecord target = count > 0 ? changes.versions.back() : record_;
    if (!appended && writer != nullptr && count > 0) {
      const Store::StateView view{ids_, leaves_, tags_, list_names_, list_state_};
      if (writer->SignedThis(target, view, &entries_digest_, &active_)) {
        hashed_ = ids_.size();
        from_writer_ = true;
      }
    }
    Status adopted = Adopt(target);
    if (!adopted.ok()) {
      Restore(std::move(undo));
      return ChangesCorrupt(changes, adopted.error().message());
    }
  } catch (...) {
    Restore(std::move(undo));
    throw;
  }
  return undo;
}

void VerifiedStoreState::Restore(Undo undo) {
  if (undo.rebuilt) {
    ids_ = std::move(undo.ids);
    leaves_ = std::move(undo.leaves);
    tags_ = std::move(undo.tags_before_rebuild);
  } else {
    for (const auto& [i, tag] : undo.changed) tags_[i] = tag;
    ids_.resize(undo.size);
    leaves_.resize(undo.size);
    tags_.resize(undo.size);
  }
  version_ = undo.version;
  record_ = std::move(undo.record);
  entries_digest_ = std::move(undo.entries_digest);
  active_ = std::move(undo.active);
  hashed_ = undo.hashed;
  appended_ = undo.appended;
  from_writer_ = undo.from_writer;
  list_names_ = std::move(undo.list_names);
  list_state_ = std::move(undo.list_state);
}

}  // namespace bantay::matcher
