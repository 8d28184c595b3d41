// The integration tests' fixture: a real bantay-server (the server library,
// in process) on 127.0.0.1:0 with TLS (a self-signed certificate made by the
// openssl command, tests/client/tls_test_util.h), a real store (a SQLite file, or a database of the shared
// PostgreSQL test cluster) holding benign demo entries, an API key for each
// role, and clients from the client library.
#ifndef BANTAY_TESTS_SERVER_SERVER_TEST_UTIL_H_
#define BANTAY_TESTS_SERVER_SERVER_TEST_UTIL_H_

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include "bantay/client/http_client.h"
#include "bantay/matcher/crypto.h"
#include "bantay/matcher/store.h"
#include "bantay/models/digest.h"
#include "bantay/models/hash256.h"
#include "bantay/server/config.h"
#include "bantay/server/server.h"
#include "pg_cluster.h"
#include "test_images.h"
#include "tls_test_util.h"

namespace bantay::server::testing {

namespace json = boost::json;

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline json::value ParseJson(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  EXPECT_FALSE(ec) << "not JSON: " << text;
  return v;
}

// The PDQ hash (hex) of a reference picture, as tests/data/pdq/expected-pdq.csv has it.
inline std::string ReferencePdq(const std::string& relative_path) {
  auto rows = bantay::testing::ReadExpectedCsv("pdq/expected-pdq.csv");
  return rows.at(relative_path).at(0);
}

// The hash with its first `bits` bits (0..256) inverted: at that distance.
inline std::string FlipBits(const std::string& hex, int bits) {
  std::vector<uint8_t> bytes = bantay::testing::FromHex(hex);
  for (int k = 0; k < bits; ++k) bytes[k / 8] ^= static_cast<uint8_t>(1u << (k % 8));
  return models::ToHex(bytes);
}

// Sends this process's standard error, where the server logs, to a file
// while it lives, so that a test can wait for a log line; then copies what
// was logged to the real standard error (the test's output).
class StderrToFile {
 public:
  explicit StderrToFile(std::string path) : path_(std::move(path)) {
    std::fflush(stderr);
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0) << path_;
    saved_ = ::dup(2);
    if (fd >= 0 && saved_ >= 0) ::dup2(fd, 2);
    if (fd >= 0) ::close(fd);
  }
  ~StderrToFile() {
    std::fflush(stderr);
    if (saved_ >= 0) {
      ::dup2(saved_, 2);
      ::close(saved_);
    }
    std::fputs(Text().c_str(), stderr);
  }
  StderrToFile(const StderrToFile&) = delete;
  StderrToFile& operator=(const StderrToFile&) = delete;

