// HttpClient against real peers on loopback: `openssl s_server` for TLS
// (certificates made by the openssl command line) and a scripted plain-HTTP
// peer for the connection handling; `bantay match --server` against the
// same. Tests against bantay-server itself live with the server's tests.
#include "bantay/client/http_client.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <optional>

#include "bantay/client/cli.h"
#include "cli_run.h"
#include "test_images.h"
#include "tls_test_util.h"

namespace bantay::client {
namespace {

using bantay::testing::CliRun;
using bantay::testing::ScriptedHttpPeer;
using bantay::testing::TempDir;
using bantay::testing::TestCertificate;
using bantay::testing::TlsTestServer;
using Reply = ScriptedHttpPeer::Reply;

constexpr char kKey[] =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
constexpr char kHash[] =
    "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";

std::string Loopback(int port) { return "127.0.0.1:" + std::to_string(port); }

ClientOptions Options(const std::string& url) {
  ClientOptions o;
  o.url = url;
  o.timeout_ms = 10'000;
  return o;
}

// Connect, then one GET /: the result of whichever failed, or the answer.
Result<HttpResponse> FirstGet(const ClientOptions& options) {
  Result<std::unique_ptr<HttpClient>> client = HttpClient::Connect(options);
  if (!client.ok()) return client.error();
  return (*client)->Send("GET", "/");
}

void ExpectError(const Error& error, ErrorCode code,
                 const std::string& message) {
  EXPECT_EQ(error.code(), code) << error.ToString();
  EXPECT_EQ(error.message(), message);
}

template <typename T>
void ExpectError(const Result<T>& result, ErrorCode code,
                 const std::string& message) {
  ASSERT_FALSE(result.ok());
  ExpectError(result.error(), code, message);
}

TEST(HttpClientTest, BadUrlsAreInvalidArguments) {
  const std::string usage =
      "bad server URL: expected https://HOST[:PORT] or http://HOST[:PORT]";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", usage},
      {"127.0.0.1:8443", usage},
      {"https://", usage},
      {"https:///v1", usage},
      {"https://[v1.fe]:8443", usage},
      {"localhost:8443", "bad server URL: the scheme must be https or http"},
      {"ftp://127.0.0.1", "bad server URL: the scheme must be https or http"},
      {"https://user:secret@127.0.0.1",
       "bad server URL: user information is not allowed"},
      {"https://127.0.0.1/v1",
       "bad server URL: no path, query or fragment is allowed"},
      {"https://127.0.0.1?a=1",
       "bad server URL: no path, query or fragment is allowed"},
      {"https://127.0.0.1#top",
       "bad server URL: no path, query or fragment is allowed"},
      {"https://127.0.0.1:0", "bad server URL: the port must be 1 to 65535"},
      {"https://127.0.0.1:65536",
       "bad server URL: the port must be 1 to 65535"},
      {"https://127.0.0.1:99999",
       "bad server URL: the port must be 1 to 65535"},
      {"https://127.0.0.1:", "bad server URL: the port must be 1 to 65535"},
      {"https://local%68ost",
       "bad server URL: percent-encoded host names are not allowed"},
  };
  for (const auto& [url, message] : cases) {
    SCOPED_TRACE(url);
    ExpectError(HttpClient::Connect(Options(url)), ErrorCode::kInvalidArgument,
                message);
  }
}

TEST(HttpClientTest, BadOptionsAreInvalidArguments) {
  ClientOptions o = Options("https://127.0.0.1:1");
  o.api_key = "not-a-key";
  ExpectError(HttpClient::Connect(o), ErrorCode::kInvalidArgument,
              "the API key must be 64 hexadecimal digits");
  o = Options("https://127.0.0.1:1");
  o.api_key = std::string(kKey) + "\r\nX-Injected: 1";
  ExpectError(HttpClient::Connect(o), ErrorCode::kInvalidArgument,
              "the API key must be 64 hexadecimal digits");
  o = Options("https://127.0.0.1:1");
  o.client_cert_file = "/nonexistent/client.pem";
  ExpectError(HttpClient::Connect(o), ErrorCode::kInvalidArgument,
              "give both a client certificate and its key, or neither");
  o = Options("https://127.0.0.1:1");
  o.timeout_ms = 0;
  ExpectError(HttpClient::Connect(o), ErrorCode::kInvalidArgument,
              "the timeout must be positive");
}

TEST(HttpClientTest, MissingFilesAreNotFound) {
  TempDir dir;
  ClientOptions o = Options("https://127.0.0.1:1");
  o.ca_file = dir.path() + "/ca.pem";
  ExpectError(HttpClient::Connect(o), ErrorCode::kNotFound,
              "CA file not found: " + dir.path() + "/ca.pem");
  o.ca_file = dir.path();
  ExpectError(HttpClient::Connect(o), ErrorCode::kInvalidArgument,
              "CA file is not a file: " + dir.path());
  o.ca_file = dir.Write("empty.pem", {});
  ExpectError(HttpClient::Connect(o), ErrorCode::kInvalidArgument,
              "CA file " + o.ca_file + " holds no usable PEM certificate");
  o.ca_file.clear();
  o.client_cert_file = dir.path() + "/client.pem";
  o.client_key_file = dir.path() + "/client.key";
  ExpectError(
      HttpClient::Connect(o), ErrorCode::kNotFound,
      "client certificate file not found: " + dir.path() + "/client.pem");
}

TEST(HttpClientTest, RefusedConnectionIsUnavailable) {
  const int port = bantay::testing::FreeLoopbackPort();
  ExpectError(
      HttpClient::Connect(Options("https://127.0.0.1:" + std::to_string(port))),
      ErrorCode::kUnavailable,
      "cannot connect to " + Loopback(port) + ": connection refused");
  ExpectError(
      HttpClient::Connect(Options("http://127.0.0.1:" + std::to_string(port))),
      ErrorCode::kUnavailable,
      "cannot connect to " + Loopback(port) + ": connection refused");
}

// --- TLS against openssl s_server
// ---------------------------------------------

TEST(HttpClientTlsTest, ATrustedServerAnswers) {
  TempDir dir;
  const TestCertificate cert =
      bantay::testing::MakeSelfSignedCertificate(dir.path(), "server");
  ASSERT_FALSE(cert.cert.empty());
  TlsTestServer server;
  ASSERT_TRUE(server.Start(cert, dir.path() + "/s_server.log"));
  for (const std::string& url :
       {server.url(), "https://localhost:" + std::to_string(server.port())}) {
    SCOPED_TRACE(url);
    ClientOptions o = Options(url);
    o.ca_file = cert.cert;
    Result<std::unique_ptr<HttpClient>> client = HttpClient::Connect(o);
    ASSERT_TRUE(client.ok()) << client.error().ToString();
    // s_server -www answers HTTP/1.0 and closes: the second request goes
    // over a new connection.
    for (int i = 0; i < 2; ++i) {
      Result<HttpResponse> r = (*client)->Send("GET", "/");
      ASSERT_TRUE(r.ok()) << r.error().ToString();
      EXPECT_EQ(r->status, 200);
      EXPECT_EQ(r->Header("content-TYPE"), "text/html");
      EXPECT_NE(r->body.find("<HTML>"), std::string::npos) << r->body;
    }
  }
}

TEST(HttpClientTlsTest, AnUntrustedCertificateIsRefused) {
  TempDir dir;
  const TestCertificate cert =
      bantay::testing::MakeSelfSignedCertificate(dir.path(), "server");
  const TestCertificate other =
      bantay::testing::MakeSelfSignedCertificate(dir.path(), "other");
  ASSERT_FALSE(other.cert.empty());
  TlsTestServer server;
  ASSERT_TRUE(server.Start(cert, dir.path() + "/s_server.log"));
  const std::string refused =
      "the certificate of " + Loopback(server.port()) + " does not verify: ";
  ClientOptions o = Options(server.url());
  o.ca_file = other.cert;
  ExpectError(HttpClient::Connect(o), ErrorCode::kPermissionDenied,
              refused + "self-signed certificate");
  // The system's trust store does not know it either.
  ExpectError(HttpClient::Connect(Options(server.url())),
              ErrorCode::kPermissionDenied,
              refused + "self-signed certificate");
}

TEST(HttpClientTlsTest, TheHostNameIsChecked) {
  TempDir dir;
  const TestCertificate cert = bantay::testing::MakeSelfSignedCertificate(
      dir.path(), "server", "DNS:other.example");
  ASSERT_FALSE(cert.cert.empty());
  TlsTestServer server;
  ASSERT_TRUE(server.Start(cert, dir.path() + "/s_server.log"));
  ClientOptions o = Options(server.url());
  o.ca_file = cert.cert;
  ExpectError(HttpClient::Connect(o), ErrorCode::kPermissionDenied,
              "the certificate of " + Loopback(server.port()) +
                  " does not verify: IP address mismatch");
  o.url = "https://localhost:" + std::to_string(server.port());
  ExpectError(HttpClient::Connect(o), ErrorCode::kPermissionDenied,
              "the certificate of localhost:" + std::to_string(server.port()) +
                  " does not verify: hostname mismatch");
}

TEST(HttpClientTlsTest, MutualTls) {
  TempDir dir;
  const bantay::testing::TestPki pki = bantay::testing::MakeTestPki(dir.path());
  ASSERT_FALSE(pki.client.cert.empty());
  TempDir other_dir;
  const bantay::testing::TestPki other =
      bantay::testing::MakeTestPki(other_dir.path(), "other-ca");
  ASSERT_FALSE(other.client.cert.empty());
  for (const char* version : {"-tls1_2", "-tls1_3"}) {
    SCOPED_TRACE(version);
    TlsTestServer server;
    ASSERT_TRUE(
        server.Start(pki.server, dir.path() + "/s_server.log",
                     {"-Verify", "1", "-CAfile", pki.ca.cert, version}));
    ClientOptions o = Options(server.url());
    o.ca_file = pki.ca.cert;
    // TLS 1.3 tells the client after its handshake: at the first request.
    ExpectError(FirstGet(o), ErrorCode::kPermissionDenied,
                Loopback(server.port()) + " requires a client certificate");
    o.client_cert_file = pki.client.cert;
    o.client_key_file = pki.client.key;
    Result<HttpResponse> r = FirstGet(o);
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    EXPECT_EQ(r->status, 200);
    o.client_key_file = other.client.key;
    ExpectError(HttpClient::Connect(o), ErrorCode::kInvalidArgument,
                "client key file " + other.client.key +
                    " holds no PEM private key of the client certificate");
  }
  // A certificate from a CA the server does not trust (TLS 1.2: refused
  // in the handshake; with TLS 1.3 the alert can race the server's close).
  TlsTestServer server;
  ASSERT_TRUE(server.Start(pki.server, dir.path() + "/s_server.log",
                           {"-Verify", "1", "-verify_return_error", "-CAfile",
                            pki.ca.cert, "-tls1_2"}));
  ClientOptions o = Options(server.url());
  o.ca_file = pki.ca.cert;
  o.client_cert_file = other.client.cert;
  o.client_key_file = other.client.key;
  ExpectError(HttpClient::Connect(o), ErrorCode::kPermissionDenied,
              Loopback(server.port()) +
                  " refused the client certificate: tlsv1 alert unknown ca");
}

TEST(HttpClientTlsTest, TlsBelowOneTwoIsRefused) {
  TempDir dir;
  const TestCertificate cert =
      bantay::testing::MakeSelfSignedCertificate(dir.path(), "server");
  ASSERT_FALSE(cert.cert.empty());
  TlsTestServer server;
  ASSERT_TRUE(server.Start(cert, dir.path() + "/s_server.log",
                           {"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"}));
  ClientOptions o = Options(server.url());
  o.ca_file = cert.cert;
  ExpectError(HttpClient::Connect(o), ErrorCode::kUnavailable,
              "TLS handshake with " + Loopback(server.port()) +
                  " failed: tlsv1 alert protocol version");
}

// --- Connection handling against a scripted peer
// --------------------------------

TEST(HttpClientTest, RequestsCarryTheirHeadersAndBody) {
  ScriptedHttpPeer peer(
      {{ScriptedHttpPeer::Answer(200, "{\"ok\":true}", "application/json",
                                 "X-Trace: a\r\nx-trace: b\r\n")},
       {ScriptedHttpPeer::Answer(404, "")}});
  ClientOptions o = Options(peer.url());
  o.api_key = kKey;
  Result<std::unique_ptr<HttpClient>> client = HttpClient::Connect(o);
  ASSERT_TRUE(client.ok()) << client.error().ToString();
  Result<HttpResponse> r = (*client)->Send("POST", "/v1/match?dihedral=true",
                                           "application/json", "{\"a\":1}");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "{\"ok\":true}");
  EXPECT_EQ(r->Header("x-trace"), "a");
  EXPECT_EQ(r->Header("Content-Length"), "11");
  EXPECT_EQ(r->Header("Retry-After"), "");
  r = (*client)->Send("GET", "/v1/index");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body, "");

  const std::string host = "Host: " + Loopback(peer.port()) + "\r\n";
  const std::vector<std::string> requests = peer.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0], "POST /v1/match?dihedral=true HTTP/1.1\r\n" + host +
                             "User-Agent: bantay/0.1\r\n"
                             "Authorization: Bearer " +
                             kKey +
                             "\r\n"
                             "Content-Type: application/json\r\n"
                             "Content-Length: 7\r\n\r\n{\"a\":1}");
  EXPECT_EQ(requests[1], "GET /v1/index HTTP/1.1\r\n" + host +
                             "User-Agent: bantay/0.1\r\n"
                             "Authorization: Bearer " +
                             kKey + "\r\n\r\n");
  EXPECT_EQ(peer.connections(), 1);
}

