#include "index_service.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <unordered_map>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <utility>

#include <boost/json.hpp>

#include "bantay/matcher/store_index.h"
#include "bantay/models/digest.h"
#include "compute_pool.h"
#include "metrics.h"
#include "strict_json.h"

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

// store.pin_file: one line of JSON, {"store_id":"<32 hex>","version":N,
// "root":"<64 hex>","public_key":"<64 hex>"}, the last version served, its
// signed root and the Ed25519 key its signature was verified with. Not a
// secret (the root is published by GET /v1/index). Files written before
// the key was pinned have no public_key; it is added at the next write.
struct PinFile {
  std::array<uint8_t, 16> store_id{};
  uint64_t version = 0;
  matcher::Digest32 root{};
  std::optional<matcher::PublicKey> public_key;
};

constexpr size_t kMaxPinFileBytes = 4096;

std::string PinText(const PinFile& pin) {
  std::string text = R"({"store_id":")" + models::ToHex(pin.store_id) + R"(","version":)" +
                     std::to_string(pin.version) + R"(,"root":")" + models::ToHex(pin.root);
  if (pin.public_key) text += R"(","public_key":")" + models::ToHex(*pin.public_key);
  return text + "\"}\n";
}

template <size_t N>
bool ParseHex(std::string_view hex, std::array<uint8_t, N>* out) {
  auto digit = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;  // lower case only, as written
  };
  if (hex.size() != 2 * N) return false;
  for (size_t i = 0; i < N; ++i) {
    const int high = digit(hex[2 * i]);
    const int low = digit(hex[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    (*out)[i] = static_cast<uint8_t>(high << 4 | low);
  }
  return true;
}

// nullopt when the file does not exist (the first start).
Result<std::optional<PinFile>> ReadPinFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) return std::optional<PinFile>();
    return Error(ErrorCode::kIo, path + ": " + std::strerror(error));
  }
  std::string text;
  char buffer[1024];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      return Error(ErrorCode::kIo, path + ": " + std::strerror(error));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kMaxPinFileBytes) break;
  }
  ::close(fd);
  auto corrupt = [&](const std::string& why) {
    return Error(ErrorCode::kCorruptData,
                 path + " is not a pin file (" + why +
                     "; expected one line {\"store_id\":\"<32 hex>\",\"version\":N,"
                     "\"root\":\"<64 hex>\",\"public_key\":\"<64 hex>\"}): restore it, or "
                     "delete it to pin the version the server loads next");
  };
  if (text.size() > kMaxPinFileBytes) return corrupt("it is larger than a pin");
  Result<boost::json::value> value = ParseJson(text, "it");
  if (!value.ok()) return corrupt(value.error().message());
  const boost::json::object* object = value->if_object();
  if (object == nullptr) return corrupt("not a JSON object");
  PinFile pin;
  const boost::json::value* id = object->if_contains("store_id");
  const boost::json::value* version = object->if_contains("version");
  const boost::json::value* root = object->if_contains("root");
  const boost::json::value* key = object->if_contains("public_key");
  if (object->size() != (key == nullptr ? 3u : 4u) || id == nullptr || version == nullptr ||
      root == nullptr) {
    return corrupt("not the members store_id, version, root and public_key");
  }
  if (!id->is_string() || !ParseHex(id->get_string(), &pin.store_id)) {
    return corrupt("store_id is not 32 lower-case hex digits");
  }
  if (version->is_uint64()) {
    pin.version = version->get_uint64();
  } else if (version->is_int64() && version->get_int64() >= 0) {
    pin.version = static_cast<uint64_t>(version->get_int64());
  } else {
    return corrupt("version is not a whole number");
  }
  if (!root->is_string() || !ParseHex(root->get_string(), &pin.root)) {
    return corrupt("root is not 64 lower-case hex digits");
  }
  if (key != nullptr) {
    pin.public_key.emplace();
    if (!key->is_string() || !ParseHex(key->get_string(), &*pin.public_key)) {
      return corrupt("public_key is not 64 lower-case hex digits");
    }
  }
  return std::optional<PinFile>(pin);
}

