// The transport: one io_context run by io_threads threads, a listener, and a
// session per connection on its own strand (after the Beast examples), over
// TLS or, when the configuration allows it, plain TCP.
#include "bantay/server/server.h"

#include <omp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <cstring>
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
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>
#include <openssl/ssl.h>

#include "api.h"
#include "compute_pool.h"
#include "index_service.h"
#include "metrics.h"
#include "rate_limiter.h"

namespace bantay::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// One JSON line per answered request: route template, status, latency, key
// id, verdict. Never a body, a hash or a raw path (which could carry
// anything a client put there).
class AccessLog {
 public:
  explicit AccessLog(const std::string& where) {
    if (where.empty()) return;
    if (where == "-") {
      file_ = stderr;
    } else {
      file_ = std::fopen(where.c_str(), "ae");
      owned_ = file_ != nullptr;
    }
  }
  ~AccessLog() {
    if (owned_) std::fclose(file_);
  }
  bool failed_to_open(const std::string& where) const { return !where.empty() && !file_; }

  void Write(std::string_view method, const ApiResponse& response, double seconds) {
    if (file_ == nullptr) return;
    boost::json::object line{{"time", static_cast<int64_t>(std::time(nullptr))},
                             {"method", method},
                             {"route", response.route},
                             {"status", response.status},
                             {"latency_us", static_cast<int64_t>(seconds * 1e6)}};
    if (!response.key_id.empty()) line["key"] = response.key_id;
    if (!response.verdict.empty()) line["verdict"] = response.verdict;
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
    explicit_bzero(p, n * sizeof(T));
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

}  // namespace

// ---------------------------------------------------------------------------

class SessionBase : public std::enable_shared_from_this<SessionBase> {
 public:
  virtual ~SessionBase() = default;
  // Close when idle, or after the answer in flight (on the session's strand).
  virtual void Drain() = 0;
};

struct Server::Impl {
  explicit Impl(ServerConfig c)
      : config(std::move(c)),
        index(config, &metrics),
        api(config, &index, &compute, &admin, &metrics, &limiter),
        compute(config.compute_threads > 0 ? config.compute_threads
                                           : static_cast<int>(std::max(
                                                 1u, std::thread::hardware_concurrency())),
                config.queue_limit, [] { omp_set_num_threads(1); }),
        admin(1, config.admin_queue_limit, [] { omp_set_num_threads(1); }),
        log(config.access_log),
        ioc(config.io_threads),
        work(asio::make_work_guard(ioc)) {}

