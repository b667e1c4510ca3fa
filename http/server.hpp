// The HTTP/1.1 server: accepts connections and runs one session per connection through a router.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>

#include "http/options.hpp"
#include "http/router.hpp"
#include "http/types.hpp"

namespace cogwheel::http {

namespace detail {
struct server_state;
}

// Thrown by server::start when the address cannot be bound, e.g.
// "cannot listen on 127.0.0.1:5080: address already in use".
class listen_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class server {
 public:
  // Throws std::invalid_argument for invalid options or a null router. The io_context must outlive
  // the server; it may be run by several threads (every connection has its own strand).
  server(asio::io_context& ioc, server_options opts, std::shared_ptr<const router> routes);
  // Without a prior shutdown(): stops accepting and closes every connection at once.
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Resolves, binds and listens (throws listen_error), then spawns the accept loop.
  void start();

  // The bound address (useful with port 0); unspecified before start().
  asio::ip::tcp::endpoint local_endpoint() const;

  // Two-phase graceful shutdown: stop accepting now; requests in flight may finish (their responses
  // get `Connection: close`), idle keep-alive connections close at once; after `grace`, whatever is
  // left is closed and its handler cancelled. Calls `done` (on the io_context, may be empty) once
  // every session has ended. Safe to call from any thread; a second call throws std::logic_error.
  void shutdown(std::chrono::milliseconds grace, std::function<void()> done);

  // The number of open connections.
  std::size_t active_sessions() const;

 private:
  std::shared_ptr<detail::server_state> state_;
};

}  // namespace cogwheel::http
