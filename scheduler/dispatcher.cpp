#include "scheduler/dispatcher.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "scheduler/api/ids.hpp"
#include "scheduler/api/prediction_json.hpp"
#include "scheduler/api/timefmt.hpp"
#include "storage/dispatch.hpp"
#include "storage/errors.hpp"
#include "storage/outbox.hpp"

namespace cogwheel::scheduler {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct applied_batch {
  std::vector<storage::prediction_row> rows;  // as written
  std::vector<std::string> unknown;           // ids not in the database
  std::size_t stale = 0;                      // updates that changed nothing
};

// One transaction for a batch of updates: lock the rows, merge every update in arrival order,
// write the changed rows with one statement, their webhook events and one notification.
applied_batch apply_batch(pqxx::connection& c, const std::vector<cog_update>& batch,
                          const std::string& public_url) {
  applied_batch out;
  pqxx::work tx(c);
  std::vector<std::string> ids;
  ids.reserve(batch.size());
  for (const auto& u : batch) ids.push_back(u.id);
  struct state {
    std::string expected;
    storage::prediction_row current;
    std::set<std::string> events;
    bool changed = false;
  };
  std::map<std::string, state> by_id;
  for (auto& row : storage::prediction_lock_many(tx, ids)) {
    std::string id = row.id;
    std::string status = row.status;
    by_id.emplace(std::move(id), state{std::move(status), std::move(row), {}, false});
  }
  for (const auto& u : batch) {
    auto it = by_id.find(u.id);
    if (it == by_id.end()) {
      out.unknown.push_back(u.id);
      continue;
    }
    auto m = merge_update(it->second.current, u);
    if (!m.changed) {
      ++out.stale;
      continue;
    }
    it->second.current = std::move(m.after);
    it->second.events.insert(m.events.begin(), m.events.end());
    it->second.changed = true;
  }
  std::vector<storage::prediction_change> changes;
  for (auto& [id, s] : by_id) {
    if (s.changed) changes.push_back({id, s.expected, s.current});
  }
  out.rows = storage::prediction_apply_many(tx, changes);
  std::vector<storage::delivery_new> deliveries;
  std::vector<std::string> changed_ids;
  for (const auto& row : out.rows) {
    changed_ids.push_back(row.id);
    const auto& events = by_id.at(row.id).events;
    if (events.empty() || !row.webhook) continue;
    const std::string payload = api::prediction_json(row, public_url).dump();
    // A completed event carries the final output and logs: no older snapshot is queued with it.
    const bool completed = events.contains("completed");
    for (const char* ev : {"start", "output", "logs", "completed"}) {
      if (!events.contains(ev)) continue;
      if (completed && (std::string_view(ev) == "output" || std::string_view(ev) == "logs")) {
        continue;
      }
      deliveries.push_back(
          {"msg_" + api::new_prediction_id(), row.id, row.token_id, ev, *row.webhook, payload});
    }
  }
  storage::delivery_insert_many(tx, deliveries);
  storage::prediction_notify_changed(tx, changed_ids);
  tx.commit();
  return out;
}

std::string container_detail(const http::client_response& res) {
  const json body = json::parse(res.body, nullptr, false);
  if (body.is_object() && body.contains("detail")) {
    const auto& d = body["detail"];
    if (d.is_string()) return d.get<std::string>();
    if (d.is_array()) {
      std::string out;
      for (const auto& item : d) {
        if (!out.empty()) out += "; ";
        std::string where;
        if (item.is_object() && item.contains("loc") && item["loc"].is_array()) {
          for (const auto& part : item["loc"]) {
            if (!where.empty()) where += ".";
            where += part.is_string() ? part.get<std::string>() : part.dump();
          }
        }
        const std::string msg = item.is_object() && item.contains("msg") && item["msg"].is_string()
                                    ? item["msg"].get<std::string>()
                                    : item.dump();
        out += where.empty() ? msg : where + ": " + msg;
      }
      return out;
    }
    return d.dump();
  }
  std::string text = res.body.substr(0, 300);
  return text.empty() ? "no detail" : text;
}

}  // namespace

