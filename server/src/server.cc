// The transport: one io_context run by io_threads threads, a listener, and a
// session per connection whose handlers run one at a time (on a strand of its
// own when there are several I/O threads, after the Beast examples), over TLS
// or, when the configuration allows it, plain TCP.
#include "bantay/server/server.h"

#include <omp.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <ctime>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/json.hpp>
#include <openssl/ssl.h>

#include "api.h"
#include "bantay/models/text.h"
#include "compute_pool.h"
#include "forwarded.h"
#include "index_service.h"
#include "metrics.h"
#include "rate_limiter.h"
#include "streams.h"
#include "webhook.h"

namespace bantay::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// One JSON line per answered request: route template, status, latency, key
// id, verdict, the connection's peer address and port. Never a body, a hash
// or a raw path (which could carry anything a client put there).
class AccessLog {
 public:
  explicit AccessLog(const std::string& where) {
    if (where.empty()) return;
    if (where == "-") {
      file_ = stderr;
    } else {
      // 0640 when created: it tells which key got matches when.
      const int fd = ::open(where.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
      file_ = fd >= 0 ? ::fdopen(fd, "a") : nullptr;
      if (fd >= 0 && file_ == nullptr) ::close(fd);
      owned_ = file_ != nullptr;
    }
  }
  ~AccessLog() {
    if (owned_) std::fclose(file_);
  }
  bool failed_to_open(const std::string& where) const { return !where.empty() && !file_; }

  void Write(std::string_view method, const ApiResponse& response, double seconds,
             std::string_view peer, std::string_view client) {
    if (file_ == nullptr) return;
    boost::json::object line{{"time", static_cast<int64_t>(std::time(nullptr))},
                             {"peer", peer},
                             {"method", method},
                             {"route", response.route},
                             {"status", response.status},
                             {"latency_us", static_cast<int64_t>(seconds * 1e6)}};
    if (!client.empty()) line["client"] = client;
    if (!response.key_id.empty()) line["key"] = response.key_id;
    if (!response.verdict.empty()) line["verdict"] = response.verdict;
    if (!response.request_id.empty()) line["request_id"] = response.request_id;
    std::string text = boost::json::serialize(line);
    text += '\n';
    std::lock_guard lock(mu_);
    std::fwrite(text.data(), 1, text.size(), file_);
    // Buffered, but never more than a second behind.
    const auto now = Clock::now();
    if (now - last_flush_ > std::chrono::seconds(1)) {
      std::fflush(file_);
      last_flush_ = now;
    }
  }
  void Flush() {
    std::lock_guard lock(mu_);
    if (file_ != nullptr) std::fflush(file_);
  }

 private:
  std::mutex mu_;
  std::FILE* file_ = nullptr;
  bool owned_ = false;
  Clock::time_point last_flush_ = Clock::now();
};

Result<std::shared_ptr<ssl::context>> MakeTlsContext(const ServerConfig& config) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                   ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  // Request bytes (images) are not left in OpenSSL's record buffers.
  SSL_CTX_set_options(ctx->native_handle(), SSL_OP_CLEANSE_PLAINTEXT);
  // Resumed sessions need a context id when client certificates are
  // verified (OpenSSL refuses the resumption otherwise).
  static constexpr unsigned char kSessionContext[] = "bantay";
  SSL_CTX_set_session_id_context(ctx->native_handle(), kSessionContext,
                                 sizeof(kSessionContext) - 1);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(config.tls_cert, ec);
  if (ec) {
    return Error(ErrorCode::kInvalidArgument,
                 "tls.cert " + config.tls_cert + ": " + ec.message());
  }
  ctx->use_private_key_file(config.tls_key, ssl::context::pem, ec);
  if (ec) {
    return Error(ErrorCode::kInvalidArgument, "tls.key " + config.tls_key + ": " + ec.message());
  }
  if (!config.tls_client_ca.empty()) {
    ctx->load_verify_file(config.tls_client_ca, ec);
    if (ec) {
      return Error(ErrorCode::kInvalidArgument,
                   "tls.client_ca " + config.tls_client_ca + ": " + ec.message());
    }
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  }
  return ctx;
}

// Overwrites `size` bytes (an empty buffer's data may be null, which
// explicit_bzero must not be given).
void Wipe(void* data, size_t size) {
  if (size > 0) explicit_bzero(data, size);
}

// The read buffer holds request bytes (images) before the parser copies
// them into the body: its memory is overwritten before it is returned.
template <typename T>
struct WipingAllocator {
  using value_type = T;
  WipingAllocator() = default;
  template <typename U>
  WipingAllocator(const WipingAllocator<U>&) {}  // NOLINT: allocator rebinding
  T* allocate(size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, size_t n) {
    Wipe(p, n * sizeof(T));
    std::allocator<T>().deallocate(p, n);
  }
  bool operator==(const WipingAllocator&) const { return true; }
};
using ReadBuffer = beast::basic_flat_buffer<WipingAllocator<char>>;

