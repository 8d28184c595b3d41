#include "webhook.h"

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bantay/models/digest.h"
#include "bantay/models/webhook_signature.h"

namespace bantay::server {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using boost::system::error_code;

constexpr char kUserAgent[] = "bantay-webhook/0.1";
constexpr uint32_t kMaxAnswerHeaderBytes = 16 << 10;
// Backoff doubles at most this many times (and never beyond an hour), so
// that a large max_attempts cannot overflow the delay.
constexpr int kMaxBackoffDoublings = 20;
constexpr std::chrono::milliseconds kMaxBackoff = std::chrono::hours(1);

struct Destination {
  bool tls = true;
  std::string host;  // without brackets
  bool host_is_ip = false;
  std::string port;
  std::string host_header;
  std::string target;  // path and query, as encoded in the URL
  std::string key;     // scheme://host:port, for the per-destination limit
};

std::optional<Destination> ParseUrl(std::string_view url, bool allow_plain) {
  const auto parsed = boost::urls::parse_uri(url);
  if (!parsed) return std::nullopt;
  const boost::urls::url_view& u = *parsed;
  Destination d;
  if (u.scheme_id() == boost::urls::scheme::https) {
    d.tls = true;
  } else if (u.scheme_id() == boost::urls::scheme::http && allow_plain) {
    d.tls = false;
  } else {
    return std::nullopt;
  }
  if (!u.has_authority() || u.encoded_host().empty() || u.has_userinfo() ||
      u.has_fragment()) {
    return std::nullopt;
  }
  switch (u.host_type()) {
    case boost::urls::host_type::name:
      if (u.encoded_host().find('%') != std::string_view::npos) {
        return std::nullopt;
      }
      d.host = u.host_name();
      break;
    case boost::urls::host_type::ipv4:
    case boost::urls::host_type::ipv6:
      d.host = u.host_address();
      d.host_is_ip = true;
      break;
    default:
      return std::nullopt;
  }
  const std::string default_port = d.tls ? "443" : "80";
  if (u.has_port()) {
    // port_number() wraps values over 65535 around.
    const std::string_view digits = u.port();
    unsigned port = 0;
    const auto [end, ec] =
        std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec != std::errc() || end != digits.data() + digits.size() ||
        port == 0 || port > 65535) {
      return std::nullopt;
    }
    d.port = std::to_string(port);
  } else {
    d.port = default_port;
  }
  const std::string bracketed = u.host_type() == boost::urls::host_type::ipv6
                                    ? "[" + d.host + "]"
                                    : d.host;
  d.host_header = d.port == default_port ? bracketed : bracketed + ":" + d.port;
  d.target = u.encoded_path().empty() ? "/" : std::string(u.encoded_path());
  if (u.has_query()) {
    d.target += "?";
    d.target += u.encoded_query();
  }
  d.key =
      std::string(d.tls ? "https://" : "http://") + bracketed + ":" + d.port;
  return d;
}

std::string NewEventId() {
  std::array<uint8_t, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    std::abort();  // no randomness: nothing sensible to go on with
  }
  return models::ToHex(bytes);
}

// Retry-After as delta-seconds (RFC 9110 10.2.3); the HTTP-date form is
// ignored (the backoff applies).
std::optional<std::chrono::seconds> ParseRetryAfter(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
    value.remove_prefix(1);
  }
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
    value.remove_suffix(1);
  }
  if (value.empty() || value.size() > 9) return std::nullopt;
  unsigned seconds = 0;
  const auto [end, ec] =
      std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec != std::errc() || end != value.data() + value.size()) {
    return std::nullopt;
  }
  return std::chrono::seconds(seconds);
}

enum class Outcome { kDelivered, kRetry, kFail };

// Name lookups in progress at once (each on a thread); more fail the attempt
// (retried later).
constexpr int kMaxResolverThreads = 64;

