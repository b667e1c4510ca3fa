// The reaper's statements against a real PostgreSQL: what is due (deadlines, start and run
// timeouts, lapsed leases), taking lapsed work over, handing leases back, retention and the
// leader lease; and that each due lookup is served by the partial index meant for it.
#include "storage/reaper.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "scheduler/cog_update.hpp"
#include "storage/catalog.hpp"
#include "storage/dispatch.hpp"
#include "storage/migrator.hpp"
#include "storage/outbox.hpp"
#include "storage/predictions.hpp"
#include "storage/tokens.hpp"
#include "tests/support/pg.hpp"

using namespace cogwheel;
using nlohmann::json;

namespace {

const std::string v1(64, 'c');

using strings = std::vector<std::string>;

// Prediction ids whose order is easy to read: pid('1') < pid('2') < ...
std::string pid(char c) {
  return std::string(26, c);
}

strings ids_of(const std::vector<storage::due_prediction>& due) {
  strings out;
  for (const auto& d : due) out.push_back(d.id);
  return out;
}

strings ids_of(const std::vector<storage::lapsed_prediction>& lapsed) {
  strings out;
  for (const auto& l : lapsed) out.push_back(l.id);
  return out;
}

strings sorted(strings s) {
  std::sort(s.begin(), s.end());
  return s;
}

struct reaper_fixture {
  test::test_schema schema;
  pqxx::connection conn{migrated(schema)};
  std::int64_t token_id = 0;

  reaper_fixture() {
    pqxx::work tx(conn);
    storage::catalog_spec spec;
    spec.models.push_back({"acme", "echo", "", {{v1, "{}", {}, {}}}});
    storage::catalog_sync(tx, spec);
    token_id = storage::token_insert(tx, {"reaper", std::string(32, '\x02'), "cw_reap",
                                          "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"});
    tx.commit();
  }

  storage::prediction_new fresh(const std::string& id, std::int64_t start_timeout_ms = 600'000,
                                std::int64_t run_timeout_ms = 1'800'000) const {
    storage::prediction_new p;
    p.id = id;
    p.token_id = token_id;
    p.model = "acme/echo";
    p.version_id = v1;
    p.input_json = R"({"prompt":"hi"})";
    p.webhook = "https://hooks.example/reaper";
    p.start_timeout_ms = start_timeout_ms;
    p.run_timeout_ms = run_timeout_ms;
    return p;
  }

  // A queued prediction, created now.
  void insert(const std::string& id, std::int64_t start_timeout_ms = 600'000,
              std::int64_t run_timeout_ms = 1'800'000) {
    insert_row(fresh(id, start_timeout_ms, run_timeout_ms));
  }

  void insert_row(const storage::prediction_new& p) {
    pqxx::work tx(conn);
    auto r = storage::prediction_insert_many(tx, {p});
    REQUIRE(r.size() == 1);
    REQUIRE(r[0].outcome == storage::insert_outcome::created);
    tx.commit();
  }

  void exec(const std::string& sql) {
    pqxx::work tx(conn);
    tx.exec(sql);
    tx.commit();
  }

  template <class... Args>
  void exec_params(const std::string& sql, Args&&... args) {
    pqxx::work tx(conn);
    tx.exec_params(sql, std::forward<Args>(args)...);
    tx.commit();
  }

  // Sent to `container` by `owner`, with a lease of `lease_ms` (negative: already lapsed).
  void dispatch(const std::string& id, const std::string& container,
                const std::string& owner = "owner-1", std::int64_t lease_ms = 30'000) {
    exec_params(
        "UPDATE predictions SET dispatched_at = now(), container_id = $2, attempt = attempt + 1, "
        "lease_owner = $3, lease_expires_at = now() + $4 * interval '1 millisecond' "
        "WHERE id = $1",
        id, container, owner, lease_ms);
  }

  void set_lease(const std::string& id, const std::string& owner, const std::string& interval) {
    exec_params(
        "UPDATE predictions SET lease_owner = $2, lease_expires_at = now() + $3::interval "
        "WHERE id = $1",
        id, owner, interval);
  }

  // The container reports that it runs the prediction: applied the way the dispatcher does
  // (lock, merge, conditional apply), which marks it started and sets run_by.
  void start(const std::string& id) {
    pqxx::work tx(conn);
    auto rows = storage::prediction_lock_many(tx, {id});
    REQUIRE(rows.size() == 1);
    std::string why;
    auto u = scheduler::parse_cog_update(
        json{{"id", id}, {"status", "processing"}, {"logs", "booting\n"}}, why);
    INFO(why);
    REQUIRE(u);
    auto m = scheduler::merge_update(rows[0], *u);
    REQUIRE(m.changed);
    auto applied = storage::prediction_apply_many(tx, {{id, rows[0].status, m.after}});
    REQUIRE(applied.size() == 1);
    REQUIRE(applied[0].status == "processing");
    tx.commit();
  }

