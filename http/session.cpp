// One session per connection: a coroutine loop on the connection's strand.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "http/problem.hpp"
#include "http/server_state.hpp"

namespace cogwheel::http::detail {

namespace {

using namespace std::chrono_literals;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t first_read_size = 4096;
// After an error response, how long the client may keep sending before the socket closes (reading
// what it sends lets it read the response instead of getting a reset).
constexpr std::chrono::milliseconds linger_timeout = 2s;

// Ends the session's registration however the coroutine ends.
struct session_guard {
  server_state& state;
  connection& conn;
  ~session_guard() {
    conn.finished = true;
    state.remove(&conn);
  }
};

void finalize(response& res, unsigned version) {
  res.version(version);
  res.set(bhttp::field::server, server_name);
  res.prepare_payload();
}

// The answer to a request that could not be read, if the client can still get one.
std::optional<response> read_error_response(const beast::error_code& ec, const server_options& o) {
  if (ec == bhttp::error::body_limit) {
    return problem(bhttp::status::payload_too_large,
                   "request body exceeds the limit of " + std::to_string(o.body_limit) + " bytes");
  }
  if (ec == bhttp::error::header_limit) {
    return problem(
        bhttp::status::request_header_fields_too_large,
        "request header exceeds the limit of " + std::to_string(o.header_limit) + " bytes");
  }
  if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message) return {};
  if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category()) {
    return problem(bhttp::status::bad_request, "malformed HTTP request: " + ec.message());
  }
  return {};  // timeout, reset, closed by shutdown
}

// Waits up to `idle` for the first bytes of the next request; false when the connection ended.
asio::awaitable<bool> await_request(connection& conn, beast::flat_buffer& buffer,
                                    std::chrono::milliseconds idle) {
  conn.idle = true;
  conn.stream.expires_after(idle);
  auto [ec, n] = co_await conn.stream.async_read_some(buffer.prepare(first_read_size), use_tuple);
  conn.idle = false;
  if (ec) co_return false;
  buffer.commit(n);
  co_return true;
}

asio::awaitable<response> handle(const server_state& state, connection& conn,
                                 request_context& ctx) {
  const request& req = ctx.req;
  response res;
  std::string failure;
  try {
    res = co_await state.routes->dispatch(ctx);
    finalize(res, req.version());
    co_return res;
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "unknown exception";
  }
  if (!conn.forced) {
    spdlog::error("http: {} {} from {} failed: {}", req.method_string(), req.target(),
                  to_string(conn.remote), failure);
  }
  res = problem(bhttp::status::internal_server_error, "internal server error");
  finalize(res, req.version());
  co_return res;
}

// The head of a response as Beast's serializer writes it: the status line, the fields in their
// order, and the blank line.
std::string head_text(const response& res) {
  std::string head;
  head.reserve(256);
  head += "HTTP/";
  head += static_cast<char>('0' + res.version() / 10);
  head += '.';
  head += static_cast<char>('0' + res.version() % 10);
  head += ' ';
  head += std::to_string(res.result_int());
  head += ' ';
  head += res.reason();
  head += "\r\n";
  for (const auto& field : res) {
    head += field.name_string();
    head += ": ";
    head += field.value();
    head += "\r\n";
  }
  head += "\r\n";
  return head;
}

asio::awaitable<bool> write(connection& conn, response& res, std::chrono::milliseconds timeout) {
  conn.stream.expires_after(timeout);
  if (res.chunked()) {
    auto [ec, n] = co_await bhttp::async_write(conn.stream, res, use_tuple);
    co_return !ec;
  }
  // A body sent whole: its head and body in one gathered write, without the serializer's
  // machinery (the same bytes).
  const std::string head = head_text(res);
  const std::array<asio::const_buffer, 2> buffers{asio::buffer(head), asio::buffer(res.body())};
  auto [ec, n] = co_await asio::async_write(conn.stream, buffers, use_tuple);
  co_return !ec;
}

asio::awaitable<bool> write_chunk(connection& conn, std::string data,
                                  std::chrono::milliseconds timeout) {
  if (data.empty()) co_return true;  // an empty chunk would end the body
  conn.stream.expires_after(timeout);
  auto [ec, n] =
      co_await asio::async_write(conn.stream, bhttp::make_chunk(asio::buffer(data)), use_tuple);
  co_return !ec;
}

