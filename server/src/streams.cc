#include "streams.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "bantay/matcher/crypto.h"
#include "bantay/matcher/hash_index.h"
#include "bantay/models/border_trim.h"
#include "bantay/models/digest.h"
#include "bantay/models/image_hasher.h"
#include "bantay/models/pdq.h"
#include "compute_pool.h"
#include "index_service.h"
#include "metrics.h"

namespace bantay::server {

namespace {

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One hasher per compute thread and mode (they reuse their buffers).
models::ImageHasher& StreamHasher(bool dihedral, bool trim_borders, int64_t max_pixels,
                                  int max_jpeg_scans) {
  thread_local std::unique_ptr<models::ImageHasher> hashers[4];
  std::unique_ptr<models::ImageHasher>& hasher =
      hashers[(dihedral ? 1 : 0) + (trim_borders ? 2 : 0)];
  if (hasher == nullptr || hasher->options().max_pixels != max_pixels ||
      hasher->options().max_jpeg_scans != max_jpeg_scans) {
    models::HashOptions options;
    options.dihedral = dihedral;
    options.trim_borders = trim_borders;
    options.max_pixels = max_pixels;
    options.max_jpeg_scans = max_jpeg_scans;
    options.digests = false;  // frames are matched by PDQ only
    hasher = std::make_unique<models::ImageHasher>(options);
  }
  return *hasher;
}

struct HashedFrame {
  // Of the content after border trimming (when asked for): compared with
  // the last searched frame, and searched.
  models::Hash256 pdq;
  int quality = 0;
  std::array<models::Hash256, 8> variants{};
  // When trimming removed borders: the whole frame's hash, searched too
  // (lists hold hashes of originals that may have had borders).
  std::optional<models::Hash256> untrimmed;
};

Result<HashedFrame> HashFrame(StreamFrame& frame, const StreamPolicy& policy,
                              int64_t max_pixels, int max_jpeg_scans) {
  HashedFrame out;
  switch (frame.kind) {
    case StreamFrame::Kind::kHash:
      out.pdq = frame.pdq;
      out.quality = frame.quality;
      if (policy.dihedral) out.variants = models::DihedralFromHash(frame.pdq);
      return out;
    case StreamFrame::Kind::kEncoded: {
      Result<models::ImageHashes> hashed =
          StreamHasher(policy.dihedral, policy.trim_borders, max_pixels, max_jpeg_scans)
              .Hash(frame.bytes);
      if (!hashed.ok()) return hashed.error();
      out.pdq = hashed->pdq.hash;
      out.quality = hashed->pdq.quality;
      if (policy.dihedral) out.variants = hashed->pdq.dihedral;
      if (hashed->has_untrimmed) out.untrimmed = hashed->untrimmed.hash;
      return out;
    }
    case StreamFrame::Kind::kRaw: {
      thread_local models::PdqHasher pdq;
      models::PixelView view;
      view.data = frame.bytes.data();
      view.width = frame.width;
      view.height = frame.height;
      view.channels = frame.channels;
      view.row_stride = static_cast<size_t>(frame.width) * static_cast<size_t>(frame.channels);
      view.rgb = frame.rgb;
      const models::ContentRect whole{0, 0, view.width, view.height};
      const models::ContentRect content =
          policy.trim_borders ? models::FindContentRect(view) : whole;
      const models::PdqResult result =
          pdq.Hash(content == whole ? view : models::CropPixelView(view, content), policy.dihedral);
      out.pdq = result.hash;
      out.quality = result.quality;
      if (policy.dihedral) out.variants = result.dihedral;
      if (content != whole) out.untrimmed = pdq.Hash(view, false).hash;
      return out;
    }
  }
  return Error(ErrorCode::kInternal, "unknown frame kind");
}

FrameResult ErrorResult(ErrorCode code, std::string_view api_code, std::string message) {
  FrameResult result;
  result.error = Error(code, std::move(message));
  result.error_code = std::string(api_code);
  return result;
}

std::string_view ApiCodeOf(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInternal:
    case ErrorCode::kIo: return "internal";
    case ErrorCode::kPermissionDenied: return "forbidden";
    default: return ErrorCodeName(code);
  }
}

}  // namespace

StreamFrame::~StreamFrame() {
  if (!bytes.empty()) matcher::Wipe(std::span<uint8_t>(bytes));
}

