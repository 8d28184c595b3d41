// Internal to the client library: what HttpClient and StreamClient share to
// reach a server the same way — the URL's parts, the option checks, the TLS
// context (certificate verification against a CA file or the system's trust
// store, client certificates), the host-name check set up before a
// handshake, and the errors a failed handshake is reported with.
#ifndef BANTAY_CLIENT_SRC_TLS_CONNECT_H_
#define BANTAY_CLIENT_SRC_TLS_CONNECT_H_

#include <openssl/ssl.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/system/error_code.hpp>
#include <string>
#include <string_view>

#include "bantay/client/http_client.h"
#include "bantay/models/status.h"

namespace bantay::client::internal {

struct ServerAddress {
  bool tls = true;
  std::string host;  // without brackets: a name, IPv4 or IPv6 address
  bool host_is_ip = false;
  std::string port;         // decimal
  std::string host_header;  // Host: value
  std::string display;      // host:port for messages
};

// https://HOST[:PORT] or http://HOST[:PORT], nothing else. The URL itself
// is never part of a message (it could carry credentials).
Result<ServerAddress> ParseServerUrl(std::string_view url);

// The checks Connect makes before connecting: the URL, the API key's form,
// certificate and key given together, a positive timeout, a client
// certificate only over TLS.
Result<ServerAddress> CheckClientOptions(const ClientOptions& options);

// A request target or header value must not smuggle in another line.
bool IsPrintable(std::string_view s);

// A TLS 1.2+ client context verifying the server against options.ca_file
// (else the system's trust store), with the client certificate when given.
Status SetUpTlsContext(const ClientOptions& options,
                       boost::asio::ssl::context* context);

// SNI and the host-name (or IP address) check, before the handshake.
Status PrepareHandshake(
    const ServerAddress& address,
    boost::asio::ssl::stream<boost::beast::tcp_stream>* stream);

// The error a failed handshake is reported with (kPermissionDenied for a
// certificate that does not verify or a refused client certificate,
// kUnavailable otherwise).
Error HandshakeError(const boost::system::error_code& ec, SSL* ssl,
                     const ClientOptions& options,
                     const ServerAddress& address);

// An error when the server refused our certificate (or wanted one we did
// not have); otherwise ok.
Status CheckRefusedUs(const boost::system::error_code& ec, SSL* ssl,
                      const ClientOptions& options,
                      const ServerAddress& address);

// "connection refused", "unknown host", the OpenSSL reason, or the message.
std::string Reason(const boost::system::error_code& ec);

}  // namespace bantay::client::internal

#endif  // BANTAY_CLIENT_SRC_TLS_CONNECT_H_