std::string MediaType(std::string_view value) {
  value = value.substr(0, value.find(';'));
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  std::string out(value);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

void AppendHeader(std::string* out, std::string_view name, std::string_view value) {
  out->append(name);
  out->append(": ");
  out->append(value);
  out->append("\r\n");
}

void AppendNumber(std::string* out, uint64_t value) {
  char digits[20];
  const auto result = std::to_chars(digits, digits + sizeof digits, value);
  out->append(digits, result.ptr);
}

// The whole HTTP/1.x answer into *out (whose storage is reused): status
// line, headers, and the body unless the request was HEAD (whose answer
// carries the Content-Length a GET would get). `keep_alive` as Beast's
// message::keep_alive writes it: "Connection: close" in HTTP/1.1,
// "Connection: keep-alive" in HTTP/1.0.
void FormatResponse(const ApiResponse& response, unsigned version, bool keep_alive, bool head,
                    std::string* out) {
  out->clear();
  out->append(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  AppendNumber(out, static_cast<uint64_t>(response.status));
  out->push_back(' ');
  const std::string_view reason =
      http::obsolete_reason(static_cast<http::status>(response.status));
  out->append(reason.data(), reason.size());
  out->append("\r\n");
  AppendHeader(out, "Server", "bantay");
  AppendHeader(out, "Content-Type", response.content_type);
  AppendHeader(out, "Cache-Control", "no-store");
  AppendHeader(out, "X-Content-Type-Options", "nosniff");
  if (response.retry_after > 0) {
    out->append("Retry-After: ");
    AppendNumber(out, static_cast<uint64_t>(response.retry_after));
    out->append("\r\n");
  }
  if (!response.allow.empty()) AppendHeader(out, "Allow", response.allow);
  if (!response.request_id.empty()) AppendHeader(out, "X-Request-Id", response.request_id);
  // RFC 9110 section 11.6.1: a 401 names the scheme (RFC 6750: Bearer).
  if (response.status == 401) AppendHeader(out, "WWW-Authenticate", "Bearer realm=\"bantay\"");
  std::string_view connection;
  if (version == 10 && keep_alive) connection = "keep-alive";
  if (version != 10 && !keep_alive) connection = "close";
  if (!response.upgrade.empty()) {
    // An Upgrade header comes with the upgrade option in Connection (RFC
    // 9110 section 7.8).
    AppendHeader(out, "Upgrade", response.upgrade);
    if (response.upgrade == "websocket") AppendHeader(out, "Sec-WebSocket-Version", "13");
    connection = connection.empty() ? "upgrade" : connection == "close" ? "close, upgrade"
                                                                        : "keep-alive, upgrade";
  }
  if (!connection.empty()) AppendHeader(out, "Connection", connection);
  out->append("Content-Length: ");
  AppendNumber(out, response.body.size());
  out->append("\r\n\r\n");
  if (!head) out->append(response.body);
}

// The connection's peer; nullopt when it is gone already.
std::optional<tcp::endpoint> PeerOf(const tcp::socket& socket) {
  beast::error_code ec;
  const tcp::endpoint peer = socket.remote_endpoint(ec);
  if (ec) return std::nullopt;
  return peer;
}

// "192.0.2.7:51234", "[2001:db8::7]:51234"; "-" for a peer gone already.
std::string PeerText(const std::optional<tcp::endpoint>& peer) {
  if (!peer) return "-";
  const std::string address = peer->address().to_string();
  return (peer->address().is_v6() ? "[" + address + "]" : address) + ":" +
         std::to_string(peer->port());
}

// A client's X-Request-Id, to correlate its records with the server's log:
// 1 to 128 characters of letters, digits and . _ ~ : @ / + = - (anything
// else is ignored: it goes into a header and a log line). An id holding 32
// or more hex digits in a row is ignored too: it may be a digest of the
// content (an MD5, a SHA-256, a PDQ hash), which the log never holds.
std::string RequestId(std::string_view value) {
  if (value.empty() || value.size() > 128) return {};
  size_t hex_run = 0;
  for (char c : value) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) ||
                    std::string_view("._~:@/+=-").find(c) != std::string_view::npos;
    if (!ok) return {};
    hex_run = std::isxdigit(static_cast<unsigned char>(c)) ? hex_run + 1 : 0;
    if (hex_run >= 32) return {};
  }
  return std::string(value);
}

}  // namespace

// ---------------------------------------------------------------------------

// Timeouts: a session sets a deadline for what it waits for (the TLS
// handshake, the next request, a request's bytes, the client reading the
// answer) and clears it while the request is being computed; one timer per
// server sweeps the sessions every kSweepInterval and closes those whose
// deadline has passed. (A timer per session operation, as beast::tcp_stream
// arms, costs a timer queue insertion, a cancellation and a completion per
// read and per write.)
constexpr auto kSweepInterval = std::chrono::milliseconds(50);
constexpr Clock::rep kNoDeadline = std::numeric_limits<Clock::rep>::max();

class SessionBase : public std::enable_shared_from_this<SessionBase> {
 public:
  virtual ~SessionBase() = default;
  // Close when idle, or after the answer in flight (on the session's
  // executor).
  virtual void Drain() = 0;
  // Closes the connection if its deadline has passed (on the session's
  // executor: the deadline may have moved meanwhile).
  virtual void Expire() = 0;

  bool Expired(Clock::time_point now) const {
    return deadline_.load(std::memory_order_relaxed) <= now.time_since_epoch().count();
  }

 protected:
  void SetDeadline(std::chrono::milliseconds timeout) {
    deadline_.store((Clock::now() + timeout).time_since_epoch().count(),
                    std::memory_order_relaxed);
  }
  void ClearDeadline() { deadline_.store(kNoDeadline, std::memory_order_relaxed); }

 private:
  // Clock::time_point::rep; written by the session's handlers, read by the
  // sweep.
  std::atomic<Clock::rep> deadline_{kNoDeadline};
};

struct Server::Impl {
  explicit Impl(ServerConfig c)
      : config(std::move(c)),
        index(config, &metrics),
        streams(config, &index, &compute, &metrics),
        api(config, &index, &compute, &admin, &metrics, &limiter, &streams),
        compute(config.compute_threads > 0 ? config.compute_threads
                                           : static_cast<int>(std::max(
                                                 1u, std::thread::hardware_concurrency())),
                config.queue_limit,
                [] {
                  pthread_setname_np(pthread_self(), "bantay-compute");
                  omp_set_num_threads(1);
                }),
        admin(1, config.admin_queue_limit,
              [] {
                RunBehindMatching();  // before the name: a thread so named runs behind
                pthread_setname_np(pthread_self(), "bantay-admin");
                omp_set_num_threads(1);
              }),
        log(config.access_log),
        // Validated before: neither can fail here.
        trusted_proxies(TrustedProxies::Parse(config.trusted_proxies).value()),
        proxy_header(ParseProxyHeader(config.proxy_header).value()),
        ioc(config.io_threads),
        work(asio::make_work_guard(ioc)) {}

  void Accept();
  void StartSession(tcp::socket socket);
  void Sweep();
  void Register(SessionBase* session, std::weak_ptr<SessionBase> weak) {
    std::lock_guard lock(sessions_mu);
    sessions.emplace(session, std::move(weak));
  }
  void Unregister(SessionBase* session) {
    std::lock_guard lock(sessions_mu);
    sessions.erase(session);
  }
  std::shared_ptr<ssl::context> Tls() {
    std::lock_guard lock(tls_mu);
    return tls;
  }

  const ServerConfig config;
  Metrics metrics;
  RateLimiter limiter;
  IndexService index;
  // Before the pools too: their jobs refer to them.
  StreamRegistry streams;
  // Stream verdict changes of keys with a webhook_url; null when no key has
  // one. Secrets by key id (read at start).
  std::unique_ptr<WebhookSender> webhooks;
  std::unordered_map<std::string, std::string> webhook_secrets;
  // Declared before the pools so that it outlives their queued jobs, which
  // refer to it.
  Api api;
  ComputePool compute;
  ComputePool admin;
  AccessLog log;
  const TrustedProxies trusted_proxies;
  const ProxyHeader proxy_header;

