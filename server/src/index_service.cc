#include "index_service.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>

#include "bantay/matcher/store_index.h"
#include "metrics.h"

namespace bantay::server {

using matcher::Store;

IndexService::IndexService(const ServerConfig& config, Metrics* metrics)
    : config_(config), metrics_(metrics) {}

IndexService::~IndexService() { Stop(); }

namespace {

Result<matcher::StoreKeys> LoadKeys(const ServerConfig& config, bool signing) {
  if (config.data_key_file.empty()) {
    return Error(ErrorCode::kInvalidArgument, "store.data_key_file is not set");
  }
  Result<matcher::DataKey> data = matcher::ReadDataKeyFile(config.data_key_file);
  if (!data.ok()) {
    return Error(data.error().code(), "store.data_key_file: " + data.error().message());
  }
  matcher::StoreKeys keys;
  keys.data_keys.push_back(*data);  // the first seals
  if (!config.extra_data_key_file.empty()) {
    Result<matcher::DataKey> extra = matcher::ReadDataKeyFile(config.extra_data_key_file);
    if (!extra.ok()) {
      return Error(extra.error().code(),
                   "store.extra_data_key_file: " + extra.error().message());
    }
    keys.data_keys.push_back(*extra);
  }
  if (signing) {
    Result<matcher::SigningKey> key = matcher::SigningKey::ReadPemFile(config.signing_key_file);
    if (!key.ok()) {
      return Error(key.error().code(), "store.signing_key_file: " + key.error().message());
    }
    keys.signing_key = std::move(*key);
  }
  return keys;
}

Result<std::unique_ptr<Store>> OpenStore(const ServerConfig& config, bool signing) {
  Result<matcher::StoreKeys> keys = LoadKeys(config, signing);
  if (!keys.ok()) return keys.error();
  Result<std::unique_ptr<Store>> store = Store::Open(config.store_url, std::move(*keys));
  if (!store.ok()) {
    return Error(store.error().code(), "store.url: " + store.error().message());
  }
  return store;
}

}  // namespace

Status IndexService::Start() {
  if (!config_.public_key_file.empty()) {
    Result<matcher::PublicKey> key = matcher::ReadPublicKeyPemFile(config_.public_key_file);
    if (!key.ok()) {
      return Error(key.error().code(), "store.public_key_file: " + key.error().message());
    }
    trusted_key_ = *key;
  } else if (!config_.signing_key_file.empty()) {
    Result<matcher::SigningKey> key = matcher::SigningKey::ReadPemFile(config_.signing_key_file);
    if (!key.ok()) {
      return Error(key.error().code(), "store.signing_key_file: " + key.error().message());
    }
    trusted_key_ = key->public_key();
  } else {
    std::fprintf(stderr,
                 "bantay-server: neither store.public_key_file nor store.signing_key_file is "
                 "set: the store's signatures are checked against the key it holds itself\n");
  }
  for (auto* slot : {&follower_, &reader_}) {
    Result<std::unique_ptr<Store>> store = OpenStore(config_, false);
    if (!store.ok()) return store.error();
    *slot = std::move(*store);
  }
  if (trusted_key_) {
    version_key_ = *trusted_key_;
  } else if (std::optional<matcher::PublicKey> own = follower_->stored_public_key()) {
    version_key_ = *own;
  } else {
    return Error(ErrorCode::kCorruptData, "store.url: the store holds no public key");
  }
  if (!config_.signing_key_file.empty()) {
    Result<std::unique_ptr<Store>> store = OpenStore(config_, true);
    if (!store.ok()) return store.error();
    writer_ = std::move(*store);
  }
  follower_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "bantay-index");
    Follow();
  });
  return Status();
}

