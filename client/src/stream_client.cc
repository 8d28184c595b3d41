#include "bantay/client/stream_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "tls_connect.h"

namespace bantay::client {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace ssl = net::ssl;
namespace json = boost::json;
using tcp = net::ip::tcp;
using boost::system::error_code;

// Events are small JSON objects; a state event lists at most 32 matches.
constexpr size_t kMaxEventBytes = 1 << 20;
// Closing politely must not hold up the caller for long.
constexpr auto kCloseWait = std::chrono::milliseconds(1000);
constexpr char kUserAgent[] = "bantay/0.1";

void PutLe(uint8_t* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i)
    out[i] = static_cast<uint8_t>(value >> (8 * i));
}

uint64_t GetLe(const uint8_t* in, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= uint64_t{in[i]} << (8 * i);
  return value;
}

bool IsHex32(std::string_view s) {
  return s.size() == 32 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

std::array<uint8_t, kFrameHeaderBytes> EncodeFrameHeader(
    const FrameHeader& header) {
  std::array<uint8_t, kFrameHeaderBytes> out{};
  out[0] = kFrameProtocolVersion;
  out[1] = static_cast<uint8_t>(header.kind);
  PutLe(&out[4], header.width, 4);
  PutLe(&out[8], header.height, 4);
  PutLe(&out[12], header.sequence, 4);
  PutLe(&out[16], header.t_ms, 8);
  return out;
}

Result<FrameHeader> DecodeFrameHeader(std::span<const uint8_t> bytes) {
  if (bytes.size() < kFrameHeaderBytes) {
    return Error(ErrorCode::kInvalidArgument, "a frame header has 24 bytes");
  }
  if (bytes[0] != kFrameProtocolVersion) {
    return Error(
        ErrorCode::kInvalidArgument,
        "frame header version " + std::to_string(bytes[0]) + ", expected 1");
  }
  if (bytes[2] != 0 || bytes[3] != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 "the frame header's reserved field is not 0");
  }
  FrameHeader h;
  h.kind = static_cast<FrameKind>(bytes[1]);
  h.width = static_cast<uint32_t>(GetLe(&bytes[4], 4));
  h.height = static_cast<uint32_t>(GetLe(&bytes[8], 4));
  h.sequence = static_cast<uint32_t>(GetLe(&bytes[12], 4));
  h.t_ms = GetLe(&bytes[16], 8);
  return h;
}

std::string StreamPolicyJson(const StreamPolicy& policy) {
  json::object o;
  if (policy.sample_interval_ms)
    o["sample_interval_ms"] = *policy.sample_interval_ms;
  if (policy.quality_min) o["quality_min"] = *policy.quality_min;
  if (policy.window) o["window"] = *policy.window;
  if (policy.k) o["k"] = *policy.k;
  if (policy.skip_distance) o["skip_distance"] = *policy.skip_distance;
  if (policy.trim_borders) o["trim_borders"] = *policy.trim_borders;
  if (policy.dihedral) o["dihedral"] = *policy.dihedral;
  if (policy.radius) o["radius"] = *policy.radius;
  if (policy.label) o["label"] = *policy.label;
  return json::serialize(o);
}

Error ServerAnswerError(const HttpResponse& response, std::string_view what) {
  ErrorCode code = ErrorCode::kIo;
  switch (response.status) {
    case 400:
      code = ErrorCode::kInvalidArgument;
      break;
    case 401:
    case 403:
      code = ErrorCode::kPermissionDenied;
      break;
    case 404:
      code = ErrorCode::kNotFound;
      break;
    case 413:
      code = ErrorCode::kTooLarge;
      break;
    case 429:
    case 503:
      code = ErrorCode::kUnavailable;
      break;
    default:
      break;
  }
  std::string message =
      std::string(what) + ": HTTP " + std::to_string(response.status);
  error_code ec;
  const json::value body = json::parse(response.body, ec);
  const json::object* error = nullptr;
  if (!ec && body.is_object()) {
    if (const json::value* e = body.as_object().if_contains("error"))
      error = e->if_object();
  }
  if (error != nullptr) {
    const json::value* c = error->if_contains("code");
    const json::value* m = error->if_contains("message");
    if (c != nullptr && c->is_string())
      message += " " + std::string(c->as_string());
    if (m != nullptr && m->is_string())
      message += ": " + std::string(m->as_string());
  }
  return Error(code, message);
}

