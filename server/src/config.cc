#include "bantay/server/config.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "bantay/models/digest.h"
#include "forwarded.h"

namespace bantay::server {

namespace {

// Every scalar key, once: the file parser, the environment, --set and the
// help text all read this table, so none of them can miss a key.
using Member = std::variant<std::string ServerConfig::*, bool ServerConfig::*,
                            uint16_t ServerConfig::*, int ServerConfig::*,
                            size_t ServerConfig::*, int64_t ServerConfig::*>;

struct Field {
  std::string_view section;
  std::string_view key;
  Member member;
  std::string_view help;
};

constexpr Field kFields[] = {
    {"server", "listen", &ServerConfig::listen,
     "IP address to listen on (0.0.0.0 or :: for every interface)"},
    {"server", "port", &ServerConfig::port,
     "TCP port (0: any free port, for tests)"},
    {"server", "io_threads", &ServerConfig::io_threads,
     "threads serving connections: TLS, HTTP, authentication (1..64)"},
    {"server", "compute_threads", &ServerConfig::compute_threads,
     "threads decoding, hashing and searching (0: one per core; at most 256)"},
    {"server", "queue_limit", &ServerConfig::queue_limit,
     "compute tasks that may wait; beyond it 503 with Retry-After (at least "
     "1)"},
    {"server", "admin_queue_limit", &ServerConfig::admin_queue_limit,
     "store writes that may wait; beyond it 503 with Retry-After (at least 1)"},
    {"server", "allow_plain_http", &ServerConfig::allow_plain_http,
     "serve plain HTTP when tls.cert and tls.key are empty (tests, or a TLS "
     "proxy on the host)"},
    {"server", "metrics_public", &ServerConfig::metrics_public,
     "GET /metrics without an API key"},
    {"server", "shutdown_grace_ms", &ServerConfig::shutdown_grace_ms,
     "on SIGTERM/SIGINT, how long requests in flight may take to finish"},
    {"server", "trusted_proxies", &ServerConfig::trusted_proxies,
     "proxies in front of the server (addresses and networks: \"127.0.0.1, "
     "10.0.0.0/8, ::1\"); from these peers, server.proxy_header names the "
     "client in the access log (\"client\")"},
    {"server", "proxy_header", &ServerConfig::proxy_header,
     "the header the trusted proxies set: x-forwarded-for or forwarded (RFC "
     "7239); the other is not read (a proxy passes it on from the client)"},
    {"tls", "cert", &ServerConfig::tls_cert,
     "PEM certificate chain (required unless server.allow_plain_http = true)"},
    {"tls", "key", &ServerConfig::tls_key, "PEM private key of tls.cert"},
    {"tls", "client_ca", &ServerConfig::tls_client_ca,
     "PEM CA certificates; when set, clients must present a certificate they "
     "signed"},
    {"limits", "max_body_bytes", &ServerConfig::max_body_bytes,
     "largest request body (413 beyond)"},
    {"limits", "max_header_bytes", &ServerConfig::max_header_bytes,
     "largest request header (431 beyond)"},
    {"limits", "max_pixels", &ServerConfig::max_pixels,
     "largest image in pixels, read from its header before decoding (413 "
     "beyond)"},
    {"limits", "max_jpeg_scans", &ServerConfig::max_jpeg_scans,
     "most scans a JPEG may have, counted before decoding: each costs the "
     "decoder a pass over the picture (413 beyond)"},
    {"limits", "read_timeout_ms", &ServerConfig::read_timeout_ms,
     "time to read one whole request (the connection is closed beyond)"},
    {"limits", "idle_timeout_ms", &ServerConfig::idle_timeout_ms,
     "an idle keep-alive connection is closed after this"},
    {"limits", "max_connections", &ServerConfig::max_connections,
     "connections open at once; further ones are closed on accept"},
    {"limits", "max_batch_items", &ServerConfig::max_batch_items,
     "items in one POST /v1/match/batch (413 beyond)"},
    {"match", "radius", &ServerConfig::radius,
     "PDQ match radius in bits (0..64); lab keys may ask for another"},
    {"match", "min_quality", &ServerConfig::min_quality,
     "PDQ hashes of lower quality (0..100) are not matched"},
    {"store", "url", &ServerConfig::store_url,
     "the hash store: sqlite:PATH or postgresql://... (required)"},
    {"store", "data_key_file", &ServerConfig::data_key_file,
     "file holding the key (64 hex digits) that opens stored hash values; "
     "needed to load the index; new values are sealed with it"},
    {"store", "extra_data_key_file", &ServerConfig::extra_data_key_file,
     "another data key that opens stored values but seals none, for "
     "rotating the data key while the servers run"},
    {"store", "signing_key_file", &ServerConfig::signing_key_file,
     "PEM Ed25519 key signing index versions; without it the API makes no "
     "changes"},
    {"store", "public_key_file", &ServerConfig::public_key_file,
     "PEM Ed25519 public key the store must verify against before its index "
     "is served (default: the public half of signing_key_file, else the key "
     "the store holds)"},
    {"store", "verify_on_load", &ServerConfig::verify_on_load,
     "verify the whole store, its history included (signatures, audit "
     "chain, values) before its index is served; ~10 s a million entries "
     "(the entries loaded and every later change are verified against the "
     "signed versions either way)"},
    {"store", "poll_interval_ms", &ServerConfig::poll_interval_ms,
     "how often the store is read for changes made elsewhere (at least 10)"},
    {"store", "stale_after_ms", &ServerConfig::stale_after_ms,
     "/readyz answers 503 once the index has failed to follow the store for "
     "this long (0: never)"},
    {"store", "corrupt_retry_ms", &ServerConfig::corrupt_retry_ms,
     "after a load or a change that does not verify (or a store older than "
     "store.min_version or the pin), how long before it is tried again: each "
     "try reads the whole store (10..86400000)"},
    {"store", "min_version", &ServerConfig::min_version,
     "the index is not served from a store whose signed version is lower "
     "(an older copy of the database; 0: any)"},
    {"store", "pin_file", &ServerConfig::pin_file,
     "file recording the version served, its signed root and the key that "
     "signed it (one line of JSON, written atomically); at start, a store at "
     "a lower version, or at that version with another root, is not served, "
     "and a pin of another key stops the start (\"\": no pin)"},
    {"log", "access_log", &ServerConfig::access_log,
     "one JSON line per request: \"-\" standard error, \"\" off, else a file "
     "appended to"},
    {"streams", "max_per_key", &ServerConfig::streams_max_per_key,
     "stream sessions one API key may hold open (429 too_many_streams beyond)"},
    {"streams", "max_total", &ServerConfig::streams_max_total,
     "stream sessions open in all (429 too_many_streams beyond)"},
    {"streams", "idle_timeout_s", &ServerConfig::streams_idle_timeout_s,
     "a stream session without a frame for this long is removed"},
    {"streams", "allow_plain_http_webhooks", &ServerConfig::allow_plain_http_webhooks,
     "allow http:// webhook URLs (tests, a receiver on the same host)"},
};

constexpr std::string_view kSections[] = {"server", "tls", "limits",  "match",
                                          "store",  "log", "streams"};

constexpr std::string_view kRoleNames[] = {"platform", "lab", "operator",
                                           "auditor"};

constexpr size_t kMaxKeyIdBytes = 64;

Error Invalid(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

Error Prefixed(std::string_view prefix, const Error& error) {
  return Error(error.code(), std::string(prefix) + ": " + error.message());
}

std::string FieldName(const Field& field) {
  return std::string(field.section) + "." + std::string(field.key);
}

std::string EnvName(const Field& field) {
  std::string name = "BANTAY_";
  for (char c : field.section)
    name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  name += '_';
  for (char c : field.key)
    name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

const Field* FindField(std::string_view section, std::string_view key) {
  for (const Field& field : kFields) {
    if (field.section == section && field.key == key) return &field;
  }
  return nullptr;
}

bool IsSection(std::string_view name) {
  for (std::string_view section : kSections) {
    if (section == name) return true;
  }
  return false;
}

bool IsString(const Field& f) {
  return std::holds_alternative<std::string ServerConfig::*>(f.member);
}
bool IsBool(const Field& f) {
  return std::holds_alternative<bool ServerConfig::*>(f.member);
}

// Integers arrive as int64_t (TOML's integer type); the range of the C++
// member is checked here, the meaning of the value in Validate().
Status SetInteger(const Field& field, int64_t value, ServerConfig* config) {
  const std::string name = FieldName(field);
  return std::visit(
      [&](auto member) -> Status {
        using T = std::remove_reference_t<decltype(config->*member)>;
        if constexpr (std::is_same_v<T, std::string> ||
                      std::is_same_v<T, bool>) {
          return Error(ErrorCode::kInternal, name + " is not an integer key");
        } else if constexpr (std::is_same_v<T, uint16_t>) {
          if (value < 0 || value > 65535)
            return Invalid(name + " must be between 0 and 65535");
          config->*member = static_cast<T>(value);
          return {};
        } else if constexpr (std::is_same_v<T, size_t>) {
          if (value < 0) return Invalid(name + " must not be negative");
          config->*member = static_cast<T>(value);
          return {};
        } else {
          if (value < std::numeric_limits<T>::min() ||
              value > std::numeric_limits<T>::max()) {
            return Invalid(name + " is out of range");
          }
          config->*member = static_cast<T>(value);
          return {};
        }
      },
      field.member);
}

// The text of an environment variable or a flag.
Status SetFromText(const Field& field, std::string_view text,
                   ServerConfig* config) {
  if (IsString(field)) {
    config->*std::get<std::string ServerConfig::*>(field.member) =
        std::string(text);
    return {};
  }
  if (IsBool(field)) {
    bool& target = config->*std::get<bool ServerConfig::*>(field.member);
    if (text == "true") {
      target = true;
    } else if (text == "false") {
      target = false;
    } else {
      return Invalid(FieldName(field) + " must be true or false (got \"" +
                     std::string(text) + "\")");
    }
    return {};
  }
  int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return Invalid(FieldName(field) + " must be an integer (got \"" +
                   std::string(text) + "\")");
  }
  return SetInteger(field, value, config);
}

Status SetFromNode(const Field& field, const toml::node& node,
                   ServerConfig* config) {
  if (IsString(field)) {
    const toml::value<std::string>* text = node.as_string();
    if (text == nullptr) return Invalid(FieldName(field) + " must be a string");
    config->*std::get<std::string ServerConfig::*>(field.member) = text->get();
    return {};
  }
  if (IsBool(field)) {
    const toml::value<bool>* flag = node.as_boolean();
    if (flag == nullptr)
      return Invalid(FieldName(field) + " must be true or false");
    config->*std::get<bool ServerConfig::*>(field.member) = flag->get();
    return {};
  }
  const toml::value<int64_t>* number = node.as_integer();
  if (number == nullptr)
    return Invalid(FieldName(field) + " must be an integer");
  return SetInteger(field, number->get(), config);
}

std::string Where(std::string_view origin, const toml::source_region& region) {
  return std::string(origin) + ":" + std::to_string(region.begin.line) + ":" +
         std::to_string(region.begin.column);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool ParseDigest(std::string_view hex, std::array<uint8_t, 32>* digest) {
  if (hex.size() != 64) return false;
  for (size_t i = 0; i < 32; ++i) {
    const int high = HexValue(hex[2 * i]);
    const int low = HexValue(hex[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    (*digest)[i] = static_cast<uint8_t>(high << 4 | low);
  }
  return true;
}

Status ParseApiKey(const toml::table& table, size_t index,
                   std::string_view origin, ApiKeyConfig* key) {
  const std::string prefix = "api_keys[" + std::to_string(index) + "].";
  bool have_id = false;
  bool have_role = false;
  bool have_sha256 = false;
  for (const auto& [name, node] : table) {
    const std::string_view field = name.str();
    const std::string where =
        Where(origin, node.source()) + ": " + prefix + std::string(field);
    if (field == "webhook_url" || field == "webhook_secret_file") {
      const toml::value<std::string>* text = node.as_string();
      if (text == nullptr) return Invalid(where + " must be a string");
      (field == "webhook_url" ? key->webhook_url : key->webhook_secret_file) = text->get();
    } else if (field == "id" || field == "role" || field == "sha256") {
      const toml::value<std::string>* text = node.as_string();
      if (text == nullptr) return Invalid(where + " must be a string");
      if (field == "id") {
        key->id = text->get();
        have_id = true;
      } else if (field == "role") {
        Result<Role> role = ParseRole(text->get());
        if (!role.ok()) return Prefixed(where, role.error());
        key->role = *role;
        have_role = true;
      } else {
        if (!ParseDigest(text->get(), &key->sha256)) {
          return Invalid(where + " must be 64 hex digits");
        }
        have_sha256 = true;
      }
    } else if (field == "rate" || field == "burst") {
      double value = 0;
      if (const toml::value<double>* real = node.as_floating_point()) {
        value = real->get();
      } else if (const toml::value<int64_t>* integer = node.as_integer()) {
        value = static_cast<double>(integer->get());
      } else {
        return Invalid(where + " must be a number");
      }
      (field == "rate" ? key->rate : key->burst) = value;
    } else {
      return Invalid(Where(origin, name.source()) + ": unknown key " + prefix +
                     std::string(field));
    }
  }
  const std::string where = Where(origin, table.source()) + ": " + prefix;
  if (!have_id) return Invalid(where + "id is required");
  if (!have_role) return Invalid(where + "role is required");
  if (!have_sha256) return Invalid(where + "sha256 is required");
  return {};
}

Status ParseApiKeys(const toml::node& node, std::string_view origin,
                    ServerConfig* config) {
  const toml::array* array = node.as_array();
  if (array == nullptr || (!array->empty() && !array->is_array_of_tables())) {
    return Invalid(Where(origin, node.source()) +
                   ": api_keys must be an array of tables ([[api_keys]])");
  }
  for (size_t i = 0; i < array->size(); ++i) {
    ApiKeyConfig key;
    Status parsed = ParseApiKey(*(*array)[i].as_table(), i, origin, &key);
    if (!parsed.ok()) return parsed;
    config->api_keys.push_back(std::move(key));
  }
  return {};
}

Result<std::string> ReadWholeFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    return Error(error == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 path + ": " + std::strerror(error));
  }
  std::string text;
  char buffer[1 << 14];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      return Error(ErrorCode::kIo, path + ": " + std::strerror(error));
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

std::string DefaultText(const Field& field) {
  static const ServerConfig defaults;
  return std::visit(
      [](auto member) -> std::string {
        const auto& value = defaults.*member;
        using T = std::remove_cvref_t<decltype(value)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return "\"" + value + "\"";
        } else if constexpr (std::is_same_v<T, bool>) {
          return value ? "true" : "false";
        } else {
          return std::to_string(value);
        }
      },
      field.member);
}

// Raw strings, so that the text reads here as it prints.
constexpr char kUsageHead[] =
    R"(Usage: bantay-server [--config FILE] [--listen ADDR] [--port N] [--store URL] [--set SECTION.KEY=VALUE]...
       bantay-server --new-api-key ROLE
       bantay-server --version
       bantay-server -h | --help

Serves the Bantay HTTPS API v1 (server/README.md; the OpenAPI document is at
/openapi.json).

Flags:
  --config FILE            read a TOML configuration file (applied first)
  --listen ADDR            sets server.listen
  --port N                 sets server.port
  --store URL              sets store.url
  --set SECTION.KEY=VALUE  sets any key below (repeatable, applied in order)
  --new-api-key ROLE       prints a new API key for ROLE (platform, lab,
                           operator, auditor) and the [[api_keys]] table to
                           paste into the configuration (which holds only the
                           key's SHA-256), then exits
  --version                prints the version, then exits
  -h, --help               prints this text

Precedence: the file, then BANTAY_<SECTION>_<KEY> environment variables
(upper case, e.g. BANTAY_SERVER_PORT=9443, BANTAY_TLS_CERT=/etc/bantay/cert.pem),
then --listen, --port, --store and --set in the order given; a later value
wins.

Configuration keys, as section.key = default (environment variable):
)";

constexpr char kUsageTail[] = R"(
[[api_keys]]  one table per API key; only in the file
  id      name shown in the access log and audit records (unique; letters,
          digits and . _ : @ -)
  role    platform | lab | operator | auditor
  sha256  SHA-256 of the key's 64-hex-digit text (64 hex digits)
  rate    requests per second (default 100.0)
  burst   requests at once, the bucket size (default 200.0); a batch costs
          one per item
  webhook_url          where this key's stream verdict changes are POSTed
                       (https://; http:// only with
                       streams.allow_plain_http_webhooks = true)
  webhook_secret_file  file holding the webhook's HMAC-SHA256 key (with
                       webhook_url)

Clients send `Authorization: Bearer <key>`. Secrets are never in the file or
the environment in clear: API keys are their digests, the store's keys are
files.

Signals:
  SIGTERM, SIGINT  graceful shutdown: stop accepting, answer the requests in
                   flight (up to server.shutdown_grace_ms), then exit
  SIGHUP           reload the TLS certificate and key (tls.cert, tls.key)
)";

std::string BuildUsage() {
  std::string text = kUsageHead;
  std::string_view section;
  for (const Field& field : kFields) {
    if (field.section != section) {
      section = field.section;
      text += "\n[" + std::string(section) + "]\n";
    }
    text += "  " + FieldName(field) + " = " + DefaultText(field) + "  (" +
            EnvName(field) + ")\n";
    text += "      " + std::string(field.help) + "\n";
  }
  text += kUsageTail;
  return text;
}

// The flags that take a value (as "--flag VALUE" or "--flag=VALUE").
bool TakesValue(std::string_view flag) {
  return flag == "--config" || flag == "--listen" || flag == "--port" ||
         flag == "--store" || flag == "--set";
}

bool ValidKeyId(std::string_view id) {
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                    c == ':' || c == '@' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kPlatform:
      return kRoleNames[0];
    case Role::kLab:
      return kRoleNames[1];
    case Role::kOperator:
      return kRoleNames[2];
    case Role::kAuditor:
      return kRoleNames[3];
  }
  return "unknown";
}

Result<Role> ParseRole(std::string_view name) {
  for (Role role :
       {Role::kPlatform, Role::kLab, Role::kOperator, Role::kAuditor}) {
    if (RoleName(role) == name) return role;
  }
  return Invalid("unknown role \"" + std::string(name) +
                 "\" (platform, lab, operator or auditor)");
}

Status ServerConfig::Validate() const {
  if (listen.empty()) return Invalid("server.listen must not be empty");
  if (io_threads < 1 || io_threads > 64) {
    return Invalid("server.io_threads must be between 1 and 64");
  }
  if (compute_threads < 0 || compute_threads > 256) {
    return Invalid("server.compute_threads must be between 0 and 256");
  }
  if (queue_limit < 1) return Invalid("server.queue_limit must be at least 1");
  if (admin_queue_limit < 1)
    return Invalid("server.admin_queue_limit must be at least 1");
  if (shutdown_grace_ms < 0)
    return Invalid("server.shutdown_grace_ms must not be negative");
  if (Result<TrustedProxies> proxies = TrustedProxies::Parse(trusted_proxies); !proxies.ok()) {
    return Prefixed("server.trusted_proxies", proxies.error());
  }
  if (Result<ProxyHeader> header = ParseProxyHeader(proxy_header); !header.ok()) {
    return Prefixed("server.proxy_header", header.error());
  }

  // The server speaks TLS exactly when tls.cert is set, so a lone key or
  // certificate is a mistake rather than a request for plain HTTP.
  if (tls_cert.empty() && tls_key.empty()) {
    if (!allow_plain_http) {
      return Invalid(
          "tls.cert and tls.key are required unless server.allow_plain_http = "
          "true");
    }
  } else if (tls_cert.empty()) {
    return Invalid("tls.cert is required with tls.key");
  } else if (tls_key.empty()) {
    return Invalid("tls.key is required with tls.cert");
  }
  if (!tls_client_ca.empty() && tls_cert.empty()) {
    return Invalid("tls.client_ca requires TLS (tls.cert and tls.key)");
  }

  const std::pair<std::string_view, bool> positive[] = {
      {"limits.max_body_bytes", max_body_bytes > 0},
      {"limits.max_header_bytes", max_header_bytes > 0},
      {"limits.max_pixels", max_pixels > 0},
      {"limits.max_jpeg_scans", max_jpeg_scans > 0},
      {"limits.read_timeout_ms", read_timeout_ms > 0},
      {"limits.idle_timeout_ms", idle_timeout_ms > 0},
      {"limits.max_connections", max_connections > 0},
      {"limits.max_batch_items", max_batch_items > 0},
  };
  for (const auto& [name, is_positive] : positive) {
    if (!is_positive) return Invalid(std::string(name) + " must be positive");
  }

  if (radius < 0 || radius > 64)
    return Invalid("match.radius must be between 0 and 64");
  if (min_quality < 0 || min_quality > 100) {
    return Invalid("match.min_quality must be between 0 and 100");
  }
  if (store_url.empty()) return Invalid("store.url is required");
  if (poll_interval_ms < 10)
    return Invalid("store.poll_interval_ms must be at least 10");
  if (stale_after_ms < 0) return Invalid("store.stale_after_ms must be at least 0");
  if (corrupt_retry_ms < 10 || corrupt_retry_ms > 86'400'000) {
    return Invalid("store.corrupt_retry_ms must be between 10 and 86400000");
  }
  if (min_version < 0) return Invalid("store.min_version must be at least 0");
  if (streams_max_per_key < 1) return Invalid("streams.max_per_key must be at least 1");
  if (streams_max_total < 1) return Invalid("streams.max_total must be at least 1");
  if (streams_idle_timeout_s < 1 || streams_idle_timeout_s > 86'400) {
    return Invalid("streams.idle_timeout_s must be between 1 and 86400");
  }

  std::set<std::string_view> ids;
  std::set<std::array<uint8_t, 32>> digests;
  for (size_t i = 0; i < api_keys.size(); ++i) {
    const ApiKeyConfig& key = api_keys[i];
    const std::string name = "api_keys[" + std::to_string(i) + "].";
    if (key.id.empty()) return Invalid(name + "id must not be empty");
    if (key.id.size() > kMaxKeyIdBytes) {
      return Invalid(name + "id is longer than " +
                     std::to_string(kMaxKeyIdBytes) + " bytes");
    }
    // Ids go into audit records (no control characters) and log lines.
    if (!ValidKeyId(key.id)) {
      return Invalid(name + "id may only hold letters, digits and . _ : @ -");
    }
    if (!ids.insert(key.id).second) {
      return Invalid(name + "id \"" + key.id + "\" is used by another key");
    }
    if (!digests.insert(key.sha256).second) {
      return Invalid(name + "sha256 is the digest of another key");
    }
    if (!(key.rate > 0) || !std::isfinite(key.rate)) {
      return Invalid(name + "rate must be positive and finite");
    }
    if (!(key.burst >= 1) || !std::isfinite(key.burst)) {
      return Invalid(name + "burst must be at least 1 and finite");
    }
    if (key.webhook_url.empty() != key.webhook_secret_file.empty()) {
      return Invalid(name + "webhook_url and webhook_secret_file go together");
    }
    if (!key.webhook_url.empty()) {
      const std::string_view url = key.webhook_url;
      const bool https = url.starts_with("https://") && url.size() > 8;
      const bool http = url.starts_with("http://") && url.size() > 7;
      if (!https && !(http && allow_plain_http_webhooks)) {
        return Invalid(name + (http ? "webhook_url is http://, which needs "
                                      "streams.allow_plain_http_webhooks = true"
                                    : "webhook_url must be an https:// URL"));
      }
      if (key.role != Role::kPlatform && key.role != Role::kLab) {
        return Invalid(name + "webhook_url is for platform and lab keys (which open streams)");
      }
    }
  }
  return {};
}

Result<ServerConfig> ParseConfig(std::string_view toml_text,
                                 std::string_view origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    return Invalid(Where(origin, e.source()) + ": " +
                   std::string(e.description()));
  }
  ServerConfig config;
  for (const auto& [name, node] : root) {
    const std::string_view section = name.str();
    if (section == "api_keys") {
      Status parsed = ParseApiKeys(node, origin, &config);
      if (!parsed.ok()) return parsed.error();
      continue;
    }
    if (!IsSection(section)) {
      return Invalid(
          Where(origin, name.source()) +
          (node.is_table() ? ": unknown section [" : ": unknown key ") +
          std::string(section) + (node.is_table() ? "]" : ""));
    }
    const toml::table* table = node.as_table();
    if (table == nullptr) {
      return Invalid(Where(origin, node.source()) + ": " +
                     std::string(section) + " must be a table ([" +
                     std::string(section) + "])");
    }
    for (const auto& [key, value] : *table) {
      const Field* field = FindField(section, key.str());
      if (field == nullptr) {
        return Invalid(Where(origin, key.source()) + ": unknown key " +
                       std::string(section) + "." + std::string(key.str()));
      }
      Status set = SetFromNode(*field, value, &config);
      if (!set.ok())
        return Prefixed(Where(origin, value.source()), set.error());
    }
  }
  return config;
}

