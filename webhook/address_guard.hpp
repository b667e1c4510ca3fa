#pragma once
// The SSRF guard for webhook URLs (issue 6): which URLs and which resolved addresses cogwheel may
// send webhooks to. Pure checks here; resolution in resolve_checked.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cogwheel::webhook {

// Addresses that are allowed although the guard would refuse them: exact addresses ("127.0.0.1",
// "::1") or CIDR ranges ("10.0.0.0/8", "fd00::/8"). Parsed from the --webhook-allow option.
struct guard_options {
  std::vector<std::string> allow;
};

// A webhook URL taken apart. `host` is the host as written (lower-cased, IPv6 without brackets).
struct target_url {
  bool tls = false;  // https
  std::string host;
  std::uint16_t port = 0;  // 80 / 443 when the URL has none
  std::string target;      // path and query, "/" when empty; never the fragment
  // "https://host:port": the key of per-endpoint limits and connection reuse.
  std::string endpoint() const;
};

// Parses an http(s) URL (Boost.URL). Refuses, with a message that says why: another scheme, no
// host, user info, a port 0 or out of range, a host that is an odd IPv4 spelling ("2130706433",
// "0x7f000001", "127.1", "0177.0.0.1", any all-numeric-and-dots or hex host that is not four
// decimal octets), and a literal IP address that address_refusal refuses. Host names are not
// resolved. Used at create (422) and before every delivery.
struct parsed_url {
  std::optional<target_url> url;
  std::string error;  // set when url is empty, e.g. "webhook host 127.0.0.1 is a loopback address"
};
parsed_url parse_webhook_url(std::string_view url, const guard_options& opts);

// Why an address may not be dialled ("loopback", "private", "link-local", "CGNAT (100.64.0.0/10)",
// "multicast", "unspecified", "reserved", "broadcast", ...), or nullopt when it may. IPv6 forms
// that embed an IPv4 address are judged by that address: IPv4-mapped ::ffff:a.b.c.d,
// IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16, Teredo
// 2001::/32; plus IPv6's own ranges (::1, ::, fc00::/7, fe80::/10, fec0::/10, ff00::/8, 100::/64
// discard, 2001:db8::/32 documentation). An address in opts.allow is always allowed.
std::optional<std::string> address_refusal(const boost::asio::ip::address& a,
                                           const guard_options& opts);

// Resolves the URL's host (a literal address is not resolved) within `timeout` and checks every
// address: when any address is refused the whole URL is refused (a DNS answer mixing public and
// private addresses is refused). `endpoints` are what the sender dials, and only those.
struct resolved {
  std::vector<boost::asio::ip::tcp::endpoint> endpoints;
  std::string error;  // "" when endpoints is usable
};
boost::asio::awaitable<resolved> resolve_checked(const target_url& url, const guard_options& opts,
                                                 std::chrono::milliseconds timeout);

}  // namespace cogwheel::webhook
