#include "bantay/server/config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bantay/models/digest.h"
#include "test_images.h"

namespace bantay::server {
namespace {

// Every scalar key of the file, in the order of config.h.
const std::vector<std::string> kAllKeys = {
    "server.listen",
    "server.port",
    "server.io_threads",
    "server.compute_threads",
    "server.queue_limit",
    "server.admin_queue_limit",
    "server.allow_plain_http",
    "server.metrics_public",
    "server.shutdown_grace_ms",
    "server.trusted_proxies",
    "server.proxy_header",
    "tls.cert",
    "tls.key",
    "tls.client_ca",
    "limits.max_body_bytes",
    "limits.max_header_bytes",
    "limits.max_pixels",
    "limits.max_jpeg_scans",
    "limits.read_timeout_ms",
    "limits.idle_timeout_ms",
    "limits.max_connections",
    "limits.max_batch_items",
    "match.radius",
    "match.min_quality",
    "store.url",
    "store.data_key_file",
    "store.extra_data_key_file",
    "store.signing_key_file",
    "store.public_key_file",
    "store.verify_on_load",
    "store.poll_interval_ms",
    "store.stale_after_ms",
    "store.corrupt_retry_ms",
    "store.min_version",
    "store.pin_file",
    "log.access_log",
    "streams.max_per_key",
    "streams.max_total",
    "streams.idle_timeout_s",
    "streams.allow_plain_http_webhooks",
};

std::string EnvName(const std::string& key) {
  std::string name = "BANTAY_";
  for (char c : key)
    name += c == '.' ? '_' : static_cast<char>(std::toupper(c));
  return name;
}

std::array<uint8_t, 32> Digest(uint8_t fill) {
  std::array<uint8_t, 32> d;
  d.fill(fill);
  return d;
}

// A configuration that passes Validate(), to be broken one value at a time.
ServerConfig ValidConfig() {
  ServerConfig c;
  c.tls_cert = "/etc/bantay/server.crt";
  c.tls_key = "/etc/bantay/server.key";
  c.store_url = "sqlite:/var/lib/bantay/store.db";
  c.api_keys.push_back({"ops", Role::kOperator, Digest(1), 10.0, 20.0, "", ""});
  c.api_keys.push_back(
      {"platform-1", Role::kPlatform, Digest(2), 100.0, 200.0, "", ""});
  return c;
}

void ExpectInvalid(const Status& status, const std::string& message) {
  ASSERT_FALSE(status.ok()) << "expected: " << message;
  EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(status.error().message(), message);
}

template <typename T>
void ExpectInvalid(const Result<T>& result, const std::string& message) {
  ASSERT_FALSE(result.ok()) << "expected: " << message;
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(result.error().message(), message);
}

// A getenv over a map, so that tests never touch the process environment.
std::function<const char*(const char*)> Env(
    const std::map<std::string, std::string>* vars) {
  return [vars](const char* name) -> const char* {
    auto it = vars->find(name);
    return it == vars->end() ? nullptr : it->second.c_str();
  };
}

const std::map<std::string, std::string> kNoEnv;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string ExamplePath() {
  return BANTAY_TEST_DATA "/../../deploy/bantay-server.example.toml";
}

TEST(RoleTest, NamesRoundTrip) {
  EXPECT_EQ(RoleName(Role::kPlatform), "platform");
  EXPECT_EQ(RoleName(Role::kLab), "lab");
  EXPECT_EQ(RoleName(Role::kOperator), "operator");
  EXPECT_EQ(RoleName(Role::kAuditor), "auditor");
  for (Role role :
       {Role::kPlatform, Role::kLab, Role::kOperator, Role::kAuditor}) {
    Result<Role> parsed = ParseRole(RoleName(role));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, role);
  }
}

TEST(RoleTest, UnknownRole) {
  ExpectInvalid(ParseRole("admin"),
                "unknown role \"admin\" (platform, lab, operator or auditor)");
  ExpectInvalid(
      ParseRole("Platform"),
      "unknown role \"Platform\" (platform, lab, operator or auditor)");
  ExpectInvalid(ParseRole(""),
                "unknown role \"\" (platform, lab, operator or auditor)");
}

TEST(ValidateTest, ValidConfigPasses) {
  Status status = ValidConfig().Validate();
  EXPECT_TRUE(status.ok()) << status.error().message();
}

TEST(ValidateTest, DefaultsNeedTlsAndStore) {
  ServerConfig c;
  ExpectInvalid(c.Validate(),
                "tls.cert and tls.key are required unless "
                "server.allow_plain_http = true");
  c.allow_plain_http = true;
  ExpectInvalid(c.Validate(), "store.url is required");
  c.store_url = "sqlite:x.db";
  EXPECT_TRUE(c.Validate().ok());
}

struct Case {
  const char* name;
  std::function<void(ServerConfig*)> change;
  const char* message;  // nullptr: still valid
};

void RunCases(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ServerConfig config = ValidConfig();
    c.change(&config);
    Status status = config.Validate();
    if (c.message == nullptr) {
      EXPECT_TRUE(status.ok()) << status.error().message();
    } else {
      ExpectInvalid(status, c.message);
    }
  }
}

TEST(ValidateTest, ServerSection) {
  RunCases({
      {"listen empty", [](ServerConfig* c) { c->listen = ""; },
       "server.listen must not be empty"},
      {"port 0", [](ServerConfig* c) { c->port = 0; }, nullptr},
      {"port 65535", [](ServerConfig* c) { c->port = 65535; }, nullptr},
      {"io 0", [](ServerConfig* c) { c->io_threads = 0; },
       "server.io_threads must be between 1 and 64"},
      {"io 1", [](ServerConfig* c) { c->io_threads = 1; }, nullptr},
      {"io 64", [](ServerConfig* c) { c->io_threads = 64; }, nullptr},
      {"io 65", [](ServerConfig* c) { c->io_threads = 65; },
       "server.io_threads must be between 1 and 64"},
      {"compute -1", [](ServerConfig* c) { c->compute_threads = -1; },
       "server.compute_threads must be between 0 and 256"},
      {"compute 0", [](ServerConfig* c) { c->compute_threads = 0; }, nullptr},
      {"compute 256", [](ServerConfig* c) { c->compute_threads = 256; },
       nullptr},
      {"compute 257", [](ServerConfig* c) { c->compute_threads = 257; },
       "server.compute_threads must be between 0 and 256"},
      {"queue 0", [](ServerConfig* c) { c->queue_limit = 0; },
       "server.queue_limit must be at least 1"},
      {"queue 1", [](ServerConfig* c) { c->queue_limit = 1; }, nullptr},
      {"admin queue 0", [](ServerConfig* c) { c->admin_queue_limit = 0; },
       "server.admin_queue_limit must be at least 1"},
      {"admin queue 1", [](ServerConfig* c) { c->admin_queue_limit = 1; },
       nullptr},
      {"grace -1", [](ServerConfig* c) { c->shutdown_grace_ms = -1; },
       "server.shutdown_grace_ms must not be negative"},
      {"grace 0", [](ServerConfig* c) { c->shutdown_grace_ms = 0; }, nullptr},
      {"proxies", [](ServerConfig* c) { c->trusted_proxies = "127.0.0.1, 10.0.0.0/8 ::1"; },
       nullptr},
      {"proxy host name", [](ServerConfig* c) { c->trusted_proxies = "127.0.0.1, lb.example"; },
       "server.trusted_proxies: \"lb.example\" is not an IP address or network (such as "
       "10.0.0.0/8 or ::1)"},
      {"proxy network", [](ServerConfig* c) { c->trusted_proxies = "10.0.0.0/40"; },
       "server.trusted_proxies: \"10.0.0.0/40\" has no prefix length between 0 and 32"},
      {"forwarded", [](ServerConfig* c) { c->proxy_header = "Forwarded"; }, nullptr},
      {"x-real-ip", [](ServerConfig* c) { c->proxy_header = "x-real-ip"; },
       "server.proxy_header: the proxy header is X-Forwarded-For or Forwarded (got "
       "\"x-real-ip\")"},
  });
}