  uint16_t port = 0;
  std::vector<std::thread> threads;
  std::atomic<size_t> connections{0};

  std::mutex tls_mu;
  std::shared_ptr<ssl::context> tls;  // null for plain HTTP; guarded by tls_mu

  std::mutex sessions_mu;
  std::unordered_map<SessionBase*, std::weak_ptr<SessionBase>> sessions;  // sessions_mu

  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stop_requested = false;  // guarded by stop_mu
  bool stopped = false;         // guarded by stop_mu

  // Last, so that it is destroyed first: handlers still queued when it is
  // destroyed release their sessions, whose destructors use the members
  // above.
  asio::io_context ioc;
  // Keeps the threads running until Wait stops them, so that whatever is
  // posted while draining (a session's Drain) is still run.
  asio::executor_work_guard<asio::io_context::executor_type> work;
  // The acceptor and its retry timer live on one strand (the close in Wait
  // is posted to it).
  asio::strand<asio::io_context::executor_type> accept_strand{ioc.get_executor()};
  tcp::acceptor acceptor{accept_strand};
  asio::steady_timer accept_retry{accept_strand};
  asio::steady_timer sweep_timer{accept_strand};
  Clock::time_point last_stream_sweep = Clock::now();  // on accept_strand
};

namespace {

// Stream: ssl::stream<tcp::socket> or tcp::socket (plain HTTP).
template <typename Stream>
class Session : public SessionBase {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, tcp::socket>;

  Session(Server::Impl* server, tcp::socket socket, std::shared_ptr<ssl::context> tls)
      : server_(server),
        peer_endpoint_(PeerOf(socket)),
        peer_(PeerText(peer_endpoint_)),
        tls_(std::move(tls)),
        stream_(MakeStream(std::move(socket))) {
    if constexpr (kTls) {
      // Asio asks OpenSSL to free a connection's record buffers whenever
      // they are empty, i.e. after every request and every answer: each
      // time 17 kB wiped (SSL_OP_CLEANSE_PLAINTEXT), freed and allocated
      // again. They are kept for the connection's life instead (still
      // wiped when freed; each record's plaintext is wiped once read).
      SSL_clear_mode(stream_.native_handle(), SSL_MODE_RELEASE_BUFFERS);
    }
  }

  ~Session() override {
    server_->Unregister(this);
    server_->connections.fetch_sub(1);
    server_->metrics.AddConnections(-1);
  }

  void Start() {
    asio::dispatch(stream_.get_executor(), [self = Self()] { self->Begin(); });
  }

  void Drain() override {
    asio::post(stream_.get_executor(), [self = Self()] {
      self->draining_ = true;
      if (self->ws_) return self->CloseSocket(websocket::close_code::going_away);
      if (self->waiting_ || self->lingering_) {
        beast::error_code ec;
        self->Socket().cancel(ec);
      }
    });
  }

  void Expire() override {
    asio::post(stream_.get_executor(), [self = Self()] {
      if (!self->Expired(Clock::now())) return;
      self->Abort();
      // A WebSocket whose close handshake did not end in time: its
      // operations may be waiting on each other inside Beast, where closing
      // the socket does not reach them (a read that fails the connection,
      // on a frame that is not UTF-8 say, waits for the write side that
      // async_close holds while async_close waits for the read side: seen
      // by the http fuzzer as a connection never released). The stream
      // goes, and with it the operations parked in it (with their handlers,
      // which own this session); those still on the socket end with
      // operation_aborted.
      if (self->ws_closing_ && self->ws_) {
        self->ws_.reset();
        self->EndSocket();
      }
    });
  }

