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
#include "scheduler/webhook_events.hpp"
#include "storage/dispatch.hpp"
#include "storage/errors.hpp"
#include "storage/outbox.hpp"

namespace cogwheel::scheduler {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// One transaction for a batch of updates: lock the rows, merge every update in arrival order,
// write the changed rows with one statement, their webhook events and one notification.
struct batch_result {
  std::vector<storage::prediction_row> rows;  // as written
  std::vector<std::string> unknown;           // ids not in the database
  std::set<std::string> ended_by_cogwheel;    // made terminal by an update of cogwheel's own
  std::size_t stale = 0;                      // updates that changed nothing
};

// One transaction for a batch of updates: read the rows (no lock), merge every update in arrival
// order, write the changed rows with one statement conditional on the versions read (optimistic:
// a row another transaction changed meanwhile is read and merged again, a few rounds, then
// locked), then their webhook events and one notification.
batch_result apply_batch(pqxx::connection& c, const std::vector<cog_update>& batch,
                         const std::string& public_url, int throttle_ms) {
  batch_result out;
  pqxx::work tx(c);
  struct state {
    std::string expected;
    std::string version;
    storage::prediction_row current;
    std::set<std::string> events;
    bool changed = false;
    bool ended_by_cogwheel = false;
  };
  std::map<std::string, std::vector<const cog_update*>> by_prediction;
  for (const auto& u : batch) by_prediction[u.id].push_back(&u);
  std::vector<std::string> pending;
  for (const auto& [id, updates] : by_prediction) pending.push_back(id);
  std::map<std::string, const state> written;
  for (int round = 0; !pending.empty(); ++round) {
    std::map<std::string, state> by_id;
    if (round < 3) {
      for (auto& v : storage::prediction_read_many(tx, pending)) {
        std::string id = v.row.id;
        std::string status = v.row.status;
        by_id.emplace(
            std::move(id),
            state{std::move(status), std::move(v.version), std::move(v.row), {}, false, false});
      }
    } else {  // contended for three rounds: lock them and be done
      for (auto& row : storage::prediction_lock_many(tx, pending)) {
        std::string id = row.id;
        std::string status = row.status;
        by_id.emplace(std::move(id),
                      state{std::move(status), "", std::move(row), {}, false, false});
      }
    }
    for (const auto& id : pending) {
      auto it = by_id.find(id);
      if (it == by_id.end()) {
        if (round == 0) out.unknown.push_back(id);
        continue;
      }
      for (const auto* u : by_prediction.at(id)) {
        auto m = merge_update(it->second.current, *u);
        if (!m.changed) {
          if (round == 0) ++out.stale;
          continue;
        }
        if (!u->from_container && is_terminal(m.after.status)) it->second.ended_by_cogwheel = true;
        it->second.current = std::move(m.after);
        it->second.events.insert(m.events.begin(), m.events.end());
        it->second.changed = true;
      }
    }
    std::vector<storage::prediction_change> changes;
    for (auto& [id, st] : by_id) {
      if (!st.changed) continue;
      storage::prediction_change ch{id, st.expected, st.current, {}};
      if (!st.version.empty()) ch.expected_version = st.version;
      changes.push_back(std::move(ch));
    }
    auto rows = storage::prediction_apply_many(tx, changes);
    std::set<std::string> done;
    for (auto& row : rows) {
      done.insert(row.id);
      if (by_id.at(row.id).ended_by_cogwheel) out.ended_by_cogwheel.insert(row.id);
      written.emplace(row.id, by_id.at(row.id));
      out.rows.push_back(std::move(row));
    }
    // Changed by someone else since it was read: read and merge again.
    std::vector<std::string> again;
    for (const auto& ch : changes) {
      if (!done.contains(ch.id)) again.push_back(ch.id);
    }
    pending.swap(again);
  }
  std::vector<storage::delivery_new> deliveries;
  std::vector<storage::prediction_note> notes;
  for (const auto& row : out.rows) {
    notes.push_back({row.id, row.status});
    for (auto& d : webhook_deliveries_for(row, written.at(row.id).events, public_url)) {
      deliveries.push_back(std::move(d));
    }
  }
  storage::delivery_insert_many(tx, deliveries, throttle_ms);
  storage::prediction_notify_notes(tx, notes);
  tx.commit();
  return out;
}

// Whether a failure to apply is worth retrying as it is (the database is away, a deadlock, a
// statement timeout) rather than a problem with the updates themselves.
bool transient(const std::exception& e) {
  if (dynamic_cast<const storage::unavailable*>(&e)) return true;
  if (dynamic_cast<const pqxx::broken_connection*>(&e)) return true;
  if (dynamic_cast<const pqxx::transaction_rollback*>(&e)) return true;
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e)) return true;
  return std::string_view(e.what()).find("statement timeout") != std::string_view::npos;
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