TEST(HttpClientTest, AnEmptyPostSaysContentLengthZeroAndNoKeyNoAuthorization) {
  ScriptedHttpPeer peer({{ScriptedHttpPeer::Answer(200, "")}});
  Result<std::unique_ptr<HttpClient>> client =
      HttpClient::Connect(Options(peer.url()));
  ASSERT_TRUE(client.ok()) << client.error().ToString();
  ASSERT_TRUE((*client)->Send("POST", "/x").ok());
  ASSERT_EQ(peer.requests().size(), 1u);
  EXPECT_EQ(peer.requests()[0],
            "POST /x HTTP/1.1\r\nHost: " + Loopback(peer.port()) +
                "\r\nUser-Agent: bantay/0.1\r\nContent-Length: 0\r\n\r\n");
}

TEST(HttpClientTest, BadRequestsAreRefusedBeforeSending) {
  ScriptedHttpPeer peer({});
  Result<std::unique_ptr<HttpClient>> client =
      HttpClient::Connect(Options(peer.url()));
  ASSERT_TRUE(client.ok()) << client.error().ToString();
  ExpectError((*client)->Send("FETCH", "/"), ErrorCode::kInvalidArgument,
              "unknown HTTP method");
  ExpectError((*client)->Send("GET", "v1"), ErrorCode::kInvalidArgument,
              "the request target must be a path from /");
  ExpectError((*client)->Send("GET", "/a b"), ErrorCode::kInvalidArgument,
              "the request target must be a path from /");
  ExpectError((*client)->Send("GET", "/a\r\nX: y"), ErrorCode::kInvalidArgument,
              "the request target must be a path from /");
  ExpectError((*client)->Send("POST", "/", "text/plain\r\nX: y", "z"),
              ErrorCode::kInvalidArgument, "bad Content-Type");
  EXPECT_TRUE(peer.requests().empty());
}

