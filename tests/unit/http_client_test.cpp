#include <boost/asio.hpp>
#include <catch2/catch.hpp>
#include <future>
#include <string>
#include <thread>

#include "http/client.hpp"

namespace http = cogwheel::http;
namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

// Reads one request head (these requests have no body) from a blocking socket.
void read_request(tcp::socket& s) {
  asio::streambuf buf;
  asio::read_until(s, buf, "\r\n\r\n");
}

void answer_ok(tcp::socket& s) {
  asio::write(s, asio::buffer(std::string("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")));
}

// Runs `send` with a client on an io_context of its own, returning what it returned.
template <typename Send>
std::vector<http::client_response> run_client(Send send) {
  asio::io_context ioc;
  std::vector<http::client_response> out;
  asio::co_spawn(ioc, send(out), asio::detached);
  ioc.run_for(20s);
  return out;
}

http::client_request get(unsigned short port) {
  http::client_request req;
  req.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  req.connect_timeout = 2s;
  req.total_timeout = 5s;
  return req;
}

}  // namespace

TEST_CASE("client: a kept-alive connection the server closed is retried on a new one",
          "[http][client]") {
  asio::io_context server_ctx;
  tcp::acceptor acceptor(server_ctx, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = acceptor.local_endpoint().port();
  auto server = std::async(std::launch::async, [&] {
    tcp::socket first = acceptor.accept();
    read_request(first);
    answer_ok(first);
    first.close();  // closes the idle connection before the client's second request
    tcp::socket second = acceptor.accept();
    read_request(second);
    answer_ok(second);
  });
  auto answers =
      run_client([port](std::vector<http::client_response>& out) -> asio::awaitable<void> {
        http::client c;
        out.push_back(co_await c.send(get(port)));
        out.push_back(co_await c.send(get(port)));
      });
  server.get();
  REQUIRE(answers.size() == 2);
  CHECK(answers[0].ok());
  CHECK(answers[1].ok());
  CHECK(answers[1].body == "ok");
}

TEST_CASE(
    "client: a request that went out on a connection reset without an answer may have been "
    "received, even when reconnecting is refused",
    "[http][client]") {
  asio::io_context server_ctx;
  tcp::acceptor acceptor(server_ctx, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = acceptor.local_endpoint().port();
  auto server = std::async(std::launch::async, [&] {
    tcp::socket s = acceptor.accept();
    read_request(s);
    answer_ok(s);
    read_request(s);   // the second request arrived whole,
    acceptor.close();  // then the server goes away: no new connection,
    s.set_option(asio::socket_base::linger(true, 0));
    s.close();  // and a reset instead of an answer
  });
  auto answers =
      run_client([port](std::vector<http::client_response>& out) -> asio::awaitable<void> {
        http::client c;
        out.push_back(co_await c.send(get(port)));
        out.push_back(co_await c.send(get(port)));
      });
  server.get();
  REQUIRE(answers.size() == 2);
  CHECK(answers[0].ok());
  INFO(answers[1].error);
  CHECK(answers[1].error.starts_with("no response from 127.0.0.1:" + std::to_string(port)));
  CHECK(answers[1].error.find("cannot connect") != std::string::npos);
}

TEST_CASE("client: nobody listening is \"cannot connect\"", "[http][client]") {
  unsigned short port = 0;
  {
    asio::io_context ctx;
    tcp::acceptor a(ctx, {asio::ip::make_address("127.0.0.1"), 0});
    port = a.local_endpoint().port();
  }  // closed: the port refuses connections
  auto answers =
      run_client([port](std::vector<http::client_response>& out) -> asio::awaitable<void> {
        http::client c;
        out.push_back(co_await c.send(get(port)));
      });
  REQUIRE(answers.size() == 1);
  INFO(answers[0].error);
  CHECK(answers[0].error.starts_with("cannot connect to 127.0.0.1:" + std::to_string(port)));
}