// Replaces `path` with `text` so that a crash leaves either the old file or
// the new one: a temporary file beside it, synced, renamed over it, and the
// directory synced.
Status WriteFileAtomically(const std::string& path, std::string_view text) {
  const std::string temporary = path + ".tmp";
  auto failed = [](const std::string& what) {
    return Error(ErrorCode::kIo, what + ": " + std::strerror(errno));
  };
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return failed(temporary);
  for (size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const Error error = failed(temporary);
      ::close(fd);
      ::unlink(temporary.c_str());
      return error;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const Error error = failed(temporary);
    ::close(fd);
    ::unlink(temporary.c_str());
    return error;
  }
  if (::close(fd) != 0) {
    const Error error = failed(temporary);
    ::unlink(temporary.c_str());
    return error;
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    const Error error = failed(path);
    ::unlink(temporary.c_str());
    return error;
  }
  std::string directory = std::filesystem::path(path).parent_path().string();
  if (directory.empty()) directory = ".";
  const int dir = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return failed(directory);
  if (::fsync(dir) != 0) {
    const Error error = failed(directory);
    ::close(dir);
    return error;
  }
  ::close(dir);
  return Status();
}

// The same signed record (the signature covers every field that is signed).
bool SameRecord(const matcher::VersionRecord& a, const matcher::VersionRecord& b) {
  return a.version == b.version && a.root == b.root && a.audit_digest == b.audit_digest &&
         a.signature == b.signature;
}

void Log(const std::string& line) { std::fprintf(stderr, "bantay-server: %s\n", line.c_str()); }

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
                 "set: the store's signatures are checked against the key it holds itself%s\n",
                 config_.pin_file.empty()
                     ? " (which whoever can write to the database could replace: set "
                       "store.public_key_file, or store.pin_file to pin the key found first)"
                     : "");
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
  if (!config_.pin_file.empty()) {
    Result<std::optional<PinFile>> pin = ReadPinFile(config_.pin_file);
    if (!pin.ok()) {
      return Error(pin.error().code(), "store.pin_file: " + pin.error().message());
    }
    if (!*pin) {
      Log("store.pin_file: " + config_.pin_file +
          " does not exist yet: it records the version served once the index is loaded");
    } else if ((*pin)->store_id != follower_->store_id()) {
      // Versions of two stores cannot be compared.
      return Error(ErrorCode::kCorruptData,
                   "store.pin_file: " + config_.pin_file + " pins store " +
                       models::ToHex((*pin)->store_id) + ", but store.url holds store " +
                       models::ToHex(follower_->store_id()) +
                       " (delete the pin file if the store was replaced on purpose)");
    } else if ((*pin)->public_key && *(*pin)->public_key != version_key_) {
      // Without store.public_key_file (or signing_key_file) a replica
      // trusts the key the store holds, which whoever can write to the
      // database could replace, re-signing every version with their own.
      const std::string source = !config_.public_key_file.empty() ? "store.public_key_file"
                                 : trusted_key_ ? "the public half of store.signing_key_file"
                                                : "the key the store holds";
      return Error(ErrorCode::kCorruptData,
                   "store.pin_file: " + config_.pin_file + " pins the signing key " +
                       models::ToHex(*(*pin)->public_key) + ", but the store's versions are to "
                       "be verified with key " + models::ToHex(version_key_) + " (" + source +
                       "; delete the pin file if the key was changed on purpose)");
    } else {
      pin_ = Pin{(*pin)->version, (*pin)->root, (*pin)->public_key.has_value()};
      Log("store.pin_file: the index is not served from a version before " +
          std::to_string(pin_->version) + " (pinned in " + config_.pin_file + ")");
    }
  }
  follower_thread_ = std::thread([this] {
    RunBehindMatching();  // before the name: a thread so named runs behind
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
  if (prepare_thread_.joinable()) prepare_thread_.join();
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
    const std::string version = std::to_string(verified_->version());
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
  std::lock_guard lock(index_mu_);
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
    Status loaded;
    {
      std::lock_guard lock(sync_mu_);
      loaded = LoadLocked();
    }
    if (loaded.ok()) break;
    std::unique_lock lock(state_mu_);
    // A store that does not verify (or is older than the index may serve)
    // is not retried as often as one that could not be read: loading and
    // verifying it again costs a core for seconds.
    const auto wait =
        loaded.error().code() == ErrorCode::kCorruptData
            ? std::chrono::milliseconds(config_.corrupt_retry_ms)
            : std::chrono::milliseconds(1000 * std::min(1 << std::min(attempt, 4), 10));
    if (wake_.wait_for(lock, wait, [this] { return stop_; })) return;
  }
  ready_.store(true, std::memory_order_release);
  if (writer_ != nullptr) {
    // The writer reads and checks the store now, behind matching and
    // beside this thread (which goes on following), rather than in the
    // first change an operator makes (about a second at 1M entries).
    // Joined by Stop, after this thread.
    prepare_thread_ = std::thread([this] {
      RunBehindMatching();
      pthread_setname_np(pthread_self(), "bantay-prepare");
      PrepareWriter();
    });
  }
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
    NoteSyncLocked(SyncLocked(true));
  }
}