TEST(HttpClientTest, AKeptConnectionTheServerClosedIsReopenedOnce) {
  ScriptedHttpPeer peer(
      {{ScriptedHttpPeer::Answer(200, "one"), /*close_after=*/true},
       {ScriptedHttpPeer::Answer(200, "two")}});
  Result<std::unique_ptr<HttpClient>> client =
      HttpClient::Connect(Options(peer.url()));
  ASSERT_TRUE(client.ok()) << client.error().ToString();
  Result<HttpResponse> r = (*client)->Send("GET", "/1");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->body, "one");
  r = (*client)->Send("GET", "/2");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->body, "two");
  EXPECT_EQ(peer.connections(), 2);
  ASSERT_EQ(peer.requests().size(), 2u);
  EXPECT_TRUE(peer.requests()[1].starts_with("GET /2 HTTP/1.1\r\n"));
}

TEST(HttpClientTest, OnlyOneRetry) {
  // The second request finds the kept connection closed, and the new one
  // is closed without an answer too.
  ScriptedHttpPeer peer(
      {{ScriptedHttpPeer::Answer(200, "one"), /*close_after=*/true}});
  Result<std::unique_ptr<HttpClient>> client =
      HttpClient::Connect(Options(peer.url()));
  ASSERT_TRUE(client.ok()) << client.error().ToString();
  ASSERT_TRUE((*client)->Send("GET", "/1").ok());
  ExpectError(
      (*client)->Send("GET", "/2"), ErrorCode::kUnavailable,
      Loopback(peer.port()) + " closed the connection without answering");
  EXPECT_EQ(peer.connections(), 2);
  EXPECT_EQ(peer.requests().size(), 2u);
}

