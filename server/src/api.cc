#include "api.h"

#include <string.h>
#include <strings.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <openssl/evp.h>

#include "bantay/matcher/crypto.h"
#include "bantay/matcher/import_formats.h"
#include "bantay/models/digest.h"
#include "bantay/models/image_hasher.h"
#include "bantay/models/text.h"
#include "compute_pool.h"
#include "index_service.h"
#include "metrics.h"
#include "rate_limiter.h"
#include "stream_session.h"
#include "streams.h"
#include "strict_json.h"

namespace bantay::server {

namespace json = boost::json;
using matcher::Match;
using matcher::SignalType;

// ---------------------------------------------------------------------------
// Errors: the one place that maps error codes to HTTP statuses.

ApiResponse ErrorResponse(int status, std::string_view code, std::string_view message) {
  ApiResponse response;
  response.status = status;
  json::object error;
  error["code"] = code;
  // Messages may quote the request (a query parameter, a list name, a
  // line of a hash list): as printable UTF-8, so that the answer is JSON.
  error["message"] = models::PrintableText(message);
  response.body = json::serialize(json::object{{"error", std::move(error)}});
  if (status == 503) response.retry_after = 1;
  return response;
}

std::optional<ApiResponse> CheckWebSocketHandshake(const WebSocketHandshake& handshake) {
  if (handshake.keys.size() != 1) {
    return ErrorResponse(400, "invalid_argument",
                         "a WebSocket upgrade needs exactly one Sec-WebSocket-Key header");
  }
  // 16 bytes in base64: 22 digits, then the padding "==".
  const std::string_view key = handshake.keys.front();
  auto digit = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/';
  };
  if (key.size() != 24 || !std::all_of(key.begin(), key.begin() + 22, digit) ||
      key.substr(22) != "==") {
    return ErrorResponse(400, "invalid_argument",
                         "Sec-WebSocket-Key must be the base64 of 16 bytes (RFC 6455)");
  }
  // RFC 6455 section 11.3.5: the field appears once in a request.
  if (handshake.versions.size() != 1) {
    return ErrorResponse(400, "invalid_argument",
                         "a WebSocket upgrade needs exactly one Sec-WebSocket-Version header");
  }
  if (handshake.versions.front() != "13") {
    ApiResponse refusal =
        ErrorResponse(426, "upgrade_required", "this server speaks WebSocket version 13 only");
    refusal.upgrade = "websocket";
    return refusal;
  }
  return std::nullopt;
}

int HttpStatusOf(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return 400;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kUnsupportedFormat: return 415;
    case ErrorCode::kTooLarge: return 413;
    case ErrorCode::kCorruptData: return 422;
    case ErrorCode::kPermissionDenied: return 403;
    case ErrorCode::kUnavailable: return 503;
    case ErrorCode::kIo:
    case ErrorCode::kInternal: return 500;
  }
  return 500;
}

std::string_view ErrorCodeOf(int status, ErrorCode code) {
  switch (status) {
    case 403: return "forbidden";
    case 500: return "internal";
    default: return ErrorCodeName(code);
  }
}

ApiResponse ErrorResponse(const Error& error) {
  const int status = HttpStatusOf(error.code());
  if (status == 500) {
    // The details (a database's message, a path) are for the operator's
    // log, not for the client.
    std::fprintf(stderr, "bantay-server: internal error: %s\n", error.ToString().c_str());
    return ErrorResponse(500, "internal", "internal error");
  }
  return ErrorResponse(status, ErrorCodeOf(status, error.code()), error.message());
}

ApiRequest::~ApiRequest() {
  if (!body.empty()) explicit_bzero(body.data(), body.size());
}

namespace {

ApiResponse JsonResponse(int status, const json::value& value) {
  ApiResponse response;
  response.status = status;
  response.body = json::serialize(value);
  return response;
}

ApiResponse BadRequest(std::string_view message) {
  return ErrorResponse(400, "invalid_argument", message);
}

std::string Hex(std::span<const uint8_t> bytes) { return models::ToHex(bytes); }

// Lower-case hex of exactly `out.size()` bytes.
bool ParseHex(std::string_view hex, std::span<uint8_t> out) {
  if (hex.size() != out.size() * 2) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = nibble(hex[2 * i]);
    const int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

// RFC 4648 base64 (standard alphabet, padding optional, no whitespace).
std::optional<std::vector<uint8_t>> DecodeBase64(std::string_view text) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return std::nullopt;
  std::vector<uint8_t> out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else return std::nullopt;
    acc = acc << 6 | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
    }
  }
  return out;
}

template <typename T>
bool ParseNumber(std::string_view s, T* value) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *value);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

void Wipe(std::vector<uint8_t>* bytes) {
  if (!bytes->empty()) matcher::Wipe(std::span<uint8_t>(*bytes));
  bytes->clear();
}

// One image hasher per compute thread and mode (they reuse their buffers).
models::ImageHasher& HasherFor(bool dihedral, int64_t max_pixels, int max_jpeg_scans) {
  thread_local std::unique_ptr<models::ImageHasher> hashers[2];
  std::unique_ptr<models::ImageHasher>& hasher = hashers[dihedral ? 1 : 0];
  if (hasher == nullptr || hasher->options().max_pixels != max_pixels ||
      hasher->options().max_jpeg_scans != max_jpeg_scans) {
    models::HashOptions options;
    options.dihedral = dihedral;
    options.max_pixels = max_pixels;
    options.max_jpeg_scans = max_jpeg_scans;
    hasher = std::make_unique<models::ImageHasher>(options);
  }
  return *hasher;
}

bool IsImageType(std::string_view type) {
  return type.starts_with("image/") || type == "application/octet-stream";
}

// The media types of the bodies a route takes (routes not named take any,
// or no body); others are refused 415 by Api::Admit, before the handler —
// from the header alone when the client waits for 100 Continue. A stream's
// policy is optional: an empty body of any type is no policy.
bool TakesBodyType(RouteId id, std::string_view type, bool body_may_be_empty) {
  switch (id) {
    case RouteId::kMatch:
    case RouteId::kStreamFrames:
      return type == "application/json" || IsImageType(type);
    case RouteId::kMatchBatch:
      return type == "application/json";
    case RouteId::kStreamsPost:
      return body_may_be_empty || type == "application/json";
    case RouteId::kEntriesPost:
      return type == "application/json" || type == "text/plain" || type == "text/csv" ||
             type == "application/x-vpdq+json";
    default:
      return true;
  }
}

ApiResponse UnsupportedType(RouteId id) {
  std::string_view message = "unsupported content type";
  switch (id) {
    case RouteId::kMatch:
      message = "send an image (image/jpeg, image/png, image/webp, image/bmp, image/tiff) "
                "or application/json";
      break;
    case RouteId::kStreamFrames:
      message = "send an image (image/jpeg, image/png, ...) or application/json {\"pdq\": ...}";
      break;
    case RouteId::kMatchBatch: message = "a batch is application/json"; break;
    case RouteId::kStreamsPost: message = "the policy is application/json"; break;
    case RouteId::kEntriesPost:
      message = "entries come as application/json, text/plain (local_file), text/csv or "
                "application/x-vpdq+json";
      break;
    default: break;
  }
  return ErrorResponse(415, "unsupported_format", std::string(message));
}

json::object ListJson(const matcher::ListInfo& list) {
  return {{"name", list.name},
          {"enabled", list.enabled},
          {"description", list.description},
          {"active", list.active},
          {"disabled", list.disabled}};
}

json::object EntryJson(const matcher::StoredEntry& e) {
  return {{"id", e.id},
          {"list", e.list},
          {"type", matcher::SignalTypeName(e.type)},
          {"category", e.category},
          {"reference", e.reference},
          {"source", e.source},
          {"added_by", e.added_by},
          {"added_at", e.added_at},
          {"status", matcher::EntryStatusName(e.status)}};
}

// Strict object reading: unknown members are refused, so that a typo
// ("enable" for "enabled") is not silently ignored.
std::optional<std::string> UnknownMember(const json::object& object,
                                         std::initializer_list<std::string_view> known) {
  for (const auto& member : object) {
    if (std::find(known.begin(), known.end(), member.key()) == known.end()) {
      return std::string(member.key());
    }
  }
  return std::nullopt;
}

struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

// ApiKeyDigest, with SHA-256 fetched once and a digest context per thread:
// OpenSSL 3 otherwise looks the algorithm up and allocates a context on
// every call, which costs more than the digest of a key.
std::array<uint8_t, 32> KeyDigest(std::string_view key) {
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  thread_local const std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  std::array<uint8_t, 32> digest;
  unsigned int size = 0;
  if (kSha256 == nullptr || ctx == nullptr ||
      EVP_DigestInit_ex(ctx.get(), kSha256, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), key.data(), key.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), digest.data(), &size) != 1 || size != digest.size()) {
    return ApiKeyDigest(key);
  }
  return digest;
}

