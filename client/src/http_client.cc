#include "bantay/client/http_client.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <strings.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <optional>

#include "tls_connect.h"

namespace bantay::client {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using boost::system::error_code;
using internal::ServerAddress;

constexpr uint64_t kMaxResponseBodyBytes = uint64_t{64} << 20;
constexpr uint32_t kMaxResponseHeaderBytes = 64 << 10;
constexpr char kUserAgent[] = "bantay/0.1";
// Closing a kept connection politely (TLS close_notify) must not hold up the
// caller for long when the server does not answer it.
constexpr int64_t kMaxShutdownMs = 1000;

Error BadUrl(const std::string& why) {
  return Error(ErrorCode::kInvalidArgument, "bad server URL: " + why);
}

bool IsApiKey(std::string_view key) {
  return key.size() == 64 && std::all_of(key.begin(), key.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                  (c >= 'A' && c <= 'F');
         });
}

Status CheckFile(const std::string& path, const char* what) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Error(ErrorCode::kNotFound,
                 std::string(what) + " not found: " + path);
  }
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Error(ErrorCode::kInvalidArgument,
                 std::string(what) + " is not a file: " + path);
  }
  return {};
}

// The index of the SSL ex_data slot that tells whether the server asked for
// a client certificate we did not have (asio keeps SSL app_data for itself).
int CertRequestedIndex() {
  static const int index =
      SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Called by OpenSSL when the server asks for a client certificate and none
// is configured; sends none, but remembers that one was wanted.
int RecordCertificateRequest(SSL* ssl, X509** /*x509*/, EVP_PKEY** /*pkey*/) {
  SSL_set_ex_data(ssl, CertRequestedIndex(), reinterpret_cast<void*>(1));
  return 0;
}

bool IsSslError(const error_code& ec) {
  return ec.category() == net::error::get_ssl_category();
}

// Alerts a server sends when it does not accept the client's certificate.
bool IsClientCertificateAlert(const error_code& ec) {
  if (!IsSslError(ec)) return false;
  switch (ERR_GET_REASON(static_cast<unsigned long>(ec.value()))) {
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      return true;
    default:
      return false;
  }
}

// The peer went away: worth one more try on a fresh connection when it
// happens to a kept-alive connection before any byte of the answer.
bool IsConnectionClosed(const error_code& ec) {
  return ec == net::error::eof || ec == net::error::connection_reset ||
         ec == net::error::connection_aborted ||
         ec == net::error::broken_pipe ||
         ec == net::ssl::error::stream_truncated ||
         ec == http::error::end_of_stream;
}

}  // namespace

namespace internal {

// The URL itself is never echoed: it could carry credentials.
Result<ServerAddress> ParseServerUrl(std::string_view url) {
  const auto parsed = boost::urls::parse_uri(url);
  if (!parsed) {
    return BadUrl("expected https://HOST[:PORT] or http://HOST[:PORT]");
  }
  const boost::urls::url_view& u = *parsed;
  ServerAddress a;
  if (u.scheme_id() == boost::urls::scheme::https) {
    a.tls = true;
  } else if (u.scheme_id() == boost::urls::scheme::http) {
    a.tls = false;
  } else {
    return BadUrl("the scheme must be https or http");
  }
  if (!u.has_authority() || u.encoded_host().empty()) {
    return BadUrl("expected https://HOST[:PORT] or http://HOST[:PORT]");
  }
  if (u.has_userinfo()) return BadUrl("user information is not allowed");
  if ((!u.encoded_path().empty() && u.encoded_path() != "/") || u.has_query() ||
      u.has_fragment()) {
    return BadUrl("no path, query or fragment is allowed");
  }
  switch (u.host_type()) {
    case boost::urls::host_type::name:
      if (u.encoded_host().find('%') != std::string_view::npos) {
        return BadUrl("percent-encoded host names are not allowed");
      }
      a.host = u.host_name();
      break;
    case boost::urls::host_type::ipv4:
    case boost::urls::host_type::ipv6:
      a.host = u.host_address();
      a.host_is_ip = true;
      break;
    default:
      return BadUrl("expected https://HOST[:PORT] or http://HOST[:PORT]");
  }
  const std::string default_port = a.tls ? "443" : "80";
  if (u.has_port()) {
    // port_number() wraps values over 65535 around.
    const std::string_view digits = u.port();
    unsigned port = 0;
    const auto [end, ec] =
        std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec != std::errc() || end != digits.data() + digits.size() ||
        port == 0 || port > 65535) {
      return BadUrl("the port must be 1 to 65535");
    }
    a.port = std::to_string(port);
  } else {
    a.port = default_port;
  }
  const std::string bracketed = u.host_type() == boost::urls::host_type::ipv6
                                    ? "[" + a.host + "]"
                                    : a.host;
  a.display = bracketed + ":" + a.port;
  a.host_header = a.port == default_port ? bracketed : a.display;
  return a;
}