// How lookup threads reach the delivery thread; cut by Stop.
struct ResolverLink {
  std::mutex mutex;
  boost::asio::io_context* ioc = nullptr;  // protected by mutex
  std::atomic<int> threads{0};
};

}  // namespace

struct WebhookSender::Impl {
  struct Event {
    Destination destination;
    std::string secret;
    std::string body;
    std::string event_id;
    int attempts = 0;  // started so far
  };

  class Attempt;

  explicit Impl(WebhookOptions o) : options(std::move(o)) {}

  Status SetUpTls() {
    SSL_CTX* ctx = tls.native_handle();
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
      return Error(ErrorCode::kInternal, "cannot require TLS 1.2");
    }
    tls.set_verify_mode(ssl::verify_peer);
    error_code ec;
    if (!options.ca_file.empty()) {
      std::error_code fec;
      if (!std::filesystem::is_regular_file(options.ca_file, fec)) {
        return Error(ErrorCode::kInvalidArgument,
                     "webhook CA file not found: " + options.ca_file);
      }
      tls.load_verify_file(options.ca_file, ec);
      if (ec) {
        ERR_clear_error();
        return Error(ErrorCode::kInvalidArgument,
                     "webhook CA file " + options.ca_file +
                         " holds no usable PEM certificate");
      }
    } else {
      tls.set_default_verify_paths(ec);
      if (ec) {
        ERR_clear_error();
        return Error(ErrorCode::kInternal,
                     "cannot load the system's trust store");
      }
    }
    ERR_clear_error();
    return {};
  }

  void Start() {
    resolver_link->ioc = &ioc;
    thread = std::thread([this] { ioc.run(); });
  }

  bool Enqueue(std::string url, std::string secret, std::string body) {
    std::optional<Destination> destination =
        ParseUrl(url, options.allow_plain_http);
    if (!destination || secret.empty()) {
      rejected.fetch_add(1);
      return false;
    }
    auto event = std::make_shared<Event>();
    event->destination = std::move(*destination);
    event->secret = std::move(secret);
    event->body = std::move(body);
    event->event_id = NewEventId();
    std::lock_guard<std::mutex> lock(mutex);
    if (stopped || held.load() >= options.queue_limit) {
      dropped.fetch_add(1);
      return false;
    }
    held.fetch_add(1);
    net::post(ioc, [this, event = std::move(event)]() mutable {
      ready.push_back(std::move(event));
      Pump();
    });
    return true;
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (stopped) return;
      stopped = true;
    }
    {
      std::lock_guard<std::mutex> lock(resolver_link->mutex);
      resolver_link->ioc = nullptr;
    }
    work.reset();
    ioc.stop();
    if (thread.joinable()) thread.join();
    // Handlers that did not run (queued events, retry timers, attempts in
    // flight) are destroyed with the io_context; their events end here.
    abandoned.fetch_add(held.exchange(0));
  }

  // On the delivery thread: starts waiting events while slots are free.
  void Pump();
  // On the delivery thread: one attempt ended.
  void Finish(const std::shared_ptr<Event>& event, Outcome outcome,
              std::optional<std::chrono::seconds> retry_after);

  const WebhookOptions options;
  // Declared before the io_context: TLS streams destroyed with its pending
  // handlers still refer to it.
  ssl::context tls{ssl::context::tls_client};
  net::io_context ioc{1};
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work{
      ioc.get_executor()};
  std::thread thread;
  const std::shared_ptr<ResolverLink> resolver_link =
      std::make_shared<ResolverLink>();

  std::atomic<uint64_t> delivered{0};
  std::atomic<uint64_t> failed{0};
  std::atomic<uint64_t> dropped{0};
  std::atomic<uint64_t> rejected{0};
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> abandoned{0};
  // Incremented under mutex (checked against queue_limit), decremented by
  // the delivery thread. All counters are sequentially consistent (see
  // Finish and stats).
  std::atomic<uint64_t> held{0};

  std::mutex mutex;
  bool stopped = false;  // protected by mutex

  // Only on the delivery thread:
  std::deque<std::shared_ptr<Event>> ready;
  std::unordered_map<std::string, int> in_flight_by_destination;
  int in_flight = 0;
};