Result<json::object> ParseObject(const std::vector<uint8_t>& body) {
  Result<json::value> value = ParseJson(
      std::string_view(reinterpret_cast<const char*>(body.data()), body.size()), "the body");
  if (!value.ok()) return value.error();
  if (!value->is_object()) {
    return Error(ErrorCode::kInvalidArgument, "the body must be a JSON object");
  }
  return std::move(value->as_object());
}

}  // namespace

// ---------------------------------------------------------------------------

size_t Api::DigestHash::operator()(const std::array<uint8_t, 32>& digest) const {
  size_t hash;
  std::memcpy(&hash, digest.data(), sizeof hash);
  return hash;
}

struct Api::Call {
  ApiRequest request;
  const RouteSpec* route = nullptr;
  std::string list;     // {list}
  std::string id_text;  // {id}
  std::map<std::string, std::string, std::less<>> query;
  const ApiKeyConfig* key = nullptr;
  std::function<void(ApiResponse)> done;

  void Finish(ApiResponse response) {
    response.route = std::string(route->path);
    if (key != nullptr) response.key_id = key->id;
    done(std::move(response));
  }
  std::optional<std::string_view> Query(std::string_view name) const {
    auto it = query.find(name);
    if (it == query.end()) return std::nullopt;
    return std::string_view(it->second);
  }
};

Api::Api(const ServerConfig& config, IndexService* index, ComputePool* compute,
         ComputePool* admin, Metrics* metrics, RateLimiter* limiter, StreamRegistry* streams)
    : config_(config),
      index_(index),
      compute_(compute),
      admin_(admin),
      metrics_(metrics),
      limiter_(limiter),
      streams_(streams) {
  for (const ApiKeyConfig& key : config_.api_keys) {
    keys_.emplace(key.sha256, &key);
  }
}

void Api::Dispatch(ApiRequest request, std::function<void(ApiResponse)> done) {
  auto call = std::make_shared<Call>();
  call->done = std::move(done);
  call->request = std::move(request);
  ApiResponse refusal;
  if (!Admit(*call, &refusal)) {
    if (call->route == nullptr) return call->done(std::move(refusal));
    return call->Finish(std::move(refusal));
  }
  const RouteId id = call->route->id;
  if (id == RouteId::kHealthz) {
    return call->Finish(JsonResponse(200, json::object{{"status", "ok"}}));
  }
  if (id == RouteId::kReadyz) return call->Finish(HandleReadyz());

  if (id == RouteId::kOpenApi) {
    ApiResponse response;
    response.body = std::string(OpenApiDocument());
    return call->Finish(std::move(response));
  }
  if (id == RouteId::kMetrics) {
    metrics_->SetQueueDepth(static_cast<int64_t>(compute_->depth()));
    if (before_metrics_) before_metrics_();
    ApiResponse response;
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    response.body = metrics_->Render();
    return call->Finish(std::move(response));
  }
  if (id == RouteId::kStreamsGet || id == RouteId::kStreamsPost || id == RouteId::kStreamGet ||
      id == RouteId::kStreamDelete || id == RouteId::kStreamFrames ||
      id == RouteId::kStreamSocket) {
    return HandleStream(call);
  }

  const bool change = call->route->method != "GET";
  const bool is_match = id == RouteId::kMatch || id == RouteId::kMatchBatch;
  ComputePool* pool = change && !is_match ? admin_ : compute_;
  if (!pool->TrySubmit([this, call] { Run(call); })) {
    metrics_->RecordOverloaded();
    return call->Finish(ErrorResponse(503, "unavailable", "the server is busy; retry later"));
  }
}

RouteMatch MatchRoute(std::string_view method, std::string_view target) {
  RouteMatch match;
  // The origin form ("/v1/match?dihedral=true"), or the absolute form a
  // server must accept too (RFC 9112 section 3.2.2: "https://host/v1/match"),
  // whose path and query are routed (its host is not compared with this
  // server's names: the connection has already reached it).
  boost::system::result<boost::urls::url_view> url = boost::urls::parse_origin_form(target);
  match.valid = url.has_value();
  if (!match.valid) {
    url = boost::urls::parse_absolute_uri(target);
    // An http(s) URI has a host (RFC 9110 section 4.2.1); its path, if
    // any, starts with "/".
    match.valid = url && (url->scheme_id() == boost::urls::scheme::http ||
                          url->scheme_id() == boost::urls::scheme::https) &&
                  url->has_authority() && !url->host().empty() &&
                  (url->path().empty() || url->is_path_absolute());
  }
  if (!match.valid) return match;
  std::vector<std::string> segments;
  for (auto segment : url->segments()) segments.push_back(segment);

  // Routing: a route matches when its literal segments are equal and every
  // {parameter} segment is non-empty.
  // The templates' segments, split once.
  static const std::vector<std::vector<std::string_view>> kRouteParts = [] {
    std::vector<std::vector<std::string_view>> all;
    for (const RouteSpec& spec : ApiRoutes()) {
      std::vector<std::string_view> parts;
      std::string_view path = spec.path.substr(1);
      while (!path.empty()) {
        const size_t slash = path.find('/');
        parts.push_back(path.substr(0, slash));
        path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
      }
      all.push_back(std::move(parts));
    }
    return all;
  }();
  for (size_t r = 0; r < ApiRoutes().size(); ++r) {
    const RouteSpec& spec = ApiRoutes()[r];
    const std::vector<std::string_view>& parts = kRouteParts[r];
    if (parts.size() != segments.size()) continue;
    bool same = true;
    std::string list, id;
    for (size_t i = 0; i < parts.size() && same; ++i) {
      if (parts[i] == "{list}") {
        list = segments[i];
        same = !list.empty();
      } else if (parts[i] == "{id}") {
        id = segments[i];
        same = !id.empty();
      } else {
        same = parts[i] == segments[i];
      }
    }
    if (!same) continue;
    // HEAD is answered as GET without the body (RFC 9110 section 9.3.2).
    if (spec.method != method && !(method == "HEAD" && spec.method == "GET")) {
      for (std::string_view allowed :
           {spec.method, spec.method == "GET" ? std::string_view("HEAD") : std::string_view()}) {
        if (allowed.empty() || match.allow.find(allowed) != std::string::npos) continue;
        if (!match.allow.empty()) match.allow += ", ";
        match.allow += allowed;
      }
      continue;
    }
    match.route = &spec;
    match.list = std::move(list);
    match.id = std::move(id);
    break;
  }
  if (match.route == nullptr) return match;
  for (auto param : url->params()) {
    match.query.insert_or_assign(std::string(param.key), std::string(param.value));
  }
  return match;
}

std::optional<ApiResponse> Api::Precheck(ApiRequest header,
                                         std::optional<uint64_t> content_length) {
  Call call;
  call.request = std::move(header);
  ApiResponse refusal;
  if (Admit(call, &refusal, Stage::kHeader, content_length)) return std::nullopt;
  if (call.route != nullptr) refusal.route = std::string(call.route->path);
  if (call.key != nullptr) refusal.key_id = call.key->id;
  return refusal;
}

