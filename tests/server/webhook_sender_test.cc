// WebhookSender (server/src/webhook.h) against real receivers on 127.0.0.1:
// a small Beast HTTPS server that records every request and answers from a
// script, with certificates made by the openssl command line.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bantay/client/webhook.h"
#include "test_images.h"
#include "tls_test_util.h"
#include "webhook.h"

namespace bantay::server {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using boost::system::error_code;
using std::chrono::milliseconds;
using std::chrono::steady_clock;
using testing::TestCertificate;
using testing::TestPki;

constexpr char kSecret[] = "whsec_0123456789abcdef";
constexpr char kBody[] =
    R"({"type":"stream.verdict","stream":"s-1","verdict":"match"})";

// Polls until pred() holds; false after a generous deadline (the machine
// may be loaded).
template <typename Pred>
bool WaitFor(Pred pred, milliseconds limit = milliseconds(20000)) {
  const auto deadline = steady_clock::now() + limit;
  while (!pred()) {
    if (steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

// An HTTPS receiver on 127.0.0.1:0. Each request is recorded; the i-th
// request gets script[i] (the last entry repeats).
class Receiver {
 public:
  struct Reply {
    unsigned status = 200;
    std::string retry_after;  // header value when not empty
    std::string location;     // header value when not empty
    bool hold = false;        // never answer; keep the connection open
  };
  static Reply Respond(unsigned status, std::string retry_after = "",
                       std::string location = "") {
    Reply r;
    r.status = status;
    r.retry_after = std::move(retry_after);
    r.location = std::move(location);
    return r;
  }
  static Reply Hold() {
    Reply r;
    r.hold = true;
    return r;
  }
  struct Received {
    http::request<http::string_body> request;
    steady_clock::time_point at;
  };

  Receiver(const TestCertificate& cert, std::vector<Reply> script)
      : script_(std::move(script)) {
    tls_.use_certificate_chain_file(cert.cert);
    tls_.use_private_key_file(cert.key, ssl::context::pem);
    acceptor_.open(tcp::v4());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    Accept();
    thread_ = std::thread([this] { ioc_.run(); });
  }

  ~Receiver() {
    ioc_.stop();
    thread_.join();
  }

  std::string url(const std::string& host = "127.0.0.1",
                  const std::string& path = "/hook") const {
    return "https://" + host + ":" + std::to_string(port_) + path;
  }
  std::vector<Received> received() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return received_;
  }
  int connections() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return connections_;
  }

 private:
  struct Session : std::enable_shared_from_this<Session> {
    Session(Receiver& r, tcp::socket socket)
        : owner(r), stream(std::move(socket), r.tls_) {}

    void Start() {
      stream.async_handshake(ssl::stream_base::server,
                             [self = shared_from_this()](error_code ec) {
                               if (!ec) self->Read();
                             });
    }
    void Read() {
      http::async_read(stream, buffer, request,
                       [self = shared_from_this()](error_code ec, size_t) {
                         if (!ec) self->Answer();
                       });
    }
    void Answer() {
      const Reply reply = owner.Record(request);
      if (reply.hold) {
        owner.held_.push_back(shared_from_this());
        return;
      }
      response.version(11);
      response.result(reply.status);
      if (!reply.retry_after.empty()) {
        response.set(http::field::retry_after, reply.retry_after);
      }
      if (!reply.location.empty()) {
        response.set(http::field::location, reply.location);
      }
      if (reply.status != 204 && reply.status != 304) response.body() = "{}";
      response.prepare_payload();
      http::async_write(stream, response,
                        [self = shared_from_this()](error_code, size_t) {
                          error_code ignored;
                          beast::get_lowest_layer(self->stream).close(ignored);
                        });
    }

    Receiver& owner;
    ssl::stream<tcp::socket> stream;
    beast::flat_buffer buffer;
    http::request<http::string_body> request;
    http::response<http::string_body> response;
  };

  void Accept() {
    acceptor_.async_accept([this](error_code ec, tcp::socket socket) {
      if (ec) return;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ++connections_;
      }
      std::make_shared<Session>(*this, std::move(socket))->Start();
      Accept();
    });
  }

  Reply Record(const http::request<http::string_body>& request) {
    std::lock_guard<std::mutex> lock(mutex_);
    received_.push_back({request, steady_clock::now()});
    return script_[std::min(received_.size(), script_.size()) - 1];
  }

  const std::vector<Reply> script_;
  // Before the io_context: streams destroyed with it refer to it.
  ssl::context tls_{ssl::context::tls_server};
  net::io_context ioc_{1};
  tcp::acceptor acceptor_{ioc_};
  int port_ = 0;
  std::thread thread_;
  std::vector<std::shared_ptr<Session>> held_;  // on the receiver's thread

  mutable std::mutex mutex_;
  std::vector<Received> received_;  // protected by mutex_
  int connections_ = 0;             // protected by mutex_
};

std::string Header(const http::request<http::string_body>& request,
                   std::string_view name) {
  const auto it = request.find(name);
  return it == request.end() ? "<missing>" : std::string(it->value());
}

class WebhookSenderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new bantay::testing::TempDir();
    pki_ = new TestPki(testing::MakeTestPki(dir_->path()));
  }
  static void TearDownTestSuite() {
    delete pki_;
    delete dir_;
  }

  void SetUp() override { ASSERT_FALSE(pki_->ca.cert.empty()); }

  // Options for tests: the test CA, short backoffs.
  static WebhookOptions TestOptions() {
    WebhookOptions o;
    o.ca_file = pki_->ca.cert;
    o.first_backoff = milliseconds(10);
    o.timeout = milliseconds(20000);
    return o;
  }

  static std::unique_ptr<WebhookSender> MakeSender(const WebhookOptions& o) {
    auto sender = WebhookSender::Create(o);
    if (!sender.ok()) {
      ADD_FAILURE() << sender.error().ToString();
      return nullptr;
    }
    return std::move(sender).value();
  }

  static bantay::testing::TempDir* dir_;
  static TestPki* pki_;
};