 private:
  Stream MakeStream(tcp::socket socket) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *tls_);
    } else {
      return socket;
    }
  }
  std::shared_ptr<Session> Self() {
    return std::static_pointer_cast<Session>(shared_from_this());
  }
  tcp::socket& Socket() {
    if constexpr (kTls) {
      return stream_.next_layer();
    } else {
      return stream_;
    }
  }

  void Begin() {
    if constexpr (kTls) {
      SetDeadline(std::chrono::milliseconds(server_->config.read_timeout_ms));
      stream_.async_handshake(ssl::stream_base::server,
                              [self = Self()](beast::error_code ec) {
                                if (ec) return self->Abort();
                                self->ReadNext();
                              });
    } else {
      ReadNext();
    }
  }

  // Waits for the first byte of the next request (idle timeout), then reads
  // the whole request under the read timeout: a client that trickles its
  // request is cut off after read_timeout_ms whatever it sends.
  void ReadNext() {
    if (draining_ || server_->api.shutting_down()) return Close();
    request_id_.clear();
    client_.clear();
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_->config.max_header_bytes));
    parser_->body_limit(server_->config.max_body_bytes);
    if (buffer_.size() > 0) return ReadRequest();
    waiting_ = true;
    SetDeadline(std::chrono::milliseconds(server_->config.idle_timeout_ms));
    stream_.async_read_some(buffer_.prepare(kFirstRead),
                            [self = Self()](beast::error_code ec, size_t n) {
                              self->waiting_ = false;
                              if (ec || self->draining_) return self->Close();
                              self->buffer_.commit(n);
                              self->ReadRequest();
                            });
  }

  void ReadRequest() {
    SetDeadline(std::chrono::milliseconds(server_->config.read_timeout_ms));
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = Self()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code header_ec) {
    if (header_ec) return OnRead(header_ec);
    request_id_ = RequestId(parser_->get()["X-Request-Id"]);
    ReadClient();
    // RFC 9112 section 3.2: one Host field in HTTP/1.1 (and at most one in
    // HTTP/1.0), else 400; from the header, before any body is read.
    const size_t hosts = parser_->get().count(http::field::host);
    if (hosts > 1 || (hosts == 0 && parser_->get().version() >= 11)) {
      ClearDeadline();
      start_ = Clock::now();
      return Fail(400, "invalid_argument", "a request needs exactly one Host header");
    }
    if (parser_->is_done()) return OnRead(header_ec);
    if (WantsContinue()) {
      // The client waits for this before it sends the body (curl does for
      // bodies over 1 MB, for a second; RFC 9110 section 10.1.1). Under the
      // request's read deadline. A request refused from its header alone
      // gets its answer instead, and the body is not read: the connection
      // closes (after dropping what the client sends anyway).
      const auto& request = parser_->get();
      ApiRequest header;
      header.method = std::string(request.method_string());
      header.target = std::string(request.target());
      header.authorization = std::string(request[http::field::authorization]);
      header.content_type = MediaType(request[http::field::content_type]);
      std::optional<uint64_t> length;
      if (parser_->content_length()) length = *parser_->content_length();
      if (std::optional<ApiResponse> refusal = server_->api.Precheck(std::move(header), length)) {
        // A client that sends its body anyway (RFC 9110 lets it, after a
        // while) has all of it dropped before the close, so that the
        // answer is not lost to a reset (what is dropped is what comes
        // on the socket: with TLS's framing, a little more than the body).
        drop_limit_ = kMaxDropped + static_cast<size_t>(parser_->content_length().value_or(0));
        keep_alive_ = false;
        version_ = request.version();
        start_ = Clock::now();
        head_ = request.method() == http::verb::head;
        method_ = std::string(request.method_string());
        parser_.reset();
        return Write(std::move(*refusal));
      }
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = Self()](beast::error_code ec, size_t) {
                          if (ec) return self->OnRead(ec);
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  // From a trusted proxy, the client it names (forwarded.h), per request:
  // a proxy's connection carries many clients' requests in turn.
  void ReadClient() {
    if (server_->trusted_proxies.empty() || !peer_endpoint_) return;
    const auto& request = parser_->get();
    std::vector<std::string_view> fields;
    const auto [first, last] = request.equal_range(ProxyHeaderName(server_->proxy_header));
    for (auto field = first; field != last; ++field) fields.push_back(field->value());
    client_ = ForwardedClient(server_->trusted_proxies, server_->proxy_header,
                              peer_endpoint_->address(), fields)
                  .value_or("");
  }

  // Expect: 100-continue in an HTTP/1.1 request whose body has not started
  // to come (a client that sent some already does not wait).
  bool WantsContinue() const {
    const auto& request = parser_->get();
    if (request.version() != 11 || buffer_.size() > 0) return false;
    const auto expect = request.find(http::field::expect);
    return expect != request.end() && beast::iequals(expect->value(), "100-continue");
  }

  // A body of known length (an image, typically) is read straight into the
  // request's body, which is sized once from Content-Length (already
  // checked against max_body_bytes by the parser). Through the parser each
  // body byte would be read into buffer_ first, then copied into the body as
  // it grows. Chunked bodies take the parser's way.
  void ReadBody() {
    if (parser_->chunked() || !parser_->content_length()) {
      http::async_read(stream_, buffer_, *parser_,
                       [self = Self()](beast::error_code ec, size_t) { self->OnRead(ec); });
      return;
    }
    const size_t length = static_cast<size_t>(*parser_->content_length());
    std::vector<uint8_t>& body = parser_->get().body();
    body.resize(length);
    const size_t have = std::min(buffer_.size(), length);
    asio::buffer_copy(asio::buffer(body.data(), have), buffer_.data());
    buffer_.consume(have);  // its storage is wiped in OnRead
    asio::async_read(stream_, asio::buffer(body.data() + have, length - have),
                     [self = Self()](beast::error_code ec, size_t) {
                       // The body is whole: the parser, which saw only the
                       // header, is not asked to finish.
                       self->OnRead(ec == asio::error::eof ? http::error::partial_message : ec);
                     });
  }

  void OnRead(beast::error_code ec) {
    ClearDeadline();
    start_ = Clock::now();
    if (ec == http::error::body_limit) {
      return Fail(413, "too_large",
                  "the body is over " + std::to_string(server_->config.max_body_bytes) + " bytes");
    }
    if (ec == http::error::header_limit) {
      return Fail(431, "header_too_large",
                  "the header is over " + std::to_string(server_->config.max_header_bytes) +
                      " bytes");
    }
    if (ec && ec.category() == http::make_error_code(http::error::bad_target).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return Fail(400, "invalid_argument", "malformed HTTP request: " + ec.message());
    }
    // A timeout, a reset or a close: there is nobody to answer.
    if (ec) return Abort();

    auto& request = parser_->get();
    if (websocket::is_upgrade(request)) return Upgrade();
    keep_alive_ = request.keep_alive();
    version_ = request.version();
    head_ = request.method() == http::verb::head;
    method_ = std::string(request.method_string());
    ApiRequest api_request;
    api_request.method = method_;
    api_request.target = std::string(request.target());
    api_request.content_type = MediaType(request[http::field::content_type]);
    api_request.authorization = std::string(request[http::field::authorization]);
    api_request.body = std::move(request.body());
    parser_.reset();
    ForgetRequestBytes();
    server_->api.Dispatch(std::move(api_request), [self = Self()](ApiResponse response) {
      asio::post(self->stream_.get_executor(),
                 [self, response = std::move(response)]() mutable {
                   self->Write(std::move(response));
                 });
    });
  }

  // The bytes of the request just read must not outlive it in the read
  // buffer: a large buffer is given back (wiped by its allocator), a small
  // one is wiped in place; what is left (the start of a pipelined request)
  // is moved to fresh storage.
  void ForgetRequestBytes() {
    if (buffer_.size() > 0) {
      ReadBuffer rest;
      rest.commit(asio::buffer_copy(rest.prepare(buffer_.size()), buffer_.data()));
      buffer_ = std::move(rest);
    } else if (buffer_.capacity() > kKeptBufferBytes) {
      buffer_ = ReadBuffer();
    } else {
      buffer_.clear();
      const size_t capacity = buffer_.capacity();
      Wipe(buffer_.prepare(capacity).data(), capacity);
    }
  }

  // Answers a request that could not be read whole or is malformed, then
  // closes.
  void Fail(int status, std::string_view code, const std::string& message) {
    keep_alive_ = false;
    version_ = 11;
    // An answer to HEAD has no body, whatever its status.
    const bool header = parser_ && parser_->is_header_done();
    head_ = header && parser_->get().method() == http::verb::head;
    method_ = header ? std::string(parser_->get().method_string()) : std::string("-");
    parser_.reset();
    Write(ErrorResponse(status, code, message));
  }

  // The answer is formatted here into one buffer (status line, headers and
  // body) and written with one TLS record write where it fits.
  void Write(ApiResponse api_response) {
    api_response.request_id = request_id_;
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    server_->metrics.RecordRequest(api_response.route, api_response.status, seconds);
    server_->log.Write(method_, api_response, seconds, peer_, client_);

    keep_open_ = keep_alive_ && !draining_;
    FormatResponse(api_response, version_, keep_open_, head_, &out_);
    SetDeadline(std::chrono::milliseconds(server_->config.read_timeout_ms));
    asio::async_write(stream_, asio::buffer(out_), [self = Self()](beast::error_code ec, size_t) {
      self->ClearDeadline();
      if (ec) return self->Abort();
      if (!self->keep_open_) return self->Close();
      self->ReadNext();
    });
  }

  // -------------------------------------------------------------------------
  // WebSocket: GET /v1/streams/{id}/ws upgraded on this connection (RFC
  // 6455), after the same routing, authentication and rate limit as any
  // request. Frames in, JSON events out; the session's deadline is off and
  // the WebSocket's own timeouts (and pings) apply.

  void Upgrade() {
    auto& request = parser_->get();
    version_ = request.version();
    head_ = false;
    method_ = std::string(request.method_string());
    ApiRequest api_request;
    api_request.method = method_;
    api_request.target = std::string(request.target());
    api_request.authorization = std::string(request[http::field::authorization]);
    Api::SocketGrant grant = server_->api.OpenStreamSocket(api_request);
    if (grant.stream == nullptr) {
      keep_alive_ = false;
      parser_.reset();
      return Write(std::move(grant.error));
    }
    WebSocketHandshake handshake;
    for (const auto& field : request) {
      if (field.name() == http::field::sec_websocket_key) handshake.keys.push_back(field.value());
      if (field.name() == http::field::sec_websocket_version) {
        handshake.versions.push_back(field.value());
      }
    }
    // Refused here, with the API's JSON error, rather than by Beast's
    // accept (a text/plain answer).
    if (std::optional<ApiResponse> refusal = CheckWebSocketHandshake(handshake)) {
      refusal->route = std::move(grant.error.route);
      refusal->key_id = grant.key->id;
      keep_alive_ = false;
      parser_.reset();
      return Write(std::move(*refusal));
    }
    ws_stream_ = std::move(grant.stream);
    ws_key_ = grant.key;
    upgrade_ = parser_->release();
    // Beast's accept would answer Expect: 100-continue with a 100 before
    // the 101 (the session has sent one already if the request had a
    // body to wait for).
    upgrade_->erase(http::field::expect);
    parser_.reset();
    // The handshake's bytes (its key) go, wiped by the allocator; so do
    // bytes read beyond it: frames sent before the 101, which RFC 6455
    // section 4.1 forbids.
    buffer_ = ReadBuffer();
    ws_.emplace(stream_);
    ws_->read_message_max(server_->config.max_body_bytes);
    ws_->auto_fragment(false);
    websocket::stream_base::timeout timeout;
    timeout.handshake_timeout = std::chrono::milliseconds(server_->config.read_timeout_ms);
    timeout.idle_timeout = std::chrono::milliseconds(server_->config.idle_timeout_ms);
    timeout.keep_alive_pings = true;
    ws_->set_option(timeout);
    ws_->set_option(websocket::stream_base::decorator(
        [](websocket::response_type& response) { response.set(http::field::server, "bantay"); }));
    ClearDeadline();
    ws_->async_accept(*upgrade_, [self = Self()](beast::error_code ec) {
      self->upgrade_.reset();
      ApiResponse logged;
      // The handshake was checked before: the answer is the 101 (an error
      // here is the connection's, while it was written; logged as any
      // answer whose write failed).
      logged.status = 101;
      logged.route = "/v1/streams/{id}/ws";
      logged.key_id = self->ws_key_->id;
      const double seconds = std::chrono::duration<double>(Clock::now() - self->start_).count();
      self->server_->metrics.RecordRequest(logged.route, logged.status, seconds);
      self->server_->log.Write(self->method_, logged, seconds, self->peer_, self->client_);
      if (ec) return self->EndSocket();
      self->OnSocketOpen();
    });
  }

  void OnSocketOpen() {
    ws_open_ = true;
    std::weak_ptr<Session> weak = Self();
    auto executor = stream_.get_executor();
    ws_listeners_ = ws_stream_->SetListeners(
        [weak, executor](std::string event) {
          asio::post(executor, [weak, event = std::move(event)]() mutable {
            if (auto self = weak.lock()) self->Send(std::move(event));
          });
        },
        [weak, executor](server::Stream::CloseReason reason) {
          asio::post(executor, [weak, reason] {
            if (auto self = weak.lock()) {
              // Replaced: another WebSocket to this stream took over (the
              // events go there): 1008.
              self->CloseSocket(reason == server::Stream::CloseReason::kShutdown
                                    ? websocket::close_code::going_away
                                : reason == server::Stream::CloseReason::kReplaced
                                    ? websocket::close_code::policy_error
                                    : websocket::close_code::normal);
            }
          });
        });
    const bool open = ws_listeners_ != 0;
    if (close_pending_) return CloseSocket(close_code_);
    if (!open || draining_) {
      return CloseSocket(draining_ ? websocket::close_code::going_away
                                   : websocket::close_code::normal);
    }
    ReadMessage();
  }

  void ReadMessage() {
    if (ws_closing_) return;
    if (out_queue_.size() >= kMaxQueuedEvents) {
      // The client does not read its events: stop reading its frames
      // until it does (Send resumes).
      read_paused_ = true;
      return;
    }
    reading_ = true;
    ws_->async_read(ws_buffer_, [self = Self()](beast::error_code ec, size_t) {
      self->reading_ = false;
      // (Without ws_ when Expire released it after this read had ended.)
      if (ec || !self->ws_) return self->EndSocket();
      self->OnMessage();
      self->ReadMessage();
    });
  }

  void OnMessage() {
    const bool binary = ws_->got_binary();
    const auto data = ws_buffer_.data();
    const std::span<const uint8_t> bytes(static_cast<const uint8_t*>(data.data()), data.size());
    StreamFrame frame;
    std::optional<Error> error;
    if (binary) {
      Status read = ReadBinaryFrame(bytes, &frame);
      if (!read.ok()) error = read.error();
    } else {
      bool has_t = false;
      Status read = ParseHashFrameMessage(
          std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), &frame,
          &has_t);
      if (!read.ok()) {
        error = read.error();
      } else if (!has_t) {
        frame.t_ms = ws_stream_->StreamTimeNow();
      }
    }
    // The message (an image) does not stay in the read buffer.
    Wipe(ws_buffer_.data().data(), ws_buffer_.size());
    ws_buffer_.consume(ws_buffer_.size());
    if (ws_buffer_.capacity() > kKeptBufferBytes) ws_buffer_ = ReadBuffer();
    if (error) return SendError(frame.seq, ErrorCodeName(error->code()), error->message());
    int retry_after = 0;
    if (!server_->api.TakeFrameToken(*ws_key_, &retry_after)) {
      return SendError(frame.seq, "rate_limited",
                       "rate limit exceeded; retry after " + std::to_string(retry_after) + " s");
    }
    const std::optional<uint32_t> seq = frame.seq;
    std::weak_ptr<Session> weak = Self();
    auto executor = stream_.get_executor();
    server_->streams.Submit(
        ws_stream_, *ws_key_, std::move(frame), [weak, executor, seq](FrameResult result) {
          asio::post(executor, [weak, seq, result = std::move(result)]() mutable {
            auto self = weak.lock();
            if (self == nullptr) return;
            if (!result.outcome.frame_event.empty()) {
              self->Send(std::move(result.outcome.frame_event));
            } else if (result.error) {
              self->SendError(seq, result.error_code, result.error->message());
            }
          });
        });
  }

  // The 24-byte header (little-endian) and the payload of a binary frame.
  Status ReadBinaryFrame(std::span<const uint8_t> bytes, StreamFrame* frame) {
    auto u32 = [&](size_t at) {
      return uint32_t{bytes[at]} | uint32_t{bytes[at + 1]} << 8 | uint32_t{bytes[at + 2]} << 16 |
             uint32_t{bytes[at + 3]} << 24;
    };
    if (bytes.size() < kFrameHeaderBytes) {
      return Error(ErrorCode::kInvalidArgument,
                   "a binary message is a 24-byte header and a payload");
    }
    frame->seq = u32(12);
    const uint64_t t = uint64_t{u32(16)} | uint64_t{u32(20)} << 32;
    if (bytes[0] != 1) return Error(ErrorCode::kInvalidArgument, "the header's version must be 1");
    if (bytes[2] != 0 || bytes[3] != 0) {
      return Error(ErrorCode::kInvalidArgument, "the header's reserved bytes must be 0");
    }
    if (t > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Error(ErrorCode::kInvalidArgument, "t_ms is out of range");
    }
    frame->t_ms = static_cast<int64_t>(t);
    const uint8_t kind = bytes[1];
    const uint32_t width = u32(4);
    const uint32_t height = u32(8);
    const std::span<const uint8_t> payload = bytes.subspan(kFrameHeaderBytes);
    if (payload.empty()) return Error(ErrorCode::kInvalidArgument, "the payload is empty");
    if (kind == 0) {
      frame->kind = StreamFrame::Kind::kEncoded;
    } else if (kind <= 5) {
      // 1 grey, 2 RGB, 3 BGR, 4 RGBA, 5 BGRA.
      static constexpr int kChannels[] = {0, 1, 3, 3, 4, 4};
      frame->kind = StreamFrame::Kind::kRaw;
      frame->channels = kChannels[kind];
      frame->rgb = kind == 2 || kind == 4;
      const uint64_t pixels = uint64_t{width} * height;
      if (width == 0 || height == 0 || width > 65535 || height > 65535) {
        return Error(ErrorCode::kInvalidArgument, "raw frames need a width and height 1..65535");
      }
      if (pixels > static_cast<uint64_t>(server_->config.max_pixels)) {
        return Error(ErrorCode::kTooLarge, "the frame is over limits.max_pixels");
      }
      if (payload.size() != pixels * static_cast<uint64_t>(frame->channels)) {
        return Error(ErrorCode::kInvalidArgument,
                     "the payload must be width * height * " + std::to_string(frame->channels) +
                         " bytes");
      }
      frame->width = static_cast<int>(width);
      frame->height = static_cast<int>(height);
    } else {
      return Error(ErrorCode::kInvalidArgument, "unknown kind " + std::to_string(kind));
    }
    frame->bytes.assign(payload.begin(), payload.end());
    return {};
  }

  void SendError(std::optional<uint32_t> seq, std::string_view code, const std::string& message) {
    boost::json::object event{{"type", "error"}};
    if (seq) event["seq"] = *seq;
    // As printable UTF-8, as in every API error (a text frame must be UTF-8).
    event["error"] =
        boost::json::object{{"code", code}, {"message", bantay::models::PrintableText(message)}};
    Send(boost::json::serialize(event));
  }

  // Events are written one at a time, in order.
  void Send(std::string event) {
    if (!ws_ || ws_closing_ || ws_ended_) return;
    out_queue_.push_back(std::move(event));
    if (!writing_) WriteEvent();
  }

  void WriteEvent() {
    if (out_queue_.empty() || ws_ended_) {
      if (close_pending_) return CloseSocket(close_code_);
      return;
    }
    writing_ = true;
    ws_->text(true);
    ws_->async_write(asio::buffer(out_queue_.front()),
                     [self = Self()](beast::error_code ec, size_t) {
                       self->writing_ = false;
                       self->out_queue_.pop_front();
                       if (ec || !self->ws_) return self->EndSocket();
                       if (self->read_paused_ && self->out_queue_.size() < kMaxQueuedEvents / 2) {
                         self->read_paused_ = false;
                         self->ReadMessage();
                       }
                       self->WriteEvent();
                     });
  }

  // The close handshake, after the events being written (a read in
  // progress then ends with websocket::error::closed).
  void CloseSocket(websocket::close_code code) {
    if (!ws_ || ws_closing_ || ws_ended_) return;
    // A client that reads nothing (a write that never completes) is cut
    // off by the sweep.
    SetDeadline(std::chrono::milliseconds(server_->config.read_timeout_ms));
    // Before the handshake is over, or while an event is being written: as
    // soon as that is done.
    if (!ws_open_ || writing_) {
      close_pending_ = true;
      close_code_ = code;
      return;
    }
    ws_closing_ = true;
    ws_->async_close(code, [self = Self()](beast::error_code) {
      if (!self->reading_) self->EndSocket();
    });
  }

  // The WebSocket is over (closed, failed, timed out): the connection goes.
  void EndSocket() {
    if (ws_ended_) return;
    ws_ended_ = true;
    if (ws_stream_) ws_stream_->ClearListeners(ws_listeners_);
    Wipe(ws_buffer_.data().data(), ws_buffer_.size());
    Abort();
  }

  // Orderly close: TLS close_notify first, then the end of the sending
  // side, then what the client still sends is read and dropped until it
  // closes too (RFC 9112 section 9.6: closing a socket with unread bytes
  // resets the connection, which can destroy the answer still on its way).
  // So a client whose request was refused while it was still sending the
  // body (413) finishes sending and reads the answer.
  void Close() {
    if constexpr (kTls) {
      SetDeadline(std::chrono::seconds(2));
      stream_.async_shutdown([self = Self()](beast::error_code) { self->DropUntilClosed(0); });
    } else {
      DropUntilClosed(0);
    }
  }
  // For at most a second and drop_limit_ bytes, and not while the server
  // shuts down (it cuts what is left after its grace period anyway).
  void DropUntilClosed(size_t dropped) {
    if (dropped == 0) {
      beast::error_code ec;
      Socket().shutdown(tcp::socket::shutdown_send, ec);
      SetDeadline(std::chrono::seconds(1));
    }
    if (dropped > drop_limit_ || draining_) return Abort();
    lingering_ = true;
    Socket().async_read_some(buffer_.prepare(64 * 1024),
                             [self = Self(), dropped](beast::error_code ec, size_t n) {
                               self->lingering_ = false;
                               if (ec) return self->Abort();
                               self->DropUntilClosed(dropped + n);
                             });
  }
  void Abort() {
    beast::error_code ec;
    Socket().close(ec);
  }

  // The first read of a request (most requests are smaller).
  static constexpr size_t kFirstRead = 4096;
  // A read buffer up to this size is kept between requests (and wiped in
  // place); a larger one is given back.
  static constexpr size_t kKeptBufferBytes = 64 * 1024;

  Server::Impl* server_;
  const std::optional<tcp::endpoint> peer_endpoint_;
  const std::string peer_;  // "address:port" for the access log
  std::shared_ptr<ssl::context> tls_;  // outlives stream_, which refers to it
  Stream stream_;
  ReadBuffer buffer_;
  std::optional<http::request_parser<http::vector_body<uint8_t>>> parser_;
  std::string out_;  // the answer being written (its storage is reused)
  Clock::time_point start_ = Clock::now();
  std::string method_ = "-";
  unsigned version_ = 11;
  bool keep_alive_ = true;  // what the request asked for
  bool keep_open_ = true;   // what the answer being written says
  bool head_ = false;
  bool waiting_ = false;   // for the first byte of a request
  bool draining_ = false;
  bool lingering_ = false;  // closing: reading and dropping what the client sends
  // What Close reads and drops at most: a megabyte, and the whole body of a
  // request refused before its body was asked for.
  static constexpr size_t kMaxDropped = 1024 * 1024;
  size_t drop_limit_ = kMaxDropped;

  // The WebSocket, once upgraded.
  static constexpr size_t kFrameHeaderBytes = 24;
  // Events waiting to be written beyond which the client's frames are no
  // longer read.
  static constexpr size_t kMaxQueuedEvents = 64;
  std::optional<http::request<http::vector_body<uint8_t>>> upgrade_;
  std::optional<websocket::stream<Stream&>> ws_;
  std::shared_ptr<bantay::server::Stream> ws_stream_;
  const ApiKeyConfig* ws_key_ = nullptr;
  ReadBuffer ws_buffer_;
  std::deque<std::string> out_queue_;
  bool reading_ = false;
  bool writing_ = false;
  bool read_paused_ = false;
  bool ws_open_ = false;  // the upgrade handshake is done
  bool ws_closing_ = false;
  bool close_pending_ = false;
  std::string request_id_;  // the current request's X-Request-Id (valid ones)
  std::string client_;      // whom a trusted proxy forwarded it for ("": the peer)
  uint64_t ws_listeners_ = 0;  // ws_stream_'s listeners' number (0: none)
  websocket::close_code close_code_ = websocket::close_code::normal;
  bool ws_ended_ = false;
};

}  // namespace