bool Api::Admit(Call& call, ApiResponse* response, Stage stage,
                std::optional<uint64_t> content_length) {
  const ApiRequest& request = call.request;
  RouteMatch match = MatchRoute(request.method, request.target);
  if (!match.valid) {
    *response = BadRequest("the request target is not a valid path");
    return false;
  }
  if (match.route == nullptr) {
    *response = match.allow.empty() ? ErrorResponse(404, "not_found", "no such route")
                                    : ErrorResponse(405, "method_not_allowed",
                                                    "this path takes " + match.allow);
    response->allow = match.allow;
    return false;
  }
  call.route = match.route;
  call.list = std::move(match.list);
  call.id_text = std::move(match.id);
  call.query = std::move(match.query);
  const RouteId id = call.route->id;
  if (id == RouteId::kHealthz || id == RouteId::kReadyz) return true;
  if (shutting_down()) {
    *response = ErrorResponse(503, "unavailable", "the server is shutting down");
    return false;
  }

  const bool needs_key = call.route->roles != 0 &&
                         !(id == RouteId::kMetrics && config_.metrics_public);
  if (!needs_key) return true;
  std::string_view auth = request.authorization;
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.size() <= kBearer.size() ||
      strncasecmp(auth.data(), kBearer.data(), kBearer.size()) != 0) {
    *response = ErrorResponse(401, "unauthenticated",
                              "an API key is required (Authorization: Bearer KEY)");
    return false;
  }
  auth.remove_prefix(kBearer.size());
  auto it = keys_.find(KeyDigest(auth));
  if (it == keys_.end()) {
    *response = ErrorResponse(401, "unauthenticated", "unknown API key");
    return false;
  }
  call.key = it->second;
  if (!call.route->Allows(call.key->role)) {
    *response = ErrorResponse(
        403, "forbidden",
        "the " + std::string(RoleName(call.key->role)) + " role may not use this route");
    return false;
  }
  // From the header, the bucket is looked at: the token is taken when the
  // whole request comes.
  const RateLimiter::Decision decision =
      stage == Stage::kHeader
          ? limiter_->Peek(call.key->id, call.key->rate, call.key->burst, 1.0)
          : limiter_->Take(call.key->id, call.key->rate, call.key->burst, 1.0);
  if (!decision.allowed) {
    metrics_->RecordRateLimited();
    *response = ErrorResponse(429, "rate_limited", "rate limit exceeded");
    response->retry_after = decision.retry_after_seconds;
    return false;
  }
  const bool body_may_be_empty =
      stage == Stage::kHeader ? content_length.value_or(0) == 0 : request.body.empty();
  if (!TakesBodyType(id, request.content_type, body_may_be_empty)) {
    *response = UnsupportedType(id);
    return false;
  }
  return true;
}

void Api::Run(std::shared_ptr<Call> call) {
  ApiResponse response;
  try {
    switch (call->route->id) {
      case RouteId::kMatch: response = HandleMatch(*call); break;
      case RouteId::kMatchBatch: response = HandleBatch(*call); break;
      case RouteId::kIndex: response = HandleIndex(*call); break;
      case RouteId::kIndexProof: response = HandleProof(*call); break;
      case RouteId::kAudit: response = HandleAudit(*call); break;
      case RouteId::kListsGet: response = HandleLists(*call); break;
      case RouteId::kListsPost: response = HandleListsPost(*call); break;
      case RouteId::kListGet: response = HandleList(*call); break;
      case RouteId::kListPatch: response = HandleListPatch(*call); break;
      case RouteId::kEntriesGet: response = HandleEntries(*call); break;
      case RouteId::kEntriesPost: response = HandleEntriesPost(*call); break;
      case RouteId::kEntryGet: response = HandleEntry(*call); break;
      case RouteId::kEntryPatch: response = HandleEntryPatch(*call); break;
      case RouteId::kEntryDelete: response = HandleEntryDelete(*call); break;
      default: response = ErrorResponse(500, "internal", "route without a handler"); break;
    }
  } catch (const std::exception&) {
    // Handlers report errors as values; this is for a bug or an allocation
    // failure, whose text could hold anything, so it is not passed on.
    response = ErrorResponse(500, "internal", "internal error");
  }
  Wipe(&call->request.body);
  call->Finish(std::move(response));
}

ApiResponse Api::HandleReadyz() {
  if (shutting_down()) return ErrorResponse(503, "unavailable", "shutting down");
  if (!index_->ready()) {
    if (index_->load_error()) {
      return ErrorResponse(503, "unavailable",
                           "the index failed to load (retrying; see the server's log)");
    }
    return ErrorResponse(503, "unavailable", "the index is loading");
  }
  if (const std::optional<IndexService::Lag> lag = index_->lag();
      lag && config_.stale_after_ms > 0) {
    const auto behind = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - lag->since);
    if (behind.count() >= config_.stale_after_ms) {
      return ErrorResponse(503, "unavailable",
                           "the index has not followed the store for " +
                               std::to_string(behind.count() / 1000) + " s (it serves version " +
                               std::to_string(index_->Info()->version) +
                               "; see the server's log)");
    }
  }
  return JsonResponse(200, json::object{{"status", "ready"},
                                        {"index_version", index_->Info()->version}});
}

// ---------------------------------------------------------------------------
// Matching

namespace {

struct MatchOptions {
  bool dihedral = false;
  int radius = 31;
  int min_quality = 50;
  int64_t max_pixels = 0;
  int max_jpeg_scans = 0;
  bool lab = false;
};

// What one query found.
struct MatchResult {
  std::vector<std::pair<Match, SignalType>> found;
  std::optional<int> quality;
  bool has_pdq = false;
  bool pdq_checked = false;
  // An image that could not be hashed as a picture but whose exact digests
  // matched: why it has no PDQ hash.
  std::optional<Error> image_error;
};

void MatchDigests(const matcher::IndexSnapshot& snapshot, const models::Md5Digest* md5,
                  const models::Sha256Digest* sha256, MatchResult* result) {
  std::vector<Match> matches;
  if (md5 != nullptr) {
    snapshot.MatchExact(SignalType::kMd5, md5->data(), &matches);
    for (const Match& m : matches) result->found.emplace_back(m, SignalType::kMd5);
  }
  if (sha256 != nullptr) {
    matches.clear();
    snapshot.MatchExact(SignalType::kSha256, sha256->data(), &matches);
    for (const Match& m : matches) result->found.emplace_back(m, SignalType::kSha256);
  }
}

// The search of one query whose PDQ hash (and quality, when the client gave
// it) is known.
void SearchPdq(const matcher::IndexSnapshot& snapshot, const models::Hash256& pdq,
               const std::array<models::Hash256, 8>* variants, const MatchOptions& options,
               MatchResult* result, std::vector<Match>* matches) {
  result->has_pdq = true;
  if (result->quality && *result->quality < options.min_quality) return;
  result->pdq_checked = true;
  matches->clear();
  if (variants != nullptr) {
    snapshot.MatchPdqDihedral(*variants, options.radius, matches);
  } else {
    snapshot.MatchPdq(pdq, options.radius, matches);
  }
  for (const Match& m : *matches) result->found.emplace_back(m, SignalType::kPdq);
}

// One query (an image or a hash) against a snapshot. Errors are for the
// query itself.
Result<MatchResult> MatchOne(const matcher::IndexSnapshot& snapshot, const json::object* hashes,
                             std::vector<uint8_t>* image, const MatchOptions& options) {
  std::optional<models::Hash256> pdq;
  std::array<models::Hash256, 8> variants{};
  bool have_variants = false;
  std::optional<int> quality;
  std::optional<models::Md5Digest> md5;
  std::optional<models::Sha256Digest> sha256;

  if (image != nullptr) {
    models::ImageHasher& hasher =
        HasherFor(options.dihedral, options.max_pixels, options.max_jpeg_scans);
    Result<models::ImageHashes> hashed = hasher.Hash(*image);
    if (!hashed.ok()) {
      // Bytes that cannot be hashed as a picture (damaged, a format Bantay
      // does not decode, over the pixel limit) are still looked up by their
      // exact digests: a listed file must not pass for a mere error. A match
      // is answered (with why there is no PDQ hash); otherwise the error.
      const models::ExactDigests digests = models::ComputeDigests(*image);
      Wipe(image);
      MatchResult result;
      MatchDigests(snapshot, &digests.md5, &digests.sha256, &result);
      if (result.found.empty()) return hashed.error();
      result.has_pdq = true;  // pdq_checked: false
      result.image_error = hashed.error();
      return result;
    }
    Wipe(image);
    pdq = hashed->pdq.hash;
    quality = hashed->pdq.quality;
    if (options.dihedral) {
      variants = hashed->pdq.dihedral;
      have_variants = true;
    }
    md5 = hashed->digests.md5;
    sha256 = hashed->digests.sha256;
  } else {
    int given = 0;
    for (const auto& member : *hashes) {
      const std::string_view key = member.key();
      if (key == "quality") {
        if (!member.value().is_int64() || member.value().as_int64() < 0 ||
            member.value().as_int64() > 100) {
          return Error(ErrorCode::kInvalidArgument, "quality must be an integer 0..100");
        }
        quality = static_cast<int>(member.value().as_int64());
        continue;
      }
      if (key != "pdq" && key != "md5" && key != "sha256") {
        return Error(ErrorCode::kInvalidArgument, "unknown member \"" + std::string(key) + "\"");
      }
      if (!member.value().is_string()) {
        return Error(ErrorCode::kInvalidArgument, std::string(key) + " must be a hex string");
      }
      ++given;
      const std::string_view hex = member.value().as_string();
      if (key == "pdq") {
        Result<models::Hash256> hash = models::Hash256::FromHex(hex);
        if (!hash.ok()) {
          return Error(ErrorCode::kInvalidArgument, "pdq must be 64 hex digits");
        }
        pdq = *hash;
      } else if (key == "md5") {
        models::Md5Digest digest;
        if (!ParseHex(hex, digest)) {
          return Error(ErrorCode::kInvalidArgument, "md5 must be 32 hex digits");
        }
        md5 = digest;
      } else {
        models::Sha256Digest digest;
        if (!ParseHex(hex, digest)) {
          return Error(ErrorCode::kInvalidArgument, "sha256 must be 64 hex digits");
        }
        sha256 = digest;
      }
    }
    if (given != 1) {
      return Error(ErrorCode::kInvalidArgument,
                   "give exactly one of \"pdq\", \"md5\" or \"sha256\"");
    }
    if (quality && !pdq) {
      return Error(ErrorCode::kInvalidArgument, "quality goes with a pdq hash");
    }
    if (pdq && options.dihedral) {
      variants = models::DihedralFromHash(*pdq);
      have_variants = true;
    }
  }

  MatchResult result;
  result.quality = quality;
  std::vector<Match> matches;
  if (pdq) SearchPdq(snapshot, *pdq, have_variants ? &variants : nullptr, options, &result, &matches);
  MatchDigests(snapshot, md5 ? &*md5 : nullptr, sha256 ? &*sha256 : nullptr, &result);
  return result;
}

json::object MatchItemJson(const Match& m, SignalType type, const MatchOptions& options) {
  json::object item{{"list", m.list}, {"category", m.category}, {"ref", m.reference}};
  if (options.lab) {
    item["id"] = m.id;
    item["signal"] = matcher::SignalTypeName(type);
    item["distance"] = m.distance;
    item["variant"] = models::DihedralName(m.variant);
  }
  return item;
}

// A platform answer names each (list, category, ref) once: entries listed
// twice (the same value added twice, or a file matched by PDQ and by MD5)
// would otherwise repeat it, and the ids and signals that tell them apart
// are for lab keys only. Which of result.found to leave out (none for lab
// keys); a set, since a frame of a listed video can match thousands of its
// frames' entries.
std::vector<bool> RepeatedItems(const MatchResult& result, const MatchOptions& options) {
  std::vector<bool> repeated(result.found.size(), false);
  if (options.lab || result.found.size() < 2) return repeated;
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < result.found.size(); ++i) {
    const Match& m = result.found[i].first;
    std::string key;
    key.reserve(m.list.size() + m.category.size() + m.reference.size() + 2);
    key.append(m.list).push_back('\0');
    key.append(m.category).push_back('\0');
    key.append(m.reference);
    repeated[i] = !seen.insert(std::move(key)).second;
  }
  return repeated;
}