dispatcher::dispatcher(asio::io_context& ioc, storage::database& db, container_pool& pool,
                       http::client& client, dispatcher_options opts)
    : ioc_(ioc),
      db_(db),
      pool_(pool),
      client_(client),
      opts_(std::move(opts)),
      wake_timer_(asio::make_strand(ioc)) {}

dispatcher::~dispatcher() {
  if (!stopping_) stop(std::chrono::milliseconds(0));
}

void dispatcher::start() {
  pool_.on_capacity = [this] { wake(); };
  pool_.on_lost = [this](const std::string& cid, std::vector<std::string> ids) {
    lost(cid, std::move(ids));
  };
  asio::co_spawn(wake_timer_.get_executor(), claim_loop(), asio::detached);
}

void dispatcher::wake() {
  wake_pending_ = true;
  asio::post(wake_timer_.get_executor(), [this] { wake_timer_.cancel(); });
}

void dispatcher::changed(const std::vector<std::string>& ids) {
  for (const auto& id : ids) {
    if (pool_.holder(id)) {
      cancel_check_ = true;
      wake();
      return;
    }
  }
}

std::size_t dispatcher::in_flight() const {
  std::size_t n = 0;
  for (const auto& c : pool_.snapshot()) n += static_cast<std::size_t>(c.in_use);
  return n;
}

