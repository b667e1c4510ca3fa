#include "http/client.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

namespace cogwheel::http {

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

client_response failure(std::string why) {
  client_response res;
  res.error = std::move(why);
  return res;
}

struct target_parts {
  std::string host, port, host_header, target, key;
};

std::optional<target_parts> parse_target(const std::string& text, std::string& why) {
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) {
    why = "invalid URL " + text + ": " + parsed.error().message();
    return std::nullopt;
  }
  boost::urls::url_view url = *parsed;
  if (url.scheme() != "http") {
    why = "unsupported URL scheme in " + text;
    return std::nullopt;
  }
  target_parts t;
  t.host = url.host_address();
  if (t.host.empty()) {
    why = "URL without a host: " + text;
    return std::nullopt;
  }
  t.port = url.has_port() ? std::string(url.port()) : "80";
  auto hp = url.encoded_host_and_port();
  t.host_header.assign(hp.data(), hp.size());
  auto et = url.encoded_target();
  t.target.assign(et.data(), et.size());
  if (t.target.empty()) t.target = "/";
  t.key = t.host + ":" + t.port;
  return t;
}

}  // namespace

struct client::connection {
  explicit connection(asio::any_io_executor ex) : stream(std::move(ex)) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
};

client::client(std::size_t max_idle_per_host) : max_idle_(max_idle_per_host) {}
client::~client() = default;

std::string client_response::describe() const {
  if (!error.empty()) return error;
  return "HTTP " + std::to_string(status);
}

std::unique_ptr<client::connection> client::take_idle(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = idle_.find(key);
  if (it == idle_.end() || it->second.empty()) return nullptr;
  auto c = std::move(it->second.back());
  it->second.pop_back();
  return c;
}

void client::put_idle(const std::string& key, std::unique_ptr<connection> c) {
  std::lock_guard lock(mu_);
  auto& list = idle_[key];
  if (list.size() < max_idle_) list.push_back(std::move(c));
}

asio::awaitable<client_response> client::send(const client_request& req) {
  std::string why;
  auto t = parse_target(req.url, why);
  if (!t) co_return failure(why);
  auto executor = co_await asio::this_coro::executor;
  const auto deadline = std::chrono::steady_clock::now() + req.total_timeout;

  bhttp::request<bhttp::string_body> message{req.method, t->target, 11};
  message.set(bhttp::field::host, t->host_header);
  for (const auto& [name, value] : req.headers) message.set(name, value);
  message.body() = req.body;
  message.prepare_payload();
  message.keep_alive(true);

  // Set when a reused connection closed after the whole request went out: the server may have
  // acted on it, so a failure to reconnect must not say that it never got it.
  bool maybe_received = false;
  const auto unless_sent = [&](const std::string& reason) {
    return maybe_received ? failure("no response from " + t->key +
                                    ": the connection closed after the request (" + reason + ")")
                          : failure(reason);
  };
  for (int round = 0; round < 2; ++round) {
    std::unique_ptr<connection> conn = round == 0 ? take_idle(t->key) : nullptr;
    const bool reused = conn != nullptr;
    if (!conn) {
      conn = std::make_unique<connection>(executor);
      asio::ip::tcp::resolver resolver(executor);
      asio::steady_timer resolve_timer(executor, req.connect_timeout);
      resolve_timer.async_wait([&resolver](beast::error_code ec) {
        if (!ec) resolver.cancel();
      });
      auto [resolve_ec, endpoints] = co_await resolver.async_resolve(t->host, t->port, use_tuple);
      resolve_timer.cancel();
      if (resolve_ec) {
        co_return unless_sent("cannot resolve " + t->host + ": " + resolve_ec.message());
      }
      conn->stream.expires_after(std::min(req.connect_timeout, req.total_timeout));
      auto [connect_ec, endpoint] = co_await conn->stream.async_connect(endpoints, use_tuple);
      if (connect_ec) {
        co_return unless_sent("cannot connect to " + t->key + ": " + connect_ec.message());
      }
    }
    conn->stream.expires_at(deadline);
    auto [write_ec, written] = co_await bhttp::async_write(conn->stream, message, use_tuple);
    if (write_ec) {
      if (reused) continue;  // the idle connection was closed by the server: once more, fresh
      co_return failure("cannot send to " + t->key + ": " + write_ec.message());
    }
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(req.body_limit);
    auto [read_ec, read] =
        co_await bhttp::async_read(conn->stream, conn->buffer, parser, use_tuple);
    if (read_ec) {
      const bool closed_early = read_ec == bhttp::error::end_of_stream ||
                                read_ec == asio::error::connection_reset ||
                                read_ec == asio::error::eof;
      if (reused && closed_early && !parser.got_some()) {
        maybe_received = true;
        continue;
      }
      co_return failure("no response from " + t->key + ": " + read_ec.message());
    }
    auto answer = parser.release();
    client_response res;
    res.status = static_cast<int>(answer.result_int());
    if (auto it = answer.find(bhttp::field::location); it != answer.end()) {
      res.location = std::string(it->value());
    }
    res.body = std::move(answer.body());
    if (answer.keep_alive()) {
      conn->stream.expires_never();
      put_idle(t->key, std::move(conn));
    }
    co_return res;
  }
  co_return failure("no response from " + t->key + ": connection closed");
}

asio::awaitable<client_response> send_once(const client_request& req) {
  client c(0);
  co_return co_await c.send(req);
}

}  // namespace cogwheel::http
