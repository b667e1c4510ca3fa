#include <atomic>
#include <catch2/catch.hpp>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <system_error>
#include <thread>
#include <vector>

#include "http/problem.hpp"
#include "http/server.hpp"
#include "tests/support/http_client.hpp"

namespace http = cogwheel::http;
namespace asio = boost::asio;
using boost::beast::http::status;
using boost::beast::http::verb;
using cogwheel::test::http_client;
using namespace std::chrono_literals;

namespace {

// Polls `condition` every few milliseconds until it holds or `deadline` passes.
template <typename Condition>
bool wait_until(Condition condition, std::chrono::milliseconds deadline = 5s) {
  auto until = std::chrono::steady_clock::now() + deadline;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// Handlers shared by the tests; /slow holds its response until `release` (10 s at most).
struct test_routes {
  std::shared_ptr<std::atomic<int>> slow_started = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<bool>> release = std::make_shared<std::atomic<bool>>(false);

  std::shared_ptr<const http::router> make() const {
    auto r = std::make_shared<http::router>();
    r->add(verb::get, "/hello/{name}",
           [](http::request_context& ctx) -> asio::awaitable<http::response> {
             co_return http::json(status::ok,
                                  {{"hello", ctx.params.get("name")}, {"query", ctx.query()}});
           });
    r->add(verb::post, "/echo", [](http::request_context& ctx) -> asio::awaitable<http::response> {
      co_return http::json(status::ok, {{"size", ctx.req.body().size()}});
    });
    r->add(verb::get, "/throw", [](http::request_context&) -> asio::awaitable<http::response> {
      throw std::runtime_error("boom");
      co_return http::json(status::ok, {});
    });
    r->add(verb::get, "/slow",
           [started = slow_started,
            release = release](http::request_context&) -> asio::awaitable<http::response> {
             ++*started;
             asio::steady_timer timer(co_await asio::this_coro::executor);
             for (int i = 0; i < 2000 && !*release; ++i) {
               timer.expires_after(5ms);
               co_await timer.async_wait(asio::use_awaitable);
             }
             co_return http::json(status::ok, {{"slow", true}});
           });
    return r;
  }
};

http::server_options test_options() {
  http::server_options opts;
  opts.listen = "127.0.0.1:0";
  return opts;
}

// A server on a loopback port, its io_context run by `threads` threads.
struct running_server {
  asio::io_context ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::optional<http::server> srv;
  std::vector<std::thread> threads;
  std::shared_ptr<std::atomic<bool>> done = std::make_shared<std::atomic<bool>>(false);
  bool shut_down = false;

  explicit running_server(std::shared_ptr<const http::router> routes,
                          http::server_options opts = test_options(), int thread_count = 2)
      : work(ioc.get_executor()) {
    srv.emplace(ioc, std::move(opts), std::move(routes));
    srv->start();
    for (int i = 0; i < thread_count; ++i) threads.emplace_back([this] { ioc.run(); });
  }

  unsigned short port() const { return srv->local_endpoint().port(); }
  http_client client() const { return http_client("127.0.0.1", port()); }

  void shutdown(std::chrono::milliseconds grace) {
    shut_down = true;
    srv->shutdown(grace, [flag = done] { *flag = true; });
  }

  ~running_server() {
    if (!shut_down) shutdown(0ms);
    bool finished = wait_until([&] { return done->load(); }, 10s);
    work.reset();
    // With every session ended, nothing of the server is left on the io_context: run() returns.
    bool drained = finished && wait_until([&] { return ioc.stopped(); }, 5s);
    if (!drained) ioc.stop();
    for (auto& t : threads) t.join();
    CHECK(finished);
    CHECK(drained);
  }
};

}  // namespace

TEST_CASE("server: two requests on one keep-alive connection", "[http][server]") {
  running_server s(test_routes{}.make());
  auto c = s.client();
  auto first = c.get("/hello/ada?x=1");
  CHECK(first.status == 200);
  CHECK(first.header("server") == "cogwheel");
  CHECK(first.header("Content-Type") == "application/json");
  CHECK(first.json() == nlohmann::json{{"hello", "ada"}, {"query", "x=1"}});
  auto second = c.post("/echo", std::string(1000, 'x'));
  CHECK(second.status == 200);
  CHECK(second.json()["size"] == 1000);
  CHECK(c.connections_opened() == 1);
  CHECK(s.srv->active_sessions() == 1);

  auto missing = c.get("/nowhere");
  CHECK(missing.status == 404);
  CHECK(missing.header("Content-Type") == "application/problem+json");
  auto wrong = c.request("DELETE", "/echo");
  CHECK(wrong.status == 405);
  CHECK(wrong.header("Allow") == "POST");
  CHECK(c.connections_opened() == 1);
}

TEST_CASE("server: the session ends when the client closes", "[http][server]") {
  running_server s(test_routes{}.make());
  auto c = s.client();
  CHECK(c.get("/hello/x").status == 200);
  CHECK(s.srv->active_sessions() == 1);
  c.disconnect();
  CHECK(wait_until([&] { return s.srv->active_sessions() == 0; }));
}

TEST_CASE("server: HTTP/1.0 without keep-alive is closed after the response", "[http][server]") {
  running_server s(test_routes{}.make());
  auto c = s.client();
  auto res = c.raw("GET /hello/old HTTP/1.0\r\n\r\n");
  CHECK(res.status == 200);
  CHECK(c.wait_closed(5s));
}

TEST_CASE("server: concurrent clients on several threads", "[http][server]") {
  running_server s(test_routes{}.make(), test_options(), 3);
  std::vector<std::future<int>> results;
  for (int t = 0; t < 4; ++t) {
    results.push_back(std::async(std::launch::async, [&s, t] {
      auto c = s.client();
      int ok = 0;
      for (int i = 0; i < 25; ++i) {
        auto res = c.get("/hello/t" + std::to_string(t) + "?i=" + std::to_string(i));
        if (res.status == 200 && res.json()["hello"] == "t" + std::to_string(t)) ++ok;
      }
      return ok;
    }));
  }
  for (auto& r : results) CHECK(r.get() == 25);
}

TEST_CASE("server: an oversized body gets 413 problem+json", "[http][server]") {
  auto opts = test_options();
  opts.body_limit = 1024;
  running_server s(test_routes{}.make(), opts);
  auto c = s.client();
  CHECK(c.post("/echo", std::string(1024, 'a')).status == 200);
  auto res = c.post("/echo", std::string(1024 * 1024, 'a'));
  CHECK(res.status == 413);
  CHECK(res.header("Content-Type") == "application/problem+json");
  CHECK(res.header("Connection") == "close");
  CHECK(res.header("Server") == "cogwheel");
  CHECK(res.json()["status"] == 413);
  CHECK(c.post("/echo", "{}").status == 200);  // a new connection
}

TEST_CASE("server: oversized headers get 431", "[http][server]") {
  running_server s(test_routes{}.make());
  auto c = s.client();
  auto res = c.get("/hello/x", {{"X-Big", std::string(20 * 1024, 'h')}});
  CHECK(res.status == 431);
  CHECK(res.header("Content-Type") == "application/problem+json");
  CHECK(res.json()["status"] == 431);
  CHECK(c.wait_closed(5s));
}

TEST_CASE("server: garbage bytes get 400 and close", "[http][server]") {
  running_server s(test_routes{}.make());
  auto c = s.client();
  auto res = c.raw(std::string("\x01\x02 garbage\r\n\r\n", 14));
  CHECK(res.status == 400);
  CHECK(res.header("Content-Type") == "application/problem+json");
  CHECK(res.header("Server") == "cogwheel");
  CHECK(res.json()["status"] == 400);
  CHECK(c.wait_closed(5s));

  auto bad_version = s.client().raw("GET / HTTP/9\r\n\r\n");
  CHECK(bad_version.status == 400);
}

TEST_CASE("server: idle and read timeouts close the connection", "[http][server]") {
  auto opts = test_options();
  opts.idle_timeout = 200ms;
  opts.read_timeout = 200ms;
  running_server s(test_routes{}.make(), opts);

  auto idle = s.client();
  CHECK(idle.get("/hello/x").status == 200);
  auto before = std::chrono::steady_clock::now();
  CHECK(idle.wait_closed(5s));
  CHECK(std::chrono::steady_clock::now() - before >= 150ms);

  auto partial = s.client();
  partial.send("GET /hello/x HTTP/1.1\r\nHost: x\r\n");
  CHECK(partial.wait_closed(5s));
  CHECK(wait_until([&] { return s.srv->active_sessions() == 0; }));
}

TEST_CASE("server: a throwing handler gives a 500 problem", "[http][server]") {
  running_server s(test_routes{}.make());
  auto c = s.client();
  auto res = c.get("/throw");
  CHECK(res.status == 500);
  CHECK(res.header("Content-Type") == "application/problem+json");
  CHECK(res.json()["status"] == 500);
  CHECK(res.json()["detail"] == "internal server error");
  CHECK(c.get("/hello/after").status == 200);  // the connection lives on
  CHECK(c.connections_opened() == 1);
}

TEST_CASE("server: a port in use is a listen_error", "[http][server]") {
  running_server first(test_routes{}.make());
  asio::io_context ioc;
  auto opts = test_options();
  opts.listen = "127.0.0.1:" + std::to_string(first.port());
  http::server second(ioc, opts, test_routes{}.make());
  CHECK_THROWS_AS(second.start(), http::listen_error);
  CHECK_THROWS_WITH(http::server(ioc, opts, test_routes{}.make()).start(),
                    "cannot listen on " + opts.listen + ": address already in use");
}

TEST_CASE("server: invalid options and a null router are refused", "[http][server]") {
  asio::io_context ioc;
  auto opts = test_options();
  opts.body_limit = 0;
  CHECK_THROWS_AS(http::server(ioc, opts, test_routes{}.make()), std::invalid_argument);
  CHECK_THROWS_AS(http::server(ioc, test_options(), nullptr), std::invalid_argument);
}

TEST_CASE("server: graceful shutdown lets a request in flight finish", "[http][server]") {
  test_routes routes;
  running_server s(routes.make());
  auto idle = s.client();
  CHECK(idle.get("/hello/idle").status == 200);

  auto slow = std::async(std::launch::async, [&] { return s.client().get("/slow"); });
  REQUIRE(wait_until([&] { return *routes.slow_started == 1; }));
  s.shutdown(10s);

  CHECK(idle.wait_closed(5s));  // an idle keep-alive connection closes at once
  bool refused = wait_until([&] {
    try {
      s.client().get("/hello/late");
      return false;
    } catch (const std::system_error& e) {
      return e.code() == std::errc::connection_refused;
    }
  });
  CHECK(refused);
  CHECK_FALSE(s.done->load());

  *routes.release = true;
  auto res = slow.get();
  CHECK(res.status == 200);
  CHECK(res.json()["slow"] == true);
  CHECK(res.header("Connection") == "close");
  CHECK(wait_until([&] { return s.done->load(); }));
  CHECK(s.srv->active_sessions() == 0);
}

TEST_CASE("server: shutdown closes what is left after the grace period", "[http][server]") {
  test_routes routes;  // /slow is never released
  running_server s(routes.make());
  auto slow = std::async(std::launch::async, [&] { return s.client().get("/slow"); });
  REQUIRE(wait_until([&] { return *routes.slow_started == 1; }));
  auto before = std::chrono::steady_clock::now();
  s.shutdown(100ms);
  CHECK(wait_until([&] { return s.done->load(); }));
  CHECK(std::chrono::steady_clock::now() - before < 5s);
  CHECK_THROWS_AS(slow.get(), std::system_error);
  CHECK(s.srv->active_sessions() == 0);
}

TEST_CASE("server: shutdown with no connection calls done", "[http][server]") {
  running_server s(test_routes{}.make());
  s.shutdown(1s);
  CHECK(wait_until([&] { return s.done->load(); }));
  CHECK_THROWS_AS(s.srv->shutdown(1s, {}), std::logic_error);
}