  std::string Text() const { return ReadText(path_); }
  // Waits (10 s at most) for the log to hold `text` after what was logged
  // before the last Skip().
  bool Says(const std::string& text) const {
    for (int i = 0; i < 1000; ++i) {
      const std::string logged = Text();
      if (logged.find(text, std::min(skipped_, logged.size())) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  void Skip() { skipped_ = Text().size(); }

 private:
  std::string path_;
  int saved_ = -1;
  size_t skipped_ = 0;
};

struct RoleKey {
  std::string id;
  std::string key;
};

// Runs on `context` the asynchronous read that `start` begins (it is given
// the completion handler) for at most 10 s; after that `cancel` stops it and
// the result is boost::beast::error::timeout. For tests that read what the
// server should send: a missing answer fails them instead of hanging them
// (a blocking read cannot be bounded: SO_RCVTIMEO does not do it, since
// after its EAGAIN asio's blocking read polls without a time limit).
template <typename Start, typename Cancel>
boost::system::error_code RunWithin(boost::asio::io_context& context, Start start,
                                    Cancel cancel) {
  boost::system::error_code ec;
  bool done = false;
  start([&](boost::system::error_code e, size_t) {
    ec = e;
    done = true;
  });
  context.restart();
  context.run_for(std::chrono::seconds(10));
  if (!done) {
    cancel();
    context.restart();
    context.run();
    ec = boost::beast::error::timeout;
  }
  return ec;
}

// Brings up the store and the server. Tests change `config` in their
// SetUp before StartServer, or call it again after StopServer.
class ServerFixture {
 public:
  static constexpr const char* kBridge = "reg-test-input/dih/bridge-1-original.jpg";
  static constexpr const char* kBridgeRotated = "reg-test-input/dih/bridge-2-rotate-90.jpg";

  // `backend`: "sqlite" or "postgres".
  void SetUpStore(const std::string& backend) {
    const std::string& dir = dir_.path();
    if (backend == "sqlite") {
      store_url_ = "sqlite:" + dir + "/store.db";
    } else {
      std::vector<uint8_t> id(6);
      matcher::RandomBytes(id);
      store_url_ =
          bantay::testing::PgCluster::Shared().CreateDatabase("server_" + models::ToHex(id));
    }
    data_key_ = matcher::GenerateDataKey();
    ASSERT_TRUE(matcher::WriteDataKeyFile(dir + "/data.key", data_key_).ok());
    matcher::SigningKey signer = matcher::SigningKey::Generate();
    public_key_ = signer.public_key();
    ASSERT_TRUE(matcher::WriteSecretFile(dir + "/signing.pem", signer.ToPem()).ok());
    ASSERT_FALSE(bantay::testing::MakeSelfSignedCertificate(dir, "server").cert.empty());

    matcher::StoreKeys keys;
    keys.data_keys = {data_key_};
    keys.signing_key = std::move(signer);
    Result<std::unique_ptr<matcher::Store>> store =
        matcher::Store::Init(store_url_, std::move(keys), {"setup", "test"});
    ASSERT_TRUE(store.ok()) << store.error().ToString();
    std::vector<matcher::NewEntry> entries;
    auto add = [&](std::string list, matcher::SignalType type,
                   const std::array<uint8_t, 32>& value, std::string category,
                   std::string reference) {
      matcher::NewEntry e;
      e.list = std::move(list);
      e.type = type;
      e.value = value;
      e.category = std::move(category);
      e.reference = std::move(reference);
      entries.push_back(std::move(e));
    };
    add("demo", matcher::SignalType::kPdq,
        models::Hash256::FromHex(ReferencePdq(kBridge))->bytes(), "test", "case-1");
    std::array<uint8_t, 32> md5{};
    const models::Md5Digest md5_digest = models::Md5(Bytes("known md5 text"));
    std::copy(md5_digest.begin(), md5_digest.end(), md5.begin());
    add("demo", matcher::SignalType::kMd5, md5, "test", "case-2");
    add("other", matcher::SignalType::kSha256, models::Sha256(Bytes("known sha256 text")),
        "other-cat", "case-3");
    Result<uint64_t> version = (*store)->AddEntries(entries, {"setup", "test"}, "import");
    ASSERT_TRUE(version.ok()) << version.error().ToString();
    setup_version_ = *version;

    config.listen = "127.0.0.1";
    config.port = 0;
    config.io_threads = 1;
    config.compute_threads = 2;
    config.tls_cert = dir + "/server.pem";
    config.tls_key = dir + "/server.key";
    config.store_url = store_url_;
    config.data_key_file = dir + "/data.key";
    config.signing_key_file = dir + "/signing.pem";
    config.poll_interval_ms = 50;
    config.access_log = dir + "/access.log";
    config.max_body_bytes = 4 * 1024 * 1024;
    config.read_timeout_ms = 2'000;
    config.idle_timeout_ms = 5'000;
    for (Role role : {Role::kPlatform, Role::kLab, Role::kOperator, Role::kAuditor}) {
      AddKey(std::string(RoleName(role)), role, 1000.0, 1000.0);
    }
  }

  // Adds an API key to the configuration and remembers its text.
  void AddKey(const std::string& id, Role role, double rate, double burst) {
    ApiKeyConfig key;
    key.id = id;
    key.role = role;
    key.rate = rate;
    key.burst = burst;
    const std::string text = NewApiKey();
    key.sha256 = ApiKeyDigest(text);
    config.api_keys.push_back(key);
    keys_[id] = text;
  }

  void StartServer() {
    Result<std::unique_ptr<Server>> server = Server::Start(config);
    ASSERT_TRUE(server.ok()) << server.error().ToString();
    server_ = std::move(*server);
    ASSERT_TRUE(server_->WaitUntilReady());
  }

  void StopServer() {
    if (server_ == nullptr) return;
    server_->Shutdown();
    server_->Wait();
    server_.reset();
  }

  std::string Url() const { return "https://127.0.0.1:" + std::to_string(server_->port()); }

  // A client with the key `key_id` ("" for none), trusting the server's
  // certificate.
  std::unique_ptr<client::HttpClient> Client(const std::string& key_id) {
    client::ClientOptions options;
    options.url = Url();
    options.ca_file = dir_.path() + "/server.pem";
    if (!key_id.empty()) options.api_key = keys_.at(key_id);
    Result<std::unique_ptr<client::HttpClient>> c = client::HttpClient::Connect(options);
    EXPECT_TRUE(c.ok()) << c.error().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // One request on a fresh connection with the key `key` ("" for none); a
  // request that could not be made fails the test and answers status 0.
  client::HttpResponse Send(const std::string& key, std::string_view method,
                            std::string_view target, std::string_view type = {},
                            std::string_view body = {}) {
    std::unique_ptr<client::HttpClient> c = Client(key);
    if (c == nullptr) return {};
    Result<client::HttpResponse> r = c->Send(method, target, type, body);
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? std::move(*r) : client::HttpResponse{};
  }

  // A TLS connection to the server without the client library, for bytes
  // it would not send (pipelined, trickled, malformed).
  std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> RawConnection() {
    namespace ssl = boost::asio::ssl;
    if (!raw_tls_) {
      raw_tls_.emplace(ssl::context::tls_client);
      raw_tls_->load_verify_file(dir_.path() + "/server.pem");
    }
    auto stream =
        std::make_unique<ssl::stream<boost::asio::ip::tcp::socket>>(raw_ioc_, *raw_tls_);
    stream->next_layer().connect({boost::asio::ip::make_address("127.0.0.1"), server_->port()});
    stream->handshake(ssl::stream_base::client);
    return stream;
  }

  // Reads one HTTP message (a response, or a response parser) from a
  // RawConnection; boost::beast::error::timeout after 10 s, so that a
  // missing answer fails the test instead of hanging it.
  template <typename Message>
  boost::system::error_code ReadWithin(
      boost::asio::ssl::stream<boost::asio::ip::tcp::socket>& stream,
      boost::beast::flat_buffer& buffer, Message& message) {
    return RunWithin(
        raw_ioc_,
        [&](auto handler) { boost::beast::http::async_read(stream, buffer, message, handler); },
        [&] { stream.next_layer().cancel(); });
  }

  static std::span<const uint8_t> Bytes(std::string_view text) {
    return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
  }

  ServerConfig config;
  bantay::testing::TempDir dir_;
  std::string store_url_;
  matcher::DataKey data_key_;
  matcher::PublicKey public_key_{};
  uint64_t setup_version_ = 0;
  std::map<std::string, std::string> keys_;
  std::unique_ptr<Server> server_;

 private:
  boost::asio::io_context raw_ioc_;
  // Made on first use: the certificate is written by SetUpStore.
  std::optional<boost::asio::ssl::context> raw_tls_;
};

}  // namespace bantay::server::testing

#endif  // BANTAY_TESTS_SERVER_SERVER_TEST_UTIL_H_