// A request line target or header value must not smuggle in another line.
bool IsPrintable(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c >= 0x20 && c < 0x7f; });
}

std::string Reason(const error_code& ec) {
  if (ec == net::error::connection_refused) return "connection refused";
  if (ec == net::error::host_not_found ||
      ec == net::error::host_not_found_try_again || ec == net::error::no_data) {
    return "unknown host";
  }
  if (IsSslError(ec)) {
    const char* reason =
        ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
    if (reason != nullptr) return reason;
  }
  return ec.message();
}

Result<ServerAddress> CheckClientOptions(const ClientOptions& options) {
  Result<ServerAddress> address = ParseServerUrl(options.url);
  if (!address.ok()) return address.error();
  if (!options.api_key.empty() && !IsApiKey(options.api_key)) {
    return Error(ErrorCode::kInvalidArgument,
                 "the API key must be 64 hexadecimal digits");
  }
  if (options.client_cert_file.empty() != options.client_key_file.empty()) {
    return Error(ErrorCode::kInvalidArgument,
                 "give both a client certificate and its key, or neither");
  }
  if (options.timeout_ms <= 0) {
    return Error(ErrorCode::kInvalidArgument, "the timeout must be positive");
  }
  if (!address->tls && !options.client_cert_file.empty()) {
    return Error(ErrorCode::kInvalidArgument,
                 "a client certificate needs an https:// URL");
  }
  return address;
}

Status SetUpTlsContext(const ClientOptions& options, ssl::context* context) {
  SSL_CTX* ctx = context->native_handle();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
    return Error(ErrorCode::kInternal, "cannot require TLS 1.2");
  }
  context->set_verify_mode(ssl::verify_peer);
  error_code ec;
  if (!options.ca_file.empty()) {
    if (Status s = CheckFile(options.ca_file, "CA file"); !s.ok()) return s;
    context->load_verify_file(options.ca_file, ec);
    if (ec) {
      return Error(
          ErrorCode::kInvalidArgument,
          "CA file " + options.ca_file + " holds no usable PEM certificate");
    }
  } else {
    context->set_default_verify_paths(ec);
    if (ec) {
      return Error(ErrorCode::kInternal,
                   "cannot load the system's trust store");
    }
  }
  if (!options.client_cert_file.empty()) {
    if (Status s =
            CheckFile(options.client_cert_file, "client certificate file");
        !s.ok()) {
      return s;
    }
    if (Status s = CheckFile(options.client_key_file, "client key file");
        !s.ok())
      return s;
    context->use_certificate_chain_file(options.client_cert_file, ec);
    if (ec) {
      return Error(ErrorCode::kInvalidArgument,
                   "client certificate file " + options.client_cert_file +
                       " holds no usable PEM certificate");
    }
    context->use_private_key_file(options.client_key_file, ssl::context::pem,
                                  ec);
    if (ec || SSL_CTX_check_private_key(ctx) != 1) {
      return Error(ErrorCode::kInvalidArgument,
                   "client key file " + options.client_key_file +
                       " holds no PEM private key of the client certificate");
    }
  } else {
    SSL_CTX_set_client_cert_cb(ctx, RecordCertificateRequest);
  }
  ERR_clear_error();
  return {};
}