bantay::testing::TempDir* WebhookSenderTest::dir_ = nullptr;
TestPki* WebhookSenderTest::pki_ = nullptr;

// Every header of the protocol, checked on what the receiver got.
void ExpectSignedDelivery(const http::request<http::string_body>& request,
                          const std::string& target, const std::string& host) {
  EXPECT_EQ(request.method(), http::verb::post);
  EXPECT_EQ(request.target(), target);
  EXPECT_EQ(request.version(), 11u);
  EXPECT_EQ(Header(request, "Host"), host);
  EXPECT_EQ(Header(request, "Content-Type"), "application/json");
  EXPECT_EQ(Header(request, "Content-Length"),
            std::to_string(std::string_view(kBody).size()));
  EXPECT_EQ(request.body(), kBody);
  const std::string timestamp = Header(request, "Bantay-Timestamp");
  const std::string signature = Header(request, "Bantay-Signature");
  const auto now = std::chrono::system_clock::now();
  const auto verified =
      client::VerifyWebhook(kSecret, timestamp, signature, request.body(), now);
  ASSERT_TRUE(verified.ok()) << verified.error().ToString();
  EXPECT_LE(now - *verified, std::chrono::seconds(60));
  EXPECT_EQ(signature, client::SignWebhook(kSecret, timestamp, kBody));
  EXPECT_FALSE(client::VerifyWebhook("whsec_other", timestamp, signature,
                                     request.body(), now)
                   .ok());
  const std::string id = Header(request, "Bantay-Event-Id");
  ASSERT_EQ(id.size(), 32u) << id;
  for (char c : id) {
    EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << id;
  }
}

