// StreamRegistry: the live stream sessions of a server (POST /v1/streams
// and its sub-routes, the WebSocket route), each a StreamState
// (stream_session.h) behind a lock, with its frame pipeline.
//
// Sessions are found by a random 128-bit id and belong to the API key that
// created them (another key's lookup finds nothing). There are at most
// max_per_key per key and max_total in all; a session with no frame for
// idle_timeout_s is removed by Sweep.
//
// Frame pipeline: a frame is sampled (or not) on arrival, on the caller's
// thread, without any decoding. A sampled frame is hashed and matched on the
// compute pool. Per stream, at most one frame is in the pool (waiting or
// running) and one waits in the session for it; a frame arriving when both
// places are taken replaces the waiting one, which is answered "dropped". So
// a stream never holds more than two frames, whatever a client sends.
//
// Thread safety: every method is thread-safe. Callbacks (frame results,
// verdict listeners, close listeners) run on whatever thread finished the
// work, never under a lock of the registry or of a stream.
#ifndef BANTAY_SERVER_STREAMS_H_
#define BANTAY_SERVER_STREAMS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bantay/models/hash256.h"
#include "bantay/models/status.h"
#include "bantay/server/config.h"
#include "stream_session.h"

namespace bantay::server {

class ComputePool;
class IndexService;
class Metrics;

// One frame as it arrives: encoded image bytes, raw pixels, or a hash the
// client computed.
struct StreamFrame {
  StreamFrame() = default;
  StreamFrame(StreamFrame&&) = default;
  StreamFrame& operator=(StreamFrame&&) = default;
  ~StreamFrame();  // the bytes are overwritten

  enum class Kind { kEncoded, kRaw, kHash };
  Kind kind = Kind::kEncoded;
  int64_t t_ms = 0;
  std::optional<uint32_t> seq;
  std::vector<uint8_t> bytes;  // kEncoded, kRaw
  int width = 0, height = 0, channels = 0;  // kRaw
  bool rgb = false;                         // kRaw: R, G, B order (else B, G, R)
  models::Hash256 pdq;                      // kHash
  int quality = 100;                        // kHash
};

// What became of a frame. `error` is set when the frame was refused
// (out_of_order: nothing counted) or could not be processed (the HTTP route
// answers it); `outcome.frame_event` is set whenever the frame was counted
// (the WebSocket route sends it).
struct FrameResult {
  std::optional<Error> error;
  std::string error_code;  // the API error code of `error`
  FrameOutcome outcome;
};

class Stream {
 public:
  Stream(std::string id, std::string owner, StreamPolicy policy, bool lab, int64_t now_unix_ms,
         int64_t now_steady_ms);

  const std::string& id() const { return id_; }
  const std::string& owner() const { return owner_; }
  const StreamPolicy& policy() const { return policy_; }
  std::string StateJson() const;
  // Milliseconds since the session was created (the stream time of a frame
  // sent without one).
  int64_t StreamTimeNow() const;

  // Why a stream's listeners are told to close.
  enum class CloseReason { kEnded, kShutdown, kReplaced };
  // `on_verdict` is called with each verdict event (JSON text) after it
  // happened, `on_close` once when the session ends (deleted or expired,
  // or the server shutting down) or when another pair of listeners takes
  // over (kReplaced: a second WebSocket to the same stream). Returns the
  // listeners' number for ClearListeners, or 0 when the stream is closed
  // already (the listeners are not kept).
  uint64_t SetListeners(std::function<void(std::string)> on_verdict,
                        std::function<void(CloseReason)> on_close);
  // Removes the listeners numbered `number`, if they are still the
  // stream's (a replaced connection that ends leaves its successor's).
  void ClearListeners(uint64_t number);

 private:
  friend class StreamRegistry;
  struct Pending {
    StreamFrame frame;
    uint64_t index = 0;
    std::function<void(FrameResult)> done;
  };

  const std::string id_;
  const std::string owner_;
  const ApiKeyConfig* key_ = nullptr;  // the owner's (the server's configuration); set by Create
  const StreamPolicy policy_;
  const int64_t created_steady_ms_;
  uint64_t created_number_ = 0;  // the registry's count of sessions created, with this one
  std::atomic<int64_t> last_activity_ms_;  // steady clock