void Server::Impl::Accept() {
  // A session's handlers run one at a time: on a strand of its own when
  // several threads run the io_context, and with one thread (the usual
  // case) on the io_context itself, without a strand's queue and lock.
  const asio::any_io_executor executor =
      config.io_threads > 1 ? asio::any_io_executor(asio::make_strand(ioc))
                            : asio::any_io_executor(ioc.get_executor());
  acceptor.async_accept(executor, [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (ec) {
      // Out of descriptors or memory: try again a little later rather than
      // spinning on the error.
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec && acceptor.is_open()) Accept();
      });
      return;
    }
    StartSession(std::move(socket));
    Accept();
  });
}

void Server::Impl::StartSession(tcp::socket socket) {
  if (connections.load() >= config.max_connections) {
    beast::error_code ec;
    socket.close(ec);
    return;
  }
  beast::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  connections.fetch_add(1);
  metrics.AddConnections(1);
  std::shared_ptr<ssl::context> context = Tls();
  if (context != nullptr) {
    auto session = std::make_shared<Session<ssl::stream<tcp::socket>>>(
        this, std::move(socket), std::move(context));
    Register(session.get(), session);
    session->Start();
  } else {
    auto session = std::make_shared<Session<tcp::socket>>(this, std::move(socket), nullptr);
    Register(session.get(), session);
    session->Start();
  }
}

