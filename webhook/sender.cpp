#include "webhook/sender.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <charconv>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>

namespace cogwheel::webhook {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace ssl = asio::ssl;
using steady = std::chrono::steady_clock;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

using request_t = bhttp::request<bhttp::string_body>;

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}

// Host header: the host as written (IPv6 in brackets), the port when it is not the scheme's.
std::string host_header(const target_url& u) {
  std::string h = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
  const std::uint16_t default_port = u.tls ? 443 : 80;
  if (u.port != default_port) h += ":" + std::to_string(u.port);
  return h;
}

// Headers the sender sets itself; a caller's header of these names is ignored.
bool owned_header(std::string_view name) {
  for (std::string_view own : {"host", "user-agent", "content-type", "content-length",
                               "transfer-encoding", "connection"}) {
    if (beast::iequals(name, own)) return true;
  }
  return false;
}

long long millis(std::chrono::milliseconds d) {
  return static_cast<long long>(d.count());
}

// How a request/response exchange on one connection ended.
enum class outcome {
  reusable,      // a complete response; the connection may serve another request
  close,         // a response (possibly capped); the connection is not reused
  failed_early,  // failed before any response byte: a reused connection may be retried
  failed,        // failed after part of the response
};

}  // namespace

struct sender::impl {
  struct connection {
    std::optional<beast::tcp_stream> plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
    beast::flat_buffer buffer;

    beast::tcp_stream& tcp() { return secure ? beast::get_lowest_layer(*secure) : *plain; }
  };

  explicit impl(const sender_options& opts) : tls(ssl::context::tls_client) {
    tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    tls.set_default_verify_paths();
    if (!opts.ca_file.empty()) {
      boost::system::error_code ec;
      tls.load_verify_file(opts.ca_file, ec);
      if (ec) {
        throw std::runtime_error("webhook sender: cannot load CA file " + opts.ca_file + ": " +
                                 ec.message());
      }
    }
    tls.set_verify_mode(ssl::verify_peer);
  }

  std::unique_ptr<connection> take_idle(const std::string& key) {
    std::lock_guard lock(mu);
    auto it = idle.find(key);
    if (it == idle.end() || it->second.empty()) return nullptr;
    auto c = std::move(it->second.back());
    it->second.pop_back();
    if (it->second.empty()) idle.erase(it);
    return c;
  }

  void put_idle(const std::string& key, std::unique_ptr<connection> c, std::size_t max) {
    c->tcp().expires_never();
    std::lock_guard lock(mu);
    auto& list = idle[key];
    if (list.size() < max) list.push_back(std::move(c));
    if (list.empty()) idle.erase(key);
  }

  ssl::context tls;
  std::mutex mu;
  std::map<std::string, std::vector<std::unique_ptr<connection>>> idle;
};

namespace {

// Writes the request and reads the response into `res`: header, then at most `response_limit`
// bytes of body, the first `excerpt_limit` of them kept.
template <typename Stream>
asio::awaitable<outcome> exchange(Stream& stream, beast::flat_buffer& buffer, const request_t& req,
                                  const sender_options& opts, send_result& res,
                                  boost::system::error_code& error) {
  auto [write_ec, written] = co_await bhttp::async_write(stream, req, use_tuple);
  (void)written;
  if (write_ec) {
    error = write_ec;
    co_return outcome::failed_early;
  }

  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // we count the bytes ourselves
  auto [header_ec, header_bytes] =
      co_await bhttp::async_read_header(stream, buffer, parser, use_tuple);
  (void)header_bytes;
  if (header_ec) {
    error = header_ec;
    co_return parser.got_some() ? outcome::failed : outcome::failed_early;
  }
  const auto& head = parser.get();
  res.status = static_cast<int>(head.result_int());
  if (auto it = head.find(bhttp::field::retry_after); it != head.end()) {
    res.retry_after = std::string(it->value());
  }

  std::array<char, 8192> chunk{};
  std::size_t total = 0;
  while (!parser.is_done()) {
    if (total >= opts.response_limit) co_return outcome::close;  // capped: the rest is not read
    const std::size_t room = std::min(chunk.size(), opts.response_limit - total);
    parser.get().body().data = chunk.data();
    parser.get().body().size = room;
    auto [read_ec, read] = co_await bhttp::async_read(stream, buffer, parser, use_tuple);
    (void)read;
    if (read_ec == bhttp::error::need_buffer) read_ec = {};
    const std::size_t got = room - parser.get().body().size;
    total += got;
    if (res.excerpt.size() < opts.excerpt_limit) {
      res.excerpt.append(chunk.data(), std::min(got, opts.excerpt_limit - res.excerpt.size()));
    }
    if (read_ec) {
      error = read_ec;
      co_return outcome::failed;
    }
  }
  co_return parser.keep_alive() && buffer.size() == 0 ? outcome::reusable : outcome::close;
}

}  // namespace

