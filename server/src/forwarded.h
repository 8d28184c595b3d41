// The client behind a trusted proxy, for the access log.
//
// Behind a proxy (a TLS terminator on the host, a load balancer) every
// connection's peer is the proxy. A proxy says whom it serves in a header
// it adds to the request: X-Forwarded-For ("client, proxy1, proxy2") or
// RFC 7239's Forwarded ("for=192.0.2.7;proto=https, for=\"[2001:db8::1]\"").
// Anyone can send either header, so it is read only from peers named in
// server.trusted_proxies, and only the one header server.proxy_header names
// (a proxy that sets one passes the other on from the client as it came).
//
// The list is read from its right end, the hop nearest the server: each
// address that is itself a trusted proxy is passed over, and the first one
// that is not is the client (what a client put to the left of it is not
// believed, nor even read). When every hop is trusted, the leftmost is the
// client. A hop that is not an address (RFC 7239's "unknown" and obfuscated
// identifiers, a zone id, text that does not parse), or a malformed
// Forwarded field, where the walk reaches it, ends it: the client is
// "unknown". (A host inside a trusted network can name any client it likes:
// trust only the proxies themselves.)
//
// Thread safety: TrustedProxies is immutable once parsed; the functions are
// pure.
#ifndef BANTAY_SERVER_FORWARDED_H_
#define BANTAY_SERVER_FORWARDED_H_

#include <array>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "bantay/models/status.h"

namespace bantay::server {

enum class ProxyHeader { kXForwardedFor, kForwarded };

// "x-forwarded-for" or "forwarded", in any case; kInvalidArgument else.
Result<ProxyHeader> ParseProxyHeader(std::string_view name);
std::string_view ProxyHeaderName(ProxyHeader header);  // "X-Forwarded-For", "Forwarded"

// Addresses and networks, separated by commas and/or spaces:
// "127.0.0.1, ::1, 10.0.0.0/8, 2001:db8::/32". An IPv4 address written
// IPv4-mapped (::ffff:192.0.2.7) is the IPv4 address.
class TrustedProxies {
 public:
  TrustedProxies() = default;  // trusts no one

  // kInvalidArgument naming the entry that is not an address or a network
  // (a prefix longer than the address, bits set past the prefix).
  static Result<TrustedProxies> Parse(std::string_view text);

  bool empty() const { return networks_.empty(); }
  bool Contains(const boost::asio::ip::address& address) const;

 private:
  struct Network {
    std::array<uint8_t, 16> bytes{};  // IPv4 in the first 4
    bool v4 = false;
    int prefix = 0;
  };
  std::vector<Network> networks_;
};

// The client the proxies name, or nullopt when the peer is not a trusted
// proxy or it sent no list in the header (then the peer is the client).
// `fields` are the values of every field of that header, in their order in
// the request. The answer is an address as the server prints it
// ("203.0.113.9", "2001:db8::7"; no port), or "unknown".
std::optional<std::string> ForwardedClient(const TrustedProxies& trusted, ProxyHeader header,
                                           const boost::asio::ip::address& peer,
                                           std::span<const std::string_view> fields);

}  // namespace bantay::server

#endif  // BANTAY_SERVER_FORWARDED_H_
