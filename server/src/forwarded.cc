#include "forwarded.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>

#include <boost/beast/core/string.hpp>

namespace bantay::server {

namespace {

using boost::asio::ip::address;

Error Invalid(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

// kInvalidArgument "\"<entry>\" <why>" (appended: GCC 12 warns of a
// false overlap in a chain of string concatenations here).
Error BadEntry(std::string_view entry, std::string_view why) {
  std::string message = "\"";
  message.append(entry).append("\" ").append(why);
  return Invalid(std::move(message));
}

// An IPv4 address written IPv4-mapped is that IPv4 address: a dual-stack
// listener sees IPv4 peers so.
address Canonical(const address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
  }
  return a;
}

// Zone ids ("fe80::1%eth0") name an interface of the sender's host, not an
// address anyone else can use; they are refused as written (Asio would look
// the name up on this host, or read an unknown one as zone 0).
std::optional<address> ParseAddress(std::string_view text) {
  if (text.find('%') != std::string_view::npos) return std::nullopt;
  boost::system::error_code ec;
  const address a = boost::asio::ip::make_address(std::string(text), ec);
  if (ec) return std::nullopt;
  return Canonical(a);
}

// A port, or RFC 7239's obfuscated one ("_" and letters, digits, . _ -).
bool IsPort(std::string_view text) {
  if (text.starts_with('_')) {
    return text.size() > 1 && std::all_of(text.begin(), text.end(), [](char c) {
             return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                    c == '-';
           });
  }
  if (text.empty() || text.size() > 5) return false;
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  return ec == std::errc() && end == text.data() + text.size() && port <= 65535;
}

// A hop as proxies write it: 192.0.2.7, 192.0.2.7:4711, 2001:db8::7,
// [2001:db8::7], [2001:db8::7]:4711 (a port may be obfuscated: ":_p1").
// Anything else (RFC 7239's "unknown", an obfuscated "_hidden", text that
// is no address) is nullopt.
std::optional<address> ParseHop(std::string_view text) {
  if (text.starts_with('[')) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty() && !(rest.starts_with(':') && IsPort(rest.substr(1)))) return std::nullopt;
    std::optional<address> a = ParseAddress(text.substr(1, close - 1));
    // Brackets hold an IPv6 address (an IPv4-mapped one included).
    if (!a || text.substr(1, close - 1).find(':') == std::string_view::npos) return std::nullopt;
    return a;
  }
  if (std::optional<address> a = ParseAddress(text)) return a;
  const size_t colon = text.find(':');
  if (colon == std::string_view::npos || text.find(':', colon + 1) != std::string_view::npos ||
      !IsPort(text.substr(colon + 1))) {
    return std::nullopt;
  }
  std::optional<address> a = ParseAddress(text.substr(0, colon));
  if (!a || !a->is_v4()) return std::nullopt;
  return a;
}

bool IsOws(char c) { return c == ' ' || c == '\t'; }

bool IsTchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

// One field of RFC 7239's Forwarded, read into the "for" node of each of
// its elements (empty: the element has none). False when the field is
// malformed.
class ForwardedReader {
 public:
  explicit ForwardedReader(std::string_view text) : text_(text) {}

  bool Read(std::vector<std::optional<std::string>>* fors) {
    for (;;) {
      SkipOws();
      if (at_end()) return true;
      if (text_[pos_] == ',') {  // an empty element (RFC 9110 lists allow them)
        ++pos_;
        continue;
      }
      std::optional<std::string> node;
      if (!ReadElement(&node)) return false;
      fors->push_back(std::move(node));
      if (at_end()) return true;
      ++pos_;  // the ','
    }
  }

 private:
  bool at_end() const { return pos_ == text_.size(); }
  void SkipOws() {
    while (!at_end() && IsOws(text_[pos_])) ++pos_;
  }

  // Pairs separated by ';' up to a ',' or the end; each name at most once.
  bool ReadElement(std::optional<std::string>* node) {
    std::vector<std::string_view> names;  // into text_
    for (;;) {
      SkipOws();
      if (at_end() || text_[pos_] == ',') return true;
      if (text_[pos_] == ';') {
        ++pos_;
        continue;
      }
      const std::string_view name = ReadToken();
      if (name.empty() || at_end() || text_[pos_] != '=') return false;
      ++pos_;
      std::string value;
      if (!ReadValue(&value)) return false;
      for (std::string_view seen : names) {
        if (boost::beast::iequals(seen, name)) return false;
      }
      names.push_back(name);
      if (boost::beast::iequals(name, "for")) *node = std::move(value);
      SkipOws();
      if (!at_end() && text_[pos_] != ';' && text_[pos_] != ',') return false;
    }
  }

  std::string_view ReadToken() {
    const size_t start = pos_;
    while (!at_end() && IsTchar(text_[pos_])) ++pos_;
    return text_.substr(start, pos_ - start);
  }

  // A token or a quoted string (its escapes undone).
  bool ReadValue(std::string* value) {
    if (at_end() || text_[pos_] != '"') {
      *value = ReadToken();
      return !value->empty();
    }
    for (++pos_; !at_end(); ++pos_) {
      char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c == '\\') {
        if (++pos_ == text_.size()) return false;
        c = text_[pos_];
      }
      // HTAB, SP, VCHAR and obs-text; no other control character.
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t') return false;
      if (c == 0x7f) return false;
      *value += c;
    }
    return false;
  }

  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