TEST_F(WebhookSenderTest, DeliversASignedEventOverHttps) {
  Receiver receiver(pki_->server, {Receiver::Respond(200)});
  auto sender = MakeSender(TestOptions());
  ASSERT_NE(sender, nullptr);
  ASSERT_TRUE(sender->Enqueue(
      receiver.url("127.0.0.1", "/hooks/bantay?k=1&x=%20"), kSecret, kBody));
  ASSERT_TRUE(WaitFor([&] { return sender->stats().delivered == 1; }));
  const auto received = receiver.received();
  ASSERT_EQ(received.size(), 1u);
  ExpectSignedDelivery(received[0].request, "/hooks/bantay?k=1&x=%20",
                       "127.0.0.1:" + receiver.url().substr(18, 5));
  const WebhookSender::Stats s = sender->stats();
  EXPECT_EQ(s.failed, 0u);
  EXPECT_EQ(s.retries, 0u);
  EXPECT_EQ(s.dropped, 0u);
  EXPECT_EQ(s.rejected, 0u);
  EXPECT_EQ(s.in_queue, 0u);

  // Two events: two event ids.
  ASSERT_TRUE(sender->Enqueue(receiver.url(), kSecret, kBody));
  ASSERT_TRUE(WaitFor([&] { return sender->stats().delivered == 2; }));
  const auto both = receiver.received();
  ASSERT_EQ(both.size(), 2u);
  EXPECT_NE(Header(both[0].request, "Bantay-Event-Id"),
            Header(both[1].request, "Bantay-Event-Id"));
  EXPECT_EQ(both[1].request.target(), "/hook");
}

TEST_F(WebhookSenderTest, VerifiesAHostNameThroughTheResolver) {
  Receiver receiver(pki_->server, {Receiver::Respond(204)});
  auto sender = MakeSender(TestOptions());
  ASSERT_NE(sender, nullptr);
  // https://localhost:PORT (no path): a DNS name in the certificate, the
  // resolver's answers tried in turn (::1 may come first and be refused).
  const std::string url = receiver.url("localhost", "");
  ASSERT_TRUE(sender->Enqueue(url, kSecret, kBody));
  ASSERT_TRUE(WaitFor([&] {
    const auto s = sender->stats();
    return s.delivered + s.failed == 1;
  }));
  EXPECT_EQ(sender->stats().delivered, 1u);
  const auto received = receiver.received();
  ASSERT_EQ(received.size(), 1u);
  ExpectSignedDelivery(received[0].request, "/", url.substr(8));
}

TEST_F(WebhookSenderTest, RetriesServerErrorsThenDelivers) {
  Receiver receiver(
      pki_->server,
      {Receiver::Respond(503), Receiver::Respond(500), Receiver::Respond(429),
       Receiver::Respond(408), Receiver::Respond(200)});
  auto sender = MakeSender(TestOptions());
  ASSERT_NE(sender, nullptr);
  ASSERT_TRUE(sender->Enqueue(receiver.url(), kSecret, kBody));
  ASSERT_TRUE(WaitFor([&] { return sender->stats().delivered == 1; }));
  const auto received = receiver.received();
  ASSERT_EQ(received.size(), 5u);
  const std::string id = Header(received[0].request, "Bantay-Event-Id");
  for (const auto& r : received) {
    ExpectSignedDelivery(r.request, "/hook",
                         std::string(r.request[http::field::host]));
    EXPECT_EQ(Header(r.request, "Bantay-Event-Id"), id);
  }
  const WebhookSender::Stats s = sender->stats();
  EXPECT_EQ(s.retries, 4u);
  EXPECT_EQ(s.failed, 0u);
  EXPECT_EQ(s.in_queue, 0u);
}