TEST(HttpClientTest, AFreshConnectionClosedWithoutAnswerIsNotRetried) {
  ScriptedHttpPeer peer({{"", /*close_after=*/true}});
  Result<std::unique_ptr<HttpClient>> client =
      HttpClient::Connect(Options(peer.url()));
  ASSERT_TRUE(client.ok()) << client.error().ToString();
  ExpectError(
      (*client)->Send("GET", "/"), ErrorCode::kUnavailable,
      Loopback(peer.port()) + " closed the connection without answering");
  EXPECT_EQ(peer.connections(), 1);
}

TEST(HttpClientTest, ConnectionCloseIsHonoured) {
  ScriptedHttpPeer peer({{ScriptedHttpPeer::Answer(200, "one", "text/plain",
                                                   "Connection: close\r\n")},
                         {ScriptedHttpPeer::Answer(200, "two")}});
  Result<std::unique_ptr<HttpClient>> client =
      HttpClient::Connect(Options(peer.url()));
  ASSERT_TRUE(client.ok()) << client.error().ToString();
  ASSERT_TRUE((*client)->Send("GET", "/1").ok());
  Result<HttpResponse> r = (*client)->Send("GET", "/2");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->body, "two");
  EXPECT_EQ(peer.connections(), 2);
}

TEST(HttpClientTest, BrokenAnswersAreIoErrors) {
  {
    ScriptedHttpPeer peer({{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
                            /*close_after=*/true}});
    Result<std::unique_ptr<HttpClient>> client =
        HttpClient::Connect(Options(peer.url()));
    ASSERT_TRUE(client.ok()) << client.error().ToString();
    ExpectError(
        (*client)->Send("GET", "/"), ErrorCode::kIo,
        "bad HTTP answer from " + Loopback(peer.port()) + ": partial message");
  }
  {
    ScriptedHttpPeer peer({{"SSH-2.0-OpenSSH\r\n\r\n"}});
    Result<std::unique_ptr<HttpClient>> client =
        HttpClient::Connect(Options(peer.url()));
    ASSERT_TRUE(client.ok()) << client.error().ToString();
    ExpectError(
        (*client)->Send("GET", "/"), ErrorCode::kIo,
        "bad HTTP answer from " + Loopback(peer.port()) + ": bad version");
  }
}

