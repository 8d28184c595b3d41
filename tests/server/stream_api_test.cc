// Integration tests of the stream routes over HTTP: the real server on
// 127.0.0.1:0 with TLS and a SQLite store, called with the client library.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "bantay/models/webhook_signature.h"
#include "server_test_util.h"

namespace bantay::server::testing {
namespace {

using client::HttpResponse;

class StreamApiTest : public ::testing::Test, public ServerFixture {
 protected:
  void SetUp() override { SetUpStore("sqlite"); }
  void TearDown() override { StopServer(); }

  HttpResponse SendImage(const std::string& key, std::string_view target,
                         const std::vector<uint8_t>& image, std::string_view type = "image/jpeg") {
    std::unique_ptr<client::HttpClient> c = Client(key);
    if (c == nullptr) return {};
    Result<HttpResponse> r = c->Send("POST", target, type, image);
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? std::move(*r) : HttpResponse{};
  }
  // The platform key's webhook: http://127.0.0.1:PORT<target>, signed with
  // `secret` (read from a file).
  void SetPlatformWebhook(uint16_t port, const std::string& target, const std::string& secret) {
    const std::string secret_file = dir_.path() + "/webhook.secret";
    std::ofstream(secret_file) << secret << "\n";
    config.allow_plain_http_webhooks = true;
    for (ApiKeyConfig& key : config.api_keys) {
      if (key.id != "platform") continue;
      key.webhook_url = "http://127.0.0.1:" + std::to_string(port) + target;
      key.webhook_secret_file = secret_file;
    }
  }
  // Opens a stream; its id ("" on failure).
  std::string Open(const std::string& key, std::string_view policy) {
    HttpResponse r = Send(key, "POST", "/v1/streams", "application/json", policy);
    EXPECT_EQ(r.status, 201) << r.body;
    if (r.status != 201) return "";
    return std::string(ParseJson(r.body).at("id").as_string());
  }
  // Sends the platform's stream `id` the bridge picture's hash (a listed
  // one) at `t`; the stream's verdict after it.
  std::string SendListedHash(const std::string& id, int64_t t) {
    const json::value event =
        Event(Send("platform", "POST", "/v1/streams/" + id + "/frames?t=" + std::to_string(t),
                   "application/json", R"({"pdq":")" + ReferencePdq(kBridge) + R"("})"));
    return event.is_object() ? std::string(event.at("stream").as_string()) : "";
  }
  HttpResponse Frame(const std::string& key, const std::string& id, int64_t t,
                     const std::vector<uint8_t>& image) {
    return SendImage(key, "/v1/streams/" + id + "/frames?t=" + std::to_string(t), image,
                     image.size() > 4 && image[1] == 'P' ? "image/png" : "image/jpeg");
  }
  static std::vector<uint8_t> Picture(const char* path) {
    return bantay::testing::ReadTestFile(std::string("pdq/") + path);
  }
  static void ExpectError(const HttpResponse& r, int status, std::string_view code) {
    EXPECT_EQ(r.status, status) << r.body;
    json::value v = ParseJson(r.body);
    ASSERT_TRUE(v.is_object()) << r.body;
    EXPECT_EQ(v.at("error").at("code").as_string(), code) << r.body;
  }
  static json::value Event(const HttpResponse& r) {
    EXPECT_EQ(r.status, 200) << r.body;
    return ParseJson(r.body);
  }
  static constexpr const char* kUnrelated = "reg-test-input/pen-and-coaster.png";
};

TEST_F(StreamApiTest, AStreamOfAListedImageReachesMatchAndIsDeleted) {
  StartServer();
  HttpResponse created = Send("platform", "POST", "/v1/streams", "application/json",
                              R"({"sample_interval_ms":500,"window":3,"k":2,"label":"cam-7"})");
  ASSERT_EQ(created.status, 201) << created.body;
  const json::value answer = ParseJson(created.body);
  const std::string id(answer.at("id").as_string());
  ASSERT_EQ(id.size(), 32u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(answer, json::parse(R"({"id":")" + id +
                                R"(","policy":{"sample_interval_ms":500,"quality_min":50,)"
                                R"("window":3,"k":2,"skip_distance":8,"trim_borders":true,)"
                                R"("dihedral":true,"radius":31,"label":"cam-7"},)"
                                R"("expires_after_s":60,"ws":"/v1/streams/)" +
                                id + R"(/ws"})"));

