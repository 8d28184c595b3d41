// HttpClient: the client library's connection to a bantay-server, over
// HTTPS (or plain HTTP for a server that allows it), with keep-alive.
//
// Certificates are verified: against `ca_file` when given (e.g. the
// self-signed certificate of a test or demo server), else the system's
// trust store; the host name is checked. API keys go in an Authorization
// header and are never printed.
//
// Thread safety: an HttpClient is one connection; use one per thread.
#ifndef BANTAY_CLIENT_HTTP_CLIENT_H_
#define BANTAY_CLIENT_HTTP_CLIENT_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bantay/models/status.h"

namespace bantay::client {

struct ClientOptions {
  std::string url;      // https://HOST:PORT or http://HOST:PORT (no path)
  std::string api_key;  // 64 hex digits; empty: no Authorization header
  std::string ca_file;  // PEM certificates to trust instead of the system's
  std::string client_cert_file;  // PEM, for servers that require mutual TLS
  std::string client_key_file;
  int64_t timeout_ms = 30'000;  // per request (connect, write, read)
};

struct HttpResponse {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // The first header of that name (case-insensitive), or "".
  std::string Header(std::string_view name) const;
};

class HttpClient {
 public:
  // Parses the URL and connects (TCP, then the TLS handshake). Errors:
  // kInvalidArgument (bad URL or options), kNotFound (a CA/cert file
  // missing), kUnavailable (connection refused, host unknown, timeout),
  // kPermissionDenied (the server's certificate does not verify, or the
  // server refused ours).
  static Result<std::unique_ptr<HttpClient>> Connect(ClientOptions options);
  ~HttpClient();

  // One request; the connection is kept open. When the server has closed
  // the kept-alive connection before the request was sent, connects once
  // more. An HTTP error status is a response, not an error; errors are for
  // transport failures (kUnavailable, kIo; kTooLarge for an answer over
  // 64 MiB).
  Result<HttpResponse> Send(std::string_view method, std::string_view target,
                            std::string_view content_type, std::span<const uint8_t> body);
  Result<HttpResponse> Send(std::string_view method, std::string_view target,
                            std::string_view content_type = {}, std::string_view body = {});

 private:
  struct Impl;
  explicit HttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bantay::client

#endif  // BANTAY_CLIENT_HTTP_CLIENT_H_