Stream::Stream(std::string id, std::string owner, StreamPolicy policy, bool lab,
               int64_t now_unix_ms, int64_t now_steady_ms)
    : id_(id),
      owner_(std::move(owner)),
      policy_(policy),
      created_steady_ms_(now_steady_ms),
      last_activity_ms_(now_steady_ms),
      state_(std::move(id), std::move(policy), lab, now_unix_ms) {}

std::string Stream::StateJson() const {
  std::lock_guard lock(mu_);
  return state_.StateJson();
}

int64_t Stream::StreamTimeNow() const { return SteadyMs() - created_steady_ms_; }

uint64_t Stream::SetListeners(std::function<void(std::string)> on_verdict,
                              std::function<void(CloseReason)> on_close) {
  std::function<void(CloseReason)> replaced;
  uint64_t number = 0;
  {
    std::lock_guard lock(mu_);
    if (closed_) return 0;
    replaced = std::move(on_close_);
    on_verdict_ = std::move(on_verdict);
    on_close_ = std::move(on_close);
    number = ++listeners_;
  }
  if (replaced) replaced(CloseReason::kReplaced);
  return number;
}

void Stream::ClearListeners(uint64_t number) {
  std::lock_guard lock(mu_);
  if (number != listeners_) return;
  on_verdict_ = nullptr;
  on_close_ = nullptr;
}

StreamRegistry::StreamRegistry(const ServerConfig& config, IndexService* index,
                               ComputePool* compute, Metrics* metrics)
    : config_(config), index_(index), compute_(compute), metrics_(metrics) {}

std::shared_ptr<Stream> StreamRegistry::Create(const ApiKeyConfig& key, StreamPolicy policy,
                                               CreateError* error) {
  std::array<uint8_t, 16> random;
  matcher::RandomBytes(random);
  const std::string id = models::ToHex(random);
  auto stream = std::make_shared<Stream>(id, key.id, std::move(policy), key.role == Role::kLab,
                                         UnixMs(), SteadyMs());
  stream->key_ = &key;
  std::lock_guard lock(mu_);
  size_t& mine = per_key_[key.id];
  if (mine >= config_.streams_max_per_key) {
    *error = CreateError::kTooManyForKey;
    if (mine == 0) per_key_.erase(key.id);
    return nullptr;
  }
  if (streams_.size() >= config_.streams_max_total) {
    *error = CreateError::kTooManyInAll;
    if (mine == 0) per_key_.erase(key.id);
    return nullptr;
  }
  ++mine;
  // Under mu_, before any other thread can see the stream.
  stream->created_number_ = ++created_;
  streams_.emplace(id, stream);
  metrics_->SetStreamsActive(static_cast<int64_t>(streams_.size()));
  *error = CreateError::kNone;
  return stream;
}

std::shared_ptr<Stream> StreamRegistry::Find(std::string_view id, const ApiKeyConfig& key) {
  std::lock_guard lock(mu_);
  auto it = streams_.find(std::string(id));
  if (it == streams_.end() || it->second->owner() != key.id) return nullptr;
  return it->second;
}

std::vector<std::shared_ptr<Stream>> StreamRegistry::List(const ApiKeyConfig& key) const {
  std::vector<std::shared_ptr<Stream>> mine;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, stream] : streams_) {
      if (stream->owner() == key.id) mine.push_back(stream);
    }
  }
  std::sort(mine.begin(), mine.end(),
            [](const auto& a, const auto& b) { return a->created_number_ < b->created_number_; });
  return mine;
}

std::shared_ptr<Stream> StreamRegistry::Remove(std::string_view id, const ApiKeyConfig& key) {
  std::shared_ptr<Stream> stream;
  {
    std::lock_guard lock(mu_);
    auto it = streams_.find(std::string(id));
    if (it == streams_.end() || it->second->owner() != key.id) return nullptr;
    stream = std::move(it->second);
    streams_.erase(it);
    if (--per_key_[key.id] == 0) per_key_.erase(key.id);
    metrics_->SetStreamsActive(static_cast<int64_t>(streams_.size()));
  }
  Close(stream, EndReason::kDeleted);
  return stream;
}

