#include "webhook/address_guard.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/url/parse.hpp>
#include <cctype>
#include <charconv>
#include <memory>
#include <utility>

namespace cogwheel::webhook {
namespace {

namespace asio = boost::asio;
namespace ip = boost::asio::ip;
using boost::system::error_code;

// ---------------------------------------------------------------------------------------------
// Address ranges (pure)

template <std::size_t N>
bool in_prefix(const std::array<unsigned char, N>& a, const std::array<unsigned char, N>& net,
               unsigned len) {
  const unsigned whole = len / 8;
  if (!std::equal(a.begin(), a.begin() + whole, net.begin())) return false;
  if (len % 8 == 0) return true;
  const auto mask = static_cast<unsigned char>(0xffu << (8 - len % 8));
  return (a[whole] & mask) == (net[whole] & mask);
}

struct range {
  ip::address net;
  unsigned len;
  const char* kind;
};

bool in_range(const ip::address& a, const ip::address& net, unsigned len) {
  if (a.is_v4() && net.is_v4()) return in_prefix(a.to_v4().to_bytes(), net.to_v4().to_bytes(), len);
  if (a.is_v6() && net.is_v6()) return in_prefix(a.to_v6().to_bytes(), net.to_v6().to_bytes(), len);
  return false;
}

const std::vector<range>& v4_ranges() {
  static const std::vector<range> ranges = {
      {ip::make_address("255.255.255.255"), 32, "broadcast"},
      {ip::make_address("0.0.0.0"), 32, "unspecified"},
      {ip::make_address("0.0.0.0"), 8, "reserved (0.0.0.0/8)"},
      {ip::make_address("127.0.0.0"), 8, "loopback"},
      {ip::make_address("10.0.0.0"), 8, "private"},
      {ip::make_address("172.16.0.0"), 12, "private"},
      {ip::make_address("192.168.0.0"), 16, "private"},
      {ip::make_address("169.254.0.0"), 16, "link-local"},
      {ip::make_address("100.64.0.0"), 10, "CGNAT (100.64.0.0/10)"},
      {ip::make_address("224.0.0.0"), 4, "multicast"},
      {ip::make_address("240.0.0.0"), 4, "reserved (240.0.0.0/4)"},
  };
  return ranges;
}

// IPv6's own ranges, judged after the forms that embed an IPv4 address.
const std::vector<range>& v6_ranges() {
  static const std::vector<range> ranges = {
      {ip::make_address("::1"), 128, "loopback"},
      {ip::make_address("::"), 128, "unspecified"},
      {ip::make_address("fc00::"), 7, "unique-local (fc00::/7)"},
      {ip::make_address("fe80::"), 10, "link-local"},
      {ip::make_address("fec0::"), 10, "site-local (fec0::/10)"},
      {ip::make_address("ff00::"), 8, "multicast"},
      {ip::make_address("100::"), 64, "discard-only (100::/64)"},
      {ip::make_address("2001:db8::"), 32, "documentation (2001:db8::/32)"},
      // Local-use NAT64 with a prefix longer than /48 hides the IPv4 address elsewhere.
      {ip::make_address("64:ff9b:1::"), 48, "local-use NAT64 (64:ff9b:1::/48)"},
  };
  return ranges;
}

std::optional<std::string> kind_in(const std::vector<range>& ranges, const ip::address& a) {
  for (const auto& r : ranges)
    if (in_range(a, r.net, r.len)) return r.kind;
  return std::nullopt;
}

ip::address_v4 v4_at(const ip::address_v6::bytes_type& b, std::size_t at, unsigned char flip = 0) {
  return ip::address_v4(ip::address_v4::bytes_type{
      static_cast<unsigned char>(b[at] ^ flip), static_cast<unsigned char>(b[at + 1] ^ flip),
      static_cast<unsigned char>(b[at + 2] ^ flip), static_cast<unsigned char>(b[at + 3] ^ flip)});
}

bool zero(const ip::address_v6::bytes_type& b, std::size_t from, std::size_t to) {
  return std::all_of(b.begin() + static_cast<std::ptrdiff_t>(from),
                     b.begin() + static_cast<std::ptrdiff_t>(to),
                     [](unsigned char c) { return c == 0; });
}

struct embedded {
  ip::address_v4 v4;
  const char* form;
};

// The IPv4 address an IPv6 address stands for, if it is one of the forms that embed one.
std::optional<embedded> embedded_v4(const ip::address_v6& a) {
  const auto b = a.to_bytes();
  const ip::address x(a);
  if (in_range(x, ip::make_address("::ffff:0:0"), 96)) return embedded{v4_at(b, 12), "IPv4-mapped"};
  if (in_range(x, ip::make_address("::"), 96) && !in_range(x, ip::make_address("::"), 127))
    return embedded{v4_at(b, 12), "IPv4-compatible"};
  if (in_range(x, ip::make_address("64:ff9b::"), 96)) return embedded{v4_at(b, 12), "NAT64"};
  if (in_range(x, ip::make_address("64:ff9b:1::"), 48) && zero(b, 6, 12))
    return embedded{v4_at(b, 12), "NAT64"};
  if (in_range(x, ip::make_address("2002::"), 16)) return embedded{v4_at(b, 2), "6to4"};
  if (in_range(x, ip::make_address("2001::"), 32)) return embedded{v4_at(b, 12, 0xff), "Teredo"};
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// The allowlist (pure)

std::optional<range> parse_allow(std::string_view entry) {
  const auto slash = entry.find('/');
  error_code ec;
  const auto net = ip::make_address(std::string(entry.substr(0, slash)), ec);
  if (ec) return std::nullopt;
  const unsigned max = net.is_v4() ? 32 : 128;
  unsigned len = max;
  if (slash != std::string_view::npos) {
    const auto digits = entry.substr(slash + 1);
    const auto [end, err] = std::from_chars(digits.data(), digits.data() + digits.size(), len);
    if (digits.empty() || err != std::errc() || end != digits.data() + digits.size() || len > max)
      return std::nullopt;
  }
  return range{net, len, ""};
}

bool is_allowed(const ip::address& a, const guard_options& opts) {
  return std::any_of(opts.allow.begin(), opts.allow.end(), [&](const std::string& entry) {
    const auto r = parse_allow(entry);
    return r && in_range(a, r->net, r->len);
  });
}

std::optional<std::string> v6_refusal(const ip::address_v6& a, const guard_options& opts) {
  if (const auto e = embedded_v4(a)) {
    if (is_allowed(ip::address(e->v4), opts)) return std::nullopt;
    const auto kind = kind_in(v4_ranges(), ip::address(e->v4));
    if (!kind) return std::nullopt;
    return std::string(e->form) + " " + *kind;
  }
  return kind_in(v6_ranges(), ip::address(a));
}

// "a private", "an IPv4-mapped loopback", "a unique-local"
std::string with_article(const std::string& kind) {
  const bool vowel = std::string_view("aeiouAEIOU").find(kind.front()) != std::string_view::npos &&
                     !kind.starts_with("uni");
  return (vowel ? "an " : "a ") + kind;
}

std::string refused_host(std::string_view host, const std::string& kind) {
  return "webhook host " + std::string(host) + " is " + with_article(kind) + " address";
}

// ---------------------------------------------------------------------------------------------
// Host spellings (pure)

bool digits_only(std::string_view s) {
  return std::ranges::all_of(s, [](unsigned char c) { return std::isdigit(c) != 0; });
}

bool hex_only(std::string_view s) {
  return std::ranges::all_of(s, [](unsigned char c) { return std::isxdigit(c) != 0; });
}

// A label that inet_aton would read as a number: decimal, octal (0...) or hex (0x...).
bool numeric_label(std::string_view l) {
  if (l.starts_with("0x")) return hex_only(l.substr(2));
  return !l.empty() && digits_only(l);
}

std::vector<std::string_view> labels(std::string_view host) {
  std::vector<std::string_view> out;
  for (std::size_t start = 0;;) {
    const auto dot = host.find('.', start);
    out.push_back(host.substr(start, dot - start));
    if (dot == std::string_view::npos) return out;
    start = dot + 1;
  }
}

// Four decimal octets without leading zeros: the only IPv4 spelling accepted.
std::optional<ip::address_v4> canonical_v4(std::string_view host) {
  const auto parts = labels(host);
  if (parts.size() != 4) return std::nullopt;
  ip::address_v4::bytes_type b{};
  for (std::size_t i = 0; i < 4; ++i) {
    const auto p = parts[i];
    unsigned v = 256;
    if (p.empty() || p.size() > 3 || !digits_only(p) || (p.size() > 1 && p[0] == '0'))
      return std::nullopt;
    std::from_chars(p.data(), p.data() + p.size(), v);
    if (v > 255) return std::nullopt;
    b[i] = static_cast<unsigned char>(v);
  }
  return ip::address_v4(b);
}

// Like the WHATWG URL standard: a host whose last label is a number is an IPv4 address. A
// trailing dot is not stripped first, so "127.0.0.1." is an odd spelling too.
bool odd_v4_spelling(std::string_view host) {
  if (canonical_v4(host)) return false;
  if (host.ends_with('.')) host.remove_suffix(1);
  return !host.empty() && numeric_label(labels(host).back());
}

bool valid_name(std::string_view host) {
  if (host.ends_with('.')) host.remove_suffix(1);
  if (host.empty() || host.size() > 253) return false;
  const auto name_char = [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_'; };
  return std::ranges::all_of(labels(host), [&](std::string_view l) {
    return !l.empty() && l.size() <= 63 && std::ranges::all_of(l, name_char);
  });
}

// A literal address, when the host is one (canonical IPv4, or IPv6 without brackets).
std::optional<ip::address> literal(std::string_view host) {
  if (const auto v4 = canonical_v4(host)) return ip::address(*v4);
  if (host.find(':') == std::string_view::npos) return std::nullopt;
  error_code ec;
  const auto v6 = ip::make_address_v6(std::string(host), ec);
  if (ec || v6.scope_id() != 0) return std::nullopt;
  return ip::address(v6);
}

// The host for a message: bytes that are not printable ASCII percent-encoded.
std::string printable(std::string_view host) {
  std::string out;
  for (const unsigned char c : host) {
    if (c > 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      constexpr std::string_view hex = "0123456789ABCDEF";
      out += {'%', hex[c >> 4], hex[c & 0xf]};
    }
  }
  return out;
}

// Why a host that is not a literal address may not be used, or "".
std::string name_problem(std::string_view host) {
  if (odd_v4_spelling(host))
    return "webhook host " + printable(host) + " is not a valid IPv4 address spelling";
  if (!valid_name(host)) return "webhook host " + printable(host) + " is not a valid host name";
  return "";
}

// Why the host may not be used at all, or "" (names are not resolved here).
std::string host_problem(std::string_view host, const guard_options& opts) {
  if (const auto a = literal(host)) {
    const auto why = address_refusal(*a, opts);
    return why ? refused_host(host, *why) : "";
  }
  if (host.find(':') != std::string_view::npos)
    return "webhook host " + std::string(host) + " is not a valid IPv6 address";
  return name_problem(host);
}

// ---------------------------------------------------------------------------------------------
// URL parts (pure)

std::string lower(std::string s) {
  std::ranges::transform(s, s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

parsed_url failure(std::string error) {
  return parsed_url{std::nullopt, std::move(error)};
}

// The port as written, the scheme's default when there is none (or it is empty).
std::optional<std::uint16_t> port_of(const boost::urls::url_view& u, bool tls) {
  const auto p = u.port();
  if (!u.has_port() || p.empty()) return tls ? 443 : 80;
  unsigned long v = 0;
  const auto [end, err] = std::from_chars(p.data(), p.data() + p.size(), v);
  if (err != std::errc() || end != p.data() + p.size() || v == 0 || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

std::string target_of(const boost::urls::url_view& u) {
  std::string t = u.encoded_path().empty() ? "/" : std::string(u.encoded_path());
  if (u.has_query()) t += "?" + std::string(u.encoded_query());
  return t;
}

// The host lower-cased and percent-decoded, IPv6 without brackets; "" when there is none.
std::string host_of(const boost::urls::url_view& u) {
  if (!u.has_authority()) return "";
  if (u.host_type() == boost::urls::host_type::ipv6) return lower(u.host_address());
  return lower(u.host());
}

// Boost.URL 1.81 reads a host that starts like a dotted quad ("1.2.3.4.5", "127.0.0.1.",
// "10.0.0.1.example.com") as that IPv4 address followed by a path that does not start with "/".
bool misparsed(const boost::urls::url_view& u) {
  return u.has_authority() && !u.encoded_path().empty() && !u.encoded_path().starts_with('/');
}

// parse_uri, but such a URL is parsed again with the host's first digit percent-encoded, which
// makes the whole host a reg-name; `storage` then holds the text the view refers to.
boost::system::result<boost::urls::url_view> parse_http_uri(std::string_view url,
                                                            std::string& storage) {
  auto r = boost::urls::parse_uri(url);
  if (!r || !misparsed(*r) || r->host_type() != boost::urls::host_type::ipv4) return r;
  const auto at = static_cast<std::size_t>(r->encoded_host().data() - url.data());
  storage = std::string(url.substr(0, at)) + "%3" + url[at] + std::string(url.substr(at + 1));
  return boost::urls::parse_uri(storage);
}

std::string check_authority(const boost::urls::url_view& u) {
  if (u.has_userinfo()) return "webhook URL must not contain user info";
  if (u.host_type() == boost::urls::host_type::ipvfuture)
    return "webhook host " + std::string(u.encoded_host()) + " is not a supported address";
  if (host_of(u).empty()) return "webhook URL has no host";
  return "";
}

}  // namespace

// -----------------------------------------------------------------------------------------------

std::string target_url::endpoint() const {
  const bool v6 = host.find(':') != std::string::npos;
  return std::string(tls ? "https://" : "http://") + (v6 ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

std::optional<std::string> address_refusal(const ip::address& a, const guard_options& opts) {
  if (is_allowed(a, opts)) return std::nullopt;
  if (a.is_v4()) return kind_in(v4_ranges(), a);
  return v6_refusal(a.to_v6(), opts);
}

parsed_url parse_webhook_url(std::string_view url, const guard_options& opts) {
  std::string storage;
  const auto r = parse_http_uri(url, storage);
  if (!r || misparsed(*r)) return failure("webhook URL is not a valid absolute URL");
  const auto& u = *r;
  const auto scheme = u.scheme_id();
  if (scheme != boost::urls::scheme::http && scheme != boost::urls::scheme::https)
    return failure("webhook URL must use http or https");
  if (auto problem = check_authority(u); !problem.empty()) return failure(std::move(problem));
  target_url t;
  t.tls = scheme == boost::urls::scheme::https;
  t.host = host_of(u);
  if (auto problem = host_problem(t.host, opts); !problem.empty())
    return failure(std::move(problem));
  const auto port = port_of(u, t.tls);
  if (!port)
    return failure("webhook URL port " + std::string(u.port()) + " is out of range (1-65535)");
  t.port = *port;
  t.target = target_of(u);
  return parsed_url{std::move(t), ""};
}

// -----------------------------------------------------------------------------------------------
// Resolution

namespace {

using results = ip::tcp::resolver::results_type;
using lookup_channel = asio::experimental::concurrent_channel<void(error_code, results)>;

struct lookup {
  error_code ec;
  std::vector<ip::address> addresses;
  bool timed_out = false;
};

// getaddrinfo cannot be interrupted, so the lookup reports into a channel that is abandoned at the
// deadline; the lookup finishes in the background and its answer is dropped.
asio::awaitable<lookup> lookup_within(const std::string& host, std::chrono::milliseconds timeout) {
  using namespace asio::experimental::awaitable_operators;
  const auto ex = co_await asio::this_coro::executor;
  auto channel = std::make_shared<lookup_channel>(ex, 1);
  ip::tcp::resolver resolver(ex);
  resolver.async_resolve(
      host, "", [channel](error_code ec, results r) { channel->try_send(ec, std::move(r)); });
  asio::steady_timer timer(ex, timeout);
  auto winner = co_await (channel->async_receive(asio::as_tuple(asio::use_awaitable)) ||
                          timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (winner.index() == 1) co_return lookup{{}, {}, true};
  auto [ec, answer] = std::get<0>(std::move(winner));
  lookup out{ec, {}, false};
  for (const auto& entry : answer) out.addresses.push_back(entry.endpoint().address());
  co_return out;
}

// The endpoints of a resolved host, or why they may not be dialled: refused when any is refused.
resolved check_addresses(const target_url& url, const std::vector<ip::address>& addresses,
                         const guard_options& opts) {
  if (addresses.empty()) return resolved{{}, "webhook host " + url.host + " did not resolve"};
  resolved out;
  for (const auto& a : addresses) {
    if (const auto why = address_refusal(a, opts))
      return resolved{{},
                      "webhook host " + url.host + " resolves to " + a.to_string() + ", " +
                          with_article(*why) + " address"};
    const ip::tcp::endpoint e(a, url.port);
    if (std::ranges::find(out.endpoints, e) == out.endpoints.end()) out.endpoints.push_back(e);
  }
  return out;
}

resolved check_literal(const target_url& url, const ip::address& a, const guard_options& opts) {
  if (const auto why = address_refusal(a, opts)) return resolved{{}, refused_host(url.host, *why)};
  return resolved{{ip::tcp::endpoint(a, url.port)}, ""};
}

std::string timed_out(const target_url& url, std::chrono::milliseconds timeout) {
  return "timed out resolving webhook host " + url.host + " (after " +
         std::to_string(timeout.count()) + " ms)";
}

}  // namespace

asio::awaitable<resolved> resolve_checked(const target_url& url, const guard_options& opts,
                                          std::chrono::milliseconds timeout) {
  if (const auto a = literal(url.host)) co_return check_literal(url, *a, opts);
  if (auto problem = host_problem(url.host, opts); !problem.empty())
    co_return resolved{{}, std::move(problem)};
  if (timeout <= std::chrono::milliseconds::zero()) co_return resolved{{}, timed_out(url, timeout)};
  const auto found = co_await lookup_within(url.host, timeout);
  if (found.timed_out) co_return resolved{{}, timed_out(url, timeout)};
  if (found.ec)
    co_return resolved{
        {}, "webhook host " + url.host + " did not resolve (" + found.ec.message() + ")"};
  co_return check_addresses(url, found.addresses, opts);
}

}  // namespace cogwheel::webhook