  const std::vector<uint8_t> bridge = Picture(kBridge);
  // t=0: matched (suspect); t=200: not sampled; t=500: the same picture,
  // skipped, repeats the match: 2 of 3 -> match.
  EXPECT_EQ(Event(Frame("platform", id, 0, bridge)),
            json::parse(R"({"type":"frame","t":0,"frame":0,"verdict":"match","quality":100,)"
                        R"("stream":"suspect"})"));
  EXPECT_EQ(Event(Frame("platform", id, 200, bridge)),
            json::parse(R"({"type":"frame","t":200,"frame":1,"verdict":"not_sampled",)"
                        R"("stream":"suspect"})"));
  EXPECT_EQ(Event(Frame("platform", id, 500, bridge)),
            json::parse(R"({"type":"frame","t":500,"frame":2,"verdict":"skipped","quality":100,)"
                        R"("stream":"match"})"));
  // The rotated picture is matched through the dihedral query.
  HttpResponse rotated = Frame("platform", id, 1000, Picture(kBridgeRotated));
  EXPECT_EQ(Event(rotated).at("verdict"), "match");
  EXPECT_EQ(rotated.body.find("distance"), std::string::npos);

  HttpResponse state = Send("platform", "GET", "/v1/streams/" + id);
  ASSERT_EQ(state.status, 200) << state.body;
  json::object s = ParseJson(state.body).as_object();
  EXPECT_TRUE(s.at("created_at").as_string().ends_with("Z"));
  s.erase("created_at");
  s.erase("updated_at");
  EXPECT_EQ(json::value(s),
            json::parse(R"({"type":"verdict","id":")" + id +
                        R"(","label":"cam-7","stream":"match","previous":"suspect",)"
                        R"("first_match_t":0,"last_match_t":1000,)"
                        R"("frames":{"received":4,"hashed":3,"matched":2,"skipped":1,)"
                        R"("low_quality":0,"not_sampled":1,"dropped":0,"errors":0},)"
                        R"("matches":[{"list":"demo","category":"test","ref":"case-1"}]})"));
  EXPECT_EQ(state.body.find(ReferencePdq(kBridge)), std::string::npos);

  HttpResponse deleted = Send("platform", "DELETE", "/v1/streams/" + id);
  ASSERT_EQ(deleted.status, 200) << deleted.body;
  EXPECT_EQ(ParseJson(deleted.body).at("stream"), "match");
  ExpectError(Send("platform", "GET", "/v1/streams/" + id), 404, "not_found");
  ExpectError(Frame("platform", id, 2000, bridge), 404, "not_found");
  ExpectError(Send("platform", "DELETE", "/v1/streams/" + id), 404, "not_found");
}

TEST_F(StreamApiTest, AStreamOfAnUnlistedImageStaysClean) {
  StartServer();
  const std::string id = Open("platform", R"({"sample_interval_ms":0,"skip_distance":-1})");
  ASSERT_FALSE(id.empty());
  const std::vector<uint8_t> picture = Picture(kUnrelated);
  for (int t = 0; t < 4; ++t) {
    const json::value event = Event(Frame("platform", id, t * 40, picture));
    EXPECT_EQ(event.at("verdict"), "no_match");
    EXPECT_EQ(event.at("stream"), "clean");
  }
  const json::value state = ParseJson(Send("platform", "GET", "/v1/streams/" + id).body);
  EXPECT_EQ(state.at("stream"), "clean");
  EXPECT_EQ(state.at("first_match_t"), nullptr);
  EXPECT_EQ(state.at("matches"), json::array());
  EXPECT_EQ(state.at("frames").at("hashed"), 4);
}