void StreamRegistry::Close(const std::shared_ptr<Stream>& stream, EndReason reason) {
  std::function<void(Stream::CloseReason)> on_close;
  std::optional<Stream::Pending> waiting;
  std::string ended_event;
  {
    std::lock_guard lock(stream->mu_);
    if (stream->closed_) return;
    stream->closed_ = true;
    if (stream->verdict_told_ && verdict_hook_ && stream->key_ != nullptr) {
      ended_event = stream->state_.EndedJson(reason == EndReason::kDeleted   ? "deleted"
                                             : reason == EndReason::kExpired ? "expired"
                                                                             : "shutdown");
      // A frame in the pool may still tell a verdict: the end goes after it
      // (RunJob, or StartJob when the pool refuses it).
      if (stream->busy_) stream->ended_event_ = std::move(ended_event);
    }
    on_close = std::move(stream->on_close_);
    stream->on_close_ = nullptr;
    stream->on_verdict_ = nullptr;
    waiting = std::move(stream->waiting_);
    stream->waiting_.reset();
  }
  if (waiting) {
    waiting->done(ErrorResult(ErrorCode::kNotFound, "not_found", "the stream was closed"));
  }
  if (on_close) {
    on_close(reason == EndReason::kShutdown ? Stream::CloseReason::kShutdown
                                            : Stream::CloseReason::kEnded);
  }
  if (!ended_event.empty()) verdict_hook_(*stream->key_, ended_event);
}

void StreamRegistry::EndTurn(const std::shared_ptr<Stream>& stream, const ApiKeyConfig& key) {
  std::string ended_event;
  {
    std::lock_guard lock(stream->mu_);
    stream->busy_ = false;
    stream->waiting_.reset();  // (none: only a closed stream's job is dropped)
    ended_event = std::exchange(stream->ended_event_, {});
  }
  TellEnd(key, std::move(ended_event));
}

void StreamRegistry::TellEnd(const ApiKeyConfig& key, std::string ended_event) {
  if (!ended_event.empty() && verdict_hook_) verdict_hook_(key, ended_event);
}

int64_t StreamRegistry::IdleTimeoutMs() const { return config_.streams_idle_timeout_s * 1000; }

size_t StreamRegistry::Sweep() {
  const int64_t now = SteadyMs();
  std::vector<std::shared_ptr<Stream>> expired;
  {
    std::lock_guard lock(mu_);
    for (auto it = streams_.begin(); it != streams_.end();) {
      if (now - it->second->last_activity_ms_.load(std::memory_order_relaxed) > IdleTimeoutMs()) {
        if (--per_key_[it->second->owner()] == 0) per_key_.erase(it->second->owner());
        expired.push_back(std::move(it->second));
        it = streams_.erase(it);
      } else {
        ++it;
      }
    }
    if (!expired.empty()) metrics_->SetStreamsActive(static_cast<int64_t>(streams_.size()));
  }
  for (const std::shared_ptr<Stream>& stream : expired) Close(stream, EndReason::kExpired);
  return expired.size();
}

void StreamRegistry::CloseAll() {
  std::unordered_map<std::string, std::shared_ptr<Stream>> all;
  {
    std::lock_guard lock(mu_);
    all.swap(streams_);
    per_key_.clear();
    metrics_->SetStreamsActive(0);
  }
  for (auto& [id, stream] : all) Close(stream, EndReason::kShutdown);
}

size_t StreamRegistry::active() const {
  std::lock_guard lock(mu_);
  return streams_.size();
}