json::object ImageErrorJson(const Error& error) {
  return {{"code", ErrorCodeOf(HttpStatusOf(error.code()), error.code())},
          {"message", error.message()}};
}

// The answer object of one query (without index_version).
json::object AnswerJson(const MatchResult& result, const MatchOptions& options) {
  json::array list;
  const std::vector<bool> repeated = RepeatedItems(result, options);
  for (size_t i = 0; i < result.found.size(); ++i) {
    if (repeated[i]) continue;
    list.push_back(MatchItemJson(result.found[i].first, result.found[i].second, options));
  }
  json::object answer;
  answer["match"] = !result.found.empty();
  answer["matches"] = std::move(list);
  if (result.quality) answer["quality"] = *result.quality;
  if (result.has_pdq) answer["pdq_checked"] = result.pdq_checked;
  if (result.image_error) answer["image_error"] = ImageErrorJson(*result.image_error);
  return answer;
}

template <typename T>
void AppendNumber(std::string* out, T value) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  out->append(digits, end);
}

// The text of AnswerJson plus index_version, as json::serialize writes it,
// written directly (a hash-only query is answered without a DOM).
std::string AnswerText(const MatchResult& result, const MatchOptions& options,
                       uint64_t index_version) {
  std::string out;
  out.reserve(128);
  out += result.found.empty() ? "{\"match\":false,\"matches\":[" : "{\"match\":true,\"matches\":[";
  bool first = true;
  const std::vector<bool> repeated = RepeatedItems(result, options);
  for (size_t i = 0; i < result.found.size(); ++i) {
    if (repeated[i]) continue;
    if (!first) out += ',';
    first = false;
    out += json::serialize(MatchItemJson(result.found[i].first, result.found[i].second, options));
  }
  out += ']';
  if (result.quality) {
    out += ",\"quality\":";
    AppendNumber(&out, *result.quality);
  }
  if (result.has_pdq) out += result.pdq_checked ? ",\"pdq_checked\":true" : ",\"pdq_checked\":false";
  if (result.image_error) {
    out += ",\"image_error\":";
    out += json::serialize(ImageErrorJson(*result.image_error));
  }
  out += ",\"index_version\":";
  AppendNumber(&out, index_version);
  out += '}';
  return out;
}

void RecordMatches(const MatchResult& result, Metrics* metrics) {
  for (const auto& [m, type] : result.found) metrics->RecordMatch(std::string(m.list));
}

// Reads dihedral= and radius= (radius only for lab keys).
Result<MatchOptions> ReadMatchOptions(
    const std::map<std::string, std::string, std::less<>>& query, const ApiKeyConfig& key,
    const ServerConfig& config) {
  MatchOptions options;
  options.radius = config.radius;
  options.min_quality = config.min_quality;
  options.max_pixels = config.max_pixels;
  options.max_jpeg_scans = config.max_jpeg_scans;
  options.lab = key.role == Role::kLab;
  for (const auto& [name, value] : query) {
    if (name == "dihedral") {
      if (value == "true" || value == "1") {
        options.dihedral = true;
      } else if (value == "false" || value == "0") {
        options.dihedral = false;
      } else {
        return Error(ErrorCode::kInvalidArgument, "dihedral must be true or false");
      }
    } else if (name == "radius") {
      if (!options.lab) {
        return Error(ErrorCode::kPermissionDenied, "only lab keys may set the radius");
      }
      if (!ParseNumber(value, &options.radius) || options.radius < 0 || options.radius > 64) {
        return Error(ErrorCode::kInvalidArgument, "radius must be an integer 0..64");
      }
    } else {
      return Error(ErrorCode::kInvalidArgument, "unknown query parameter \"" + name + "\"");
    }
  }
  return options;
}

}  // namespace

ApiResponse Api::HandleMatch(Call& call) {
  Result<MatchOptions> options = ReadMatchOptions(call.query, *call.key, config_);
  if (!options.ok()) return ErrorResponse(options.error());
  std::shared_ptr<const matcher::IndexSnapshot> snapshot = index_->Snapshot();
  if (snapshot == nullptr) return ErrorResponse(503, "unavailable", "the index is loading");

  const std::string& type = call.request.content_type;
  Result<MatchResult> result = MatchResult();
  if (type == "application/json") {
    const std::string_view text(reinterpret_cast<const char*>(call.request.body.data()),
                                call.request.body.size());
    if (std::optional<models::Hash256> pdq = PlainPdqQuery(text)) {
      std::optional<std::array<models::Hash256, 8>> variants;
      if (options->dihedral) variants = models::DihedralFromHash(*pdq);
      std::vector<Match> matches;
      SearchPdq(*snapshot, *pdq, variants ? &*variants : nullptr, *options, &*result, &matches);
    } else {
      Result<json::object> body = ParseObject(call.request.body);
      if (!body.ok()) return ErrorResponse(body.error());
      result = MatchOne(*snapshot, &*body, nullptr, *options);
    }
  } else {  // an image type (Admit checked the type)
    result = MatchOne(*snapshot, nullptr, &call.request.body, *options);
  }
  if (!result.ok()) return ErrorResponse(result.error());
  RecordMatches(*result, metrics_);
  ApiResponse response;
  response.body = AnswerText(*result, *options, snapshot->store_version());
  response.verdict = result->found.empty() ? "no_match" : "match";
  return response;
}