TEST_F(StreamApiTest, HashFramesAndLabDistances) {
  StartServer();
  const std::string near = FlipBits(ReferencePdq(kBridge), 3);
  for (const std::string key : {"platform", "lab"}) {
    const std::string id = Open(key, R"({"sample_interval_ms":0,"k":1,"dihedral":false})");
    ASSERT_FALSE(id.empty());
    const json::value event = Event(Send(key, "POST", "/v1/streams/" + id + "/frames",
                                         "application/json",
                                         R"({"pdq":")" + near + R"(","quality":90,"t":5})"));
    json::object expected = json::parse(R"({"type":"frame","t":5,"frame":0,"verdict":"match",)"
                                        R"("quality":90,"stream":"match"})")
                                .as_object();
    if (key == "lab") expected["distance"] = 3;
    EXPECT_EQ(event, json::value(expected)) << key;
    // Under the quality gate: not matched, not in the window.
    EXPECT_EQ(Event(Send(key, "POST", "/v1/streams/" + id + "/frames?t=6", "application/json",
                         R"({"pdq":")" + near + R"(","quality":49})"))
                  .at("verdict"),
              "low_quality");
  }
}

TEST_F(StreamApiTest, EveryErrorStatus) {
  StartServer();
  const std::string id = Open("platform", R"({"sample_interval_ms":0})");
  ASSERT_FALSE(id.empty());
  const std::string frames = "/v1/streams/" + id + "/frames";
  // Creation.
  ExpectError(Send("platform", "POST", "/v1/streams", "application/json", R"({"window":0})"), 400,
              "invalid_argument");
  EXPECT_EQ(ParseJson(Send("platform", "POST", "/v1/streams", "application/json",
                           R"({"radius":32})")
                          .body)
                .at("error")
                .at("message"),
            "radius must be an integer 0..31");
  ExpectError(Send("platform", "POST", "/v1/streams", "text/plain", "{}"), 415,
              "unsupported_format");
  // A platform key may not narrow the radius or lower the quality gate (a
  // stream would tell it a reference's distance by bisection); a lab key may.
  HttpResponse narrowed =
      Send("platform", "POST", "/v1/streams", "application/json", R"({"radius":4})");
  ExpectError(narrowed, 403, "forbidden");
  EXPECT_EQ(ParseJson(narrowed.body).at("error").at("message"), "only lab keys may set the radius");
  HttpResponse lowered =
      Send("platform", "POST", "/v1/streams", "application/json", R"({"quality_min":5})");
  ExpectError(lowered, 403, "forbidden");
  EXPECT_EQ(ParseJson(lowered.body).at("error").at("message"),
            "only lab keys may set quality_min under the server's (50)");
  HttpResponse lab = Send("lab", "POST", "/v1/streams", "application/json",
                          R"({"radius":4,"quality_min":5})");
  ASSERT_EQ(lab.status, 201) << lab.body;
  EXPECT_EQ(ParseJson(lab.body).at("policy").at("radius"), 4);
  EXPECT_EQ(ParseJson(lab.body).at("policy").at("quality_min"), 5);
  ExpectError(Send("platform", "POST", "/v1/streams", "application/json",
                   R"({"label":")" + std::string(16 * 1024, 'a') + R"("})"),
              413, "too_large");
  ExpectError(Send("", "POST", "/v1/streams", "application/json", "{}"), 401, "unauthenticated");
  ExpectError(Send("operator", "POST", "/v1/streams", "application/json", "{}"), 403,
              "forbidden");
  ExpectError(Send("auditor", "GET", "/v1/streams/" + id), 403, "forbidden");
  ExpectError(Send("platform", "PUT", "/v1/streams/" + id), 405, "method_not_allowed");
  // Frames.
  ExpectError(Send("platform", "GET", "/v1/streams/0123456789abcdef0123456789abcdef"), 404,
              "not_found");
  EXPECT_EQ(Event(SendImage("platform", frames + "?t=100", Picture(kBridge))).at("frame"), 0);
  ExpectError(SendImage("platform", frames + "?t=99", Picture(kBridge)), 400, "out_of_order");
  ExpectError(SendImage("platform", frames + "?t=-1", Picture(kBridge)), 400, "invalid_argument");
  ExpectError(SendImage("platform", frames + "?t=100&x=1", Picture(kBridge)), 400,
              "invalid_argument");
  std::vector<uint8_t> broken = Picture(kBridge);
  broken.resize(broken.size() / 3);
  ExpectError(SendImage("platform", frames + "?t=101", broken), 422, "corrupt_data");
  ExpectError(SendImage("platform", frames + "?t=102", {'h', 'i'}, "image/jpeg"), 415,
              "unsupported_format");
  ExpectError(Send("platform", "POST", frames, "text/plain", "hi"), 415, "unsupported_format");
  ExpectError(Send("platform", "POST", frames, "application/json", R"({"pdq":"00"})"), 400,
              "invalid_argument");
  ExpectError(Send("platform", "POST", frames, "application/json",
                   R"({"pdq":")" + ReferencePdq(kBridge) + R"(")" + std::string(16 * 1024, ' ') +
                       "}"),
              413, "too_large");
  ExpectError(Send("platform", "POST", frames, "application/json", R"({"pdq":")" +
                   ReferencePdq(kBridge) + R"(","colour":1})"),
              400, "invalid_argument");
  // The WebSocket route without an upgrade.
  const HttpResponse plain_get = Send("platform", "GET", "/v1/streams/" + id + "/ws");
  ExpectError(plain_get, 426, "upgrade_required");
  // RFC 9110 section 15.5.22: a 426 names the protocol to upgrade to.
  EXPECT_EQ(plain_get.Header("Upgrade"), "websocket");
  EXPECT_EQ(plain_get.Header("Connection"), "upgrade");
  EXPECT_EQ(plain_get.Header("Sec-WebSocket-Version"), "13");
  // The frames the server took, and the out-of-order one it did not count.
  const json::value state = ParseJson(Send("platform", "GET", "/v1/streams/" + id).body);
  EXPECT_EQ(state.at("frames").at("received"), 3);
  EXPECT_EQ(state.at("frames").at("hashed"), 1);
}