TEST_F(WebhookSenderTest, GivesUpAfterMaxAttemptsOfServerErrors) {
  Receiver receiver(pki_->server, {Receiver::Respond(502)});
  WebhookOptions o = TestOptions();
  o.max_attempts = 3;
  o.first_backoff = milliseconds(5);
  auto sender = MakeSender(o);
  ASSERT_NE(sender, nullptr);
  ASSERT_TRUE(sender->Enqueue(receiver.url(), kSecret, kBody));
  ASSERT_TRUE(WaitFor([&] { return sender->stats().failed == 1; }));
  EXPECT_EQ(receiver.received().size(), 3u);
  const WebhookSender::Stats s = sender->stats();
  EXPECT_EQ(s.retries, 2u);
  EXPECT_EQ(s.delivered, 0u);
  EXPECT_EQ(s.in_queue, 0u);
}

TEST_F(WebhookSenderTest, BackoffDoublesFromFirstBackoff) {
  Receiver receiver(pki_->server,
                    {Receiver::Respond(503), Receiver::Respond(503),
                     Receiver::Respond(503), Receiver::Respond(200)});
  WebhookOptions o = TestOptions();
  o.first_backoff = milliseconds(200);
  auto sender = MakeSender(o);
  ASSERT_NE(sender, nullptr);
  ASSERT_TRUE(sender->Enqueue(receiver.url(), kSecret, kBody));
  ASSERT_TRUE(WaitFor([&] { return sender->stats().delivered == 1; }));
  const auto r = receiver.received();
  ASSERT_EQ(r.size(), 4u);
  // Waits of at least 200, 400 and 800 ms between attempts.
  EXPECT_GE(r[1].at - r[0].at, milliseconds(200));
  EXPECT_GE(r[2].at - r[1].at, milliseconds(400));
  EXPECT_GE(r[3].at - r[2].at, milliseconds(800));
}

TEST_F(WebhookSenderTest, ClientErrorsAndRedirectsAreNotRetried) {
  Receiver receiver(
      pki_->server,
      {Receiver::Respond(400), Receiver::Respond(404),
       Receiver::Respond(302, "", "https://127.0.0.1:1/elsewhere")});
  auto sender = MakeSender(TestOptions());
  ASSERT_NE(sender, nullptr);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(sender->Enqueue(receiver.url(), kSecret, kBody));
    ASSERT_TRUE(
        WaitFor([&] { return sender->stats().failed == uint64_t(i + 1); }));
  }
  const WebhookSender::Stats s = sender->stats();
  EXPECT_EQ(s.retries, 0u);
  EXPECT_EQ(s.delivered, 0u);
  EXPECT_EQ(s.in_queue, 0u);
  EXPECT_EQ(receiver.received().size(), 3u);
  EXPECT_EQ(receiver.connections(), 3);
}

TEST_F(WebhookSenderTest, HonoursRetryAfter) {
  Receiver receiver(pki_->server,
                    {Receiver::Respond(503, "1"), Receiver::Respond(429, " 1 "),
                     Receiver::Respond(200)});
  auto sender = MakeSender(TestOptions());  // backoff 10 ms, 20 ms
  ASSERT_NE(sender, nullptr);
  ASSERT_TRUE(sender->Enqueue(receiver.url(), kSecret, kBody));
  ASSERT_TRUE(WaitFor([&] { return sender->stats().delivered == 1; }));
  const auto r = receiver.received();
  ASSERT_EQ(r.size(), 3u);
  EXPECT_GE(r[1].at - r[0].at, milliseconds(1000));
  EXPECT_GE(r[2].at - r[1].at, milliseconds(1000));
  EXPECT_EQ(sender->stats().retries, 2u);
}