Status PrepareHandshake(const ServerAddress& address,
                        ssl::stream<beast::tcp_stream>* stream) {
  SSL* ssl_handle = stream->native_handle();
  if (!address.host_is_ip &&
      SSL_set_tlsext_host_name(ssl_handle, address.host.c_str()) != 1) {
    return Error(ErrorCode::kInvalidArgument,
                 "bad server URL: the host name is not usable");
  }
  const bool is_ip = address.host_is_ip;
  error_code ec;
  // host_name_verification refuses a mismatch without saying why; the
  // error set here is what the handshake failure then reports.
  stream->set_verify_callback(
      [check = ssl::host_name_verification(address.host), is_ip](
          bool preverified, ssl::verify_context& ctx) {
        if (check(preverified, ctx)) return true;
        if (preverified) {
          X509_STORE_CTX_set_error(ctx.native_handle(),
                                   is_ip ? X509_V_ERR_IP_ADDRESS_MISMATCH
                                         : X509_V_ERR_HOSTNAME_MISMATCH);
        }
        return false;
      },
      ec);
  if (ec) {
    return Error(ErrorCode::kInternal,
                 "cannot set the certificate check: " + ec.message());
  }
  return {};
}

Status CheckRefusedUs(const error_code& ec, SSL* ssl,
                      const ClientOptions& options,
                      const ServerAddress& address) {
  if (options.client_cert_file.empty() &&
      SSL_get_ex_data(ssl, CertRequestedIndex()) != nullptr) {
    return Error(ErrorCode::kPermissionDenied,
                 address.display + " requires a client certificate");
  }
  if (IsClientCertificateAlert(ec)) {
    return Error(
        ErrorCode::kPermissionDenied,
        address.display + " refused the client certificate: " + Reason(ec));
  }
  return {};
}

Error HandshakeError(const error_code& ec, SSL* ssl,
                     const ClientOptions& options,
                     const ServerAddress& address) {
  const std::string where = address.display;
  if (ec == beast::error::timeout) {
    return Error(ErrorCode::kUnavailable,
                 "TLS handshake with " + where + " timed out after " +
                     std::to_string(options.timeout_ms) + " ms");
  }
  if (IsSslError(ec) && ERR_GET_REASON(static_cast<unsigned long>(
                            ec.value())) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    const long result = SSL_get_verify_result(ssl);
    return Error(ErrorCode::kPermissionDenied,
                 "the certificate of " + where + " does not verify: " +
                     X509_verify_cert_error_string(result));
  }
  if (Status refused = CheckRefusedUs(ec, ssl, options, address);
      !refused.ok()) {
    return refused.error();
  }
  return Error(ErrorCode::kUnavailable,
               "TLS handshake with " + where + " failed: " + Reason(ec));
}

}  // namespace internal

std::string HttpResponse::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() &&
        strncasecmp(key.data(), name.data(), key.size()) == 0) {
      return value;
    }
  }
  return "";
}

struct HttpClient::Impl {
  ClientOptions options;
  ServerAddress address;
  net::io_context ioc{1};
  std::optional<ssl::context> tls_context;  // https only
  std::optional<beast::tcp_stream> plain;
  std::optional<ssl::stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  int requests_on_connection = 0;

  bool IsOpen() const { return plain.has_value() || secure.has_value(); }
  std::chrono::milliseconds Timeout() const {
    return std::chrono::milliseconds(options.timeout_ms);
  }
  std::string TimeoutText() const {
    return std::to_string(options.timeout_ms) + " ms";
  }

  beast::tcp_stream& Tcp() {
    return secure ? beast::get_lowest_layer(*secure) : *plain;
  }

  // Synchronous calls on top of the asynchronous operations, because only
  // those honour the stream's timeout: start the operation, run the loop
  // until it (and its timer) completed.
  template <typename Start>
  error_code Run(Start start) {
    error_code result = net::error::would_block;
    start([&result](error_code ec, auto&&...) { result = ec; });
    ioc.restart();
    ioc.run();
    return result;
  }

  // Calls f with whichever stream this connection uses.
  template <typename F>
  decltype(auto) WithStream(F&& f) {
    if (secure) return f(*secure);
    return f(*plain);
  }

  Status SetUpTls() {
    tls_context.emplace(ssl::context::tls_client);
    return internal::SetUpTlsContext(options, &*tls_context);
  }