TEST_F(StreamApiTest, StreamsPerKeyAndInAllAreLimitedAndPrivateToTheirKey) {
  config.streams_max_per_key = 2;
  config.streams_max_total = 3;
  StartServer();
  // A key's sessions, as GET /v1/streams lists them: each as GET
  // /v1/streams/{id} gives it, oldest first.
  auto listed = [&](const std::string& key, const std::vector<std::string>& ids) {
    HttpResponse list = Send(key, "GET", "/v1/streams");
    EXPECT_EQ(list.status, 200) << list.body;
    json::array expected;
    for (const std::string& id : ids) {
      HttpResponse one = Send(key, "GET", "/v1/streams/" + id);
      EXPECT_EQ(one.status, 200) << one.body;
      expected.push_back(ParseJson(one.body));
    }
    EXPECT_EQ(ParseJson(list.body), json::value(json::object{{"streams", expected}})) << key;
  };
  listed("platform", {});
  const std::string a = Open("platform", R"({"label":"first"})");
  const std::string b = Open("platform", "");
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  listed("platform", {a, b});
  HttpResponse third = Send("platform", "POST", "/v1/streams", "application/json", "{}");
  ExpectError(third, 429, "too_many_streams");
  EXPECT_EQ(ParseJson(third.body).at("error").at("message"),
            "this key has 2 streams open (streams.max_per_key); end one first (GET /v1/streams "
            "lists them)");
  EXPECT_EQ(third.Header("Retry-After"), "60");
  listed("lab", {});
  const std::string c = Open("lab", "{}");
  ASSERT_FALSE(c.empty());
  ExpectError(Send("lab", "POST", "/v1/streams", "application/json", "{}"), 429,
              "too_many_streams");

  // Another key's stream does not exist for the lab key.
  ExpectError(Send("lab", "GET", "/v1/streams/" + a), 404, "not_found");
  ExpectError(Frame("lab", a, 0, Picture(kBridge)), 404, "not_found");
  ExpectError(Send("lab", "DELETE", "/v1/streams/" + a), 404, "not_found");
  EXPECT_EQ(Send("platform", "GET", "/v1/streams/" + a).status, 200);

  listed("lab", {c});
  listed("platform", {a, b});
  ExpectError(Send("operator", "GET", "/v1/streams"), 403, "forbidden");
  ExpectError(Send("", "GET", "/v1/streams"), 401, "unauthenticated");
  ExpectError(Send("platform", "GET", "/v1/streams?label=first"), 400, "invalid_argument");

  ASSERT_EQ(Send("platform", "DELETE", "/v1/streams/" + a).status, 200);
  const std::string d = Open("platform", "{}");
  EXPECT_FALSE(d.empty());
  listed("platform", {b, d});
  const std::string metrics = Send("operator", "GET", "/metrics").body;
  EXPECT_NE(metrics.find("\nbantay_streams_active 3\n"), std::string::npos) << metrics;
}