void Server::Impl::Sweep() {
  const Clock::time_point now = Clock::now();
  // The sessions are acted on, and released, after sessions_mu: the last
  // owner of one may be this thread, and its destructor unregisters it.
  std::vector<std::shared_ptr<SessionBase>> expired;
  {
    std::lock_guard lock(sessions_mu);
    for (auto& [raw, weak] : sessions) {
      // A session being destroyed waits for sessions_mu to unregister: its
      // members are still there, and lock() refuses it.
      if (!raw->Expired(now)) continue;
      if (std::shared_ptr<SessionBase> session = weak.lock()) expired.push_back(std::move(session));
    }
  }
  for (const std::shared_ptr<SessionBase>& session : expired) session->Expire();
  expired.clear();
  // Idle stream sessions, once a second.
  if (now - last_stream_sweep >= std::chrono::seconds(1)) {
    last_stream_sweep = now;
    streams.Sweep();
  }
  sweep_timer.expires_after(kSweepInterval);
  // Also while draining (until Wait stops the threads).
  sweep_timer.async_wait([this](beast::error_code ec) {
    if (!ec) Sweep();
  });
}

// ---------------------------------------------------------------------------

namespace {

// The secret of a webhook: the file's bytes without trailing white space.
Result<std::string> ReadWebhookSecret(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rbe");
  if (file == nullptr) {
    return Error(ErrorCode::kInvalidArgument,
                 "webhook_secret_file " + path + ": " + std::strerror(errno));
  }
  std::string secret;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) secret.append(buffer, n);
  explicit_bzero(buffer, sizeof buffer);
  std::fclose(file);
  while (!secret.empty() && std::isspace(static_cast<unsigned char>(secret.back()))) {
    secret.pop_back();
  }
  if (secret.empty()) {
    return Error(ErrorCode::kInvalidArgument, "webhook_secret_file " + path + " is empty");
  }
  return secret;
}