void IndexService::PrepareWriter() {
  std::lock_guard lock(write_mu_);  // a change made meanwhile waits for it
  {
    std::lock_guard state(state_mu_);
    if (stop_) return;
  }
  Status prepared;
  try {
    prepared = writer_->PrepareChange();
  } catch (const std::exception& e) {
    prepared = Error(ErrorCode::kInternal, e.what());
  }
  // A store that cannot be changed says so again at each change.
  if (!prepared.ok()) {
    Log("the writer did not prepare its first change (which will read and check the store "
        "itself): " + prepared.error().ToString());
  }
}

Status IndexService::LoadLocked() {
  Status loaded = [&]() -> Status {
    // A store older than the index may serve is refused before it is read
    // (a load costs O(entries)), and again at the version the load read.
    Result<uint64_t> version = follower_->Version();
    if (!version.ok()) return version.error();
    if (Status floor = CheckFloor(*version, nullptr); !floor.ok()) return floor;
    Result<Loaded> fresh = LoadVerifiedLocked();
    if (!fresh.ok()) return fresh.error();
    const matcher::VersionRecord& record = fresh->verified.record();
    if (Status floor = CheckFloor(record.version, &record.root); !floor.ok()) return floor;
    InstallLocked(std::move(*fresh));
    return Status();
  }();
  if (loaded.ok()) {
    if (metrics_ != nullptr) metrics_->RecordIndexSync(true);
    std::lock_guard state(state_mu_);
    load_error_.reset();
    return loaded;
  }
  Log("loading the index failed: " + loaded.error().ToString());
  std::lock_guard state(state_mu_);
  load_error_ = loaded.error();
  return loaded;
}

Result<IndexService::Loaded> IndexService::LoadVerifiedLocked() {
  // Into a new index each time: a failed load may have left a part. The
  // load checks its entries against the signed root of the version it
  // reads; then (store.verify_on_load) the whole store is verified, its
  // history included, at that version or a later one (whose changes the
  // next sync verifies).
  Loaded loaded{std::make_unique<matcher::HashIndex>(),
                matcher::VerifiedStoreState(follower_->store_id(), version_key_)};
  Result<uint64_t> version =
      matcher::LoadIndexFromStore(*follower_, loaded.index.get(), &loaded.verified);
  if (!version.ok()) return version.error();
  if (config_.verify_on_load) {
    if (Status verified = VerifyStoreLocked(); !verified.ok()) return verified.error();
  }
  return loaded;
}