// One POST on a fresh connection, bounded by options.timeout as a whole.
class WebhookSender::Impl::Attempt
    : public std::enable_shared_from_this<Attempt> {
 public:
  Attempt(Impl& owner, std::shared_ptr<Event> event)
      : owner_(owner), event_(std::move(event)), resolve_timer_(owner.ioc) {}

  void Run() {
    const Destination& d = event_->destination;
    deadline_ = std::chrono::steady_clock::now() + owner_.options.timeout;
    if (d.tls) {
      secure_.emplace(owner_.ioc, owner_.tls);
    } else {
      plain_.emplace(owner_.ioc);
    }
    BuildRequest();
    if (d.host_is_ip) {
      error_code ec;
      const net::ip::address address = net::ip::make_address(d.host, ec);
      if (ec) return Done(Outcome::kFail);
      return Connect({tcp::endpoint(
          address, static_cast<unsigned short>(std::stoul(d.port)))});
    }
    Resolve();
  }

 private:
  // Name lookups run on a thread of their own per lookup (getaddrinfo cannot
  // be cancelled): Asio's resolver would run them one after another on a
  // single hidden thread, so that one destination with a dead name server
  // delayed every other, and destroying the io_context would wait for it.
  // The thread holds only a weak reference to the attempt and posts the
  // answer through the link, which Stop cuts; a lookup still running then
  // ends on its own and its answer is dropped.
  void Resolve() {
    resolve_timer_.expires_at(deadline_);
    resolve_timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->resolved_) return;
      self->resolved_ = true;
      self->Done(Outcome::kRetry);
    });
    std::shared_ptr<ResolverLink> link = owner_.resolver_link;
    if (link->threads.fetch_add(1) >= kMaxResolverThreads) {
      link->threads.fetch_sub(1);
      return Resolved(net::error::no_buffer_space, {});
    }
    try {
      std::thread([link, host = event_->destination.host,
                   port = event_->destination.port, weak = weak_from_this()] {
        net::io_context local;
        tcp::resolver resolver(local);
        error_code ec;
        const auto results =
            resolver.resolve(host, port, tcp::resolver::numeric_service, ec);
        std::vector<tcp::endpoint> endpoints(results.begin(), results.end());
        {
          std::lock_guard<std::mutex> lock(link->mutex);
          if (link->ioc != nullptr) {
            net::post(*link->ioc,
                      [weak, ec, endpoints = std::move(endpoints)]() mutable {
                        if (auto self = weak.lock()) {
                          self->Resolved(ec, std::move(endpoints));
                        }
                      });
          }
        }
        link->threads.fetch_sub(1);
      }).detach();
    } catch (const std::system_error&) {
      link->threads.fetch_sub(1);
      Resolved(net::error::no_buffer_space, {});
    }
  }

  void Resolved(error_code ec, std::vector<tcp::endpoint> endpoints) {
    if (resolved_) return;  // timed out already
    resolved_ = true;
    resolve_timer_.cancel();
    if (ec || endpoints.empty()) return Done(Outcome::kRetry);
    Connect(std::move(endpoints));
  }

 private:
  beast::tcp_stream& Tcp() {
    return secure_ ? beast::get_lowest_layer(*secure_) : *plain_;
  }

  void BuildRequest() {
    const Destination& d = event_->destination;
    const std::string timestamp =
        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count());
    request_.method(http::verb::post);
    request_.target(d.target);
    request_.version(11);
    request_.set(http::field::host, d.host_header);
    request_.set(http::field::user_agent, kUserAgent);
    request_.set(http::field::content_type, "application/json");
    request_.set(http::field::connection, "close");
    request_.set(models::kWebhookTimestampHeader, timestamp);
    request_.set(models::kWebhookSignatureHeader,
                 models::SignWebhook(event_->secret, timestamp, event_->body));
    request_.set(models::kWebhookEventIdHeader, event_->event_id);
    request_.body() = event_->body;
    request_.prepare_payload();
  }

  void Connect(std::vector<tcp::endpoint> endpoints) {
    endpoints_ = std::move(endpoints);
    Tcp().expires_at(deadline_);
    Tcp().async_connect(endpoints_, [self = shared_from_this()](
                                        error_code ec, const tcp::endpoint&) {
      if (ec) return self->Done(Outcome::kRetry);
      if (self->secure_) return self->Handshake();
      self->Write();
    });
  }

  void Handshake() {
    const Destination& d = event_->destination;
    SSL* handle = secure_->native_handle();
    // OpenSSL checks the name (or address) during the chain verification,
    // so a mismatch fails the handshake like an untrusted issuer.
    X509_VERIFY_PARAM* param = SSL_get0_param(handle);
    const bool named =
        d.host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, d.host.c_str()) == 1
                     : SSL_set_tlsext_host_name(handle, d.host.c_str()) == 1 &&
                           SSL_set1_host(handle, d.host.c_str()) == 1;
    if (!named) {
      ERR_clear_error();
      return Done(Outcome::kFail);
    }
    Tcp().expires_at(deadline_);
    secure_->async_handshake(
        ssl::stream_base::client, [self = shared_from_this()](error_code ec) {
          if (!ec) return self->Write();
          const bool unverified =
              ec.category() == net::error::get_ssl_category() &&
              ERR_GET_REASON(static_cast<unsigned long>(ec.value())) ==
                  SSL_R_CERTIFICATE_VERIFY_FAILED;
          ERR_clear_error();
          self->Done(unverified ? Outcome::kFail : Outcome::kRetry);
        });
  }

  template <typename Stream>
  void WriteOn(Stream& stream) {
    http::async_write(stream, request_,
                      [self = shared_from_this()](error_code ec, size_t) {
                        if (ec) return self->Done(Outcome::kRetry);
                        self->Read();
                      });
  }

  template <typename Stream>
  void ReadOn(Stream& stream) {
    parser_.header_limit(kMaxAnswerHeaderBytes);
    // Only the status line and header matter; the connection is closed
    // afterwards without reading the body.
    http::async_read_header(stream, buffer_, parser_,
                            [self = shared_from_this()](error_code ec, size_t) {
                              if (ec) return self->Done(Outcome::kRetry);
                              self->Classify();
                            });
  }

  void Write() {
    Tcp().expires_at(deadline_);
    if (secure_) return WriteOn(*secure_);
    WriteOn(*plain_);
  }

  void Read() {
    Tcp().expires_at(deadline_);
    if (secure_) return ReadOn(*secure_);
    ReadOn(*plain_);
  }

  void Classify() {
    const auto& answer = parser_.get();
    const unsigned status = answer.result_int();
    if (status >= 200 && status < 300) return Done(Outcome::kDelivered);
    if (status == 408 || status == 429 || (status >= 500 && status < 600)) {
      std::optional<std::chrono::seconds> retry_after;
      const auto it = answer.find(http::field::retry_after);
      if (it != answer.end()) retry_after = ParseRetryAfter(it->value());
      return Done(Outcome::kRetry, retry_after);
    }
    Done(Outcome::kFail);
  }

  void Done(Outcome outcome,
            std::optional<std::chrono::seconds> retry_after = std::nullopt) {
    error_code ignored;
    Tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    Tcp().close();
    owner_.Finish(event_, outcome, retry_after);
  }

  Impl& owner_;
  std::shared_ptr<Event> event_;
  net::steady_timer resolve_timer_;
  bool resolved_ = false;
  std::optional<beast::tcp_stream> plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure_;
  std::chrono::steady_clock::time_point deadline_;
  std::vector<tcp::endpoint> endpoints_;
  http::request<http::string_body> request_;
  beast::flat_buffer buffer_;
  http::response_parser<http::empty_body> parser_;
};

