// Integration tests of the server's transport and life cycle: slow clients,
// overload, graceful shutdown, certificate reload, mutual TLS, plain HTTP,
// and what it leaves behind (privacy). SQLite store; the API itself is
// covered on both backends in api_test.cc.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "bantay/server/routes.h"
#include "server_test_util.h"

namespace bantay::server::testing {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::ip::tcp;
using client::HttpResponse;

class LifecycleTest : public ::testing::Test, public ServerFixture {
 protected:
  void SetUp() override { SetUpStore("sqlite"); }
  void TearDown() override { StopServer(); }

  // A JPEG large enough that decoding it keeps a compute thread busy for a
  // while (tens of milliseconds).
  static const std::vector<uint8_t>& LargeJpeg() {
    static const std::vector<uint8_t> jpeg =
        bantay::testing::Encode(bantay::testing::MakePattern(4000, 3000), ".jpg");
    return jpeg;
  }

  Result<HttpResponse> MatchLarge(client::HttpClient& c) {
    return c.Send("POST", "/v1/match", "image/jpeg", LargeJpeg());
  }

};

TEST_F(LifecycleTest, ASlowClientIsCutOffAndOthersAreServed) {
  config.read_timeout_ms = 300;
  StartServer();
  std::unique_ptr<ssl::stream<tcp::socket>> connection = RawConnection();
  ssl::stream<tcp::socket>& slow = *connection;
  // One byte every 20 ms: 400 bytes would take 8 s; the server must hang up
  // long before the header is complete, although bytes keep coming.
  const std::string request = "POST /v1/match HTTP/1.1\r\nHost: localhost\r\nX-Pad: " +
                              std::string(350, 'a') + "\r\n\r\n";
  size_t sent = 0;
  boost::system::error_code ec;
  for (; sent < request.size(); ++sent) {
    asio::write(slow, asio::buffer(request.data() + sent, 1), ec);
    if (ec) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(ec) << "the server read a trickled header to the end";
  EXPECT_LT(sent, request.size());
  // Meanwhile and after, other clients are served.
  std::unique_ptr<client::HttpClient> other = Client("platform");
  ASSERT_NE(other, nullptr);
  HttpResponse r =
      *other->Send("POST", "/v1/match", "application/json",
                   R"({"pdq":")" + ReferencePdq(kBridge) + R"("})");
  EXPECT_EQ(r.status, 200);
}

// HEAD of a GET route is answered as the GET without its body (RFC 9110
// section 9.3.2): same status and Content-Length. Other routes answer 405
// naming their methods (a GET route's with HEAD).
TEST_F(LifecycleTest, AnswersToHeadHaveNoBodyAndKeepTheConnectionInStep) {
  StartServer();
  std::unique_ptr<ssl::stream<tcp::socket>> connection = RawConnection();
  ssl::stream<tcp::socket>& stream = *connection;
  const std::string auditor = "Authorization: Bearer " + keys_.at("auditor") + "\r\n";
  // Requests in one write (pipelined): HEADs and GETs in turn.
  asio::write(stream, asio::buffer(
                          "HEAD /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
                          "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
                          "HEAD /v1/audit?limit=1 HTTP/1.1\r\nHost: localhost\r\n" + auditor +
                          "\r\n"
                          "GET /v1/audit?limit=1 HTTP/1.1\r\nHost: localhost\r\n" + auditor +
                          "\r\n"
                          "HEAD /v1/audit HTTP/1.1\r\nHost: localhost\r\n\r\n"
                          "HEAD /v1/match HTTP/1.1\r\nHost: localhost\r\n\r\n"
                          "POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
                          "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  boost::beast::flat_buffer buffer;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;
  auto read_head = [&] {
    boost::beast::http::response_parser<boost::beast::http::string_body> head;
    head.skip(true);  // what a client does for a HEAD request
    boost::beast::http::read(stream, buffer, head);
    EXPECT_TRUE(head.get().body().empty());
    return head.release();
  };
  auto read_get = [&] {
    Response get;
    boost::beast::http::read(stream, buffer, get);
    return get;
  };
  for (int round = 0; round < 2; ++round) {
    const Response head = read_head();
    const Response get = read_get();
    EXPECT_EQ(head.result_int(), 200) << round;
    EXPECT_EQ(get.result_int(), 200) << round;
    EXPECT_EQ(head[boost::beast::http::field::content_length], std::to_string(get.body().size()))
        << round;
    EXPECT_EQ(head[boost::beast::http::field::content_type], "application/json") << round;
    if (round == 0) {
      EXPECT_EQ(ParseJson(get.body()), json::parse(R"({"status":"ok"})"));
    } else {
      EXPECT_EQ(ParseJson(get.body()).at("records").as_array().size(), 1u);
    }
  }
  const Response unauthenticated = read_head();  // as GET: a key is needed
  EXPECT_EQ(unauthenticated.result_int(), 401);
  const Response head_match = read_head();
  EXPECT_EQ(head_match.result_int(), 405);
  EXPECT_EQ(head_match[boost::beast::http::field::allow], "POST");
  const Response post_healthz = read_get();
  EXPECT_EQ(post_healthz.result_int(), 405);
  EXPECT_EQ(post_healthz[boost::beast::http::field::allow], "GET, HEAD");
  const Response get = read_get();
  EXPECT_EQ(get.result_int(), 200);
  EXPECT_EQ(ParseJson(get.body()), json::parse(R"({"status":"ok"})"));
}

// A target in the absolute form (RFC 9112 section 3.2.2) is routed by its
// path and query; other schemes and targets that are not paths are 400.
TEST_F(LifecycleTest, TargetsInTheAbsoluteFormAreRouted) {
  StartServer();
  std::unique_ptr<ssl::stream<tcp::socket>> connection = RawConnection();
  ssl::stream<tcp::socket>& stream = *connection;
  const std::string auditor = "Authorization: Bearer " + keys_.at("auditor") + "\r\n";
  asio::write(stream,
              asio::buffer("GET https://localhost/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
                           "GET http://other.example:8080/v1/audit?limit=1 HTTP/1.1\r\n"
                           "Host: localhost\r\n" + auditor + "\r\n"
                           "GET https://localhost/v1/audit?limit=0 HTTP/1.1\r\n"
                           "Host: localhost\r\n" + auditor + "\r\n"
                           "GET ftp://localhost/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
                           "GET healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
                           // No host (RFC 9110 section 4.2.1).
                           "GET http:/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
                           "GET https:///healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
                           "GET http:healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  boost::beast::flat_buffer buffer;
  auto read = [&] {
    boost::beast::http::response<boost::beast::http::string_body> response;
    boost::beast::http::read(stream, buffer, response);
    return response;
  };
  const auto health = read();
  EXPECT_EQ(health.result_int(), 200);
  EXPECT_EQ(ParseJson(health.body()), json::parse(R"({"status":"ok"})"));
  const auto audit = read();
  EXPECT_EQ(audit.result_int(), 200);
  EXPECT_EQ(ParseJson(audit.body()).at("records").as_array().size(), 1u) << audit.body();
  const auto bad_limit = read();
  EXPECT_EQ(bad_limit.result_int(), 400);
  EXPECT_EQ(ParseJson(bad_limit.body()).at("error").at("code"), "invalid_argument");
  for (int i = 0; i < 5; ++i) {
    const auto refused = read();
    EXPECT_EQ(refused.result_int(), 400);
    EXPECT_EQ(ParseJson(refused.body()),
              json::parse(R"({"error":{"code":"invalid_argument",)"
                          R"("message":"the request target is not a valid path"}})"));
  }
}

// RFC 9112 section 3.2: an HTTP/1.1 request without a Host field, or any
// request with two, is answered 400 and the connection closed; HTTP/1.0
// needs none.
TEST_F(LifecycleTest, ARequestNeedsExactlyOneHost) {
  StartServer();
  namespace http = boost::beast::http;
  const std::string kError =
      R"({"error":{"code":"invalid_argument",)"
      R"("message":"a request needs exactly one Host header"}})";
  for (const std::string request :
       {"GET /healthz HTTP/1.1\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: other\r\n\r\n",
        "GET /healthz HTTP/1.0\r\nHost: localhost\r\nHost: other\r\n\r\n"}) {
    std::unique_ptr<ssl::stream<tcp::socket>> connection = RawConnection();
    // A second request behind it is not answered.
    asio::write(*connection, asio::buffer(request + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> refused;
    http::read(*connection, buffer, refused);
    EXPECT_EQ(refused.result_int(), 400) << request;
    EXPECT_EQ(ParseJson(refused.body()), json::parse(kError)) << request;
    EXPECT_FALSE(refused.keep_alive());
    http::response<http::string_body> next;
    boost::system::error_code ec;
    http::read(*connection, buffer, next, ec);
    EXPECT_EQ(ec, http::error::end_of_stream) << request;
  }
  {
    // The refusal of a HEAD request has no body (its Content-Length is
    // the one a GET would get).
    std::unique_ptr<ssl::stream<tcp::socket>> connection = RawConnection();
    asio::write(*connection, asio::buffer(std::string("HEAD /healthz HTTP/1.1\r\n\r\n")));
    boost::beast::flat_buffer buffer;
    http::response_parser<http::string_body> head;
    head.skip(true);
    http::read(*connection, buffer, head);
    EXPECT_EQ(head.get().result_int(), 400);
    ASSERT_TRUE(head.content_length().has_value());
    EXPECT_EQ(*head.content_length(), kError.size());
    EXPECT_TRUE(head.get().body().empty());
    char byte = 0;
    boost::system::error_code ec;
    EXPECT_EQ(connection->read_some(asio::buffer(&byte, 1), ec), 0u);
    EXPECT_TRUE(ec == asio::error::eof || ec == asio::ssl::error::stream_truncated)
        << ec.message();
  }
  std::unique_ptr<ssl::stream<tcp::socket>> connection = RawConnection();
  asio::write(*connection, asio::buffer(std::string("GET /healthz HTTP/1.0\r\n\r\n")));
  boost::beast::flat_buffer buffer;
  http::response<http::string_body> answer;
  http::read(*connection, buffer, answer);
  EXPECT_EQ(answer.result_int(), 200);
  EXPECT_EQ(answer.version(), 10u);
}

// The server closes a connection (Connection: close here) without
// resetting it when the client has sent bytes it never read: the answer
// arrives whole (RFC 9112 section 9.6: a reset can destroy it on the way),
// over TLS and over plain HTTP.
// RFC 9110 section 10.1.1: a client that sends Expect: 100-continue waits
// for the interim 100 before it sends the body (curl for bodies over 1 MB,
// a second at most). Not when the body came along already, not to
// HTTP/1.0, and not when the request is refused from its header (413).
TEST_F(LifecycleTest, ARequestExpectingContinueGetsA100BeforeItsBody) {
  namespace http = boost::beast::http;
  config.max_body_bytes = 32 * 1024 * 1024;
  // One token, refilled in 1000 s.
  AddKey("one-token", Role::kPlatform, 0.001, 1.0);
  StartServer();
  const std::string body = R"({"pdq":")" + ReferencePdq(kBridge) + R"("})";
  auto header = [&](std::string_view version, size_t length,
                    const std::string& key = "platform") {
    return "POST /v1/match HTTP/" + std::string(version) +
           "\r\nHost: localhost\r\nAuthorization: Bearer " + keys_.at(key) +
           "\r\nContent-Type: application/json\r\nExpect: 100-Continue\r\nContent-Length: " +
           std::to_string(length) + "\r\n\r\n";
  };
  const std::string match =
      R"({"match":true,"matches":[{"list":"demo","category":"test","ref":"case-1"}],)"
      R"("pdq_checked":true,"index_version":)" + std::to_string(setup_version_) + "}";
  std::unique_ptr<ssl::stream<tcp::socket>> connection = RawConnection();
  ssl::stream<tcp::socket>& stream = *connection;
  boost::beast::flat_buffer buffer;
  // The header alone: the 100 comes, then the body is sent and answered.
  asio::write(stream, asio::buffer(header("1.1", body.size())));
  http::response<http::string_body> interim;
  ASSERT_FALSE(ReadWithin(stream, buffer, interim));
  EXPECT_EQ(interim.result_int(), 100);
  EXPECT_EQ(interim.version(), 11);
  asio::write(stream, asio::buffer(body));
  http::response<http::string_body> answer;
  ASSERT_FALSE(ReadWithin(stream, buffer, answer));
  EXPECT_EQ(answer.result_int(), 200);
  EXPECT_EQ(ParseJson(answer.body()), json::parse(match));
  // Header and body in one write: no 100, the answer only.
  asio::write(stream, asio::buffer(header("1.1", body.size()) + body));
  answer = {};
  ASSERT_FALSE(ReadWithin(stream, buffer, answer));
  EXPECT_EQ(answer.result_int(), 200);
  EXPECT_EQ(ParseJson(answer.body()), json::parse(match));
  // HTTP/1.0 has no 100 (the client sends the body anyway).
  asio::write(stream, asio::buffer(header("1.0", body.size())));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  asio::write(stream, asio::buffer(body));
  answer = {};
  ASSERT_FALSE(ReadWithin(stream, buffer, answer));
  EXPECT_EQ(answer.result_int(), 200);
  EXPECT_EQ(answer.version(), 10);
  EXPECT_EQ(ParseJson(answer.body()), json::parse(match));

  // Refused from the header, without a 100 (the body is not sent for
  // nothing), and the connection closes: a body over the limit, no Host, a
  // wrong key, a route that does not exist, a role that may not. A client
  // that sends the body anyway (`late_body` bytes, without reading first)
  // still gets the answer whole: what it sends is read and dropped.
  auto refused = [&](const std::string& request, int status, std::string_view code,
                     size_t late_body = 0, std::string_view retry_after = "") {
    SCOPED_TRACE(request.substr(0, 80));
    connection = RawConnection();
    asio::write(*connection, asio::buffer(request));
    if (late_body > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the answer is sent
      boost::system::error_code write_error;
      asio::write(*connection, asio::buffer(std::string(late_body, 'x')), write_error);
      // All of it is read (and dropped): a reset while it comes could
      // destroy an answer still on its way (RFC 9112 section 9.6).
      EXPECT_FALSE(write_error) << write_error.message();
    }
    boost::beast::flat_buffer fresh;
    answer = {};
    ASSERT_FALSE(ReadWithin(*connection, fresh, answer));
    EXPECT_EQ(answer.result_int(), status);
    EXPECT_EQ(ParseJson(answer.body()).at("error").at("code").as_string(), code);
    EXPECT_EQ(answer[http::field::connection], "close");
    EXPECT_EQ(answer[http::field::retry_after], retry_after);
    const boost::system::error_code ec = ReadWithin(*connection, fresh, answer);
    EXPECT_TRUE(ec == asio::error::eof || ec == asio::ssl::error::stream_truncated ||
                ec == http::error::end_of_stream)
        << ec.message();
  };
  const std::string platform = keys_.at("platform");
  refused(header("1.1", config.max_body_bytes + 1), 413, "too_large");
  std::string request = header("1.1", body.size());
  refused(request.replace(request.find("Host: localhost\r\n"), 17, ""), 400,
          "invalid_argument");
  request = header("1.1", body.size());
  refused(request.replace(request.find(platform), platform.size(), std::string(64, '0')), 401,
          "unauthenticated");
  request = header("1.1", body.size());
  refused(request.replace(request.find("/v1/match"), 9, "/v1/nothing"), 404, "not_found");
  request = header("1.1", body.size());
  refused(request.replace(request.find(platform), platform.size(), keys_.at("auditor")), 403,
          "forbidden");
  // A media type the route does not take (curl's default for --data is
  // application/x-www-form-urlencoded).
  request = header("1.1", body.size());
  refused(request.replace(request.find("application/json"), 16,
                          "application/x-www-form-urlencoded"),
          415, "unsupported_format");
  // An empty rate-limit bucket. Looking at it from the header takes no
  // token: the key's one token pays for the request once its body comes.
  connection = RawConnection();
  asio::write(*connection, asio::buffer(header("1.1", body.size(), "one-token")));
  interim = {};
  buffer.clear();
  ASSERT_FALSE(ReadWithin(*connection, buffer, interim));
  EXPECT_EQ(interim.result_int(), 100);
  asio::write(*connection, asio::buffer(body));
  answer = {};
  ASSERT_FALSE(ReadWithin(*connection, buffer, answer));
  EXPECT_EQ(answer.result_int(), 200);
  EXPECT_EQ(ParseJson(answer.body()), json::parse(match));
  refused(header("1.1", body.size(), "one-token"), 429, "rate_limited", 0, "1000");
  // More than the megabyte dropped otherwise, and than the sockets' buffers
  // hold (loopback: a few megabytes each way).
  constexpr size_t kLateBody = 24 * 1024 * 1024;
  request = header("1.1", kLateBody);
  refused(request.replace(request.find(platform), platform.size(), std::string(64, '0')), 401,
          "unauthenticated", kLateBody);
}

// A client's X-Request-Id (letters, digits, ._~:@/+=-, at most 128) comes
// back on the answer and goes into the access log line, errors included;
// anything else is ignored.
TEST_F(LifecycleTest, AValidRequestIdIsEchoedAndLogged) {
  namespace http = boost::beast::http;
  StartServer();
  std::unique_ptr<ssl::stream<tcp::socket>> connection = RawConnection();
  boost::beast::flat_buffer buffer;
  auto exchange = [&](const std::string& target, const std::string& id_header) {
    asio::write(*connection, asio::buffer("GET " + target + " HTTP/1.1\r\nHost: localhost\r\n" +
                                          id_header + "\r\n"));
    http::response<http::string_body> answer;
    EXPECT_FALSE(ReadWithin(*connection, buffer, answer));
    return answer;
  };
  http::response<http::string_body> answer =
      exchange("/healthz", "X-Request-Id: frame-42:cam/7\r\n");
  EXPECT_EQ(answer.result_int(), 200);
  EXPECT_EQ(answer["X-Request-Id"], "frame-42:cam/7");
  // 128 characters; hex digits in runs of at most 31 (a UUID passes).
  const std::string longest = std::string(31, 'a') + "-" + std::string(96, 'z');
  answer = exchange("/v1/nothing", "x-request-id: " + longest + "\r\n");
  EXPECT_EQ(answer.result_int(), 404);
  EXPECT_EQ(answer["X-Request-Id"], longest);
  // None, too long, a character that is not allowed, 32 hex digits in a row
  // (a digest of the content, maybe): no header, nothing logged.
  for (const std::string& header :
       {std::string(), "X-Request-Id: " + std::string(129, 'z') + "\r\n",
        std::string("X-Request-Id: a b\r\n"), std::string("X-Request-Id: a\"b\r\n"),
        "X-Request-Id: req-" + std::string(32, 'f') + "\r\n"}) {
    answer = exchange("/healthz", header);
    EXPECT_EQ(answer.result_int(), 200);
    EXPECT_EQ(answer.count("X-Request-Id"), 0u) << header;
  }
  // Each line names the connection it came on, as the server saw it.
  const std::string peer =
      "127.0.0.1:" + std::to_string(connection->next_layer().local_endpoint().port());
  connection.reset();
  StopServer();  // flushes the access log
  std::vector<std::string> ids;
  std::istringstream log(ReadText(dir_.path() + "/access.log"));
  for (std::string line; std::getline(log, line);) {
    const json::value entry = ParseJson(line);
    EXPECT_EQ(entry.at("peer"), json::value(peer)) << line;
    ids.push_back(entry.as_object().contains("request_id")
                      ? std::string(entry.at("request_id").as_string())
                      : "-");
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"frame-42:cam/7", longest, "-", "-", "-", "-", "-"}));
}

// Behind a proxy the peer is the proxy: from peers in trusted_proxies, the
// access log also names the client the configured header forwards for, per
// request (a proxy's connection carries many clients' requests).
TEST_F(LifecycleTest, TheClientATrustedProxyNamesIsLogged) {
  namespace http = boost::beast::http;
  // Each request's headers on one connection; the "client" of each line
  // logged ("-": none).
  auto clients = [&](const std::vector<std::string>& headers) {
    std::filesystem::remove(dir_.path() + "/access.log");
    StartServer();
    std::unique_ptr<ssl::stream<tcp::socket>> connection = RawConnection();
    boost::beast::flat_buffer buffer;
    for (const std::string& header : headers) {
      asio::write(*connection,
                  asio::buffer("GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + header + "\r\n"));
      http::response<http::string_body> answer;
      EXPECT_FALSE(ReadWithin(*connection, buffer, answer));
      EXPECT_EQ(answer.result_int(), 200);
    }
    // Refused requests are logged with their client too.
    const std::string refused = "GET /v1/index HTTP/1.1\r\nHost: localhost\r\n"
                                "X-Forwarded-For: 192.0.2.44\r\nForwarded: for=192.0.2.44\r\n\r\n";
    asio::write(*connection, asio::buffer(refused));
    http::response<http::string_body> answer;
    EXPECT_FALSE(ReadWithin(*connection, buffer, answer));
    EXPECT_EQ(answer.result_int(), 401);
    connection.reset();
    StopServer();  // flushes the access log
    std::vector<std::string> logged;
    std::istringstream log(ReadText(dir_.path() + "/access.log"));
    for (std::string line; std::getline(log, line);) {
      const json::value entry = ParseJson(line);
      EXPECT_TRUE(entry.at("peer").as_string().starts_with("127.0.0.1:")) << line;
      logged.push_back(entry.as_object().contains("client")
                           ? std::string(entry.at("client").as_string())
                           : "-");
    }
    return logged;
  };
  const std::vector<std::string> headers = {
      "X-Forwarded-For: 198.51.100.1, 203.0.113.9\r\n",
      "",  // the next request on the connection names no one
      "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 127.0.0.1\r\n",
      "X-Forwarded-For: [2001:db8::7]:4711\r\n",
      "X-Forwarded-For: unknown\r\n",
      "Forwarded: for=192.0.2.1\r\n",
      "Forwarded: for=\"[2001:db8::9]:4711\", for=192.0.2.2;proto=https\r\n",
  };
  // Loopback trusted, X-Forwarded-For read (Forwarded is not).
  config.trusted_proxies = "::1, 127.0.0.1";
  EXPECT_EQ(clients(headers), (std::vector<std::string>{"203.0.113.9", "-", "203.0.113.9",
                                                        "2001:db8::7", "unknown", "-", "-",
                                                        "192.0.2.44"}));
  // Forwarded read (X-Forwarded-For is not).
  config.proxy_header = "forwarded";
  EXPECT_EQ(clients(headers), (std::vector<std::string>{"-", "-", "-", "-", "-", "192.0.2.1",
                                                        "192.0.2.2", "192.0.2.44"}));
  // A peer not trusted: nothing it says is believed.
  config.trusted_proxies = "10.0.0.0/8";
  EXPECT_EQ(clients(headers), std::vector<std::string>(8, "-"));
  config.trusted_proxies = "";
  config.proxy_header = "x-forwarded-for";
  EXPECT_EQ(clients(headers), std::vector<std::string>(8, "-"));
}

TEST_F(LifecycleTest, AClosedConnectionDeliversItsAnswerWhole) {
  namespace http = boost::beast::http;
  // The answer (the OpenAPI document, ~90 kB) is larger than what the
  // socket buffers take at once, and 128 kB follow the request unread.
  const std::string request = "GET /openapi.json HTTP/1.1\r\nHost: localhost\r\n"
                              "Connection: close\r\n\r\n" + std::string(128 * 1024, 'x');
  auto exchange = [&](auto& stream, int attempt) {
    boost::system::error_code ec;
    asio::write(stream, asio::buffer(request), ec);
    ASSERT_FALSE(ec) << ec.message() << " (attempt " << attempt << ")";
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> answer;
    http::read(stream, buffer, answer, ec);
    ASSERT_FALSE(ec) << ec.message() << " (attempt " << attempt << ")";
    EXPECT_EQ(answer.result_int(), 200);
    EXPECT_EQ(answer.body(), std::string(OpenApiDocument()));
  };
  StartServer();
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::unique_ptr<ssl::stream<tcp::socket>> connection = RawConnection();
    exchange(*connection, attempt);
  }
  StopServer();
  config.tls_cert.clear();
  config.tls_key.clear();
  config.allow_plain_http = true;
  StartServer();
  asio::io_context ioc;
  for (int attempt = 0; attempt < 5; ++attempt) {
    tcp::socket socket(ioc);
    socket.connect({asio::ip::make_address("127.0.0.1"), server_->port()});
    exchange(socket, attempt);
  }
}

// An image body is read whole and exactly, whether it comes with a
// Content-Length (read straight into the request's body) or chunked
// (through the parser), shares reads with the next pipelined request, or
// trickles in pieces; a body cut short gets no answer.
TEST_F(LifecycleTest, AnImageBodyIsReadWholeWhateverItsFraming) {
  StartServer();
  const std::vector<uint8_t> image = bantay::testing::ReadTestFile(std::string("pdq/") + kBridge);
  const std::string body(image.begin(), image.end());
  ASSERT_GT(body.size(), 20'000u);  // several TLS records
  // The image's SHA-256 is listed too, so that a single wrong byte shows
  // (the PDQ hash alone might not change). The expected answer is the one
  // the client library gets.
  const models::Sha256Digest sha256 = models::Sha256(image);
  HttpResponse added =
      Send("operator", "POST", "/v1/lists/demo/entries", "application/json",
           R"({"entries":[{"type":"sha256","value":")" + models::ToHex(sha256) +
               R"(","category":"exact","reference":"case-bytes"}]})");
  ASSERT_EQ(added.status, 201) << added.body;
  HttpResponse reference = Send("platform", "POST", "/v1/match", "image/jpeg", body);
  ASSERT_EQ(reference.status, 200) << reference.body;
  const json::value expected = ParseJson(reference.body);
  ASSERT_EQ(expected.at("matches"),
            json::parse(R"([{"list":"demo","category":"test","ref":"case-1"},)"
                        R"({"list":"demo","category":"exact","ref":"case-bytes"}])"))
      << reference.body;
  const std::string head = "POST /v1/match HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " +
                           keys_.at("platform") + "\r\nContent-Type: image/jpeg\r\n";
  const std::string sized = head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  auto hex = [](size_t n) {
    char text[20];
    std::snprintf(text, sizeof text, "%zx", n);
    return std::string(text);
  };
  const size_t half = body.size() / 2;
  const std::string chunked = head + "Transfer-Encoding: chunked\r\n\r\n" + hex(half) + "\r\n" +
                              body.substr(0, half) + "\r\n" + hex(body.size() - half) + "\r\n" +
                              body.substr(half) + "\r\n0\r\n\r\n";

  auto connect = [&] { return RawConnection(); };
  namespace http = boost::beast::http;
  boost::beast::flat_buffer buffer;
  auto read_answer = [&](ssl::stream<tcp::socket>& stream) {
    http::response<http::string_body> answer;
    http::read(stream, buffer, answer);
    return answer;
  };

  // Sized, chunked, sized again and a GET, all in one write.
  std::unique_ptr<ssl::stream<tcp::socket>> stream = connect();
  asio::write(*stream, asio::buffer(sized + body + chunked + sized + body +
                                    "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  for (int i = 0; i < 3; ++i) {
    http::response<http::string_body> answer = read_answer(*stream);
    ASSERT_EQ(answer.result_int(), 200) << i << ": " << answer.body();
    EXPECT_EQ(ParseJson(answer.body()), expected) << i;
  }
  http::response<http::string_body> health = read_answer(*stream);
  EXPECT_EQ(health.result_int(), 200);
  EXPECT_EQ(ParseJson(health.body()), json::parse(R"({"status":"ok"})"));

  // The header with one body byte, then the rest in three pieces, with
  // pauses, on the same connection.
  const std::string trickled = sized + body;
  const size_t first = sized.size() + 1;
  const size_t piece = (trickled.size() - first) / 3;
  asio::write(*stream, asio::buffer(trickled.data(), first));
  for (size_t at = first; at < trickled.size(); at += piece) {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    asio::write(*stream, asio::buffer(trickled.data() + at, std::min(piece, trickled.size() - at)));
  }
  http::response<http::string_body> answer = read_answer(*stream);
  ASSERT_EQ(answer.result_int(), 200) << answer.body();
  EXPECT_EQ(ParseJson(answer.body()), expected);

  // A body one byte short, then the client stops sending: no answer, and
  // the connection is closed.
  stream = connect();
  buffer.clear();
  asio::write(*stream, asio::buffer(sized + body.substr(0, body.size() - 1)));
  stream->next_layer().shutdown(tcp::socket::shutdown_send);
  http::response<http::string_body> none;
  boost::system::error_code ec;
  http::read(*stream, buffer, none, ec);
  EXPECT_TRUE(ec) << "an answer to a truncated body: " << none.result_int();
  EXPECT_EQ(buffer.size(), 0u);
}

TEST_F(LifecycleTest, AFullComputeQueueAnswers503WithRetryAfter) {
  config.compute_threads = 1;
  config.queue_limit = 1;
  StartServer();
  constexpr int kClients = 8;
  LargeJpeg();  // encoded once, before the threads
  std::vector<std::unique_ptr<client::HttpClient>> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(Client("platform"));
  std::vector<HttpResponse> answers(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      Result<HttpResponse> r = MatchLarge(*clients[i]);
      if (r.ok()) answers[i] = *r;
    });
  }
  for (std::thread& t : threads) t.join();
  int ok = 0, overloaded = 0;
  for (const HttpResponse& r : answers) {
    if (r.status == 200) {
      ++ok;
    } else {
      ASSERT_EQ(r.status, 503) << r.body;
      EXPECT_EQ(r.Header("Retry-After"), "1");
      EXPECT_EQ(ParseJson(r.body).at("error").at("code"), "unavailable");
      ++overloaded;
    }
  }
  EXPECT_EQ(ok + overloaded, kClients);
  EXPECT_GE(ok, 1);
  EXPECT_GE(overloaded, 1);
  HttpResponse metrics = *Client("operator")->Send("GET", "/metrics");
  EXPECT_NE(metrics.body.find("\nbantay_overloaded_total " + std::to_string(overloaded) + "\n"),
            std::string::npos)
      << metrics.body;
}

TEST_F(LifecycleTest, ShutdownFinishesRequestsInFlightAndRefusesNewOnes) {
  StartServer();
  std::unique_ptr<client::HttpClient> idle = Client("platform");
  ASSERT_EQ(idle->Send("GET", "/healthz")->status, 200);
  std::unique_ptr<client::HttpClient> busy = Client("platform");
  LargeJpeg();  // encoded before the thread starts
  Result<HttpResponse> in_flight = Error(ErrorCode::kInternal, "not sent");
  std::thread request([&] { in_flight = MatchLarge(*busy); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const uint16_t port = server_->port();
  server_->Shutdown();
  server_->Wait();
  request.join();
  // The request was answered, not cut: 200 when it was being worked on,
  // 503 when it arrived after the shutdown began.
  ASSERT_TRUE(in_flight.ok()) << in_flight.error().ToString();
  EXPECT_TRUE(in_flight->status == 200 || in_flight->status == 503) << in_flight->status;
  // The idle keep-alive connection was closed, and nothing listens any more.
  Result<HttpResponse> after = idle->Send("GET", "/healthz");
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code(), ErrorCode::kUnavailable);
  client::ClientOptions options;
  options.url = "https://127.0.0.1:" + std::to_string(port);
  options.ca_file = dir_.path() + "/server.pem";
  Result<std::unique_ptr<client::HttpClient>> again = client::HttpClient::Connect(options);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), ErrorCode::kUnavailable);
  server_.reset();
}

TEST_F(LifecycleTest, ReloadedCertificatesServeNewConnections) {
  StartServer();
  const std::string dir = dir_.path();
  std::filesystem::copy_file(dir + "/server.pem", dir + "/old.pem");
  ASSERT_FALSE(bantay::testing::MakeSelfSignedCertificate(dir, "fresh").cert.empty());
  std::filesystem::copy_file(dir + "/fresh.pem", dir + "/server.pem",
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(dir + "/fresh.key", dir + "/server.key",
                             std::filesystem::copy_options::overwrite_existing);
  ASSERT_TRUE(server_->ReloadTls().ok());
  auto connect = [&](const std::string& ca) {
    client::ClientOptions options;
    options.url = Url();
    options.ca_file = ca;
    return client::HttpClient::Connect(options);
  };
  Result<std::unique_ptr<client::HttpClient>> old_trust = connect(dir + "/old.pem");
  ASSERT_FALSE(old_trust.ok());
  EXPECT_EQ(old_trust.error().code(), ErrorCode::kPermissionDenied);
  Result<std::unique_ptr<client::HttpClient>> new_trust = connect(dir + "/fresh.pem");
  ASSERT_TRUE(new_trust.ok()) << new_trust.error().ToString();
  EXPECT_EQ((*new_trust)->Send("GET", "/healthz")->status, 200);

  // A broken key file leaves the working certificate in place.
  std::filesystem::resize_file(dir + "/server.key", 10);
  EXPECT_FALSE(server_->ReloadTls().ok());
  EXPECT_TRUE(connect(dir + "/fresh.pem").ok());
}

TEST_F(LifecycleTest, MutualTlsRequiresAClientCertificate) {
  const std::string dir = dir_.path();
  const bantay::testing::TestCertificate ca =
      bantay::testing::MakeSelfSignedCertificate(dir, "clientca", "DNS:clientca");
  const bantay::testing::TestCertificate client1 =
      bantay::testing::MakeSignedCertificate(dir, "client1", ca, "/CN=client1", "");
  ASSERT_FALSE(client1.cert.empty());
  config.tls_client_ca = ca.cert;
  StartServer();
  auto request = [&](bool with_certificate) -> Result<HttpResponse> {
    client::ClientOptions options;
    options.url = Url();
    options.ca_file = dir + "/server.pem";
    options.api_key = keys_.at("platform");
    if (with_certificate) {
      options.client_cert_file = client1.cert;
      options.client_key_file = client1.key;
    }
    Result<std::unique_ptr<client::HttpClient>> c = client::HttpClient::Connect(options);
    if (!c.ok()) return c.error();
    return (*c)->Send("GET", "/v1/index");
  };
  Result<HttpResponse> without = request(false);
  EXPECT_FALSE(without.ok());
  Result<HttpResponse> with = request(true);
  ASSERT_TRUE(with.ok()) << with.error().ToString();
  EXPECT_EQ(with->status, 200);
}

TEST_F(LifecycleTest, ConnectionsOverTheLimitAreClosed) {
  config.max_connections = 2;
  StartServer();
  std::unique_ptr<client::HttpClient> first = Client("platform");
  std::unique_ptr<client::HttpClient> second = Client("platform");
  ASSERT_EQ(first->Send("GET", "/healthz")->status, 200);
  ASSERT_EQ(second->Send("GET", "/healthz")->status, 200);
  client::ClientOptions options;
  options.url = Url();
  options.ca_file = dir_.path() + "/server.pem";
  EXPECT_FALSE(client::HttpClient::Connect(options).ok());
  // A freed slot is given to the next connection (once the server has seen
  // the close; bounded wait).
  first.reset();
  bool connected = false;
  for (int i = 0; i < 500 && !connected; ++i) {
    Result<std::unique_ptr<client::HttpClient>> c = client::HttpClient::Connect(options);
    connected = c.ok() && (*c)->Send("GET", "/healthz").ok();
    if (!connected) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(connected);
  EXPECT_EQ(second->Send("GET", "/healthz")->status, 200);
}

TEST_F(LifecycleTest, PlainHttpOnlyWhenAllowed) {
  config.tls_cert.clear();
  config.tls_key.clear();
  EXPECT_FALSE(Server::Start(config).ok());
  config.allow_plain_http = true;
  StartServer();
  client::ClientOptions options;
  options.url = "http://127.0.0.1:" + std::to_string(server_->port());
  options.api_key = keys_.at("platform");
  Result<std::unique_ptr<client::HttpClient>> c = client::HttpClient::Connect(options);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  Result<HttpResponse> r = (*c)->Send("POST", "/v1/match", "application/json",
                                      R"({"pdq":")" + ReferencePdq(kBridge) + R"("})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
}

TEST_F(LifecycleTest, NoQueryHashOrImageByteIsKept) {
  StartServer();
  // A picture that is not listed, sent as an image and as its hash.
  const std::vector<uint8_t> image =
      bantay::testing::ReadTestFile("pdq/reg-test-input/dih/bridge-3-rotate-180.jpg");
  const std::string query_hash = FlipBits(ReferencePdq(kBridge), 120);
  std::unique_ptr<client::HttpClient> c = Client("platform");
  ASSERT_EQ(c->Send("POST", "/v1/match", "image/jpeg", image)->status, 200);
  ASSERT_EQ(c->Send("POST", "/v1/match", "application/json",
                    R"({"pdq":")" + query_hash + R"("})")
                ->status,
            200);
  StopServer();  // flushes the access log

  const std::string image_pdq =
      bantay::testing::ReadExpectedCsv("pdq/expected-pdq.csv")
          .at("reg-test-input/dih/bridge-3-rotate-180.jpg")
          .at(0);
  const std::string image_md5 = models::ToHex(models::Md5(image));
  const std::vector<uint8_t> query_bytes = bantay::testing::FromHex(query_hash);
  const std::vector<uint8_t> image_head(image.begin() + 200, image.begin() + 264);
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_.path())) {
    if (!entry.is_regular_file()) continue;
    files.push_back(entry.path().filename().string());
    const std::string text = ReadText(entry.path().string());
    for (const std::string& hex : {query_hash, image_pdq, image_md5}) {
      EXPECT_EQ(text.find(hex), std::string::npos) << entry.path();
    }
    EXPECT_EQ(std::search(text.begin(), text.end(), query_bytes.begin(), query_bytes.end()),
              text.end())
        << entry.path();
    EXPECT_EQ(std::search(text.begin(), text.end(), image_head.begin(), image_head.end()),
              text.end())
        << entry.path();
  }
  // The access log has one line per request: route, status, key, verdict.
  // It is created readable by its owner and group only (it tells which key
  // got matches when).
  struct stat info {};
  ASSERT_EQ(::stat((dir_.path() + "/access.log").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0640u);
  const std::string log = ReadText(dir_.path() + "/access.log");
  std::vector<json::value> lines;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) lines.push_back(ParseJson(line));
  ASSERT_EQ(lines.size(), 2u) << log;
  for (const json::value& line : lines) {
    EXPECT_EQ(line.at("route"), "/v1/match");
    EXPECT_EQ(line.at("status"), json::value(200));
    EXPECT_EQ(line.at("key"), "platform");
    EXPECT_EQ(line.at("verdict"), "no_match");
  }
}

// The threads that change the store and follow it run behind matching (a
// change costs O(entries) of CPU, about a third of a second at 1M; a run of
// them starved matching on two cores): nice +10 against the compute and I/O
// threads, read from /proc for each of the server's threads by name; the
// index's background threads too.
TEST_F(LifecycleTest, ChangesRunBehindMatching) {
  StartServer();
  std::map<std::string, std::set<int>> nice_by_name;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    const std::string name = stat.substr(open + 1, close - open - 1);
    // After the name: state (field 3), ..., nice (field 19).
    std::istringstream fields(stat.substr(close + 1));
    std::string field;
    for (int i = 3; i <= 19 && fields >> field; ++i) {
    }
    nice_by_name[name].insert(std::stoi(field));
  }
  ASSERT_EQ(nice_by_name["bantay-compute"].size(), 1u);
  ASSERT_EQ(nice_by_name["bantay-io"].size(), 1u);
  const int base = *nice_by_name["bantay-compute"].begin();
  EXPECT_EQ(*nice_by_name["bantay-io"].begin(), base);
  const std::set<int> behind = {std::min(19, base + 10)};
  EXPECT_EQ(nice_by_name["bantay-admin"], behind);
  EXPECT_EQ(nice_by_name["bantay-index"], behind);
  // The index's own threads: folds, merges and releases of old snapshots.
  EXPECT_EQ(nice_by_name["bantay-fold"], behind);
  EXPECT_EQ(nice_by_name["bantay-merge"], behind);
  EXPECT_EQ(nice_by_name["bantay-release"], behind);
}

}  // namespace
}  // namespace bantay::server::testing
