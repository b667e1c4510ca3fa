#include "scheduler/predictions_api.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/this_coro.hpp>
#include <boost/url.hpp>
#include <nlohmann/json.hpp>

#include "http/problem.hpp"
#include "scheduler/api/create_request.hpp"
#include "scheduler/api/cursor.hpp"
#include "scheduler/api/headers.hpp"
#include "scheduler/api/ids.hpp"
#include "scheduler/api/prediction_json.hpp"
#include "scheduler/api/timefmt.hpp"
#include "scheduler/api/tokens.hpp"
#include "scheduler/webhook_events.hpp"
#include "storage/deliveries.hpp"
#include "storage/errors.hpp"
#include "storage/outbox.hpp"
#include "storage/predictions.hpp"
#include "storage/tokens.hpp"
#include "webhook/signature.hpp"

namespace cogwheel::scheduler {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using json = nlohmann::json;
using http::request_context;
using http::response;

namespace {

constexpr std::size_t page_size = 100;

bool is_terminal(const std::string& status) {
  return status == "succeeded" || status == "failed" || status == "canceled" || status == "aborted";
}

response unauthorized() {
  auto res =
      http::problem(bhttp::status::unauthorized, "You did not pass a valid authentication token");
  res.set(bhttp::field::www_authenticate, "Bearer");
  return res;
}

response throttled(std::chrono::seconds retry_after) {
  auto res = http::problem(bhttp::status::too_many_requests,
                           "Request was throttled. Expected available in " +
                               std::to_string(retry_after.count()) + " seconds.");
  res.set(bhttp::field::retry_after, std::to_string(retry_after.count()));
  return res;
}

response invalid(const api::validation_error& e) {
  json extra = json::object();
  if (!e.code.empty()) extra["code"] = e.code;
  if (!e.fields.empty()) {
    json fields = json::array();
    for (const auto& f : e.fields) fields.push_back({{"field", f.field}, {"reason", f.reason}});
    extra["invalid_fields"] = std::move(fields);
  }
  return http::problem(static_cast<bhttp::status>(e.status), e.detail, extra);
}

response invalid_field(std::string field, std::string reason, std::string detail = {},
                       bhttp::status status = bhttp::status::unprocessable_entity) {
  api::validation_error e;
  e.status = static_cast<int>(status);
  e.detail = detail.empty() ? field + ": " + reason : std::move(detail);
  e.fields.push_back({std::move(field), std::move(reason)});
  return invalid(e);
}

response not_found(std::string what) {
  return http::problem(bhttp::status::not_found, std::move(what));
}

json secret_json(const storage::token_row& t) {
  json out = {{"key", t.webhook_secret}};
  if (t.previous_secret_until && *t.previous_secret_until > api::now_micros()) {
    out["previous_key_expires_at"] = api::rfc3339_micros(*t.previous_secret_until);
  }
  return out;
}

json delivery_json(const storage::delivery_row& d) {
  auto at = [](const std::optional<storage::micros>& t) {
    return t ? json(api::rfc3339_micros(*t)) : json(nullptr);
  };
  json attempts = json::array();
  for (const auto& a : d.attempt_log) {
    attempts.push_back(
        {{"attempt", a.attempt},
         {"started_at", api::rfc3339_micros(a.started_at)},
         {"latency_ms", a.latency_ms ? json(*a.latency_ms) : json(nullptr)},
         {"status_code", a.status_code ? json(*a.status_code) : json(nullptr)},
         {"error", a.error ? json(*a.error) : json(nullptr)},
         {"response", a.response_excerpt ? json(*a.response_excerpt) : json(nullptr)}});
  }
  return {{"id", d.message_id},
          {"event", d.event},
          {"url", d.url},
          {"state", d.state},
          {"attempts", d.attempts},
          {"created_at", api::rfc3339_micros(d.created_at)},
          {"next_attempt_at", at(d.next_attempt_at)},
          {"finished_at", at(d.finished_at)},
          {"last_error", d.last_error ? json(*d.last_error) : json(nullptr)},
          {"attempt_log", std::move(attempts)}};
}

response unavailable(std::string detail) {
  auto res = http::problem(bhttp::status::service_unavailable, std::move(detail));
  res.set(bhttp::field::retry_after, "1");
  return res;
}

class handlers {
 public:
  explicit handlers(predictions_api& api) : api_(api) {}

