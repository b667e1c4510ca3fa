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

http::client_request get(unsigned short port) {
  http::client_request req;
  req.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  req.connect_timeout = 2s;
  req.total_timeout = 5s;
  return req;
}

// Sends `n` GETs to the port one after the other with one client (so the later ones may reuse the
// first one's connection), on an io_context of its own; returns what each got.
std::vector<http::client_response> send_gets(unsigned short port, int n) {
  asio::io_context ioc;
  std::vector<http::client_response> out;
  auto send = [port, n, &out]() -> asio::awaitable<void> {
    http::client c;
    for (int i = 0; i < n; ++i) out.push_back(co_await c.send(get(port)));
  };
  asio::co_spawn(ioc, send(), asio::detached);
  ioc.run_for(20s);
  return out;
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
  auto answers = send_gets(port, 2);
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
  auto answers = send_gets(port, 2);
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
  auto answers = send_gets(port, 1);
  REQUIRE(answers.size() == 1);
  INFO(answers[0].error);
  CHECK(answers[0].error.starts_with("cannot connect to 127.0.0.1:" + std::to_string(port)));
}
