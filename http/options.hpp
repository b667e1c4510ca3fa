// Options of the HTTP server, with defaults and validation.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace cogwheel::http {

struct server_options {
  std::string listen = "127.0.0.1:5080";  // HOST:PORT, IPv4, [IPv6] or a host name; port 0 = any
  std::size_t header_limit = 16 * 1024;   // bytes; over it: 431 problem, close
  std::size_t body_limit = 1024 * 1024;   // bytes; over it: 413 problem, close
  std::chrono::milliseconds read_timeout{30'000};  // whole request once its first byte arrived
  std::chrono::milliseconds idle_timeout{75'000};  // keep-alive connection with no request
  std::chrono::milliseconds write_timeout{30'000};

  // Throws std::invalid_argument with a message naming the option.
  void validate() const;
};

// A parsed `listen` value. `host` is without brackets ("::1" for "[::1]:80").
struct listen_address {
  std::string host;
  std::uint16_t port = 0;
};

// Parses HOST:PORT; throws std::invalid_argument.
listen_address parse_listen(std::string_view text);

}  // namespace cogwheel::http