Result<ProxyHeader> ParseProxyHeader(std::string_view name) {
  if (boost::beast::iequals(name, "x-forwarded-for")) return ProxyHeader::kXForwardedFor;
  if (boost::beast::iequals(name, "forwarded")) return ProxyHeader::kForwarded;
  return Invalid("the proxy header is X-Forwarded-For or Forwarded (got \"" + std::string(name) +
                 "\")");
}

std::string_view ProxyHeaderName(ProxyHeader header) {
  return header == ProxyHeader::kForwarded ? "Forwarded" : "X-Forwarded-For";
}

Result<TrustedProxies> TrustedProxies::Parse(std::string_view text) {
  TrustedProxies proxies;
  size_t pos = 0;
  while (pos < text.size()) {
    if (text[pos] == ',' || IsOws(text[pos])) {
      ++pos;
      continue;
    }
    size_t end = pos;
    while (end < text.size() && text[end] != ',' && !IsOws(text[end])) ++end;
    const std::string_view entry = text.substr(pos, end - pos);
    pos = end;

    const size_t slash = entry.find('/');
    const std::string_view written = entry.substr(0, slash);
    boost::system::error_code ec;
    const address parsed = boost::asio::ip::make_address(std::string(written), ec);
    if (ec || written.find('%') != std::string_view::npos) {
      return BadEntry(entry, "is not an IP address or network (such as 10.0.0.0/8 or ::1)");
    }
    Network network;
    const address a = Canonical(parsed);
    network.v4 = a.is_v4();
    const int bits = network.v4 ? 32 : 128;
    network.prefix = bits;
    if (slash != std::string_view::npos) {
      const std::string_view digits = entry.substr(slash + 1);
      int prefix = -1;
      const auto [last, perr] =
          std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
      // An IPv4-mapped network counts its prefix over the 128 bits.
      const int given_bits = parsed.is_v6() ? 128 : 32;
      if (digits.empty() || perr != std::errc() || last != digits.data() + digits.size() ||
          prefix < given_bits - bits || prefix > given_bits) {
        return BadEntry(entry, "has no prefix length between " + std::to_string(given_bits - bits) +
                                   " and " + std::to_string(given_bits));
      }
      network.prefix = prefix - (given_bits - bits);
    }
    if (network.v4) {
      const auto bytes = a.to_v4().to_bytes();
      std::memcpy(network.bytes.data(), bytes.data(), bytes.size());
    } else {
      network.bytes = a.to_v6().to_bytes();
    }
    for (int bit = network.prefix; bit < bits; ++bit) {
      if (network.bytes[bit / 8] & (0x80 >> (bit % 8))) {
        return BadEntry(entry,
                        "sets address bits past its prefix length (a network is written with "
                        "them clear, as 10.0.0.0/8)");
      }
    }
    proxies.networks_.push_back(network);
  }
  return proxies;
}

bool TrustedProxies::Contains(const address& given) const {
  const address a = Canonical(given);
  std::array<uint8_t, 16> bytes{};
  if (a.is_v4()) {
    const auto v4 = a.to_v4().to_bytes();
    std::memcpy(bytes.data(), v4.data(), v4.size());
  } else {
    bytes = a.to_v6().to_bytes();
  }
  for (const Network& network : networks_) {
    if (network.v4 != a.is_v4()) continue;
    const int whole = network.prefix / 8;
    const int rest = network.prefix % 8;
    if (std::memcmp(bytes.data(), network.bytes.data(), static_cast<size_t>(whole)) != 0) continue;
    if (rest != 0) {
      const uint8_t mask = static_cast<uint8_t>(0xff00 >> rest);
      if ((bytes[whole] & mask) != (network.bytes[whole] & mask)) continue;
    }
    return true;
  }
  return false;
}

std::optional<std::string> ForwardedClient(const TrustedProxies& trusted, ProxyHeader header,
                                           const address& peer,
                                           std::span<const std::string_view> fields) {
  if (fields.empty() || !trusted.Contains(peer)) return std::nullopt;
  // The fields from the last (the nearest proxy's) to the first, each read
  // only when the walk gets to it: what lies to the left of the client is
  // not looked at, however it is written.
  std::optional<address> leftmost;  // the last trusted hop passed over
  for (size_t f = fields.size(); f-- > 0;) {
    std::vector<std::optional<address>> hops;  // left to right
    if (header == ProxyHeader::kForwarded) {
      std::vector<std::optional<std::string>> fors;
      // A malformed field cannot be read from its right end: the client
      // it names, if any, is not known.
      if (!ForwardedReader(fields[f]).Read(&fors)) return "unknown";
      for (const std::optional<std::string>& node : fors) {
        hops.push_back(node ? ParseHop(*node) : std::nullopt);
      }
    } else {
      const std::string_view field = fields[f];
      for (size_t pos = 0; pos <= field.size();) {
        size_t comma = field.find(',', pos);
        if (comma == std::string_view::npos) comma = field.size();
        std::string_view hop = field.substr(pos, comma - pos);
        while (!hop.empty() && IsOws(hop.front())) hop.remove_prefix(1);
        while (!hop.empty() && IsOws(hop.back())) hop.remove_suffix(1);
        if (!hop.empty()) hops.push_back(ParseHop(hop));
        pos = comma + 1;
      }
    }
    for (size_t i = hops.size(); i-- > 0;) {
      if (!hops[i]) return "unknown";
      if (!trusted.Contains(*hops[i])) return hops[i]->to_string();
      leftmost = hops[i];
    }
  }
  // Every hop trusted: the leftmost; no hop at all: no list.
  if (!leftmost) return std::nullopt;
  return leftmost->to_string();
}

}  // namespace bantay::server