void StreamRegistry::Submit(const std::shared_ptr<Stream>& stream, const ApiKeyConfig& key,
                            StreamFrame frame, std::function<void(FrameResult)> done) {
  stream->last_activity_ms_.store(SteadyMs(), std::memory_order_relaxed);
  FrameResult immediate;
  std::optional<Stream::Pending> dropped;
  FrameResult dropped_result;
  std::optional<Stream::Pending> start;
  {
    std::lock_guard lock(stream->mu_);
    if (stream->closed_) {
      immediate = ErrorResult(ErrorCode::kNotFound, "not_found", "no such stream");
    } else {
      uint64_t index = 0;
      switch (stream->state_.Arrive(frame.t_ms, frame.seq, UnixMs(), &index, &immediate.outcome)) {
        case StreamState::Arrival::kOutOfOrder:
          immediate = ErrorResult(ErrorCode::kInvalidArgument, "out_of_order",
                                  "t " + std::to_string(frame.t_ms) +
                                      " is before the stream time of an earlier frame");
          break;
        case StreamState::Arrival::kNotSampled:
          break;
        case StreamState::Arrival::kSample: {
          Stream::Pending pending{std::move(frame), index, std::move(done)};
          if (!stream->busy_) {
            stream->busy_ = true;
            start = std::move(pending);
          } else {
            if (stream->waiting_) {
              dropped = std::move(stream->waiting_);
              dropped_result.outcome = stream->state_.Dropped(
                  dropped->index, dropped->frame.t_ms, dropped->frame.seq, UnixMs());
            }
            stream->waiting_ = std::move(pending);
          }
          break;
        }
      }
    }
  }
  if (dropped) {
    metrics_->RecordStreamFrame("dropped");
    dropped->done(std::move(dropped_result));
  }
  if (start) return StartJob(stream, key, std::move(*start));
  if (done) {
    // Not sampled, out of order, or closed.
    if (!immediate.error) metrics_->RecordStreamFrame(FrameVerdictName(immediate.outcome.verdict));
    done(std::move(immediate));
  }
}

void StreamRegistry::StartJob(const std::shared_ptr<Stream>& stream, const ApiKeyConfig& key,
                              Stream::Pending pending) {
  // The closure owns the frame; when the pool refuses it, the frame comes
  // back through `holder`.
  auto holder = std::make_shared<Stream::Pending>(std::move(pending));
  // A job the pool drops without running it (at shutdown) still ends the
  // stream's turn, so that an end deferred behind it is told.
  struct Turn {
    Turn(StreamRegistry* r, std::shared_ptr<Stream> s, const ApiKeyConfig* k)
        : registry(r), stream(std::move(s)), key(k) {}
    Turn(const Turn&) = delete;
    Turn& operator=(const Turn&) = delete;
    ~Turn() {
      if (!over) registry->EndTurn(stream, *key);
    }
    StreamRegistry* const registry;
    const std::shared_ptr<Stream> stream;
    const ApiKeyConfig* const key;
    bool over = false;  // run, or refused (handled below)
  };
  auto turn = std::make_shared<Turn>(this, stream, &key);
  const bool queued = compute_->TrySubmit([this, stream, &key, holder, turn] {
    turn->over = true;
    RunJob(stream, key, std::move(*holder));
  });
  if (queued) return;
  turn->over = true;
  metrics_->RecordOverloaded();
  std::optional<Stream::Pending> next;
  FrameResult result;
  std::string ended_event;
  {
    std::lock_guard lock(stream->mu_);
    result.outcome = stream->state_.Dropped(holder->index, holder->frame.t_ms, holder->frame.seq,
                                            UnixMs());
    // The waiting frame gets its chance when the next frame arrives.
    stream->busy_ = false;
    if (stream->waiting_) {
      next = std::move(stream->waiting_);
      stream->waiting_.reset();
      stream->busy_ = true;
    } else {
      ended_event = std::exchange(stream->ended_event_, {});
    }
  }
  metrics_->RecordStreamFrame("dropped");
  result.error = Error(ErrorCode::kUnavailable, "the server is busy; retry later");
  result.error_code = "unavailable";
  holder->done(std::move(result));
  TellEnd(key, std::move(ended_event));
  if (next) StartJob(stream, key, std::move(*next));
}