  // A fresh connection: TCP, then the TLS handshake.
  Status Open() {
    Close();
    buffer.clear();
    requests_on_connection = 0;
    tcp::resolver resolver(ioc);
    error_code ec;
    const auto flags = address.host_is_ip ? tcp::resolver::numeric_host |
                                                tcp::resolver::numeric_service
                                          : tcp::resolver::numeric_service;
    const tcp::resolver::results_type endpoints =
        resolver.resolve(address.host, address.port, flags, ec);
    if (ec) {
      return Error(
          ErrorCode::kUnavailable,
          "cannot connect to " + address.display + ": " + internal::Reason(ec));
    }
    if (tls_context) {
      secure.emplace(ioc, *tls_context);
    } else {
      plain.emplace(ioc);
    }
    Tcp().expires_after(Timeout());
    ec = Run([&](auto handler) {
      Tcp().async_connect(endpoints, std::move(handler));
    });
    if (ec) {
      Close();
      return Error(
          ErrorCode::kUnavailable,
          "cannot connect to " + address.display + ": " +
              (ec == beast::error::timeout ? "timed out after " + TimeoutText()
                                           : internal::Reason(ec)));
    }
    if (!secure) return {};
    return Handshake();
  }

  Status Handshake() {
    if (Status s = internal::PrepareHandshake(address, &*secure); !s.ok()) {
      Close();
      return s;
    }
    Tcp().expires_after(Timeout());
    const error_code ec = Run([&](auto handler) {
      secure->async_handshake(ssl::stream_base::client, std::move(handler));
    });
    if (!ec) return {};
    Error error =
        internal::HandshakeError(ec, secure->native_handle(), options, address);
    Close();
    return error;
  }

  void Close() {
    if (secure) {
      // Politely (close_notify) when a request went through; a connection
      // that broke is simply dropped.
      if (requests_on_connection > 0) {
        Tcp().expires_after(std::chrono::milliseconds(
            std::min(options.timeout_ms, kMaxShutdownMs)));
        Run([&](auto handler) { secure->async_shutdown(std::move(handler)); });
      }
      Tcp().close();
      secure.reset();
    }
    if (plain) {
      error_code ignored;
      plain->socket().shutdown(tcp::socket::shutdown_both, ignored);
      plain->close();
      plain.reset();
    }
    requests_on_connection = 0;
  }

  void Drop() {
    requests_on_connection = 0;
    Close();
  }

  static HttpResponse ToResponse(http::response<http::string_body> message) {
    HttpResponse response;
    response.status = static_cast<int>(message.result_int());
    for (const auto& field : message) {
      response.headers.emplace_back(std::string(field.name_string()),
                                    std::string(field.value()));
    }
    response.body = std::move(message.body());
    return response;
  }

  struct Attempt {
    std::optional<HttpResponse> response;
    std::optional<Error> error;
    bool retry = false;  // the kept connection had been closed by the server
  };