// Reads the keys' webhook secrets, starts the sender, and hooks it to the
// stream verdict changes (and its counters to /metrics).
Status StartWebhooks(Server::Impl& s) {
  for (const ApiKeyConfig& key : s.config.api_keys) {
    if (key.webhook_url.empty()) continue;
    Result<std::string> secret = ReadWebhookSecret(key.webhook_secret_file);
    if (!secret.ok()) {
      return Error(ErrorCode::kInvalidArgument,
                   "api key " + key.id + ": " + secret.error().message());
    }
    s.webhook_secrets.emplace(key.id, std::move(*secret));
  }
  if (s.webhook_secrets.empty()) return {};
  WebhookOptions options;
  options.allow_plain_http = s.config.allow_plain_http_webhooks;
  Result<std::unique_ptr<WebhookSender>> sender = WebhookSender::Create(options);
  if (!sender.ok()) return sender.error();
  s.webhooks = std::move(*sender);
  s.streams.SetVerdictHook([&s](const ApiKeyConfig& key, const std::string& event) {
    auto it = s.webhook_secrets.find(key.id);
    if (it == s.webhook_secrets.end()) return;
    // Never blocks; a full queue is counted by the sender.
    s.webhooks->Enqueue(key.webhook_url, it->second, event);
  });
  s.api.SetBeforeMetrics([&s] {
    const WebhookSender::Stats stats = s.webhooks->stats();
    s.metrics.SetWebhookCounts({.delivered = stats.delivered,
                                .failed = stats.failed,
                                .dropped = stats.dropped,
                                .rejected = stats.rejected,
                                .abandoned = stats.abandoned,
                                .retries = stats.retries,
                                .in_queue = stats.in_queue});
  });
  return {};
}

}  // namespace

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  Shutdown();
  Wait();
}