  // Authenticates and rate-limits; on refusal `refusal` holds the response.
  asio::awaitable<std::optional<tenant>> admit(request_context& ctx, api::rate_limiter& limiter,
                                               std::optional<response>& refusal) {
    auto who = co_await api_.auth.authenticate(ctx.req[bhttp::field::authorization]);
    if (!who) {
      refusal = unauthorized();
      co_return std::nullopt;
    }
    if (auto d = limiter.acquire(who->token_id); !d.allowed) {
      refusal = throttled(d.retry_after);
      co_return std::nullopt;
    }
    co_return who;
  }

  response prediction(bhttp::status status, const storage::prediction_row& row) {
    return http::json_text(status, api::prediction_json_text(row, api_.public_url));
  }

  asio::awaitable<response> create(request_context& ctx, api::create_route route) {
    std::optional<response> refusal;
    auto who = co_await admit(ctx, api_.create_limiter, refusal);
    if (!who) co_return std::move(*refusal);

    const auto prefer = api::parse_prefer(ctx.req[bhttp::field::prefer]);
    if (!prefer.error.empty())
      co_return invalid_field("Prefer", prefer.error, {}, bhttp::status::bad_request);
    std::optional<storage::micros> deadline;
    if (auto h = ctx.req["Cancel-After"]; !h.empty()) {
      auto d = api::parse_cancel_after(h);
      if (!d.value)
        co_return invalid_field("Cancel-After", d.error, {}, bhttp::status::bad_request);
      deadline = api::now_micros() + d.value->count();
    }
    std::optional<std::string> idempotency_key;
    if (auto h = ctx.req["Idempotency-Key"]; !h.empty()) {
      // Printable ASCII only: the key travels in the batch's JSON and is stored as text, and
      // neither takes bytes that are not UTF-8.
      const bool printable = std::all_of(h.begin(), h.end(), [](char c) {
        return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f;
      });
      if (h.size() > 255 || !printable)
        co_return invalid_field("Idempotency-Key", "must be 1 to 255 printable ASCII characters",
                                {}, bhttp::status::bad_request);
      idempotency_key = std::string(h);
    }

    auto parsed = api::parse_create(ctx.req.body(), route);
    if (auto* e = std::get_if<api::validation_error>(&parsed)) co_return invalid(*e);
    auto& req = std::get<api::create_request>(parsed);
    if (req.webhook) {
      // Obviously bad targets (a private address, an odd IPv4 spelling) are refused now; host
      // names are resolved and checked at each delivery.
      auto checked = webhook::parse_webhook_url(*req.webhook, api_.webhook_guard);
      if (!checked.url) co_return invalid_field("webhook", checked.error);
    }

    const resolved_version* target = nullptr;
    if (route == api::create_route::model) {
      target = api_.catalog.find_model_latest(ctx.params.get("owner"), ctx.params.get("name"));
      if (!target) {
        co_return not_found("Model " + std::string(ctx.params.get("owner")) + "/" +
                            std::string(ctx.params.get("name")) + " not found");
      }
    } else if (route == api::create_route::deployment) {
      target = api_.catalog.find_deployment(ctx.params.get("owner"), ctx.params.get("name"));
      if (!target) {
        co_return not_found("Deployment " + std::string(ctx.params.get("owner")) + "/" +
                            std::string(ctx.params.get("name")) + " not found");
      }
    } else {
      const auto& v = *req.version;
      if (v.id) {
        target = api_.catalog.find_version(*v.id);
        if (target && v.owner && target->model != *v.owner + "/" + *v.name) target = nullptr;
      } else {
        target = api_.catalog.find_model_latest(*v.owner, *v.name);
      }
      if (!target) {
        co_return invalid_field("version", "not found", "Invalid version or not permitted");
      }
    }
    if (target->require_webhook && !req.webhook) {
      api::validation_error e;
      e.code = "E4875";
      e.detail = "E4875: webhook URL empty: this deployment requires a webhook";
      e.fields.push_back({"webhook", "required by this deployment"});
      co_return invalid(e);
    }

    storage::prediction_new row;
    row.id = api::new_prediction_id();
    row.token_id = who->token_id;
    row.model = target->model;
    row.version_id = target->version_id;
    row.deployment = target->deployment;
    row.input_json = req.input.dump();
    row.webhook = req.webhook;
    row.webhook_events_filter = req.webhook_events_filter;
    row.deadline = deadline;
    row.start_timeout_ms = target->start_timeout.count();
    row.run_timeout_ms = target->run_timeout.count();
    if (idempotency_key) {
      row.idempotency_key = idempotency_key;
      row.idempotency_sha256 = api::request_fingerprint(
          std::string(ctx.path()), json::parse(ctx.req.body(), nullptr, false));
    }

    // Subscribe first: a dispatcher may change the prediction right after the commit.
    const asio::any_io_executor self = co_await asio::this_coro::executor;
    std::shared_ptr<prediction_watch::waiter> waiter;
    if (prefer.wait) waiter = api_.watch.subscribe(row.id, self);
    const auto wait_until =
        std::chrono::steady_clock::now() + prefer.wait.value_or(std::chrono::seconds(0));

    auto result = co_await api_.batcher.submit(std::move(row));
    if (result.outcome == storage::insert_outcome::idempotency_conflict) {
      co_return invalid_field("Idempotency-Key", "already used with a different request",
                              "Idempotency-Key was already used with a different request");
    }
    storage::prediction_row current = std::move(result.row);
    if (result.outcome == storage::insert_outcome::existing && prefer.wait) {
      // The replayed prediction was read before this subscription: read it again, so that a
      // change committed in between is seen here rather than missed by the waiter.
      waiter = api_.watch.subscribe(current.id, self);
      if (auto fresh = co_await read(who->token_id, current.id)) current = std::move(*fresh);
    }
    bool timed_out = false;
    while (waiter && !is_terminal(current.status)) {
      if (!co_await waiter->wait_until(wait_until)) {
        timed_out = true;
        break;
      }
      auto fresh = co_await read(who->token_id, current.id);
      if (!fresh) break;
      current = std::move(*fresh);
    }
    // A wait that ran out answers 202 (still running); otherwise the new prediction's 201.
    auto res = prediction(timed_out ? bhttp::status::accepted : bhttp::status::created, current);
    res.set(bhttp::field::location, api::prediction_url(api_.public_url, current.id));
    if (result.outcome == storage::insert_outcome::existing) res.set("Idempotent-Replayed", "true");
    co_return res;
  }