void IndexService::Stop() {
  {
    std::lock_guard lock(state_mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (follower_thread_.joinable()) follower_thread_.join();
}

std::optional<Error> IndexService::load_error() const {
  std::lock_guard lock(state_mu_);
  return load_error_;
}

std::optional<IndexService::Lag> IndexService::lag() const {
  std::lock_guard lock(state_mu_);
  return lag_;
}

Status IndexService::VerifyStoreLocked() {
  Result<matcher::VerifyReport> report = follower_->Verify(trusted_key_);
  if (!report.ok()) return report.error();
  if (report->ok()) return Status();
  const std::vector<std::string>& problems = report->problems;
  std::string message = "the store does not verify: " + problems.front();
  if (problems.size() > 1) message += " (and " + std::to_string(problems.size() - 1) + " more)";
  return Error(ErrorCode::kCorruptData, message + "; see bantay index verify");
}

void IndexService::NoteSyncLocked(const Status& synced) {
  if (metrics_ != nullptr) metrics_->RecordIndexSync(synced.ok());
  std::string line;  // printed after state_mu_ is released (/readyz takes it)
  {
    std::lock_guard lock(state_mu_);
    const std::string version = std::to_string(applied_version_);
    if (synced.ok()) {
      if (lag_) line = "the index follows the store again (version " + version + ")";
      lag_.reset();
    } else {
      if (!lag_ || lag_->error.ToString() != synced.error().ToString()) {
        line = "the index cannot follow the store (it serves version " + version +
               "): " + synced.error().ToString();
      }
      const auto since = lag_ ? lag_->since : std::chrono::steady_clock::now();
      lag_ = Lag{since, synced.error()};
    }
  }
  if (!line.empty()) std::fprintf(stderr, "bantay-server: %s\n", line.c_str());
}

std::shared_ptr<const matcher::IndexSnapshot> IndexService::Snapshot() const {
  if (!ready()) return nullptr;
  return index_->Snapshot();
}

std::shared_ptr<const IndexInfo> IndexService::Info() const {
  std::lock_guard lock(state_mu_);
  return info_;
}

void IndexService::Follow() {
  // A failed load (the database restarting while the replica boots) is
  // retried every few seconds; /readyz says so meanwhile.
  for (int attempt = 0;; ++attempt) {
    {
      std::lock_guard lock(sync_mu_);
      // Into a new index each time: a failed load may have left a part.
      // The load checks its entries against the signed root of the version
      // it reads; then (store.verify_on_load) the whole store is verified,
      // its history included, at that version or a later one (whose changes
      // the first poll verifies).
      index_ = std::make_unique<matcher::HashIndex>();
      verified_.emplace(follower_->store_id(), version_key_);
      Result<uint64_t> loaded =
          matcher::LoadIndexFromStore(*follower_, index_.get(), &*verified_);
      if (loaded.ok() && config_.verify_on_load) {
        if (Status verified = VerifyStoreLocked(); !verified.ok()) loaded = verified.error();
      }
      if (loaded.ok()) {
        applied_version_ = *loaded;
        RefreshInfoLocked(applied_version_);
        if (metrics_ != nullptr) metrics_->RecordIndexSync(true);
        std::lock_guard state(state_mu_);
        load_error_.reset();
        break;
      }
      std::fprintf(stderr, "bantay-server: loading the index failed: %s\n",
                   loaded.error().ToString().c_str());
      std::lock_guard state(state_mu_);
      load_error_ = loaded.error();
    }
    std::unique_lock lock(state_mu_);
    // A store that does not verify is not retried as often as one that could
    // not be read: verifying it again costs a core for seconds.
    const int seconds = load_error_ && load_error_->code() == ErrorCode::kCorruptData
                            ? 60
                            : std::min(1 << std::min(attempt, 4), 10);
    if (wake_.wait_for(lock, std::chrono::seconds(seconds), [this] { return stop_; })) {
      return;
    }
  }
  ready_.store(true, std::memory_order_release);
  const auto interval = std::chrono::milliseconds(config_.poll_interval_ms);
  for (;;) {
    {
      std::unique_lock lock(state_mu_);
      if (wake_.wait_for(lock, interval, [this] { return stop_; })) return;
    }
    std::lock_guard lock(sync_mu_);
    // A failed poll (database restarting) is retried at the next tick; the
    // index keeps serving the version it has (logged, counted, and /readyz
    // turns 503 after store.stale_after_ms).
    NoteSyncLocked(SyncLocked());
  }
}

Status IndexService::SyncLocked() {
  const auto now = std::chrono::steady_clock::now();
  if (retry_corrupt_at_ && now < *retry_corrupt_at_) return *corrupt_error_;
  Result<uint64_t> version = follower_->Version();
  if (!version.ok()) return version.error();
  if (*version == applied_version_) return Status();
  Result<matcher::ChangeSet> changes = follower_->ChangesSince(applied_version_);
  if (!changes.ok()) return changes.error();
  // Nothing is applied that the trusted key did not sign.
  Result<matcher::VerifiedStoreState> next = verified_->Next(*changes);
  if (!next.ok()) {
    if (next.error().code() == ErrorCode::kCorruptData) {
      retry_corrupt_at_ = now + std::chrono::seconds(60);
      corrupt_error_ = next.error();
    }
    return next.error();
  }
  retry_corrupt_at_.reset();
  corrupt_error_.reset();
  Status applied = matcher::ApplyChangeSet(*changes, index_.get());
  if (!applied.ok()) return applied;
  verified_ = std::move(*next);
  applied_version_ = changes->to_version;
  RefreshInfoLocked(applied_version_);
  return Status();
}

void IndexService::RefreshInfoLocked(uint64_t version) {
  auto info = std::make_shared<IndexInfo>();
  info->version = version;
  std::shared_ptr<const matcher::IndexSnapshot> snapshot = index_->Snapshot();
  for (int t = 0; t < 3; ++t) {
    info->entries[t] = snapshot->size(static_cast<matcher::SignalType>(t));
  }
  if (Result<std::vector<matcher::ListInfo>> lists = follower_->Lists(); lists.ok()) {
    info->lists = std::move(*lists);
  }
  // The record verified, not the database's word.
  if (verified_ && verified_->version() == version) info->root = verified_->record();
  if (metrics_ != nullptr) {
    metrics_->SetIndex(version, info->entries[0], info->entries[1], info->entries[2]);
  }
  std::lock_guard lock(state_mu_);
  info_ = std::move(info);
}

Result<uint64_t> IndexService::Change(
    const std::function<Result<uint64_t>(Store&)>& fn) {
  if (writer_ == nullptr) {
    return Error(ErrorCode::kPermissionDenied,
                 "this server makes no changes: store.signing_key_file is not set");
  }
  Result<uint64_t> version = [&] {
    std::lock_guard lock(write_mu_);
    return fn(*writer_);
  }();
  if (!version.ok()) {
    // A store that does not verify (changed outside Bantay) is the server's
    // trouble, not the request's (not 422).
    if (version.error().code() == ErrorCode::kCorruptData) {
      return Error(ErrorCode::kInternal, version.error().message());
    }
    return version;
  }
  if (ready()) {
    // The change is committed whatever happens here: when the index cannot
    // follow at once (the database went away), the poller catches up, and
    // the caller must not be told to retry a change that was made (the lag
    // is logged and counted, and shows in /readyz).
    std::lock_guard lock(sync_mu_);
    NoteSyncLocked(SyncLocked());
  }
  return version;
}

}  // namespace bantay::server
