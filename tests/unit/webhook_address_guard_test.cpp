#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "webhook/address_guard.hpp"

using namespace cogwheel::webhook;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

const guard_options no_allow{};

// Why the address is refused, "allowed" when it is not.
std::string refusal(const std::string& address, const guard_options& opts = {}) {
  return address_refusal(boost::asio::ip::make_address(address), opts).value_or("allowed");
}

std::string parse_error(const std::string& url, const guard_options& opts = {}) {
  const auto p = parse_webhook_url(url, opts);
  CHECK_FALSE(p.url);
  return p.error;
}

target_url url_for(std::string host, std::uint16_t port = 80) {
  return target_url{false, std::move(host), port, "/"};
}

// Runs resolve_checked to completion on a private io_context.
resolved resolve(const target_url& url, const guard_options& opts,
                 std::chrono::milliseconds timeout = 5s) {
  boost::asio::io_context io;
  auto result =
      boost::asio::co_spawn(io, resolve_checked(url, opts, timeout), boost::asio::use_future);
  io.run();
  return result.get();
}

}  // namespace

// -- parse_webhook_url: taking URLs apart ------------------------------------------------------

TEST_CASE("an https URL is taken apart", "[webhook][address_guard]") {
  const auto p = parse_webhook_url("HTTPS://Hooks.Example.COM/a/b%20c?x=1&y=2#frag", no_allow);
  REQUIRE(p.url);
  CHECK(p.error.empty());
  CHECK(p.url->tls);
  CHECK(p.url->host == "hooks.example.com");
  CHECK(p.url->port == 443);
  CHECK(p.url->target == "/a/b%20c?x=1&y=2");
  CHECK(p.url->endpoint() == "https://hooks.example.com:443");
}

TEST_CASE("an http URL gets port 80 and an empty path becomes /", "[webhook][address_guard]") {
  const auto p = parse_webhook_url("http://example.com", no_allow);
  REQUIRE(p.url);
  CHECK_FALSE(p.url->tls);
  CHECK(p.url->port == 80);
  CHECK(p.url->target == "/");
  CHECK(p.url->endpoint() == "http://example.com:80");

  const auto q = parse_webhook_url("http://example.com?only=query", no_allow);
  REQUIRE(q.url);
  CHECK(q.url->target == "/?only=query");

  const auto e = parse_webhook_url("http://example.com:/x", no_allow);
  REQUIRE(e.url);
  CHECK(e.url->port == 80);
}

TEST_CASE("explicit ports are kept and bad ones refused", "[webhook][address_guard]") {
  const auto p = parse_webhook_url("https://example.com:8443/hook", no_allow);
  REQUIRE(p.url);
  CHECK(p.url->port == 8443);
  CHECK(p.url->endpoint() == "https://example.com:8443");
  REQUIRE(parse_webhook_url("http://example.com:65535/", no_allow).url);

  CHECK(parse_error("http://example.com:0/") == "webhook URL port 0 is out of range (1-65535)");
  CHECK(parse_error("http://example.com:65536/") ==
        "webhook URL port 65536 is out of range (1-65535)");
  CHECK_THAT(parse_error("http://example.com:99999999999999999999/"), Contains("out of range"));
}

TEST_CASE("IPv6 literals lose their brackets", "[webhook][address_guard]") {
  const auto p = parse_webhook_url("https://[2606:4700:4700::1111]:8443/x", no_allow);
  REQUIRE(p.url);
  CHECK(p.url->host == "2606:4700:4700::1111");
  CHECK(p.url->port == 8443);
  CHECK(p.url->endpoint() == "https://[2606:4700:4700::1111]:8443");

  const auto upper = parse_webhook_url("http://[2001:4860:4860::8888]/", no_allow);
  REQUIRE(upper.url);
  CHECK(upper.url->host == "2001:4860:4860::8888");
}

TEST_CASE("schemes other than http and https are refused", "[webhook][address_guard]") {
  for (const auto* url : {"ftp://example.com/", "ws://example.com/", "file:///etc/passwd",
                          "gopher://example.com/", "mailto:a@example.com", "javascript:alert(1)"}) {
    INFO(url);
    CHECK(parse_error(url) == "webhook URL must use http or https");
  }
}