struct StreamClient::Impl {
  using PlainWs = websocket::stream<beast::tcp_stream>;
  using SecureWs = websocket::stream<ssl::stream<beast::tcp_stream>>;

  // Constant after Open.
  ClientOptions options;
  internal::ServerAddress address;
  StreamSession session;
  std::unique_ptr<HttpClient> http;  // the caller's thread only

  net::io_context ioc{1};
  std::optional<ssl::context> tls_context;
  // Touched only by the I/O thread once it runs.
  std::optional<PlainWs> plain;
  std::optional<SecureWs> secure;
  beast::flat_buffer read_buffer;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::thread thread;

  std::mutex mu;
  std::condition_variable changed;
  // Protected by mu.
  bool read_pending = false;  // an async_read was started and not taken
  bool read_done = false;
  error_code read_ec;
  bool read_text = true;
  std::string read_message;
  bool write_done = false;
  error_code write_ec;
  bool close_done = false;
  bool closed = false;  // Close was called, or the connection broke
  std::string close_reason;

  std::chrono::milliseconds Timeout() const {
    return std::chrono::milliseconds(options.timeout_ms);
  }

  beast::tcp_stream& Tcp() {
    return secure ? beast::get_lowest_layer(*secure)
                  : beast::get_lowest_layer(*plain);
  }

  template <typename F>
  decltype(auto) WithWs(F&& f) {
    if (secure) return f(*secure);
    return f(*plain);
  }

  // Runs one operation to completion on the caller's thread (before the
  // I/O thread starts).
  template <typename Start>
  error_code Run(Start start) {
    error_code result = net::error::would_block;
    start([&result](error_code ec, auto&&...) { result = ec; });
    ioc.restart();
    ioc.run();
    return result;
  }

  Status Connect() {
    tcp::resolver resolver(ioc);
    error_code ec;
    const auto flags = address.host_is_ip ? tcp::resolver::numeric_host |
                                                tcp::resolver::numeric_service
                                          : tcp::resolver::numeric_service;
    const auto endpoints =
        resolver.resolve(address.host, address.port, flags, ec);
    if (ec) {
      return Error(
          ErrorCode::kUnavailable,
          "cannot connect to " + address.display + ": " + internal::Reason(ec));
    }
    if (address.tls) {
      tls_context.emplace(ssl::context::tls_client);
      if (Status s = internal::SetUpTlsContext(options, &*tls_context); !s.ok())
        return s;
      secure.emplace(ioc, *tls_context);
    } else {
      plain.emplace(ioc);
    }
    Tcp().expires_after(Timeout());
    ec = Run([&](auto handler) {
      Tcp().async_connect(endpoints, std::move(handler));
    });
    if (ec) {
      return Error(ErrorCode::kUnavailable,
                   "cannot connect to " + address.display + ": " +
                       (ec == beast::error::timeout
                            ? "timed out after " +
                                  std::to_string(options.timeout_ms) + " ms"
                            : internal::Reason(ec)));
    }
    // A binary message goes out as a WebSocket frame header and a payload:
    // without this, Nagle's algorithm holds the payload until the server's
    // delayed acknowledgement, 40 ms a frame.
    beast::error_code nodelay_ec;
    Tcp().socket().set_option(tcp::no_delay(true), nodelay_ec);
    if (secure) {
      auto& tls = secure->next_layer();
      if (Status s = internal::PrepareHandshake(address, &tls); !s.ok())
        return s;
      Tcp().expires_after(Timeout());
      ec = Run([&](auto handler) {
        tls.async_handshake(ssl::stream_base::client, std::move(handler));
      });
      if (ec)
        return internal::HandshakeError(ec, tls.native_handle(), options,
                                        address);
    }
    return Upgrade();
  }