TEST(ValidateTest, TlsSection) {
  RunCases({
      {"no cert, no key",
       [](ServerConfig* c) {
         c->tls_cert.clear();
         c->tls_key.clear();
       },
       "tls.cert and tls.key are required unless server.allow_plain_http = "
       "true"},
      {"plain http",
       [](ServerConfig* c) {
         c->tls_cert.clear();
         c->tls_key.clear();
         c->allow_plain_http = true;
       },
       nullptr},
      {"plain http allowed but TLS configured",
       [](ServerConfig* c) { c->allow_plain_http = true; }, nullptr},
      {"cert only", [](ServerConfig* c) { c->tls_key.clear(); },
       "tls.key is required with tls.cert"},
      {"cert only, plain allowed",
       [](ServerConfig* c) {
         c->tls_key.clear();
         c->allow_plain_http = true;
       },
       "tls.key is required with tls.cert"},
      {"key only", [](ServerConfig* c) { c->tls_cert.clear(); },
       "tls.cert is required with tls.key"},
      {"client ca with TLS",
       [](ServerConfig* c) { c->tls_client_ca = "/etc/bantay/ca.pem"; },
       nullptr},
      {"client ca without TLS",
       [](ServerConfig* c) {
         c->tls_cert.clear();
         c->tls_key.clear();
         c->allow_plain_http = true;
         c->tls_client_ca = "/etc/bantay/ca.pem";
       },
       "tls.client_ca requires TLS (tls.cert and tls.key)"},
  });
}

TEST(ValidateTest, LimitsSection) {
  RunCases({
      {"body", [](ServerConfig* c) { c->max_body_bytes = 0; },
       "limits.max_body_bytes must be positive"},
      {"header", [](ServerConfig* c) { c->max_header_bytes = 0; },
       "limits.max_header_bytes must be positive"},
      {"pixels 0", [](ServerConfig* c) { c->max_pixels = 0; },
       "limits.max_pixels must be positive"},
      {"pixels -1", [](ServerConfig* c) { c->max_pixels = -1; },
       "limits.max_pixels must be positive"},
      {"scans 0", [](ServerConfig* c) { c->max_jpeg_scans = 0; },
       "limits.max_jpeg_scans must be positive"},
      {"read", [](ServerConfig* c) { c->read_timeout_ms = 0; },
       "limits.read_timeout_ms must be positive"},
      {"idle", [](ServerConfig* c) { c->idle_timeout_ms = -5; },
       "limits.idle_timeout_ms must be positive"},
      {"connections", [](ServerConfig* c) { c->max_connections = 0; },
       "limits.max_connections must be positive"},
      {"batch", [](ServerConfig* c) { c->max_batch_items = 0; },
       "limits.max_batch_items must be positive"},
      {"all at 1",
       [](ServerConfig* c) {
         c->max_body_bytes = c->max_header_bytes = c->max_connections =
             c->max_batch_items = 1;
         c->max_pixels = c->read_timeout_ms = c->idle_timeout_ms = 1;
         c->max_jpeg_scans = 1;
       },
       nullptr},
  });
}

TEST(ValidateTest, MatchAndStoreSections) {
  RunCases({
      {"radius -1", [](ServerConfig* c) { c->radius = -1; },
       "match.radius must be between 0 and 64"},
      {"radius 0", [](ServerConfig* c) { c->radius = 0; }, nullptr},
      {"radius 64", [](ServerConfig* c) { c->radius = 64; }, nullptr},
      {"radius 65", [](ServerConfig* c) { c->radius = 65; },
       "match.radius must be between 0 and 64"},
      {"quality -1", [](ServerConfig* c) { c->min_quality = -1; },
       "match.min_quality must be between 0 and 100"},
      {"quality 0", [](ServerConfig* c) { c->min_quality = 0; }, nullptr},
      {"quality 100", [](ServerConfig* c) { c->min_quality = 100; }, nullptr},
      {"quality 101", [](ServerConfig* c) { c->min_quality = 101; },
       "match.min_quality must be between 0 and 100"},
      {"no store", [](ServerConfig* c) { c->store_url.clear(); },
       "store.url is required"},
      {"poll 9", [](ServerConfig* c) { c->poll_interval_ms = 9; },
       "store.poll_interval_ms must be at least 10"},
      {"poll 10", [](ServerConfig* c) { c->poll_interval_ms = 10; }, nullptr},
      {"stale -1", [](ServerConfig* c) { c->stale_after_ms = -1; },
       "store.stale_after_ms must be at least 0"},
      {"stale 0", [](ServerConfig* c) { c->stale_after_ms = 0; }, nullptr},
      {"corrupt retry 9", [](ServerConfig* c) { c->corrupt_retry_ms = 9; },
       "store.corrupt_retry_ms must be between 10 and 86400000"},
      {"corrupt retry 10", [](ServerConfig* c) { c->corrupt_retry_ms = 10; }, nullptr},
      {"corrupt retry a day", [](ServerConfig* c) { c->corrupt_retry_ms = 86'400'000; },
       nullptr},
      {"corrupt retry over a day",
       [](ServerConfig* c) { c->corrupt_retry_ms = 86'400'001; },
       "store.corrupt_retry_ms must be between 10 and 86400000"},
      {"min version -1", [](ServerConfig* c) { c->min_version = -1; },
       "store.min_version must be at least 0"},
      {"min version 0", [](ServerConfig* c) { c->min_version = 0; }, nullptr},
      {"min version huge",
       [](ServerConfig* c) { c->min_version = std::numeric_limits<int64_t>::max(); }, nullptr},
  });
}

