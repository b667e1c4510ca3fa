#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "http/options.hpp"
#include "http/problem.hpp"

namespace http = cogwheel::http;
using boost::beast::http::field;
using boost::beast::http::status;

TEST_CASE("problem: RFC 7807 body and content type", "[http][problem]") {
  auto res = http::problem(status::not_found, "prediction abc not found");
  CHECK(res.result() == status::not_found);
  CHECK(res[field::content_type] == "application/problem+json");
  CHECK(res[field::server] == "cogwheel");
  CHECK(res[field::content_length] == std::to_string(res.body().size()));
  auto body = nlohmann::json::parse(res.body());
  CHECK(body == nlohmann::json{{"title", "Not Found"},
                               {"detail", "prediction abc not found"},
                               {"status", 404}});
}

TEST_CASE("problem: extra members and a custom title", "[http][problem]") {
  nlohmann::json invalid = nlohmann::json::array({{{"field", "input"}, {"reason", "required"}}});
  auto res = http::problem(status::unprocessable_entity, "invalid request",
                           {{"code", "E1001"}, {"invalid_fields", invalid}, {"status", 200}},
                           "Validation failed");
  auto body = nlohmann::json::parse(res.body());
  CHECK(body["title"] == "Validation failed");
  CHECK(body["detail"] == "invalid request");
  CHECK(body["status"] == 422);  // the standard member wins over an extra one
  CHECK(body["code"] == "E1001");
  CHECK(body["invalid_fields"] == invalid);

  CHECK(nlohmann::json::parse(http::problem(status::unprocessable_entity, "x").body())["title"] ==
        "Unprocessable Entity");
  CHECK(
      nlohmann::json::parse(http::problem(status::too_many_requests, "x", nullptr).body()).size() ==
      3);
  CHECK_THROWS_AS(http::problem(status::bad_request, "x", nlohmann::json::array()),
                  std::invalid_argument);
}

TEST_CASE("problem: invalid UTF-8 in the detail does not throw", "[http][problem]") {
  auto res = http::problem(status::bad_request, std::string("bad \xff byte"));
  CHECK(nlohmann::json::parse(res.body())["detail"].get<std::string>().find("bad ") == 0);
}

TEST_CASE("json: application/json responses", "[http][problem]") {
  auto res = http::json(status::created, {{"id", "abc"}, {"output", nullptr}});
  CHECK(res.result() == status::created);
  CHECK(res[field::content_type] == "application/json");
  CHECK(res[field::server] == "cogwheel");
  CHECK(nlohmann::json::parse(res.body()) == nlohmann::json{{"id", "abc"}, {"output", nullptr}});
}

TEST_CASE("server_options: listen addresses", "[http][options]") {
  auto v4 = http::parse_listen("127.0.0.1:5080");
  CHECK(v4.host == "127.0.0.1");
  CHECK(v4.port == 5080);
  auto v6 = http::parse_listen("[::1]:0");
  CHECK(v6.host == "::1");
  CHECK(v6.port == 0);
  auto name = http::parse_listen("localhost:65535");
  CHECK(name.host == "localhost");
  CHECK(name.port == 65535);
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:http", ":5080",
                          "user@127.0.0.1:80", "", "[::1:80"}) {
    INFO(bad);
    CHECK_THROWS_AS(http::parse_listen(bad), std::invalid_argument);
  }
}

TEST_CASE("server_options: validate refuses nonsense", "[http][options]") {
  http::server_options opts;
  CHECK_NOTHROW(opts.validate());
  auto broken = [&](auto change) {
    http::server_options copy = opts;
    change(copy);
    return copy;
  };
  using ms = std::chrono::milliseconds;
  CHECK_THROWS_WITH(broken([](auto& o) { o.listen = "nowhere"; }).validate(),
                    Catch::Contains("nowhere"));
  CHECK_THROWS_WITH(broken([](auto& o) { o.body_limit = 0; }).validate(),
                    Catch::Contains("body_limit"));
  CHECK_THROWS_WITH(broken([](auto& o) { o.header_limit = 0; }).validate(),
                    Catch::Contains("header_limit"));
  CHECK_THROWS_WITH(broken([](auto& o) { o.read_timeout = ms(0); }).validate(),
                    Catch::Contains("read_timeout"));
  CHECK_THROWS_WITH(broken([](auto& o) { o.idle_timeout = ms(-1); }).validate(),
                    Catch::Contains("idle_timeout"));
  CHECK_THROWS_WITH(broken([](auto& o) { o.write_timeout = ms(0); }).validate(),
                    Catch::Contains("write_timeout"));
}