void dispatcher::stop(std::chrono::milliseconds grace) {
  if (stopping_.exchange(true)) return;
  wake();
  const auto loop_until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!loop_done_ && std::chrono::steady_clock::now() < loop_until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Let running predictions finish, bounded by the grace period.
  const auto until = std::chrono::steady_clock::now() + grace;
  while (in_flight() > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (const auto left = in_flight(); left > 0) {
    spdlog::warn("{} prediction(s) still running at shutdown: the reaper resolves them", left);
  }
  // Wait for queued updates to be written, bounded.
  const auto flush_until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (updates_.empty() && !flushing_) break;
    }
    if (std::chrono::steady_clock::now() >= flush_until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

asio::awaitable<void> dispatcher::claim_loop() {
  auto last_renew = std::chrono::steady_clock::now();
  bool db_warned = false;
  while (!stopping_) {
    bool more = false;
    try {
      if (cancel_check_.exchange(false)) {
        const std::string owner = opts_.owner;
        auto work = [&owner](pqxx::connection& c) {
          pqxx::read_transaction tx(c);
          return storage::dispatch_cancels_pending(tx, owner, {});
        };
        auto pending = co_await db_.run(work);
        for (auto& [id, cid] : pending) {
          {
            std::lock_guard lock(mu_);
            if (!cancels_sent_.insert(id).second) continue;
          }
          asio::co_spawn(ioc_, send_cancel(id, cid), asio::detached);
        }
      }
      const auto now = std::chrono::steady_clock::now();
      if (now - last_renew > std::chrono::milliseconds(opts_.lease_ms / 3)) {
        last_renew = now;
        const std::string owner = opts_.owner;
        const auto lease = opts_.lease_ms;
        auto work = [&owner, lease](pqxx::connection& c) {
          pqxx::work tx(c);
          auto n = storage::dispatch_renew_leases(tx, owner, lease);
          tx.commit();
          return n;
        };
        co_await db_.run(work);
        cancel_check_ = true;  // the polling fallback for cancels
      }
      for (auto& [version, slots] : pool_.free_slots()) {
        if (stopping_) break;
        if (slots.size() > opts_.max_claim) slots.resize(opts_.max_claim);
        storage::claim_params p{version, slots, opts_.owner, opts_.lease_ms};
        auto work = [&p](pqxx::connection& c) {
          pqxx::work tx(c);
          auto claimed = storage::dispatch_claim(tx, p);
          tx.commit();
          return claimed;
        };
        auto claimed = co_await db_.run(work);
        for (auto& c : claimed) {
          pool_.acquire(c.container_id, c.row.id);
          asio::co_spawn(ioc_, send_put(std::move(c.row), std::move(c.container_id)),
                         asio::detached);
        }
        if (!claimed.empty() && claimed.size() == p.slots.size()) more = true;
      }
      if (db_warned) spdlog::info("dispatcher: database reachable again");
      db_warned = false;
    } catch (const std::exception& e) {
      if (!db_warned) spdlog::warn("dispatcher: {}", e.what());
      db_warned = true;
    }
    if (more) continue;
    if (!wake_pending_.exchange(false)) {
      wake_timer_.expires_after(opts_.poll_interval);
      co_await wake_timer_.async_wait(use_tuple);
      wake_pending_ = false;
    }
  }
  loop_done_ = true;
}

asio::awaitable<void> dispatcher::send_put(storage::prediction_row row, std::string cid) {
  json input = json::parse(row.input_json, nullptr, false);
  if (input.is_discarded()) input = json::object();
  const json body = {{"id", row.id},
                     {"input", std::move(input)},
                     {"webhook", opts_.callback_url},
                     {"webhook_events_filter", {"start", "output", "logs", "completed"}},
                     {"created_at", api::rfc3339_micros(row.created_at)}};
  http::client_request req;
  req.method = http::bhttp::verb::put;
  req.url = cid + "/predictions/" + row.id;
  req.headers = {{"Prefer", "respond-async"}, {"Content-Type", "application/json"}};
  req.body = body.dump();
  req.connect_timeout = std::chrono::milliseconds(2'000);
  req.total_timeout = opts_.put_timeout;
  auto res = co_await client_.send(req);
  if (!res.error.empty()) {
    pool_.mark(cid, container_health::unreachable);
    // Refused or unresolvable: the container never got it. Otherwise it may have: leave it
    // dispatched, for its updates or the reaper.
    if (res.error.starts_with("cannot connect") || res.error.starts_with("cannot resolve")) {
      spdlog::warn("prediction {}: container {} unreachable ({}); back to the queue", row.id, cid,
                   res.error);
      co_await requeue(row.id, cid);
    } else {
      spdlog::warn("prediction {}: no answer from container {} ({}); awaiting its updates", row.id,
                   cid, res.error);
    }
    co_return;
  }
  if (res.status == 409 || res.status >= 500) {
    pool_.mark(cid, res.status == 409 ? container_health::busy : container_health::unreachable);
    spdlog::info("prediction {}: container {} answered HTTP {}; back to the queue", row.id, cid,
                 res.status);
    co_await requeue(row.id, cid);
    co_return;
  }
  if (res.status >= 400) {
    pool_.release(row.id);
    fail(row.id, "E9243",
         "Error starting prediction: the container refused it (HTTP " + std::to_string(res.status) +
             "): " + container_detail(res));
    co_return;
  }
  const json answer = json::parse(res.body, nullptr, false);
  std::string why;
  if (auto u = parse_cog_update(answer, why)) {
    if (u->id == row.id) ingest(std::move(*u));
  } else {
    spdlog::debug("prediction {}: container answer without a state: {}", row.id, why);
  }
}

asio::awaitable<void> dispatcher::requeue(const std::string& id, const std::string& cid) {
  pool_.release(id);
  auto work = [&id, &cid](pqxx::connection& c) {
    pqxx::work tx(c);
    const bool ok = storage::dispatch_requeue(tx, id, cid);
    tx.commit();
    return ok;
  };
  try {
    co_await db_.run(work);
  } catch (const std::exception& e) {
    spdlog::warn("prediction {}: cannot put it back in the queue: {}", id, e.what());
  }
  wake();
}

asio::awaitable<void> dispatcher::send_cancel(std::string id, std::string cid) {
  http::client_request req;
  req.method = http::bhttp::verb::post;
  req.url = cid + "/predictions/" + id + "/cancel";
  req.connect_timeout = std::chrono::milliseconds(2'000);
  req.total_timeout = std::chrono::milliseconds(5'000);
  auto res = co_await client_.send(req);
  if (res.error.empty() && res.status == 404) {
    // Not running there (finished, or never started): a terminal update, if any, already came.
    cog_update u;
    u.id = id;
    u.status = "canceled";
    u.from_container = false;
    ingest(std::move(u));
  } else if (!res.ok()) {
    spdlog::warn("prediction {}: cancel at {} failed ({}); will retry", id, cid, res.describe());
    std::lock_guard lock(mu_);
    cancels_sent_.erase(id);
  }
}

void dispatcher::lost(const std::string& cid, std::vector<std::string> ids) {
  asio::co_spawn(ioc_, recover_lost(cid, std::move(ids)), asio::detached);
}

asio::awaitable<void> dispatcher::recover_lost(std::string cid, std::vector<std::string> ids) {
  for (const auto& id : ids) {
    // Not started there: back to the queue for another container. Started: it cannot finish.
    // The failure is queued behind any update the container sent before it died, so a terminal
    // update it did send wins.
    auto work = [&id, &cid](pqxx::connection& c) {
      pqxx::work tx(c);
      const bool ok = storage::dispatch_requeue(tx, id, cid);
      tx.commit();
      return ok;
    };
    bool requeued = false;
    try {
      requeued = co_await db_.run(work);
    } catch (const std::exception& e) {
      spdlog::warn("prediction {}: {}", id, e.what());
    }
    if (!requeued) {
      fail(id, "E8367",
           "Prediction stopped in non-terminal state: its container (" + cid + ") exited");
    }
  }
  wake();
}

void dispatcher::fail(const std::string& id, const std::string& code, const std::string& message) {
  cog_update u;
  u.id = id;
  u.status = "failed";
  u.error = message;
  u.error_code = code;
  u.from_container = false;
  ingest(std::move(u));
}

void dispatcher::ingest(cog_update u) {
  bool spawn = false;
  {
    std::lock_guard lock(mu_);
    updates_.push_back(std::move(u));
    spawn = !std::exchange(flushing_, true);
  }
  // Outside the lock: co_spawn may run the flusher inline, and it takes the lock.
  if (spawn) asio::co_spawn(ioc_, flush_updates(), asio::detached);
}

asio::awaitable<void> dispatcher::flush_updates() {
  int failures = 0;
  for (;;) {
    std::vector<cog_update> batch;
    {
      std::lock_guard lock(mu_);
      if (updates_.empty()) {
        flushing_ = false;
        co_return;
      }
      if (updates_.size() <= opts_.max_ingest_batch) {
        batch.swap(updates_);
      } else {
        const auto end = updates_.begin() + static_cast<std::ptrdiff_t>(opts_.max_ingest_batch);
        batch.assign(std::make_move_iterator(updates_.begin()), std::make_move_iterator(end));
        updates_.erase(updates_.begin(), end);
      }
    }
    const std::string base = opts_.public_url;
    auto work = [&batch, &base](pqxx::connection& c) { return apply_batch(c, batch, base); };
    applied_batch result;
    std::string error;
    try {
      result = co_await db_.run(work);
      failures = 0;
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (!error.empty()) {
      // Keep the updates (in order, ahead of newer ones) and retry, bounded.
      if (++failures > 20) {
        spdlog::error("dropping {} container update(s) after repeated failures: {}", batch.size(),
                      error);
        failures = 0;
        continue;
      }
      spdlog::warn("cannot apply {} container update(s), retrying: {}", batch.size(), error);
      {
        std::lock_guard lock(mu_);
        updates_.insert(updates_.begin(), std::make_move_iterator(batch.begin()),
                        std::make_move_iterator(batch.end()));
      }
      asio::steady_timer t(ioc_, std::chrono::milliseconds(250));
      co_await t.async_wait(use_tuple);
      continue;
    }
    for (const auto& row : result.rows) {
      if (is_terminal(row.status)) {
        pool_.release(row.id);
        std::lock_guard lock(mu_);
        cancels_sent_.erase(row.id);
      }
    }
    for (const auto& id : result.unknown) {
      std::lock_guard lock(mu_);
      if (ignored_logged_.size() < 10'000 && ignored_logged_.insert(id).second) {
        spdlog::info("ignoring a container update for unknown prediction {}", id);
      }
    }
    // Updates for predictions that ended elsewhere (stale terminal) free their slot too.
    for (const auto& u : batch) {
      if (is_terminal(u.status) && u.from_container) pool_.release(u.id);
    }
    if (on_applied && !result.rows.empty()) on_applied(result.rows);
  }
}

}  // namespace cogwheel::scheduler