struct dispatcher::applied : batch_result {};

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
  pool_.on_unhealthy = [this](const std::string& cid, container_health h,
                              std::vector<std::string> ids) { unhealthy(cid, h, std::move(ids)); };
  asio::co_spawn(wake_timer_.get_executor(), claim_loop(), asio::detached);
}

void dispatcher::wake() {
  wake_pending_ = true;
  asio::post(wake_timer_.get_executor(), [this] { wake_timer_.cancel(); });
}

void dispatcher::queued(const std::vector<std::string>& versions) {
  // Every insert announces its versions to every process; a claim for versions whose containers
  // are full or elsewhere would find nothing (their slots wake the loop when they free up).
  if (versions.empty() || pool_.has_room(versions)) wake();
}

void dispatcher::changed(const std::vector<storage::prediction_note>& notes) {
  bool check_cancels = false;
  for (const auto& n : notes) {
    const auto cid = pool_.holder(n.id);
    if (!cid) continue;
    if (n.note.empty() || n.note == "cancel") {
      check_cancels = true;
    } else if (is_terminal(n.note)) {
      // Ended by another process: by cogwheel's own decision (the container may still run it),
      // or by the container's update applied there (a cancel then finds nothing: harmless).
      if (n.note != "succeeded") asio::co_spawn(ioc_, send_cancel(n.id, *cid), asio::detached);
      pool_.release(n.id);
    }
  }
  if (check_cancels) {
    cancel_check_ = true;
    wake();
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
  hand_over();
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
  bool db_warned = false;
  while (!stopping_) {
    bool more = false;
    try {
      if (cancel_check_.exchange(false)) co_await forward_cancels();
      co_await renew_leases();
      co_await claim_free_slots(more);
      if (db_warned) spdlog::info("dispatcher: database reachable again");
      db_warned = false;
    } catch (const std::exception& e) {
      if (!db_warned) spdlog::warn("dispatcher: {}", e.what());
      db_warned = true;
    }
    if (more) continue;
    if (!wake_pending_.exchange(false)) {
      // Wake for the polling fallback, and in time to renew the leases (a third of their life).
      wake_timer_.expires_after(
          std::min(opts_.poll_interval, std::chrono::milliseconds(opts_.lease_ms / 3)));
      co_await wake_timer_.async_wait(use_tuple);
      wake_pending_ = false;
    }
  }
  loop_done_ = true;
}

asio::awaitable<void> dispatcher::forward_cancels() {
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

asio::awaitable<void> dispatcher::renew_leases() {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_renew_ < std::chrono::milliseconds(opts_.lease_ms / 3)) co_return;
  last_renew_ = now;
  const std::string owner = opts_.owner;
  const auto lease = opts_.lease_ms;
  std::vector<std::string> ids;
  for (auto& [id, cid] : pool_.held(/*process_only=*/false)) ids.push_back(std::move(id));
  auto work = [&owner, &ids, lease](pqxx::connection& c) {
    pqxx::work tx(c);
    auto n = storage::dispatch_renew_leases(tx, owner, ids, lease);
    tx.commit();
    return n;
  };
  if (!ids.empty()) co_await db_.run(work);
  cancel_check_ = true;  // the polling fallback for cancels
}

namespace {

// The reserved slots a claim did not use (claimed rows took slots[0..k)).
std::vector<std::string> unused_slots(std::vector<std::string> slots,
                                      const std::vector<storage::claimed_prediction>& claimed) {
  for (const auto& c : claimed) {
    auto it = std::find(slots.begin(), slots.end(), c.container_id);
    if (it != slots.end()) slots.erase(it);
  }
  return slots;
}

}  // namespace

asio::awaitable<void> dispatcher::claim_free_slots(bool& more) {
  auto reserved = pool_.reserve({}, opts_.max_claim);
  for (auto& [version, slots] : reserved) {
    std::vector<storage::claimed_prediction> claimed;
    if (!stopping_) {
      storage::claim_params p{version, slots, opts_.owner, opts_.lease_ms};
      auto work = [&p](pqxx::connection& c) {
        pqxx::work tx(c);
        auto rows = storage::dispatch_claim(tx, p);
        tx.commit();
        return rows;
      };
      try {
        claimed = co_await db_.run(work);
      } catch (...) {
        for (const auto& cid : slots) pool_.unreserve(cid);
        for (auto& [v, rest] : reserved) {
          if (v > version) {
            for (const auto& cid : rest) pool_.unreserve(cid);
          }
        }
        throw;
      }
    }
    for (const auto& cid : unused_slots(slots, claimed)) pool_.unreserve(cid);
    if (!claimed.empty() && claimed.size() == slots.size()) more = true;
    start_claimed(std::move(claimed));
  }
}

void dispatcher::start_claimed(std::vector<storage::claimed_prediction> claimed) {
  for (auto& c : claimed) {
    pool_.confirm(c.container_id, c.row.id);
    asio::co_spawn(ioc_, send_put(std::move(c.row), std::move(c.container_id)), asio::detached);
  }
}

std::function<void(bool)> dispatcher::claim_in(pqxx::transaction_base& tx,
                                               const std::vector<std::string>& versions) {
  if (stopping_ || versions.empty()) return {};
  auto reserved = pool_.reserve(versions, opts_.max_claim);
  if (reserved.empty()) return {};
  auto claimed = std::make_shared<std::vector<storage::claimed_prediction>>();
  auto unused = std::make_shared<std::vector<std::string>>();
  try {
    for (auto& [version, slots] : reserved) {
      storage::claim_params p{version, slots, opts_.owner, opts_.lease_ms};
      auto rows = storage::dispatch_claim(tx, p);
      for (auto& cid : unused_slots(slots, rows)) unused->push_back(std::move(cid));
      for (auto& r : rows) claimed->push_back(std::move(r));
    }
  } catch (...) {
    for (const auto& [version, slots] : reserved) {
      for (const auto& cid : slots) pool_.unreserve(cid);
    }
    throw;
  }
  return [this, claimed, unused, reserved = std::move(reserved)](bool committed) {
    if (!committed) {
      for (const auto& [version, slots] : reserved) {
        for (const auto& cid : slots) pool_.unreserve(cid);
      }
      wake();
      return;
    }
    for (const auto& cid : *unused) pool_.unreserve(cid);
    if (!unused->empty()) wake();  // those slots are free again for older queued work
    start_claimed(std::move(*claimed));
  };
}

bool dispatcher::can_claim(const std::vector<std::string>& versions) {
  return !stopping_ && pool_.has_free_slot(versions);
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
    // Refused or unresolvable: the container never got it. Otherwise it may have: leave it
    // dispatched, for its updates, or for the next health check to find the container gone (then
    // it goes back to the queue or fails with E8765), or for the start timeout.
    if (res.error.starts_with("cannot connect") || res.error.starts_with("cannot resolve")) {
      pool_.mark(cid, container_health::unreachable);
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

asio::awaitable<bool> dispatcher::requeue(const std::string& id, const std::string& cid) {
  pool_.release(id);
  auto work = [&id, &cid](pqxx::connection& c) {
    pqxx::work tx(c);
    const bool ok = storage::dispatch_requeue(tx, id, cid);
    tx.commit();
    return ok;
  };
  bool ok = false;
  try {
    ok = co_await db_.run(work);
  } catch (const std::exception& e) {
    spdlog::warn("prediction {}: cannot put it back in the queue: {}", id, e.what());
  }
  wake();
  co_return ok;
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
    ingest(internal_update(id, "canceled"));
  } else if (!res.ok()) {
    spdlog::warn("prediction {}: cancel at {} failed ({}); will retry", id, cid, res.describe());
    std::lock_guard lock(mu_);
    cancels_sent_.erase(id);
  }
}

void dispatcher::fail(const std::string& id, const std::string& code, const std::string& message) {
  ingest(internal_update(id, "failed", "", code, message));
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
    auto result = co_await apply_with_retry(batch);
    after_applied(batch, result);
  }
}

asio::awaitable<std::size_t> dispatcher::apply(std::vector<cog_update> updates) {
  if (updates.empty()) co_return 0;
  auto result = co_await apply_with_retry(updates);
  after_applied(updates, result);
  co_return result.rows.size();
}

// Applies a batch, never dropping an update the database could still take: transient failures
// (the database away, a deadlock) are retried with backoff for as long as they last; a batch that
// fails for another reason is applied one update at a time, and only an update that fails alone
// for such a reason (a bug) is dropped, with an error.
asio::awaitable<dispatcher::applied> dispatcher::apply_with_retry(std::vector<cog_update> batch) {
  const std::string base = opts_.public_url;
  auto backoff = std::chrono::milliseconds(100);
  bool warned = false;
  for (;;) {
    std::string error;
    bool retry_as_is = false;
    try {
      auto work = [&batch, &base, throttle = opts_.webhook_throttle_ms](pqxx::connection& c) {
        return apply_batch(c, batch, base, throttle);
      };
      applied out;
      static_cast<batch_result&>(out) = co_await db_.run(work);
      if (warned) spdlog::info("container updates are being applied again");
      co_return out;
    } catch (const std::exception& e) {
      error = e.what();
      retry_as_is = transient(e);
    }
    if (!retry_as_is && batch.size() > 1) {
      applied all;
      for (auto& u : batch) {
        std::vector<cog_update> single{u};  // named: no temporary inside co_await (GCC 12)
        auto one = co_await apply_with_retry(std::move(single));
        all.rows.insert(all.rows.end(), one.rows.begin(), one.rows.end());
        all.unknown.insert(all.unknown.end(), one.unknown.begin(), one.unknown.end());
        all.ended_by_cogwheel.insert(one.ended_by_cogwheel.begin(), one.ended_by_cogwheel.end());
        all.stale += one.stale;
      }
      co_return all;
    }
    if (!retry_as_is) {
      spdlog::error("prediction {}: dropping an update the database refuses: {}",
                    batch.empty() ? "" : batch.front().id, error);
      co_return applied{};
    }
    if (!warned) {
      spdlog::warn(
          "cannot apply {} container update(s), retrying until the database takes them: {}",
          batch.size(), error);
      warned = true;
    }
    asio::steady_timer t(ioc_, backoff);
    co_await t.async_wait(use_tuple);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2'000));
  }
}

void dispatcher::after_applied(const std::vector<cog_update>& batch, const applied& result) {
  for (const auto& row : result.rows) {
    if (!is_terminal(row.status)) continue;
    const auto cid = pool_.release(row.id);
    // cogwheel ended it (a timeout, a deadline, a lost container): the container may still be
    // running it, so tell it to stop.
    if (cid && result.ended_by_cogwheel.contains(row.id)) {
      asio::co_spawn(ioc_, send_cancel(row.id, *cid), asio::detached);
    }
    std::lock_guard lock(mu_);
    cancels_sent_.erase(row.id);
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

}  // namespace cogwheel::scheduler
