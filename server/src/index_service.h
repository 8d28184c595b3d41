// IndexService: the server's view of the store. It loads the in-memory
// HashIndex from the store in the background (the server answers /readyz
// with 503 until it is done), keeps it current (after every change made
// through the API, before that change is answered, and by polling the store
// for changes made elsewhere: the CLI, other replicas), and runs the store
// reads and writes of the administration routes.
//
// Thread safety: every method is thread-safe. Each use of the store runs on
// one of three Store objects (connections): the follower (loading and
// applying changes, under sync_mu_), the reader (administration reads, under
// read_mu_) and the writer (changes, under write_mu_).
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

  // Opens the store (all three connections) and starts loading. Errors when
  // the store or its keys cannot be opened (the server does not start).
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
  void Follow();
  Status SyncLocked();  // requires sync_mu_
  // Records how a sync went: the lag, the metrics, and a log line when
  // following stops, its error changes, or it resumes. Requires sync_mu_.
  void NoteSyncLocked(const Status& synced);
  // The store verifies (audit chain, signatures against trusted_key_,
  // values, the current root against the entries) before it is served.
  Status VerifyStoreLocked();  // requires sync_mu_
  void RefreshInfoLocked(uint64_t version);  // requires sync_mu_

  const ServerConfig& config_;
  Metrics* metrics_;
  // Replaced by each load attempt (before ready_, when nobody reads it);
  // then fixed.
  std::unique_ptr<matcher::HashIndex> index_;
  std::atomic<bool> ready_{false};

  std::mutex sync_mu_;  // the follower connection and index writes
  std::unique_ptr<matcher::Store> follower_;
  uint64_t applied_version_ = 0;
  // What the index holds, verified against the trusted key: each change
  // set is verified against it before it is applied. Set by the load.
  std::optional<matcher::VerifiedStoreState> verified_;
  // After changes that do not verify, when to try again (verifying costs
  // O(entries); a store edited behind its back stays so until repaired).
  std::optional<std::chrono::steady_clock::time_point> retry_corrupt_at_;
  std::optional<Error> corrupt_error_;

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
};

}  // namespace bantay::server

#endif  // BANTAY_SERVER_INDEX_SERVICE_H_
