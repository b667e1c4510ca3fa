// A small synchronous HTTP/1.1 client for tests: one keep-alive connection to host:port.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cogwheel::test {

struct case_insensitive_less {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const;
};

using header_map = std::map<std::string, std::string, case_insensitive_less>;
using header_list = std::vector<std::pair<std::string, std::string>>;

struct http_result {
  int status = 0;
  std::string body;
  header_map headers;  // repeated fields joined with ", "

  nlohmann::json json() const;                      // throws std::runtime_error quoting the body
  std::string header(std::string_view name) const;  // "" when absent
};

class http_client {
 public:
  http_client(std::string host, unsigned short port);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  // Sends one request and reads its response. Adds Host, and Content-Type application/json when
  // there is a body and no Content-Type. Connects (again) when needed; a request that finds the
  // kept-alive connection closed by the server is retried once on a new one. Throws
  // std::system_error (connection refused, timeout, ...).
  http_result request(std::string_view method, std::string_view target, std::string body = {},
                      header_list headers = {},
                      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  http_result get(std::string_view target, header_list headers = {});
  http_result post(std::string_view target, std::string body, header_list headers = {});

  // Sends `bytes` as they are (connecting when needed) and reads one response.
  http_result raw(std::string bytes, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Writes `bytes` as they are (connecting when needed) without reading a response.
  void send(std::string_view bytes, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Waits until the server closes the connection: true when it did within `timeout` (or when no
  // connection is open), false when it stayed open. Bytes the server sends meanwhile are discarded.
  bool wait_closed(std::chrono::milliseconds timeout);

  bool connected() const;
  void disconnect();
  // How many connections this client has opened so far.
  int connections_opened() const { return connections_opened_; }

 private:
  struct exchange_result;
  void connect(std::chrono::milliseconds timeout);
  bool connection_looks_alive();
  exchange_result exchange(const std::string& bytes, std::chrono::milliseconds timeout);

  std::string host_;
  unsigned short port_;
  boost::asio::io_context ioc_;
  std::optional<boost::beast::tcp_stream> stream_;
  boost::beast::flat_buffer buffer_;
  int connections_opened_ = 0;
};

}  // namespace cogwheel::test