TEST(HttpClientTest, AnAnswerBeforeTheWholeBodyWasSentIsRead) {
  // The body is larger than what the socket buffers take, so the write is
  // still going on when the peer answers and closes.
  const std::string too_large =
      "{\"error\":{\"code\":\"too_large\",\"message\":\"over 1 MiB\"}}";
  Reply reply{ScriptedHttpPeer::Answer(413, too_large)};
  reply.before_body = true;
  ScriptedHttpPeer peer({reply, {ScriptedHttpPeer::Answer(200, "next")}});
  Result<std::unique_ptr<HttpClient>> client =
      HttpClient::Connect(Options(peer.url()));
  ASSERT_TRUE(client.ok()) << client.error().ToString();
  const std::string body(32 << 20, 'x');
  Result<HttpResponse> r =
      (*client)->Send("POST", "/v1/match", "image/png", body);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(r->body, too_large);
  r = (*client)->Send("GET", "/");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->body, "next");
  EXPECT_EQ(peer.connections(), 2);
}

TEST(HttpClientTest, AnAnswerOver64MiBIsTooLarge) {
  ScriptedHttpPeer peer(
      {{"HTTP/1.1 200 OK\r\nContent-Length: 67108865\r\n\r\n"}});
  Result<std::unique_ptr<HttpClient>> client =
      HttpClient::Connect(Options(peer.url()));
  ASSERT_TRUE(client.ok()) << client.error().ToString();
  ExpectError((*client)->Send("GET", "/"), ErrorCode::kTooLarge,
              "the answer of " + Loopback(peer.port()) + " is over 64 MiB");
}

TEST(HttpClientTest, NoAnswerTimesOut) {
  ScriptedHttpPeer peer({{"", false, /*hold=*/true}});
  ClientOptions o = Options(peer.url());
  o.timeout_ms = 200;
  Result<std::unique_ptr<HttpClient>> client = HttpClient::Connect(o);
  ASSERT_TRUE(client.ok()) << client.error().ToString();
  ExpectError(
      (*client)->Send("GET", "/"), ErrorCode::kUnavailable,
      "request to " + Loopback(peer.port()) + " timed out after 200 ms");
  EXPECT_EQ(peer.connections(), 1);
}

// --- bantay match --server
// --------------------------------------------------------

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// The environment variables the command reads, cleared for a test.
struct CleanEnv {
  ScopedEnv key_file{"BANTAY_API_KEY_FILE", nullptr};
  ScopedEnv key{"BANTAY_API_KEY", nullptr};
  ScopedEnv ca{"BANTAY_CA_FILE", nullptr};
  ScopedEnv cert{"BANTAY_CLIENT_CERT_FILE", nullptr};
  ScopedEnv client_key{"BANTAY_CLIENT_KEY_FILE", nullptr};
};

std::vector<uint8_t> Bytes(const std::string& s) {
  return {s.begin(), s.end()};
}

CliRun Match(const std::vector<std::string>& args) {
  CliRun run = bantay::testing::RunCommand(RunMatchCommand, args);
  EXPECT_EQ(run.out.find(kKey), std::string::npos);
  EXPECT_EQ(run.err.find(kKey), std::string::npos);
  return run;
}

// The first line of what the command printed on standard error.
std::string FirstErrLine(const CliRun& run) {
  return run.err.substr(0, run.err.find('\n') + 1);
}