TEST_CASE("URLs without a host or that are not URLs are refused", "[webhook][address_guard]") {
  CHECK(parse_error("http:///path") == "webhook URL has no host");
  CHECK(parse_error("http:path") == "webhook URL has no host");
  CHECK(parse_error("https://:443/") == "webhook URL has no host");
  CHECK(parse_error("example.com/hook") == "webhook URL is not a valid absolute URL");
  CHECK(parse_error("http://exa mple.com/") == "webhook URL is not a valid absolute URL");
  CHECK(parse_error("") == "webhook URL is not a valid absolute URL");
}

TEST_CASE("user info is refused", "[webhook][address_guard]") {
  CHECK(parse_error("http://user:pass@example.com/") == "webhook URL must not contain user info");
  CHECK(parse_error("http://user@example.com/") == "webhook URL must not contain user info");
  CHECK(parse_error("http://@example.com/") == "webhook URL must not contain user info");
  // The classic confusion: the host is 10.0.0.1, not example.com.
  CHECK(parse_error("http://example.com@10.0.0.1/") == "webhook URL must not contain user info");
}

TEST_CASE("odd IPv4 spellings are refused", "[webhook][address_guard]") {
  CHECK(parse_error("http://0x7f000001/") ==
        "webhook host 0x7f000001 is not a valid IPv4 address spelling");
  for (const auto* host :
       {"2130706433", "0x7f000001", "0X7F000001", "127.1", "127.0.1", "0177.0.0.1", "017700000001",
        "0x7f.0.0.1", "127.000.000.001", "127.0.0.01", "1.2.3.4.5", "256.0.0.1", "127.0.0.1.",
        "10.0.0.1.", "0", "0x", "foo.123", "example.0x10"}) {
    INFO(host);
    const auto error = parse_error(std::string("http://") + host + "/");
    CHECK_THAT(error, Contains("is not a valid IPv4 address spelling"));
  }
}

TEST_CASE("odd IPv4 spellings are refused even when allowlisted", "[webhook][address_guard]") {
  const guard_options opts{{"127.0.0.0/8"}};
  CHECK_THAT(parse_error("http://2130706433/", opts),
             Contains("not a valid IPv4 address spelling"));
  CHECK_THAT(parse_error("http://127.1/", opts), Contains("not a valid IPv4 address spelling"));
  CHECK_THAT(parse_error("http://127.0.0.1./", opts),
             Contains("not a valid IPv4 address spelling"));
  REQUIRE(parse_webhook_url("http://127.0.0.1/", opts).url);
}

TEST_CASE("hosts that start like a dotted quad are taken whole", "[webhook][address_guard]") {
  // Boost.URL 1.81 alone would read host 1.2.3.4 and path ".example.com/x" here.
  const auto p = parse_webhook_url("http://1.2.3.4.example.com:8080/x?y=1", no_allow);
  REQUIRE(p.url);
  CHECK(p.url->host == "1.2.3.4.example.com");
  CHECK(p.url->port == 8080);
  CHECK(p.url->target == "/x?y=1");
  CHECK(parse_error("http://127.0.0.1.:8080/") ==
        "webhook host 127.0.0.1. is not a valid IPv4 address spelling");
  CHECK(parse_error("http://8.8.8.8.5/") ==
        "webhook host 8.8.8.8.5 is not a valid IPv4 address spelling");
  CHECK(parse_error("http://example.com:80x/") == "webhook URL is not a valid absolute URL");
  CHECK(parse_error("http://[::1]x/") == "webhook URL is not a valid absolute URL");
}

TEST_CASE("names that only look numeric in part are names", "[webhook][address_guard]") {
  for (const auto* host : {"123.example.com", "0x7f.example.com", "example.com.", "deadbeef",
                           "a-b_c.example", "1e100.net"}) {
    INFO(host);
    const auto p = parse_webhook_url(std::string("http://") + host + "/", no_allow);
    CHECK(p.url);
    CHECK(p.error.empty());
  }
}

TEST_CASE("percent-encoded hosts are judged decoded", "[webhook][address_guard]") {
  CHECK(parse_error("http://%31%32%37.0.0.1/") == "webhook host 127.0.0.1 is a loopback address");
  const auto p = parse_webhook_url("http://%65xample.com/", no_allow);
  REQUIRE(p.url);
  CHECK(p.url->host == "example.com");
  CHECK_THAT(parse_error("http://exa%2fmple.com/"), Contains("is not a valid host name"));
  CHECK_THAT(parse_error("http://exa%00mple.com/"), Contains("is not a valid host name"));
}

