// Fuzz target: raw bytes on a connection to a running bantay-server
// (in-process on 127.0.0.1, over the shared fuzz store; plain HTTP, or TLS
// with BANTAY_FUZZ_TLS=1): Beast's request parser under the configured
// limits, keep-alive and pipelining, the session's own answers (400, 413,
// 431), the routes behind them, and WebSocket upgrades and frames on a live
// stream.
//
// Input: the bytes the client sends; then it ends its side (close_notify
// over TLS, and shutdown(SHUT_WR)) and reads until the server closes. In
// the bytes, @P, @L, @O and @A stand for the API keys of the platform, lab,
// operator and auditor roles, @S for the id of a live stream of the
// platform key (made again when it has ended), and @W cuts the bytes: the
// client waits until the server has sent something (at most 250 ms, and a
// second for all the waits of an input) before it sends the rest (a
// WebSocket client sends its frames after the 101). Properties, besides no
// crash, leak or undefined behaviour:
// - the server ends the connection within 15 s of the client's end;
// - what it sent is a sequence of whole HTTP/1.x responses: at most one
//   more than the requests sent (the answer to bytes that were not one),
//   and at least one for each request up to the first after which the
//   server closes (Connection: close, HTTP/1.0 without keep-alive, an
//   upgrade, a Host error); an interim 100 only to an HTTP/1.1 request
//   with Expect: 100-continue, once;
//   each status one that server/openapi.json documents for the request's
//   operation (405 with an Allow that lacks the request's method; 404 or
//   400 for no route),
//   never 500; a Content-Length; 429 and 503 with Retry-After; every body
//   JSON (application/json) but /metrics's; errors in the Error schema;
// - after a 101, WebSocket frames as a server sends them: unmasked, whole,
//   known opcodes; text frames are UTF-8 JSON objects with a "type";
//   nothing after a close frame;
// - every access log line (as the log is flushed: it is buffered for up to
//   a second) is a JSON object of the documented members, its route a
//   route template or "unmatched" (never the raw target), its "client" (the
//   harness's loopback is a trusted proxy: X-Forwarded-For is read over
//   plain HTTP, Forwarded over TLS) "unknown" or an address as the server
//   prints one;
// - every 16 inputs, on a new connection: /healthz answers 200, and no
//   other connection is left open (bantay_connections in /metrics is 1
//   within 5 s).
// BANTAY_FUZZ_VERBOSE=1 prints the start of what each input got.
// BANTAY_FUZZ_HEALTH_EVERY=N checks the server's health every N inputs
// instead (1 names the very input that left a connection open).

#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/json.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "api.h"
#include "bantay/models/digest.h"
#include "bantay/models/text.h"
#include "bantay/server/config.h"
#include "bantay/server/routes.h"
#include "bantay/server/server.h"
#include "fuzz_check.h"
#include "fuzz_store.h"

namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace server = bantay::server;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxHeaderBytes = 1024;
constexpr size_t kMaxBodyBytes = 3000;
constexpr std::string_view kStreamBody = R"({"sample_interval_ms":0,"window":3,"k":1})";

struct Env {
  const bantay::fuzz::FuzzStore* store = nullptr;
  std::unique_ptr<server::Server> server;
  uint16_t port = 0;
  std::string access_log;
  size_t log_offset = 0;  // of the first line not yet checked
  std::string stream_id = std::string(32, '0');
  // The statuses documented for each operation ("GET /healthz"), but 500.
  std::map<std::string, std::set<int>> statuses;
  std::set<std::string> routes;    // documented templates
  uint64_t inputs = 0;
  std::vector<std::string> recent;  // the inputs since the last health check
  SSL_CTX* client_tls = nullptr;   // with BANTAY_FUZZ_TLS=1
};

