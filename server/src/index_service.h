// IndexService: the server's view of the store. It loads the in-memory
// HashIndex from the store in the background (the server answers /readyz
// with 503 until it is done), keeps it current (after every change made
// through the API, before that change is answered, and by polling the store
// for changes made elsewhere: the CLI, other replicas), and runs the store
// reads and writes of the administration routes.
//
// Nothing is served that the trusted key did not sign: the load checks the
// entries against the signed root of the version it reads, and each change
// set is verified before it is applied. A change set that does not verify is
// tried again after store.corrupt_retry_ms, with a verified reload of the
// whole store, adopted only at a higher version than the one served (the
// store's history forked: a backup restored, then written). The index never
// goes back: not below store.min_version, and not below the version recorded
// in store.pin_file by an earlier run (nor to another root at that version).
//
// Thread safety: every method is thread-safe. Each use of the store runs on
// one of three Store objects (connections): the follower (loading and
// applying changes, under sync_mu_), the reader (administration reads, under
// read_mu_) and the writer (changes, and its preparation once the index is
// loaded on a thread of its own, under write_mu_).
#ifndef BANTAY_SERVER_INDEX_SERVICE_H_
#define BANTAY_SERVER_INDEX_SERVICE_H_

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bantay/matcher/hash_index.h"
#include "bantay/matcher/store.h"
#include "bantay/matcher/store_index.h"
#include "bantay/models/status.h"
#include "bantay/server/config.h"

namespace bantay::server {

class Metrics;

// What GET /v1/index answers, refreshed with every store version applied.
struct IndexInfo {
  uint64_t version = 0;
  std::array<size_t, 3> entries{};  // pdq, md5, sha256 held by the index
  std::vector<matcher::ListInfo> lists;
  std::optional<matcher::VersionRecord> root;
};

class IndexService {
 public:
  IndexService(const ServerConfig& config, Metrics* metrics);
  ~IndexService();  // Stop()

  // Opens the store (all three connections), reads store.pin_file, and
  // starts loading. Errors when the store or its keys cannot be opened, and
  // when the pin file cannot be read or parsed or pins another store (the
  // server does not start).
  Status Start();
  void Stop();

  bool ready() const { return ready_.load(std::memory_order_acquire); }
  // A load failure after Start (the server stays unready and says why).
  std::optional<Error> load_error() const;
  // Since when (steady clock) the index has failed to follow the store —
  // every poll and every post-change sync failing since — and the last
  // error; nullopt while it follows.
  struct Lag {
    std::chrono::steady_clock::time_point since;
    Error error;
  };
  std::optional<Lag> lag() const;
  // The snapshot to query; null until ready.
  std::shared_ptr<const matcher::IndexSnapshot> Snapshot() const;
  std::shared_ptr<const IndexInfo> Info() const;

  // Runs a read on the reader connection.
  template <typename T>
  T Read(const std::function<T(matcher::Store&)>& fn) {
    std::lock_guard lock(read_mu_);
    return fn(*reader_);
  }
  // Runs a change on the writer connection, then brings the index up to the
  // new version before returning. kPermissionDenied when the server has no
  // signing key (changes are signed).
  Result<uint64_t> Change(const std::function<Result<uint64_t>(matcher::Store&)>& fn);

 private:
  // The version the index must not go below (store.pin_file).
  struct Pin {
    uint64_t version = 0;
    matcher::Digest32 root{};
    bool key_pinned = false;  // the file names the key (else it is written again)
  };
  // An index loaded from the store and verified, not yet served.
  struct Loaded {
    std::unique_ptr<matcher::HashIndex> index;
    matcher::VerifiedStoreState verified;
  };
  // After a change set that does not verify: its error, and when it may be
  // tried again (verifying costs O(entries), and a store edited behind its
  // back stays so until it is repaired).
  struct CorruptChanges {
    std::chrono::steady_clock::time_point retry_at;
    Error error;
  };

  void Follow();
  // One load attempt: serves its index, or records why not (load_error_).
  Status LoadLocked();  // requires sync_mu_
  // Loads the whole store into a new index, verified (and, with
  // store.verify_on_load, the store's history too).
  Result<Loaded> LoadVerifiedLocked();  // requires sync_mu_
  // Makes `loaded` the index served, and pins its version.
  void InstallLocked(Loaded loaded);  // requires sync_mu_
  // `retry`: whether changes that did not verify may be tried again now
  // (the poller's syncs; a change through the API leaves that to it).
  Status SyncLocked(bool retry);  // requires sync_mu_
  // At a retry of changes that do not verify (`error`): a verified reload,
  // served when its version is higher than the one served; otherwise the
  // error to keep reporting. Requires sync_mu_.
  Status ReloadLocked(const Error& error);
  // kCorruptData when `version` (with `root`, when known) is below
  // store.min_version or the pinned version, or is the pinned version with
  // another root.
  Status CheckFloor(uint64_t version, const matcher::Digest32* root) const;
  // Records the version served in store.pin_file (when set); failures are
  // logged. Requires sync_mu_.
  void PinLocked();
  // Records how a sync went: the lag, the metrics, and a log line when
  // following stops, its error changes, or it resumes. Requires sync_mu_.
  void NoteSyncLocked(const Status& synced);
  // The store verifies (audit chain, signatures against trusted_key_,
  // values, the current root against the entries) before it is served.
  Status VerifyStoreLocked();  // requires sync_mu_
  void RefreshInfoLocked();  // requires sync_mu_

  const ServerConfig& config_;
  Metrics* metrics_;
  std::atomic<bool> ready_{false};

  // Guards the follower connection, the index writes and the members down
  // to read_mu_.
  std::mutex sync_mu_;
  std::unique_ptr<matcher::Store> follower_;
  // The index served: replaced (under sync_mu_ and index_mu_) by a load or
  // a reload, read by Snapshot() under index_mu_; changed in place (under
  // sync_mu_) by the change sets applied.
  mutable std::mutex index_mu_;
  std::unique_ptr<matcher::HashIndex> index_;
  // What the index holds, verified against the trusted key: each change
  // set is verified against it before it is applied; its version is the
  // version served. Set by the load.
  std::optional<matcher::VerifiedStoreState> verified_;
  std::optional<CorruptChanges> corrupt_;
  // Read from store.pin_file in Start, then what was last written to it.
  std::optional<Pin> pin_;
  std::string pin_error_;  // the last failure to write the pin (logged once)

  std::mutex read_mu_;
  std::unique_ptr<matcher::Store> reader_;

  std::mutex write_mu_;
  std::unique_ptr<matcher::Store> writer_;  // null without a signing key

  mutable std::mutex state_mu_;
  std::shared_ptr<const IndexInfo> info_;  // guarded by state_mu_
  std::optional<Error> load_error_;        // guarded by state_mu_
  std::optional<Lag> lag_;                 // guarded by state_mu_
  // Set in Start: store.public_key_file, else the signing key's public
  // half, else nullopt (Verify: the key the store holds).
  std::optional<matcher::PublicKey> trusted_key_;
  // What versions are verified with: trusted_key_, else the store's own.
  matcher::PublicKey version_key_{};
  bool stop_ = false;                      // guarded by state_mu_
  std::condition_variable wake_;
  std::thread follower_thread_;
  // The writer's preparation (Store::PrepareChange), started by the
  // follower thread once the index is loaded.
  std::thread prepare_thread_;
  void PrepareWriter();
};

}  // namespace bantay::server

#endif  // BANTAY_SERVER_INDEX_SERVICE_H_