TEST(ValidateTest, ApiKeys) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  RunCases({
      {"no keys", [](ServerConfig* c) { c->api_keys.clear(); }, nullptr},
      {"empty id", [](ServerConfig* c) { c->api_keys[1].id = ""; },
       "api_keys[1].id must not be empty"},
      {"64-byte id",
       [](ServerConfig* c) { c->api_keys[1].id = std::string(64, 'a'); },
       nullptr},
      {"65-byte id",
       [](ServerConfig* c) { c->api_keys[1].id = std::string(65, 'a'); },
       "api_keys[1].id is longer than 64 bytes"},
      {"every allowed character",
       [](ServerConfig* c) { c->api_keys[1].id = "aZ09._:@-"; }, nullptr},
      {"space", [](ServerConfig* c) { c->api_keys[0].id = "ops key"; },
       "api_keys[0].id may only hold letters, digits and . _ : @ -"},
      {"newline", [](ServerConfig* c) { c->api_keys[0].id = "ops\n"; },
       "api_keys[0].id may only hold letters, digits and . _ : @ -"},
      {"quote", [](ServerConfig* c) { c->api_keys[0].id = "o\"ps"; },
       "api_keys[0].id may only hold letters, digits and . _ : @ -"},
      {"duplicate id", [](ServerConfig* c) { c->api_keys[1].id = "ops"; },
       "api_keys[1].id \"ops\" is used by another key"},
      {"duplicate digest",
       [](ServerConfig* c) { c->api_keys[1].sha256 = Digest(1); },
       "api_keys[1].sha256 is the digest of another key"},
      {"rate 0", [](ServerConfig* c) { c->api_keys[0].rate = 0; },
       "api_keys[0].rate must be positive and finite"},
      {"rate -1", [](ServerConfig* c) { c->api_keys[0].rate = -1; },
       "api_keys[0].rate must be positive and finite"},
      {"rate NaN", [nan](ServerConfig* c) { c->api_keys[0].rate = nan; },
       "api_keys[0].rate must be positive and finite"},
      {"rate inf", [inf](ServerConfig* c) { c->api_keys[0].rate = inf; },
       "api_keys[0].rate must be positive and finite"},
      {"rate tiny", [](ServerConfig* c) { c->api_keys[0].rate = 0.001; },
       nullptr},
      {"burst 0.5", [](ServerConfig* c) { c->api_keys[1].burst = 0.5; },
       "api_keys[1].burst must be at least 1 and finite"},
      {"burst NaN", [nan](ServerConfig* c) { c->api_keys[1].burst = nan; },
       "api_keys[1].burst must be at least 1 and finite"},
      {"burst inf", [inf](ServerConfig* c) { c->api_keys[1].burst = inf; },
       "api_keys[1].burst must be at least 1 and finite"},
      {"burst 1", [](ServerConfig* c) { c->api_keys[1].burst = 1; }, nullptr},
  });
}