Env* MakeEnv() {
  auto* env = new Env;
  env->store = &bantay::fuzz::MakeFuzzStore("http-fuzz");
  server::ServerConfig c = env->store->config;
  c.port = 0;
  c.allow_plain_http = true;
  c.metrics_public = true;
  c.io_threads = 1;
  c.compute_threads = 1;
  c.max_header_bytes = kMaxHeaderBytes;
  c.max_body_bytes = kMaxBodyBytes;
  c.read_timeout_ms = 5000;
  c.idle_timeout_ms = 5000;
  c.max_batch_items = 16;
  c.poll_interval_ms = 50;
  c.streams_max_per_key = 8;
  c.streams_max_total = 16;
  c.streams_idle_timeout_s = 5;
  c.shutdown_grace_ms = 1000;
  env->access_log = env->store->dir + "/access.log";
  c.access_log = env->access_log;
  c.trusted_proxies = "127.0.0.1";
  if (const char* tls = std::getenv("BANTAY_FUZZ_TLS"); tls != nullptr && tls == std::string("1")) {
    // A self-signed certificate made with the openssl command line.
    const std::string& dir = env->store->dir;
    const std::string command =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        "-subj /CN=localhost -keyout " + dir + "/server.key -out " + dir +
        "/server.pem 2>" + dir + "/openssl.log";
    FUZZ_CHECK(std::system(command.c_str()) == 0, "%s failed", command.c_str());
    c.allow_plain_http = false;
    c.proxy_header = "forwarded";
    c.tls_cert = dir + "/server.pem";
    c.tls_key = dir + "/server.key";
    // OpenSSL writes with write(): a server that has closed must not
    // stop the harness with SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    env->client_tls = SSL_CTX_new(TLS_client_method());
    FUZZ_CHECK(env->client_tls != nullptr &&
                   SSL_CTX_load_verify_locations(env->client_tls, c.tls_cert.c_str(), nullptr) ==
                       1,
               "the client's TLS context");
    SSL_CTX_set_verify(env->client_tls, SSL_VERIFY_PEER, nullptr);
  }
  auto started = server::Server::Start(std::move(c));
  FUZZ_CHECK(started.ok(), "%s", started.ok() ? "" : started.error().ToString().c_str());
  env->server = std::move(*started);
  FUZZ_CHECK(env->server->WaitUntilReady(), "the index did not load");
  env->port = env->server->port();

  const json::value doc = json::parse(server::OpenApiDocument());
  for (const auto& path : doc.at("paths").as_object()) {
    env->routes.emplace(path.key());
    for (const auto& op : path.value().as_object()) {
      if (const json::object* o = op.value().if_object(); o && o->contains("responses")) {
        std::string method(op.key());
        for (char& ch : method) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        std::set<int>& statuses = env->statuses[method + " " + std::string(path.key())];
        for (const auto& response : o->at("responses").as_object()) {
          if (response.key() != "500") statuses.insert(std::stoi(std::string(response.key())));
        }
      }
    }
  }
  return env;
}