void StreamRegistry::RunJob(const std::shared_ptr<Stream>& stream, const ApiKeyConfig& key,
                            Stream::Pending pending) {
  Result<HashedFrame> hashed =
      HashFrame(pending.frame, stream->policy(), config_.max_pixels, config_.max_jpeg_scans);
  if (!pending.frame.bytes.empty()) {
    matcher::Wipe(std::span<uint8_t>(pending.frame.bytes));
    pending.frame.bytes.clear();
    pending.frame.bytes.shrink_to_fit();
  }
  std::shared_ptr<const matcher::IndexSnapshot> snapshot = index_->Snapshot();
  FrameResult result;
  std::optional<Stream::Pending> next;
  std::function<void(std::string)> on_verdict;
  uint64_t told = 0;  // the listeners' number on_verdict is of
  bool closed = false;
  {
    std::lock_guard lock(stream->mu_);
    // A session that ended meanwhile keeps the state it ended with (which
    // DELETE answered and its "ended" event holds): the frame is not
    // counted, as the frame that waited behind it.
    closed = stream->closed_;
    if (closed) {
      result = ErrorResult(ErrorCode::kNotFound, "not_found", "the stream was closed");
    } else if (!hashed.ok()) {
      result.outcome = stream->state_.Failed(pending.index, pending.frame.t_ms, pending.frame.seq,
                                             hashed.error(), UnixMs());
      result.error = hashed.error();
      result.error_code = std::string(ApiCodeOf(hashed.error().code()));
    } else if (snapshot == nullptr) {
      const Error error(ErrorCode::kUnavailable, "the index is loading");
      result.outcome = stream->state_.Failed(pending.index, pending.frame.t_ms, pending.frame.seq,
                                             error, UnixMs());
      result.error = error;
      result.error_code = "unavailable";
    } else {
      const StreamPolicy& policy = stream->policy();
      const HashedFrame& frame = *hashed;
      std::vector<matcher::Match> found;
      result.outcome = stream->state_.Evaluate(
          pending.index, pending.frame.t_ms, pending.frame.seq, frame.pdq, frame.quality,
          [&](const models::Hash256& hash) {
            found.clear();
            if (policy.dihedral) {
              snapshot->MatchPdqDihedral(frame.variants, policy.radius, &found);
            } else {
              snapshot->MatchPdq(hash, policy.radius, &found);
            }
            if (frame.untrimmed) {
              std::vector<matcher::Match> whole;
              snapshot->MatchPdq(*frame.untrimmed, policy.radius, &whole);
              for (const matcher::Match& m : whole) {
                auto same = std::find_if(found.begin(), found.end(),
                                         [&](const matcher::Match& f) { return f.id == m.id; });
                if (same == found.end()) {
                  found.push_back(m);
                } else if (m.distance < same->distance) {
                  *same = m;
                }
              }
            }
            std::vector<StreamMatch> out;
            out.reserve(found.size());
            for (const matcher::Match& m : found) {
              out.push_back({std::string(m.list), std::string(m.category),
                             std::string(m.reference), m.distance});
              metrics_->RecordMatch(std::string(m.list));
            }
            return out;
          },
          UnixMs());
    }
    // busy_ stays set until this frame's events are out (Finish): the
    // stream's next frame, which may change the verdict again, runs after,
    // and so does the end of a session closed meanwhile.
    if (!result.outcome.verdict_event.empty()) {
      on_verdict = stream->on_verdict_;
      told = stream->listeners_;
      stream->verdict_told_ = true;
    }
  }
  if (closed) {
    if (pending.done) pending.done(std::move(result));
  } else {
    Finish(stream, key, std::move(pending.done), std::move(result), std::move(on_verdict), told);
  }
  std::string ended_event;
  {
    std::lock_guard lock(stream->mu_);
    if (stream->waiting_ && !stream->closed_) {
      next = std::move(stream->waiting_);
      stream->waiting_.reset();
    } else {
      stream->busy_ = false;
      ended_event = std::exchange(stream->ended_event_, {});
    }
  }
  TellEnd(key, std::move(ended_event));
  if (next) StartJob(stream, key, std::move(*next));
}

void StreamRegistry::Finish(const std::shared_ptr<Stream>& stream, const ApiKeyConfig& key,
                            std::function<void(FrameResult)> done, FrameResult result,
                            std::function<void(std::string)> on_verdict, uint64_t told) {
  metrics_->RecordStreamFrame(FrameVerdictName(result.outcome.verdict));
  const std::string verdict_event = result.outcome.verdict_event;
  if (done) done(std::move(result));
  if (!verdict_event.empty()) {
    metrics_->RecordStreamVerdictChange();
    if (on_verdict) on_verdict(verdict_event);
    // Listeners that took over since on_verdict was taken (a second
    // WebSocket) are told too: the takeover closed the socket on_verdict
    // sends to, and that close may have been queued before this event,
    // which the closing socket then drops. A takeover after the check is
    // ordered after the event by the lock (its close is queued after it).
    for (;;) {
      std::function<void(std::string)> current;
      {
        std::lock_guard lock(stream->mu_);
        if (stream->listeners_ == told) break;
        told = stream->listeners_;
        current = stream->on_verdict_;
      }
      if (current) current(verdict_event);
    }
    if (verdict_hook_) verdict_hook_(key, verdict_event);
  }
}

}  // namespace bantay::server
