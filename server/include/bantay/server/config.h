// ServerConfig: everything bantay-server is told, from one TOML file, then
// environment overrides, then command-line flags (later wins).
//
// File layout (every key optional; defaults below):
//
//   [server]  listen, port, io_threads, compute_threads, queue_limit,
//             admin_queue_limit, allow_plain_http, metrics_public,
//             shutdown_grace_ms, trusted_proxies, proxy_header
//   [tls]     cert, key, client_ca
//   [limits]  max_body_bytes, max_header_bytes, max_pixels, max_jpeg_scans,
//             read_timeout_ms, idle_timeout_ms, max_connections, max_batch_items
//   [match]   radius, min_quality
//   [store]   url, data_key_file, extra_data_key_file, signing_key_file,
//             public_key_file,
//             verify_on_load, poll_interval_ms, stale_after_ms,
//             corrupt_retry_ms, min_version, pin_file
//   [log]     access_log            ("-" standard error, "" off, else a file)
//   [streams] max_per_key, max_total, idle_timeout_s,
//             allow_plain_http_webhooks
//   [[api_keys]]  id, role, sha256, rate, burst, webhook_url,
//                 webhook_secret_file   (one table per key)
//
// Environment: BANTAY_<SECTION>_<KEY> in upper case overrides a scalar
// (BANTAY_SERVER_PORT=9443, BANTAY_TLS_CERT=..., BANTAY_STORE_URL=...).
// Secrets are never in the file or the environment in clear: the store's
// keys are file paths, API keys are their SHA-256 digests.
//
// Thread safety: plain values.
#ifndef BANTAY_SERVER_CONFIG_H_
#define BANTAY_SERVER_CONFIG_H_

#include <array>
#include <functional>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bantay/models/status.h"

namespace bantay::server {

enum class Role { kPlatform, kLab, kOperator, kAuditor };
// "platform", "lab", "operator", "auditor"; and the reverse.
std::string_view RoleName(Role role);
Result<Role> ParseRole(std::string_view name);

struct ApiKeyConfig {
  std::string id;                   // shown in logs, metrics, audit records
  Role role = Role::kPlatform;
  std::array<uint8_t, 32> sha256{};  // of the key's 64-hex-digit text
  double rate = 100.0;              // tokens per second
  double burst = 200.0;             // bucket size
  // Stream verdict changes of this key's streams are POSTed here (https://,
  // or http:// with streams.allow_plain_http_webhooks), signed with the key
  // held by webhook_secret_file (both or neither).
  std::string webhook_url;
  std::string webhook_secret_file;
};

struct ServerConfig {
  // [server]
  std::string listen = "127.0.0.1";
  uint16_t port = 8443;  // 0: any free port (tests)
  int io_threads = 1;
  int compute_threads = 0;  // 0: one per core
  size_t queue_limit = 256;
  size_t admin_queue_limit = 16;
  bool allow_plain_http = false;  // serve without TLS (tls.cert empty)
  bool metrics_public = false;
  int64_t shutdown_grace_ms = 10'000;
  // Peers whose proxy_header is believed for the access log's "client"
  // ("127.0.0.1, 10.0.0.0/8, ::1"; "": none), and that header
  // ("x-forwarded-for" or "forwarded"). See server/src/forwarded.h.
  std::string trusted_proxies;
  std::string proxy_header = "x-forwarded-for";

  // [tls]
  std::string tls_cert;       // PEM chain
  std::string tls_key;        // PEM private key
  std::string tls_client_ca;  // when set, client certificates are required

  // [limits]
  size_t max_body_bytes = 32 * 1024 * 1024;
  size_t max_header_bytes = 16 * 1024;
  int64_t max_pixels = 50'000'000;
  int max_jpeg_scans = 500;  // models::kDefaultMaxJpegScans
  int64_t read_timeout_ms = 10'000;
  int64_t idle_timeout_ms = 30'000;
  size_t max_connections = 10'000;
  size_t max_batch_items = 1'000;

  // [match]
  int radius = 31;
  int min_quality = 50;

  // [store]
  std::string store_url;  // sqlite:PATH or postgresql://...
  std::string data_key_file;  // opens stored values; seals new ones
  // Another data key that opens stored values (never seals): the data key
  // rotates while the servers run (server/README.md).
  std::string extra_data_key_file;
  std::string signing_key_file;  // needed for changes through the API
  // The key the store's signed versions are checked against when the index
  // loads (default: the public half of signing_key_file, else the key the
  // store holds).
  std::string public_key_file;
  // Verify the whole store, its history included, before its index is
  // served (~10 s a million entries here). The entries loaded and every
  // later change are verified against the signed versions either way.
  bool verify_on_load = true;
  int64_t poll_interval_ms = 250;
  // /readyz answers 503 once the index has failed to follow the store for
  // this long (0: never).
  int64_t stale_after_ms = 60'000;
  // After a load or a change set that does not verify (or a store older
  // than the two below), how long before it is tried again: each try
  // reads, and verifies, the whole store.
  int64_t corrupt_retry_ms = 60'000;
  // The index is not served from a store whose signed version is lower
  // (an older copy of the database).
  int64_t min_version = 0;
  // When set, the version served and its signed root are recorded in this
  // file, and at start the index is not served from a store at a lower
  // version, or at that version with another root (server/README.md).
  std::string pin_file;

  // [log]
  std::string access_log = "-";

  // [streams]
  size_t streams_max_per_key = 100;
  size_t streams_max_total = 1000;
  int64_t streams_idle_timeout_s = 60;
  bool allow_plain_http_webhooks = false;

  std::vector<ApiKeyConfig> api_keys;

  // Semantic checks (ranges, TLS files named unless plain HTTP is allowed,
  // unique key ids and digests, a store URL). kInvalidArgument naming the
  // first problem.
  Status Validate() const;
};

// Parses TOML text. kInvalidArgument with the line of a syntax error, an
// unknown section or key, or a value of the wrong type or range. `origin`
// names the text in messages (a file name).
Result<ServerConfig> ParseConfig(std::string_view toml, std::string_view origin);
// Reads and parses a file (kNotFound / kIo when it cannot be read).
Result<ServerConfig> LoadConfigFile(const std::string& path);
// Applies BANTAY_<SECTION>_<KEY> variables found by `getenv` (a parameter
// so that tests need not touch the process environment).
Status ApplyEnvironment(ServerConfig* config,
                        const std::function<const char*(const char*)>& getenv);

// The whole configuration of a bantay-server invocation: `--config FILE`
// first, then the environment, then the other flags:
//   --listen ADDR  --port N  --store URL  --set SECTION.KEY=VALUE (repeatable)
// *help is set (and nothing else checked) for -h/--help. kInvalidArgument
// for an unknown flag or a bad value. Validate() is the caller's.
Result<ServerConfig> ConfigFromCommandLine(const std::vector<std::string>& args,
                                           const std::function<const char*(const char*)>& getenv,
                                           bool* help);
// The text `bantay-server --help` prints (flags, file sections and keys,
// environment variables, signals).
std::string_view ServerUsage();

// The SHA-256 of an API key's text, as stored in the configuration.
std::array<uint8_t, 32> ApiKeyDigest(std::string_view key);
// A new random key (64 hex digits).
std::string NewApiKey();

}  // namespace bantay::server

#endif  // BANTAY_SERVER_CONFIG_H_