  asio::awaitable<std::optional<storage::prediction_row>> read(std::int64_t token_id,
                                                               const std::string& id) {
    auto work = [token_id, &id](pqxx::connection& c) {
      pqxx::read_transaction tx(c);
      return storage::prediction_get(tx, token_id, id);
    };
    co_return co_await api_.db.run(work);
  }

  asio::awaitable<response> get(request_context& ctx) {
    std::optional<response> refusal;
    auto who = co_await admit(ctx, api_.read_limiter, refusal);
    if (!who) co_return std::move(*refusal);
    const std::string id(ctx.params.get("id"));
    if (!api::is_prediction_id(id)) co_return not_found("Prediction not found");
    auto row = co_await read(who->token_id, id);
    if (!row) co_return not_found("Prediction not found");
    co_return prediction(bhttp::status::ok, *row);
  }

  asio::awaitable<response> cancel(request_context& ctx) {
    std::optional<response> refusal;
    auto who = co_await admit(ctx, api_.read_limiter, refusal);
    if (!who) co_return std::move(*refusal);
    const std::string id(ctx.params.get("id"));
    if (!api::is_prediction_id(id)) co_return not_found("Prediction not found");
    const std::string base = api_.public_url;
    auto work = [token_id = who->token_id, &id, &base,
                 throttle_ms = api_.webhook_throttle_ms](pqxx::connection& c) {
      pqxx::work tx(c);
      auto r = storage::prediction_cancel(tx, token_id, id);
      if (r && (r->canceled_now || r->cancel_requested)) {
        storage::prediction_notify_changed(tx, {id});
      }
      if (r && r->canceled_now) {
        storage::delivery_insert_many(tx, webhook_deliveries_for(r->row, {"completed"}, base),
                                      throttle_ms);
      }
      tx.commit();
      return r;
    };
    auto result = co_await api_.db.run(work);
    if (!result) co_return not_found("Prediction not found");
    if (result->canceled_now && api_.webhooks_queued) api_.webhooks_queued();
    co_return prediction(bhttp::status::ok, result->row);
  }