sender::sender(sender_options opts)
    : opts_(std::move(opts)), impl_(std::make_unique<impl>(opts_)) {}

sender::~sender() = default;

asio::awaitable<send_result> sender::post(
    const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
    const std::string& body) {
  const auto start = steady::now();
  const auto total_deadline = start + opts_.total_timeout;
  const auto connect_deadline = std::min(start + opts_.connect_timeout, total_deadline);
  send_result res;
  auto finish = [&](std::string error) {
    res.error = std::move(error);
    res.latency = std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - start);
  };

  try {
    auto parsed = parse_webhook_url(url, opts_.guard);
    if (!parsed.url) {
      res.refused = true;
      finish(parsed.error.empty() ? "refused: invalid webhook URL" : parsed.error);
      co_return res;
    }
    const target_url& target = *parsed.url;
    const std::string key = target.endpoint();
    const bool ip_host = is_ip_literal(target.host);
    auto executor = co_await asio::this_coro::executor;

    request_t req{bhttp::verb::post, target.target, 11};
    req.set(bhttp::field::host, host_header(target));
    req.set(bhttp::field::user_agent, "cogwheel");
    req.set(bhttp::field::content_type, "application/json");
    for (const auto& [name, value] : headers) {
      if (!owned_header(name)) req.set(name, value);
    }
    req.body() = body;
    req.keep_alive(true);
    req.prepare_payload();

    for (int round = 0; round < 2; ++round) {
      auto conn = round == 0 ? impl_->take_idle(key) : nullptr;
      const bool reused = conn != nullptr;
      if (!conn) {
        // Resolve and check every address; dial only those.
        const auto budget =
            std::chrono::duration_cast<std::chrono::milliseconds>(connect_deadline - steady::now());
        auto checked =
            co_await resolve_checked(target, opts_.guard, std::max(budget, decltype(budget){1}));
        if (!checked.error.empty() || checked.endpoints.empty()) {
          res.refused = true;
          finish(checked.error.empty() ? "refused: no address for " + target.host : checked.error);
          co_return res;
        }
        conn = std::make_unique<impl::connection>();
        if (target.tls) {
          conn->secure.emplace(executor, impl_->tls);
        } else {
          conn->plain.emplace(executor);
        }
        auto& tcp = conn->tcp();
        tcp.expires_at(connect_deadline);
        auto [connect_ec, endpoint] = co_await tcp.async_connect(checked.endpoints, use_tuple);
        (void)endpoint;
        if (connect_ec) {
          if (connect_ec == beast::error::timeout || steady::now() >= connect_deadline) {
            finish("timeout: cannot connect to " + key + " within " +
                   std::to_string(millis(std::min(opts_.connect_timeout, opts_.total_timeout))) +
                   " ms");
          } else {
            finish("cannot connect to " + key + ": " + connect_ec.message());
          }
          co_return res;
        }
        if (target.tls) {
          auto& s = *conn->secure;
          // SNI carries host names only (RFC 6066), never an IP literal.
          if (!ip_host) {
            SSL_ctrl(s.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                     const_cast<char*>(target.host.c_str()));
          }
          s.set_verify_mode(ssl::verify_peer);
          // Checks a DNS name against the certificate's names, an IP literal against its IP SANs.
          s.set_verify_callback(ssl::host_name_verification(target.host));
          auto [handshake_ec] = co_await s.async_handshake(ssl::stream_base::client, use_tuple);
          if (handshake_ec) {
            if (handshake_ec == beast::error::timeout || steady::now() >= connect_deadline) {
              finish("timeout: TLS handshake with " + key + " not done within " +
                     std::to_string(millis(std::min(opts_.connect_timeout, opts_.total_timeout))) +
                     " ms");
            } else {
              std::string why = "TLS handshake with " + key + " failed: " + handshake_ec.message();
              const long verify = SSL_get_verify_result(s.native_handle());
              if (verify != X509_V_OK) {
                why += std::string(" (certificate: ") + X509_verify_cert_error_string(verify) + ")";
              }
              finish(std::move(why));
            }
            co_return res;
          }
        }
      }

      conn->tcp().expires_at(total_deadline);
      boost::system::error_code ec;
      send_result attempt;
      const outcome done =
          conn->secure ? co_await exchange(*conn->secure, conn->buffer, req, opts_, attempt, ec)
                       : co_await exchange(*conn->plain, conn->buffer, req, opts_, attempt, ec);
      const bool timed_out = ec == beast::error::timeout || steady::now() >= total_deadline;
      if (done == outcome::failed_early && reused && !timed_out) {
        continue;  // the idle connection was closed meanwhile: once more on a fresh one
      }
      res.status = attempt.status;
      res.retry_after = std::move(attempt.retry_after);
      res.excerpt = std::move(attempt.excerpt);
      if (done == outcome::failed || done == outcome::failed_early) {
        if (timed_out) {
          finish("timeout: no complete response from " + key + " within " +
                 std::to_string(millis(opts_.total_timeout)) + " ms");
        } else {
          finish("no complete response from " + key + ": " + ec.message());
        }
        co_return res;
      }
      finish("");
      if (done == outcome::reusable && opts_.max_idle_per_endpoint > 0) {
        impl_->put_idle(key, std::move(conn), opts_.max_idle_per_endpoint);
      }
      co_return res;
    }
    finish("no response from " + key + ": connection closed");
  } catch (const std::exception& e) {
    finish(std::string("webhook send failed: ") + e.what());
  }
  co_return res;
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool digits(std::string_view s, int& out) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// An IMF-fixdate (RFC 9110 5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT".
std::optional<std::chrono::sys_seconds> parse_imf_fixdate(std::string_view s) {
  if (s.size() != 29 || s.substr(3, 2) != ", " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
      s[19] != ':' || s[22] != ':' || s.substr(25) != " GMT") {
    return std::nullopt;
  }
  static constexpr std::array<std::string_view, 7> days{"Mon", "Tue", "Wed", "Thu",
                                                        "Fri", "Sat", "Sun"};
  static constexpr std::array<std::string_view, 12> months{
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (std::find(days.begin(), days.end(), s.substr(0, 3)) == days.end()) return std::nullopt;
  const auto month_it = std::find(months.begin(), months.end(), s.substr(8, 3));
  if (month_it == months.end()) return std::nullopt;
  int day = 0, year = 0, hour = 0, minute = 0, second = 0;
  if (!digits(s.substr(5, 2), day) || !digits(s.substr(12, 4), year) ||
      !digits(s.substr(17, 2), hour) || !digits(s.substr(20, 2), minute) ||
      !digits(s.substr(23, 2), second)) {
    return std::nullopt;
  }
  if (hour > 23 || minute > 59 || second > 60) return std::nullopt;  // 60: a leap second
  const std::chrono::year_month_day date{
      std::chrono::year{year},
      std::chrono::month{static_cast<unsigned>(month_it - months.begin() + 1)},
      std::chrono::day{static_cast<unsigned>(day)}};
  if (!date.ok()) return std::nullopt;
  return std::chrono::sys_days{date} + std::chrono::hours{hour} + std::chrono::minutes{minute} +
         std::chrono::seconds{second};
}

}  // namespace

std::optional<std::chrono::seconds> parse_retry_after(const std::string& value) {
  const std::string_view v = trim(value);
  if (v.empty()) return std::nullopt;
  if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    std::int64_t seconds = 0;
    auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
    if (ec != std::errc() || ptr != v.data() + v.size()) return std::nullopt;  // out of range
    return std::chrono::seconds{seconds};
  }
  const auto when = parse_imf_fixdate(v);
  if (!when) return std::nullopt;
  const auto now =
      std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  const auto delay = *when - now;
  return delay.count() > 0 ? std::chrono::seconds{delay} : std::chrono::seconds{0};
}

}  // namespace cogwheel::webhook