// The client's end of one connection, plain or TLS, on a non-blocking
// socket.
class Connection {
 public:
  Connection(uint16_t port, SSL_CTX* tls) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // Tens of thousands of loopback connections a campaign can use up the
    // ephemeral ports (each closed one waits in TIME_WAIT for a minute):
    // EADDRNOTAVAIL is waited out (two minutes at most, on a new socket each
    // time); any other failure is the server's.
    int connect_error = 0;
    for (int attempt = 0; attempt < 1200; ++attempt) {
      fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      FUZZ_CHECK(fd_ >= 0, "socket");
      connect_error = Connect(address);
      if (connect_error == 0) break;
      close(fd_);
      fd_ = -1;
      if (connect_error != EADDRNOTAVAIL) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FUZZ_CHECK(connect_error == 0, "connect to the server: %s",
               std::strerror(connect_error));
    FUZZ_CHECK(fcntl(fd_, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    if (tls == nullptr) return;
    ssl_ = SSL_new(tls);
    FUZZ_CHECK(ssl_ != nullptr && SSL_set_fd(ssl_, fd_) == 1, "SSL_new");
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    for (;;) {
      const int r = SSL_connect(ssl_);
      if (r == 1) break;
      const int error = SSL_get_error(ssl_, r);
      FUZZ_CHECK(error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE,
                 "the TLS handshake failed (%d)", error);
      FUZZ_CHECK(Clock::now() < deadline, "the TLS handshake took over 10 s");
      Wait(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, std::chrono::milliseconds(100));
    }
  }
  ~Connection() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    close(fd_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends all of `bytes`; false when the server has closed (the rest is
  // not sent) or 10 s passed.
  bool Send(std::string_view bytes) {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (!bytes.empty() && Clock::now() < deadline) {
      if (ssl_ != nullptr) {
        const int n = SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size()));
        if (n > 0) {
          bytes.remove_prefix(static_cast<size_t>(n));
          continue;
        }
        const int error = SSL_get_error(ssl_, n);
        if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) return false;
        Wait(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, std::chrono::milliseconds(100));
      } else {
        const ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n > 0) {
          bytes.remove_prefix(static_cast<size_t>(n));
          continue;
        }
        if (n < 0 && errno != EAGAIN) return false;
        Wait(POLLOUT, std::chrono::milliseconds(100));
      }
    }
    return bytes.empty();
  }

  // The client's end: close_notify over TLS, then the socket's end.
  void EndSending() {
    if (ssl_ != nullptr) SSL_shutdown(ssl_);
    shutdown(fd_, SHUT_WR);
  }

  // Reads what arrives within `wait` (appended to *received); false when
  // the server has ended the connection (close_notify, a close or a reset).
  bool ReadFor(std::chrono::milliseconds wait, std::string* received) {
    const bool pending = ssl_ != nullptr && SSL_pending(ssl_) > 0;
    if (!pending && !Wait(POLLIN, wait)) return true;
    char chunk[64 * 1024];
    if (ssl_ == nullptr) {
      const ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
      if (n < 0 && errno == EAGAIN) return true;
      if (n <= 0) return false;
      received->append(chunk, static_cast<size_t>(n));
      return true;
    }
    const int n = SSL_read(ssl_, chunk, sizeof chunk);
    if (n > 0) {
      received->append(chunk, static_cast<size_t>(n));
      return true;
    }
    // WANT_READ: a record not yet whole, or no application data in it (a
    // session ticket).
    return SSL_get_error(ssl_, n) == SSL_ERROR_WANT_READ;
  }

