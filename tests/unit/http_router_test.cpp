#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>

#include "http/problem.hpp"
#include "http/router.hpp"

namespace http = cogwheel::http;
namespace asio = boost::asio;
using bhttp_verb = boost::beast::http::verb;
using boost::beast::http::status;

namespace {

// A handler answering {"route": name, "params": {...}, "query": ...}.
http::handler named(std::string name, std::vector<std::string> params = {}) {
  return [name, params](http::request_context& ctx) -> asio::awaitable<http::response> {
    nlohmann::json body{{"route", name}, {"query", ctx.query()}, {"path", ctx.path()}};
    body["params"] = nlohmann::json::object();
    for (const auto& p : params) body["params"][p] = ctx.params.get(p);
    co_return http::json(status::ok, body);
  };
}

http::router api_router() {
  http::router r;
  r.add(bhttp_verb::get, "/", named("root"));
  r.add(bhttp_verb::get, "/v1/predictions", named("list"));
  r.add(bhttp_verb::post, "/v1/predictions", named("create"));
  r.add(bhttp_verb::get, "/v1/predictions/{id}", named("get", {"id"}));
  r.add(bhttp_verb::get, "/v1/predictions/special", named("special"));
  r.add(bhttp_verb::post, "/v1/predictions/{id}/cancel", named("cancel", {"id"}));
  r.add(bhttp_verb::post, "/v1/models/{owner}/{name}/predictions",
        named("model", {"owner", "name"}));
  r.add(bhttp_verb::post, "/v1/models/{owner}/official/predictions", named("official", {"owner"}));
  return r;
}

http::response dispatch(const http::router& r, bhttp_verb method, std::string target) {
  asio::io_context ioc;
  http::request req{method, target, 11};
  http::request_context ctx{req, {}, {}, {}};
  std::optional<http::response> out;
  asio::co_spawn(ioc, r.dispatch(ctx), [&](std::exception_ptr e, http::response res) {
    if (e) std::rethrow_exception(e);
    out = std::move(res);
  });
  ioc.run();
  REQUIRE(out);
  return std::move(*out);
}

nlohmann::json body_of(const http::response& res) {
  return nlohmann::json::parse(res.body());
}

}  // namespace

TEST_CASE("router: literal routes and parameters", "[http][router]") {
  auto r = api_router();
  auto res = dispatch(r, bhttp_verb::get, "/v1/predictions");
  CHECK(res.result() == status::ok);
  CHECK(body_of(res)["route"] == "list");
  CHECK(body_of(dispatch(r, bhttp_verb::post, "/v1/predictions"))["route"] == "create");
  CHECK(body_of(dispatch(r, bhttp_verb::get, "/"))["route"] == "root");

  auto got = body_of(dispatch(r, bhttp_verb::get, "/v1/predictions/abc123"));
  CHECK(got["route"] == "get");
  CHECK(got["params"]["id"] == "abc123");

  auto model = body_of(dispatch(r, bhttp_verb::post, "/v1/models/acme/llama/predictions"));
  CHECK(model["route"] == "model");
  CHECK(model["params"]["owner"] == "acme");
  CHECK(model["params"]["name"] == "llama");
}

TEST_CASE("router: a literal segment beats a parameter", "[http][router]") {
  auto r = api_router();
  CHECK(body_of(dispatch(r, bhttp_verb::get, "/v1/predictions/special"))["route"] == "special");
  CHECK(body_of(dispatch(r, bhttp_verb::post, "/v1/models/acme/official/predictions"))["route"] ==
        "official");
  // The literal route has no POST .../cancel, the parameter route takes it.
  auto cancel = body_of(dispatch(r, bhttp_verb::post, "/v1/predictions/special/cancel"));
  CHECK(cancel["route"] == "cancel");
  CHECK(cancel["params"]["id"] == "special");
}

TEST_CASE("router: query strings and percent-encoding", "[http][router]") {
  auto r = api_router();
  auto list = body_of(dispatch(r, bhttp_verb::get, "/v1/predictions?cursor=abc&x=1"));
  CHECK(list["route"] == "list");
  CHECK(list["path"] == "/v1/predictions");
  CHECK(list["query"] == "cursor=abc&x=1");
  CHECK(body_of(dispatch(r, bhttp_verb::get, "/v1/predictions"))["query"] == "");

  auto got = body_of(dispatch(r, bhttp_verb::get, "/v1/predictions/a%20b%2Fc?q"));
  CHECK(got["route"] == "get");
  CHECK(got["params"]["id"] == "a b/c");
}