Result<ServerConfig> LoadConfigFile(const std::string& path) {
  Result<std::string> text = ReadWholeFile(path);
  if (!text.ok()) return text.error();
  return ParseConfig(*text, path);
}

Status ApplyEnvironment(ServerConfig* config,
                        const std::function<const char*(const char*)>& getenv) {
  for (const Field& field : kFields) {
    const std::string name = EnvName(field);
    const char* value = getenv(name.c_str());
    if (value == nullptr) continue;
    Status set = SetFromText(field, value, config);
    if (!set.ok()) return Prefixed(name, set.error());
  }
  return {};
}

Result<ServerConfig> ConfigFromCommandLine(
    const std::vector<std::string>& args,
    const std::function<const char*(const char*)>& getenv, bool* help) {
  if (help != nullptr) *help = false;

  // The whole line is split before anything is applied, so that --help
  // wins over any mistake elsewhere on it.
  std::vector<std::pair<std::string, std::string>> flags;
  std::optional<std::string> config_file;
  std::optional<Error> mistake;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      if (help != nullptr) *help = true;
      return ServerConfig{};
    }
    if (mistake) continue;
    std::string flag = arg;
    std::optional<std::string> value;
    if (const size_t eq = arg.find('=');
        arg.starts_with("--") && eq != std::string::npos) {
      flag = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (flag == "--new-api-key") {
      mistake = Invalid("--new-api-key ROLE takes no other arguments");
      continue;
    }
    if (!TakesValue(flag)) {
      mistake =
          Invalid(arg.starts_with("-") ? "unknown flag " + flag
                                       : "unexpected argument \"" + arg + "\"");
      continue;
    }
    if (!value) {
      if (i + 1 == args.size()) {
        mistake = Invalid(flag + " needs a value");
        continue;
      }
      value = args[++i];
    }
    if (flag == "--config") {
      if (config_file) {
        mistake = Invalid("--config is given twice");
        continue;
      }
      config_file = *value;
    } else {
      flags.emplace_back(flag, *value);
    }
  }
  if (mistake) return *mistake;

  ServerConfig config;
  if (config_file) {
    Result<ServerConfig> loaded = LoadConfigFile(*config_file);
    if (!loaded.ok()) return loaded.error();
    config = std::move(*loaded);
  }
  if (Status env = ApplyEnvironment(&config, getenv); !env.ok())
    return env.error();

  for (const auto& [flag, value] : flags) {
    const Field* field = nullptr;
    std::string_view text = value;
    if (flag == "--listen") {
      field = FindField("server", "listen");
    } else if (flag == "--port") {
      field = FindField("server", "port");
    } else if (flag == "--store") {
      field = FindField("store", "url");
    } else {
      const size_t eq = value.find('=');
      const size_t dot = value.find('.');
      if (eq == std::string::npos || dot == std::string::npos || dot > eq) {
        return Invalid("--set needs SECTION.KEY=VALUE (got \"" + value + "\")");
      }
      const std::string_view section = std::string_view(value).substr(0, dot);
      const std::string_view key =
          std::string_view(value).substr(dot + 1, eq - dot - 1);
      field = FindField(section, key);
      if (field == nullptr) {
        return Invalid("--set: unknown key " + value.substr(0, eq));
      }
      text = std::string_view(value).substr(eq + 1);
    }
    Status set = SetFromText(*field, text, &config);
    if (!set.ok()) return Prefixed(flag, set.error());
  }
  return config;
}

std::string_view ServerUsage() {
  static const std::string* const text = new std::string(BuildUsage());
  return *text;
}

std::array<uint8_t, 32> ApiKeyDigest(std::string_view key) {
  return models::Sha256(std::span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(key.data()), key.size()));
}

std::string NewApiKey() {
  std::array<uint8_t, 32> bytes;
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    // A key from a failed generator could be guessed; there is no safe
    // fallback and no caller that could do better.
    std::fputs("bantay-server: the random generator failed\n", stderr);
    std::abort();
  }
  return models::ToHex(bytes);
}

}  // namespace bantay::server