  // Ends it with plain SQL that keeps the CHECK constraints (and, unlike the dispatcher's
  // writes, leaves its lease in place).
  void finish(const std::string& id, const std::string& status) {
    exec_params(
        "UPDATE predictions SET status = $2::text, completed_at = now(), "
        "started_at = CASE WHEN $2::text = 'succeeded' THEN coalesce(started_at, now()) "
        "ELSE started_at END, "
        "error_code = CASE WHEN $2::text = 'failed' THEN 'E1000' END, "
        "error = CASE WHEN $2::text = 'failed' THEN 'E1000: the model failed' END "
        "WHERE id = $1",
        id, status);
  }

  // Moves all of its times `interval` into the past (their order is kept).
  void age(const std::string& id, const std::string& interval) {
    exec_params(
        "UPDATE predictions SET created_at = created_at - $2::interval, "
        "start_by = start_by - $2::interval, started_at = started_at - $2::interval, "
        "run_by = run_by - $2::interval, completed_at = completed_at - $2::interval "
        "WHERE id = $1",
        id, interval);
  }

  // One value of one row, as text ("null" for NULL), in its own transaction.
  std::string value(const std::string& id, const std::string& expr) {
    pqxx::read_transaction tx(conn);
    auto f = tx.exec_params1("SELECT " + expr + " FROM predictions WHERE id = $1", id)[0];
    return f.is_null() ? "null" : f.as<std::string>();
  }

  std::string query(const std::string& sql) {
    pqxx::read_transaction tx(conn);
    auto f = tx.exec1(sql)[0];
    return f.is_null() ? "null" : f.as<std::string>();
  }

  // Whether `condition` (SQL) holds, asked in fresh transactions (now() moves on) until it does
  // or ten seconds pass.
  bool eventually(const std::string& condition) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      {
        pqxx::read_transaction tx(conn);
        if (tx.exec1("SELECT coalesce((" + condition + "), false)")[0].as<bool>()) return true;
      }
      if (std::chrono::steady_clock::now() >= until) return false;
    }
  }

  std::vector<storage::due_prediction> deadlines(std::size_t limit = 100) {
    pqxx::work tx(conn);
    auto out = storage::prediction_due_deadlines(tx, limit);
    tx.commit();
    return out;
  }
  std::vector<storage::due_prediction> start_timeouts(std::size_t limit = 100) {
    pqxx::work tx(conn);
    auto out = storage::prediction_due_start_timeouts(tx, limit);
    tx.commit();
    return out;
  }
  std::vector<storage::due_prediction> run_timeouts(std::size_t limit = 100) {
    pqxx::work tx(conn);
    auto out = storage::prediction_due_run_timeouts(tx, limit);
    tx.commit();
    return out;
  }
  std::vector<storage::lapsed_prediction> lapsed(std::size_t limit = 100) {
    pqxx::work tx(conn);
    auto out = storage::prediction_lapsed_leases(tx, limit);
    tx.commit();
    return out;
  }
  bool adopt(const std::string& id, const std::string& container, const std::string& owner,
             std::int64_t lease_ms = 30'000) {
    pqxx::work tx(conn);
    const bool ok = storage::prediction_adopt(tx, id, container, owner, lease_ms);
    tx.commit();
    return ok;
  }
  bool acquire(const std::string& name, const std::string& owner, std::int64_t ttl_ms = 30'000) {
    pqxx::work tx(conn);
    const bool ok = storage::leader_acquire(tx, name, owner, ttl_ms);
    tx.commit();
    return ok;
  }
  void release(const std::string& name, const std::string& owner) {
    pqxx::work tx(conn);
    storage::leader_release(tx, name, owner);
    tx.commit();
  }
  std::string leader_of(const std::string& name) {
    pqxx::read_transaction tx(conn);
    auto r = tx.exec_params("SELECT owner FROM leader_leases WHERE name = $1", name);
    return r.empty() ? "-" : r[0][0].as<std::string>();
  }

  void delivery(const std::string& message_id, const std::string& prediction_id,
                const std::string& payload, const std::string& state) {
    pqxx::work tx(conn);
    storage::delivery_insert_many(tx, {{message_id, prediction_id, token_id, "completed",
                                        "https://hooks.example/reaper", payload}});
    if (state != "pending") {
      tx.exec_params(
          "UPDATE webhook_deliveries SET state = $2, finished_at = now() WHERE message_id = $1",
          message_id, state);
    }
    tx.commit();
  }
  std::string payload_of(const std::string& message_id) {
    pqxx::read_transaction tx(conn);
    auto r =
        tx.exec_params("SELECT payload FROM webhook_deliveries WHERE message_id = $1", message_id);
    return r.empty() ? "(gone)" : r[0][0].as<std::string>();
  }
};

}  // namespace

