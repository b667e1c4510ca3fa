#include "http/server.hpp"

#include <spdlog/spdlog.h>

#include <cctype>

#include "http/server_state.hpp"

namespace cogwheel::http {

namespace detail {

server_state::server_state(asio::io_context& context, server_options options,
                           std::shared_ptr<const router> router_ptr)
    : ioc(context),
      opts(std::move(options)),
      routes(std::move(router_ptr)),
      strand(asio::make_strand(context)),
      acceptor(strand),
      grace_timer(strand) {}

void server_state::add(std::shared_ptr<connection> conn) {
  std::lock_guard lock(mutex_);
  sessions_.emplace(conn.get(), std::move(conn));
}

void server_state::remove(const connection* conn) noexcept {
  bool last = false;
  {
    std::lock_guard lock(mutex_);
    sessions_.erase(conn);
    last = sessions_.empty() && stopping;
  }
  if (!last) return;
  try {
    asio::post(strand, [self = shared_from_this()] { self->maybe_finish(); });
  } catch (const std::exception& e) {
    spdlog::error("http: cannot finish shutdown: {}", e.what());
  }
}

std::vector<std::shared_ptr<connection>> server_state::snapshot() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<connection>> result;
  result.reserve(sessions_.size());
  for (const auto& entry : sessions_) result.push_back(entry.second);
  return result;
}

std::size_t server_state::count() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

void server_state::begin_shutdown(std::chrono::milliseconds grace, std::function<void()> done) {
  done_ = std::move(done);
  shutdown_begun_ = true;
  beast::error_code ignored;
  acceptor.close(ignored);
  for (auto& conn : snapshot()) {
    asio::post(conn->stream.get_executor(), [conn] {
      conn->closing = true;
      if (conn->idle) conn->close();
    });
  }
  grace_timer.expires_after(grace);
  grace_timer.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec) self->force_close();
  });
  maybe_finish();
}

void server_state::force_close() {
  for (auto& conn : snapshot()) {
    asio::post(conn->stream.get_executor(), [conn] {
      if (conn->finished) return;
      spdlog::debug("http: closing {} after the shutdown grace period", to_string(conn->remote));
      conn->forced = true;
      conn->cancel.emit(asio::cancellation_type::terminal);
      conn->close();
    });
  }
}

void server_state::maybe_finish() {
  if (!shutdown_begun_ || finished_ || count() != 0) return;
  finished_ = true;
  grace_timer.cancel();
  if (done_) std::exchange(done_, nullptr)();
}

std::string to_string(const asio::ip::tcp::endpoint& endpoint) {
  auto address = endpoint.address();
  std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(endpoint.port());
}

asio::awaitable<void> accept_loop(std::shared_ptr<server_state> state) {
  for (;;) {
    auto [ec, socket] = co_await state->acceptor.async_accept(asio::make_strand(state->ioc),
                                                              asio::as_tuple(asio::use_awaitable));
    if (state->stopping || !state->acceptor.is_open()) break;  // `socket` closes as it goes
    if (!ec) {
      spawn_session(state, std::move(socket));
      continue;
    }
    // E.g. out of file descriptors: back off a little instead of spinning.
    spdlog::warn("http: accept failed: {}", ec.message());
    asio::steady_timer backoff(state->strand, std::chrono::milliseconds(50));
    co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

}  // namespace detail

server::server(asio::io_context& ioc, server_options opts, std::shared_ptr<const router> routes) {
  opts.validate();
  if (!routes) throw std::invalid_argument("server: router must not be null");
  state_ = std::make_shared<detail::server_state>(ioc, std::move(opts), std::move(routes));
}

server::~server() {
  if (state_->stopping.exchange(true)) return;
  try {
    asio::post(state_->strand,
               [st = state_] { st->begin_shutdown(std::chrono::milliseconds::zero(), nullptr); });
  } catch (const std::exception& e) {
    spdlog::error("http: cannot stop the server: {}", e.what());
  }
}

void server::start() {
  auto& st = *state_;
  if (st.started.exchange(true)) throw std::logic_error("server::start called twice");
  auto fail = [&](const beast::error_code& ec) {
    std::string why = ec.message();
    if (!why.empty()) why.front() = static_cast<char>(std::tolower(why.front()));
    throw listen_error("cannot listen on " + st.opts.listen + ": " + why);
  };
  auto where = parse_listen(st.opts.listen);
  asio::ip::tcp::resolver resolver(st.ioc);
  beast::error_code ec;
  auto endpoints = resolver.resolve(where.host, std::to_string(where.port),
                                    asio::ip::tcp::resolver::numeric_service, ec);
  if (ec) fail(ec);
  for (const auto& entry : endpoints) {
    st.acceptor.open(entry.endpoint().protocol(), ec);
    if (!ec) st.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) st.acceptor.bind(entry.endpoint(), ec);
    if (!ec) st.acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) break;
    beast::error_code ignored;
    st.acceptor.close(ignored);
  }
  if (!st.acceptor.is_open()) fail(ec ? ec : make_error_code(asio::error::host_not_found));
  st.local = st.acceptor.local_endpoint();
  spdlog::info("http: listening on {}", detail::to_string(st.local));
  asio::co_spawn(st.strand, detail::accept_loop(state_), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("http: accept loop failed: {}", ex.what());
    }
  });
}

asio::ip::tcp::endpoint server::local_endpoint() const {
  return state_->local;
}

void server::shutdown(std::chrono::milliseconds grace, std::function<void()> done) {
  if (state_->stopping.exchange(true)) throw std::logic_error("server::shutdown called twice");
  asio::post(state_->strand, [st = state_, grace, done = std::move(done)]() mutable {
    st->begin_shutdown(grace, std::move(done));
  });
}

std::size_t server::active_sessions() const {
  return state_->count();
}

}  // namespace cogwheel::http
