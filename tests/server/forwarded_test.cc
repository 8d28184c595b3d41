// The client behind trusted proxies: the trusted list, and X-Forwarded-For
// and Forwarded read from their right ends.
#include "forwarded.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace bantay::server {
namespace {

using boost::asio::ip::make_address;

TrustedProxies Trusted(std::string_view text) {
  Result<TrustedProxies> proxies = TrustedProxies::Parse(text);
  EXPECT_TRUE(proxies.ok()) << text << ": " << proxies.error().ToString();
  return proxies.ok() ? *proxies : TrustedProxies();
}

TEST(ForwardedTest, TrustedAddressesAndNetworks) {
  const TrustedProxies proxies =
      Trusted(" 127.0.0.1,10.0.0.0/8  192.168.4.0/22,::1, 2001:db8::/32,,::ffff:172.16.0.0/108 ");
  const struct {
    const char* address;
    bool trusted;
  } cases[] = {
      {"127.0.0.1", true},        {"127.0.0.2", false},        {"10.0.0.0", true},
      {"10.255.255.255", true},   {"11.0.0.0", false},         {"9.255.255.255", false},
      {"192.168.4.0", true},      {"192.168.7.255", true},     {"192.168.8.0", false},
      {"192.168.3.255", false},   {"::1", true},               {"::2", false},
      {"2001:db8::7", true},      {"2001:db8:ffff:ffff::", true}, {"2001:db9::", false},
      // IPv4-mapped is IPv4, in the list and in what is looked up.
      {"::ffff:10.1.2.3", true},  {"::ffff:127.0.0.1", true},  {"172.16.0.1", true},
      {"172.31.255.255", true},   {"172.32.0.0", false},       {"::ffff:172.32.0.0", false},
      // An IPv4 network says nothing of IPv6 addresses with the same bits.
      {"::a00:1", false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(proxies.Contains(make_address(c.address)), c.trusted) << c.address;
  }
  EXPECT_TRUE(Trusted("").empty());
  EXPECT_TRUE(Trusted(" , ").empty());
  EXPECT_FALSE(Trusted("0.0.0.0/0").empty());
  EXPECT_TRUE(Trusted("0.0.0.0/0").Contains(make_address("203.0.113.9")));
  EXPECT_FALSE(Trusted("0.0.0.0/0").Contains(make_address("2001:db8::9")));
  EXPECT_TRUE(Trusted("::/0").Contains(make_address("2001:db8::9")));
}

TEST(ForwardedTest, AListEntryThatIsNoAddressOrNetworkIsRefused) {
  const struct {
    const char* text;
    const char* message;
  } cases[] = {
      {"10.0.0.0/8, proxy.example", "\"proxy.example\" is not an IP address or network (such as "
                                    "10.0.0.0/8 or ::1)"},
      {"10.0.0.1/8", "\"10.0.0.1/8\" sets address bits past its prefix length (a network is "
                     "written with them clear, as 10.0.0.0/8)"},
      {"10.0.0.0/33", "\"10.0.0.0/33\" has no prefix length between 0 and 32"},
      {"10.0.0.0/", "\"10.0.0.0/\" has no prefix length between 0 and 32"},
      {"10.0.0.0/-1", "\"10.0.0.0/-1\" has no prefix length between 0 and 32"},
      {"10.0.0.0/8x", "\"10.0.0.0/8x\" has no prefix length between 0 and 32"},
      {"::/129", "\"::/129\" has no prefix length between 0 and 128"},
      {"::ffff:10.0.0.0/95", "\"::ffff:10.0.0.0/95\" has no prefix length between 96 and 128"},
      {"fe80::1%1", "\"fe80::1%1\" is not an IP address or network (such as 10.0.0.0/8 or ::1)"},
      // A zone Asio would look up on this host, or read as zone 0.
      {"::1%x", "\"::1%x\" is not an IP address or network (such as 10.0.0.0/8 or ::1)"},
      {"fe80::1%lo/64", "\"fe80::1%lo/64\" is not an IP address or network (such as 10.0.0.0/8 or "
                        "::1)"},
      {"10.0.0.0/8;", "\"10.0.0.0/8;\" has no prefix length between 0 and 32"},
  };
  for (const auto& c : cases) {
    Result<TrustedProxies> proxies = TrustedProxies::Parse(c.text);
    ASSERT_FALSE(proxies.ok()) << c.text;
    EXPECT_EQ(proxies.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(proxies.error().message(), c.message);
  }
}

TEST(ForwardedTest, TheProxyHeaderIsOneOfTwo) {
  EXPECT_EQ(ParseProxyHeader("x-forwarded-for").value(), ProxyHeader::kXForwardedFor);
  EXPECT_EQ(ParseProxyHeader("X-Forwarded-For").value(), ProxyHeader::kXForwardedFor);
  EXPECT_EQ(ParseProxyHeader("FORWARDED").value(), ProxyHeader::kForwarded);
  Result<ProxyHeader> other = ParseProxyHeader("x-real-ip");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().message(),
            "the proxy header is X-Forwarded-For or Forwarded (got \"x-real-ip\")");
  EXPECT_EQ(ProxyHeaderName(ProxyHeader::kForwarded), "Forwarded");
  EXPECT_EQ(ProxyHeaderName(ProxyHeader::kXForwardedFor), "X-Forwarded-For");
}

std::optional<std::string> Client(ProxyHeader header, const char* peer,
                                  std::vector<std::string_view> fields,
                                  std::string_view trusted = "127.0.0.1, 10.0.0.0/8, ::1") {
  return ForwardedClient(Trusted(trusted), header, make_address(peer), fields);
}

constexpr auto kXff = ProxyHeader::kXForwardedFor;
constexpr auto kFwd = ProxyHeader::kForwarded;

TEST(ForwardedTest, XForwardedForIsReadFromItsRightEnd) {
  using V = std::vector<std::string_view>;
  EXPECT_EQ(Client(kXff, "127.0.0.1", {"203.0.113.9"}), "203.0.113.9");
  // What the client wrote to the left of the address the proxy saw is not
  // believed; proxies in the trusted list are passed over.
  EXPECT_EQ(Client(kXff, "127.0.0.1", {"198.51.100.1, 203.0.113.9"}), "203.0.113.9");
  EXPECT_EQ(Client(kXff, "127.0.0.1", {"198.51.100.1, 203.0.113.9,10.1.1.1 , 10.2.2.2"}),
            "203.0.113.9");
  // Several fields are one list, in their order.
  EXPECT_EQ(Client(kXff, "127.0.0.1", {"198.51.100.1", "203.0.113.9, 10.1.1.1"}), "203.0.113.9");
  EXPECT_EQ(Client(kXff, "127.0.0.1", {"203.0.113.9", "10.1.1.1"}), "203.0.113.9");
  // Every hop trusted: the leftmost.
  EXPECT_EQ(Client(kXff, "127.0.0.1", {"10.3.3.3, 10.1.1.1"}), "10.3.3.3");
  // Ports and brackets are dropped; IPv6 printed in its short form;
  // IPv4-mapped as IPv4.
  EXPECT_EQ(Client(kXff, "127.0.0.1", {"203.0.113.9:4711"}), "203.0.113.9");
  EXPECT_EQ(Client(kXff, "127.0.0.1", {"2001:DB8:0:0::7"}), "2001:db8::7");
  EXPECT_EQ(Client(kXff, "127.0.0.1", {"[2001:db8::7]:4711"}), "2001:db8::7");
  EXPECT_EQ(Client(kXff, "127.0.0.1", {"[2001:db8::7]"}), "2001:db8::7");
  EXPECT_EQ(Client(kXff, "127.0.0.1", {"::ffff:203.0.113.9"}), "203.0.113.9");
  EXPECT_EQ(Client(kXff, "127.0.0.1", {"203.0.113.9:_p1"}), "203.0.113.9");
  EXPECT_EQ(Client(kXff, "::1", {"203.0.113.9"}), "203.0.113.9");
  EXPECT_EQ(Client(kXff, "::ffff:127.0.0.1", {"203.0.113.9"}), "203.0.113.9");
  // The hop where the walk stops is no address: unknown. One past it (to
  // the left) does not matter.
  for (std::string_view hop :
       {"unknown", "proxy.example", "203.0.113.9:", "203.0.113.9:65536", "203.0.113.9:x",
        "[203.0.113.9]", "[2001:db8::7", "[2001:db8::7]x", "2001:db8::7:4711:1:2:3:4",
        "fe80::1%lo", "fe80::1%nosuch", "2001:db8::7%junk", "[2001:db8::7%1]:80",
        "203.0.113.9:_", "203.0.113.9:_a/b", "203.0.113.9 198.51.100.1", "\"203.0.113.9\""}) {
    EXPECT_EQ(Client(kXff, "127.0.0.1", {hop}), "unknown") << hop;
    const std::string list = std::string(hop) + ", 203.0.113.9";
    EXPECT_EQ(Client(kXff, "127.0.0.1", {list}), "203.0.113.9") << list;
  }
  // Empty elements are no hops; a list of none is no list.
  EXPECT_EQ(Client(kXff, "127.0.0.1", {" , 203.0.113.9 ,, "}), "203.0.113.9");
  EXPECT_EQ(Client(kXff, "127.0.0.1", {""}), std::nullopt);
  EXPECT_EQ(Client(kXff, "127.0.0.1", {" , ,"}), std::nullopt);
  EXPECT_EQ(Client(kXff, "127.0.0.1", V{}), std::nullopt);
  // From a peer that is not trusted nothing is read, whatever it sends.
  EXPECT_EQ(Client(kXff, "198.51.100.1", {"203.0.113.9"}), std::nullopt);
  EXPECT_EQ(Client(kXff, "127.0.0.1", {"203.0.113.9"}, ""), std::nullopt);
  EXPECT_EQ(Client(kXff, "10.0.0.1", {"203.0.113.9"}, "10.0.0.0/31"), "203.0.113.9");
  EXPECT_EQ(Client(kXff, "10.0.0.2", {"203.0.113.9"}, "10.0.0.0/31"), std::nullopt);
}

TEST(ForwardedTest, ForwardedIsReadFromItsRightEnd) {
  EXPECT_EQ(Client(kFwd, "127.0.0.1", {"for=203.0.113.9"}), "203.0.113.9");
  EXPECT_EQ(Client(kFwd, "127.0.0.1", {"For=198.51.100.1;proto=http, for=203.0.113.9;by=10.0.0.1"}),
            "203.0.113.9");
  EXPECT_EQ(Client(kFwd, "127.0.0.1",
                   {"for=198.51.100.1", "proto=https;for=\"[2001:db8:cafe::17]:4711\";host=a.b"}),
            "2001:db8:cafe::17");
  EXPECT_EQ(Client(kFwd, "127.0.0.1", {"for=\"203.0.113.9:4711\" , for=10.1.1.1"}),
            "203.0.113.9");
  // RFC 7239's obfuscated ports.
  EXPECT_EQ(Client(kFwd, "127.0.0.1", {"for=\"192.0.2.43:_abc\""}), "192.0.2.43");
  EXPECT_EQ(Client(kFwd, "127.0.0.1", {"for=\"[2001:db8::7]:_p.1-x\""}), "2001:db8::7");
  // A port needs quotes (':' is no token character).
  EXPECT_EQ(Client(kFwd, "127.0.0.1", {"for=203.0.113.9:80"}), "unknown");
  // Escapes in a quoted string are undone.
  EXPECT_EQ(Client(kFwd, "127.0.0.1", {R"(for="\[2001:db8::7\]")"}), "2001:db8::7");
  // Commas and semicolons inside quotes are text.
  EXPECT_EQ(Client(kFwd, "127.0.0.1", {R"(for=203.0.113.9;host="a,b;c")"}), "203.0.113.9");
  // Empty elements and empty pairs.
  EXPECT_EQ(Client(kFwd, "127.0.0.1", {", ;for=203.0.113.9;, ,"}), "203.0.113.9");
  // An element without "for", an obfuscated or unknown node: unknown.
  EXPECT_EQ(Client(kFwd, "127.0.0.1", {"for=203.0.113.9, proto=https"}), "unknown");
  EXPECT_EQ(Client(kFwd, "127.0.0.1", {"for=_hidden"}), "unknown");
  EXPECT_EQ(Client(kFwd, "127.0.0.1", {"for=unknown"}), "unknown");
  EXPECT_EQ(Client(kFwd, "127.0.0.1", {"for=_hidden, for=203.0.113.9"}), "203.0.113.9");
  // A malformed field anywhere: the list cannot be read, unknown.
  for (std::string_view field :
       {"for=", "for", "=203.0.113.9", "for=[2001:db8::7]", "for=\"203.0.113.9",
        "for=203.0.113.9;for=198.51.100.1", "for=203.0.113.9 x", "for=\"a\x01\"",
        "for=\"a\\", "f o r=203.0.113.9", "for=203.0.113.9;;by=\"x\"y"}) {
    EXPECT_EQ(Client(kFwd, "127.0.0.1", {field}), "unknown") << field;
    EXPECT_EQ(Client(kFwd, "127.0.0.1", {"for=203.0.113.9", field}), "unknown") << field;
    // Left of the client, it is not read; reached past trusted hops, it is.
    EXPECT_EQ(Client(kFwd, "127.0.0.1", {field, "for=203.0.113.9"}), "203.0.113.9") << field;
    EXPECT_EQ(Client(kFwd, "127.0.0.1", {field, "for=10.1.1.1"}), "unknown") << field;
  }
  EXPECT_EQ(Client(kFwd, "127.0.0.1", {" , "}), std::nullopt);
  EXPECT_EQ(Client(kFwd, "198.51.100.1", {"for=203.0.113.9"}), std::nullopt);
}

}  // namespace
}  // namespace bantay::server
