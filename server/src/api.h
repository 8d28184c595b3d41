// Api: routing, authentication, roles, rate limits and the handlers of API
// v1, independent of the transport. The session (http_server.cc) hands it a
// parsed request; the answer comes back through a callback.
//
// Thread safety: Dispatch is called on I/O threads concurrently; handlers
// that cost run on the compute pool or the admin pool, never on the caller.
#ifndef BANTAY_SERVER_API_H_
#define BANTAY_SERVER_API_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bantay/models/hash256.h"
#include "bantay/models/status.h"
#include "bantay/server/config.h"
#include "bantay/server/routes.h"

namespace bantay::server {

class ComputePool;
class IndexService;
class Metrics;
class RateLimiter;
class Stream;
class StreamRegistry;

struct ApiRequest {
  ApiRequest() = default;
  ApiRequest(ApiRequest&&) = default;
  ApiRequest& operator=(ApiRequest&&) = default;
  // The body may hold an image: it is overwritten whatever the answer was.
  ~ApiRequest();

  std::string method;  // upper case
  std::string target;  // path and query as received
  std::string content_type;  // media type, lower case, without parameters
  std::string authorization;
  std::vector<uint8_t> body;
};

struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  int retry_after = 0;  // seconds; 0: no Retry-After header
  std::string allow;    // for 405
  // For 426: the protocol to switch to (an Upgrade header, and for
  // "websocket" Sec-WebSocket-Version: 13; RFC 9110 section 15.5.22, RFC
  // 6455 section 4.2.2).
  std::string upgrade;
  // For the access log and metrics: the route template ("unmatched" when
  // none), the key id ("" when none) and the verdict ("match", "no_match"
  // or "" when the request was not a match).
  std::string route = "unmatched";
  std::string key_id;
  std::string verdict;
  // The client's X-Request-Id, echoed and logged (set by the connection).
  std::string request_id;
};

// The JSON error body of API v1.
ApiResponse ErrorResponse(int status, std::string_view code, std::string_view message);
// The HTTP status and error code for an Error (the one place that maps them).
int HttpStatusOf(ErrorCode code);
std::string_view ErrorCodeOf(int status, ErrorCode code);
ApiResponse ErrorResponse(const Error& error);

// Where a request goes. The target is in the origin form
// ("/v1/match?dihedral=true") or the absolute form (RFC 9112 section 3.2.2:
// "https://host/v1/match", routed by path and query); `valid` is false for
// anything else (400). `route` is the route of that path and method, with
// its {list} and {id} segments and query parameters; nullptr when there is
// none: then `allow` names the methods the path takes (405), or is empty
// (404).
struct RouteMatch {
  bool valid = false;
  const RouteSpec* route = nullptr;
  std::string allow;
  std::string list;
  std::string id;
  std::map<std::string, std::string, std::less<>> query;
};
RouteMatch MatchRoute(std::string_view method, std::string_view target);

// The fields of a WebSocket opening handshake (RFC 6455 section 4.2.1)
// that an upgrade request (GET, HTTP/1.1, one Host, Connection: Upgrade,
// Upgrade: websocket: checked before) may still get wrong: exactly one
// Sec-WebSocket-Key, the base64 of 16 bytes, and exactly one
// Sec-WebSocket-Version, 13. The refusal (400 invalid_argument; 426
// upgrade_required for one other version) when the handshake is bad.
struct WebSocketHandshake {
  std::vector<std::string_view> keys;      // the Sec-WebSocket-Key fields
  std::vector<std::string_view> versions;  // the Sec-WebSocket-Version fields
};
std::optional<ApiResponse> CheckWebSocketHandshake(const WebSocketHandshake& handshake);

struct StreamFrame;
// The JSON bodies of the stream routes (a policy, a hash frame) are read on
// the I/O thread, so they are kept small: 413 beyond.
inline constexpr size_t kMaxStreamJsonBytes = 16 * 1024;
// Reads a hash frame, {"pdq":"<64 hex>","quality":q,"t":ms,"seq":n} (all
// but pdq optional), as POST /v1/streams/{id}/frames and the WebSocket's
// text messages take it; *has_t tells whether t was given. kTooLarge over
// kMaxStreamJsonBytes.
Status ParseHashFrameMessage(std::string_view text, StreamFrame* frame, bool* has_t);