  Status Upgrade() {
    const std::string key = options.api_key;
    WithWs([&](auto& ws) {
      ws.set_option(websocket::stream_base::decorator(
          [key](websocket::request_type& req) {
            req.set(http::field::user_agent, kUserAgent);
            if (!key.empty())
              req.set(http::field::authorization, "Bearer " + key);
          }));
      ws.read_message_max(kMaxEventBytes);
    });
    websocket::response_type response;
    Tcp().expires_after(Timeout());
    const error_code ec = WithWs([&](auto& ws) {
      return Run([&](auto handler) {
        ws.async_handshake(response, address.host_header, session.ws_path,
                           std::move(handler));
      });
    });
    if (ec == websocket::error::upgrade_declined) {
      HttpResponse answer;
      answer.status = static_cast<int>(response.result_int());
      answer.body = response.body();
      return ServerAnswerError(answer, "opening the stream's WebSocket");
    }
    if (ec) {
      return Error(ec == beast::error::timeout ? ErrorCode::kUnavailable
                                               : ErrorCode::kIo,
                   "opening the stream's WebSocket on " + address.display +
                       " failed: " +
                       (ec == beast::error::timeout
                            ? "timed out after " +
                                  std::to_string(options.timeout_ms) + " ms"
                            : internal::Reason(ec)));
    }
    // From here on, the WebSocket's own rules: no idle limit (a stream may
    // pause), each write waited for with the client's timeout.
    Tcp().expires_never();
    WithWs([](auto& ws) {
      websocket::stream_base::timeout t;
      t.handshake_timeout = kCloseWait;
      t.idle_timeout = websocket::stream_base::none();
      t.keep_alive_pings = false;
      ws.set_option(t);
    });
    work.emplace(net::make_work_guard(ioc));
    ioc.restart();
    thread = std::thread([this] { ioc.run(); });
    return {};
  }

  // On the I/O thread: the connection is gone, every operation ends.
  void Abort() {
    error_code ignored;
    Tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    Tcp().close();
  }

  Status Write(std::shared_ptr<std::vector<uint8_t>> message, bool binary,
               const char* what) {
    {
      std::lock_guard lock(mu);
      if (closed)
        return Error(ErrorCode::kUnavailable,
                     "the stream's WebSocket is closed");
      write_done = false;
    }
    net::post(ioc, [this, message, binary] {
      WithWs([&](auto& ws) {
        ws.binary(binary);
        ws.async_write(net::buffer(*message),
                       [this, message](error_code ec, size_t) {
                         std::lock_guard lock(mu);
                         write_ec = ec;
                         write_done = true;
                         changed.notify_all();
                       });
      });
    });
    std::unique_lock lock(mu);
    if (!changed.wait_for(lock, Timeout(), [this] { return write_done; })) {
      closed = true;
      close_reason = std::string("sending ") + what + " timed out after " +
                     std::to_string(options.timeout_ms) + " ms";
      net::post(ioc, [this] { Abort(); });
      changed.wait(lock, [this] { return write_done; });
      return Error(ErrorCode::kUnavailable, close_reason);
    }
    if (write_ec) {
      if (!closed) {
        closed = true;
        close_reason =
            "the stream's WebSocket broke: " + internal::Reason(write_ec);
      }
      return Error(write_ec == websocket::error::closed
                       ? ErrorCode::kUnavailable
                       : ErrorCode::kIo,
                   std::string("sending ") + what +
                       " failed: " + internal::Reason(write_ec));
    }
    return {};
  }

  // On the I/O thread.
  void StartRead() {
    WithWs([&](auto& ws) {
      ws.async_read(read_buffer, [this, &ws](error_code ec, size_t) {
        std::lock_guard lock(mu);
        read_ec = ec;
        read_text = ws.got_text();
        read_message = beast::buffers_to_string(read_buffer.data());
        read_buffer.consume(read_buffer.size());
        read_done = true;
        if (ec == websocket::error::closed) {
          const websocket::close_reason& why = ws.reason();
          if (!closed) {
            close_reason =
                "the server closed the stream's WebSocket (code " +
                std::to_string(why.code) +
                (why.reason.empty() ? std::string()
                                    : ": " + std::string(why.reason.data(),
                                                         why.reason.size())) +
                ")";
          }
        }
        changed.notify_all();
      });
    });
  }

