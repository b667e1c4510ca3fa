#include "tests/fake_cog/server.hpp"

#include <spdlog/spdlog.h>

#include <random>

#include "http/problem.hpp"

namespace fake_cog {

namespace http = cogwheel::http;
using nlohmann::json;

namespace {

std::string generate_id() {
  static constexpr std::string_view alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  static std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
  std::string id(26, 'a');
  for (auto& c : id) c = alphabet[pick(rng)];
  return id;
}

// Cog 0.9 compares the header with "respond-async"; be a little more lenient.
bool prefers_async(const http::request& req) {
  auto it = req.find("Prefer");
  return it != req.end() && it->value().find("respond-async") != std::string_view::npos;
}

asio::awaitable<http::response> predict(runner& model, http::request_context& ctx,
                                        std::string_view url_id) {
  auto parsed = parse_request(ctx.req.body(), url_id);
  if (auto* errors = std::get_if<std::vector<field_error>>(&parsed)) {
    co_return http::json(bhttp::status::unprocessable_entity, validation_body(*errors));
  }
  auto req = std::get<prediction_request>(std::move(parsed));
  if (req.id.empty()) req.id = generate_id();
  const bool async = prefers_async(ctx.req);
  auto result = co_await model.create(std::move(req), async);
  using kind = runner::create_result::kind;
  switch (result.outcome) {
    case kind::existing:
      co_return http::json(bhttp::status::accepted, result.state);
    case kind::not_ready:
    case kind::busy:
      co_return http::json(bhttp::status::conflict, {{"detail", result.detail}});
    case kind::started:
      break;
  }
  if (async) co_return http::json(bhttp::status::accepted, result.state);
  auto final_state = co_await model.wait_done(result.handle);
  co_return http::json(bhttp::status::ok, final_state);
}

}  // namespace

std::shared_ptr<http::router> make_routes(runner& model, std::function<void(int)> exit) {
  auto routes = std::make_shared<http::router>();
  routes->add(bhttp::verb::get, "/health-check",
              [&model](http::request_context&) -> asio::awaitable<http::response> {
                co_return http::json(bhttp::status::ok, model.health());
              });
  routes->add(bhttp::verb::put, "/predictions/{id}",
              [&model](http::request_context& ctx) -> asio::awaitable<http::response> {
                co_return co_await predict(model, ctx, ctx.params.get("id"));
              });
  routes->add(bhttp::verb::post, "/predictions",
              [&model](http::request_context& ctx) -> asio::awaitable<http::response> {
                co_return co_await predict(model, ctx, "");
              });
  routes->add(bhttp::verb::post, "/predictions/{id}/cancel",
              [&model](http::request_context& ctx) -> asio::awaitable<http::response> {
                bool found = model.cancel(ctx.params.get("id"));
                co_return http::json(found ? bhttp::status::ok : bhttp::status::not_found,
                                     json::object());
              });
  routes->add(bhttp::verb::get, "/openapi.json",
              [](http::request_context&) -> asio::awaitable<http::response> {
                co_return http::json(bhttp::status::ok, openapi_document());
              });
  routes->add(bhttp::verb::post, "/shutdown",
              [exit](http::request_context&) -> asio::awaitable<http::response> {
                spdlog::info("shutdown requested via http");
                exit(0);
                co_return http::json(bhttp::status::ok, json::object());
              });
  return routes;
}

}  // namespace fake_cog
