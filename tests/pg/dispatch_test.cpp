// The dispatcher's statements on the predictions table, against a real PostgreSQL: claiming
// queued work for container slots, putting it back, applying container updates, leases, cancels
// and the queue notification.
#include "storage/dispatch.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <set>

#include "scheduler/cog_update.hpp"
#include "storage/catalog.hpp"
#include "storage/migrator.hpp"
#include "storage/predictions.hpp"
#include "storage/tokens.hpp"
#include "tests/support/pg.hpp"

using namespace cogwheel;
using nlohmann::json;

namespace {

const std::string v1(64, 'a');
const std::string v2(64, 'b');

// Prediction ids whose order is easy to read: pid('1') < pid('2') < ...
std::string pid(char c) {
  return std::string(26, c);
}

std::vector<std::string> ids_of(const std::vector<storage::claimed_prediction>& claimed) {
  std::vector<std::string> out;
  for (const auto& c : claimed) out.push_back(c.row.id);
  return out;
}

std::vector<std::string> containers_of(const std::vector<storage::claimed_prediction>& claimed) {
  std::vector<std::string> out;
  for (const auto& c : claimed) out.push_back(c.container_id);
  return out;
}

std::vector<std::string> ids_of(const std::vector<storage::prediction_row>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.id);
  return out;
}

using strings = std::vector<std::string>;

struct fixture {
  test::test_schema schema;
  pqxx::connection conn{migrated(schema)};
  std::int64_t token_id = 0;
  std::string base;  // a time an hour ago: created_at values are set relative to it

  fixture() {
    pqxx::work tx(conn);
    storage::catalog_spec spec;
    spec.models.push_back({"acme", "echo", "", {{v1, "{}", {}, {}}, {v2, "{}", {}, {}}}});
    storage::catalog_sync(tx, spec);
    token_id = storage::token_insert(tx, {"alice", std::string(32, '\x01'), "cw_test",
                                          "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"});
    base = tx.exec1("SELECT (now() - interval '1 hour')::text")[0].as<std::string>();
    tx.commit();
  }

  // A queued prediction of `version` created `at_s` seconds after `base`.
  void queue(const std::string& id, const std::string& version, double at_s) {
    pqxx::work tx(conn);
    storage::prediction_new p;
    p.id = id;
    p.token_id = token_id;
    p.model = "acme/echo";
    p.version_id = version;
    p.input_json = R"({"prompt":"hi"})";
    auto r = storage::prediction_insert_many(tx, {p});
    REQUIRE(r.size() == 1);
    REQUIRE(r[0].outcome == storage::insert_outcome::created);
    tx.exec_params(
        "UPDATE predictions SET created_at = $2::timestamptz + $3 * interval '1 second' "
        "WHERE id = $1",
        id, base, at_s);
    tx.commit();
  }

  std::vector<storage::claimed_prediction> claim(const std::string& version, strings slots,
                                                 const std::string& owner = "owner-1",
                                                 std::int64_t lease_ms = 30'000) {
    pqxx::work tx(conn);
    auto claimed = storage::dispatch_claim(tx, {version, std::move(slots), owner, lease_ms});
    tx.commit();
    return claimed;
  }

  bool requeue(const std::string& id, const std::string& container_id) {
    pqxx::work tx(conn);
    const bool ok = storage::dispatch_requeue(tx, id, container_id);
    tx.commit();
    return ok;
  }

  // One value of one row, as text ("null" for NULL), in its own transaction.
  std::string value(const std::string& id, const std::string& expr) {
    pqxx::read_transaction tx(conn);
    auto f = tx.exec_params1("SELECT " + expr + " FROM predictions WHERE id = $1", id)[0];
    return f.is_null() ? "null" : f.as<std::string>();
  }

  void exec(const std::string& sql) {
    pqxx::work tx(conn);
    tx.exec(sql);
    tx.commit();
  }

  storage::prediction_row locked(pqxx::transaction_base& tx, const std::string& id) {
    auto rows = storage::prediction_lock_many(tx, {id});
    REQUIRE(rows.size() == 1);
    return rows[0];
  }