  asio::awaitable<response> list(request_context& ctx) {
    std::optional<response> refusal;
    auto who = co_await admit(ctx, api_.read_limiter, refusal);
    if (!who) co_return std::move(*refusal);
    storage::prediction_list_params p;
    p.token_id = who->token_id;
    p.limit = page_size;
    auto ref = boost::urls::parse_relative_ref(ctx.req.target());
    if (!ref)
      co_return invalid_field("query", "malformed query string", {}, bhttp::status::bad_request);
    std::string created_after, created_before;
    for (auto param : ref->params()) {
      const std::string key = param.key;
      const std::string value = param.value;
      if (key == "cursor") {
        auto c = api::decode_cursor(value);
        if (!c)
          co_return invalid_field("cursor", "not a cursor this server issued", {},
                                  bhttp::status::bad_request);
        (c->forward ? p.after : p.before) = storage::prediction_cursor{c->created_at, c->id};
      } else if (key == "created_after" || key == "created_before") {
        auto t = api::parse_rfc3339(value);
        if (!t)
          co_return invalid_field(key, "must be an RFC 3339 timestamp", {},
                                  bhttp::status::bad_request);
        (key == "created_after" ? p.created_after : p.created_before) = *t;
        (key == "created_after" ? created_after : created_before) = value;
      }
    }
    auto work = [&p](pqxx::connection& c) {
      pqxx::read_transaction tx(c);
      return storage::prediction_list(tx, p);
    };
    auto rows = co_await api_.db.run(work);
    // rows holds up to page_size + 1: the extra one says another page exists in that direction.
    const bool backward = p.before.has_value();
    const bool more = rows.size() > page_size;
    if (more) {
      if (backward)
        rows.erase(rows.begin());
      else
        rows.pop_back();
    }
    auto page_url = [&](bool forward, const storage::prediction_row& edge) -> json {
      boost::urls::url u(api_.public_url + "/v1/predictions");
      u.params().append({"cursor", api::encode_cursor({forward, edge.created_at, edge.id})});
      if (!created_after.empty()) u.params().append({"created_after", created_after});
      if (!created_before.empty()) u.params().append({"created_before", created_before});
      return std::string(u.buffer());
    };
    json next = nullptr, previous = nullptr;
    if (!rows.empty()) {
      if (backward ? true : more) next = page_url(true, rows.back());
      if (backward ? more : p.after.has_value()) previous = page_url(false, rows.front());
    }
    std::string body =
        R"({"next":)" + next.dump() + R"(,"previous":)" + previous.dump() + R"(,"results":[)";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (i > 0) body += ',';
      body += api::prediction_json_text(rows[i], api_.public_url);
    }
    body += "]}";
    co_return http::json_text(bhttp::status::ok, std::move(body));
  }

  // Read from the database, not the authentication cache: a rotation shows at once.
  asio::awaitable<response> webhook_secret(request_context& ctx) {
    std::optional<response> refusal;
    auto who = co_await admit(ctx, api_.read_limiter, refusal);
    if (!who) co_return std::move(*refusal);
    auto work = [id = who->token_id](pqxx::connection& c) {
      pqxx::read_transaction tx(c);
      return storage::token_get(tx, id);
    };
    auto row = co_await api_.db.run(work);
    if (!row) co_return unauthorized();
    co_return http::json(bhttp::status::ok, secret_json(*row));
  }

  asio::awaitable<response> rotate_secret(request_context& ctx) {
    std::optional<response> refusal;
    auto who = co_await admit(ctx, api_.read_limiter, refusal);
    if (!who) co_return std::move(*refusal);
    auto work = [id = who->token_id, overlap = api_.secret_overlap](pqxx::connection& c) {
      pqxx::work tx(c);
      auto row = storage::token_rotate_secret(tx, id, webhook::generate_secret(), overlap);
      tx.commit();
      return row;
    };
    auto row = co_await api_.db.run(work);
    if (!row) co_return unauthorized();
    co_return http::json(bhttp::status::ok, secret_json(*row));
  }

  asio::awaitable<response> webhooks(request_context& ctx) {
    std::optional<response> refusal;
    auto who = co_await admit(ctx, api_.read_limiter, refusal);
    if (!who) co_return std::move(*refusal);
    const std::string id(ctx.params.get("id"));
    if (!api::is_prediction_id(id)) co_return not_found("Prediction not found");
    auto work = [token_id = who->token_id, &id](pqxx::connection& c) {
      pqxx::read_transaction tx(c);
      auto found = storage::prediction_get(tx, token_id, id).has_value();
      return std::make_pair(found, storage::delivery_list(tx, token_id, id));
    };
    auto [found, rows] = co_await api_.db.run(work);
    if (!found) co_return not_found("Prediction not found");
    json results = json::array();
    for (const auto& d : rows) results.push_back(delivery_json(d));
    co_return http::json(bhttp::status::ok, {{"results", std::move(results)}});
  }