void IndexService::InstallLocked(Loaded loaded) {
  {
    std::lock_guard lock(index_mu_);
    index_.swap(loaded.index);
  }
  verified_ = std::move(loaded.verified);
  corrupt_.reset();
  RefreshInfoLocked();
  PinLocked();
  // The index replaced (if any) goes with `loaded`, outside index_mu_ (its
  // destructor waits for a running merge); snapshots of it still held by
  // requests stay valid.
}

Status IndexService::CheckFloor(uint64_t version, const matcher::Digest32* root) const {
  const std::string at = std::to_string(version);
  if (version < static_cast<uint64_t>(config_.min_version)) {
    return Error(ErrorCode::kCorruptData,
                 "the store is at version " + at + ", below store.min_version " +
                     std::to_string(config_.min_version) + " (an older copy of the database?)");
  }
  if (!pin_) return Status();
  if (version < pin_->version) {
    return Error(ErrorCode::kCorruptData,
                 "the store is at version " + at + ", older than version " +
                     std::to_string(pin_->version) + " pinned in store.pin_file " +
                     config_.pin_file + " (an older copy of the database?)");
  }
  if (version == pin_->version && root != nullptr && *root != pin_->root) {
    return Error(ErrorCode::kCorruptData,
                 "the store's version " + at + " has another signed root than the one pinned in "
                 "store.pin_file " + config_.pin_file + " (the store's history was rewritten)");
  }
  return Status();
}

void IndexService::PinLocked() {
  if (config_.pin_file.empty()) return;
  const matcher::VersionRecord& record = verified_->record();
  if (pin_ && pin_->version == record.version && pin_->root == record.root && pin_->key_pinned) {
    return;
  }
  const std::string version = std::to_string(record.version);
  Status written =
      WriteFileAtomically(config_.pin_file, PinText(PinFile{follower_->store_id(), record.version,
                                                            record.root, version_key_}));
  if (!written.ok()) {
    // The index keeps following: the pin guards restarts, and the version
    // last pinned still does.
    if (written.error().message() != pin_error_) {
      Log("store.pin_file: version " + version + " could not be pinned: " +
          written.error().ToString());
    }
    pin_error_ = written.error().message();
    return;
  }
  if (!pin_error_.empty()) Log("store.pin_file: version " + version + " is pinned again");
  pin_error_.clear();
  pin_ = Pin{record.version, record.root, true};
}

Status IndexService::SyncLocked(bool retry) {
  const auto now = std::chrono::steady_clock::now();
  if (corrupt_ && (!retry || now < corrupt_->retry_at)) return corrupt_->error;
  const uint64_t served = verified_->version();
  Result<uint64_t> version = follower_->Version();
  if (!version.ok()) return version.error();
  if (*version == served) {
    if (!corrupt_) return Status();
    // At a retry: the store is back at the version served. Repaired, or
    // that version was signed again over other entries (the history forked)?
    Result<matcher::VersionRecord> record = follower_->Root(served);
    if (!record.ok() && record.error().code() != ErrorCode::kNotFound) return record.error();
    if (record.ok() && SameRecord(*record, verified_->record())) {
      corrupt_.reset();
      return Status();
    }
    return ReloadLocked(Error(ErrorCode::kCorruptData,
                              "the store's version " + std::to_string(served) +
                                  " is not the signed version the index serves"));
  }
  Result<matcher::ChangeSet> changes = follower_->ChangesSince(served);
  if (!changes.ok()) return changes.error();
  // Nothing is applied that the trusted key did not sign. A change this
  // server's writer made is checked against the hashes it signed, when the
  // state after it is the one it signed them over.
  // (In place: a copy of the state would cost O(entries) per change.)
  Result<matcher::VerifiedStoreState::Undo> undo = verified_->Advance(*changes, writer_.get());
  if (!undo.ok()) {
    if (undo.error().code() != ErrorCode::kCorruptData) return undo.error();
    if (corrupt_) return ReloadLocked(undo.error());
    corrupt_ = CorruptChanges{now + std::chrono::milliseconds(config_.corrupt_retry_ms),
                              undo.error()};
    return undo.error();
  }
  corrupt_.reset();
  // The state verified stays the index's: put back should the changes not
  // be applied (an error, or an exception such as an allocation failing).
  Status applied;
  try {
    applied = matcher::ApplyChangeSet(*changes, index_.get());
  } catch (...) {
    verified_->Restore(std::move(*undo));
    throw;
  }
  if (!applied.ok()) {
    verified_->Restore(std::move(*undo));
    return applied;
  }
  if (metrics_ != nullptr) {
    using How = Metrics::ChangeVerified;
    metrics_->RecordChangeVerified(verified_->appended()      ? How::kAppended
                                   : verified_->from_writer() ? How::kWriter
                                                              : How::kHashed);
  }
  RefreshInfoLocked();
  PinLocked();
  return Status();
}

