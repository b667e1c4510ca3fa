// fake_cog: a minimal asynchronous HTTP/1.1 client (plain http only) for webhooks and uploads.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "http/types.hpp"

namespace fake_cog {

namespace asio = cogwheel::http::asio;
namespace bhttp = cogwheel::http::bhttp;

struct client_request {
  bhttp::verb method = bhttp::verb::post;
  std::string url;  // http://host[:port]/target
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds connect_timeout{5'000};  // resolve + connect
  std::chrono::milliseconds total_timeout{10'000};   // the whole exchange
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

// Sends one request on a new connection and reads the response; never throws for network errors
// (they are reported in `error`), nor for a bad URL.
asio::awaitable<client_response> send_request(client_request req);

}  // namespace fake_cog