// The body of the most common query, {"pdq":"<64 hex digits>"} (JSON
// whitespace allowed between tokens), read without building a DOM. nullopt
// for anything else, which then takes the general JSON path; for a body it
// reads, that path would read the same hash.
std::optional<models::Hash256> PlainPdqQuery(std::string_view body);

class Api {
 public:
  Api(const ServerConfig& config, IndexService* index, ComputePool* compute,
      ComputePool* admin, Metrics* metrics, RateLimiter* limiter, StreamRegistry* streams);

  // Routes, authenticates, checks the role and the rate limit, then runs the
  // handler. `done` is called exactly once, on whatever thread finished.
  void Dispatch(ApiRequest request, std::function<void(ApiResponse)> done);
  // For a request whose client waits for 100 Continue before it sends the
  // body: the refusal Dispatch would answer from the header alone (route,
  // method, key, role, shutting down, an empty rate-limit bucket, a media
  // type the route does not take), so that no body is sent for nothing;
  // nullopt when the body is worth reading. No token is taken (Dispatch
  // takes one a request). `content_length`: the header's, if it has one
  // (a chunked body may be empty).
  std::optional<ApiResponse> Precheck(ApiRequest header,
                                      std::optional<uint64_t> content_length);

  // A WebSocket upgrade request for GET /v1/streams/{id}/ws: routed,
  // authenticated, role- and rate-checked like any request. Either
  // `stream` and `key` are set (upgrade), or `error` is the answer.
  struct SocketGrant {
    std::shared_ptr<Stream> stream;
    const ApiKeyConfig* key = nullptr;
    ApiResponse error;
  };
  SocketGrant OpenStreamSocket(const ApiRequest& request);
  // One frame message of a stream's WebSocket costs a token of the key's
  // rate limit; false (and *retry_after) when the bucket is empty.
  bool TakeFrameToken(const ApiKeyConfig& key, int* retry_after);

  // Called before each GET /metrics renders (to copy in counters kept
  // elsewhere). Set before serving.
  void SetBeforeMetrics(std::function<void()> fn) { before_metrics_ = std::move(fn); }

  // From now on, answer 503 to everything but health checks.
  void BeginShutdown() { shutting_down_.store(true); }
  bool shutting_down() const { return shutting_down_.load(); }

 private:
  struct Call;
  void Run(std::shared_ptr<Call> call);
  ApiResponse HandleMatch(Call& call);
  ApiResponse HandleBatch(Call& call);
  ApiResponse HandleIndex(Call& call);
  ApiResponse HandleProof(Call& call);
  ApiResponse HandleAudit(Call& call);
  ApiResponse HandleLists(Call& call);
  ApiResponse HandleListsPost(Call& call);
  ApiResponse HandleList(Call& call);
  ApiResponse HandleListPatch(Call& call);
  ApiResponse HandleEntries(Call& call);
  ApiResponse HandleEntriesPost(Call& call);
  ApiResponse HandleEntry(Call& call);
  ApiResponse HandleEntryPatch(Call& call);
  ApiResponse HandleEntryDelete(Call& call);
  ApiResponse HandleReadyz();
  // The stream routes: sessions are created, read and removed on the
  // calling (I/O) thread, which only touches the registry; frames go to the
  // compute pool through the registry.
  void HandleStream(const std::shared_ptr<Call>& call);
  ApiResponse HandleStreamsPost(Call& call);
  void HandleStreamFrame(const std::shared_ptr<Call>& call);
  // Routing, authentication, role, rate limit and body media type of
  // `call` (whose request is set); false when *response holds the refusal.
  // kHeader: only the header has come (see Precheck): the rate limit is
  // looked at, not taken, and the body's length is `content_length`.
  enum class Stage { kRequest, kHeader };
  bool Admit(Call& call, ApiResponse* response, Stage stage = Stage::kRequest,
             std::optional<uint64_t> content_length = std::nullopt);

  const ServerConfig& config_;
  IndexService* index_;
  ComputePool* compute_;
  ComputePool* admin_;
  Metrics* metrics_;
  RateLimiter* limiter_;
  StreamRegistry* streams_;
  std::function<void()> before_metrics_;
  struct DigestHash {
    size_t operator()(const std::array<uint8_t, 32>& digest) const;
  };
  // SHA-256 of a key -> its configuration.
  std::unordered_map<std::array<uint8_t, 32>, const ApiKeyConfig*, DigestHash> keys_;
  std::atomic<bool> shutting_down_{false};
};

}  // namespace bantay::server

#endif  // BANTAY_SERVER_API_H_