Status IndexService::ReloadLocked(const Error& error) {
  // The changes may not follow on from the version served because the
  // store's history after it was replaced (a backup restored, then
  // written): the versions are signed by the trusted key, on another
  // branch. A verified load of the whole store tells; it is served only at
  // a later version than the one served (never going back).
  const uint64_t served = verified_->version();
  const std::string was = std::to_string(served);
  Result<Loaded> fresh = LoadVerifiedLocked();
  std::string outcome;
  if (!fresh.ok()) {
    outcome = "the store reloaded does not verify either (" + fresh.error().ToString() + ")";
  } else {
    const matcher::VersionRecord& record = fresh->verified.record();
    const std::string now = std::to_string(record.version);
    if (record.version > served) {
      InstallLocked(std::move(*fresh));
      Log("the changes after version " + was + " did not verify (" + error.message() +
          "); the whole store, reloaded and verified against the trusted key at version " +
          now + ", is served instead (the store's history after version " + was +
          " was rewritten: a backup restored, then written?)");
      return Status();
    }
    if (record.version == served && record.root == verified_->record().root) {
      outcome = "the store reloaded is at version " + now + " with the root served";
    } else if (record.version == served) {
      outcome = "the store reloaded is at version " + now +
                " with another root than the one served: not served (the index goes only "
                "to a later version)";
    } else {
      outcome = "the store reloaded is at version " + now + ", older than version " + was +
                " served: not served (an older copy of the database?)";
    }
  }
  // Logged by NoteSyncLocked when it differs from the last error.
  corrupt_ = CorruptChanges{
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.corrupt_retry_ms),
      Error(ErrorCode::kCorruptData, error.message() + "; " + outcome)};
  return corrupt_->error;
}

void IndexService::RefreshInfoLocked() {
  const uint64_t version = verified_->version();
  auto info = std::make_shared<IndexInfo>();
  info->version = version;
  std::shared_ptr<const matcher::IndexSnapshot> snapshot = index_->Snapshot();
  for (int t = 0; t < 3; ++t) {
    info->entries[t] = snapshot->size(static_cast<matcher::SignalType>(t));
  }
  // The lists of the version served, counted from the verified state (a
  // count in the database reads every entry's row: about a second at 1M
  // entries, on every change); descriptions (not signed) from the store.
  info->lists = verified_->Lists();
  if (Result<std::vector<matcher::ListInfo>> stored = follower_->Lists(/*count_entries=*/false);
      stored.ok()) {
    // By name (the database orders names by its own collation).
    std::unordered_map<std::string, std::string> descriptions;
    for (matcher::ListInfo& list : *stored) {
      descriptions.emplace(std::move(list.name), std::move(list.description));
    }
    for (matcher::ListInfo& list : info->lists) {
      if (auto found = descriptions.find(list.name); found != descriptions.end()) {
        list.description = std::move(found->second);
      }
    }
  }
  // The record verified, not the database's word.
  info->root = verified_->record();
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
    NoteSyncLocked(SyncLocked(false));
  }
  return version;
}

}  // namespace bantay::server