void WebhookSender::Impl::Pump() {
  // Chosen first, started afterwards: an attempt that fails at once
  // re-enters Pump through Finish, which must not meet a loop over `ready`.
  std::vector<std::shared_ptr<Event>> starting;
  for (auto it = ready.begin();
       it != ready.end() && in_flight < WebhookSender::kMaxInFlight;) {
    int& busy = in_flight_by_destination[(*it)->destination.key];
    if (busy >= WebhookSender::kMaxInFlightPerDestination) {
      ++it;
      continue;
    }
    ++busy;
    ++in_flight;
    ++(*it)->attempts;
    starting.push_back(std::move(*it));
    it = ready.erase(it);
  }
  for (std::shared_ptr<Event>& event : starting) {
    std::make_shared<Attempt>(*this, std::move(event))->Run();
  }
}

void WebhookSender::Impl::Finish(
    const std::shared_ptr<Event>& event, Outcome outcome,
    std::optional<std::chrono::seconds> retry_after) {
  --in_flight;
  const auto busy = in_flight_by_destination.find(event->destination.key);
  if (--busy->second == 0) in_flight_by_destination.erase(busy);

  if (outcome == Outcome::kRetry && event->attempts >= options.max_attempts) {
    outcome = Outcome::kFail;
  }
  switch (outcome) {
    // held first: stats() reads it last, so that a reader who sees the
    // event counted as ended also sees it gone from the queue.
    case Outcome::kDelivered:
      held.fetch_sub(1);
      delivered.fetch_add(1);
      break;
    case Outcome::kFail:
      held.fetch_sub(1);
      failed.fetch_add(1);
      break;
    case Outcome::kRetry: {
      retries.fetch_add(1);
      const int doublings = std::min(event->attempts - 1, kMaxBackoffDoublings);
      std::chrono::milliseconds delay = std::min(
          options.first_backoff * (int64_t{1} << doublings), kMaxBackoff);
      if (retry_after) {
        delay = std::max<std::chrono::milliseconds>(
            delay, std::min(*retry_after, WebhookSender::kMaxRetryAfter));
      }
      auto timer = std::make_shared<net::steady_timer>(ioc, delay);
      timer->async_wait([this, timer, event](error_code ec) {
        if (ec) return;
        ready.push_back(event);
        Pump();
      });
      break;
    }
  }
  Pump();
}

