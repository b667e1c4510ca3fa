#include "tests/support/http_client.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace cogwheel::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;

bool case_insensitive_less::operator()(std::string_view a, std::string_view b) const {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) <
           std::tolower(static_cast<unsigned char>(y));
  });
}

nlohmann::json http_result::json() const {
  try {
    return nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("HTTP " + std::to_string(status) + " body is not JSON (" + e.what() +
                             "): " + body);
  }
}

std::string http_result::header(std::string_view name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

struct http_client::exchange_result {
  beast::error_code ec;
  bool got_response_bytes = false;
  http_result result;
};

http_client::http_client(std::string host, unsigned short port)
    : host_(std::move(host)), port_(port) {}

http_client::~http_client() {
  disconnect();
}

bool http_client::connected() const {
  return stream_.has_value() && stream_->socket().is_open();
}

void http_client::disconnect() {
  if (!stream_) return;
  beast::error_code ignored;
  stream_->socket().shutdown(asio::socket_base::shutdown_both, ignored);
  stream_->socket().close(ignored);
  stream_.reset();
  buffer_.clear();
}

void http_client::connect(std::chrono::milliseconds timeout) {
  disconnect();
  asio::ip::tcp::resolver resolver(ioc_);
  auto endpoints = resolver.resolve(host_, std::to_string(port_));
  stream_.emplace(ioc_);
  stream_->expires_after(timeout);
  beast::error_code ec;
  stream_->async_connect(endpoints, [&](beast::error_code e, const auto&) { ec = e; });
  ioc_.restart();
  ioc_.run();
  if (ec) {
    stream_.reset();
    throw std::system_error(ec, "http_client: connect to " + host_ + ":" + std::to_string(port_));
  }
  ++connections_opened_;
}

// A kept-alive connection is reusable when nothing (not even end of stream) waits to be read.
bool http_client::connection_looks_alive() {
  if (!connected() || buffer_.size() != 0) return false;
  auto& socket = stream_->socket();
  beast::error_code ec;
  socket.non_blocking(true, ec);
  if (ec) return false;
  char byte = 0;
  socket.receive(asio::buffer(&byte, 1), asio::socket_base::message_peek, ec);
  beast::error_code ignored;
  socket.non_blocking(false, ignored);
  return ec == asio::error::would_block;
}

http_client::exchange_result http_client::exchange(const std::string& bytes,
                                                   std::chrono::milliseconds timeout) {
  exchange_result out;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.header_limit(1024 * 1024);
  parser.body_limit(boost::none);
  stream_->expires_after(timeout);
  // Write and read at once: the server may answer (413, 431) before it read everything.
  bool write_done = false;
  beast::error_code write_ec;
  asio::async_write(*stream_, asio::buffer(bytes), [&](beast::error_code ec, std::size_t) {
    write_done = true;
    write_ec = ec;
  });
  bhttp::async_read(*stream_, buffer_, parser, [&](beast::error_code ec, std::size_t) {
    out.ec = ec;
    if (!write_done) stream_->cancel();
  });
  ioc_.restart();
  ioc_.run();
  out.got_response_bytes = parser.got_some();
  if (out.ec) {
    disconnect();
    return out;
  }
  auto res = parser.release();
  out.result.status = static_cast<int>(res.result_int());
  for (const auto& field : res) {
    auto [it, inserted] = out.result.headers.emplace(field.name_string(), field.value());
    if (!inserted) it->second += ", " + std::string(field.value());
  }
  out.result.body = std::move(res.body());
  if (!res.keep_alive() || write_ec || !write_done) disconnect();
  return out;
}

http_result http_client::request(std::string_view method, std::string_view target, std::string body,
                                 header_list headers, std::chrono::milliseconds timeout) {
  bhttp::request<bhttp::string_body> req;
  req.method_string(method);
  req.target(target);
  req.version(11);
  for (auto& [name, value] : headers) req.insert(name, value);
  if (req.find(bhttp::field::host) == req.end()) {
    req.set(bhttp::field::host, host_ + ":" + std::to_string(port_));
  }
  if (req.find(bhttp::field::user_agent) == req.end()) {
    req.set(bhttp::field::user_agent, "cogwheel-test");
  }
  if (!body.empty() && req.find(bhttp::field::content_type) == req.end()) {
    req.set(bhttp::field::content_type, "application/json");
  }
  req.body() = std::move(body);
  req.prepare_payload();
  std::ostringstream serialized;
  serialized << req;
  const std::string bytes = serialized.str();
  const std::string what = "http_client: " + std::string(method) + " " + std::string(target);

  bool reused = connection_looks_alive();
  if (!reused) connect(timeout);
  auto out = exchange(bytes, timeout);
  if (out.ec && reused && !out.got_response_bytes && out.ec != beast::error::timeout) {
    connect(timeout);  // the server closed the kept-alive connection as we sent
    out = exchange(bytes, timeout);
  }
  if (out.ec) throw std::system_error(out.ec, what);
  return std::move(out.result);
}

http_result http_client::get(std::string_view target, header_list headers) {
  return request("GET", target, {}, std::move(headers));
}

http_result http_client::post(std::string_view target, std::string body, header_list headers) {
  return request("POST", target, std::move(body), std::move(headers));
}

http_result http_client::raw(std::string bytes, std::chrono::milliseconds timeout) {
  if (!connected()) connect(timeout);
  auto out = exchange(bytes, timeout);
  if (out.ec) throw std::system_error(out.ec, "http_client: raw request");
  return std::move(out.result);
}

void http_client::send(std::string_view bytes, std::chrono::milliseconds timeout) {
  if (!connected()) connect(timeout);
  stream_->expires_after(timeout);
  beast::error_code ec;
  asio::async_write(*stream_, asio::buffer(bytes),
                    [&](beast::error_code e, std::size_t) { ec = e; });
  ioc_.restart();
  ioc_.run();
  if (ec) {
    disconnect();
    throw std::system_error(ec, "http_client: send");
  }
}

bool http_client::wait_closed(std::chrono::milliseconds timeout) {
  if (!connected()) return true;
  buffer_.clear();
  auto& socket = stream_->socket();
  asio::steady_timer timer(ioc_, timeout);
  bool closed = false;
  bool timed_out = false;
  std::array<char, 4096> sink{};
  std::function<void()> read_more = [&] {
    socket.async_read_some(asio::buffer(sink), [&](beast::error_code ec, std::size_t) {
      if (!ec) return read_more();  // data is not a close: keep waiting
      if (!timed_out) {
        closed = true;
        timer.cancel();
      }
    });
  };
  read_more();
  timer.async_wait([&](beast::error_code ec) {
    if (ec) return;
    timed_out = true;
    beast::error_code ignored;
    socket.cancel(ignored);
  });
  ioc_.restart();
  ioc_.run();
  if (closed) disconnect();
  return closed;
}

}  // namespace cogwheel::test