TEST_CASE("literal addresses are judged at parse time", "[webhook][address_guard]") {
  CHECK(parse_error("http://10.1.2.3/") == "webhook host 10.1.2.3 is a private address");
  CHECK(parse_error("http://127.0.0.1:8080/") == "webhook host 127.0.0.1 is a loopback address");
  CHECK(parse_error("http://0.0.0.0/") == "webhook host 0.0.0.0 is an unspecified address");
  CHECK(parse_error("http://169.254.169.254/latest/meta-data/") ==
        "webhook host 169.254.169.254 is a link-local address");
  CHECK(parse_error("http://100.64.0.1/") ==
        "webhook host 100.64.0.1 is a CGNAT (100.64.0.0/10) address");
  CHECK(parse_error("http://[::1]/") == "webhook host ::1 is a loopback address");
  CHECK(parse_error("http://[::FFFF:127.0.0.1]/") ==
        "webhook host ::ffff:127.0.0.1 is an IPv4-mapped loopback address");
  CHECK(parse_error("http://[fd00::1]/") ==
        "webhook host fd00::1 is a unique-local (fc00::/7) address");
  CHECK_THAT(parse_error("http://[v1.fe]/"), Contains("is not a supported address"));

  const auto p = parse_webhook_url("http://93.184.216.34/", no_allow);
  REQUIRE(p.url);
  CHECK(p.url->host == "93.184.216.34");
}

TEST_CASE("host names are not resolved when parsing", "[webhook][address_guard]") {
  const auto p = parse_webhook_url("http://localhost:5000/hook", no_allow);
  REQUIRE(p.url);
  CHECK(p.url->host == "localhost");
}

TEST_CASE("the allowlist lets tests reach loopback", "[webhook][address_guard]") {
  const guard_options opts{{"127.0.0.1"}};
  const auto p = parse_webhook_url("http://127.0.0.1:9999/hook", opts);
  REQUIRE(p.url);
  CHECK(p.url->endpoint() == "http://127.0.0.1:9999");
  REQUIRE(parse_webhook_url("http://[::ffff:127.0.0.1]:9999/hook", opts).url);
  CHECK(parse_error("http://127.0.0.2/", opts) == "webhook host 127.0.0.2 is a loopback address");
  CHECK(parse_error("http://[::1]/", opts) == "webhook host ::1 is a loopback address");
}

// -- address_refusal: IPv4 --------------------------------------------------------------------

TEST_CASE("IPv4 ranges that are refused", "[webhook][address_guard]") {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"127.0.0.1", "loopback"},
      {"127.255.255.254", "loopback"},
      {"10.0.0.0", "private"},
      {"10.255.255.255", "private"},
      {"172.16.0.0", "private"},
      {"172.31.255.255", "private"},
      {"192.168.0.1", "private"},
      {"169.254.0.1", "link-local"},
      {"169.254.169.254", "link-local"},
      {"100.64.0.0", "CGNAT (100.64.0.0/10)"},
      {"100.127.255.255", "CGNAT (100.64.0.0/10)"},
      {"224.0.0.1", "multicast"},
      {"239.255.255.255", "multicast"},
      {"0.0.0.0", "unspecified"},
      {"0.1.2.3", "reserved (0.0.0.0/8)"},
      {"0.255.255.255", "reserved (0.0.0.0/8)"},
      {"240.0.0.1", "reserved (240.0.0.0/4)"},
      {"255.255.255.254", "reserved (240.0.0.0/4)"},
      {"255.255.255.255", "broadcast"},
  };
  for (const auto& [address, kind] : cases) {
    INFO(address);
    CHECK(refusal(address) == kind);
  }
}

TEST_CASE("IPv4 addresses next to refused ranges are allowed", "[webhook][address_guard]") {
  for (const auto* address :
       {"1.0.0.0", "8.8.8.8", "9.255.255.255", "11.0.0.0", "126.255.255.255", "128.0.0.0",
        "172.15.255.255", "172.32.0.0", "192.167.255.255", "192.169.0.0", "169.253.255.255",
        "169.255.0.0", "100.63.255.255", "100.128.0.0", "223.255.255.255", "93.184.216.34"}) {
    INFO(address);
    CHECK(refusal(address) == "allowed");
  }
}

// -- address_refusal: IPv6 --------------------------------------------------------------------