TEST_F(WebhookSenderTest, GivesUpOnADeadPortAfterMaxAttempts) {
  const int port = testing::FreeLoopbackPort();
  ASSERT_NE(port, 0);
  WebhookOptions o = TestOptions();
  o.max_attempts = 4;
  o.first_backoff = milliseconds(5);
  auto sender = MakeSender(o);
  ASSERT_NE(sender, nullptr);
  ASSERT_TRUE(sender->Enqueue("https://127.0.0.1:" + std::to_string(port) + "/",
                              kSecret, kBody));
  ASSERT_TRUE(WaitFor([&] { return sender->stats().failed == 1; }));
  const WebhookSender::Stats s = sender->stats();
  EXPECT_EQ(s.retries, 3u);
  EXPECT_EQ(s.delivered, 0u);
  EXPECT_EQ(s.in_queue, 0u);
}

TEST_F(WebhookSenderTest, RetriesANameThatDoesNotResolveThenGivesUp) {
  WebhookOptions o = TestOptions();
  o.max_attempts = 2;
  o.timeout = milliseconds(3000);
  auto sender = MakeSender(o);
  ASSERT_NE(sender, nullptr);
  // RFC 6761: names under .invalid never resolve.
  ASSERT_TRUE(
      sender->Enqueue("https://bantay-test.invalid/hook", kSecret, kBody));
  ASSERT_TRUE(WaitFor([&] { return sender->stats().failed == 1; }));
  const WebhookSender::Stats s = sender->stats();
  EXPECT_EQ(s.retries, 1u);
  EXPECT_EQ(s.delivered, 0u);
  EXPECT_EQ(s.in_queue, 0u);
}

TEST_F(WebhookSenderTest, TimesOutAndRetriesASilentReceiver) {
  Receiver receiver(pki_->server, {Receiver::Hold(), Receiver::Respond(200)});
  WebhookOptions o = TestOptions();
  o.timeout = milliseconds(300);
  auto sender = MakeSender(o);
  ASSERT_NE(sender, nullptr);
  ASSERT_TRUE(sender->Enqueue(receiver.url(), kSecret, kBody));
  ASSERT_TRUE(WaitFor([&] { return sender->stats().delivered == 1; }));
  const auto r = receiver.received();
  ASSERT_EQ(r.size(), 2u);
  // The 300 ms count from the start of the attempt, before the request
  // arrived (connection and handshake); 200 ms leave room for those.
  EXPECT_GE(r[1].at - r[0].at, milliseconds(200));
  EXPECT_EQ(sender->stats().retries, 1u);
}

TEST_F(WebhookSenderTest, QueueFullDropsAndCounts) {
  Receiver receiver(pki_->server, {Receiver::Hold()});
  WebhookOptions o = TestOptions();
  o.queue_limit = 2;
  auto sender = MakeSender(o);
  ASSERT_NE(sender, nullptr);
  EXPECT_TRUE(sender->Enqueue(receiver.url(), kSecret, kBody));
  EXPECT_TRUE(sender->Enqueue(receiver.url(), kSecret, kBody));
  EXPECT_FALSE(sender->Enqueue(receiver.url(), kSecret, kBody));
  EXPECT_FALSE(sender->Enqueue(receiver.url(), kSecret, kBody));
  WebhookSender::Stats s = sender->stats();
  EXPECT_EQ(s.dropped, 2u);
  EXPECT_EQ(s.in_queue, 2u);
  EXPECT_EQ(s.rejected, 0u);
  sender->Stop();
  s = sender->stats();
  EXPECT_EQ(s.abandoned, 2u);
  EXPECT_EQ(s.in_queue, 0u);
  EXPECT_EQ(s.delivered + s.failed, 0u);
  // After Stop nothing is accepted.
  EXPECT_FALSE(sender->Enqueue(receiver.url(), kSecret, kBody));
  EXPECT_EQ(sender->stats().dropped, 3u);
}