Result<std::unique_ptr<WebhookSender>> WebhookSender::Create(
    WebhookOptions options) {
  if (options.queue_limit == 0 || options.max_attempts < 1 ||
      options.first_backoff <= std::chrono::milliseconds::zero() ||
      options.timeout <= std::chrono::milliseconds::zero()) {
    return Error(ErrorCode::kInvalidArgument,
                 "webhook options out of range (queue_limit >= 1, "
                 "max_attempts >= 1, first_backoff and timeout > 0)");
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  if (Status s = impl->SetUpTls(); !s.ok()) return s.error();
  impl->Start();
  return std::unique_ptr<WebhookSender>(new WebhookSender(std::move(impl)));
}

WebhookSender::WebhookSender(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

WebhookSender::~WebhookSender() { Stop(); }

bool WebhookSender::Enqueue(std::string url, std::string secret,
                            std::string body) {
  return impl_->Enqueue(std::move(url), std::move(secret), std::move(body));
}

WebhookSender::Stats WebhookSender::stats() const {
  Stats s;
  s.delivered = impl_->delivered.load();
  s.failed = impl_->failed.load();
  s.dropped = impl_->dropped.load();
  s.rejected = impl_->rejected.load();
  s.retries = impl_->retries.load();
  s.abandoned = impl_->abandoned.load();
  s.in_queue = impl_->held.load();
  return s;
}

void WebhookSender::Stop() { impl_->Stop(); }

}  // namespace bantay::server