  void CloseWebSocket() {
    {
      std::unique_lock lock(mu);
      if (!work) return;
      if (!closed) {
        closed = true;
        close_reason = "the stream's WebSocket is closed";
      }
      close_done = false;
    }
    net::post(ioc, [this] {
      WithWs([&](auto& ws) {
        if (!ws.is_open()) {
          std::lock_guard lock(mu);
          close_done = true;
          changed.notify_all();
          return;
        }
        ws.async_close(websocket::close_code::normal, [this](error_code) {
          std::lock_guard lock(mu);
          close_done = true;
          changed.notify_all();
        });
      });
    });
    {
      std::unique_lock lock(mu);
      changed.wait_for(lock, kCloseWait + std::chrono::milliseconds(100),
                       [this] { return close_done; });
    }
    net::post(ioc, [this] { Abort(); });
    work.reset();
    thread.join();
  }
};

StreamClient::StreamClient(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

StreamClient::~StreamClient() { impl_->CloseWebSocket(); }

const StreamSession& StreamClient::session() const { return impl_->session; }

Result<std::unique_ptr<StreamClient>> StreamClient::Open(
    ClientOptions options, const StreamPolicy& policy) {
  Result<internal::ServerAddress> address =
      internal::CheckClientOptions(options);
  if (!address.ok()) return address.error();
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->address = std::move(*address);
  Result<std::unique_ptr<HttpClient>> http =
      HttpClient::Connect(std::move(options));
  if (!http.ok()) return http.error();
  impl->http = std::move(*http);

  Result<HttpResponse> created = impl->http->Send(
      "POST", "/v1/streams", "application/json", StreamPolicyJson(policy));
  if (!created.ok()) return created.error();
  if (created->status != 201)
    return ServerAnswerError(*created, "creating the stream session");
  const Error bad_answer(
      ErrorCode::kIo,
      "creating the stream session: the server's answer is not the "
      "protocol's (no id, ws path or sampling interval)");
  error_code ec;
  const json::value answer = json::parse(created->body, ec);
  if (ec || !answer.is_object()) return bad_answer;
  const json::object& o = answer.as_object();
  const json::value* id = o.if_contains("id");
  const json::value* ws = o.if_contains("ws");
  const json::value* resolved = o.if_contains("policy");
  if (id == nullptr || !id->is_string() || !IsHex32(id->as_string()) ||
      ws == nullptr || !ws->is_string() || resolved == nullptr ||
      !resolved->is_object()) {
    return bad_answer;
  }
  StreamSession& session = impl->session;
  session.id = std::string(id->as_string());
  session.ws_path = std::string(ws->as_string());
  if (!session.ws_path.starts_with('/') ||
      !internal::IsPrintable(session.ws_path) ||
      session.ws_path.find(' ') != std::string::npos) {
    return bad_answer;
  }
  const json::value* interval =
      resolved->as_object().if_contains("sample_interval_ms");
  if (interval == nullptr || !interval->is_int64() ||
      interval->as_int64() < 0) {
    return bad_answer;
  }
  session.sample_interval_ms = interval->as_int64();
  if (const json::value* expires = o.if_contains("expires_after_s");
      expires != nullptr && expires->is_int64()) {
    session.expires_after_s = expires->as_int64();
  }
  session.policy_json = json::serialize(*resolved);
  session.answer = created->body;

  if (Status opened = impl->Connect(); !opened.ok()) {
    // The session would otherwise linger until its idle timeout.
    (void)impl->http->Send("DELETE", "/v1/streams/" + session.id);
    return opened.error();
  }
  return std::unique_ptr<StreamClient>(new StreamClient(std::move(impl)));
}

Status StreamClient::SendFrame(const FrameHeader& header,
                               std::span<const uint8_t> payload) {
  const auto head = EncodeFrameHeader(header);
  auto message =
      std::make_shared<std::vector<uint8_t>>(head.size() + payload.size());
  std::memcpy(message->data(), head.data(), head.size());
  if (!payload.empty()) {
    std::memcpy(message->data() + head.size(), payload.data(), payload.size());
  }
  return impl_->Write(std::move(message), /*binary=*/true, "a frame");
}

Status StreamClient::SendHash(std::string_view pdq_hex, int quality,
                              uint64_t t_ms, uint32_t seq) {
  const std::string text = json::serialize(json::object{
      {"pdq", pdq_hex}, {"quality", quality}, {"t", t_ms}, {"seq", seq}});
  auto message =
      std::make_shared<std::vector<uint8_t>>(text.begin(), text.end());
  return impl_->Write(std::move(message), /*binary=*/false, "a hash");
}

Result<std::optional<std::string>> StreamClient::ReadEvent(int64_t timeout_ms) {
  Impl& d = *impl_;
  std::unique_lock lock(d.mu);
  if (!d.read_pending) {
    if (d.closed) return Error(ErrorCode::kUnavailable, d.close_reason);
    d.read_pending = true;
    d.read_done = false;
    net::post(d.ioc, [&d] { d.StartRead(); });
  }
  auto done = [&d] { return d.read_done; };
  if (timeout_ms < 0) {
    d.changed.wait(lock, done);
  } else if (!d.changed.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                 done)) {
    return std::optional<std::string>();
  }
  d.read_pending = false;
  d.read_done = false;
  if (d.read_ec) {
    const bool normal = d.read_ec == websocket::error::closed ||
                        d.read_ec == net::error::operation_aborted || d.closed;
    if (!d.closed) {
      d.closed = true;
      if (d.close_reason.empty()) {
        d.close_reason =
            "the stream's WebSocket broke: " + internal::Reason(d.read_ec);
      }
    }
    return Error(normal ? ErrorCode::kUnavailable : ErrorCode::kIo,
                 d.close_reason);
  }
  if (!d.read_text) {
    return Error(ErrorCode::kIo, "the server sent a binary WebSocket message");
  }
  return std::optional<std::string>(std::move(d.read_message));
}