TEST_CASE("IPv6 ranges that are refused", "[webhook][address_guard]") {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"::1", "loopback"},
      {"::", "unspecified"},
      {"fc00::1", "unique-local (fc00::/7)"},
      {"fdff:ffff::1", "unique-local (fc00::/7)"},
      {"fe80::1", "link-local"},
      {"febf:ffff::1", "link-local"},
      {"fec0::1", "site-local (fec0::/10)"},
      {"feff::1", "site-local (fec0::/10)"},
      {"ff02::1", "multicast"},
      {"ff0e::1", "multicast"},
      {"100::1", "discard-only (100::/64)"},
      {"100::ffff:ffff:ffff:ffff", "discard-only (100::/64)"},
      {"2001:db8::1", "documentation (2001:db8::/32)"},
      {"2001:db8:ffff::1", "documentation (2001:db8::/32)"},
  };
  for (const auto& [address, kind] : cases) {
    INFO(address);
    CHECK(refusal(address) == kind);
  }
}

TEST_CASE("public IPv6 addresses are allowed", "[webhook][address_guard]") {
  for (const auto* address : {"2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450::1",
                              "100:0:0:1::1", "fbff::1", "2001:db9::1", "::2:0:0:1"}) {
    INFO(address);
    CHECK(refusal(address) == "allowed");
  }
}

TEST_CASE("IPv6 forms embedding IPv4 are judged by the IPv4 address", "[webhook][address_guard]") {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"::ffff:127.0.0.1", "IPv4-mapped loopback"},
      {"::ffff:7f00:1", "IPv4-mapped loopback"},
      {"::ffff:10.1.2.3", "IPv4-mapped private"},
      {"::ffff:169.254.169.254", "IPv4-mapped link-local"},
      {"::ffff:0.0.0.0", "IPv4-mapped unspecified"},
      {"::127.0.0.1", "IPv4-compatible loopback"},
      {"::192.168.1.1", "IPv4-compatible private"},
      {"::0.0.0.2", "IPv4-compatible reserved (0.0.0.0/8)"},
      {"64:ff9b::7f00:1", "NAT64 loopback"},
      {"64:ff9b::10.0.0.1", "NAT64 private"},
      {"64:ff9b:1::a00:1", "NAT64 private"},
      {"64:ff9b:1:abcd::1", "local-use NAT64 (64:ff9b:1::/48)"},
      {"2002:7f00:1::1", "6to4 loopback"},
      {"2002:a00:1:1234::1", "6to4 private"},
      {"2002:a9fe:a9fe::", "6to4 link-local"},
      {"2002:6440:1::", "6to4 CGNAT (100.64.0.0/10)"},
      {"2001::80ff:fffe", "Teredo loopback"},                        // 127.0.0.1 ^ 0xffffffff
      {"2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo private"},    // 10.0.0.1
      {"2001:0:4136:e378:8000:63bf:1fff:ffff", "Teredo multicast"},  // 224.0.0.0
  };
  for (const auto& [address, kind] : cases) {
    INFO(address);
    CHECK(refusal(address) == kind);
  }
  for (const auto* address :
       {"::ffff:8.8.8.8", "::8.8.8.8", "64:ff9b::808:808", "64:ff9b:1::808:808", "2002:808:808::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2" /* RFC 4380: 192.0.2.45 */,
        "2001::f7f7:f7f7" /* 8.8.8.8 */}) {
    INFO(address);
    CHECK(refusal(address) == "allowed");
  }
}

// -- the allowlist ----------------------------------------------------------------------------

TEST_CASE("exact allowlist entries allow that address only", "[webhook][address_guard]") {
  const guard_options opts{{"127.0.0.1", "::1"}};
  CHECK(refusal("127.0.0.1", opts) == "allowed");
  CHECK(refusal("::1", opts) == "allowed");
  CHECK(refusal("127.0.0.2", opts) == "loopback");
  CHECK(refusal("10.0.0.1", opts) == "private");
}

TEST_CASE("an allowlisted IPv4 address allows its IPv6 forms", "[webhook][address_guard]") {
  const guard_options opts{{"127.0.0.1"}};
  for (const auto* address :
       {"::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::", "2001::80ff:fffe"}) {
    INFO(address);
    CHECK(refusal(address, opts) == "allowed");
  }
  CHECK(refusal("::ffff:127.0.0.2", opts) == "IPv4-mapped loopback");
}