 private:
  // 0 or the connect's errno. A signal (libFuzzer's timer) may interrupt
  // connect, which then goes on without it: its outcome is waited for.
  int Connect(const sockaddr_in& address) {
    if (connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) return 0;
    if (errno != EINTR) return errno;
    pollfd p{fd_, POLLOUT, 0};
    int ready;
    do {
      ready = poll(&p, 1, 10'000);
    } while (ready < 0 && errno == EINTR);
    if (ready == 0) return ETIMEDOUT;
    int error = 0;
    socklen_t length = sizeof error;
    if (ready < 0 || getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return errno;
    return error;
  }

  bool Wait(short events, std::chrono::milliseconds wait) {
    pollfd p{fd_, events, 0};
    return poll(&p, 1, static_cast<int>(wait.count())) > 0;
  }

  int fd_ = -1;
  SSL* ssl_ = nullptr;
};

// Sends `parts` on a new connection, waiting between two parts until the
// server has sent something (at most 250 ms, and a second in all: a
// WebSocket client sends frames after the 101), ends the client's side and
// reads until the server closes (nullopt if it has not within `limit`).
std::optional<std::string> Converse(const Env& env, const std::vector<std::string>& parts,
                                    std::chrono::seconds limit) {
  Connection connection(env.port, env.client_tls);
  std::string received;
  bool open = true;
  // The waits of one input take at most a second in all (well within the
  // server's read timeout).
  const auto waits_end = Clock::now() + std::chrono::seconds(1);
  for (size_t i = 0; i < parts.size() && open; ++i) {
    if (i > 0) {
      const size_t before = received.size();
      const auto until = std::min(waits_end, Clock::now() + std::chrono::milliseconds(250));
      while (open && received.size() == before && Clock::now() < until) {
        open = connection.ReadFor(std::chrono::milliseconds(10), &received);
      }
    }
    // The server may close early (after a 413 or 431): the rest is not sent.
    if (open && !connection.Send(parts[i])) break;
  }
  connection.EndSending();
  const auto deadline = Clock::now() + limit;
  while (open && Clock::now() < deadline) {
    open = connection.ReadFor(std::chrono::milliseconds(100), &received);
  }
  if (open) return std::nullopt;
  return received;
}

// One request of the harness's own (no fuzz input): its response.
http::response<http::string_body> Ask(const Env& env, std::string_view request) {
  const std::optional<std::string> raw =
      Converse(env, {std::string(request)}, std::chrono::seconds(10));
  FUZZ_CHECK(raw.has_value(), "no answer to the harness's request %.*s",
             static_cast<int>(request.size()), request.data());
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);
  parser.eager(true);
  beast::error_code ec;
  parser.put(boost::asio::buffer(*raw), ec);
  FUZZ_CHECK(!ec && parser.is_done(), "the harness's request got no whole answer: %s",
             raw->c_str());
  return parser.release();
}

std::string Authorization(const Env& env, size_t role) {
  return "Authorization: Bearer " + env.store->key_texts[role] + "\r\n";
}

// Makes a new platform stream for @S when the last one has ended (the
// fuzzer's requests may delete it, it expires when idle). When none can be
// made (the fuzzer's streams fill the quota), @S names the ended one.
void EnsureStream(Env* env) {
  const std::string auth = Authorization(*env, 0);
  const auto got = Ask(*env, "GET /v1/streams/" + env->stream_id +
                                 " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth + "\r\n");
  if (got.result_int() == 200) return;
  const auto made = Ask(*env, "POST /v1/streams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
                                  auth + "Content-Type: application/json\r\nContent-Length: " +
                                  std::to_string(kStreamBody.size()) + "\r\n\r\n" +
                                  std::string(kStreamBody));
  if (made.result_int() != 201) return;
  env->stream_id = std::string(json::parse(made.body()).at("id").as_string());
}

// The input with its tokens replaced, cut at each @W.
std::vector<std::string> Expand(Env* env, std::string_view input) {
  bool stream_ensured = false;
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < input.size(); ++i) {
    if (input[i] == '@' && i + 1 < input.size()) {
      const char c = input[i + 1];
      const size_t role = c == 'P' ? 0 : c == 'L' ? 1 : c == 'O' ? 2 : c == 'A' ? 3 : 4;
      if (role < 4) {
        parts.back() += env->store->key_texts[role];
        ++i;
        continue;
      }
      if (c == 'S') {
        if (!stream_ensured) EnsureStream(env);
        stream_ensured = true;
        parts.back() += env->stream_id;
        ++i;
        continue;
      }
      if (c == 'W') {
        parts.emplace_back();
        ++i;
        continue;
      }
    }
    parts.back() += input[i];
  }
  return parts;
}

// The requests in `bytes` as the server's parser reads them (same limits),
// in order, up to the first that is not a whole request (included when its
// header was read: it may be answered) and up to an upgrade (frames follow
// it).
struct Requests {
  std::vector<std::string> methods;
  std::vector<std::string> targets;
  // Where each goes (the server's own MatchRoute: openapi_test checks its
  // routes against the document).
  std::vector<server::RouteMatch> routes;
  // HTTP/1.1 with Expect: 100-continue: may get an interim 100 first.
  std::vector<bool> expect_continue;
  // How many the server must answer: up to and including the first after
  // which it closes (not keep-alive, an upgrade, not exactly one Host in
  // HTTP/1.1 or more than one in HTTP/1.0, or a body after Expect:
  // 100-continue: it may be refused unread), or all of them.
  size_t must_answer = 0;
  bool last_is_upgrade = false;
};

Requests ReadRequests(std::string_view bytes) {
  Requests out;
  bool closing = false;
  while (!bytes.empty()) {
    http::request_parser<http::vector_body<uint8_t>> parser;
    parser.header_limit(kMaxHeaderBytes);
    parser.body_limit(kMaxBodyBytes);
    parser.eager(true);
    beast::error_code ec;
    const size_t used = parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
    auto add = [&out](const auto& request) {
      out.methods.emplace_back(request.method_string());
      out.targets.emplace_back(request.target());
      out.routes.push_back(server::MatchRoute(out.methods.back(), out.targets.back()));
      const auto expect = request.find(http::field::expect);
      out.expect_continue.push_back(request.version() == 11 && expect != request.end() &&
                                    beast::iequals(expect->value(), "100-continue"));
    };
    if ((ec || !parser.is_done()) && parser.is_header_done()) {
      // Refused after its header (413, a malformed body): answered, as a
      // HEAD without a body. Or its body was cut short: it may be answered
      // (100 Continue, a refusal from its header) or not.
      add(parser.get());
      break;
    }
    if (ec || !parser.is_done()) break;
    const auto& request = parser.get();
    add(request);
    bytes.remove_prefix(used);
    out.last_is_upgrade = beast::websocket::is_upgrade(request);
    const size_t hosts = request.count(http::field::host);
    if (!closing) {
      ++out.must_answer;
      // A request expecting 100-continue may be refused from its header
      // (a key, a route), its body left unread: the connection closes.
      const bool body = request.chunked() || request.payload_size().value_or(0) > 0;
      closing = !request.keep_alive() || out.last_is_upgrade || hosts > 1 ||
                (hosts == 0 && request.version() == 11) ||
                (out.expect_continue.back() && body);
    }
    if (out.last_is_upgrade) break;
  }
  return out;
}

// What one input sent and got, as printable text for a finding's message
// (made only then: it can be megabytes).
struct Exchange {
  std::string_view sent;
  std::string_view received;
  std::string Text() const {
    return "sent " + bantay::models::PrintableText(sent) + "\ngot " +
           bantay::models::PrintableText(received);
  }
};

void CheckJsonBody(int status, std::string_view body, const Exchange& what) {
  boost::system::error_code ec;
  const json::value value = json::parse(body, ec);
  FUZZ_CHECK(!ec, "not JSON: %s", what.Text().c_str());
  if (status < 400) return;
  FUZZ_CHECK(bantay::fuzz::ErrorDetail(value) != nullptr, "not the error schema: %s",
             what.Text().c_str());
}

// The server's WebSocket frames after a 101.
void CheckFrames(std::string_view bytes, const Exchange& what) {
  bool closed = false;
  while (!bytes.empty()) {
    FUZZ_CHECK(!closed, "a frame after the close frame: %s", what.Text().c_str());
    FUZZ_CHECK(bytes.size() >= 2, "a partial frame header: %s", what.Text().c_str());
    const auto b0 = static_cast<uint8_t>(bytes[0]);
    const auto b1 = static_cast<uint8_t>(bytes[1]);
    const int opcode = b0 & 0x0f;
    FUZZ_CHECK((b0 & 0x70) == 0, "reserved bits set: %s", what.Text().c_str());
    FUZZ_CHECK((b1 & 0x80) == 0, "a masked server frame: %s", what.Text().c_str());
    FUZZ_CHECK(opcode == 1 || opcode == 8 || opcode == 9 || opcode == 10,
               "opcode %d: %s", opcode, what.Text().c_str());
    FUZZ_CHECK((b0 & 0x80) != 0, "a fragmented message: %s", what.Text().c_str());
    uint64_t length = b1 & 0x7f;
    size_t header = 2;
    if (length >= 126) {
      const size_t extra = length == 126 ? 2 : 8;
      FUZZ_CHECK(bytes.size() >= 2 + extra, "a partial frame header: %s", what.Text().c_str());
      length = 0;
      for (size_t i = 0; i < extra; ++i) length = length << 8 | static_cast<uint8_t>(bytes[2 + i]);
      header += extra;
    }
    FUZZ_CHECK(bytes.size() - header >= length, "a partial frame: %s", what.Text().c_str());
    const std::string_view payload = bytes.substr(header, static_cast<size_t>(length));
    if (opcode == 1) {
      FUZZ_CHECK(bantay::models::IsValidUtf8(payload), "a text frame not UTF-8: %s",
                 what.Text().c_str());
      boost::system::error_code ec;
      const json::value event = json::parse(payload, ec);
      FUZZ_CHECK(!ec && event.is_object() && event.as_object().contains("type") &&
                     event.at("type").is_string(),
                 "an event that is not a JSON object with a type: %.*s: %s",
                 static_cast<int>(payload.size()), payload.data(), what.Text().c_str());
    } else if (opcode == 8) {
      FUZZ_CHECK(payload.size() != 1, "a one-byte close payload: %s", what.Text().c_str());
      closed = true;
    }
    bytes.remove_prefix(header + static_cast<size_t>(length));
  }
}

// The status of answer `count`: one its operation documents (server.cc's
// own refusals, 400, 413 and 431, are documented for every operation); for
// a path without that method 405 with Allow (the path's methods, without
// the request's), or a refusal of the connection (400, 413); for no route
// 404, or 400 for a target that is not a path, or 413; for bytes that were
// not a request, 400, 413 or 431.
void CheckStatus(const Env& env, const Requests& requests, size_t count,
                 const http::response<http::string_body>& response, const Exchange& what) {
  const int status = response.result_int();
  if (count == requests.methods.size()) {
    FUZZ_CHECK(status == 400 || status == 413 || status == 431, "status %d to no request: %s",
               status, what.Text().c_str());
    return;
  }
  const std::string& method = requests.methods[count];
  const server::RouteMatch& match = requests.routes[count];
  if (match.route != nullptr) {
    // The route's method: HEAD of a GET route is answered as that GET.
    const std::string operation =
        std::string(match.route->method) + " " + std::string(match.route->path);
    const auto documented = env.statuses.find(operation);
    FUZZ_CHECK(documented != env.statuses.end() && documented->second.contains(status),
               "status %d to %s: %s", status, operation.c_str(), what.Text().c_str());
  } else if (!match.allow.empty()) {
    // The connection's own refusals come before routing.
    FUZZ_CHECK(status == 405 || status == 400 || status == 413, "status %d to %s %s: %s",
               status, method.c_str(), requests.targets[count].c_str(), what.Text().c_str());
    if (status == 405) {
      const std::string allow(response[http::field::allow]);
      bool listed = false;
      for (const auto& token : http::token_list(allow)) listed = listed || token == method;
      FUZZ_CHECK(!allow.empty() && !listed, "405 with Allow %s to %s: %s", allow.c_str(),
                 method.c_str(), what.Text().c_str());
    }
  } else {
    FUZZ_CHECK(status == 404 || status == 400 || status == 413, "status %d to %s %s: %s",
               status, method.c_str(), requests.targets[count].c_str(), what.Text().c_str());
  }
}

void CheckResponses(const Env& env, std::string_view input, std::string_view received) {
  const Requests requests = ReadRequests(input);
  const std::vector<std::string>& methods = requests.methods;
  const Exchange what{input, received};
  size_t count = 0;
  bool interim = false;  // the last answer was a 100
  while (!received.empty()) {
    FUZZ_CHECK(count <= methods.size(), "more answers than requests: %s", what.Text().c_str());
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    parser.header_limit(64 * 1024);
    parser.eager(true);
    parser.skip(count < methods.size() && methods[count] == "HEAD");
    beast::error_code ec;
    const size_t used = parser.put(boost::asio::buffer(received.data(), received.size()), ec);
    FUZZ_CHECK(!ec && parser.is_done(), "not a whole HTTP response (%s): %s",
               ec.message().c_str(), what.Text().c_str());
    const auto& response = parser.get();
    const int status = response.result_int();
    if (status == 100) {
      // An interim answer, to a request that asked for it, once; the final
      // one follows.
      FUZZ_CHECK(count < methods.size() && requests.expect_continue[count] && !interim,
                 "a 100 to a request not expecting it: %s", what.Text().c_str());
      interim = true;
      received.remove_prefix(used);
      continue;
    }
    interim = false;
    FUZZ_CHECK(status == 101 || parser.content_length().has_value(),
               "no Content-Length: %s", what.Text().c_str());
    FUZZ_CHECK(response.version() == 11 || response.version() == 10, "version %u: %s",
               response.version(), what.Text().c_str());
    CheckStatus(env, requests, count, response, what);
    if (status == 429 || status == 503) {
      FUZZ_CHECK(!response[http::field::retry_after].empty(), "no Retry-After: %s",
                 what.Text().c_str());
    }
    // Every answer is JSON, but /metrics (Prometheus text).
    const bool metrics = status == 200 && count < methods.size() &&
                         requests.routes[count].route != nullptr &&
                         requests.routes[count].route->id == server::RouteId::kMetrics;
    if (status != 101 && !metrics) {
      FUZZ_CHECK(response[http::field::content_type] == "application/json",
                 "Content-Type %s: %s", std::string(response[http::field::content_type]).c_str(),
                 what.Text().c_str());
      if (!parser.skip()) CheckJsonBody(status, response.body(), what);
    }
    received.remove_prefix(used);
    ++count;
    if (status == 101) {
      FUZZ_CHECK(requests.last_is_upgrade && count == methods.size(), "101 to no upgrade: %s",
                 what.Text().c_str());
      return CheckFrames(received, what);
    }
  }
  FUZZ_CHECK(count >= requests.must_answer, "%zu answers to %zu requests: %s", count,
             requests.must_answer, what.Text().c_str());
}

void CheckAccessLog(Env* env) {
  std::ifstream file(env->access_log, std::ios::binary);
  FUZZ_CHECK(file.good(), "the access log %s", env->access_log.c_str());
  file.seekg(static_cast<std::streamoff>(env->log_offset));
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  static const std::set<std::string> members = {
      "time", "peer", "client", "method", "route", "status", "latency_us", "key", "verdict",
      "request_id"};
  size_t start = 0;
  for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    const std::string_view line(text.data() + start, end - start);
    // Quoted for a finding's message only.
    auto quoted = [line] { return bantay::models::PrintableText(line); };
    boost::system::error_code ec;
    const json::value value = json::parse(line, ec);
    FUZZ_CHECK(!ec && value.is_object(), "an access log line that is not JSON: %s",
               quoted().c_str());
    for (const auto& member : value.as_object()) {
      FUZZ_CHECK(members.contains(std::string(member.key())), "member %s in the log: %s",
                 std::string(member.key()).c_str(), quoted().c_str());
    }
    const json::value* route = value.as_object().if_contains("route");
    FUZZ_CHECK(route != nullptr && route->is_string() &&
                   (route->as_string() == "unmatched" ||
                    env->routes.contains(std::string(route->as_string()))),
               "a route that is not a template: %s", quoted().c_str());
    // The harness's connections come from the loopback address.
    const json::value* peer = value.as_object().if_contains("peer");
    FUZZ_CHECK(peer != nullptr && peer->is_string() && peer->as_string().starts_with("127.0.0.1:"),
               "no peer address: %s", quoted().c_str());
    // What a proxy forwarded is printed by the server, never copied.
    if (const json::value* client = value.as_object().if_contains("client")) {
      boost::system::error_code bad;
      const std::string named = client->is_string() ? std::string(client->as_string()) : "";
      const auto address = boost::asio::ip::make_address(named, bad);
      FUZZ_CHECK(named == "unknown" || (!bad && address.to_string() == named &&
                                       !(address.is_v6() && address.to_v6().is_v4_mapped())),
                 "a client that is no address: %s", quoted().c_str());
    }
    const json::value* status = value.as_object().if_contains("status");
    FUZZ_CHECK(status != nullptr && status->is_int64(), "no status: %s", quoted().c_str());
  }
  env->log_offset += start;
}