ApiResponse Api::HandleBatch(Call& call) {
  Result<MatchOptions> options = ReadMatchOptions(call.query, *call.key, config_);
  if (!options.ok()) return ErrorResponse(options.error());
  Result<json::object> body = ParseObject(call.request.body);
  Wipe(&call.request.body);
  if (!body.ok()) return ErrorResponse(body.error());
  if (std::optional<std::string> unknown = UnknownMember(*body, {"items"})) {
    return BadRequest("unknown member \"" + *unknown + "\"");
  }
  json::value* items_value = body->if_contains("items");
  if (items_value == nullptr || !items_value->is_array()) {
    return BadRequest("a batch is {\"items\": [...]}");
  }
  json::array& items = items_value->as_array();
  if (items.size() > config_.max_batch_items) {
    return ErrorResponse(413, "too_large",
                         "at most " + std::to_string(config_.max_batch_items) +
                             " items in a batch");
  }
  if (static_cast<double>(items.size()) > call.key->burst) {
    return ErrorResponse(413, "too_large",
                         "this key may send at most " +
                             std::to_string(static_cast<uint64_t>(call.key->burst)) +
                             " items in a batch (its rate limit's burst)");
  }
  // The first item was paid for when the request came in.
  if (items.size() > 1) {
    RateLimiter::Decision decision = limiter_->Take(
        call.key->id, call.key->rate, call.key->burst, static_cast<double>(items.size() - 1));
    if (!decision.allowed) {
      // A refused request costs nothing: its first token is given back, and
      // Retry-After is the wait for the whole batch's tokens.
      limiter_->Refund(call.key->id, call.key->burst, 1.0);
      decision = limiter_->Peek(call.key->id, call.key->rate, call.key->burst,
                                static_cast<double>(items.size()));
      metrics_->RecordRateLimited();
      ApiResponse response = ErrorResponse(
          429, "rate_limited", "rate limit exceeded (a batch costs one token per item)");
      response.retry_after = decision.retry_after_seconds;
      return response;
    }
  }
  std::shared_ptr<const matcher::IndexSnapshot> snapshot = index_->Snapshot();
  if (snapshot == nullptr) return ErrorResponse(503, "unavailable", "the index is loading");

  auto to_answer = [&](Result<MatchResult> result) -> Result<json::object> {
    if (!result.ok()) return result.error();
    RecordMatches(*result, metrics_);
    return AnswerJson(*result, *options);
  };
  json::array results;
  bool any_match = false;
  for (json::value& item : items) {
    Result<json::object> answer = Error(ErrorCode::kInvalidArgument, "an item is an object");
    if (item.is_object()) {
      json::object& object = item.as_object();
      if (json::value* image = object.if_contains("image")) {
        if (object.size() != 1 || !image->is_string()) {
          answer = Error(ErrorCode::kInvalidArgument,
                         "an image item is {\"image\": \"<base64>\"} alone");
        } else if (std::optional<std::vector<uint8_t>> bytes =
                       DecodeBase64(image->as_string())) {
          json::string& text = image->as_string();
          explicit_bzero(text.data(), text.size());
          text.clear();
          answer = to_answer(MatchOne(*snapshot, nullptr, &*bytes, *options));
          Wipe(&*bytes);
        } else {
          answer = Error(ErrorCode::kInvalidArgument, "image is not base64");
        }
      } else {
        answer = to_answer(MatchOne(*snapshot, &object, nullptr, *options));
      }
    }
    if (answer.ok()) {
      any_match = any_match || answer->at("match").as_bool();
      results.push_back(std::move(*answer));
    } else {
      const int status = HttpStatusOf(answer.error().code());
      json::object error{{"code", ErrorCodeOf(status, answer.error().code())},
                         {"message", answer.error().message()}};
      results.push_back(json::object{{"status", status}, {"error", std::move(error)}});
    }
  }
  ApiResponse response = JsonResponse(
      200, json::object{{"results", std::move(results)},
                        {"index_version", snapshot->store_version()}});
  response.verdict = any_match ? "match" : "no_match";
  return response;
}

// ---------------------------------------------------------------------------
// Index and audit

ApiResponse Api::HandleIndex(Call&) {
  std::shared_ptr<const IndexInfo> info = index_->Info();
  if (info == nullptr) return ErrorResponse(503, "unavailable", "the index is loading");
  json::array lists;
  for (const matcher::ListInfo& list : info->lists) {
    lists.push_back(json::object{{"name", list.name},
                                 {"enabled", list.enabled},
                                 {"active", list.active},
                                 {"disabled", list.disabled}});
  }
  json::object answer{{"version", info->version},
                      {"entries", json::object{{"pdq", info->entries[0]},
                                               {"md5", info->entries[1]},
                                               {"sha256", info->entries[2]}}},
                      {"lists", std::move(lists)}};
  if (info->root) {
    const matcher::VersionRecord& r = *info->root;
    answer["root"] = json::object{{"version", r.version},
                                  {"created_at", r.created_at},
                                  {"root", Hex(r.root)},
                                  {"active_count", r.active_count},
                                  {"audit_digest", Hex(r.audit_digest)},
                                  {"public_key", matcher::PublicKeyToPem(r.public_key)},
                                  {"signature", Hex(r.signature)}};
    if (r.state_digest) answer["root"].as_object()["state_digest"] = Hex(*r.state_digest);
  }
  return JsonResponse(200, answer);
}

ApiResponse Api::HandleProof(Call& call) {
  uint64_t id = 0;
  if (!ParseNumber(call.id_text, &id)) return BadRequest("the entry id must be a number");
  Result<matcher::InclusionProof> proof = index_->Read<Result<matcher::InclusionProof>>(
      [&](matcher::Store& store) { return store.Prove(id); });
  if (!proof.ok()) return ErrorResponse(proof.error());
  json::array path;
  for (const matcher::Digest32& node : proof->path) path.push_back(json::string(Hex(node)));
  return JsonResponse(200, json::object{{"version", proof->version},
                                        {"entry", id},
                                        {"leaf_index", proof->leaf_index},
                                        {"tree_size", proof->tree_size},
                                        {"leaf_hash", Hex(proof->leaf_hash)},
                                        {"path", std::move(path)},
                                        {"root", Hex(proof->root)}});
}

namespace {

// ?after=ID&limit=N of the paged routes (and nothing else).
struct Page {
  uint64_t after = 0;
  size_t limit = 100;
};
Result<Page> ReadPage(const std::map<std::string, std::string, std::less<>>& query) {
  Page page;
  for (const auto& [name, value] : query) {
    if (name == "after") {
      if (!ParseNumber(value, &page.after)) {
        return Error(ErrorCode::kInvalidArgument, "after must be a number");
      }
    } else if (name == "limit") {
      if (!ParseNumber(value, &page.limit) || page.limit < 1 || page.limit > 1000) {
        return Error(ErrorCode::kInvalidArgument, "limit must be 1..1000");
      }
    } else {
      return Error(ErrorCode::kInvalidArgument, "unknown query parameter \"" + name + "\"");
    }
  }
  return page;
}

}  // namespace

ApiResponse Api::HandleAudit(Call& call) {
  Result<Page> page = ReadPage(call.query);
  if (!page.ok()) return ErrorResponse(page.error());
  const uint64_t after = page->after;
  const size_t limit = page->limit;
  Result<std::vector<matcher::AuditRecord>> records =
      index_->Read<Result<std::vector<matcher::AuditRecord>>>(
          [&](matcher::Store& store) { return store.Audit(after, limit); });
  if (!records.ok()) return ErrorResponse(records.error());
  json::array out;
  for (const matcher::AuditRecord& r : *records) {
    out.push_back(json::object{{"seq", r.seq},
                               {"time", r.time},
                               {"actor", r.actor},
                               {"action", r.action},
                               {"list", r.list},
                               {"count", r.count},
                               {"entries_digest", Hex(r.entries_digest)},
                               {"prev_digest", Hex(r.prev_digest)},
                               {"digest", Hex(r.digest)}});
  }
  return JsonResponse(200, json::object{{"records", std::move(out)}});
}

// ---------------------------------------------------------------------------
// Lists and entries

namespace {

// The lists as the index serves them (IndexInfo: the version served, its
// entries counted from the verified state) — or, while no version is served
// yet, as the store holds them, counted there.
Result<std::vector<matcher::ListInfo>> ServedLists(IndexService& index) {
  if (std::shared_ptr<const IndexInfo> info = index.Info(); info != nullptr) return info->lists;
  return index.Read<Result<std::vector<matcher::ListInfo>>>(
      [](matcher::Store& store) { return store.Lists(); });
}

// One of ServedLists, from a version served at `version` or later (after a
// change: the version it made); otherwise (the list made since, the index
// not caught up) read from the store and counted there.
Result<matcher::ListInfo> ServedList(IndexService& index, const std::string& name,
                                     uint64_t version = 0) {
  if (std::shared_ptr<const IndexInfo> info = index.Info();
      info != nullptr && info->version >= version) {
    for (const matcher::ListInfo& list : info->lists) {
      if (list.name == name) return list;
    }
  }
  return index.Read<Result<matcher::ListInfo>>(
      [&](matcher::Store& store) { return store.List(name); });
}

// The entry `id` of `list`: kNotFound when there is no such entry in that
// list.
Result<matcher::StoredEntry> FindEntry(matcher::Store& store, const std::string& list,
                                       const std::string& id_text) {
  uint64_t id = 0;
  if (!ParseNumber(id_text, &id) || id == 0) {
    return Error(ErrorCode::kInvalidArgument, "the entry id must be a positive number");
  }
  Result<std::vector<matcher::StoredEntry>> entries = store.Entries(list, id - 1, 1);
  if (!entries.ok()) return entries.error();
  if (entries->empty() || entries->front().id != id) {
    return Error(ErrorCode::kNotFound,
                 "no entry " + std::to_string(id) + " in list \"" + list + "\"");
  }
  return std::move(entries->front());
}

matcher::ChangeContext ContextOf(const ApiKeyConfig& key) {
  return {key.id, "api"};
}

ApiResponse VersionResponse(int status, uint64_t version) {
  return JsonResponse(status, json::object{{"version", version}});
}

}  // namespace

