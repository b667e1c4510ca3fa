// Private to the http library: state shared by the server, its accept loop and its sessions.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "http/options.hpp"
#include "http/router.hpp"
#include "http/types.hpp"

namespace cogwheel::http::detail {

// One accepted connection. Every member is touched only on the connection's strand (the executor of
// `stream`), except where noted.
struct connection {
  connection(asio::ip::tcp::socket socket, asio::ip::tcp::endpoint peer)
      : stream(std::move(socket)), remote(std::move(peer)) {}

  beast::tcp_stream stream;
  const asio::ip::tcp::endpoint remote;  // any thread
  asio::cancellation_signal cancel;      // bound to the session coroutine
  bool idle = false;                     // waiting for the first byte of a request
  bool closing = false;                  // shutdown: answer what is in flight, then close
  bool forced = false;                   // shutdown: the grace period ran out
  bool finished = false;                 // the session coroutine has ended

  void close() { stream.close(); }
};

struct server_state : std::enable_shared_from_this<server_state> {
  server_state(asio::io_context& context, server_options options,
               std::shared_ptr<const router> router_ptr);

  asio::io_context& ioc;
  const server_options opts;
  const std::shared_ptr<const router> routes;
  asio::strand<asio::io_context::executor_type> strand;  // acceptor, grace timer, shutdown steps
  asio::ip::tcp::acceptor acceptor;                      // on `strand` once started
  asio::steady_timer grace_timer;                        // on `strand`
  asio::ip::tcp::endpoint local;                         // set by start()
  std::atomic<bool> started{false};
  std::atomic<bool> stopping{false};  // set first by shutdown(), any thread

  // The registry of sessions; any thread.
  void add(std::shared_ptr<connection> conn);
  void remove(const connection* conn) noexcept;
  std::vector<std::shared_ptr<connection>> snapshot() const;
  std::size_t count() const;

  // The steps of shutdown; on `strand`.
  void begin_shutdown(std::chrono::milliseconds grace, std::function<void()> done);
  void force_close();
  void maybe_finish();

 private:
  mutable std::mutex mutex_;
  std::unordered_map<const connection*, std::shared_ptr<connection>> sessions_;  // under mutex_
  std::function<void()> done_;                                                   // on `strand`
  bool shutdown_begun_ = false;                                                  // on `strand`
  bool finished_ = false;                                                        // on `strand`
};

std::string to_string(const asio::ip::tcp::endpoint& endpoint);

// The accept loop, spawned on state->strand by server::start.
asio::awaitable<void> accept_loop(std::shared_ptr<server_state> state);

// Registers a connection and spawns its session on its strand (session.cpp).
void spawn_session(const std::shared_ptr<server_state>& state, asio::ip::tcp::socket socket);

}  // namespace cogwheel::http::detail