TEST(ValidateTest, StreamsAndWebhooks) {
  RunCases({
      {"max_per_key 0", [](ServerConfig* c) { c->streams_max_per_key = 0; },
       "streams.max_per_key must be at least 1"},
      {"max_total 0", [](ServerConfig* c) { c->streams_max_total = 0; },
       "streams.max_total must be at least 1"},
      {"idle 0", [](ServerConfig* c) { c->streams_idle_timeout_s = 0; },
       "streams.idle_timeout_s must be between 1 and 86400"},
      {"idle a day", [](ServerConfig* c) { c->streams_idle_timeout_s = 86'400; }, nullptr},
      {"idle over a day", [](ServerConfig* c) { c->streams_idle_timeout_s = 86'401; },
       "streams.idle_timeout_s must be between 1 and 86400"},
      {"https webhook",
       [](ServerConfig* c) {
         c->api_keys[1].webhook_url = "https://hooks.example/bantay";
         c->api_keys[1].webhook_secret_file = "/etc/bantay/hook.secret";
       },
       nullptr},
      {"url without secret",
       [](ServerConfig* c) { c->api_keys[1].webhook_url = "https://hooks.example/bantay"; },
       "api_keys[1].webhook_url and webhook_secret_file go together"},
      {"secret without url",
       [](ServerConfig* c) { c->api_keys[1].webhook_secret_file = "/etc/bantay/hook.secret"; },
       "api_keys[1].webhook_url and webhook_secret_file go together"},
      {"plain http refused",
       [](ServerConfig* c) {
         c->api_keys[1].webhook_url = "http://127.0.0.1:9000/hook";
         c->api_keys[1].webhook_secret_file = "/etc/bantay/hook.secret";
       },
       "api_keys[1].webhook_url is http://, which needs "
       "streams.allow_plain_http_webhooks = true"},
      {"plain http allowed",
       [](ServerConfig* c) {
         c->allow_plain_http_webhooks = true;
         c->api_keys[1].webhook_url = "http://127.0.0.1:9000/hook";
         c->api_keys[1].webhook_secret_file = "/etc/bantay/hook.secret";
       },
       nullptr},
      {"not a url",
       [](ServerConfig* c) {
         c->api_keys[1].webhook_url = "ftp://hooks.example/";
         c->api_keys[1].webhook_secret_file = "/etc/bantay/hook.secret";
       },
       "api_keys[1].webhook_url must be an https:// URL"},
      {"operator key",
       [](ServerConfig* c) {
         c->api_keys[0].webhook_url = "https://hooks.example/bantay";
         c->api_keys[0].webhook_secret_file = "/etc/bantay/hook.secret";
       },
       "api_keys[0].webhook_url is for platform and lab keys (which open streams)"},
  });
}

TEST(ParseConfigTest, StreamsSectionAndWebhookKeys) {
  Result<ServerConfig> c = ParseConfig(
      "[streams]\nmax_per_key = 5\nmax_total = 50\nidle_timeout_s = 30\n"
      "allow_plain_http_webhooks = true\n"
      "[[api_keys]]\nid = \"p\"\nrole = \"platform\"\nsha256 = \"" +
          std::string(64, 'a') +
          "\"\nwebhook_url = \"https://h.example/x\"\n"
          "webhook_secret_file = \"/s\"\n",
      "s.toml");
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->streams_max_per_key, 5u);
  EXPECT_EQ(c->streams_max_total, 50u);
  EXPECT_EQ(c->streams_idle_timeout_s, 30);
  EXPECT_TRUE(c->allow_plain_http_webhooks);
  EXPECT_EQ(c->api_keys.at(0).webhook_url, "https://h.example/x");
  EXPECT_EQ(c->api_keys.at(0).webhook_secret_file, "/s");
  ExpectInvalid(ParseConfig("[[api_keys]]\nwebhook_url = 1\n", "s.toml"),
                "s.toml:2:15: api_keys[0].webhook_url must be a string");
  ExpectInvalid(ParseConfig("[streams]\nmax_total = \"x\"\n", "s.toml"),
                "s.toml:2:13: streams.max_total must be an integer");
}

TEST(ValidateTest, FirstProblemIsReported) {
  ServerConfig c = ValidConfig();
  c.io_threads = 0;
  c.radius = 99;
  c.store_url.clear();
  ExpectInvalid(c.Validate(), "server.io_threads must be between 1 and 64");
}

constexpr char kFullFile[] = R"(# every key, none at its default
[server]
listen = "0.0.0.0"
port = 9443
io_threads = 4
compute_threads = 12
queue_limit = 512
admin_queue_limit = 8
allow_plain_http = true
metrics_public = true
shutdown_grace_ms = 2500
trusted_proxies = "10.0.0.0/8"
proxy_header = "forwarded"

[tls]
cert = "/srv/tls/cert.pem"
key = "/srv/tls/key.pem"
client_ca = "/srv/tls/ca.pem"

[limits]
max_body_bytes = 1048576
max_header_bytes = 8192
max_pixels = 1000000
max_jpeg_scans = 40
read_timeout_ms = 5000
idle_timeout_ms = 60000
max_connections = 100
max_batch_items = 50

[match]
radius = 10
min_quality = 70

[store]
url = "postgresql://bantay@db/bantay"
data_key_file = "/srv/keys/data.key"
signing_key_file = "/srv/keys/signing.pem"
poll_interval_ms = 1000

[log]
access_log = "/var/log/bantay/access.log"

[[api_keys]]
id = "ops"
role = "operator"
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
rate = 2.5
burst = 5

[[api_keys]]
id = "lab@example"
role = "lab"
sha256 = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
)";

TEST(ParseConfigTest, FullFileGivesExactValues) {
  Result<ServerConfig> parsed = ParseConfig(kFullFile, "full.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message();
  const ServerConfig& c = *parsed;
  EXPECT_EQ(c.listen, "0.0.0.0");
  EXPECT_EQ(c.port, 9443);
  EXPECT_EQ(c.io_threads, 4);
  EXPECT_EQ(c.compute_threads, 12);
  EXPECT_EQ(c.queue_limit, 512u);
  EXPECT_EQ(c.admin_queue_limit, 8u);
  EXPECT_TRUE(c.allow_plain_http);
  EXPECT_TRUE(c.metrics_public);
  EXPECT_EQ(c.shutdown_grace_ms, 2500);
  EXPECT_EQ(c.trusted_proxies, "10.0.0.0/8");
  EXPECT_EQ(c.proxy_header, "forwarded");
  EXPECT_EQ(c.tls_cert, "/srv/tls/cert.pem");
  EXPECT_EQ(c.tls_key, "/srv/tls/key.pem");
  EXPECT_EQ(c.tls_client_ca, "/srv/tls/ca.pem");
  EXPECT_EQ(c.max_body_bytes, 1048576u);
  EXPECT_EQ(c.max_header_bytes, 8192u);
  EXPECT_EQ(c.max_pixels, 1000000);
  EXPECT_EQ(c.max_jpeg_scans, 40);
  EXPECT_EQ(c.read_timeout_ms, 5000);
  EXPECT_EQ(c.idle_timeout_ms, 60000);
  EXPECT_EQ(c.max_connections, 100u);
  EXPECT_EQ(c.max_batch_items, 50u);
  EXPECT_EQ(c.radius, 10);
  EXPECT_EQ(c.min_quality, 70);
  EXPECT_EQ(c.store_url, "postgresql://bantay@db/bantay");
  EXPECT_EQ(c.data_key_file, "/srv/keys/data.key");
  EXPECT_EQ(c.signing_key_file, "/srv/keys/signing.pem");
  EXPECT_EQ(c.poll_interval_ms, 1000);
  EXPECT_EQ(c.access_log, "/var/log/bantay/access.log");
  ASSERT_EQ(c.api_keys.size(), 2u);
  EXPECT_EQ(c.api_keys[0].id, "ops");
  EXPECT_EQ(c.api_keys[0].role, Role::kOperator);
  EXPECT_EQ(models::ToHex(c.api_keys[0].sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(c.api_keys[0].rate, 2.5);
  EXPECT_EQ(c.api_keys[0].burst, 5.0);  // a TOML integer is taken as a number
  EXPECT_EQ(c.api_keys[1].id, "lab@example");
  EXPECT_EQ(c.api_keys[1].role, Role::kLab);
  // Upper-case hex is read; the digest is bytes, not text.
  EXPECT_EQ(models::ToHex(c.api_keys[1].sha256),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(c.api_keys[1].rate, 100.0);  // defaults
  EXPECT_EQ(c.api_keys[1].burst, 200.0);
  Status valid = c.Validate();
  EXPECT_TRUE(valid.ok()) << valid.error().message();
}

TEST(ParseConfigTest, EmptyTextGivesDefaults) {
  Result<ServerConfig> parsed = ParseConfig("", "empty.toml");
  ASSERT_TRUE(parsed.ok());
  const ServerConfig d;
  EXPECT_EQ(parsed->listen, d.listen);
  EXPECT_EQ(parsed->port, 8443);
  EXPECT_EQ(parsed->io_threads, 1);
  EXPECT_EQ(parsed->max_body_bytes, 32u * 1024 * 1024);
  EXPECT_EQ(parsed->radius, 31);
  EXPECT_EQ(parsed->access_log, "-");
  EXPECT_TRUE(parsed->api_keys.empty());
}

TEST(ParseConfigTest, DottedKeysAndInlineTables) {
  Result<ServerConfig> parsed =
      ParseConfig("server.port = 1\nmatch = { radius = 3 }\n", "dotted.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message();
  EXPECT_EQ(parsed->port, 1);
  EXPECT_EQ(parsed->radius, 3);
}

// The descriptions are toml++'s (Debian 12: 3.3.0); the position is what
// this test is for.
TEST(ParseConfigTest, SyntaxErrorNamesLineAndColumn) {
  ExpectInvalid(ParseConfig("[server]\nport = 1\nlisten = \"a\n", "bad.toml"),
                "bad.toml:3:12: Error while parsing string: unescaped control "
                "characters other "
                "than TAB (U+0009) are explicitly prohibited");
  ExpectInvalid(ParseConfig("[server]\nport = 1\nport = 2\n", "twice.toml"),
                "twice.toml:3:8: Error while parsing key-value pair: cannot "
                "redefine existing "
                "integer 'port'");
  ExpectInvalid(ParseConfig("[server\n", "open.toml"),
                "open.toml:1:8: Error while parsing table header: expected "
                "']', saw '\\n'");
}

TEST(ParseConfigTest, UnknownSectionsAndKeys) {
  ExpectInvalid(
      ParseConfig("[server]\nport = 1\n\n[serve]\nport = 2\n", "a.toml"),
      "a.toml:4:2: unknown section [serve]");
  ExpectInvalid(ParseConfig("[limits]\nmax_body = 5\n", "a.toml"),
                "a.toml:2:1: unknown key limits.max_body");
  ExpectInvalid(ParseConfig("port = 5\n", "a.toml"),
                "a.toml:1:1: unknown key port");
  ExpectInvalid(ParseConfig("server = 5\n", "a.toml"),
                "a.toml:1:10: server must be a table ([server])");
  ExpectInvalid(ParseConfig("[[server]]\nport = 1\n", "a.toml"),
                "a.toml:1:1: server must be a table ([server])");
}

TEST(ParseConfigTest, WrongTypes) {
  ExpectInvalid(ParseConfig("[server]\nport = \"8443\"\n", "t.toml"),
                "t.toml:2:8: server.port must be an integer");
  ExpectInvalid(ParseConfig("[server]\nport = 8443.0\n", "t.toml"),
                "t.toml:2:8: server.port must be an integer");
  ExpectInvalid(ParseConfig("[server]\nlisten = 127\n", "t.toml"),
                "t.toml:2:10: server.listen must be a string");
  ExpectInvalid(ParseConfig("[server]\nallow_plain_http = \"yes\"\n", "t.toml"),
                "t.toml:2:20: server.allow_plain_http must be true or false");
  ExpectInvalid(ParseConfig("[server]\nmetrics_public = 1\n", "t.toml"),
                "t.toml:2:18: server.metrics_public must be true or false");
  ExpectInvalid(ParseConfig("[tls]\ncert = [\"a\"]\n", "t.toml"),
                "t.toml:2:8: tls.cert must be a string");
}

TEST(ParseConfigTest, IntegerRanges) {
  ExpectInvalid(ParseConfig("[server]\nport = 65536\n", "r.toml"),
                "r.toml:2:8: server.port must be between 0 and 65535");
  ExpectInvalid(ParseConfig("[server]\nport = -1\n", "r.toml"),
                "r.toml:2:8: server.port must be between 0 and 65535");
  ExpectInvalid(ParseConfig("[limits]\nmax_body_bytes = -1\n", "r.toml"),
                "r.toml:2:18: limits.max_body_bytes must not be negative");
  ExpectInvalid(ParseConfig("[server]\nio_threads = 2147483648\n", "r.toml"),
                "r.toml:2:14: server.io_threads is out of range");
  ExpectInvalid(ParseConfig("[match]\nradius = -2147483649\n", "r.toml"),
                "r.toml:2:10: match.radius is out of range");

  Result<ServerConfig> edges = ParseConfig(
      "[server]\nport = 65535\nio_threads = -2147483648\n[limits]\n"
      "max_pixels = 9223372036854775807\nmax_body_bytes = 0\n",
      "r.toml");
  ASSERT_TRUE(edges.ok()) << edges.error().message();
  EXPECT_EQ(edges->port, 65535);
  EXPECT_EQ(edges->io_threads, std::numeric_limits<int>::min());
  EXPECT_EQ(edges->max_pixels, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(edges->max_body_bytes, 0u);
  // Structure is the parser's, meaning is Validate()'s.
  ExpectInvalid(edges->Validate(),
                "server.io_threads must be between 1 and 64");
}

TEST(ParseConfigTest, ApiKeyErrors) {
  const std::string digest = "sha256 = \"" + std::string(64, 'a') + "\"\n";
  ExpectInvalid(
      ParseConfig("[api_keys]\nid = \"a\"\n", "k.toml"),
      "k.toml:1:1: api_keys must be an array of tables ([[api_keys]])");
  ExpectInvalid(
      ParseConfig("api_keys = [1, 2]\n", "k.toml"),
      "k.toml:1:12: api_keys must be an array of tables ([[api_keys]])");
  ExpectInvalid(
      ParseConfig("[[api_keys]]\nrole = \"lab\"\n" + digest, "k.toml"),
      "k.toml:1:1: api_keys[0].id is required");
  ExpectInvalid(ParseConfig("[[api_keys]]\nid = \"a\"\n" + digest, "k.toml"),
                "k.toml:1:1: api_keys[0].role is required");
  ExpectInvalid(
      ParseConfig("[[api_keys]]\nid = \"a\"\nrole = \"lab\"\n", "k.toml"),
      "k.toml:1:1: api_keys[0].sha256 is required");
  ExpectInvalid(
      ParseConfig("[[api_keys]]\nid = \"a\"\nrole = \"root\"\n" + digest,
                  "k.toml"),
      "k.toml:3:8: api_keys[0].role: unknown role \"root\" (platform, lab, "
      "operator "
      "or auditor)");
  ExpectInvalid(
      ParseConfig(
          "[[api_keys]]\nid = \"a\"\nrole = \"lab\"\nsha256 = \"abc\"\n",
          "k.toml"),
      "k.toml:4:10: api_keys[0].sha256 must be 64 hex digits");
  ExpectInvalid(
      ParseConfig("[[api_keys]]\nid = \"a\"\nrole = \"lab\"\nsha256 = \"" +
                      std::string(63, 'a') + "g\"\n",
                  "k.toml"),
      "k.toml:4:10: api_keys[0].sha256 must be 64 hex digits");
  ExpectInvalid(ParseConfig("[[api_keys]]\nid = 7\n", "k.toml"),
                "k.toml:2:6: api_keys[0].id must be a string");
  ExpectInvalid(ParseConfig("[[api_keys]]\nid = \"a\"\nrole = \"lab\"\n" +
                                digest + "rate = \"fast\"\n",
                            "k.toml"),
                "k.toml:5:8: api_keys[0].rate must be a number");
  ExpectInvalid(ParseConfig("[[api_keys]]\nid = \"a\"\nrole = \"lab\"\n" +
                                digest + "key = \"secret\"\n",
                            "k.toml"),
                "k.toml:5:1: unknown key api_keys[0].key");
  // The index names the table at fault.
  ExpectInvalid(
      ParseConfig("[[api_keys]]\nid = \"a\"\nrole = \"lab\"\n" + digest +
                      "[[api_keys]]\nid = \"b\"\nrole = \"lab\"\n",
                  "k.toml"),
      "k.toml:5:1: api_keys[1].sha256 is required");
}

TEST(ParseConfigTest, EmptyApiKeyArray) {
  Result<ServerConfig> parsed = ParseConfig("api_keys = []\n", "k.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message();
  EXPECT_TRUE(parsed->api_keys.empty());
}

TEST(LoadConfigFileTest, ReadsFileAndNamesItInErrors) {
  bantay::testing::TempDir dir;
  const std::string good =
      dir.Write("good.toml", {'[', 's', 'e', 'r', 'v', 'e', 'r', ']', '\n', 'p',
                              'o', 'r', 't', '=', '7', '\n'});
  Result<ServerConfig> loaded = LoadConfigFile(good);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message();
  EXPECT_EQ(loaded->port, 7);

  const std::string bad = dir.Write("bad.toml", {'p', 'o', 'r', 't', '\n'});
  Result<ServerConfig> broken = LoadConfigFile(bad);
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(broken.error().message().rfind(bad + ":1:", 0), 0u)
      << broken.error().message();
}

TEST(LoadConfigFileTest, MissingFileAndDirectory) {
  bantay::testing::TempDir dir;
  Result<ServerConfig> missing = LoadConfigFile(dir.path() + "/none.toml");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message(),
            dir.path() + "/none.toml: No such file or directory");

  Result<ServerConfig> directory = LoadConfigFile(dir.path());
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.error().code(), ErrorCode::kIo);
  EXPECT_EQ(directory.error().message(), dir.path() + ": Is a directory");
}

TEST(ApplyEnvironmentTest, EveryScalarKeyHasAVariable) {
  // A value that differs from the default for each key.
  const std::map<std::string, std::string> values = {
      {"server.listen", "::1"},
      {"server.port", "9000"},
      {"server.io_threads", "3"},
      {"server.compute_threads", "5"},
      {"server.queue_limit", "7"},
      {"server.admin_queue_limit", "9"},
      {"server.allow_plain_http", "true"},
      {"server.metrics_public", "true"},
      {"server.shutdown_grace_ms", "11"},
      {"server.trusted_proxies", "::1"},
      {"server.proxy_header", "forwarded"},
      {"tls.cert", "c.pem"},
      {"tls.key", "k.pem"},
      {"tls.client_ca", "ca.pem"},
      {"limits.max_body_bytes", "13"},
      {"limits.max_header_bytes", "15"},
      {"limits.max_pixels", "17"},
      {"limits.max_jpeg_scans", "18"},
      {"limits.read_timeout_ms", "19"},
      {"limits.idle_timeout_ms", "21"},
      {"limits.max_connections", "23"},
      {"limits.max_batch_items", "25"},
      {"match.radius", "27"},
      {"match.min_quality", "29"},
      {"store.url", "sqlite:s.db"},
      {"store.data_key_file", "d.key"},
      {"store.extra_data_key_file", "e.key"},
      {"store.signing_key_file", "s.pem"},
      {"store.public_key_file", "p.pem"},
      {"store.verify_on_load", "false"},
      {"store.poll_interval_ms", "31"},
      {"store.stale_after_ms", "32"},
      {"store.corrupt_retry_ms", "34"},
      {"store.min_version", "36"},
      {"store.pin_file", "pin.json"},
      {"log.access_log", ""},
      {"streams.max_per_key", "33"},
      {"streams.max_total", "35"},
      {"streams.idle_timeout_s", "37"},
      {"streams.allow_plain_http_webhooks", "true"},
  };
  ASSERT_EQ(values.size(), kAllKeys.size());
  std::map<std::string, std::string> env;
  for (const std::string& key : kAllKeys) env[EnvName(key)] = values.at(key);
  EXPECT_EQ(env.count("BANTAY_LIMITS_MAX_BODY_BYTES"), 1u);
  EXPECT_EQ(env.count("BANTAY_TLS_CLIENT_CA"), 1u);

  ServerConfig c;
  Status applied = ApplyEnvironment(&c, Env(&env));
  ASSERT_TRUE(applied.ok()) << applied.error().message();
  EXPECT_EQ(c.listen, "::1");
  EXPECT_EQ(c.port, 9000);
  EXPECT_EQ(c.io_threads, 3);
  EXPECT_EQ(c.compute_threads, 5);
  EXPECT_EQ(c.queue_limit, 7u);
  EXPECT_EQ(c.admin_queue_limit, 9u);
  EXPECT_TRUE(c.allow_plain_http);
  EXPECT_TRUE(c.metrics_public);
  EXPECT_EQ(c.shutdown_grace_ms, 11);
  EXPECT_EQ(c.trusted_proxies, "::1");
  EXPECT_EQ(c.proxy_header, "forwarded");
  EXPECT_EQ(c.tls_cert, "c.pem");
  EXPECT_EQ(c.tls_key, "k.pem");
  EXPECT_EQ(c.tls_client_ca, "ca.pem");
  EXPECT_EQ(c.max_body_bytes, 13u);
  EXPECT_EQ(c.max_header_bytes, 15u);
  EXPECT_EQ(c.max_pixels, 17);
  EXPECT_EQ(c.max_jpeg_scans, 18);
  EXPECT_EQ(c.read_timeout_ms, 19);
  EXPECT_EQ(c.idle_timeout_ms, 21);
  EXPECT_EQ(c.max_connections, 23u);
  EXPECT_EQ(c.max_batch_items, 25u);
  EXPECT_EQ(c.radius, 27);
  EXPECT_EQ(c.min_quality, 29);
  EXPECT_EQ(c.store_url, "sqlite:s.db");
  EXPECT_EQ(c.data_key_file, "d.key");
  EXPECT_EQ(c.extra_data_key_file, "e.key");
  EXPECT_EQ(c.signing_key_file, "s.pem");
  EXPECT_EQ(c.public_key_file, "p.pem");
  EXPECT_FALSE(c.verify_on_load);
  EXPECT_EQ(c.poll_interval_ms, 31);
  EXPECT_EQ(c.stale_after_ms, 32);
  EXPECT_EQ(c.corrupt_retry_ms, 34);
  EXPECT_EQ(c.min_version, 36);
  EXPECT_EQ(c.pin_file, "pin.json");
  EXPECT_EQ(c.access_log, "");  // set empty (off), not left at "-"
  EXPECT_EQ(c.streams_max_per_key, 33u);
  EXPECT_EQ(c.streams_max_total, 35u);
  EXPECT_EQ(c.streams_idle_timeout_s, 37);
  EXPECT_TRUE(c.allow_plain_http_webhooks);
}

TEST(ApplyEnvironmentTest, UnsetVariablesLeaveValues) {
  ServerConfig c;
  c.port = 1234;
  c.store_url = "sqlite:keep.db";
  ASSERT_TRUE(ApplyEnvironment(&c, Env(&kNoEnv)).ok());
  EXPECT_EQ(c.port, 1234);
  EXPECT_EQ(c.store_url, "sqlite:keep.db");
}

TEST(ApplyEnvironmentTest, BadValuesNameTheVariable) {
  const std::vector<std::pair<std::map<std::string, std::string>, std::string>>
      cases = {
          {{{"BANTAY_SERVER_PORT", "https"}},
           "BANTAY_SERVER_PORT: server.port must be an integer (got "
           "\"https\")"},
          {{{"BANTAY_SERVER_PORT", ""}},
           "BANTAY_SERVER_PORT: server.port must be an integer (got \"\")"},
          {{{"BANTAY_SERVER_PORT", "80x"}},
           "BANTAY_SERVER_PORT: server.port must be an integer (got \"80x\")"},
          {{{"BANTAY_SERVER_PORT", " 80"}},
           "BANTAY_SERVER_PORT: server.port must be an integer (got \" 80\")"},
          {{{"BANTAY_SERVER_PORT", "70000"}},
           "BANTAY_SERVER_PORT: server.port must be between 0 and 65535"},
          {{{"BANTAY_LIMITS_MAX_BODY_BYTES", "-5"}},
           "BANTAY_LIMITS_MAX_BODY_BYTES: limits.max_body_bytes must not be "
           "negative"},
          {{{"BANTAY_LIMITS_MAX_PIXELS", "99999999999999999999"}},
           "BANTAY_LIMITS_MAX_PIXELS: limits.max_pixels must be an integer "
           "(got "
           "\"99999999999999999999\")"},
          {{{"BANTAY_MATCH_RADIUS", "3000000000"}},
           "BANTAY_MATCH_RADIUS: match.radius is out of range"},
          {{{"BANTAY_SERVER_ALLOW_PLAIN_HTTP", "yes"}},
           "BANTAY_SERVER_ALLOW_PLAIN_HTTP: server.allow_plain_http must be "
           "true or false (got "
           "\"yes\")"},
          {{{"BANTAY_SERVER_METRICS_PUBLIC", "1"}},
           "BANTAY_SERVER_METRICS_PUBLIC: server.metrics_public must be true "
           "or false (got \"1\")"},
      };
  for (const auto& [env, message] : cases) {
    SCOPED_TRACE(message);
    ServerConfig c;
    ExpectInvalid(ApplyEnvironment(&c, Env(&env)), message);
  }
}

TEST(ApplyEnvironmentTest, NegativeIntegersAreRead) {
  const std::map<std::string, std::string> env = {
      {"BANTAY_MATCH_RADIUS", "-3"}};
  ServerConfig c;
  ASSERT_TRUE(ApplyEnvironment(&c, Env(&env)).ok());
  EXPECT_EQ(c.radius, -3);
}

class CommandLineTest : public ::testing::Test {
 protected:
  std::string WriteConfig(const std::string& text) {
    return dir_.Write("server.toml",
                      std::vector<uint8_t>(text.begin(), text.end()));
  }
  Result<ServerConfig> Run(
      const std::vector<std::string>& args,
      const std::map<std::string, std::string>& env = kNoEnv) {
    help_ = true;  // must be cleared
    return ConfigFromCommandLine(args, Env(&env), &help_);
  }

  bantay::testing::TempDir dir_;
  bool help_ = false;
};

TEST_F(CommandLineTest, NoArgumentsGiveDefaults) {
  Result<ServerConfig> c = Run({});
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(help_);
  EXPECT_EQ(c->port, 8443);
  EXPECT_EQ(c->listen, "127.0.0.1");
}

TEST_F(CommandLineTest, Help) {
  for (const char* flag : {"-h", "--help"}) {
    Result<ServerConfig> c = Run({flag});
    ASSERT_TRUE(c.ok());
    EXPECT_TRUE(help_);
  }
  // Nothing else is checked: not the flags before, not the file.
  Result<ServerConfig> c =
      Run({"--bogus", "--config", dir_.path() + "/none.toml", "--help"});
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(help_);
}

TEST_F(CommandLineTest, SetBeatsEnvironmentBeatsFile) {
  const std::string file = WriteConfig(
      "[server]\nport = 1001\nlisten = \"10.0.0.1\"\nio_threads = 2\n"
      "[store]\nurl = \"sqlite:file.db\"\n[match]\nradius = 5\n");
  const std::map<std::string, std::string> env = {
      {"BANTAY_SERVER_PORT", "1002"}, {"BANTAY_MATCH_RADIUS", "6"}};

  Result<ServerConfig> file_only = Run({"--config", file});
  ASSERT_TRUE(file_only.ok()) << file_only.error().message();
  EXPECT_EQ(file_only->port, 1001);
  EXPECT_EQ(file_only->radius, 5);

  Result<ServerConfig> with_env = Run({"--config", file}, env);
  ASSERT_TRUE(with_env.ok());
  EXPECT_EQ(with_env->port, 1002);
  EXPECT_EQ(with_env->radius, 6);
  EXPECT_EQ(with_env->io_threads, 2);  // from the file, untouched

  // --set given before --config still applies after the file and the
  // environment.
  Result<ServerConfig> with_set = Run(
      {"--set", "server.port=1003", "--config", file, "--set=match.radius=7"},
      env);
  ASSERT_TRUE(with_set.ok()) << with_set.error().message();
  EXPECT_EQ(with_set->port, 1003);
  EXPECT_EQ(with_set->radius, 7);
  EXPECT_EQ(with_set->listen, "10.0.0.1");
  EXPECT_EQ(with_set->store_url, "sqlite:file.db");
}

TEST_F(CommandLineTest, ShortFlagsAndOrder) {
  const std::map<std::string, std::string> env = {
      {"BANTAY_SERVER_LISTEN", "10.1.1.1"},
      {"BANTAY_STORE_URL", "sqlite:env.db"}};
  Result<ServerConfig> c =
      Run({"--listen", "::", "--port=0", "--store", "sqlite:flag.db"}, env);
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->listen, "::");
  EXPECT_EQ(c->port, 0);
  EXPECT_EQ(c->store_url, "sqlite:flag.db");

  // Among flags, the later one wins.
  Result<ServerConfig> later =
      Run({"--port", "1", "--set", "server.port=2", "--port", "3"});
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->port, 3);
  Result<ServerConfig> set_later =
      Run({"--store", "sqlite:a.db", "--set", "store.url=sqlite:b.db"});
  ASSERT_TRUE(set_later.ok());
  EXPECT_EQ(set_later->store_url, "sqlite:b.db");
}

TEST_F(CommandLineTest, SetTakesEveryKeyAndValuesWithEquals) {
  Result<ServerConfig> c =
      Run({"--set", "store.url=postgresql://h/db?sslmode=require", "--set",
           "log.access_log=", "--set", "server.allow_plain_http=true", "--set",
           "limits.max_batch_items=9"});
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->store_url, "postgresql://h/db?sslmode=require");
  EXPECT_EQ(c->access_log, "");
  EXPECT_TRUE(c->allow_plain_http);
  EXPECT_EQ(c->max_batch_items, 9u);
  for (const std::string& key : kAllKeys) {
    SCOPED_TRACE(key);
    Result<ServerConfig> one = Run({"--set", key + "=1"});
    if (key == "server.allow_plain_http" || key == "server.metrics_public" ||
        key == "store.verify_on_load" || key == "streams.allow_plain_http_webhooks") {
      ExpectInvalid(one,
                    "--set: " + key + " must be true or false (got \"1\")");
    } else {
      EXPECT_TRUE(one.ok()) << one.error().message();
    }
  }
}

TEST_F(CommandLineTest, Mistakes) {
  ExpectInvalid(Run({"--bogus"}), "unknown flag --bogus");
  ExpectInvalid(Run({"-p", "1"}), "unknown flag -p");
  ExpectInvalid(Run({"--bogus=1"}), "unknown flag --bogus");
  ExpectInvalid(Run({"server.toml"}), "unexpected argument \"server.toml\"");
  ExpectInvalid(Run({"--port"}), "--port needs a value");
  ExpectInvalid(Run({"--set"}), "--set needs a value");
  ExpectInvalid(Run({"--port", "x"}),
                "--port: server.port must be an integer (got \"x\")");
  ExpectInvalid(Run({"--port=99999"}),
                "--port: server.port must be between 0 and 65535");
  ExpectInvalid(Run({"--set", "port=1"}),
                "--set needs SECTION.KEY=VALUE (got \"port=1\")");
  ExpectInvalid(Run({"--set", "server.port"}),
                "--set needs SECTION.KEY=VALUE (got \"server.port\")");
  ExpectInvalid(Run({"--set", "server.prot=1"}),
                "--set: unknown key server.prot");
  ExpectInvalid(Run({"--set", "api_keys.id=x"}),
                "--set: unknown key api_keys.id");
  ExpectInvalid(Run({"--set", "server.io_threads=many"}),
                "--set: server.io_threads must be an integer (got \"many\")");
  ExpectInvalid(Run({"--config", "a.toml", "--config", "b.toml"}),
                "--config is given twice");
  ExpectInvalid(Run({"--new-api-key", "lab", "--port", "1"}),
                "--new-api-key ROLE takes no other arguments");
  // The environment is checked after the file, before the flags.
  const std::map<std::string, std::string> env = {
      {"BANTAY_SERVER_IO_THREADS", "two"}};
  ExpectInvalid(Run({"--set", "server.io_threads=2"}, env),
                "BANTAY_SERVER_IO_THREADS: server.io_threads must be an "
                "integer (got \"two\")");
}

TEST_F(CommandLineTest, ConfigFileErrors) {
  Result<ServerConfig> missing = Run({"--config", dir_.path() + "/none.toml"});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);

  const std::string file = WriteConfig("[server]\nport = \"x\"\n");
  ExpectInvalid(Run({"--config=" + file}),
                file + ":2:8: server.port must be an integer");
}

TEST(ServerUsageTest, DocumentsFlagsKeysEnvironmentAndSignals) {
  const std::string usage(ServerUsage());
  EXPECT_EQ(
      usage.rfind(
          "Usage: bantay-server [--config FILE] [--listen ADDR] [--port N] "
          "[--store URL] [--set SECTION.KEY=VALUE]...\n",
          0),
      0u);
  for (const char* text :
       {"bantay-server --new-api-key ROLE", "[[api_keys]]", "-h, --help",
        "SIGTERM, SIGINT", "SIGHUP", "reload the TLS certificate and key",
        "BANTAY_<SECTION>_<KEY>",
        "  server.port = 8443  (BANTAY_SERVER_PORT)\n",
        "  server.listen = \"127.0.0.1\"  (BANTAY_SERVER_LISTEN)\n",
        "  server.allow_plain_http = false  (BANTAY_SERVER_ALLOW_PLAIN_HTTP)\n",
        "  limits.max_body_bytes = 33554432  (BANTAY_LIMITS_MAX_BODY_BYTES)\n",
        "  tls.cert = \"\"  (BANTAY_TLS_CERT)\n",
        "  log.access_log = \"-\"  (BANTAY_LOG_ACCESS_LOG)\n",
        "  store.corrupt_retry_ms = 60000  (BANTAY_STORE_CORRUPT_RETRY_MS)\n",
        "  store.min_version = 0  (BANTAY_STORE_MIN_VERSION)\n",
        "  store.pin_file = \"\"  (BANTAY_STORE_PIN_FILE)\n", "  id ",
        "  role ", "  sha256 ", "  rate ", "  burst "}) {
    EXPECT_NE(usage.find(text), std::string::npos) << text;
  }
  for (const std::string& key : kAllKeys) {
    // (Appended, not "(" + ...: GCC 12 warns falsely about the latter.)
    EXPECT_NE(usage.find(std::string("  ").append(key).append(" = ")),
              std::string::npos)
        << key;
    EXPECT_NE(usage.find(std::string("(").append(EnvName(key)).append(")")),
              std::string::npos)
        << key;
  }
  for (const char* section :
       {"[server]", "[tls]", "[limits]", "[match]", "[store]", "[log]"}) {
    EXPECT_NE(usage.find(std::string("\n") + section + "\n"), std::string::npos)
        << section;
  }
  EXPECT_EQ(ServerUsage().data(), ServerUsage().data());  // built once
}

TEST(ApiKeyTest, DigestIsSha256OfTheText) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(models::ToHex(ApiKeyDigest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(models::ToHex(ApiKeyDigest("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(ApiKeyTest, NewKeysAreHexAndDistinct) {
  std::set<std::string> keys;
  for (int i = 0; i < 100; ++i) {
    const std::string key = NewApiKey();
    ASSERT_EQ(key.size(), 64u);
    for (char c : key) {
      EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << key;
    }
    keys.insert(key);
  }
  EXPECT_EQ(keys.size(), 100u);
}

TEST(ApiKeyTest, NewKeyDigestAdmitsItThroughTheFile) {
  const std::string key = NewApiKey();
  const std::string text =
      "[[api_keys]]\nid = \"k\"\nrole = \"auditor\"\nsha256 = \"" +
      models::ToHex(ApiKeyDigest(key)) + "\"\n";
  Result<ServerConfig> parsed = ParseConfig(text, "k.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message();
  ASSERT_EQ(parsed->api_keys.size(), 1u);
  EXPECT_EQ(parsed->api_keys[0].sha256, ApiKeyDigest(key));
  EXPECT_NE(parsed->api_keys[0].sha256, ApiKeyDigest(NewApiKey()));
}

TEST(ExampleConfigTest, ParsesAndValidates) {
  Result<ServerConfig> example = LoadConfigFile(ExamplePath());
  ASSERT_TRUE(example.ok()) << example.error().message();
  Status valid = example->Validate();
  EXPECT_TRUE(valid.ok()) << valid.error().message();
  ASSERT_EQ(example->api_keys.size(), 1u);
  EXPECT_EQ(example->api_keys[0].role, Role::kOperator);
  EXPECT_EQ(example->api_keys[0].sha256, (std::array<uint8_t, 32>{}));
  EXPECT_EQ(example->api_keys[0].rate, ApiKeyConfig{}.rate);
  EXPECT_EQ(example->api_keys[0].burst, ApiKeyConfig{}.burst);
}

// The example shows each default, so that its comments can be trusted;
// only the values without a default are placeholders.
TEST(ExampleConfigTest, ShowsTheDefaults) {
  Result<ServerConfig> e = LoadConfigFile(ExamplePath());
  ASSERT_TRUE(e.ok()) << e.error().message();
  const ServerConfig d;
  EXPECT_EQ(e->listen, d.listen);
  EXPECT_EQ(e->port, d.port);
  EXPECT_EQ(e->io_threads, d.io_threads);
  EXPECT_EQ(e->compute_threads, d.compute_threads);
  EXPECT_EQ(e->queue_limit, d.queue_limit);
  EXPECT_EQ(e->admin_queue_limit, d.admin_queue_limit);
  EXPECT_EQ(e->allow_plain_http, d.allow_plain_http);
  EXPECT_EQ(e->metrics_public, d.metrics_public);
  EXPECT_EQ(e->shutdown_grace_ms, d.shutdown_grace_ms);
  EXPECT_EQ(e->trusted_proxies, d.trusted_proxies);
  EXPECT_EQ(e->proxy_header, d.proxy_header);
  EXPECT_EQ(e->tls_client_ca, d.tls_client_ca);
  EXPECT_EQ(e->max_body_bytes, d.max_body_bytes);
  EXPECT_EQ(e->max_header_bytes, d.max_header_bytes);
  EXPECT_EQ(e->max_pixels, d.max_pixels);
  EXPECT_EQ(e->max_jpeg_scans, d.max_jpeg_scans);
  EXPECT_EQ(e->read_timeout_ms, d.read_timeout_ms);
  EXPECT_EQ(e->idle_timeout_ms, d.idle_timeout_ms);
  EXPECT_EQ(e->max_connections, d.max_connections);
  EXPECT_EQ(e->max_batch_items, d.max_batch_items);
  EXPECT_EQ(e->radius, d.radius);
  EXPECT_EQ(e->min_quality, d.min_quality);
  EXPECT_EQ(e->signing_key_file, d.signing_key_file);
  EXPECT_EQ(e->public_key_file, d.public_key_file);
  EXPECT_EQ(e->verify_on_load, d.verify_on_load);
  EXPECT_EQ(e->poll_interval_ms, d.poll_interval_ms);
  EXPECT_EQ(e->stale_after_ms, d.stale_after_ms);
  EXPECT_EQ(e->corrupt_retry_ms, d.corrupt_retry_ms);
  EXPECT_EQ(e->min_version, d.min_version);
  EXPECT_EQ(e->pin_file, d.pin_file);
  EXPECT_EQ(e->access_log, d.access_log);
  EXPECT_EQ(e->streams_max_per_key, d.streams_max_per_key);
  EXPECT_EQ(e->streams_max_total, d.streams_max_total);
  EXPECT_EQ(e->streams_idle_timeout_s, d.streams_idle_timeout_s);
  EXPECT_EQ(e->allow_plain_http_webhooks, d.allow_plain_http_webhooks);
  EXPECT_FALSE(e->tls_cert.empty());
  EXPECT_FALSE(e->tls_key.empty());
  EXPECT_FALSE(e->store_url.empty());
  EXPECT_FALSE(e->data_key_file.empty());
}

// Every key is written out (not only in a comment), each in its section.
TEST(ExampleConfigTest, HasEveryKey) {
  std::istringstream lines(ReadText(ExamplePath()));
  std::set<std::string> present;
  std::string section;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') {
      section.clear();
      for (char c : line) {
        if (c != '[' && c != ']') section += c;
      }
      continue;
    }
    const size_t eq = line.find(" = ");
    if (eq != std::string::npos)
      present.insert(section + "." + line.substr(0, eq));
  }
  for (const std::string& key : kAllKeys)
    EXPECT_EQ(present.count(key), 1u) << key;
  for (const char* key : {"id", "role", "sha256", "rate", "burst"}) {
    EXPECT_EQ(present.count(std::string("api_keys.") + key), 1u) << key;
  }
  EXPECT_EQ(present.size(), kAllKeys.size() + 5);
}

}  // namespace
}  // namespace bantay::server