ApiResponse Api::HandleLists(Call&) {
  Result<std::vector<matcher::ListInfo>> lists = ServedLists(*index_);
  if (!lists.ok()) return ErrorResponse(lists.error());
  json::array out;
  for (const matcher::ListInfo& list : *lists) out.push_back(ListJson(list));
  return JsonResponse(200, json::object{{"lists", std::move(out)}});
}

ApiResponse Api::HandleList(Call& call) {
  Result<matcher::ListInfo> list = ServedList(*index_, call.list);
  if (!list.ok()) return ErrorResponse(list.error());
  return JsonResponse(200, ListJson(*list));
}

ApiResponse Api::HandleListsPost(Call& call) {
  Result<json::object> body = ParseObject(call.request.body);
  if (!body.ok()) return ErrorResponse(body.error());
  if (std::optional<std::string> unknown = UnknownMember(*body, {"name", "description"})) {
    return BadRequest("unknown member \"" + *unknown + "\"");
  }
  const json::value* name = body->if_contains("name");
  const json::value* description = body->if_contains("description");
  if (name == nullptr || !name->is_string() || name->as_string().empty()) {
    return BadRequest("name must be a non-empty string");
  }
  if (description != nullptr && !description->is_string()) {
    return BadRequest("description must be a string");
  }
  const std::string list_name(name->as_string());
  const std::string text = description ? std::string(description->as_string()) : "";
  Result<uint64_t> version = index_->Change([&](matcher::Store& store) {
    return store.DescribeList(list_name, text, ContextOf(*call.key));
  });
  if (!version.ok()) return ErrorResponse(version.error());
  Result<matcher::ListInfo> list = ServedList(*index_, list_name, *version);
  if (!list.ok()) return ErrorResponse(list.error());
  return JsonResponse(201, json::object{{"version", *version}, {"list", ListJson(*list)}});
}

ApiResponse Api::HandleListPatch(Call& call) {
  Result<json::object> body = ParseObject(call.request.body);
  if (!body.ok()) return ErrorResponse(body.error());
  if (std::optional<std::string> unknown = UnknownMember(*body, {"enabled", "description"})) {
    return BadRequest("unknown member \"" + *unknown + "\"");
  }
  const json::value* enabled = body->if_contains("enabled");
  const json::value* description = body->if_contains("description");
  if (enabled == nullptr && description == nullptr) {
    return BadRequest("give enabled and/or description");
  }
  if (enabled != nullptr && !enabled->is_bool()) return BadRequest("enabled must be a boolean");
  if (description != nullptr && !description->is_string()) {
    return BadRequest("description must be a string");
  }
  Result<uint64_t> version = index_->Change([&](matcher::Store& store) -> Result<uint64_t> {
    Result<matcher::ListInfo> list = store.List(call.list, /*count_entries=*/false);
    if (!list.ok()) return list.error();
    Result<uint64_t> v = store.Version();
    if (description != nullptr && description->as_string() != list->description) {
      v = store.DescribeList(call.list, std::string(description->as_string()),
                             ContextOf(*call.key));
      if (!v.ok()) return v;
    }
    if (enabled != nullptr && enabled->as_bool() != list->enabled) {
      v = store.SetListEnabled(call.list, enabled->as_bool(), ContextOf(*call.key));
    }
    return v;
  });
  if (!version.ok()) return ErrorResponse(version.error());
  Result<matcher::ListInfo> list = ServedList(*index_, call.list, *version);
  if (!list.ok()) return ErrorResponse(list.error());
  return JsonResponse(200, json::object{{"version", *version}, {"list", ListJson(*list)}});
}

ApiResponse Api::HandleEntries(Call& call) {
  Result<Page> page = ReadPage(call.query);
  if (!page.ok()) return ErrorResponse(page.error());
  const uint64_t after = page->after;
  const size_t limit = page->limit;
  Result<std::vector<matcher::StoredEntry>> entries =
      index_->Read<Result<std::vector<matcher::StoredEntry>>>(
          [&](matcher::Store& store) -> Result<std::vector<matcher::StoredEntry>> {
            Result<matcher::ListInfo> list = store.List(call.list, /*count_entries=*/false);
            if (!list.ok()) return list.error();
            return store.Entries(call.list, after, limit);
          });
  if (!entries.ok()) return ErrorResponse(entries.error());
  json::array out;
  for (matcher::StoredEntry& e : *entries) {
    matcher::Wipe(std::span<uint8_t>(e.value));
    out.push_back(EntryJson(e));
  }
  json::object answer{{"entries", std::move(out)}};
  if (entries->size() == limit) {
    answer["next_after"] = entries->back().id;
  } else {
    answer["next_after"] = nullptr;
  }
  return JsonResponse(200, answer);
}

ApiResponse Api::HandleEntry(Call& call) {
  Result<matcher::StoredEntry> entry = index_->Read<Result<matcher::StoredEntry>>(
      [&](matcher::Store& store) { return FindEntry(store, call.list, call.id_text); });
  if (!entry.ok()) return ErrorResponse(entry.error());
  matcher::Wipe(std::span<uint8_t>(entry->value));
  return JsonResponse(200, EntryJson(*entry));
}

