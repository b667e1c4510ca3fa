// An asynchronous HTTP/1.1 client for plain http:// services on trusted networks (model
// containers), with keep-alive connections reused per host. Webhooks to users have their own
// sender (TLS, SSRF guard) in webhook/.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "http/types.hpp"

namespace cogwheel::http {

struct client_request {
  bhttp::verb method = bhttp::verb::get;
  std::string url;  // http://host[:port]/target
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds connect_timeout{5'000};  // resolve + connect
  std::chrono::milliseconds total_timeout{10'000};   // the whole exchange
  std::size_t body_limit = 8 * 1024 * 1024;
};

struct client_response {
  std::string error;  // "" when a response was read
  int status = 0;
  std::string location;  // the Location header, "" when absent
  std::string body;

  bool ok() const { return error.empty() && status >= 200 && status < 300; }
  // "HTTP 503" or the error, for logs.
  std::string describe() const;
};

class client {
 public:
  explicit client(std::size_t max_idle_per_host = 64);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  // Sends a request and reads the response; never throws for network errors (they are reported in
  // `error`), nor for a bad URL. A kept-alive connection that turns out closed before any answer
  // is retried once on a new connection. An error that begins "cannot connect" or "cannot resolve"
  // means the request reached nobody; "no response" that it may have (it was sent, no answer came
  // back, and a retry on a new connection could not be made either).
  asio::awaitable<client_response> send(const client_request& req);

 private:
  struct connection;
  std::unique_ptr<connection> take_idle(const std::string& key);
  void put_idle(const std::string& key, std::unique_ptr<connection> c);

  std::size_t max_idle_;
  std::mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<connection>>> idle_;
};

// One request on a new connection (no reuse).
asio::awaitable<client_response> send_once(const client_request& req);

}  // namespace cogwheel::http
