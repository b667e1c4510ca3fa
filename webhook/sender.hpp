#pragma once
// The HTTP(S) client that delivers webhooks to users' URLs: TLS with certificate verification
// against the system CAs and SNI, the SSRF guard on every connection (the checked address is the
// one dialled), keep-alive connections reused per endpoint, bounded connect and total time, the
// response body read and capped, redirects never followed.
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "webhook/address_guard.hpp"

namespace cogwheel::webhook {

struct sender_options {
  guard_options guard;
  std::chrono::milliseconds connect_timeout{5'000};  // resolve + connect + TLS handshake
  std::chrono::milliseconds total_timeout{15'000};   // the whole attempt
  std::size_t response_limit = 64 * 1024;  // bytes of response body read; the rest is discarded
                                           // (the connection is then not reused)
  std::size_t excerpt_limit = 1024;        // bytes of it kept in send_result::excerpt
  std::size_t max_idle_per_endpoint = 32;
  std::string ca_file;  // extra PEM CA bundle trusted besides the system CAs ("" = none; tests)
};

struct send_result {
  int status = 0;           // HTTP status; 0 when no response was read
  std::string error;        // "" when a response was read, else what went wrong (timeout,
                            // "refused: webhook host resolves to 10.0.0.1, a private address",
                            // TLS verification failure, connection refused...)
  bool refused = false;     // the SSRF guard refused the URL or its addresses (never retried
                            // differently from other errors, but recorded as such)
  std::string retry_after;  // the Retry-After header as received, "" when absent
  std::string excerpt;      // the first bytes of the response body
  std::chrono::microseconds latency{0};  // from the start of the attempt to the end of the read
  bool ok() const { return error.empty() && status >= 200 && status < 300; }
};

class sender {
 public:
  explicit sender(sender_options opts);
  ~sender();
  sender(const sender&) = delete;
  sender& operator=(const sender&) = delete;

  // POSTs `body` to `url` with `headers` (plus Host, Content-Type: application/json,
  // Content-Length, User-Agent: cogwheel). Never throws for network, TLS, guard or URL problems:
  // they are in send_result::error. Safe to call concurrently from several coroutines/threads.
  boost::asio::awaitable<send_result> post(
      const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
      const std::string& body);

  const sender_options& options() const { return opts_; }

 private:
  struct impl;
  sender_options opts_;
  std::unique_ptr<impl> impl_;
};

// Parses a Retry-After value (delta-seconds or an HTTP-date) into a delay from now; nullopt when
// absent or malformed.
std::optional<std::chrono::seconds> parse_retry_after(const std::string& value);

}  // namespace cogwheel::webhook