  mutable std::mutex mu_;
  StreamState state_;                        // guarded by mu_
  bool busy_ = false;                        // a frame is in the pool; mu_
  std::optional<Pending> waiting_;           // mu_
  bool closed_ = false;                      // mu_
  std::function<void(std::string)> on_verdict_;  // mu_
  std::function<void(CloseReason)> on_close_;     // mu_
  uint64_t listeners_ = 0;                        // their number; mu_
  bool verdict_told_ = false;  // a verdict event went out (so its end is told); mu_
  // The "ended" event of a session closed while a frame was in the pool:
  // told once that frame's events are out (so nothing follows it); mu_
  std::string ended_event_;
};

class StreamRegistry {
 public:
  // Called on every stream verdict change with the owner key and the
  // verdict event (the webhook's body), and when a session whose verdict
  // changed at least once ends, with its "ended" event (EndedJson: deleted,
  // expired, or the server shutting down).
  using VerdictHook = std::function<void(const ApiKeyConfig& key, const std::string& event)>;

  StreamRegistry(const ServerConfig& config, IndexService* index, ComputePool* compute,
                 Metrics* metrics);

  enum class CreateError { kNone, kTooManyForKey, kTooManyInAll };
  // A new session for `key`; null with *error set when a limit is reached.
  std::shared_ptr<Stream> Create(const ApiKeyConfig& key, StreamPolicy policy,
                                 CreateError* error);
  // The session `id` of `key`; null when there is none (or another key's).
  std::shared_ptr<Stream> Find(std::string_view id, const ApiKeyConfig& key);
  // Every session of `key`, in the order they were created.
  std::vector<std::shared_ptr<Stream>> List(const ApiKeyConfig& key) const;
  // Removes and closes the session; null as Find.
  std::shared_ptr<Stream> Remove(std::string_view id, const ApiKeyConfig& key);

  // Runs a frame through the stream's pipeline; `done` is called exactly
  // once (possibly before Submit returns). `key` must outlive the call's
  // work (it is the server's configuration).
  void Submit(const std::shared_ptr<Stream>& stream, const ApiKeyConfig& key, StreamFrame frame,
              std::function<void(FrameResult)> done);

  // Removes sessions idle for longer than the idle timeout; how many.
  size_t Sweep();
  // Closes and removes every session (shutdown).
  void CloseAll();
  size_t active() const;

  void SetVerdictHook(VerdictHook hook) { verdict_hook_ = std::move(hook); }

 private:
  void StartJob(const std::shared_ptr<Stream>& stream, const ApiKeyConfig& key,
                Stream::Pending pending);
  void RunJob(const std::shared_ptr<Stream>& stream, const ApiKeyConfig& key,
              Stream::Pending pending);
  enum class EndReason { kDeleted, kExpired, kShutdown };
  void Close(const std::shared_ptr<Stream>& stream, EndReason reason);
  // Answers a frame that ran, then tells the listener and the hook about a
  // verdict change (after the frame's own event): `on_verdict`, the
  // listeners numbered `told`, and any that took over since.
  void Finish(const std::shared_ptr<Stream>& stream, const ApiKeyConfig& key,
              std::function<void(FrameResult)> done, FrameResult result,
              std::function<void(std::string)> on_verdict, uint64_t told);
  // Gives the hook a session's deferred "ended" event (none when empty).
  void TellEnd(const ApiKeyConfig& key, std::string ended_event);
  // The end of a stream's turn in the pool whose job was dropped unrun.
  void EndTurn(const std::shared_ptr<Stream>& stream, const ApiKeyConfig& key);
  int64_t IdleTimeoutMs() const;

  const ServerConfig& config_;
  IndexService* index_;
  ComputePool* compute_;
  Metrics* metrics_;
  VerdictHook verdict_hook_;  // set before serving

  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Stream>> streams_;  // mu_
  std::unordered_map<std::string, size_t> per_key_;                    // mu_
  uint64_t created_ = 0;  // sessions created; mu_
};

}  // namespace bantay::server

#endif  // BANTAY_SERVER_STREAMS_H_