ApiResponse Api::HandleEntriesPost(Call& call) {
  bool skip_invalid = false;
  matcher::ImportOptions options;
  options.default_list = call.list;
  options.source_name = "request";
  for (const auto& [name, value] : call.query) {
    if (name == "skip_invalid") {
      if (value != "true" && value != "false") return BadRequest("skip_invalid must be true or false");
      skip_invalid = value == "true";
    } else if (name == "type") {
      Result<SignalType> type = matcher::ParseSignalType(value);
      if (!type.ok()) return BadRequest("type must be pdq, md5 or sha256");
      options.bare_type = *type;
    } else if (name == "category") {
      options.default_category = value;
    } else {
      return BadRequest("unknown query parameter \"" + name + "\"");
    }
  }

  std::vector<matcher::NewEntry> entries;
  std::vector<matcher::LineError> rejected;
  std::string_view action = "import";
  const std::string& type = call.request.content_type;
  if (type == "application/json") {
    action = "add";
    Result<json::object> body = ParseObject(call.request.body);
    if (!body.ok()) return ErrorResponse(body.error());
    json::value* items = body->if_contains("entries");
    if (body->size() != 1 || items == nullptr || !items->is_array()) {
      return BadRequest("the body is {\"entries\": [...]}");
    }
    int number = 0;
    for (const json::value& item : items->as_array()) {
      ++number;
      auto reject = [&](std::string message) {
        rejected.push_back({number, std::move(message)});
      };
      if (!item.is_object()) {
        reject("an entry is an object");
        continue;
      }
      const json::object& object = item.as_object();
      if (std::optional<std::string> unknown =
              UnknownMember(object, {"type", "value", "category", "reference"})) {
        reject("unknown member \"" + *unknown + "\"");
        continue;
      }
      const json::value* t = object.if_contains("type");
      const json::value* v = object.if_contains("value");
      const json::value* c = object.if_contains("category");
      const json::value* r = object.if_contains("reference");
      if (t == nullptr || !t->is_string() || v == nullptr || !v->is_string()) {
        reject("type and value are required strings");
        continue;
      }
      if ((c != nullptr && !c->is_string()) || (r != nullptr && !r->is_string())) {
        reject("category and reference are strings");
        continue;
      }
      // One line of the local_file format says the same and is validated by
      // the same rules as a file import.
      std::string line = std::string(t->as_string()) + " " + std::string(v->as_string());
      std::istringstream in(line);
      matcher::ImportOptions one = options;
      Result<matcher::ParsedImport> parsed = matcher::ParseImport(in, one);
      if (!parsed.ok() || parsed->records.size() != 1) {
        reject(parsed.ok() && !parsed->errors.empty() ? parsed->errors.front().message
                                                      : "not a valid entry");
        continue;
      }
      matcher::NewEntry entry;
      entry.list = call.list;
      entry.type = parsed->records.front().type;
      entry.value = parsed->records.front().value;
      entry.category = c ? std::string(c->as_string()) : options.default_category;
      entry.reference = r ? std::string(r->as_string()) : "";
      if (entry.reference.empty()) {
        reject("reference is required");
        continue;
      }
      entries.push_back(std::move(entry));
    }
  } else {
    if (type == "text/plain") {
      options.format = matcher::ImportFormat::kLocalFile;
    } else if (type == "text/csv") {
      options.format = matcher::ImportFormat::kCsv;
    } else {  // application/x-vpdq+json (Admit checked the type)
      options.format = matcher::ImportFormat::kVpdq;
    }
    std::istringstream in(std::string(
        reinterpret_cast<const char*>(call.request.body.data()), call.request.body.size()));
    Result<matcher::ParsedImport> parsed = matcher::ParseImport(in, options);
    if (!parsed.ok()) return ErrorResponse(parsed.error());
    rejected = std::move(parsed->errors);
    for (matcher::ImportRecord& record : parsed->records) {
      if (record.list != call.list) {
        rejected.push_back({record.line, "the record names list \"" + record.list +
                                             "\", not \"" + call.list + "\""});
        continue;
      }
      matcher::NewEntry entry;
      entry.list = call.list;
      entry.type = record.type;
      entry.value = record.value;
      entry.category = std::move(record.category);
      entry.reference = std::move(record.reference);
      entries.push_back(std::move(entry));
    }
    std::sort(rejected.begin(), rejected.end(),
              [](const matcher::LineError& a, const matcher::LineError& b) {
                return a.line < b.line;
              });
  }

  json::array rejected_json;
  for (const matcher::LineError& e : rejected) {
    rejected_json.push_back(
        json::object{{"line", e.line}, {"message", models::PrintableText(e.message)}});
  }
  if ((!rejected.empty() && !skip_invalid) || entries.empty()) {
    json::object error{{"code", "invalid_entries"},
                       {"message", entries.empty() && rejected.empty()
                                       ? "no entries given"
                                       : std::to_string(rejected.size()) +
                                             " entries are invalid; nothing was added"}};
    return JsonResponse(422, json::object{{"error", std::move(error)},
                                          {"rejected", std::move(rejected_json)}});
  }
  // What the list holds already is not added again (a list imported anew
  // adds only what is new); when nothing is new, nothing changes (200).
  matcher::Store::AddResult result;
  Result<uint64_t> version = index_->Change([&](matcher::Store& store) -> Result<uint64_t> {
    // The index served holds every entry of the store at its version (of
    // any status and list): the store then reads only the rows it names
    // and those changed since, not the whole list.
    // (Its version's record names its history: the store checks it.)
    const std::shared_ptr<const matcher::IndexSnapshot> snapshot = index_->Snapshot();
    const std::shared_ptr<const IndexInfo> info = index_->Info();
    matcher::Store::HeldEntries held;
    if (snapshot != nullptr && snapshot->store_version() > 0 && info != nullptr &&
        info->root && info->root->version == snapshot->store_version()) {
      held.version = snapshot->store_version();
      held.audit_digest = info->root->audit_digest;
      held.covers = [](std::string_view) { return true; };
      held.ids = [&snapshot](const matcher::NewEntry& e, std::vector<uint64_t>* ids) {
        snapshot->HeldIds(e.list, e.type, e.value.data(), ids);
      };
    }
    Result<matcher::Store::AddResult> r = store.AddNewEntries(
        entries, ContextOf(*call.key), action, held.ids ? &held : nullptr);
    if (!r.ok()) return r.error();
    result = std::move(*r);
    return result.version;
  });
  for (matcher::NewEntry& e : entries) matcher::Wipe(std::span<uint8_t>(e.value));
  if (!version.ok()) return ErrorResponse(version.error());
  return JsonResponse(result.added > 0 ? 201 : 200,
                      json::object{{"version", *version},
                                   {"added", result.added},
                                   {"already_present", result.present.size()},
                                   {"rejected", std::move(rejected_json)}});
}

ApiResponse Api::HandleEntryPatch(Call& call) {
  Result<json::object> body = ParseObject(call.request.body);
  if (!body.ok()) return ErrorResponse(body.error());
  const json::value* status = body->if_contains("status");
  if (body->size() != 1 || status == nullptr || !status->is_string() ||
      (status->as_string() != "active" && status->as_string() != "disabled")) {
    return BadRequest("the body is {\"status\": \"active\" | \"disabled\"}");
  }
  const matcher::EntryStatus new_status = status->as_string() == "active"
                                              ? matcher::EntryStatus::kActive
                                              : matcher::EntryStatus::kDisabled;
  Result<uint64_t> version = index_->Change([&](matcher::Store& store) -> Result<uint64_t> {
    Result<matcher::StoredEntry> entry = FindEntry(store, call.list, call.id_text);
    if (!entry.ok()) return entry.error();
    matcher::Wipe(std::span<uint8_t>(entry->value));
    return store.SetEntriesStatus({entry->id}, new_status, ContextOf(*call.key));
  });
  if (!version.ok()) return ErrorResponse(version.error());
  return VersionResponse(200, *version);
}

ApiResponse Api::HandleEntryDelete(Call& call) {
  Result<uint64_t> version = index_->Change([&](matcher::Store& store) -> Result<uint64_t> {
    Result<matcher::StoredEntry> entry = FindEntry(store, call.list, call.id_text);
    if (!entry.ok()) return entry.error();
    matcher::Wipe(std::span<uint8_t>(entry->value));
    return store.RemoveEntries({entry->id}, ContextOf(*call.key));
  });
  if (!version.ok()) return ErrorResponse(version.error());
  return VersionResponse(200, *version);
}

// ---------------------------------------------------------------------------
// Stream sessions

namespace {

ApiResponse FrameErrorResponse(const FrameResult& result) {
  const Error& error = *result.error;
  const int status = result.error_code == "out_of_order" ? 400 : HttpStatusOf(error.code());
  if (status == 500) return ErrorResponse(error);
  return ErrorResponse(status, result.error_code, error.message());
}

// Reads {"pdq":"<64 hex>","quality":q,"t":ms,"seq":n} (every member but
// pdq optional) into *frame; *has_t tells whether t was given.
Status ReadHashFrame(std::string_view text, StreamFrame* frame, bool* has_t) {
  Result<json::value> value = ParseJson(text, "the body");
  if (!value.ok()) return value.error();
  if (!value->is_object()) {
    return Error(ErrorCode::kInvalidArgument, "a hash frame is a JSON object");
  }
  const json::object& object = value->as_object();
  // First, so that an error about another member names the frame.
  if (const json::value* seq = object.if_contains("seq")) {
    if (!seq->is_int64() || seq->as_int64() < 0 || seq->as_int64() > UINT32_MAX) {
      return Error(ErrorCode::kInvalidArgument, "seq must be an integer 0..4294967295");
    }
    frame->seq = static_cast<uint32_t>(seq->as_int64());
  }
  if (std::optional<std::string> unknown = UnknownMember(object, {"pdq", "quality", "t", "seq"})) {
    return Error(ErrorCode::kInvalidArgument, "unknown member \"" + *unknown + "\"");
  }
  const json::value* pdq = object.if_contains("pdq");
  if (pdq == nullptr || !pdq->is_string()) {
    return Error(ErrorCode::kInvalidArgument, "pdq must be 64 hex digits");
  }
  Result<models::Hash256> hash = models::Hash256::FromHex(pdq->as_string());
  if (!hash.ok()) return Error(ErrorCode::kInvalidArgument, "pdq must be 64 hex digits");
  frame->kind = StreamFrame::Kind::kHash;
  frame->pdq = *hash;
  frame->quality = 100;
  if (const json::value* q = object.if_contains("quality")) {
    if (!q->is_int64() || q->as_int64() < 0 || q->as_int64() > 100) {
      return Error(ErrorCode::kInvalidArgument, "quality must be an integer 0..100");
    }
    frame->quality = static_cast<int>(q->as_int64());
  }
  *has_t = false;
  if (const json::value* t = object.if_contains("t")) {
    if (!t->is_int64() || t->as_int64() < 0) {
      return Error(ErrorCode::kInvalidArgument, "t must be a non-negative integer (ms)");
    }
    frame->t_ms = t->as_int64();
    *has_t = true;
  }
  return {};
}

}  // namespace