  // Applies a Cog update the way the dispatcher does: lock, merge, apply conditionally.
  std::vector<storage::prediction_row> apply(const std::string& id, const json& body) {
    pqxx::work tx(conn);
    auto current = locked(tx, id);
    std::string why;
    auto u = scheduler::parse_cog_update(body, why);
    INFO(why);
    REQUIRE(u);
    auto m = scheduler::merge_update(current, *u);
    REQUIRE(m.changed);
    auto rows = storage::prediction_apply_many(tx, {{id, current.status, m.after}});
    tx.commit();
    return rows;
  }
};

json cog_body(const std::string& id, const std::string& status, const char* extra = "{}") {
  json body = json::parse(extra);
  body["id"] = id;
  body["status"] = status;
  return body;
}

}  // namespace

TEST_CASE_METHOD(fixture, "dispatch_claim takes the oldest queued predictions, one per slot",
                 "[pg][dispatch]") {
  // Ids run against creation order, so only created_at can put them in order.
  queue(pid('3'), v1, 10);
  queue(pid('2'), v1, 20);
  queue(pid('1'), v1, 30);
  queue(pid('5'), v1, 40);
  queue(pid('4'), v1, 40);  // the same created_at as pid('5'): the id decides
  queue(pid('9'), v2, 0);   // the oldest of all, of another version
  queue(pid('a'), v1, 1);   // older, but not queued: dispatched, running, finished
  queue(pid('b'), v1, 2);
  queue(pid('c'), v1, 3);
  exec("UPDATE predictions SET dispatched_at = now(), container_id = 'elsewhere' WHERE id IN ('" +
       pid('a') + "', '" + pid('b') + "')");
  exec("UPDATE predictions SET status = 'processing', started_at = now() WHERE id = '" + pid('b') +
       "'");
  exec("UPDATE predictions SET status = 'canceled', completed_at = now() WHERE id = '" + pid('c') +
       "'");

  auto first = claim(v1, {"http://c1", "http://c2"});
  CHECK(ids_of(first) == strings{pid('3'), pid('2')});
  CHECK(containers_of(first) == strings{"http://c1", "http://c2"});
  for (const auto& c : first) {
    CHECK(c.row.status == "starting");
    CHECK(c.row.version_id == v1);
    CHECK_FALSE(c.row.started_at);
  }

  auto second = claim(v1, {"http://c3", "http://c4", "http://c5"});
  CHECK(ids_of(second) == strings{pid('1'), pid('4'), pid('5')});
  CHECK(containers_of(second) == strings{"http://c3", "http://c4", "http://c5"});

  CHECK(claim(v1, {"http://c6", "http://c7"}).empty());
  CHECK(claim(v1, {}).empty());
  auto other = claim(v2, {"http://d1", "http://d2"});
  CHECK(ids_of(other) == strings{pid('9')});
  CHECK(containers_of(other) == strings{"http://d1"});

  // The rows that were not queued are as they were.
  CHECK(value(pid('a'), "container_id") == "elsewhere");
  CHECK(value(pid('b'), "status || ':' || container_id") == "processing:elsewhere");
  CHECK(value(pid('c'), "status || ':' || coalesce(container_id, '-')") == "canceled:-");
  CHECK(value(pid('a'), "attempt") == "0");
}