TEST(MatchServerTest, UsageErrors) {
  CleanEnv env;
  TempDir dir;
  const std::string key_file =
      dir.Write("api.key", Bytes(std::string(kKey) + "\n"));
  const std::string bad_key_file = dir.Write("bad.key", Bytes("secret\n"));
  const std::string list =
      dir.Write("list.txt", Bytes(std::string(kHash) + "\n"));
  const int port = bantay::testing::FreeLoopbackPort();
  const std::string url = "https://127.0.0.1:" + std::to_string(port);
  const std::string one_of =
      "bantay match: give --server and exactly one of --pdq, --pdq-file and "
      "image files\n";
  struct Case {
    std::vector<std::string> args;
    std::string first_line;
  };
  const std::vector<Case> cases = {
      {{"--server", url}, one_of},
      {{"--server", url, "--pdq", kHash, "a.png"}, one_of},
      {{"--server", url, "--pdq", kHash, "--pdq-file", "q.txt"}, one_of},
      {{"--server"}, "bantay match: unknown or incomplete option '--server'\n"},
      {{"--server", url, "--pdq", kHash, "--index", list},
       "bantay match: give either --index or --server, not both\n"},
      {{"--server", url, "--pdq", kHash, "--threads", "2"},
       "bantay match: --threads applies to --index only\n"},
      {{"--server", url, "--pdq", kHash, "--key", key_file},
       "bantay match: --key applies to --index only\n"},
      {{"--index", list, "--pdq", kHash, "--ca", key_file},
       "bantay match: --ca applies to --server only\n"},
      {{"--index", list, "--pdq", kHash, "--api-key-file", key_file},
       "bantay match: --api-key-file applies to --server only\n"},
      {{"--index", list, "--pdq", kHash, "a.png"},
       "bantay match: unknown or incomplete option 'a.png'\n"},
      {{"--server", url, "--pdq", kHash},
       "bantay match: no API key: give --api-key-file FILE (or set "
       "BANTAY_API_KEY_FILE or "
       "BANTAY_API_KEY)\n"},
      {{"--server", url, "--pdq", kHash, "--api-key-file",
        dir.path() + "/none"},
       "bantay match: cannot read the API key file " + dir.path() +
           "/none (open: no such file)\n"},
      {{"--server", url, "--pdq", kHash, "--api-key-file", bad_key_file},
       "bantay match: the API key file " + bad_key_file +
           " does not hold a key of 64 hex digits\n"},
      {{"--server", url, "--pdq-file", dir.path() + "/none", "--api-key-file",
        key_file},
       "bantay match: cannot read " + dir.path() + "/none\n"},
      {{"--server", "ftp://127.0.0.1", "--pdq", kHash, "--api-key-file",
        key_file},
       "bantay match: bad server URL: the scheme must be https or http\n"},
      {{"--server", url, "--pdq", kHash, "--api-key-file", key_file, "--ca",
        dir.path() + "/ca.pem"},
       "bantay match: CA file not found: " + dir.path() + "/ca.pem\n"},
      {{"--server", url, "--pdq", kHash, "--api-key-file", key_file},
       "bantay match: cannot connect to " + Loopback(port) +
           ": connection refused\n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::PrintToString(c.args));
    const CliRun run = Match(c.args);
    EXPECT_EQ(run.status, kExitUsage);
    EXPECT_EQ(FirstErrLine(run), c.first_line);
    EXPECT_EQ(run.out, "");
  }
  {
    ScopedEnv bad_key("BANTAY_API_KEY", "not-a-key");
    EXPECT_EQ(FirstErrLine(Match({"--server", url, "--pdq", kHash})),
              "bantay match: BANTAY_API_KEY is not a key of 64 hex digits\n");
  }
  {
    ScopedEnv ca("BANTAY_CA_FILE", (dir.path() + "/env-ca.pem").c_str());
    ScopedEnv key("BANTAY_API_KEY", kKey);
    EXPECT_EQ(
        FirstErrLine(Match({"--server", url, "--pdq", kHash})),
        "bantay match: CA file not found: " + dir.path() + "/env-ca.pem\n");
  }
}

const std::string kNoMatch =
    "{\"match\":false,\"matches\":[],\"quality\":100,\"index_version\":7}";

TEST(MatchServerTest, HashesAreSentAsJsonAndAnswersPrinted) {
  CleanEnv env;
  ScopedEnv key("BANTAY_API_KEY", kKey);
  ScriptedHttpPeer peer({{ScriptedHttpPeer::Answer(200, kNoMatch)}});
  const CliRun run =
      Match({"--server", peer.url(), "--pdq", kHash, "--dihedral"});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(run.out, std::string("{\"query\":\"") + kHash +
                         "\",\"match\":false,\"matches\":[],\"quality\":100,"
                         "\"index_version\":7}"
                         "\n");
  EXPECT_EQ(run.err, "");
  ASSERT_EQ(peer.requests().size(), 1u);
  const std::string body = std::string("{\"pdq\":\"") + kHash + "\"}";
  EXPECT_EQ(peer.requests()[0],
            "POST /v1/match?dihedral=true HTTP/1.1\r\nHost: " +
                Loopback(peer.port()) +
                "\r\nUser-Agent: bantay/0.1\r\n"
                "Authorization: Bearer " +
                kKey +
                "\r\nContent-Type: application/json\r\n"
                "Content-Length: " +
                std::to_string(body.size()) + "\r\n\r\n" + body);
}

TEST(MatchServerTest, AQueryFileGivesOneLineEachAndErrorsExitOne) {
  CleanEnv env;
  TempDir dir;
  const std::string key_file =
      dir.Write("api.key", Bytes(std::string(" ") + kKey + "\r\n"));
  const std::string queries = dir.Write(
      "q.txt", Bytes(std::string(kHash) + "\nnot-a-hash\n\n" + kHash + "\n"));
  const std::string match =
      "{\"match\":true,\"matches\":[{\"list\":\"demo\",\"category\":\"test\","
      "\"ref\":"
      "\"case-1\"}],\"quality\":100,\"index_version\":7}";
  const std::string limited =
      "{\"error\":{\"code\":\"rate_limited\",\"message\":\"slow down\"}}";
  const std::string busy =
      "{\"error\":{\"code\":\"unavailable\",\"message\":\"busy\"}}";
  // A 429 or 503 is waited out (Retry-After) and the query sent again, as
  // bantay scan does.
  ScriptedHttpPeer peer(
      {{ScriptedHttpPeer::Answer(200, match)},
       {ScriptedHttpPeer::Answer(429, limited, "application/json",
                                 "Retry-After: 1\r\n")},
       {ScriptedHttpPeer::Answer(503, busy, "application/json",
                                 "Retry-After: 1\r\n")},
       {ScriptedHttpPeer::Answer(200, kNoMatch)}});
  const auto start = std::chrono::steady_clock::now();
  const CliRun run = Match({"--server", peer.url(), "--api-key-file", key_file,
                            "--radius", "12", "--pdq-file", queries});
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(run.status, kExitSomeFailed) << run.err;  // not-a-hash
  const std::string q = std::string("\"query\":\"") + kHash + "\",\"signal\":\"pdq\",";
  EXPECT_EQ(
      run.out,
      "{\"line\":1," + q + match.substr(1) + "\n" +
          "{\"line\":2,\"query\":\"not-a-hash\",\"error\":{\"code\":\"invalid_argument\","
          "\"message\":\"line 2: a PDQ hash is 64 hexadecimal digits, got 10 "
          "characters\"}}\n" +
          "{\"line\":4," + q + kNoMatch.substr(1) + "\n");
  const std::vector<std::string> requests = peer.requests();
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_TRUE(requests[0].starts_with("POST /v1/match?radius=12 HTTP/1.1\r\n"));
  EXPECT_EQ(requests[3], requests[1]);
  EXPECT_EQ(peer.connections(), 1);
  // Retry-After: 1, twice.
  EXPECT_GE(elapsed, std::chrono::seconds(2));
}

// Query-file lines are hash-list lines: md5 and sha256 lines are sent as
// such, and a line's reference comes back with its answer.
TEST(MatchServerTest, AQueryFileSendsEachLinesSignalAndEchoesItsReference) {
  CleanEnv env;
  ScopedEnv key("BANTAY_API_KEY", kKey);
  TempDir dir;
  const std::string md5(32, 'e');
  const std::string sha256(64, 'f');
  const std::string queries = dir.Write(
      "q.txt", Bytes("# case 42\nMD5 " + std::string(32, 'E') + " item-1\n\nsha256 " +
                     sha256 + "\npdq " + kHash + " item-3\n"));
  ScriptedHttpPeer peer({{ScriptedHttpPeer::Answer(200, kNoMatch)},
                         {ScriptedHttpPeer::Answer(200, kNoMatch)},
                         {ScriptedHttpPeer::Answer(200, kNoMatch)}});
  const CliRun run = Match({"--server", peer.url(), "--pdq-file", queries});
  EXPECT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(run.out, "{\"line\":2,\"query\":\"" + md5 +
                         "\",\"signal\":\"md5\",\"ref\":\"item-1\"," +
                         kNoMatch.substr(1) + "\n" +
                         "{\"line\":4,\"query\":\"" + sha256 +
                         "\",\"signal\":\"sha256\"," + kNoMatch.substr(1) + "\n" +
                         "{\"line\":5,\"query\":\"" + kHash +
                         "\",\"signal\":\"pdq\",\"ref\":\"item-3\"," +
                         kNoMatch.substr(1) + "\n");
  const std::vector<std::string> requests = peer.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_TRUE(requests[0].ends_with("\r\n\r\n{\"md5\":\"" + md5 + "\"}")) << requests[0];
  EXPECT_TRUE(requests[1].ends_with("\r\n\r\n{\"sha256\":\"" + sha256 + "\"}"))
      << requests[1];
  EXPECT_TRUE(requests[2].ends_with("\r\n\r\n{\"pdq\":\"" + std::string(kHash) + "\"}"))
      << requests[2];
}

TEST(MatchServerTest, ImagesAreSentWithTheirTypeFromTheirContent) {
  CleanEnv env;
  ScopedEnv key("BANTAY_API_KEY", kKey);
  TempDir dir;
  const std::vector<uint8_t> png =
      bantay::testing::Encode(bantay::testing::MakePattern(64, 48), ".png");
  const std::string png_path =
      dir.Write("frame.jpg", png);  // the name does not count
  const std::string text_path = dir.Write("notes.png", Bytes("just text"));
  const std::string unsupported =
      "{\"error\":{\"code\":\"unsupported_format\",\"message\":\"not an "
      "image\"}}";
  ScriptedHttpPeer peer({{ScriptedHttpPeer::Answer(200, kNoMatch)},
                         {ScriptedHttpPeer::Answer(415, unsupported)},
                         {ScriptedHttpPeer::Answer(
                             502, "<html>bad gateway</html>", "text/html")}});
  const CliRun run =
      Match({"--server", peer.url(), png_path, dir.path() + "/missing.png",
             text_path, "--", png_path});
  EXPECT_EQ(run.status, kExitSomeFailed) << run.err;
  EXPECT_EQ(run.out, "{\"path\":\"" + png_path + "\"," + kNoMatch.substr(1) +
                         "\n" + "{\"path\":\"" + dir.path() +
                         "/missing.png\",\"error\":{\"code\":\"not_found\","
                         "\"message\":\"open: no "
                         "such file\"}}\n" +
                         "{\"path\":\"" + text_path + "\",\"status\":415," +
                         unsupported.substr(1) + "\n" + "{\"path\":\"" +
                         png_path +
                         "\",\"status\":502,\"error\":{\"code\":\"bad_answer\","
                         "\"message\":\"HTTP "
                         "status 502 without a Bantay error\"}}\n");
  const std::vector<std::string> requests = peer.requests();
  ASSERT_EQ(requests.size(), 3u);
  const std::string png_head =
      "POST /v1/match HTTP/1.1\r\nHost: " + Loopback(peer.port()) +
      "\r\nUser-Agent: bantay/0.1\r\nAuthorization: Bearer " + kKey +
      "\r\nContent-Type: image/png\r\nContent-Length: " +
      std::to_string(png.size()) + "\r\n\r\n";
  EXPECT_EQ(requests[0], png_head + std::string(png.begin(), png.end()));
  EXPECT_NE(requests[1].find("\r\nContent-Type: application/octet-stream\r\n"),
            std::string::npos);
  EXPECT_TRUE(requests[1].ends_with("\r\n\r\njust text"));
}

TEST(MatchServerTest, LosingTheServerMidRunExitsTwo) {
  CleanEnv env;
  ScopedEnv key("BANTAY_API_KEY", kKey);
  TempDir dir;
  const std::string queries = dir.Write(
      "q.txt", Bytes(std::string(kHash) + "\n" + kHash + "\n" + kHash + "\n"));
  ScriptedHttpPeer peer(
      {{ScriptedHttpPeer::Answer(200, kNoMatch), /*close_after=*/true}});
  const CliRun run = Match({"--server", peer.url(), "--pdq-file", queries});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_EQ(run.out, std::string("{\"line\":1,\"query\":\"") + kHash +
                         "\",\"signal\":\"pdq\"," + kNoMatch.substr(1) + "\n");
  EXPECT_EQ(run.err, "bantay match: " + Loopback(peer.port()) +
                         " closed the connection without answering\n");
}

TEST(MatchServerTest, TlsOptions) {
  CleanEnv env;
  ScopedEnv key("BANTAY_API_KEY", kKey);
  TempDir dir;
  const bantay::testing::TestPki pki = bantay::testing::MakeTestPki(dir.path());
  ASSERT_FALSE(pki.client.cert.empty());
  TempDir other_dir;
  const bantay::testing::TestPki other =
      bantay::testing::MakeTestPki(other_dir.path(), "other-ca");
  ASSERT_FALSE(other.client.cert.empty());
  // s_server answers GET only, so the runs here end at the handshake; which
  // way they fail shows which files were used.
  TlsTestServer server;
  ASSERT_TRUE(server.Start(pki.server, dir.path() + "/s_server.log",
                           {"-Verify", "1", "-verify_return_error", "-CAfile",
                            pki.ca.cert, "-tls1_2"}));
  const std::string prefix = "bantay match: " + Loopback(server.port());
  CliRun run = Match({"--server", server.url(), "--pdq", kHash});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_EQ(
      run.err,
      "bantay match: the certificate of " + Loopback(server.port()) +
          " does not verify: self-signed certificate in certificate chain\n");
  run = Match({"--server", server.url(), "--ca", pki.ca.cert, "--pdq", kHash});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_EQ(run.err, prefix + " requires a client certificate\n");
  run = Match({"--server", server.url(), "--ca", pki.ca.cert, "--client-cert",
               other.client.cert, "--client-key", other.client.key, "--pdq",
               kHash});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_EQ(
      run.err,
      prefix + " refused the client certificate: tlsv1 alert unknown ca\n");
  {
    ScopedEnv ca("BANTAY_CA_FILE", pki.ca.cert.c_str());
    ScopedEnv cert("BANTAY_CLIENT_CERT_FILE", other.client.cert.c_str());
    ScopedEnv client_key("BANTAY_CLIENT_KEY_FILE", other.client.key.c_str());
    run = Match({"--server", server.url(), "--pdq", kHash});
    EXPECT_EQ(run.status, kExitUsage);
    EXPECT_EQ(
        run.err,
        prefix + " refused the client certificate: tlsv1 alert unknown ca\n");
  }
  EXPECT_EQ(run.out, "");
}

}  // namespace
}  // namespace bantay::client