Status ParseHashFrameMessage(std::string_view text, StreamFrame* frame, bool* has_t) {
  if (text.size() > kMaxStreamJsonBytes) {
    return Error(ErrorCode::kTooLarge, "a hash frame is at most " +
                                           std::to_string(kMaxStreamJsonBytes) + " bytes");
  }
  return ReadHashFrame(text, frame, has_t);
}

std::optional<models::Hash256> PlainPdqQuery(std::string_view body) {
  size_t i = 0;
  auto skip_space = [&] {
    while (i < body.size() &&
           (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r')) {
      ++i;
    }
  };
  auto expect = [&](std::string_view token) {
    skip_space();
    if (body.substr(i, token.size()) != token) return false;
    i += token.size();
    return true;
  };
  if (!expect("{") || !expect("\"pdq\"") || !expect(":") || !expect("\"")) return std::nullopt;
  const std::string_view hex = body.substr(i, 64);
  i += 64;
  // The closing quote right after the digits: a space there would be part
  // of the string, which is then not a hash.
  if (hex.size() != 64 || i >= body.size() || body[i] != '"') return std::nullopt;
  ++i;
  if (!expect("}")) return std::nullopt;
  skip_space();
  if (i != body.size()) return std::nullopt;
  Result<models::Hash256> hash = models::Hash256::FromHex(hex);
  if (!hash.ok()) return std::nullopt;
  return *hash;
}

void Api::HandleStream(const std::shared_ptr<Call>& call) {
  const RouteId id = call->route->id;
  if (id == RouteId::kStreamsPost) return call->Finish(HandleStreamsPost(*call));
  if (id == RouteId::kStreamFrames) return HandleStreamFrame(call);
  if (id == RouteId::kStreamSocket) {
    ApiResponse response = ErrorResponse(
        426, "upgrade_required", "this route is a WebSocket (Connection: Upgrade, Upgrade: websocket)");
    response.upgrade = "websocket";
    return call->Finish(std::move(response));
  }
  if (!call->query.empty()) {
    return call->Finish(BadRequest("unknown query parameter \"" + call->query.begin()->first + "\""));
  }
  if (id == RouteId::kStreamsGet) {
    // Each state is JSON text already; at most streams.max_per_key of them.
    ApiResponse response;
    response.body = R"({"streams":[)";
    bool first = true;
    for (const std::shared_ptr<Stream>& stream : streams_->List(*call->key)) {
      if (!first) response.body += ',';
      first = false;
      response.body += stream->StateJson();
    }
    response.body += "]}";
    return call->Finish(std::move(response));
  }
  std::shared_ptr<Stream> stream = id == RouteId::kStreamGet
                                       ? streams_->Find(call->id_text, *call->key)
                                       : streams_->Remove(call->id_text, *call->key);
  if (stream == nullptr) {
    return call->Finish(ErrorResponse(404, "not_found", "no such stream"));
  }
  ApiResponse response;
  response.body = stream->StateJson();
  call->Finish(std::move(response));
}

ApiResponse Api::HandleStreamsPost(Call& call) {
  if (!call.query.empty()) {
    return BadRequest("unknown query parameter \"" + call.query.begin()->first + "\"");
  }
  const std::vector<uint8_t>& body = call.request.body;
  // Parsed here, on the I/O thread: small.
  if (body.size() > kMaxStreamJsonBytes) {
    return ErrorResponse(413, "too_large",
                         "a policy is at most " + std::to_string(kMaxStreamJsonBytes) + " bytes");
  }
  PolicyLimits limits;
  limits.max_radius = config_.radius;
  limits.min_quality = config_.min_quality;
  limits.lab = call.key->role == Role::kLab;
  Result<StreamPolicy> policy = ParseStreamPolicy(
      std::string_view(reinterpret_cast<const char*>(body.data()), body.size()), limits);
  if (!policy.ok()) return ErrorResponse(policy.error());
  StreamRegistry::CreateError error = StreamRegistry::CreateError::kNone;
  std::shared_ptr<Stream> stream = streams_->Create(*call.key, *policy, &error);
  if (stream == nullptr) {
    ApiResponse response = ErrorResponse(
        429, "too_many_streams",
        error == StreamRegistry::CreateError::kTooManyForKey
            ? "this key has " + std::to_string(config_.streams_max_per_key) +
                  " streams open (streams.max_per_key); end one first (GET /v1/streams lists them)"
            : "the server has " + std::to_string(config_.streams_max_total) +
                  " streams open (streams.max_total)");
    // An abandoned stream is gone after the idle timeout.
    response.retry_after = static_cast<int>(config_.streams_idle_timeout_s);
    return response;
  }
  json::object answer;
  answer["id"] = stream->id();
  answer["policy"] = json::parse(StreamPolicyJson(stream->policy()));
  answer["expires_after_s"] = config_.streams_idle_timeout_s;
  answer["ws"] = "/v1/streams/" + stream->id() + "/ws";
  return JsonResponse(201, answer);
}

void Api::HandleStreamFrame(const std::shared_ptr<Call>& call) {
  std::shared_ptr<Stream> stream = streams_->Find(call->id_text, *call->key);
  if (stream == nullptr) return call->Finish(ErrorResponse(404, "not_found", "no such stream"));
  StreamFrame frame;
  bool has_t = false;
  for (const auto& [name, value] : call->query) {
    if (name != "t") return call->Finish(BadRequest("unknown query parameter \"" + name + "\""));
    if (!ParseNumber(value, &frame.t_ms) || frame.t_ms < 0) {
      return call->Finish(BadRequest("t must be a non-negative integer (ms of stream time)"));
    }
    has_t = true;
  }
  const std::string& type = call->request.content_type;
  if (type == "application/json") {
    bool json_t = false;
    const int64_t query_t = frame.t_ms;
    Status read = ParseHashFrameMessage(
        std::string_view(reinterpret_cast<const char*>(call->request.body.data()),
                         call->request.body.size()),
        &frame, &json_t);
    if (!read.ok()) return call->Finish(ErrorResponse(read.error()));
    if (json_t && has_t && frame.t_ms != query_t) {
      return call->Finish(BadRequest("t is given twice, with different values"));
    }
    has_t = has_t || json_t;
  } else {  // an image type (Admit checked the type)
    if (call->request.body.empty()) return call->Finish(BadRequest("the body is empty"));
    frame.kind = StreamFrame::Kind::kEncoded;
    frame.bytes = std::move(call->request.body);
    call->request.body.clear();
  }
  if (!has_t) frame.t_ms = stream->StreamTimeNow();
  streams_->Submit(stream, *call->key, std::move(frame), [call](FrameResult result) {
    // Out of order, undecodable, or refused by a full compute queue (503,
    // counted as dropped).
    if (result.error) return call->Finish(FrameErrorResponse(result));
    ApiResponse response;
    response.body = std::move(result.outcome.frame_event);
    response.verdict = std::string(FrameVerdictName(result.outcome.verdict));
    call->Finish(std::move(response));
  });
}

Api::SocketGrant Api::OpenStreamSocket(const ApiRequest& request) {
  SocketGrant grant;
  Call call;
  call.request.method = request.method;
  call.request.target = request.target;
  call.request.authorization = request.authorization;
  if (!Admit(call, &grant.error)) {
    if (call.route != nullptr) grant.error.route = std::string(call.route->path);
    return grant;
  }
  grant.error.route = std::string(call.route->path);
  if (call.key != nullptr) grant.error.key_id = call.key->id;
  if (call.route->id != RouteId::kStreamSocket) {
    grant.error = ErrorResponse(400, "invalid_argument",
                                "only /v1/streams/{id}/ws takes a WebSocket upgrade");
    grant.error.route = std::string(call.route->path);
    return grant;
  }
  if (!call.query.empty()) {
    grant.error = BadRequest("unknown query parameter \"" + call.query.begin()->first + "\"");
    grant.error.route = std::string(call.route->path);
    return grant;
  }
  grant.stream = streams_->Find(call.id_text, *call.key);
  if (grant.stream == nullptr) {
    grant.error = ErrorResponse(404, "not_found", "no such stream");
    grant.error.route = std::string(call.route->path);
    grant.error.key_id = call.key->id;
    return grant;
  }
  grant.key = call.key;
  return grant;
}

bool Api::TakeFrameToken(const ApiKeyConfig& key, int* retry_after) {
  const RateLimiter::Decision decision = limiter_->Take(key.id, key.rate, key.burst, 1.0);
  if (!decision.allowed) {
    metrics_->RecordRateLimited();
    *retry_after = decision.retry_after_seconds;
  }
  return decision.allowed;
}

}  // namespace bantay::server