Result<std::unique_ptr<Server>> Server::Start(ServerConfig config) {
  if (Status valid = config.Validate(); !valid.ok()) return valid.error();
  std::shared_ptr<ssl::context> tls;
  if (!config.tls_cert.empty()) {
    Result<std::shared_ptr<ssl::context>> context = MakeTlsContext(config);
    if (!context.ok()) return context.error();
    tls = *context;
  }
  auto impl = std::make_unique<Impl>(std::move(config));
  Impl& s = *impl;
  if (s.log.failed_to_open(s.config.access_log)) {
    return Error(ErrorCode::kIo, "log.access_log " + s.config.access_log + ": cannot open");
  }
  s.tls = std::move(tls);
  if (Status webhooks = StartWebhooks(s); !webhooks.ok()) return webhooks.error();
  if (Status started = s.index.Start(); !started.ok()) return started.error();

  beast::error_code ec;
  const asio::ip::address address = asio::ip::make_address(s.config.listen, ec);
  if (ec) return Error(ErrorCode::kInvalidArgument, "server.listen: not an IP address");
  const tcp::endpoint endpoint(address, s.config.port);
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Error(ErrorCode::kUnavailable, "cannot listen on " + s.config.listen + ":" +
                                              std::to_string(s.config.port) + ": " +
                                              ec.message());
  }
  s.port = s.acceptor.local_endpoint().port();
  s.Accept();
  asio::post(s.accept_strand, [&s] { s.Sweep(); });
  for (int i = 0; i < s.config.io_threads; ++i) {
    s.threads.emplace_back([&s] {
      pthread_setname_np(pthread_self(), "bantay-io");
      s.ioc.run();
    });
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

uint16_t Server::port() const { return impl_->port; }

bool Server::ready() const { return impl_->index.ready(); }

bool Server::WaitUntilReady() const {
  while (!impl_->index.ready()) {
    if (impl_->index.load_error()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

void Server::Shutdown() {
  {
    std::lock_guard lock(impl_->stop_mu);
    if (impl_->stop_requested) return;
    impl_->stop_requested = true;
  }
  impl_->stop_cv.notify_all();
}

void Server::Wait() {
  Impl& s = *impl_;
  {
    std::unique_lock lock(s.stop_mu);
    s.stop_cv.wait(lock, [&] { return s.stop_requested; });
    if (s.stopped) return;
    s.stopped = true;
  }
  s.api.BeginShutdown();
  // Stream sessions end with the server (their WebSockets are closed).
  s.streams.CloseAll();
  asio::post(s.accept_strand, [&s] {
    beast::error_code ec;
    s.acceptor.close(ec);
    s.accept_retry.cancel();
  });
  {
    // Drained, and released, after sessions_mu: if an I/O thread let go of
    // a session meanwhile, this thread holds its last reference, and its
    // destructor unregisters it (under sessions_mu: a deadlock, seen once).
    std::vector<std::shared_ptr<SessionBase>> open;
    {
      std::lock_guard lock(s.sessions_mu);
      for (auto& [raw, weak] : s.sessions) {
        if (std::shared_ptr<SessionBase> session = weak.lock()) open.push_back(std::move(session));
      }
    }
    for (const std::shared_ptr<SessionBase>& session : open) session->Drain();
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(s.config.shutdown_grace_ms);
  while (s.connections.load() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  s.ioc.stop();
  for (std::thread& t : s.threads) t.join();
  s.threads.clear();
  // Nobody is left to receive the answers of queued jobs (and queued changes
  // must not be committed unannounced): they are dropped, not run.
  s.compute.DropQueued();
  s.admin.DropQueued();
  s.compute.Stop();
  s.admin.Stop();
  // Webhook events still queued (the sessions' ends, told at CloseAll)
  // have what is left of the grace period; those not delivered by then are
  // abandoned (counted).
  if (s.webhooks != nullptr) {
    while (s.webhooks->stats().in_queue > 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    s.webhooks->Stop();
  }
  s.index.Stop();
  s.log.Flush();
}

Status Server::ReloadTls() {
  if (impl_->config.tls_cert.empty()) {
    return Error(ErrorCode::kInvalidArgument, "this server runs without TLS");
  }
  Result<std::shared_ptr<ssl::context>> context = MakeTlsContext(impl_->config);
  if (!context.ok()) return context.error();
  std::lock_guard lock(impl_->tls_mu);
  impl_->tls = std::move(*context);
  return Status();
}

}  // namespace bantay::server
