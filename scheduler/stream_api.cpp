#include "scheduler/stream_api.hpp"

#include <spdlog/spdlog.h>

#include "http/problem.hpp"
#include "scheduler/api/ids.hpp"
#include "storage/dispatch.hpp"

namespace cogwheel::scheduler {

namespace asio = boost::asio;
namespace bhttp = http::bhttp;
using http::request_context;
using http::response;

namespace {

asio::awaitable<std::optional<storage::prediction_row>> read_row(storage::database& db,
                                                                 const std::string& id) {
  auto work = [&id](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    return storage::prediction_get_by_id(tx, id);
  };
  co_return co_await db.run(work);
}

asio::awaitable<void> run_stream(stream_api& api, std::string id, std::uint64_t after,
                                 request_context::chunk_writer write) {
  auto ex = co_await asio::this_coro::executor;
  auto waiter = api.watch.subscribe(id, ex);
  const auto end = std::chrono::steady_clock::now() + api.max_duration;
  try {
    // Whatever changed before the subscription: one read after subscribing.
    if (auto row = co_await read_row(api.db, id)) {
      api.hub.track(*row);
      api.hub.feed(*row);
    }
    while (std::chrono::steady_clock::now() < end) {
      auto v = api.hub.events_after(id, after);
      if (!v) {  // no longer tracked (ended long ago): from the stored state
        auto row = co_await read_row(api.db, id);
        if (!row) co_return;
        api.hub.track(*row);
        v = api.hub.events_after(id, after);
        if (!v) co_return;
      }
      for (const auto& e : v->events) {
        std::string text = format_event(e, v->seconds);  // named: no temporary in co_await
        if (!co_await write(text)) co_return;
        after = e.seq;
      }
      if (v->ended) co_return;
      const bool woken =
          co_await waiter->wait_until(std::chrono::steady_clock::now() + api.keep_alive);
      if (!woken) {
        std::string comment = ": keep-alive\n\n";
        if (!co_await write(comment)) co_return;
      }
      // A change applied by another process (or before this one's feed): read it.
      auto now = api.hub.events_after(id, after);
      if (!now || now->version == v->version) {
        if (auto row = co_await read_row(api.db, id)) api.hub.feed(*row);
      }
    }
  } catch (const std::exception& e) {
    spdlog::warn("stream of {} ended: {}", id, e.what());
  }
}

asio::awaitable<response> handle(std::atomic<stream_api*>& slot, request_context& ctx) {
  stream_api* api = slot.load();
  if (api == nullptr) {
    auto r = http::problem(bhttp::status::service_unavailable, "cogwheel is starting");
    r.set(bhttp::field::retry_after, "1");
    co_return r;
  }
  const std::string id(ctx.params.get("id"));
  if (!api::is_prediction_id(id)) {
    co_return http::problem(bhttp::status::not_found, "Prediction not found");
  }
  auto row = co_await read_row(api->db, id);
  if (!row) co_return http::problem(bhttp::status::not_found, "Prediction not found");
  api->hub.track(*row);
  const std::uint64_t after = parse_last_event_id(ctx.req["Last-Event-ID"]);
  response res{bhttp::status::ok, 11};
  res.set(bhttp::field::content_type, "text/event-stream");
  res.set(bhttp::field::cache_control, "no-cache");
  ctx.stream = [api, id, after](request_context::chunk_writer w) {
    return run_stream(*api, id, after, std::move(w));
  };
  co_return res;
}

}  // namespace

void add_stream_routes(http::router& routes, std::atomic<stream_api*>& slot) {
  routes.add(bhttp::verb::get, "/v1/predictions/{id}/stream",
             [&slot](request_context& ctx) { return handle(slot, ctx); });
}

}  // namespace cogwheel::scheduler