TEST_CASE("CIDR allowlist entries allow their range", "[webhook][address_guard]") {
  const guard_options opts{{"127.0.0.0/8", "::1/128", "fd00::/8", "10.1.0.0/16"}};
  CHECK(refusal("127.5.6.7", opts) == "allowed");
  CHECK(refusal("::ffff:127.5.6.7", opts) == "allowed");
  CHECK(refusal("::1", opts) == "allowed");
  CHECK(refusal("fd12:3456::1", opts) == "allowed");
  CHECK(refusal("fc00::1", opts) == "unique-local (fc00::/7)");
  CHECK(refusal("10.1.255.255", opts) == "allowed");
  CHECK(refusal("10.2.0.0", opts) == "private");
  CHECK(refusal("192.168.1.1", opts) == "private");
}

TEST_CASE("malformed allowlist entries allow nothing", "[webhook][address_guard]") {
  const guard_options opts{{"", "nonsense", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/x", "::1/129",
                            "localhost", "0x7f000001", "127.1"}};
  CHECK(refusal("10.0.0.1", opts) == "private");
  CHECK(refusal("::1", opts) == "loopback");
  CHECK(refusal("127.0.0.1", opts) == "loopback");
}

// -- resolve_checked --------------------------------------------------------------------------

TEST_CASE("a literal address is checked, not resolved", "[webhook][address_guard]") {
  const auto ok = resolve(url_for("93.184.216.34", 443), no_allow);
  CHECK(ok.error.empty());
  REQUIRE(ok.endpoints.size() == 1);
  CHECK(ok.endpoints[0].address().to_string() == "93.184.216.34");
  CHECK(ok.endpoints[0].port() == 443);

  const auto v6 = resolve(url_for("2606:4700:4700::1111", 8443), no_allow);
  REQUIRE(v6.endpoints.size() == 1);
  CHECK(v6.endpoints[0].address().to_string() == "2606:4700:4700::1111");

  const auto refused = resolve(url_for("10.0.0.1"), no_allow);
  CHECK(refused.endpoints.empty());
  CHECK(refused.error == "webhook host 10.0.0.1 is a private address");

  const auto allowed = resolve(url_for("127.0.0.1", 9000), guard_options{{"127.0.0.1"}});
  REQUIRE(allowed.endpoints.size() == 1);
  CHECK(allowed.endpoints[0] ==
        boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 9000));
}

TEST_CASE("odd spellings are refused before any resolution", "[webhook][address_guard]") {
  const auto r = resolve(url_for("127.1"), guard_options{{"127.0.0.0/8"}});
  CHECK(r.endpoints.empty());
  CHECK(r.error == "webhook host 127.1 is not a valid IPv4 address spelling");
}

TEST_CASE("a host name that resolves to loopback is refused", "[webhook][address_guard]") {
  const auto r = resolve(url_for("localhost", 8080), no_allow);
  CHECK(r.endpoints.empty());
  CHECK_THAT(r.error, Contains("webhook host localhost resolves to "));
  CHECK_THAT(r.error, Contains("a loopback address"));
}

TEST_CASE("a host name whose addresses are all allowlisted is allowed",
          "[webhook][address_guard]") {
  const auto r = resolve(url_for("localhost", 8080), guard_options{{"127.0.0.1", "::1"}});
  INFO(r.error);
  CHECK(r.error.empty());
  REQUIRE_FALSE(r.endpoints.empty());
  for (const auto& e : r.endpoints) {
    CHECK(e.address().is_loopback());
    CHECK(e.port() == 8080);
  }
}

TEST_CASE("one refused address refuses the whole host name", "[webhook][address_guard]") {
  // localhost resolves to 127.0.0.1 and, where IPv6 is configured, also to ::1.
  const auto r = resolve(url_for("localhost"), guard_options{{"127.0.0.1"}});
  if (r.error.empty()) {
    REQUIRE_FALSE(r.endpoints.empty());
    for (const auto& e : r.endpoints) CHECK(e.address().to_string() == "127.0.0.1");
  } else {
    CHECK(r.endpoints.empty());
    CHECK(r.error == "webhook host localhost resolves to ::1, a loopback address");
  }
}

TEST_CASE("a resolution that cannot finish in time times out", "[webhook][address_guard]") {
  const auto r = resolve(url_for("localhost"), guard_options{{"127.0.0.1", "::1"}}, 0ms);
  CHECK(r.endpoints.empty());
  CHECK_THAT(r.error, Contains("timed out resolving webhook host localhost"));
}

TEST_CASE("invalid host names are refused without resolving", "[webhook][address_guard]") {
  const auto r = resolve(url_for(std::string(64, 'a') + ".example"), no_allow);
  CHECK(r.endpoints.empty());
  CHECK_THAT(r.error, Contains("is not a valid host name"));
}