void StreamClient::Close() { impl_->CloseWebSocket(); }

Result<std::string> StreamClient::GetState() {
  Result<HttpResponse> r =
      impl_->http->Send("GET", "/v1/streams/" + impl_->session.id);
  if (!r.ok()) return r.error();
  if (r->status != 200)
    return ServerAnswerError(*r, "reading the stream's state");
  return std::move(r->body);
}

Result<std::vector<std::string>> ListStreams(HttpClient& http) {
  Result<HttpResponse> r = http.Send("GET", "/v1/streams");
  if (!r.ok()) return r.error();
  if (r->status != 200) return ServerAnswerError(*r, "listing the stream sessions");
  error_code ec;
  const json::value answer = json::parse(r->body, ec);
  const json::object* o = ec ? nullptr : answer.if_object();
  const json::value* streams = o == nullptr ? nullptr : o->if_contains("streams");
  if (streams == nullptr || !streams->is_array()) {
    return Error(ErrorCode::kIo,
                 "listing the stream sessions: the server's answer is not the protocol's (no "
                 "\"streams\" array)");
  }
  std::vector<std::string> states;
  for (const json::value& state : streams->as_array()) {
    if (!state.is_object()) {
      return Error(ErrorCode::kIo,
                   "listing the stream sessions: the server's answer is not the protocol's (a "
                   "session that is not an object)");
    }
    states.push_back(json::serialize(state));
  }
  return states;
}

Result<std::string> EndStream(HttpClient& http, std::string_view id) {
  if (!IsHex32(id)) {
    return Error(ErrorCode::kInvalidArgument,
                 "a stream session's id is 32 lower-case hex digits (got \"" + std::string(id) +
                     "\")");
  }
  Result<HttpResponse> r = http.Send("DELETE", "/v1/streams/" + std::string(id));
  if (!r.ok()) return r.error();
  if (r->status != 200) return ServerAnswerError(*r, "ending the stream session");
  return std::move(r->body);
}

Result<std::string> StreamClient::Delete() {
  Result<HttpResponse> r =
      impl_->http->Send("DELETE", "/v1/streams/" + impl_->session.id);
  if (!r.ok()) return r.error();
  if (r->status != 200)
    return ServerAnswerError(*r, "ending the stream session");
  return std::move(r->body);
}

}  // namespace bantay::client