TEST_CASE_METHOD(fixture, "dispatch_claim records container, attempt, lease and dispatch time",
                 "[pg][dispatch]") {
  queue(pid('1'), v1, 0);
  queue(pid('2'), v1, 1);
  queue(pid('3'), v1, 2);
  pqxx::work tx(conn);
  auto claimed = storage::dispatch_claim(tx, {v1, {"http://c1", "http://c2"}, "owner-7", 45'000});
  REQUIRE(ids_of(claimed) == strings{pid('1'), pid('2')});
  auto r = tx.exec_params(
      "SELECT id, container_id, attempt, lease_owner, dispatched_at = now(), "
      "lease_expires_at = now() + interval '45 seconds', status FROM predictions "
      "WHERE dispatched_at IS NOT NULL ORDER BY id");
  REQUIRE(r.size() == 2);
  CHECK(r[0][0].as<std::string>() == pid('1'));
  CHECK(r[0][1].as<std::string>() == "http://c1");
  CHECK(r[1][1].as<std::string>() == "http://c2");
  for (const auto& row : r) {
    CHECK(row[2].as<int>() == 1);
    CHECK(row[3].as<std::string>() == "owner-7");
    CHECK(row[4].as<bool>());
    CHECK(row[5].as<bool>());
    CHECK(row[6].as<std::string>() == "starting");
  }
  CHECK(tx.exec_params1("SELECT dispatched_at IS NULL AND lease_owner IS NULL AND attempt = 0 "
                        "FROM predictions WHERE id = $1",
                        pid('3'))[0]
            .as<bool>());
  tx.commit();
}

TEST_CASE_METHOD(fixture, "two concurrent claims never take the same prediction",
                 "[pg][dispatch]") {
  for (char c : std::string("12345")) queue(pid(c), v1, c - '0');
  pqxx::connection other(schema.conninfo());
  {
    pqxx::work setup(other);
    // A claim that waited on the other's locks instead of skipping them fails, not hangs.
    setup.exec("SET statement_timeout = '10s'");
    setup.commit();
  }
  pqxx::work a(conn);
  pqxx::work b(other);
  auto got_a = storage::dispatch_claim(a, {v1, {"http://a1", "http://a2"}, "owner-a", 30'000});
  // `a` still holds its rows: `b` skips them.
  auto got_b = storage::dispatch_claim(
      b, {v1, {"http://b1", "http://b2", "http://b3", "http://b4"}, "owner-b", 30'000});
  CHECK(ids_of(got_a) == strings{pid('1'), pid('2')});
  CHECK(ids_of(got_b) == strings{pid('3'), pid('4'), pid('5')});
  CHECK(containers_of(got_b) == strings{"http://b1", "http://b2", "http://b3"});
  a.commit();
  b.commit();

  pqxx::read_transaction check(conn);
  auto r = check.exec(
      "SELECT id, lease_owner, attempt FROM predictions WHERE dispatched_at IS NOT NULL "
      "ORDER BY id");
  REQUIRE(r.size() == 5);
  for (const auto& row : r) {
    INFO(row[0].as<std::string>());
    CHECK(row[2].as<int>() == 1);
    const bool mine_a = row[0].as<std::string>() <= pid('2');
    CHECK(row[1].as<std::string>() == (mine_a ? "owner-a" : "owner-b"));
  }
}

TEST_CASE_METHOD(fixture, "a claim after another committed does not take its rows again",
                 "[pg][dispatch]") {
  queue(pid('1'), v1, 0);
  queue(pid('2'), v1, 1);
  CHECK(ids_of(claim(v1, {"http://c1"})) == strings{pid('1')});
  CHECK(ids_of(claim(v1, {"http://c1", "http://c2"})) == strings{pid('2')});
  CHECK(claim(v1, {"http://c3"}).empty());
}

TEST_CASE_METHOD(fixture, "dispatch_requeue puts back work its container never started",
                 "[pg][dispatch]") {
  queue(pid('1'), v1, 0);
  queue(pid('2'), v1, 1);
  const std::string created = value(pid('1'), "created_at::text");
  REQUIRE(ids_of(claim(v1, {"http://c1"})) == strings{pid('1')});

  // Only the container it was given to can give it back.
  CHECK_FALSE(requeue(pid('1'), "http://c2"));
  CHECK(value(pid('1'), "container_id") == "http://c1");
  CHECK(requeue(pid('1'), "http://c1"));
  CHECK(value(pid('1'),
              "concat_ws(',', status, dispatched_at IS NULL, container_id IS NULL, "
              "lease_owner IS NULL, lease_expires_at IS NULL, attempt)") == "starting,t,t,t,t,1");
  CHECK(value(pid('1'), "created_at::text") == created);
  CHECK_FALSE(requeue(pid('1'), "http://c1"));  // already back

  // Back at its place: ahead of the newer pid('2').
  auto again = claim(v1, {"http://c9"});
  REQUIRE(ids_of(again) == strings{pid('1')});
  CHECK(value(pid('1'), "attempt") == "2");
  CHECK_FALSE(requeue(pid('1'), "http://c1"));

  // Once started it stays with its container.
  apply(pid('1'), cog_body(pid('1'), "processing"));
  REQUIRE(value(pid('1'), "status") == "processing");
  CHECK_FALSE(requeue(pid('1'), "http://c9"));
  CHECK(value(pid('1'), "status || ':' || container_id") == "processing:http://c9");

  // Never dispatched, unknown: nothing to put back.
  CHECK_FALSE(requeue(pid('2'), "http://c1"));
  CHECK_FALSE(requeue(pid('7'), "http://c1"));
}

TEST_CASE_METHOD(fixture, "dispatch_requeue leaves a finished prediction alone", "[pg][dispatch]") {
  queue(pid('1'), v1, 0);
  REQUIRE(ids_of(claim(v1, {"http://c1"})) == strings{pid('1')});
  pqxx::work tx(conn);
  auto current = locked(tx, pid('1'));
  scheduler::cog_update u;
  u.id = pid('1');
  u.status = "failed";
  u.error = "Error starting prediction: 422";
  u.error_code = "E9243";
  u.from_container = false;
  auto m = scheduler::merge_update(current, u);
  REQUIRE(storage::prediction_apply_many(tx, {{pid('1'), "starting", m.after}}).size() == 1);
  tx.commit();
  CHECK_FALSE(requeue(pid('1'), "http://c1"));
  CHECK(value(pid('1'), "status || ':' || container_id") == "failed:http://c1");
}

TEST_CASE_METHOD(fixture, "prediction_apply_many applies a change only from the expected status",
                 "[pg][dispatch]") {
  queue(pid('1'), v1, 0);
  queue(pid('2'), v1, 1);
  REQUIRE(claim(v1, {"http://c1", "http://c2"}).size() == 2);

  pqxx::work tx(conn);
  auto rows = storage::prediction_lock_many(tx, {pid('2'), pid('1'), pid('7'), pid('1')});
  REQUIRE(ids_of(rows) == strings{pid('1'), pid('2')});  // id order, unknown ids absent
  std::string why;
  auto u = scheduler::parse_cog_update(
      cog_body(pid('1'), "processing", R"({"output":["a"],"logs":"step 1\n"})"), why);
  REQUIRE(u);
  auto m1 = scheduler::merge_update(rows[0], *u);
  u->id = pid('2');
  auto m2 = scheduler::merge_update(rows[1], *u);
  // pid('2') is expected to be processing already, which it is not: left alone.
  auto applied = storage::prediction_apply_many(
      tx, {{pid('1'), "starting", m1.after}, {pid('2'), "processing", m2.after}});
  REQUIRE(ids_of(applied) == strings{pid('1')});
  CHECK(applied[0].status == "processing");
  CHECK(json::parse(applied[0].output_json) == json::parse(R"(["a"])"));
  CHECK(applied[0].logs == "step 1\n");
  REQUIRE(applied[0].started_at);
  CHECK_FALSE(applied[0].completed_at);
  // The database clock, not the marker the merge left.
  CHECK(*applied[0].started_at != rows[0].created_at);
  CHECK(tx.exec_params1("SELECT started_at = now() FROM predictions WHERE id = $1", pid('1'))[0]
            .as<bool>());
  CHECK(tx.exec_params1("SELECT concat_ws(',', status, started_at IS NULL, output IS NULL, logs) "
                        "FROM predictions WHERE id = $1",
                        pid('2'))[0]
            .as<std::string>() == "starting,t,t,");
  tx.commit();

  pqxx::work none(conn);
  CHECK(storage::prediction_apply_many(none, {}).empty());
}

TEST_CASE_METHOD(fixture,
                 "prediction_apply_many sets started_at once and completes from the "
                 "database clock",
                 "[pg][dispatch]") {
  queue(pid('1'), v1, 0);  // an hour ago
  REQUIRE(claim(v1, {"http://c1"}).size() == 1);
  REQUIRE(apply(pid('1'), cog_body(pid('1'), "processing", R"({"output":["a"]})")).size() == 1);
  const std::string started = value(pid('1'), "started_at::text");

  auto more = apply(pid('1'), cog_body(pid('1'), "processing", R"({"output":["a","b"]})"));
  REQUIRE(more.size() == 1);
  CHECK(json::parse(more[0].output_json) == json::parse(R"(["a","b"])"));
  CHECK(value(pid('1'), "started_at::text") == started);

  pqxx::work tx(conn);
  auto current = locked(tx, pid('1'));
  std::string why;
  auto u = scheduler::parse_cog_update(
      cog_body(pid('1'), "succeeded",
               R"({"output":["a","b","c"],"logs":"done\n","metrics":{"predict_time":1.5}})"),
      why);
  REQUIRE(u);
  auto m = scheduler::merge_update(current, *u);
  auto done = storage::prediction_apply_many(tx, {{pid('1'), "processing", m.after}});
  REQUIRE(done.size() == 1);
  CHECK(done[0].status == "succeeded");
  REQUIRE(done[0].completed_at);
  REQUIRE(done[0].metrics_json);
  const json metrics = json::parse(*done[0].metrics_json);
  CHECK(metrics.value("predict_time", -1.0) == Approx(1.5));
  REQUIRE(metrics.contains("total_time"));
  CHECK(metrics["total_time"].get<double>() >= 3600.0);
  auto db = tx.exec_params1(
      "SELECT completed_at = now(), "
      "abs((metrics->>'total_time')::float8 - extract(epoch FROM now() - created_at)::float8), "
      "started_at::text, lease_owner IS NULL AND lease_expires_at IS NULL "
      "FROM predictions WHERE id = $1",
      pid('1'));
  CHECK(db[0].as<bool>());
  CHECK(db[1].as<double>() < 1e-6);
  CHECK(db[2].as<std::string>() == started);
  CHECK(db[3].as<bool>());
  tx.commit();
}

TEST_CASE_METHOD(fixture, "a failure is recorded with its code, and never started",
                 "[pg][dispatch]") {
  queue(pid('1'), v1, 0);
  REQUIRE(claim(v1, {"http://c1"}).size() == 1);
  pqxx::work tx(conn);
  auto current = locked(tx, pid('1'));
  scheduler::cog_update u;
  u.id = pid('1');
  u.status = "failed";
  u.error = "Error starting prediction: the container answered 422";
  u.error_code = "E9243";
  u.from_container = false;
  auto rows = storage::prediction_apply_many(
      tx, {{pid('1'), "starting", scheduler::merge_update(current, u).after}});
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].status == "failed");
  CHECK(rows[0].error_code == std::optional<std::string>("E9243"));
  CHECK(rows[0].error ==
        std::optional<std::string>("E9243: Error starting prediction: the container answered 422"));
  CHECK_FALSE(rows[0].started_at);
  CHECK(rows[0].completed_at);
  REQUIRE(rows[0].metrics_json);
  CHECK(json::parse(*rows[0].metrics_json).contains("total_time"));
  tx.commit();
}

TEST_CASE_METHOD(fixture, "the forward-only trigger refuses to move a terminal prediction",
                 "[pg][dispatch]") {
  queue(pid('1'), v1, 0);
  REQUIRE(claim(v1, {"http://c1"}).size() == 1);
  apply(pid('1'), cog_body(pid('1'), "processing"));
  apply(pid('1'), cog_body(pid('1'), "succeeded", R"({"output":"ok"})"));
  REQUIRE(value(pid('1'), "status") == "succeeded");

  // A change computed as if the prediction were still running, expecting its terminal status:
  // the conditional update matches, and the trigger must refuse it.
  storage::prediction_row back;
  {
    pqxx::work tx(conn);
    back = locked(tx, pid('1'));
  }
  back.status = "processing";
  back.completed_at.reset();
  back.output_json = R"("changed")";
  {
    pqxx::work tx(conn);
    CHECK_THROWS_AS(storage::prediction_apply_many(tx, {{pid('1'), "succeeded", back}}),
                    pqxx::check_violation);
  }
  {
    pqxx::work tx(conn);
    CHECK_THROWS_WITH(storage::prediction_apply_many(tx, {{pid('1'), "succeeded", back}}),
                      Catch::Contains("is succeeded and cannot become processing"));
  }
  CHECK(value(pid('1'), "status || ':' || output::text") == R"(succeeded:"ok")");

  // Expecting the old status instead: nothing matches, nothing changes.
  pqxx::work tx(conn);
  CHECK(storage::prediction_apply_many(tx, {{pid('1'), "processing", back}}).empty());
  tx.commit();
  CHECK(value(pid('1'), "status || ':' || output::text") == R"(succeeded:"ok")");
}

TEST_CASE_METHOD(fixture,
                 "prediction_read_many gives row versions, and a change to a row changed since is "
                 "left alone",
                 "[pg][dispatch]") {
  queue(pid('1'), v1, 0);
  queue(pid('2'), v1, 1);
  REQUIRE(claim(v1, {"http://c1", "http://c2"}).size() == 2);
  std::vector<storage::versioned_row> read;
  {
    pqxx::work tx(conn);
    read = storage::prediction_read_many(tx, {pid('2'), pid('1'), pid('9'), pid('2')});
    tx.commit();
  }
  REQUIRE(read.size() == 2);  // id order, unknown and repeated ids folded
  CHECK(read[0].row.id == pid('1'));
  CHECK(read[1].row.id == pid('2'));
  CHECK_FALSE(read[0].version.empty());
  // Someone else changes pid('2') after it was read: its version moves on.
  exec("UPDATE predictions SET logs = 'elsewhere' WHERE id = '" + pid('2') + "'");
  std::string why;
  auto u = scheduler::parse_cog_update(cog_body(pid('1'), "processing", R"({"logs":"mine"})"), why);
  REQUIRE(u);
  auto m1 = scheduler::merge_update(read[0].row, *u);
  u->id = pid('2');
  auto m2 = scheduler::merge_update(read[1].row, *u);
  pqxx::work tx(conn);
  auto applied =
      storage::prediction_apply_many(tx, {{pid('2'), "starting", m2.after, read[1].version},
                                          {pid('1'), "starting", m1.after, read[0].version}});
  REQUIRE(ids_of(applied) == strings{pid('1')});
  CHECK(applied[0].logs == "mine");
  CHECK(tx.exec_params1("SELECT logs FROM predictions WHERE id = $1", pid('2'))[0]
            .as<std::string>() == "elsewhere");
  tx.commit();
}

TEST_CASE_METHOD(fixture, "dispatch_renew_leases renews only the owner's live dispatched work",
                 "[pg][dispatch]") {
  for (char c : std::string("12345")) queue(pid(c), v1, c - '0');
  REQUIRE(claim(v1, {"http://c1", "http://c2"}, "owner-1").size() == 2);  // 1, 2
  REQUIRE(claim(v1, {"http://c3"}, "owner-2").size() == 1);               // 3
  REQUIRE(claim(v1, {"http://c4"}, "owner-1").size() == 1);               // 4
  apply(pid('2'), cog_body(pid('2'), "processing"));
  // pid('4') finished without its lease being cleared; pid('5') stays queued.
  exec("UPDATE predictions SET status = 'canceled', completed_at = now() WHERE id = '" + pid('4') +
       "'");
  exec(
      "UPDATE predictions SET lease_expires_at = now() - interval '1 hour' "
      "WHERE lease_owner IS NOT NULL");

  // The caller names what it holds; only the owner's live dispatched ones among them renew.
  const std::vector<std::string> all = {pid('1'), pid('2'), pid('3'), pid('4'), pid('5')};
  pqxx::work tx(conn);
  CHECK(storage::dispatch_renew_leases(tx, "owner-1", {}, 60'000) == 0);
  CHECK(storage::dispatch_renew_leases(tx, "owner-1", all, 60'000) == 2);
  auto r = tx.exec(
      "SELECT id, coalesce(lease_owner, '-'), "
      "coalesce((lease_expires_at = now() + interval '60 seconds')::text, '-'), "
      "coalesce((lease_expires_at < now())::text, '-') FROM predictions ORDER BY id");
  REQUIRE(r.size() == 5);
  auto line = [&](int i) {
    return r[i][1].as<std::string>() + " renewed=" + r[i][2].as<std::string>() +
           " expired=" + r[i][3].as<std::string>();
  };
  CHECK(line(0) == "owner-1 renewed=true expired=false");
  CHECK(line(1) == "owner-1 renewed=true expired=false");
  CHECK(line(2) == "owner-2 renewed=false expired=true");
  CHECK(line(3) == "owner-1 renewed=false expired=true");
  CHECK(line(4) == "- renewed=- expired=-");
  CHECK(storage::dispatch_renew_leases(tx, "owner-9", all, 60'000) == 0);
  tx.commit();
}

TEST_CASE_METHOD(fixture, "dispatch_cancels_pending lists the owner's live work to cancel",
                 "[pg][dispatch]") {
  for (char c : std::string("123456")) queue(pid(c), v1, c - '0');
  REQUIRE(claim(v1, {"http://c1", "http://c2"}, "owner-1").size() == 2);  // 1, 2
  REQUIRE(claim(v1, {"http://c3"}, "owner-2").size() == 1);               // 3
  REQUIRE(claim(v1, {"http://c4", "http://c5"}, "owner-1").size() == 2);  // 4, 5
  apply(pid('4'), cog_body(pid('4'), "processing"));
  {
    pqxx::work tx(conn);
    for (char c : std::string("13456")) {
      auto r = storage::prediction_cancel(tx, token_id, pid(c));
      REQUIRE(r);
      CHECK(r->cancel_requested == (c != '6'));  // pid('6') was queued: canceled at once
    }
    tx.commit();
  }
  // pid('5') finished before its container heard of the cancel.
  exec("UPDATE predictions SET status = 'canceled', completed_at = now() WHERE id = '" + pid('5') +
       "'");

  using pending = std::vector<std::pair<std::string, std::string>>;
  auto list = [&](const std::string& owner, const strings& ids) {
    pqxx::read_transaction tx(conn);
    auto out = storage::dispatch_cancels_pending(tx, owner, ids);
    std::sort(out.begin(), out.end());
    return out;
  };
  CHECK(list("owner-1", {}) == pending{{pid('1'), "http://c1"}, {pid('4'), "http://c4"}});
  CHECK(list("owner-2", {}) == pending{{pid('3'), "http://c3"}});
  CHECK(list("owner-1", {pid('4')}) == pending{{pid('4'), "http://c4"}});
  CHECK(list("owner-1", {pid('2'), pid('3'), pid('5'), pid('6'), pid('7')}).empty());
  CHECK(list("owner-9", {}).empty());
}

namespace {

// Collects the notifications of one channel.
struct collector : pqxx::notification_receiver {
  std::vector<std::pair<std::string, int>> received;  // payload, sender's backend pid
  collector(pqxx::connection_base& c, const std::string& channel)
      : pqxx::notification_receiver(c, channel) {}
  void operator()(const std::string& payload, int backend_pid) override {
    received.emplace_back(payload, backend_pid);
  }
};

}  // namespace

namespace {

storage::prediction_new new_row(const std::string& id, const std::string& version,
                                std::int64_t token_id) {
  storage::prediction_new p;
  p.id = id;
  p.token_id = token_id;
  p.model = "acme/echo";
  p.version_id = version;
  p.input_json = R"({"prompt":"hi","n":3})";
  return p;
}

strings split(const std::string& payload) {
  strings out;
  std::size_t start = 0;
  for (;;) {
    const auto comma = payload.find(',', start);
    out.push_back(payload.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE_METHOD(fixture, "an insert announces its versions once, in one notification at commit",
                 "[pg][dispatch]") {
  pqxx::connection listener(schema.conninfo());
  collector got(listener, storage::queue_channel);
  pqxx::connection sender(schema.conninfo());
  const int sender_pid = sender.backendpid();
  {
    pqxx::work tx(sender);  // rolled back: nothing was queued, nothing is announced
    storage::prediction_insert_many(tx, {new_row(pid('9'), v1, token_id)});
  }
  {
    pqxx::nontransaction tx(sender);  // autocommitted
    auto r = storage::prediction_insert_many(
        tx, {new_row(pid('1'), v2, token_id), new_row(pid('2'), v1, token_id),
             new_row(pid('3'), v2, token_id)});
    REQUIRE(r.size() == 3);
  }
  {
    pqxx::work tx(sender);
    storage::prediction_insert_many(tx, {new_row(pid('4'), v1, token_id)});
    tx.commit();
  }
  {
    // Notifications of one session arrive in commit order: this one comes last.
    pqxx::work tx(sender);
    tx.exec_params("SELECT pg_notify($1, 'end-of-test')", std::string(storage::queue_channel));
    tx.commit();
  }
  auto ended = [&] {
    return std::any_of(got.received.begin(), got.received.end(), [&](const auto& n) {
      return n.second == sender_pid && n.first == "end-of-test";
    });
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!ended() && std::chrono::steady_clock::now() < deadline) listener.await_notification(1, 0);
  REQUIRE(ended());

  strings payloads;
  for (const auto& [payload, from] : got.received) {
    if (from == sender_pid && payload != "end-of-test") payloads.push_back(payload);
  }
  REQUIRE(payloads.size() == 2);
  CHECK(split(payloads[0]) == strings{v1, v2});
  CHECK(split(payloads[1]) == strings{v1});
  pqxx::read_transaction tx(conn);
  CHECK(tx.exec1("SELECT count(*) FROM predictions")[0].as<int>() == 4);
}

TEST_CASE_METHOD(fixture, "an insert returns each row as a read of it finds it", "[pg][dispatch]") {
  auto full = new_row(pid('2'), v2, token_id);
  full.deployment = "acme/echo-prod";
  full.webhook = "https://hooks.example/x?y=1";
  full.webhook_events_filter = strings{"start", "completed"};
  full.deadline = 4'102'444'800'123'456;  // 2100-01-01T00:00:00.123456Z
  // What the batch's array literals must carry as they are: quotes, backslashes, braces, commas,
  // the word NULL, non-ASCII text.
  full.input_json =
      R"({"a":"say \"hi\" \\ {x}, NULL","b":[1,{"c":"\u00e9 \u2603 é ☃"}],"NULL":null})";
  full.idempotency_key = R"(key "with" \ {braces}, NULL)";
  full.idempotency_sha256 = std::string(32, '\x7f');
  std::vector<storage::insert_result> inserted;
  {
    pqxx::nontransaction tx(conn);
    inserted = storage::prediction_insert_many(tx, {new_row(pid('1'), v1, token_id), full});
  }
  REQUIRE(inserted.size() == 2);
  pqxx::read_transaction tx(conn);
  for (const auto& r : inserted) {
    CHECK(r.outcome == storage::insert_outcome::created);
    auto read = storage::prediction_get(tx, token_id, r.row.id);
    REQUIRE(read);
    CHECK(json::parse(r.row.input_json) == json::parse(read->input_json));
    auto a = r.row;
    a.input_json = read->input_json;  // the same JSON; the stored text is PostgreSQL's
    CHECK(a.id == read->id);
    CHECK(a.token_id == read->token_id);
    CHECK(a.model == read->model);
    CHECK(a.version_id == read->version_id);
    CHECK(a.deployment == read->deployment);
    CHECK(a.source == read->source);
    CHECK(a.status == read->status);
    CHECK(a.output_json == read->output_json);
    CHECK(a.logs == read->logs);
    CHECK(a.error == read->error);
    CHECK(a.error_code == read->error_code);
    CHECK(a.metrics_json == read->metrics_json);
    CHECK(a.data_removed == read->data_removed);
    CHECK(a.created_at == read->created_at);
    CHECK(a.started_at == read->started_at);
    CHECK(a.completed_at == read->completed_at);
    CHECK(a.deadline == read->deadline);
    CHECK(a.webhook == read->webhook);
    CHECK(a.webhook_events_filter == read->webhook_events_filter);
  }
  auto key = tx.exec_params1(
      "SELECT idempotency_key, encode(idempotency_sha256, 'hex') FROM predictions WHERE id = $1",
      full.id);
  CHECK(key[0].as<std::string>() == *full.idempotency_key);
  std::string hex;
  for (int i = 0; i < 32; ++i) hex += "7f";
  CHECK(key[1].as<std::string>() == hex);
}