  asio::awaitable<response> redeliver(request_context& ctx) {
    std::optional<response> refusal;
    auto who = co_await admit(ctx, api_.read_limiter, refusal);
    if (!who) co_return std::move(*refusal);
    const std::string id(ctx.params.get("id"));
    if (!api::is_prediction_id(id)) co_return not_found("Prediction not found");
    json body = json::parse(ctx.req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      co_return invalid_field("body", "must be a JSON object like {\"delivery\": \"msg_...\"}", {},
                              bhttp::status::bad_request);
    }
    for (const auto& [key, value] : body.items()) {
      if (key != "delivery") co_return invalid_field(key, "unknown field");
    }
    auto it = body.find("delivery");
    if (it == body.end() || !it->is_string()) {
      co_return invalid_field("delivery", "must be the id (msg_...) of one of its deliveries");
    }
    const std::string message_id = it->get<std::string>();
    auto work = [token_id = who->token_id, &id, &message_id](pqxx::connection& c) {
      pqxx::work tx(c);
      auto row = storage::delivery_redeliver(tx, token_id, id, message_id);
      tx.commit();
      return row;
    };
    auto row = co_await api_.db.run(work);
    if (!row) co_return not_found("Delivery " + message_id + " of prediction " + id + " not found");
    if (api_.webhooks_queued) api_.webhooks_queued();
    co_return http::json(bhttp::status::accepted, delivery_json(*row));
  }

 private:
  predictions_api& api_;
};

using api_handler = std::function<asio::awaitable<response>(handlers&, request_context&)>;

// Every route: before the service is ready, and while the database is unreachable, a 503 that the
// client may retry.
http::handler guarded(std::atomic<predictions_api*>& slot, api_handler h) {
  return [&slot, h = std::move(h)](request_context& ctx) -> asio::awaitable<response> {
    predictions_api* api = slot.load();
    if (api == nullptr) co_return unavailable("cogwheel is starting; retry shortly");
    std::string why;
    try {
      handlers hs(*api);
      co_return co_await h(hs, ctx);
    } catch (const storage::unavailable& e) {
      why = e.what();
    } catch (const pqxx::broken_connection& e) {
      why = e.what();
    }
    spdlog::warn("database unavailable: {}", why);
    co_return unavailable("The database is unavailable; retry shortly");
  };
}

}  // namespace

void add_prediction_routes(http::router& routes, std::atomic<predictions_api*>& slot) {
  using api::create_route;
  auto create = [&slot](create_route r) {
    return guarded(slot, [r](handlers& h, request_context& ctx) { return h.create(ctx, r); });
  };
  routes.add(bhttp::verb::post, "/v1/predictions", create(create_route::predictions));
  routes.add(bhttp::verb::post, "/v1/models/{owner}/{name}/predictions",
             create(create_route::model));
  routes.add(bhttp::verb::post, "/v1/deployments/{owner}/{name}/predictions",
             create(create_route::deployment));
  routes.add(bhttp::verb::get, "/v1/predictions",
             guarded(slot, [](handlers& h, request_context& ctx) { return h.list(ctx); }));
  routes.add(bhttp::verb::get, "/v1/predictions/{id}",
             guarded(slot, [](handlers& h, request_context& ctx) { return h.get(ctx); }));
  routes.add(bhttp::verb::post, "/v1/predictions/{id}/cancel",
             guarded(slot, [](handlers& h, request_context& ctx) { return h.cancel(ctx); }));
  routes.add(bhttp::verb::get, "/v1/predictions/{id}/webhooks",
             guarded(slot, [](handlers& h, request_context& ctx) { return h.webhooks(ctx); }));
  routes.add(bhttp::verb::post, "/v1/predictions/{id}/webhooks",
             guarded(slot, [](handlers& h, request_context& ctx) { return h.redeliver(ctx); }));
  routes.add(bhttp::verb::post, "/v1/webhooks/default/secret/rotate",
             guarded(slot, [](handlers& h, request_context& ctx) { return h.rotate_secret(ctx); }));
  routes.add(
      bhttp::verb::get, "/v1/webhooks/default/secret",
      guarded(slot, [](handlers& h, request_context& ctx) { return h.webhook_secret(ctx); }));
}

}  // namespace cogwheel::scheduler
