#include "tests/fake_cog/client.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

namespace fake_cog {

namespace beast = cogwheel::http::beast;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

client_response failure(std::string why) {
  client_response res;
  res.error = std::move(why);
  return res;
}

}  // namespace

std::string client_response::describe() const {
  if (!error.empty()) return error;
  return "HTTP " + std::to_string(status);
}

asio::awaitable<client_response> send_request(client_request req) {
  auto parsed = boost::urls::parse_uri(req.url);
  if (!parsed) co_return failure("invalid URL " + req.url + ": " + parsed.error().message());
  boost::urls::url_view url = *parsed;
  if (url.scheme() != "http") co_return failure("unsupported URL scheme in " + req.url);
  std::string host = url.host_address();
  if (host.empty()) co_return failure("URL without a host: " + req.url);
  std::string port = url.has_port() ? std::string(url.port()) : "80";
  auto encoded_target = url.encoded_target();
  std::string target(encoded_target.data(), encoded_target.size());
  if (target.empty()) target = "/";

  auto executor = co_await asio::this_coro::executor;
  const auto deadline = std::chrono::steady_clock::now() + req.total_timeout;
  asio::ip::tcp::resolver resolver(executor);
  beast::tcp_stream stream(executor);

  // Resolve under the connect timeout: a timer cancels the resolver.
  asio::steady_timer resolve_timer(executor, req.connect_timeout);
  resolve_timer.async_wait([&resolver](beast::error_code ec) {
    if (!ec) resolver.cancel();
  });
  auto [resolve_ec, endpoints] = co_await resolver.async_resolve(host, port, use_tuple);
  resolve_timer.cancel();
  if (resolve_ec) co_return failure("cannot resolve " + host + ": " + resolve_ec.message());

  stream.expires_after(std::min(req.connect_timeout, req.total_timeout));
  auto [connect_ec, endpoint] = co_await stream.async_connect(endpoints, use_tuple);
  if (connect_ec) {
    co_return failure("cannot connect to " + host + ":" + port + ": " + connect_ec.message());
  }

  bhttp::request<bhttp::string_body> message{req.method, target, 11};
  auto host_and_port = url.encoded_host_and_port();
  message.set(bhttp::field::host, std::string_view(host_and_port.data(), host_and_port.size()));
  for (const auto& [name, value] : req.headers) message.set(name, value);
  message.body() = std::move(req.body);
  message.prepare_payload();

  stream.expires_at(deadline);
  auto [write_ec, written] = co_await bhttp::async_write(stream, message, use_tuple);
  if (write_ec)
    co_return failure("cannot send to " + host + ":" + port + ": " + write_ec.message());

  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(1024 * 1024);
  auto [read_ec, read] = co_await bhttp::async_read(stream, buffer, parser, use_tuple);
  if (read_ec) {
    co_return failure("no response from " + host + ":" + port + ": " + read_ec.message());
  }
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);

  auto response = parser.release();
  client_response res;
  res.status = static_cast<int>(response.result_int());
  if (auto it = response.find(bhttp::field::location); it != response.end()) {
    res.location = std::string(it->value());
  }
  res.body = std::move(response.body());
  co_return res;
}

}  // namespace fake_cog