// The inputs since the last health check, oldest first, one line of hex
// each (`xxd -r -p` gives the file back): the finding's own input is only
// the last of them, and may not be the one that left a connection open.
void PrintRecentInputs(const Env& env) {
  std::fprintf(stderr, "the inputs since the last health check, oldest first:\n");
  for (const std::string& input : env.recent) {
    const std::span bytes(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    std::fprintf(stderr, "input: %s\n", bantay::models::ToHex(bytes).c_str());
  }
}

// bantay_connections in /metrics, asked on a new connection (which is open,
// and counted, while /metrics is made).
long OpenConnections(const Env& env) {
  const auto metrics =
      Ask(env, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  FUZZ_CHECK(metrics.result_int() == 200, "/metrics answered %d", metrics.result_int());
  const std::string& body = metrics.body();
  const size_t at = body.find("\nbantay_connections ");
  FUZZ_CHECK(at != std::string::npos, "no bantay_connections in /metrics");
  return std::strtol(body.c_str() + at + 20, nullptr, 10);
}

// /healthz on a new connection, and that connection is the only one open.
void CheckServerHealth(const Env& env) {
  const auto health =
      Ask(env, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  FUZZ_CHECK(health.result_int() == 200, "/healthz answered %d", health.result_int());
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  for (;;) {
    const long open = OpenConnections(env);
    if (open == 1) return;
    if (Clock::now() >= deadline) {
      PrintRecentInputs(env);
      // Whether the connection is left for good or only late.
      const auto more = Clock::now() + std::chrono::seconds(10);
      long later = open;
      while (later != 1 && Clock::now() < more) {
        usleep(100'000);
        later = OpenConnections(env);
      }
      FUZZ_CHECK(open == 1, "%ld connections open 5 s after the clients closed (%ld 10 s later)",
                 open, later);
    }
    usleep(20'000);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env* const env = MakeEnv();
  static const bool verbose = std::getenv("BANTAY_FUZZ_VERBOSE") != nullptr;
  env->recent.emplace_back(reinterpret_cast<const char*>(data), size);
  const std::vector<std::string> parts =
      Expand(env, {reinterpret_cast<const char*>(data), size});
  std::string input;
  for (const std::string& part : parts) input += part;
  const std::optional<std::string> received =
      Converse(*env, parts, std::chrono::seconds(15));
  FUZZ_CHECK(received.has_value(), "the server did not end the connection within 15 s: %s",
             bantay::models::PrintableText(input).c_str());
  if (verbose) {
    std::fprintf(stderr, "%zu bytes sent, %zu received: %s\n", input.size(), received->size(),
                 bantay::models::PrintableText(std::string_view(*received).substr(0, 600)).c_str());
  }
  CheckResponses(*env, input, *received);
  CheckAccessLog(env);
  static const uint64_t health_every = [] {
    const char* text = std::getenv("BANTAY_FUZZ_HEALTH_EVERY");
    const int every = text != nullptr ? std::atoi(text) : 0;
    return every > 0 ? static_cast<uint64_t>(every) : 16;
  }();
  if (++env->inputs % health_every == 0) {
    CheckServerHealth(*env);
    env->recent.clear();
  }
  return 0;
}