TEST_CASE_METHOD(reaper_fixture,
                 "prediction_due_deadlines lists live predictions past their deadline, oldest "
                 "deadline first",
                 "[pg][reaper]") {
  insert(pid('1'));  // starting, queued: 10 minutes past
  insert(pid('2'));  // processing: 20 minutes past
  insert(pid('3'));  // starting, dispatched: 5 minutes past
  insert(pid('4'));  // starting: deadline in an hour
  insert(pid('5'));  // succeeded, deadline past
  insert(pid('6'));  // aborted, deadline past
  insert(pid('7'));  // no deadline at all
  insert(pid('9'));  // canceled while processing, deadline past
  dispatch(pid('2'), "http://c2");
  start(pid('2'));
  dispatch(pid('3'), "http://c3");
  dispatch(pid('9'), "http://c9");
  start(pid('9'));
  exec("UPDATE predictions SET deadline = now() - interval '10 minutes' WHERE id = '" + pid('1') +
       "'");
  exec("UPDATE predictions SET deadline = now() - interval '20 minutes' WHERE id = '" + pid('2') +
       "'");
  exec("UPDATE predictions SET deadline = now() - interval '5 minutes' WHERE id = '" + pid('3') +
       "'");
  exec("UPDATE predictions SET deadline = now() + interval '1 hour' WHERE id = '" + pid('4') + "'");
  exec("UPDATE predictions SET deadline = now() - interval '1 hour' WHERE id IN ('" + pid('5') +
       "', '" + pid('6') + "', '" + pid('9') + "')");
  finish(pid('5'), "succeeded");
  finish(pid('6'), "aborted");
  finish(pid('9'), "canceled");
  // A deadline given at create (Cancel-After), 30 minutes in the past: the oldest of all.
  const auto db_now_us = std::stoll(query("SELECT (extract(epoch FROM now()) * 1000000)::bigint"));
  auto p = fresh(pid('8'));
  p.deadline = db_now_us - 30LL * 60 * 1'000'000;
  insert_row(p);
  REQUIRE(value(pid('9'), "status") == "canceled");
  REQUIRE(value(pid('6'), "status") == "aborted");

  auto due = deadlines();
  CHECK(ids_of(due) == strings{pid('8'), pid('2'), pid('1'), pid('3')});
  REQUIRE(due.size() == 4);
  CHECK(due[0].status == "starting");
  CHECK_FALSE(due[0].container_id);
  CHECK(due[1].status == "processing");
  CHECK(due[1].container_id == std::optional<std::string>("http://c2"));
  CHECK(due[2].status == "starting");
  CHECK_FALSE(due[2].container_id);
  CHECK(due[3].status == "starting");
  CHECK(due[3].container_id == std::optional<std::string>("http://c3"));
  for (const auto& d : due) CHECK(d.limit_ms == 0);

  CHECK(ids_of(deadlines(2)) == strings{pid('8'), pid('2')});
  CHECK(ids_of(deadlines(1)) == strings{pid('8')});
  CHECK(deadlines(0).empty());

  // Once the future deadline passes too, it is listed, at its place.
  exec("UPDATE predictions SET deadline = now() - interval '1 minute' WHERE id = '" + pid('4') +
       "'");
  CHECK(ids_of(deadlines()) == strings{pid('8'), pid('2'), pid('1'), pid('3'), pid('4')});
}