TEST_CASE("router: unknown paths are 404 problems", "[http][router]") {
  auto r = api_router();
  for (std::string target : {"/v2/predictions", "/v1/predictions/abc/extra", "/v1/predictions/",
                             "/v1", "/v1/predictions//cancel"}) {
    INFO(target);
    auto res = dispatch(r, bhttp_verb::get, target);
    CHECK(res.result() == status::not_found);
    CHECK(res[boost::beast::http::field::content_type] == "application/problem+json");
    CHECK(body_of(res)["status"] == 404);
  }
}

TEST_CASE("router: a known path with another method is 405 with Allow", "[http][router]") {
  auto r = api_router();
  auto res = dispatch(r, bhttp_verb::delete_, "/v1/predictions");
  CHECK(res.result() == status::method_not_allowed);
  CHECK(res[boost::beast::http::field::allow] == "GET, POST");
  CHECK(body_of(res)["status"] == 405);
  CHECK(res[boost::beast::http::field::content_type] == "application/problem+json");

  auto one = dispatch(r, bhttp_verb::post, "/v1/predictions/abc");
  CHECK(one.result() == status::method_not_allowed);
  CHECK(one[boost::beast::http::field::allow] == "GET");
}

TEST_CASE("router: a target that is not a path is 400", "[http][router]") {
  auto r = api_router();
  CHECK(dispatch(r, bhttp_verb::get, "http://example.com/v1/predictions").result() ==
        status::bad_request);
  CHECK(dispatch(r, bhttp_verb::get, "*").result() == status::bad_request);
  CHECK(dispatch(r, bhttp_verb::get, "/v1/%zz").result() == status::bad_request);
}

TEST_CASE("router: match() reports the outcome without I/O", "[http][router]") {
  auto r = api_router();
  using kind = http::router::match_result::kind;
  auto found = r.match(bhttp_verb::get, "/v1/predictions/xyz");
  CHECK(found.outcome == kind::found);
  CHECK(found.target != nullptr);
  CHECK(found.params.get("id") == "xyz");
  CHECK(found.params.get("missing").empty());
  CHECK(r.match(bhttp_verb::get, "/nope").outcome == kind::not_found);
  auto not_allowed = r.match(bhttp_verb::put, "/v1/predictions");
  CHECK(not_allowed.outcome == kind::method_not_allowed);
  CHECK(not_allowed.allow == "GET, POST");
}

TEST_CASE("router: malformed patterns are refused", "[http][router]") {
  http::router r;
  CHECK_THROWS_AS(r.add(bhttp_verb::get, "v1/x", named("x")), std::invalid_argument);
  CHECK_THROWS_AS(r.add(bhttp_verb::get, "", named("x")), std::invalid_argument);
  CHECK_THROWS_AS(r.add(bhttp_verb::get, "/v1/{a}/{a}", named("x")), std::invalid_argument);
  CHECK_THROWS_AS(r.add(bhttp_verb::get, "/v1/x{y}", named("x")), std::invalid_argument);
  CHECK_THROWS_AS(r.add(bhttp_verb::get, "/v1/{}", named("x")), std::invalid_argument);
  CHECK_THROWS_AS(r.add(bhttp_verb::get, "/v1/x", nullptr), std::invalid_argument);
  r.add(bhttp_verb::get, "/v1/{id}", named("x"));
  CHECK_THROWS_AS(r.add(bhttp_verb::get, "/v1/{id}", named("y")), std::invalid_argument);
  CHECK_NOTHROW(r.add(bhttp_verb::post, "/v1/{id}", named("y")));
}

TEST_CASE("path_params: set replaces, get of a missing name is empty", "[http][router]") {
  http::path_params params;
  CHECK(params.empty());
  params.set("id", "1");
  params.set("id", "2");
  params.set("name", "n");
  CHECK(params.size() == 2);
  CHECK(params.get("id") == "2");
  CHECK(params.contains("name"));
  CHECK_FALSE(params.contains("other"));
  CHECK(params.get("other").empty());
}