TEST_F(WebhookSenderTest, RejectsUnacceptableUrlsAndSecrets) {
  auto sender = MakeSender(TestOptions());
  ASSERT_NE(sender, nullptr);
  const std::vector<std::string> bad = {
      "http://127.0.0.1:8080/hook",  // plain HTTP not allowed
      "ftp://127.0.0.1/hook",
      "https://user:pw@127.0.0.1/hook",
      "https://127.0.0.1/hook#part",
      "https://127.0.0.1:0/hook",
      "https://127.0.0.1:65536/hook",
      "https:///hook",
      "127.0.0.1/hook",
      "",
      "https://exa mple.org/",
  };
  for (const std::string& url : bad) {
    EXPECT_FALSE(sender->Enqueue(url, kSecret, kBody)) << url;
  }
  EXPECT_FALSE(sender->Enqueue("https://127.0.0.1/hook", "", kBody));
  const WebhookSender::Stats s = sender->stats();
  EXPECT_EQ(s.rejected, bad.size() + 1);
  EXPECT_EQ(s.dropped, 0u);
  EXPECT_EQ(s.in_queue, 0u);
}

TEST_F(WebhookSenderTest, PlainHttpOnlyWhenAllowed) {
  testing::ScriptedHttpPeer peer(
      {{testing::ScriptedHttpPeer::Answer(204, "")}});
  WebhookOptions o = TestOptions();
  o.allow_plain_http = true;
  auto sender = MakeSender(o);
  ASSERT_NE(sender, nullptr);
  ASSERT_TRUE(sender->Enqueue(peer.url() + "/plain", kSecret, kBody));
  ASSERT_TRUE(WaitFor([&] { return sender->stats().delivered == 1; }));
  const auto requests = peer.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].rfind("POST /plain HTTP/1.1\r\n", 0), 0u)
      << requests[0];
  EXPECT_NE(requests[0].find("\r\n\r\n" + std::string(kBody)),
            std::string::npos);
  EXPECT_NE(requests[0].find("\r\nBantay-Signature: v1="), std::string::npos);
}

TEST_F(WebhookSenderTest, SilentReceiverStallsNeitherEnqueueNorOtherUrls) {
  Receiver silent(pki_->server, {Receiver::Hold()});
  Receiver healthy(pki_->server, {Receiver::Respond(200)});
  WebhookOptions o = TestOptions();
  o.timeout = milliseconds(60000);
  auto sender = MakeSender(o);
  ASSERT_NE(sender, nullptr);
  const auto start = steady_clock::now();
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(sender->Enqueue(silent.url(), kSecret, kBody));
  }
  // Enqueue returns at once even though the first attempts are under way.
  ASSERT_TRUE(WaitFor([&] { return silent.received().size() == 2; }));
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(sender->Enqueue(healthy.url(), kSecret, kBody));
  }
  EXPECT_LT(steady_clock::now() - start, milliseconds(20000));
  // All 20 are delivered long before the silent receiver's 60 s timeout.
  ASSERT_TRUE(WaitFor([&] { return sender->stats().delivered == 20; }));
  EXPECT_EQ(healthy.received().size(), 20u);
  // The silent receiver holds no more than its per-destination share.
  EXPECT_EQ(silent.received().size(),
            size_t{WebhookSender::kMaxInFlightPerDestination});
  EXPECT_EQ(silent.connections(), WebhookSender::kMaxInFlightPerDestination);
  WebhookSender::Stats s = sender->stats();
  EXPECT_EQ(s.in_queue, 6u);
  EXPECT_EQ(s.failed, 0u);

  const auto stop_start = steady_clock::now();
  sender->Stop();
  EXPECT_LT(steady_clock::now() - stop_start, milliseconds(2000));
  s = sender->stats();
  EXPECT_EQ(s.abandoned, 6u);
  EXPECT_EQ(s.in_queue, 0u);
  EXPECT_EQ(s.delivered, 20u);
}