TEST_CASE_METHOD(reaper_fixture,
                 "prediction_due_start_timeouts lists starting predictions past start_by",
                 "[pg][reaper]") {
  insert(pid('1'), 1);        // due almost at once
  insert(pid('2'), 600'000);  // not for ten minutes
  insert(pid('3'), 1);        // would be due, but it is running
  insert(pid('4'), 1);        // would be due, but it is canceled
  insert(pid('5'), 1);        // dispatched, not started: due, with its container
  insert(pid('6'), 250);      // an hour ago: due long since
  insert(pid('7'), 5'000);    // two hours ago: the oldest start_by
  dispatch(pid('3'), "http://c3");
  start(pid('3'));
  finish(pid('4'), "canceled");
  dispatch(pid('5'), "http://c5");
  age(pid('6'), "1 hour");
  age(pid('7'), "2 hours");
  // start_by is fixed at create from the timeout: created_at + start_timeout_ms.
  CHECK(value(pid('2'), "start_by = created_at + interval '600 seconds'") == "t");
  CHECK(value(pid('1'), "start_by = created_at + interval '1 millisecond'") == "t");

  REQUIRE(eventually("SELECT bool_and(start_by < now()) FROM predictions WHERE id IN ('" +
                     pid('1') + "', '" + pid('3') + "', '" + pid('5') + "')"));
  auto due = start_timeouts();
  CHECK(ids_of(due) == strings{pid('7'), pid('6'), pid('1'), pid('5')});
  REQUIRE(due.size() == 4);
  CHECK(due[0].limit_ms == 5'000);
  CHECK(due[1].limit_ms == 250);
  CHECK(due[2].limit_ms == 1);
  CHECK(due[3].limit_ms == 1);
  for (const auto& d : due) CHECK(d.status == "starting");
  CHECK_FALSE(due[0].container_id);
  CHECK_FALSE(due[2].container_id);
  CHECK(due[3].container_id == std::optional<std::string>("http://c5"));

  CHECK(ids_of(start_timeouts(2)) == strings{pid('7'), pid('6')});
  CHECK(start_timeouts(0).empty());
  // The ten-minute one is not due, and it stays out until its start_by passes.
  CHECK(value(pid('2'), "start_by > now()") == "t");
  exec("UPDATE predictions SET start_by = now() - interval '1 second' WHERE id = '" + pid('2') +
       "'");
  CHECK(ids_of(start_timeouts()).size() == 5);
}

TEST_CASE_METHOD(reaper_fixture,
                 "prediction_due_run_timeouts lists processing predictions past run_by, which "
                 "the start sets",
                 "[pg][reaper]") {
  insert(pid('1'), 600'000, 1);          // started: due almost at once
  insert(pid('2'), 600'000, 1'800'000);  // started: not for half an hour
  insert(pid('3'), 600'000, 1);          // dispatched, not started: no run_by yet
  insert(pid('4'), 600'000, 1);          // started, then succeeded
  insert(pid('5'), 600'000, 60'000);     // started two hours ago: the oldest run_by
  insert(pid('6'), 600'000, 1);          // queued
  for (char c : std::string("12345")) dispatch(pid(c), "http://c" + std::string(1, c));
  for (char c : std::string("1245")) start(pid(c));
  finish(pid('4'), "succeeded");
  age(pid('5'), "2 hours");

  // run_by = the start + run_timeout_ms, from the statement that marked it started.
  for (char c : std::string("1245")) {
    INFO(c);
    CHECK(value(pid(c), "run_by = started_at + run_timeout_ms * interval '1 millisecond'") == "t");
  }
  CHECK(value(pid('3'), "run_by") == "null");
  CHECK(value(pid('6'), "run_by") == "null");

  // A later update of a running prediction does not move its run_by.
  const std::string run_by = value(pid('2'), "run_by::text");
  {
    pqxx::work tx(conn);
    auto rows = storage::prediction_lock_many(tx, {pid('2')});
    REQUIRE(rows.size() == 1);
    std::string why;
    auto u = scheduler::parse_cog_update(
        json{{"id", pid('2')}, {"status", "processing"}, {"output", json::array({"a"})}}, why);
    REQUIRE(u);
    auto m = scheduler::merge_update(rows[0], *u);
    REQUIRE(m.changed);
    REQUIRE(storage::prediction_apply_many(tx, {{pid('2'), "processing", m.after}}).size() == 1);
    tx.commit();
  }
  CHECK(value(pid('2'), "run_by::text") == run_by);

  REQUIRE(eventually("SELECT run_by < now() FROM predictions WHERE id = '" + pid('1') + "'"));
  auto due = run_timeouts();
  CHECK(ids_of(due) == strings{pid('5'), pid('1')});
  REQUIRE(due.size() == 2);
  CHECK(due[0].status == "processing");
  CHECK(due[0].limit_ms == 60'000);
  CHECK(due[0].container_id == std::optional<std::string>("http://c5"));
  CHECK(due[1].status == "processing");
  CHECK(due[1].limit_ms == 1);
  CHECK(due[1].container_id == std::optional<std::string>("http://c1"));
  CHECK(ids_of(run_timeouts(1)) == strings{pid('5')});
  CHECK(run_timeouts(0).empty());
}

TEST_CASE_METHOD(reaper_fixture,
                 "prediction_lapsed_leases lists dispatched live predictions whose lease ran out",
                 "[pg][reaper]") {
  for (char c : std::string("123456")) insert(pid(c));
  dispatch(pid('1'), "http://c1", "owner-1");  // dispatched, lapsed an hour ago
  dispatch(pid('2'), "http://c2", "owner-2");  // running, lapsed two hours ago
  start(pid('2'));
  dispatch(pid('3'), "http://c3", "owner-1");  // fresh lease
  dispatch(pid('5'), "http://c5", "owner-1");  // ended, its lease left behind and lapsed
  finish(pid('5'), "canceled");
  set_lease(pid('1'), "owner-1", "-1 hour");
  set_lease(pid('2'), "owner-2", "-2 hours");
  set_lease(pid('4'), "owner-1", "-3 hours");  // never dispatched, yet a lapsed lease
  set_lease(pid('5'), "owner-1", "-4 hours");
  REQUIRE(value(pid('5'), "status || ':' || lease_owner") == "canceled:owner-1");
  // pid('6') is queued without a lease.

  auto got = lapsed();
  CHECK(ids_of(got) == strings{pid('2'), pid('1')});
  REQUIRE(got.size() == 2);
  CHECK(got[0].status == "processing");
  CHECK(got[0].container_id == "http://c2");
  CHECK(got[0].started);
  CHECK(got[0].lease_owner == "owner-2");
  CHECK(got[1].status == "starting");
  CHECK(got[1].container_id == "http://c1");
  CHECK_FALSE(got[1].started);
  CHECK(got[1].lease_owner == "owner-1");

  CHECK(ids_of(lapsed(1)) == strings{pid('2')});
  CHECK(lapsed(0).empty());

  // The fresh lease lapses: it joins at its place (the most recent expiry, last).
  set_lease(pid('3'), "owner-1", "-1 second");
  CHECK(ids_of(lapsed()) == strings{pid('2'), pid('1'), pid('3')});
}

TEST_CASE_METHOD(reaper_fixture,
                 "prediction_adopt takes over a lapsed live prediction on its container only",
                 "[pg][reaper]") {
  for (char c : std::string("1234")) insert(pid(c));
  dispatch(pid('1'), "http://c1", "owner-1");
  start(pid('1'));
  set_lease(pid('1'), "owner-1", "-1 minute");
  dispatch(pid('2'), "http://c2", "owner-1");  // its lease is fresh
  dispatch(pid('3'), "http://c3", "owner-1");  // ended with a lapsed lease left behind
  finish(pid('3'), "failed");
  set_lease(pid('3'), "owner-1", "-1 minute");
  dispatch(pid('4'), "http://c4", "owner-1");  // dispatched, not started, lapsed
  set_lease(pid('4'), "owner-1", "-1 minute");

  CHECK_FALSE(adopt(pid('1'), "http://elsewhere", "owner-2"));  // another container
  CHECK(value(pid('1'), "lease_owner") == "owner-1");
  {
    pqxx::work tx(conn);
    CHECK(storage::prediction_adopt(tx, pid('1'), "http://c1", "owner-2", 45'000));
    CHECK(tx.exec_params1("SELECT lease_owner || ':' || (lease_expires_at = now() + interval "
                          "'45 seconds')::text FROM predictions WHERE id = $1",
                          pid('1'))[0]
              .as<std::string>() == "owner-2:true");
    tx.commit();
  }
  // Its lease is fresh again: a second taker is refused.
  CHECK_FALSE(adopt(pid('1'), "http://c1", "owner-3"));
  CHECK(value(pid('1'), "lease_owner") == "owner-2");
  CHECK(value(pid('1'), "status || ':' || container_id") == "processing:http://c1");

  CHECK_FALSE(adopt(pid('2'), "http://c2", "owner-2"));  // not lapsed
  CHECK(value(pid('2'), "lease_owner") == "owner-1");
  CHECK_FALSE(adopt(pid('3'), "http://c3", "owner-2"));  // ended
  CHECK(value(pid('3'), "lease_owner") == "owner-1");
  CHECK_FALSE(adopt(pid('7'), "http://c1", "owner-2"));  // unknown
  CHECK(adopt(pid('4'), "http://c4", "owner-2"));        // dispatched and lapsed: taken
  CHECK(value(pid('4'), "lease_owner || ':' || (lease_expires_at > now())::text") ==
        "owner-2:true");

  // Neither is lapsed any more.
  CHECK(lapsed().empty());
}

TEST_CASE_METHOD(reaper_fixture, "prediction_release_leases lapses only the owner's live work",
                 "[pg][reaper]") {
  for (char c : std::string("123456")) insert(pid(c));
  dispatch(pid('1'), "http://c1", "owner-1");  // dispatched
  dispatch(pid('2'), "http://c2", "owner-1");  // running
  start(pid('2'));
  dispatch(pid('3'), "http://c3", "owner-1");  // ended, lease left behind
  finish(pid('3'), "canceled");
  set_lease(pid('4'), "owner-1", "1 minute");  // never dispatched
  dispatch(pid('5'), "http://c5", "owner-2");  // another process's
  // pid('6') is queued.
  CHECK(lapsed().empty());
  const std::vector<std::string> all = {pid('1'), pid('2'), pid('3'), pid('4'), pid('5'), pid('6')};

  {
    pqxx::work tx(conn);
    CHECK(storage::prediction_release_leases(tx, "owner-1", {}) == 0);
    CHECK(storage::prediction_release_leases(tx, "owner-1", all) == 2);
    tx.commit();
  }
  auto got = lapsed();
  CHECK(sorted(ids_of(got)) == strings{pid('1'), pid('2')});
  for (const auto& l : got) CHECK(l.lease_owner == "owner-1");
  CHECK(value(pid('3'), "lease_expires_at > now()") == "t");
  CHECK(value(pid('4'), "lease_expires_at > now()") == "t");
  CHECK(value(pid('5'), "lease_owner || ':' || (lease_expires_at > now())::text") ==
        "owner-2:true");
  CHECK(value(pid('6'), "lease_expires_at") == "null");

  {
    pqxx::work tx(conn);
    CHECK(storage::prediction_release_leases(tx, "owner-9", all) == 0);
    tx.commit();
  }
  // Another process takes the released work over at once.
  CHECK(adopt(pid('2'), "http://c2", "owner-3"));
  CHECK(ids_of(lapsed()) == strings{pid('1')});
}

TEST_CASE_METHOD(reaper_fixture,
                 "prediction_remove_data clears old terminal predictions and their finished "
                 "deliveries",
                 "[pg][reaper]") {
  for (char c : std::string("123456")) insert(pid(c));
  for (char c : std::string("1235")) {
    dispatch(pid(c), "http://c" + std::string(1, c));
    start(pid(c));
  }
  exec("UPDATE predictions SET output = '[\"out\"]', logs = 'step 1\n' ");
  finish(pid('1'), "succeeded");  // two hours ago
  finish(pid('2'), "failed");     // three hours ago
  finish(pid('3'), "succeeded");  // ten minutes ago: newer than the period
  finish(pid('4'), "canceled");   // four hours ago, never started
  // pid('5') is still running, pid('6') queued: both created five hours ago.
  age(pid('1'), "2 hours");
  age(pid('2'), "3 hours");
  age(pid('3'), "10 minutes");
  age(pid('4'), "4 hours");
  age(pid('5'), "5 hours");
  age(pid('6'), "5 hours");
  delivery("msg_1done", pid('1'), R"({"id":"1","output":["out"]})", "delivered");
  delivery("msg_1wait", pid('1'), R"({"id":"1","status":"succeeded"})", "pending");
  delivery("msg_2fail", pid('2'), R"({"id":"2","error":"E1000"})", "failed");
  delivery("msg_3done", pid('3'), R"({"id":"3"})", "delivered");
  delivery("msg_5done", pid('5'), R"({"id":"5"})", "delivered");

  auto remove = [&](std::size_t limit) {
    pqxx::work tx(conn);
    auto ids = storage::prediction_remove_data(tx, 3'600'000, limit);
    tx.commit();
    return sorted(ids);
  };
  // Oldest completion first, bounded by the limit.
  CHECK(remove(2) == strings{pid('2'), pid('4')});
  CHECK(value(pid('1'), "data_removed") == "f");
  CHECK(remove(10) == strings{pid('1')});
  CHECK(remove(10).empty());

  for (char c : std::string("124")) {
    INFO(c);
    CHECK(value(pid(c), "concat_ws(',', input IS NULL, output IS NULL, logs = '', data_removed)") ==
          "t,t,t,t");
  }
  CHECK(value(pid('1'), "status") == "succeeded");
  CHECK(value(pid('2'), "error") == "E1000: the model failed");
  for (char c : std::string("356")) {
    INFO(c);
    CHECK(value(pid(c), "concat_ws(',', input::text, data_removed)") == R"({"prompt": "hi"},f)");
  }
  CHECK(value(pid('3'), "output::text || ':' || logs") == "[\"out\"]:step 1\n");
  CHECK(value(pid('5'), "status || ':' || output::text") == "processing:[\"out\"]");

  CHECK(payload_of("msg_1done") == "");
  CHECK(payload_of("msg_1wait") == R"({"id":"1","status":"succeeded"})");
  CHECK(payload_of("msg_2fail") == "");
  CHECK(payload_of("msg_3done") == R"({"id":"3"})");
  CHECK(payload_of("msg_5done") == R"({"id":"5"})");
}

TEST_CASE_METHOD(reaper_fixture,
                 "prediction_delete_expired deletes old terminal predictions without pending "
                 "deliveries",
                 "[pg][reaper]") {
  for (char c : std::string("123456")) insert(pid(c));
  dispatch(pid('5'), "http://c5");
  start(pid('5'));
  finish(pid('1'), "succeeded");  // three hours ago
  finish(pid('2'), "failed");     // two hours ago, a delivery still pending
  finish(pid('3'), "canceled");   // two hours ago, its delivery delivered
  finish(pid('4'), "succeeded");  // ten minutes ago
  finish(pid('6'), "aborted");    // four hours ago: the oldest
  // pid('5') is running, created five hours ago.
  age(pid('1'), "3 hours");
  age(pid('2'), "2 hours");
  age(pid('3'), "2 hours");
  age(pid('4'), "10 minutes");
  age(pid('5'), "5 hours");
  age(pid('6'), "4 hours");
  delivery("msg_2wait", pid('2'), "{}", "pending");
  delivery("msg_2done", pid('2'), "{}", "delivered");
  delivery("msg_3done", pid('3'), "{}", "delivered");

  auto expire = [&](std::size_t limit) {
    pqxx::work tx(conn);
    auto n = storage::prediction_delete_expired(tx, 3'600'000, limit);
    tx.commit();
    return n;
  };
  auto remaining = [&] {
    pqxx::read_transaction tx(conn);
    strings out;
    for (const auto& r : tx.exec("SELECT id FROM predictions ORDER BY id")) {
      out.push_back(r[0].as<std::string>());
    }
    return out;
  };
  CHECK(expire(1) == 1);
  CHECK(remaining() == strings{pid('1'), pid('2'), pid('3'), pid('4'), pid('5')});
  CHECK(expire(10) == 2);
  CHECK(remaining() == strings{pid('2'), pid('4'), pid('5')});
  CHECK(payload_of("msg_3done") == "(gone)");  // its deliveries went with it
  CHECK(payload_of("msg_2wait") == "{}");
  CHECK(expire(10) == 0);

  // Once the pending delivery is finished, nothing holds it any more.
  exec(
      "UPDATE webhook_deliveries SET state = 'dropped', finished_at = now() "
      "WHERE message_id = 'msg_2wait'");
  CHECK(expire(10) == 1);
  CHECK(remaining() == strings{pid('4'), pid('5')});
}

TEST_CASE_METHOD(reaper_fixture, "leader_acquire: one owner at a time until expiry or release",
                 "[pg][reaper]") {
  CHECK(leader_of("maintenance") == "-");
  CHECK(acquire("maintenance", "proc-1"));
  CHECK_FALSE(acquire("maintenance", "proc-2"));
  CHECK(leader_of("maintenance") == "proc-1");
  // Another name is another lease.
  CHECK(acquire("other", "proc-2"));
  CHECK(leader_of("other") == "proc-2");

  // The holder renews.
  {
    pqxx::work tx(conn);
    CHECK(storage::leader_acquire(tx, "maintenance", "proc-1", 60'000));
    CHECK(tx.exec1("SELECT owner || ':' || (expires_at = now() + interval '60 seconds')::text "
                   "FROM leader_leases WHERE name = 'maintenance'")[0]
              .as<std::string>() == "proc-1:true");
    tx.commit();
  }
  CHECK_FALSE(acquire("maintenance", "proc-2"));

  // A lease that runs out is taken by another owner.
  CHECK(acquire("maintenance", "proc-1", 1));
  REQUIRE(eventually("SELECT expires_at < now() FROM leader_leases WHERE name = 'maintenance'"));
  CHECK(acquire("maintenance", "proc-2"));
  CHECK(leader_of("maintenance") == "proc-2");
  CHECK_FALSE(acquire("maintenance", "proc-1"));
  CHECK(leader_of("maintenance") == "proc-2");

  // A release by someone who does not hold it changes nothing; the holder's lets another in.
  release("maintenance", "proc-1");
  CHECK(leader_of("maintenance") == "proc-2");
  CHECK_FALSE(acquire("maintenance", "proc-3"));
  release("maintenance", "proc-2");
  CHECK(leader_of("maintenance") == "-");
  CHECK(acquire("maintenance", "proc-3"));
  CHECK(leader_of("maintenance") == "proc-3");
  CHECK(leader_of("other") == "proc-2");
}

namespace {

std::string plan_of(pqxx::transaction_base& tx, const std::string& sql) {
  std::string plan;
  for (const auto& r : tx.exec("EXPLAIN (FORMAT TEXT) " + sql)) {
    plan += r[0].as<std::string>() + "\n";
  }
  return plan;
}

bool scans_index(const std::string& plan, const std::string& index) {
  for (const char* how : {"Index Scan using ", "Index Scan Backward using ",
                          "Index Only Scan using ", "Bitmap Index Scan on "}) {
    if (plan.find(how + index + " ") != std::string::npos ||
        plan.find(how + index + "\n") != std::string::npos) {
      return true;
    }
  }
  return false;
}

// The SQL text in an auto_explain notice ("Query Text: ..." up to the plan).
std::string query_text(const std::string& notice) {
  const std::string tag = "Query Text: ";
  const auto at = notice.find(tag);
  if (at == std::string::npos) return "";
  const auto from = at + tag.size();
  const auto end = notice.find('\n', from);
  return notice.substr(from, end == std::string::npos ? std::string::npos : end - from);
}

}  // namespace

TEST_CASE_METHOD(reaper_fixture, "the due and lapsed lookups use their partial indexes",
                 "[pg][reaper][plan]") {
  // A few thousand rows like a busy service's: most finished, a queue waiting, some running.
  constexpr std::size_t total = 4000, finished = 3000, queued_until = 3700, dispatched_until = 3850;
  {
    std::vector<storage::prediction_new> rows;
    for (std::size_t i = 0; i < total; ++i) rows.push_back(fresh(test::nth_prediction_id(i)));
    pqxx::work tx(conn);
    REQUIRE(storage::prediction_insert_many(tx, rows).size() == total);
    auto range = [&](std::size_t from, std::size_t to) {
      return "id >= '" + test::nth_prediction_id(from) + "' AND id < '" +
             test::nth_prediction_id(to) + "'";
    };
    // About half the rows have a Cancel-After deadline; a few live ones passed it (below).
    tx.exec("UPDATE predictions SET deadline = now() + interval '1 hour' WHERE right(id, 1) < 'g'");
    tx.exec(
        "UPDATE predictions SET dispatched_at = now(), container_id = 'http://c', "
        "lease_owner = 'owner-1', lease_expires_at = now() + interval '30 seconds', "
        "attempt = 1 WHERE " +
        range(0, finished) + " OR " + range(queued_until, total));
    tx.exec(
        "UPDATE predictions SET status = 'processing', started_at = now(), "
        "run_by = now() + interval '30 minutes' WHERE " +
        range(0, finished) + " OR " + range(dispatched_until, total));
    tx.exec(
        "UPDATE predictions SET status = 'succeeded', completed_at = now(), "
        "lease_owner = NULL, lease_expires_at = NULL WHERE " +
        range(0, finished));
    // Something due for each lookup.
    tx.exec("UPDATE predictions SET deadline = now() - interval '1 minute' WHERE " +
            range(3690, 3700));
    tx.exec("UPDATE predictions SET start_by = now() - interval '1 minute' WHERE " +
            range(3600, 3610));
    tx.exec("UPDATE predictions SET run_by = now() - interval '1 minute' WHERE " +
            range(3990, total));
    tx.exec("UPDATE predictions SET lease_expires_at = now() - interval '1 minute' WHERE " +
            range(3800, 3805));
    tx.commit();
  }
  exec("ANALYZE predictions");
  REQUIRE(query("SELECT count(*) FROM predictions WHERE status = 'succeeded'") ==
          std::to_string(finished));

  // Each product statement runs with auto_explain on: its notice carries the statement's own
  // text and its plan. The text is then explained again with EXPLAIN (FORMAT TEXT).
  test::notices got(conn);
  pqxx::work tx(conn);
  test::plans_as_notices(tx);

  struct lookup {
    const char* name;
    const char* index;
    std::function<std::size_t()> run;
    std::size_t due;
  };
  const std::vector<lookup> lookups = {
      {"prediction_due_deadlines", "predictions_deadline",
       [&] { return storage::prediction_due_deadlines(tx, 500).size(); }, 10},
      {"prediction_due_start_timeouts", "predictions_start_due",
       [&] { return storage::prediction_due_start_timeouts(tx, 500).size(); }, 10},
      {"prediction_due_run_timeouts", "predictions_run_due",
       [&] { return storage::prediction_due_run_timeouts(tx, 500).size(); }, 10},
      {"prediction_lapsed_leases", "predictions_live_lease",
       [&] { return storage::prediction_lapsed_leases(tx, 500).size(); }, 5},
  };
  for (const auto& l : lookups) {
    INFO(l.name << " should use " << l.index);
    got.received.clear();
    CHECK(l.run() == l.due);
    // The plan of a statement run with parameters is reported when its portal closes: with the
    // next statement.
    tx.exec("SELECT 'next statement'");
    std::string notice;
    for (const auto& n : got.received) {
      if (query_text(n).find("FROM predictions") != std::string::npos) notice = n;
    }
    INFO("auto_explain: " << notice);
    REQUIRE_FALSE(notice.empty());
    CHECK(scans_index(notice, l.index));
    CHECK(notice.find("Seq Scan") == std::string::npos);

    std::string sql = query_text(notice);
    REQUIRE(sql.find("FROM predictions") != std::string::npos);
    const auto param = sql.find("$1");
    REQUIRE(param != std::string::npos);
    sql.replace(param, 2, "500");
    const std::string plan = plan_of(tx, sql);
    INFO("EXPLAIN " << sql << "\n" << plan);
    CHECK(scans_index(plan, l.index));
    CHECK(plan.find("Seq Scan") == std::string::npos);
  }
  tx.commit();
}