  template <typename Request>
  Attempt SendOnce(Request& request, bool head) {
    Attempt attempt;
    const bool reused = requests_on_connection > 0;
    ++requests_on_connection;
    Tcp().expires_after(Timeout());
    const error_code write_error = WithStream([&](auto& stream) {
      return Run([&](auto handler) {
        http::async_write(stream, request, std::move(handler));
      });
    });
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBodyBytes);
    parser.header_limit(kMaxResponseHeaderBytes);
    if (head) parser.skip(true);
    error_code ec = write_error;
    // A server may answer before it has read the whole body (413 for one
    // over its limit) and close: the write fails, the answer is there.
    if (!write_error || IsConnectionClosed(write_error)) {
      ec = WithStream([&](auto& stream) {
        return Run([&](auto handler) {
          http::async_read(stream, buffer, parser, std::move(handler));
        });
      });
      if (write_error && !ec) {
        attempt.response = ToResponse(parser.release());
        Drop();
        return attempt;
      }
      if (write_error) ec = write_error;
    }
    if (!ec) {
      const bool keep = parser.get().keep_alive();
      attempt.response = ToResponse(parser.release());
      if (!keep) Close();
      return attempt;
    }
    const bool nothing_read = !parser.got_some() && buffer.size() == 0;
    if (reused && nothing_read && IsConnectionClosed(ec)) {
      attempt.retry = true;
      Drop();
      return attempt;
    }
    attempt.error = TransferError(ec, nothing_read);
    Drop();
    return attempt;
  }

  Error TransferError(const error_code& ec, bool nothing_read) {
    const std::string where = address.display;
    if (ec == beast::error::timeout) {
      return Error(ErrorCode::kUnavailable,
                   "request to " + where + " timed out after " + TimeoutText());
    }
    if (nothing_read && secure) {
      if (Status refused = internal::CheckRefusedUs(ec, secure->native_handle(),
                                                    options, address);
          !refused.ok()) {
        return refused.error();
      }
    }
    if (ec == http::error::body_limit) {
      return Error(ErrorCode::kTooLarge,
                   "the answer of " + where + " is over 64 MiB");
    }
    if (ec == http::error::header_limit) {
      return Error(ErrorCode::kTooLarge,
                   "the answer header of " + where + " is over 64 KiB");
    }
    if (nothing_read && IsConnectionClosed(ec)) {
      return Error(ErrorCode::kUnavailable,
                   where + " closed the connection without answering");
    }
    if (ec.category() ==
        http::make_error_code(http::error::partial_message).category()) {
      return Error(ErrorCode::kIo,
                   "bad HTTP answer from " + where + ": " + ec.message());
    }
    return Error(ErrorCode::kIo, "the connection to " + where +
                                     " broke: " + internal::Reason(ec));
  }
};

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpClient::~HttpClient() { impl_->Close(); }

Result<std::unique_ptr<HttpClient>> HttpClient::Connect(ClientOptions options) {
  Result<ServerAddress> address = internal::CheckClientOptions(options);
  if (!address.ok()) return address.error();
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->address = std::move(*address);
  if (impl->address.tls) {
    if (Status s = impl->SetUpTls(); !s.ok()) return s.error();
  }
  if (Status s = impl->Open(); !s.ok()) return s.error();
  return std::unique_ptr<HttpClient>(new HttpClient(std::move(impl)));
}

Result<HttpResponse> HttpClient::Send(std::string_view method,
                                      std::string_view target,
                                      std::string_view content_type,
                                      std::span<const uint8_t> body) {
  const http::verb verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) {
    return Error(ErrorCode::kInvalidArgument, "unknown HTTP method");
  }
  if (!target.starts_with('/') || !internal::IsPrintable(target) ||
      target.find(' ') != std::string_view::npos) {
    return Error(ErrorCode::kInvalidArgument,
                 "the request target must be a path from /");
  }
  if (!internal::IsPrintable(content_type)) {
    return Error(ErrorCode::kInvalidArgument, "bad Content-Type");
  }
  http::request<http::span_body<const char>> request(verb, target, 11);
  request.set(http::field::host, impl_->address.host_header);
  request.set(http::field::user_agent, kUserAgent);
  if (!impl_->options.api_key.empty()) {
    request.set(http::field::authorization, "Bearer " + impl_->options.api_key);
  }
  if (!content_type.empty()) {
    request.set(http::field::content_type, content_type);
  }
  request.body() = {reinterpret_cast<const char*>(body.data()), body.size()};
  request.keep_alive(true);
  request.prepare_payload();

  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!impl_->IsOpen()) {
      if (Status s = impl_->Open(); !s.ok()) return s.error();
    }
    Impl::Attempt result = impl_->SendOnce(request, verb == http::verb::head);
    if (result.response) return std::move(*result.response);
    if (result.error) return std::move(*result.error);
  }
  return Error(
      ErrorCode::kUnavailable,
      impl_->address.display + " closed the connection without answering");
}

Result<HttpResponse> HttpClient::Send(std::string_view method,
                                      std::string_view target,
                                      std::string_view content_type,
                                      std::string_view body) {
  return Send(method, target, content_type,
              std::span<const uint8_t>(
                  reinterpret_cast<const uint8_t*>(body.data()), body.size()));
}

}  // namespace bantay::client