TEST_F(StreamApiTest, IdleStreamsExpire) {
  config.streams_idle_timeout_s = 1;
  StartServer();
  const std::string idle = Open("platform", "{}");
  const std::string busy = Open("platform", R"({"sample_interval_ms":0})");
  ASSERT_FALSE(idle.empty());
  ASSERT_FALSE(busy.empty());
  const auto start = std::chrono::steady_clock::now();
  // Frames keep `busy` alive; `idle` goes within the timeout plus the
  // sweep's second.
  int status = 200;
  for (int t = 0; status == 200 && std::chrono::steady_clock::now() - start < std::chrono::seconds(4);
       ++t) {
    EXPECT_EQ(Send("platform", "POST", "/v1/streams/" + busy + "/frames?t=" + std::to_string(t),
                   "application/json", R"({"pdq":")" + ReferencePdq(kBridge) + R"("})")
                  .status,
              200);
    status = Send("platform", "GET", "/v1/streams/" + idle).status;
    // Listing is no activity either.
    EXPECT_EQ(Send("platform", "GET", "/v1/streams").status, 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(status, 404);
  const json::value listed = ParseJson(Send("platform", "GET", "/v1/streams").body);
  ASSERT_EQ(listed.at("streams").as_array().size(), 1u);
  EXPECT_EQ(listed.at("streams").at(0).at("id"), json::value(busy));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(seconds, 0.9);
  EXPECT_LE(seconds, 3.5);
  EXPECT_EQ(Send("platform", "GET", "/v1/streams/" + busy).status, 200);
}

// A receiver of `count` webhook deliveries, one after the other, on
// 127.0.0.1 (plain HTTP), answering each 200; it waits at most 10 s. With
// `listen_after`, its port refuses connections until then.
class WebhookReceiver {
 public:
  explicit WebhookReceiver(size_t count = 1,
                           std::chrono::milliseconds listen_after = std::chrono::milliseconds(0))
      : count_(count), acceptor_(ioc_), listen_timer_(ioc_) {
    acceptor_.open(boost::asio::ip::tcp::v4());
    acceptor_.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
    listen_timer_.expires_after(listen_after);
    listen_timer_.async_wait([this](boost::system::error_code) {
      acceptor_.listen();
      Accept();
    });
    thread_ = std::thread([this] { ioc_.run_for(std::chrono::seconds(10)); });
  }
  ~WebhookReceiver() { Join(); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  // After Join.
  bool received() const { return requests_.size() == count_; }
  const boost::beast::http::request<boost::beast::http::string_body>& request(
      size_t i = 0) const {
    return requests_.at(i);
  }

 private:
  void Accept() {
    acceptor_.async_accept([this](boost::system::error_code ec,
                                  boost::asio::ip::tcp::socket socket) {
      if (ec) return;
      boost::beast::flat_buffer buffer;
      boost::beast::http::request<boost::beast::http::string_body> request;
      boost::beast::http::read(socket, buffer, request, ec);
      if (ec) return;
      boost::beast::http::response<boost::beast::http::string_body> response(
          boost::beast::http::status::ok, 11);
      response.body() = "ok";
      response.prepare_payload();
      boost::beast::http::write(socket, response, ec);
      requests_.push_back(std::move(request));
      if (requests_.size() < count_) {
        Accept();
      } else {
        ioc_.stop();
      }
    });
  }

  const size_t count_;
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer listen_timer_;
  std::vector<boost::beast::http::request<boost::beast::http::string_body>> requests_;
  std::thread thread_;
};

TEST_F(StreamApiTest, AVerdictChangeIsPostedToTheKeysWebhookSigned) {
  WebhookReceiver receiver;
  // At the end, the session's end waits for a receiver that is gone: the
  // server's stop gives it this long.
  config.shutdown_grace_ms = 500;
  const std::string secret = "a webhook secret of the platform";
  SetPlatformWebhook(receiver.port(), "/hook?k=1", secret);
  StartServer();
  const std::string id = Open("platform", R"({"sample_interval_ms":0,"window":1,"k":1})");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(SendListedHash(id, 40), "match");
  receiver.Join();
  ASSERT_TRUE(receiver.received());
  const auto& request = receiver.request();
  EXPECT_EQ(request.method(), boost::beast::http::verb::post);
  EXPECT_EQ(request.target(), "/hook?k=1");
  EXPECT_EQ(request[boost::beast::http::field::content_type], "application/json");
  const std::string timestamp(request[models::kWebhookTimestampHeader]);
  const std::string signature(request[models::kWebhookSignatureHeader]);
  const std::string event_id(request[models::kWebhookEventIdHeader]);
  EXPECT_EQ(event_id.size(), 32u);
  Result<std::chrono::sys_seconds> verified = models::VerifyWebhook(
      secret, timestamp, signature, request.body(), std::chrono::system_clock::now());
  EXPECT_TRUE(verified.ok()) << verified.error().ToString();
  EXPECT_FALSE(models::VerifyWebhook("another secret", timestamp, signature, request.body(),
                                     std::chrono::system_clock::now())
                   .ok());
  // The body is the verdict event, as the state reads after it.
  json::object body = ParseJson(request.body()).as_object();
  json::object state = ParseJson(Send("platform", "GET", "/v1/streams/" + id).body).as_object();
  EXPECT_EQ(body.at("type"), "verdict");
  EXPECT_EQ(body.at("stream"), "match");
  EXPECT_EQ(body.at("previous"), "clean");
  EXPECT_EQ(body.at("first_match_t"), 40);
  body.erase("updated_at");
  state.erase("updated_at");
  EXPECT_EQ(body, state);
  EXPECT_EQ(request.body().find(ReferencePdq(kBridge)), std::string::npos);
  // Counted as delivered once the answer is read.
  std::string metrics;
  for (int i = 0; i < 100; ++i) {
    metrics = Send("operator", "GET", "/metrics").body;
    if (metrics.find("bantay_webhook_events_total{outcome=\"delivered\"} 1\n") !=
        std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(metrics.find("bantay_webhook_events_total{outcome=\"delivered\"} 1\n"),
            std::string::npos)
      << metrics;
}

// A session whose verdict changed is told to the webhook when it ends
// (deleted, or expired), with its final state; one that stayed clean is
// not.
TEST_F(StreamApiTest, TheEndOfASessionWhoseVerdictChangedIsPosted) {
  WebhookReceiver receiver(4);
  SetPlatformWebhook(receiver.port(), "/hook", "a webhook secret of the platform");
  config.streams_idle_timeout_s = 1;
  StartServer();
  const std::string policy = R"({"sample_interval_ms":0,"window":1,"k":1})";
  const std::string clean = Open("platform", policy);
  const std::string deleted = Open("platform", policy);
  const std::string expired = Open("platform", policy);
  ASSERT_FALSE(clean.empty() || deleted.empty() || expired.empty());
  EXPECT_EQ(Send("platform", "DELETE", "/v1/streams/" + clean).status, 200);
  for (const std::string& id : {deleted, expired}) EXPECT_EQ(SendListedHash(id, 40), "match");
  const HttpResponse final_state = Send("platform", "DELETE", "/v1/streams/" + deleted);
  ASSERT_EQ(final_state.status, 200);
  receiver.Join();  // `expired` goes within the timeout plus the sweep's second
  ASSERT_TRUE(receiver.received());
  std::map<std::string, json::object> ended;  // by id
  std::multiset<std::string> verdicts;        // ids
  for (size_t i = 0; i < 4; ++i) {
    json::object body = ParseJson(receiver.request(i).body()).as_object();
    const std::string id(body.at("id").as_string());
    if (body.at("type") == "verdict") {
      verdicts.insert(id);
    } else {
      EXPECT_EQ(body.at("type"), "ended");
      ended.emplace(id, std::move(body));
    }
  }
  EXPECT_EQ(verdicts, (std::multiset<std::string>{deleted, expired}));
  ASSERT_EQ(ended.size(), 2u);
  ASSERT_EQ(ended.count(deleted), 1u);
  ASSERT_EQ(ended.count(expired), 1u);
  EXPECT_EQ(ended[expired].at("reason"), "expired");
  EXPECT_EQ(ended[expired].at("stream"), "match");
  EXPECT_EQ(ended[expired].at("frames").at("matched"), 1);
  // The final state as DELETE answered it, with "reason" for "previous".
  json::object answered = ParseJson(final_state.body).as_object();
  EXPECT_EQ(answered.at("type"), "verdict");
  answered.erase("previous");
  answered["type"] = "ended";
  answered["reason"] = "deleted";
  EXPECT_EQ(ended[deleted], answered);
}

// A server that stops tells the webhook the end of its sessions whose
// verdict changed, within its grace period, before it returns from Wait:
// here the receiver refuses connections for 0.5 s, so both events wait for
// a retry (after 1 s) in the sender's queue when the server stops.
TEST_F(StreamApiTest, AServerThatStopsTellsTheEndOfItsSessions) {
  WebhookReceiver receiver(2, std::chrono::milliseconds(500));
  SetPlatformWebhook(receiver.port(), "/hook", "a webhook secret of the platform");
  StartServer();
  const std::string id = Open("platform", R"({"sample_interval_ms":0,"window":1,"k":1})");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(SendListedHash(id, 0), "match");
  StopServer();
  receiver.Join();
  ASSERT_TRUE(receiver.received());
  std::multiset<std::string> kinds;
  for (size_t i = 0; i < 2; ++i) {
    const json::value body = ParseJson(receiver.request(i).body());
    EXPECT_EQ(body.at("id"), json::value(id));
    kinds.insert(std::string(body.at("type").as_string()) +
                 (body.as_object().contains("reason")
                      ? ":" + std::string(body.at("reason").as_string())
                      : ""));
  }
  EXPECT_EQ(kinds, (std::multiset<std::string>{"verdict", "ended:shutdown"}));
}

TEST_F(StreamApiTest, AnUnreadableWebhookSecretStopsTheStart) {
  config.api_keys[0].webhook_url = "https://hooks.example/x";
  config.api_keys[0].webhook_secret_file = dir_.path() + "/missing.secret";
  config.api_keys[0].role = Role::kPlatform;
  Result<std::unique_ptr<Server>> server = Server::Start(config);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(server.error().message(), "api key " + config.api_keys[0].id +
                                          ": webhook_secret_file " + dir_.path() +
                                          "/missing.secret: No such file or directory");
}

}  // namespace
}  // namespace bantay::server::testing