// Sends the head of a streaming response, runs its producer, then ends the chunked body.
asio::awaitable<void> stream_response(connection& conn, response& res, request_context& ctx,
                                      std::chrono::milliseconds timeout) {
  res.erase(bhttp::field::content_length);
  res.chunked(true);
  res.keep_alive(false);
  res.body().clear();
  bhttp::response_serializer<bhttp::string_body> sr{res};
  conn.stream.expires_after(timeout);
  auto [ec, n] = co_await bhttp::async_write_header(conn.stream, sr, use_tuple);
  if (ec) co_return;
  request_context::chunk_writer writer = [&conn, timeout](const std::string& data) {
    return write_chunk(conn, data, timeout);
  };
  co_await ctx.stream(writer);
  conn.stream.expires_after(timeout);
  co_await asio::async_write(conn.stream, bhttp::make_chunk_last(), use_tuple);
}

// Closes the connection; with `linger`, first reads and discards what the client still sends.
asio::awaitable<void> close(connection& conn, bool linger, std::chrono::milliseconds read_timeout) {
  beast::error_code ec;
  conn.stream.socket().shutdown(asio::socket_base::shutdown_send, ec);
  if (linger && !ec && !conn.closing) {
    conn.idle = true;  // shutdown closes it at once
    conn.stream.expires_after(std::min(linger_timeout, read_timeout));
    std::array<char, 4096> sink;
    for (;;) {
      auto [read_ec, n] = co_await conn.stream.async_read_some(asio::buffer(sink), use_tuple);
      if (read_ec) break;  // end of stream, or timeout
    }
  }
  conn.close();
}

asio::awaitable<void> run_session(std::shared_ptr<server_state> state,
                                  std::shared_ptr<connection> conn) {
  session_guard guard{*state, *conn};
  const server_options& opts = state->opts;
  beast::flat_buffer buffer;
  bool linger = false;
  for (;;) {
    if (state->stopping || conn->closing) break;
    // A request has begun once bytes of it arrived: until then the idle timeout applies.
    if (buffer.size() == 0 && !co_await await_request(*conn, buffer, opts.idle_timeout)) break;

    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(opts.header_limit, std::numeric_limits<std::uint32_t>::max())));
    parser.body_limit(opts.body_limit);
    conn->stream.expires_after(opts.read_timeout);
    auto [ec, n] = co_await bhttp::async_read(conn->stream, buffer, parser, use_tuple);
    if (ec) {
      if (auto res = read_error_response(ec, opts)) {
        res->keep_alive(false);
        linger = co_await write(*conn, *res, opts.write_timeout);
      }
      break;
    }

    request req = parser.release();
    request_context ctx{req, {}, conn->remote, {}};
    response res = co_await handle(*state, *conn, ctx);
    if (ctx.stream && res.result() == bhttp::status::ok) {
      co_await stream_response(*conn, res, ctx, opts.write_timeout);
      break;
    }
    const bool keep_alive = req.keep_alive() && !state->stopping && !conn->closing;
    res.keep_alive(keep_alive);
    if (!co_await write(*conn, res, opts.write_timeout) || !keep_alive) break;
  }
  co_await close(*conn, linger, opts.read_timeout);
}

void log_session_end(const connection& conn, std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    if (conn.forced) {
      spdlog::debug("http: session with {} cancelled: {}", to_string(conn.remote), ex.what());
    } else {
      spdlog::error("http: session with {} failed: {}", to_string(conn.remote), ex.what());
    }
  } catch (...) {
    spdlog::error("http: session with {} failed", to_string(conn.remote));
  }
}

}  // namespace

void spawn_session(const std::shared_ptr<server_state>& state, asio::ip::tcp::socket socket) {
  beast::error_code ec;
  auto remote = socket.remote_endpoint(ec);
  if (ec) return;  // the client is already gone
  auto conn = std::make_shared<connection>(std::move(socket), remote);
  state->add(conn);
  auto executor = conn->stream.get_executor();
  auto slot = conn->cancel.slot();
  asio::co_spawn(executor, run_session(state, conn),
                 asio::bind_cancellation_slot(
                     slot, [conn](std::exception_ptr e) { log_session_end(*conn, std::move(e)); }));
}

}  // namespace cogwheel::http::detail