TEST_F(WebhookSenderTest, DestructorReturnsPromptlyWithWorkPending) {
  Receiver silent(pki_->server, {Receiver::Hold()});
  Receiver failing(pki_->server, {Receiver::Respond(503)});
  WebhookOptions o = TestOptions();
  o.timeout = milliseconds(60000);
  o.first_backoff = milliseconds(60000);
  auto sender = MakeSender(o);
  ASSERT_NE(sender, nullptr);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(sender->Enqueue(silent.url(), kSecret, kBody));
  }
  ASSERT_TRUE(sender->Enqueue(failing.url(), kSecret, kBody));
  // Two attempts hang, three events wait for a slot, one waits 60 s to retry.
  ASSERT_TRUE(WaitFor([&] {
    return silent.received().size() == 2 && sender->stats().retries == 1;
  }));
  EXPECT_EQ(sender->stats().in_queue, 6u);
  const auto start = steady_clock::now();
  sender.reset();
  EXPECT_LT(steady_clock::now() - start, milliseconds(2000));
}

TEST_F(WebhookSenderTest, UntrustedCertificateFailsWithoutRetry) {
  bantay::testing::TempDir other_dir;
  const TestPki other = testing::MakeTestPki(other_dir.path(), "other-ca");
  ASSERT_FALSE(other.ca.cert.empty());
  Receiver receiver(other.server, {Receiver::Respond(200)});
  auto sender = MakeSender(TestOptions());  // trusts pki_->ca only
  ASSERT_NE(sender, nullptr);
  ASSERT_TRUE(sender->Enqueue(receiver.url(), kSecret, kBody));
  ASSERT_TRUE(WaitFor([&] { return sender->stats().failed == 1; }));
  EXPECT_EQ(sender->stats().retries, 0u);
  EXPECT_EQ(sender->stats().delivered, 0u);
  EXPECT_TRUE(receiver.received().empty());
  EXPECT_EQ(receiver.connections(), 1);
}

TEST_F(WebhookSenderTest, CertificateForAnotherNameFails) {
  // Issued by the trusted CA, but for other.example only.
  const TestCertificate wrong_name =
      testing::MakeSignedCertificate(dir_->path(), "wrong-name", pki_->ca,
                                     "/CN=other.example", "DNS:other.example");
  ASSERT_FALSE(wrong_name.cert.empty());
  Receiver receiver(wrong_name, {Receiver::Respond(200)});
  auto sender = MakeSender(TestOptions());
  ASSERT_NE(sender, nullptr);
  ASSERT_TRUE(sender->Enqueue(receiver.url("127.0.0.1"), kSecret, kBody));
  ASSERT_TRUE(sender->Enqueue(receiver.url("localhost"), kSecret, kBody));
  ASSERT_TRUE(WaitFor([&] { return sender->stats().failed == 2; }));
  EXPECT_EQ(sender->stats().delivered, 0u);
  EXPECT_EQ(sender->stats().retries, 0u);
  EXPECT_TRUE(receiver.received().empty());
}

TEST_F(WebhookSenderTest, CreateRefusesBadOptions) {
  WebhookOptions o = TestOptions();
  o.ca_file = dir_->path() + "/missing.pem";
  auto missing = WebhookSender::Create(o);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(missing.error().message(),
            "webhook CA file not found: " + o.ca_file);

  o.ca_file = pki_->ca.key;  // PEM, but no certificate
  auto not_cert = WebhookSender::Create(o);
  ASSERT_FALSE(not_cert.ok());
  EXPECT_EQ(not_cert.error().code(), ErrorCode::kInvalidArgument);

  for (int field = 0; field < 4; ++field) {
    WebhookOptions bad = TestOptions();
    if (field == 0) bad.queue_limit = 0;
    if (field == 1) bad.max_attempts = 0;
    if (field == 2) bad.first_backoff = milliseconds(0);
    if (field == 3) bad.timeout = milliseconds(-1);
    auto r = WebhookSender::Create(bad);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  }
  // The system trust store (no ca_file) loads.
  WebhookOptions system = TestOptions();
  system.ca_file.clear();
  EXPECT_TRUE(WebhookSender::Create(system).ok());
}

}  // namespace
}  // namespace bantay::server