  void Accept();
  void StartSession(tcp::socket socket);
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
  // Declared before the pools so that it outlives their queued jobs, which
  // refer to it.
  Api api;
  ComputePool compute;
  ComputePool admin;
  AccessLog log;

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
};

namespace {

template <typename Stream>
class Session : public SessionBase {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  Session(Server::Impl* server, tcp::socket socket, std::shared_ptr<ssl::context> tls)
      : server_(server), tls_(std::move(tls)), stream_(MakeStream(std::move(socket))) {}

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
      if (self->waiting_ || self->lingering_) beast::get_lowest_layer(self->stream_).cancel();
    });
  }

 private:
  Stream MakeStream(tcp::socket socket) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *tls_);
    } else {
      return Stream(std::move(socket));
    }
  }
  std::shared_ptr<Session> Self() {
    return std::static_pointer_cast<Session>(shared_from_this());
  }
  beast::tcp_stream& Tcp() { return beast::get_lowest_layer(stream_); }

  void Begin() {
    if constexpr (kTls) {
      Tcp().expires_after(std::chrono::milliseconds(server_->config.read_timeout_ms));
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
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_->config.max_header_bytes));
    parser_->body_limit(server_->config.max_body_bytes);
    if (buffer_.size() > 0) return ReadRequest();
    waiting_ = true;
    Tcp().expires_after(std::chrono::milliseconds(server_->config.idle_timeout_ms));
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = Self()](beast::error_code ec, size_t n) {
                              self->waiting_ = false;
                              if (ec || self->draining_) return self->Close();
                              self->buffer_.commit(n);
                              self->ReadRequest();
                            });
  }

  void ReadRequest() {
    Tcp().expires_after(std::chrono::milliseconds(server_->config.read_timeout_ms));
    http::async_read(stream_, buffer_, *parser_,
                     [self = Self()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
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
    keep_alive_ = request.keep_alive();
    version_ = request.version();
    method_ = std::string(request.method_string());
    ApiRequest api_request;
    api_request.method = method_;
    api_request.target = std::string(request.target());
    api_request.content_type = MediaType(request[http::field::content_type]);
    api_request.authorization = std::string(request[http::field::authorization]);
    api_request.body = std::move(request.body());
    parser_.reset();
    // The bytes of this request must not outlive it in the read buffer:
    // a large buffer is given back (wiped by its allocator), a small one is
    // wiped in place; what is left (the start of a pipelined request) is
    // moved to fresh storage.
    if (buffer_.size() > 0) {
      ReadBuffer rest;
      rest.commit(asio::buffer_copy(rest.prepare(buffer_.size()), buffer_.data()));
      buffer_ = std::move(rest);
    } else if (buffer_.capacity() > kKeptBufferBytes) {
      buffer_ = ReadBuffer();
    } else {
      buffer_.clear();
      const size_t capacity = buffer_.capacity();
      explicit_bzero(buffer_.prepare(capacity).data(), capacity);
    }
    server_->api.Dispatch(std::move(api_request), [self = Self()](ApiResponse response) {
      asio::post(self->stream_.get_executor(),
                 [self, response = std::move(response)]() mutable {
                   self->Write(std::move(response));
                 });
    });
  }

  // Answers a request that could not be read whole, then closes.
  void Fail(int status, std::string_view code, const std::string& message) {
    keep_alive_ = false;
    linger_ = true;
    version_ = 11;
    method_ = parser_ && parser_->is_header_done()
                  ? std::string(parser_->get().method_string())
                  : std::string("-");
    parser_.reset();
    Write(ErrorResponse(status, code, message));
  }

  void Write(ApiResponse api_response) {
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    server_->metrics.RecordRequest(api_response.route, api_response.status, seconds);
    server_->log.Write(method_, api_response, seconds);

    response_.emplace(static_cast<http::status>(api_response.status), version_);
    response_->set(http::field::server, "bantay");
    response_->set(http::field::content_type, api_response.content_type);
    response_->set(http::field::cache_control, "no-store");
    response_->set("X-Content-Type-Options", "nosniff");
    if (api_response.retry_after > 0) {
      response_->set(http::field::retry_after, std::to_string(api_response.retry_after));
    }
    if (!api_response.allow.empty()) response_->set(http::field::allow, api_response.allow);
    response_->keep_alive(keep_alive_ && !draining_);
    if (method_ == "HEAD") {
      // The headers of the answer a GET would get, without its body.
      response_->content_length(api_response.body.size());
    } else {
      response_->body() = std::move(api_response.body);
      response_->prepare_payload();
    }
    Tcp().expires_after(std::chrono::milliseconds(server_->config.read_timeout_ms));
    http::async_write(stream_, *response_,
                      [self = Self()](beast::error_code ec, size_t) {
                        const bool keep = self->response_->keep_alive();
                        self->response_.reset();
                        if (ec) return self->Abort();
                        if (self->linger_) return self->Linger(0);
                        if (!keep) return self->Close();
                        self->ReadNext();
                      });
  }

  // After refusing a request whose body is still arriving: reads and drops
  // what the client sends, for at most a second and a megabyte in all, so
  // that a client that is simply sending its body finishes and reads the
  // answer instead of meeting a reset connection (and a slow one cannot
  // hold the connection).
  void Linger(size_t dropped) {
    constexpr size_t kMaxDropped = 1024 * 1024;
    if (dropped > kMaxDropped || draining_) return Abort();
    if (dropped == 0) Tcp().expires_after(std::chrono::seconds(1));
    lingering_ = true;
    stream_.async_read_some(buffer_.prepare(64 * 1024),
                            [self = Self(), dropped](beast::error_code ec, size_t n) {
                              self->lingering_ = false;
                              if (ec) return self->Abort();
                              self->Linger(dropped + n);
                            });
  }

  // Orderly close (TLS close_notify first).
  void Close() {
    if constexpr (kTls) {
      Tcp().expires_after(std::chrono::seconds(2));
      stream_.async_shutdown([self = Self()](beast::error_code) { self->Abort(); });
    } else {
      beast::error_code ec;
      Tcp().socket().shutdown(tcp::socket::shutdown_send, ec);
    }
  }
  void Abort() {
    beast::error_code ec;
    Tcp().socket().close(ec);
  }

  // A read buffer up to this size is kept between requests (and wiped in
  // place); a larger one is given back.
  static constexpr size_t kKeptBufferBytes = 64 * 1024;

  Server::Impl* server_;
  std::shared_ptr<ssl::context> tls_;  // outlives stream_, which refers to it
  Stream stream_;
  ReadBuffer buffer_;
  std::optional<http::request_parser<http::vector_body<uint8_t>>> parser_;
  std::optional<http::response<http::string_body>> response_;
  Clock::time_point start_ = Clock::now();
  std::string method_ = "-";
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool waiting_ = false;   // for the first byte of a request
  bool draining_ = false;
  bool linger_ = false;    // the request was refused before it was read whole
  bool lingering_ = false;  // reading and dropping the rest of it
};

}  // namespace

void Server::Impl::Accept() {
  acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
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
    auto session = std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
        this, std::move(socket), std::move(context));
    Register(session.get(), session);
    session->Start();
  } else {
    auto session = std::make_shared<Session<beast::tcp_stream>>(this, std::move(socket), nullptr);
    Register(session.get(), session);
    session->Start();
  }
}

// ---------------------------------------------------------------------------

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
  for (int i = 0; i < s.config.io_threads; ++i) {
    s.threads.emplace_back([&s] { s.ioc.run(); });
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
  asio::post(s.accept_strand, [&s] {
    beast::error_code ec;
    s.acceptor.close(ec);
    s.accept_retry.cancel();
  });
  {
    std::lock_guard lock(s.sessions_mu);
    for (auto& [raw, weak] : s.sessions) {
      if (std::shared_ptr<SessionBase> session = weak.lock()) session->Drain();
    }
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
