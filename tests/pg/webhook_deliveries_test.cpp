// The webhook outbox and the delivery service's statements against a real PostgreSQL: the throttle
// and coalescing of output and logs events, supersede by completed, claiming (order per
// prediction, per-endpoint limits, SKIP LOCKED, fresh apart from retries, lapsed leases),
// finishing attempts, the records, redelivery and secret rotation.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <vector>

#include "storage/catalog.hpp"
#include "storage/deliveries.hpp"
#include "storage/migrator.hpp"
#include "storage/outbox.hpp"
#include "storage/predictions.hpp"
#include "storage/tokens.hpp"
#include "tests/support/pg.hpp"

using namespace cogwheel;
using storage::micros;

namespace {

const std::string v1(64, 'd');
const std::string secret1 = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const std::string secret2 = "whsec_c2Vjb25kc2Vjb25kc2Vjb25kc2Vjb25kMDA=";
const std::string secret3 = "whsec_dGhpcmR0aGlyZHRoaXJkdGhpcmR0aGlyZDAw";
const std::string url_a = "https://a.example/hook";
const std::string url_b = "https://b.example/hook";
const std::string endpoint_a = "https://a.example";

using strings = std::vector<std::string>;

strings messages_of(const std::vector<storage::delivery_claimed>& claimed) {
  strings out;
  for (const auto& c : claimed) out.push_back(c.message_id);
  return out;
}

storage::delivery_claim_params claim_params(bool fresh, const std::string& owner = "owner-1") {
  storage::delivery_claim_params p;
  p.owner = owner;
  p.fresh = fresh;
  return p;
}

// What the service records after one attempt of `c`.
storage::delivery_outcome outcome(const storage::delivery_claimed& c, const std::string& state,
                                  std::optional<int> status_code, micros next_attempt_at = 0) {
  storage::delivery_outcome o;
  o.id = c.id;
  o.attempt = c.attempt;
  o.started_at = 1'700'000'000'000'000;
  o.latency_ms = 12.5;
  o.status_code = status_code;
  o.state = state;
  o.next_attempt_at = next_attempt_at;
  return o;
}

struct fixture {
  test::test_schema schema;
  pqxx::connection conn{migrated(schema)};
  std::int64_t token_id = 0;
  std::int64_t other_token_id = 0;
  std::size_t predictions = 0;

  fixture() {
    pqxx::work tx(conn);
    storage::catalog_spec spec;
    spec.models.push_back({"acme", "echo", "", {{v1, "{}", {}, {}}}});
    storage::catalog_sync(tx, spec);
    token_id = storage::token_insert(tx, {"hooks", std::string(32, '\x03'), "cw_hook", secret1});
    other_token_id =
        storage::token_insert(tx, {"other", std::string(32, '\x04'), "cw_othr", secret2});
    tx.commit();
  }

  // A new prediction of the token; ids grow with each call.
  std::string prediction(std::int64_t owner = 0) {
    const std::string id = test::nth_prediction_id(++predictions);
    pqxx::work tx(conn);
    storage::prediction_new p;
    p.id = id;
    p.token_id = owner ? owner : token_id;
    p.model = "acme/echo";
    p.version_id = v1;
    p.input_json = R"({"prompt":"hi"})";
    p.webhook = url_a;
    auto r = storage::prediction_insert_many(tx, {p});
    REQUIRE(r.size() == 1);
    REQUIRE(r[0].outcome == storage::insert_outcome::created);
    tx.commit();
    return id;
  }

  // Queues one event in its own transaction.
  void queue(const std::string& prediction_id, const std::string& message_id,
             const std::string& event, const std::string& url = url_a,
             const std::string& payload = "{}", bool supersedes = false, std::int64_t owner = 0) {
    storage::delivery_new d;
    d.message_id = message_id;
    d.prediction_id = prediction_id;
    d.token_id = owner ? owner : token_id;
    d.event = event;
    d.url = url;
    d.payload = payload;
    d.supersedes = supersedes;
    pqxx::work tx(conn);
    storage::delivery_insert_many(tx, {d});
    tx.commit();
  }

  std::vector<storage::delivery_claimed> claim(const storage::delivery_claim_params& p) {
    pqxx::work tx(conn);
    auto claimed = storage::delivery_claim_due(tx, p);
    tx.commit();
    return claimed;
  }

  std::vector<storage::delivery_claimed> claim_fresh() { return claim(claim_params(true)); }
  std::vector<storage::delivery_claimed> claim_retry() { return claim(claim_params(false)); }

  // Claims exactly the one delivery `message_id` (fresh or retry).
  storage::delivery_claimed claim_one(const std::string& message_id, bool fresh = true) {
    auto claimed = claim(claim_params(fresh));
    REQUIRE(messages_of(claimed) == strings{message_id});
    return claimed[0];
  }

  std::size_t finish(const std::vector<storage::delivery_outcome>& outcomes,
                     const std::string& owner = "owner-1") {
    pqxx::work tx(conn);
    const auto n = storage::delivery_finish_many(tx, owner, outcomes);
    tx.commit();
    return n;
  }

  void exec(const std::string& sql) {
    pqxx::work tx(conn);
    tx.exec(sql);
    tx.commit();
  }

  // The delivery `message_id` is due again (it waited for a retry).
  void make_due(const std::string& message_id) {
    pqxx::work tx(conn);
    tx.exec_params(
        "UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 s' "
        "WHERE message_id = $1",
        message_id);
    tx.commit();
  }

  // One value of one delivery, as text ("null" for NULL), in its own transaction.
  std::string value(const std::string& message_id, const std::string& expr) {
    pqxx::read_transaction tx(conn);
    auto f = tx.exec_params1("SELECT " + expr + " FROM webhook_deliveries WHERE message_id = $1",
                             message_id)[0];
    return f.is_null() ? "null" : f.as<std::string>();
  }

  std::string query(const std::string& sql) {
    pqxx::read_transaction tx(conn);
    auto f = tx.exec1(sql)[0];
    return f.is_null() ? "null" : f.as<std::string>();
  }

  micros now_us() {
    return std::stoll(query("SELECT (extract(epoch FROM now()) * 1000000)::bigint"));
  }

  std::vector<storage::delivery_row> list(const std::string& prediction_id,
                                          std::int64_t owner = 0) {
    pqxx::read_transaction tx(conn);
    return storage::delivery_list(tx, owner ? owner : token_id, prediction_id);
  }
};

}  // namespace

// ---- (a) throttle and coalescing ----------------------------------------------------------

TEST_CASE("output events not yet attempted are coalesced into one delivery", "[pg][webhook]") {
  fixture f;
  const auto p = f.prediction();
  f.queue(p, "msg_out1", "output", url_a, R"({"output":1})");
  f.queue(p, "msg_out2", "output", url_a, R"({"output":2})");
  CHECK(f.query("SELECT count(*) FROM webhook_deliveries") == "1");
  CHECK(f.value("msg_out1", "payload") == R"({"output":2})");
  CHECK(f.value("msg_out1", "state") == "pending");
  CHECK(f.query("SELECT count(*) FROM webhook_deliveries WHERE message_id = 'msg_out2'") == "0");

  SECTION("logs fold into the same waiting delivery") {
    f.queue(p, "msg_logs1", "logs", url_a, R"({"logs":"x"})");
    CHECK(f.query("SELECT count(*) FROM webhook_deliveries") == "1");
    CHECK(f.value("msg_out1", "payload") == R"({"logs":"x"})");
  }
  SECTION("another URL gets its own delivery") {
    f.queue(p, "msg_outb", "output", url_b, R"({"output":3})");
    CHECK(f.query("SELECT count(*) FROM webhook_deliveries") == "2");
    CHECK(f.value("msg_out1", "payload") == R"({"output":2})");
  }
  SECTION("start and completed are never coalesced") {
    f.queue(p, "msg_done", "completed", url_a, R"({"status":"succeeded"})");
    CHECK(f.query("SELECT count(*) FROM webhook_deliveries") == "2");
    CHECK(f.value("msg_out1", "payload") == R"({"output":2})");
  }
}

TEST_CASE("an output event after one being sent is throttled behind it", "[pg][webhook]") {
  fixture f;
  const auto p = f.prediction();
  f.queue(p, "msg_out1", "output", url_a, R"({"output":1})");
  f.queue(p, "msg_out2", "output", url_a, R"({"output":2})");
  const auto c = f.claim_one("msg_out1");
  CHECK(c.payload == R"({"output":2})");
  CHECK(c.attempt == 1);
  CHECK(f.value("msg_out1", "lease_owner") == "owner-1");

  f.queue(p, "msg_out3", "output", url_a, R"({"output":3})");
  CHECK(f.query("SELECT count(*) FROM webhook_deliveries") == "2");
  CHECK(f.value("msg_out1", "payload") == R"({"output":2})");  // the leased body is untouched
  CHECK(f.value("msg_out3", "payload") == R"({"output":3})");
  CHECK(f.query("SELECT b.due_at >= a.due_at + interval '500 ms' AND b.next_attempt_at = b.due_at "
                "FROM webhook_deliveries a, webhook_deliveries b "
                "WHERE a.message_id = 'msg_out1' AND b.message_id = 'msg_out3'") == "t");

  // The throttled one still takes the newest body.
  f.queue(p, "msg_out4", "output", url_a, R"({"output":4})");
  CHECK(f.query("SELECT count(*) FROM webhook_deliveries") == "2");
  CHECK(f.value("msg_out3", "payload") == R"({"output":4})");
}

TEST_CASE("a custom throttle interval spaces output deliveries by it", "[pg][webhook]") {
  fixture f;
  const auto p = f.prediction();
  f.queue(p, "msg_out1", "output");
  f.claim_one("msg_out1");
  storage::delivery_new d;
  d.message_id = "msg_out2";
  d.prediction_id = p;
  d.token_id = f.token_id;
  d.event = "output";
  d.url = url_a;
  d.payload = "{}";
  {
    pqxx::work tx(f.conn);
    storage::delivery_insert_many(tx, {d}, 5'000);
    tx.commit();
  }
  CHECK(f.query("SELECT b.due_at >= a.due_at + interval '5 s' "
                "FROM webhook_deliveries a, webhook_deliveries b "
                "WHERE a.message_id = 'msg_out1' AND b.message_id = 'msg_out2'") == "t");
}

// ---- (b) supersede -----------------------------------------------------------------------

TEST_CASE("completed supersedes the pending output not being sent, not the leased one",
          "[pg][webhook]") {
  fixture f;
  const auto p = f.prediction();
  f.queue(p, "msg_out1", "output", url_a, R"({"output":1})");
  f.claim_one("msg_out1");                                     // being sent
  f.queue(p, "msg_out2", "output", url_a, R"({"output":2})");  // throttled, waiting
  f.queue(p, "msg_done", "completed", url_a, R"({"status":"succeeded"})", true);

  CHECK(f.value("msg_out2", "state") == "superseded");
  CHECK(f.value("msg_out2", "finished_at IS NOT NULL") == "t");
  CHECK(f.value("msg_out1", "state") == "pending");
  CHECK(f.value("msg_out1", "lease_owner") == "owner-1");
  CHECK(f.value("msg_done", "state") == "pending");
}

TEST_CASE("completed without supersedes leaves pending output alone", "[pg][webhook]") {
  fixture f;
  const auto p = f.prediction();
  f.queue(p, "msg_out1", "output");
  f.queue(p, "msg_done", "completed", url_a, "{}", false);
  CHECK(f.value("msg_out1", "state") == "pending");
}

TEST_CASE("completed supersedes an output whose lease lapsed", "[pg][webhook]") {
  fixture f;
  const auto p = f.prediction();
  f.queue(p, "msg_out1", "output");
  f.claim_one("msg_out1");
  f.exec(
      "UPDATE webhook_deliveries SET lease_expires_at = now() - interval '1 s' "
      "WHERE message_id = 'msg_out1'");
  f.queue(p, "msg_done", "completed", url_a, "{}", true);
  CHECK(f.value("msg_out1", "state") == "superseded");
  CHECK(f.value("msg_out1", "lease_owner") == "null");
}

TEST_CASE("a failed output attempt is superseded, not retried, once completed is queued",
          "[pg][webhook]") {
  fixture f;
  const auto p = f.prediction();
  f.queue(p, "msg_out1", "output");
  const auto c = f.claim_one("msg_out1");
  f.queue(p, "msg_done", "completed", url_a, R"({"status":"succeeded"})", true);
  REQUIRE(f.value("msg_out1", "state") == "pending");

  CHECK(f.finish({outcome(c, "pending", 500, f.now_us() + 1'000'000)}) == 1);
  CHECK(f.value("msg_out1", "state") == "superseded");
  CHECK(f.value("msg_out1", "finished_at IS NOT NULL") == "t");
  CHECK(f.value("msg_out1", "lease_owner") == "null");
  CHECK(f.query("SELECT count(*) FROM webhook_attempts") == "1");
  f.make_due("msg_out1");
  CHECK(f.claim_retry().empty());
  // completed is no longer behind it.
  CHECK(messages_of(f.claim_fresh()) == strings{"msg_done"});
}

// ---- (c) order per prediction ----------------------------------------------------------------

TEST_CASE("a prediction's completed waits for its earlier start", "[pg][webhook]") {
  fixture f;
  const auto p = f.prediction();
  f.queue(p, "msg_start", "start");
  f.queue(p, "msg_done", "completed");

  const auto s = f.claim_one("msg_start");
  // The start is in flight: completed is not claimable.
  CHECK(f.claim_fresh().empty());
  CHECK(f.claim_retry().empty());

  // The start waits for a retry: still not.
  REQUIRE(f.finish({outcome(s, "pending", 503, f.now_us() + 60'000'000)}) == 1);
  CHECK(f.claim_fresh().empty());
  CHECK(f.claim_retry().empty());

  // The start's retry is due: only it is claimed.
  f.make_due("msg_start");
  const auto s2 = f.claim_one("msg_start", false);
  CHECK(s2.attempt == 2);
  CHECK(f.claim_fresh().empty());

  // Delivered: now completed goes.
  REQUIRE(f.finish({outcome(s2, "delivered", 200)}) == 1);
  CHECK(messages_of(f.claim_fresh()) == strings{"msg_done"});
}

TEST_CASE("one prediction waiting does not hold up another's deliveries", "[pg][webhook]") {
  fixture f;
  const auto p1 = f.prediction();
  const auto p2 = f.prediction();
  f.queue(p1, "msg_start1", "start");
  f.queue(p1, "msg_done1", "completed");
  f.queue(p2, "msg_done2", "completed");
  CHECK(messages_of(f.claim_fresh()) == strings{"msg_start1", "msg_done2"});
}

// ---- (d) per-endpoint limit and SKIP LOCKED ------------------------------------------------

TEST_CASE("claims respect the per-endpoint limit, counting those in flight", "[pg][webhook]") {
  fixture f;
  for (int i = 0; i < 5; ++i) f.queue(f.prediction(), "msg_a" + std::to_string(i), "start", url_a);
  for (int i = 0; i < 2; ++i) f.queue(f.prediction(), "msg_b" + std::to_string(i), "start", url_b);

  auto p = claim_params(true);
  p.per_endpoint = 2;
  p.in_flight = {{endpoint_a, 1}};
  const auto claimed = f.claim(p);
  CHECK(messages_of(claimed) == strings{"msg_a0", "msg_b0", "msg_b1"});
  for (const auto& c : claimed) {
    CHECK(c.endpoint == (c.url == url_a ? endpoint_a : std::string("https://b.example")));
  }

  SECTION("an endpoint already at its limit is left out") {
    auto q = claim_params(true);
    q.per_endpoint = 2;
    q.in_flight = {{endpoint_a, 2}};
    CHECK(f.claim(q).empty());  // B's were claimed above, A is full
  }
  SECTION("the limit caps the number claimed") {
    auto q = claim_params(true);
    q.limit = 2;
    CHECK(messages_of(f.claim(q)) == strings{"msg_a1", "msg_a2"});
  }
}

TEST_CASE("concurrent claims on two connections take disjoint deliveries", "[pg][webhook]") {
  fixture f;
  const std::size_t total = 16;
  for (std::size_t i = 0; i < total; ++i) {
    f.queue(f.prediction(), "msg_c" + std::to_string(i), "start");
  }
  pqxx::connection other(f.schema.conninfo());
  pqxx::work tx1(f.conn);
  pqxx::work tx2(other);
  auto p1 = claim_params(true, "owner-1");
  p1.limit = 3;
  const auto first = storage::delivery_claim_due(tx1, p1);  // holds its row locks
  const auto second = storage::delivery_claim_due(tx2, claim_params(true, "owner-2"));
  tx2.commit();
  tx1.commit();

  const auto a = messages_of(first);
  const auto b = messages_of(second);
  CHECK(a == strings{"msg_c0", "msg_c1", "msg_c2"});
  CHECK_FALSE(b.empty());  // not blocked: the locked rows are skipped
  std::set<std::string> both(a.begin(), a.end());
  both.insert(b.begin(), b.end());
  CHECK(both.size() == a.size() + b.size());  // disjoint
  CHECK(f.query("SELECT count(*) FROM webhook_deliveries WHERE lease_owner = 'owner-1'") == "3");
  CHECK(f.query("SELECT count(*) FROM webhook_deliveries WHERE lease_owner = 'owner-2'") ==
        std::to_string(b.size()));
  CHECK(f.query("SELECT max(attempts) FROM webhook_deliveries") == "1");

  // Whatever neither took is claimed next, once each.
  auto p3 = claim_params(true, "owner-3");
  p3.per_endpoint = total;  // all of them go to one endpoint
  const auto rest = messages_of(f.claim(p3));
  both.insert(rest.begin(), rest.end());
  CHECK(both.size() == total);
  CHECK(a.size() + b.size() + rest.size() == total);
}

// Candidates are read without locks and only the rows leased are locked: a concurrent claim gets
// the rows the first one did not take.
TEST_CASE("a concurrent claim is not kept from rows the first one does not take", "[pg][webhook]") {
  fixture f;
  for (int i = 0; i < 6; ++i) f.queue(f.prediction(), "msg_c" + std::to_string(i), "start");
  pqxx::connection other(f.schema.conninfo());
  pqxx::work tx1(f.conn);
  pqxx::work tx2(other);
  auto p1 = claim_params(true, "owner-1");
  p1.limit = 3;
  const auto first = storage::delivery_claim_due(tx1, p1);
  const auto second = storage::delivery_claim_due(tx2, claim_params(true, "owner-2"));
  tx2.commit();
  tx1.commit();
  CHECK(first.size() == 3);
  CHECK(messages_of(second) == strings{"msg_c3", "msg_c4", "msg_c5"});
}

// ---- (e) fresh vs retry, lapsed leases -----------------------------------------------------

TEST_CASE("fresh claims and retry claims never return each other's deliveries", "[pg][webhook]") {
  fixture f;
  const auto p1 = f.prediction();
  const auto p2 = f.prediction();
  f.queue(p1, "msg_retry", "start");
  const auto c = f.claim_one("msg_retry");
  REQUIRE(f.finish({outcome(c, "pending", 500, f.now_us())}) == 1);
  f.make_due("msg_retry");
  f.queue(p2, "msg_fresh", "start");

  SECTION("fresh") {
    const auto fresh = f.claim_fresh();
    CHECK(messages_of(fresh) == strings{"msg_fresh"});
    CHECK(fresh.at(0).attempt == 1);
  }
  SECTION("retry") {
    const auto retry = f.claim_retry();
    CHECK(messages_of(retry) == strings{"msg_retry"});
    CHECK(retry.at(0).attempt == 2);
  }
}

TEST_CASE("a delivery whose lease lapsed is claimed again as a retry", "[pg][webhook]") {
  fixture f;
  f.queue(f.prediction(), "msg_lapse", "completed");
  const auto c = f.claim_one("msg_lapse");
  CHECK(c.attempt == 1);
  CHECK(f.claim_retry().empty());  // leased

  f.exec(
      "UPDATE webhook_deliveries SET lease_expires_at = now() - interval '1 s' "
      "WHERE message_id = 'msg_lapse'");
  CHECK(f.claim_fresh().empty());
  const auto again = f.claim(claim_params(false, "owner-2"));
  REQUIRE(messages_of(again) == strings{"msg_lapse"});
  CHECK(again[0].attempt == 2);
  CHECK(f.value("msg_lapse", "lease_owner") == "owner-2");
  CHECK(f.value("msg_lapse", "lease_expires_at > now()") == "t");

  // The first owner's late finish changes nothing.
  CHECK(f.finish({outcome(c, "delivered", 200)}, "owner-1") == 0);
  CHECK(f.value("msg_lapse", "state") == "pending");
}

TEST_CASE("a released delivery is claimable again with its attempt uncounted", "[pg][webhook]") {
  fixture f;
  f.queue(f.prediction(), "msg_rel", "start");
  const auto c = f.claim_one("msg_rel");
  {
    pqxx::work tx(f.conn);
    storage::delivery_release(tx, "owner-2", {c.id});  // not its lease: nothing
    tx.commit();
  }
  CHECK(f.value("msg_rel", "lease_owner") == "owner-1");
  {
    pqxx::work tx(f.conn);
    storage::delivery_release(tx, "owner-1", {c.id});
    tx.commit();
  }
  CHECK(f.value("msg_rel", "lease_owner") == "null");
  CHECK(f.value("msg_rel", "attempts") == "0");
  CHECK(f.claim_one("msg_rel").attempt == 1);
}

// ---- (f) finishing attempts ----------------------------------------------------------------

TEST_CASE("a failed attempt is recorded and the delivery waits for its retry", "[pg][webhook]") {
  fixture f;
  const auto p = f.prediction();
  f.queue(p, "msg_f", "completed");
  const auto c = f.claim_one("msg_f");
  const micros next = f.now_us() + 30'000'000;
  auto o = outcome(c, "pending", 500, next);
  o.excerpt = "internal error";
  REQUIRE(f.finish({o}) == 1);

  CHECK(f.value("msg_f", "state") == "pending");
  CHECK(f.value("msg_f", "lease_owner") == "null");
  CHECK(f.value("msg_f", "lease_expires_at") == "null");
  CHECK(f.value("msg_f", "finished_at") == "null");
  CHECK(f.value("msg_f", "last_error") == "HTTP 500");
  CHECK(f.value("msg_f", "attempts") == "1");
  const auto rows = f.list(p);
  REQUIRE(rows.size() == 1);
  REQUIRE(rows[0].next_attempt_at.has_value());
  CHECK(std::llabs(*rows[0].next_attempt_at - next) <= 1);
  REQUIRE(rows[0].attempt_log.size() == 1);
  const auto& a = rows[0].attempt_log[0];
  CHECK(a.attempt == 1);
  CHECK(a.started_at == 1'700'000'000'000'000);
  CHECK(a.latency_ms == std::optional<double>(12.5));
  CHECK(a.status_code == std::optional<int>(500));
  CHECK_FALSE(a.error.has_value());
  CHECK(a.response_excerpt == std::optional<std::string>("internal error"));
  CHECK(f.claim_retry().empty());  // not due yet
}

TEST_CASE("a network error is recorded with its message and no status", "[pg][webhook]") {
  fixture f;
  f.queue(f.prediction(), "msg_net", "start");
  const auto c = f.claim_one("msg_net");
  auto o = outcome(c, "pending", std::nullopt, f.now_us());
  o.latency_ms = std::nullopt;
  o.error = "connection refused";
  REQUIRE(f.finish({o}) == 1);
  CHECK(f.value("msg_net", "last_error") == "connection refused");
  CHECK(f.query("SELECT status_code IS NULL AND latency_ms IS NULL AND "
                "error = 'connection refused' AND response_excerpt IS NULL "
                "FROM webhook_attempts") == "t");
}

TEST_CASE("delivered and failed deliveries are finished and their lease cleared", "[pg][webhook]") {
  fixture f;
  f.queue(f.prediction(), "msg_ok", "completed");
  f.queue(f.prediction(), "msg_bad", "completed");
  const auto claimed = f.claim_fresh();
  REQUIRE(messages_of(claimed) == strings{"msg_ok", "msg_bad"});
  auto bad = outcome(claimed[1], "failed", 500);
  CHECK(f.finish({outcome(claimed[0], "delivered", 204), bad}) == 2);

  CHECK(f.value("msg_ok", "state") == "delivered");
  CHECK(f.value("msg_ok", "finished_at IS NOT NULL") == "t");
  CHECK(f.value("msg_ok", "lease_owner IS NULL AND lease_expires_at IS NULL") == "t");
  CHECK(f.value("msg_ok", "last_error") == "null");
  CHECK(f.value("msg_bad", "state") == "failed");
  CHECK(f.value("msg_bad", "finished_at IS NOT NULL") == "t");
  CHECK(f.value("msg_bad", "lease_owner IS NULL AND lease_expires_at IS NULL") == "t");
  CHECK(f.value("msg_bad", "last_error") == "HTTP 500");
  CHECK(f.query("SELECT count(*) FROM webhook_attempts") == "2");

  // A second finish of the same attempt changes nothing.
  CHECK(f.finish({outcome(claimed[0], "failed", 500)}) == 0);
  CHECK(f.value("msg_ok", "state") == "delivered");
}

TEST_CASE("a finish by another owner changes nothing", "[pg][webhook]") {
  fixture f;
  f.queue(f.prediction(), "msg_own", "start");
  const auto c = f.claim_one("msg_own");
  CHECK(f.finish({outcome(c, "delivered", 200)}, "owner-2") == 0);
  CHECK(f.value("msg_own", "state") == "pending");
  CHECK(f.value("msg_own", "lease_owner") == "owner-1");
  CHECK(f.query("SELECT count(*) FROM webhook_attempts") == "0");
  CHECK(f.finish({outcome(c, "delivered", 200)}, "owner-1") == 1);
}

TEST_CASE("410 disables the tenant's URL: later deliveries to it are claimed disabled",
          "[pg][webhook]") {
  fixture f;
  f.queue(f.prediction(), "msg_gone", "completed", url_a);
  const auto c = f.claim_one("msg_gone");
  CHECK_FALSE(c.disabled);
  auto o = outcome(c, "disabled", 410);
  o.disable_url = true;
  REQUIRE(f.finish({o}) == 1);
  CHECK(f.value("msg_gone", "state") == "disabled");
  CHECK(f.value("msg_gone", "finished_at IS NOT NULL") == "t");
  CHECK(f.query("SELECT count(*) FROM webhook_disabled_urls WHERE url = '" + url_a +
                "' AND token_id = " + std::to_string(f.token_id)) == "1");

  f.queue(f.prediction(), "msg_later", "completed", url_a);
  f.queue(f.prediction(), "msg_elsewhere", "completed", url_b);
  f.queue(f.prediction(f.other_token_id), "msg_tenant2", "completed", url_a, "{}", false,
          f.other_token_id);
  const auto claimed = f.claim_fresh();
  REQUIRE(messages_of(claimed) == strings{"msg_later", "msg_elsewhere", "msg_tenant2"});
  CHECK(claimed[0].disabled);
  CHECK_FALSE(claimed[1].disabled);  // another URL
  CHECK_FALSE(claimed[2].disabled);  // another tenant
}

// ---- (g) records and redelivery ------------------------------------------------------------

TEST_CASE("delivery_list returns deliveries and attempts in order, for the owner only",
          "[pg][webhook]") {
  fixture f;
  const auto p = f.prediction();
  f.queue(p, "msg_l1", "start");
  f.queue(p, "msg_l2", "completed");
  const auto s = f.claim_one("msg_l1");
  REQUIRE(f.finish({outcome(s, "pending", 502, f.now_us())}) == 1);
  f.make_due("msg_l1");
  const auto s2 = f.claim_one("msg_l1", false);
  REQUIRE(f.finish({outcome(s2, "pending", 503, f.now_us())}) == 1);
  f.make_due("msg_l1");
  const auto s3 = f.claim_one("msg_l1", false);
  REQUIRE(f.finish({outcome(s3, "delivered", 200)}) == 1);

  const auto rows = f.list(p);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].message_id == "msg_l1");
  CHECK(rows[0].event == "start");
  CHECK(rows[0].url == url_a);
  CHECK(rows[0].state == "delivered");
  CHECK(rows[0].attempts == 3);
  CHECK_FALSE(rows[0].next_attempt_at.has_value());
  CHECK(rows[0].finished_at.has_value());
  CHECK_FALSE(rows[0].last_error.has_value());
  REQUIRE(rows[0].attempt_log.size() == 3);
  CHECK(rows[0].attempt_log[0].attempt == 1);
  CHECK(rows[0].attempt_log[0].status_code == std::optional<int>(502));
  CHECK(rows[0].attempt_log[1].attempt == 2);
  CHECK(rows[0].attempt_log[1].status_code == std::optional<int>(503));
  CHECK(rows[0].attempt_log[2].attempt == 3);
  CHECK(rows[0].attempt_log[2].status_code == std::optional<int>(200));
  CHECK(rows[1].message_id == "msg_l2");
  CHECK(rows[1].state == "pending");
  CHECK(rows[1].attempts == 0);
  CHECK(rows[1].next_attempt_at.has_value());
  CHECK(rows[1].attempt_log.empty());

  CHECK(f.list(p, f.other_token_id).empty());
  CHECK(f.list(test::nth_prediction_id(999)).empty());
}

TEST_CASE("redelivery queues a delivered delivery again with its message id", "[pg][webhook]") {
  fixture f;
  const auto p = f.prediction();
  f.queue(p, "msg_again", "completed", url_a, R"({"status":"succeeded"})");
  const auto c = f.claim_one("msg_again");
  REQUIRE(f.finish({outcome(c, "delivered", 200)}) == 1);

  std::optional<storage::delivery_row> r;
  {
    pqxx::work tx(f.conn);
    CHECK_FALSE(storage::delivery_redeliver(tx, f.other_token_id, p, "msg_again").has_value());
    CHECK_FALSE(storage::delivery_redeliver(tx, f.token_id, p, "msg_nosuch").has_value());
    r = storage::delivery_redeliver(tx, f.token_id, p, "msg_again");
    tx.commit();
  }
  REQUIRE(r.has_value());
  CHECK(r->message_id == "msg_again");
  CHECK(r->state == "pending");
  CHECK(r->next_attempt_at.has_value());
  CHECK_FALSE(r->finished_at.has_value());
  CHECK(f.query("SELECT count(*) FROM webhook_deliveries") == "1");

  const auto again = f.claim_one("msg_again", false);
  CHECK(again.payload == R"({"status":"succeeded"})");
  CHECK(again.attempt == 2);
}

TEST_CASE("redelivery of a disabled delivery re-enables its URL", "[pg][webhook]") {
  fixture f;
  const auto p = f.prediction();
  f.queue(p, "msg_gone", "completed", url_a);
  const auto c = f.claim_one("msg_gone");
  auto o = outcome(c, "disabled", 410);
  o.disable_url = true;
  REQUIRE(f.finish({o}) == 1);
  REQUIRE(f.query("SELECT count(*) FROM webhook_disabled_urls") == "1");

  {
    pqxx::work tx(f.conn);
    REQUIRE(storage::delivery_redeliver(tx, f.token_id, p, "msg_gone").has_value());
    tx.commit();
  }
  CHECK(f.query("SELECT count(*) FROM webhook_disabled_urls") == "0");
  CHECK(f.value("msg_gone", "state") == "pending");
  CHECK(f.value("msg_gone", "last_error") == "null");
  const auto again = f.claim_one("msg_gone", false);
  CHECK_FALSE(again.disabled);
}

TEST_CASE("redelivery of a delivery being sent leaves it as it is", "[pg][webhook]") {
  fixture f;
  const auto p = f.prediction();
  f.queue(p, "msg_busy", "start");
  f.claim_one("msg_busy");
  std::optional<storage::delivery_row> r;
  {
    pqxx::work tx(f.conn);
    r = storage::delivery_redeliver(tx, f.token_id, p, "msg_busy");
    tx.commit();
  }
  REQUIRE(r.has_value());
  CHECK(r->state == "pending");
  CHECK(f.value("msg_busy", "lease_owner") == "owner-1");
}

// ---- (h) secret rotation -------------------------------------------------------------------

TEST_CASE("a rotated secret keeps the previous one signing during the overlap", "[pg][webhook]") {
  fixture f;
  std::optional<storage::token_row> t;
  micros now = 0;
  {
    pqxx::work tx(f.conn);
    t = storage::token_rotate_secret(tx, f.token_id, secret2, std::chrono::seconds(3600));
    now = tx.exec1("SELECT (extract(epoch FROM now()) * 1000000)::bigint")[0].as<micros>();
    tx.commit();
  }
  REQUIRE(t.has_value());
  CHECK(t->webhook_secret == secret2);
  CHECK(t->previous_webhook_secret == std::optional<std::string>(secret1));
  REQUIRE(t->previous_secret_until.has_value());
  CHECK(std::llabs(*t->previous_secret_until - (now + 3'600'000'000LL)) <= 1'000'000);
  {
    pqxx::read_transaction tx(f.conn);
    const auto got = storage::token_get(tx, f.token_id);
    REQUIRE(got.has_value());
    CHECK(got->webhook_secret == secret2);
    CHECK(got->previous_webhook_secret == std::optional<std::string>(secret1));
    CHECK(got->previous_secret_until == t->previous_secret_until);
  }
  f.queue(f.prediction(), "msg_rot1", "start");
  CHECK(f.claim_one("msg_rot1").secrets == strings{secret2, secret1});

  SECTION("a second rotation keeps only the last two") {
    pqxx::work tx(f.conn);
    const auto t2 = storage::token_rotate_secret(tx, f.token_id, secret3, std::chrono::seconds(60));
    tx.commit();
    REQUIRE(t2.has_value());
    CHECK(t2->webhook_secret == secret3);
    CHECK(t2->previous_webhook_secret == std::optional<std::string>(secret2));
    f.queue(f.prediction(), "msg_rot2", "start");
    CHECK(f.claim_one("msg_rot2").secrets == strings{secret3, secret2});
  }
  SECTION("after the overlap only the current one signs") {
    f.exec("UPDATE api_tokens SET previous_secret_until = now() - interval '1 s' WHERE id = " +
           std::to_string(f.token_id));
    f.queue(f.prediction(), "msg_rot3", "start");
    CHECK(f.claim_one("msg_rot3").secrets == strings{secret2});
  }
  SECTION("an unknown token is not rotated") {
    pqxx::work tx(f.conn);
    CHECK_FALSE(
        storage::token_rotate_secret(tx, 999'999, secret3, std::chrono::seconds(60)).has_value());
  }
}

TEST_CASE("without a rotation a claim carries the one secret", "[pg][webhook]") {
  fixture f;
  f.queue(f.prediction(), "msg_plain", "start");
  CHECK(f.claim_one("msg_plain").secrets == strings{secret1});
}

namespace {

// 5,000 predictions of v1 with ids lpad(to_hex(g), 26, '0'), g = 1..5000, for deliveries to name.
void insert_5000_predictions(pqxx::transaction_base& tx, std::int64_t token_id) {
  tx.exec_params(
      "INSERT INTO predictions (id, token_id, model, version_id, input) SELECT "
      "lpad(to_hex(g), 26, '0'), $1, 'acme/echo', $2, '{}' FROM generate_series(1, 5000) g",
      token_id, v1);
}

// Claims as the service does, and returns the candidate query's plan, as auto_explain gave it.
std::string claim_plan(pqxx::connection& conn, bool fresh,
                       std::vector<storage::delivery_claimed>& claimed) {
  test::notices got(conn);
  pqxx::work tx(conn);
  test::plans_as_notices(tx);
  claimed = storage::delivery_claim_due(tx, claim_params(fresh));
  std::string plan;
  for (const auto& n : got.received) {
    if (n.find("SELECT d.id, d.endpoint") != std::string::npos) plan = n;
  }
  return plan;
}

}  // namespace

TEST_CASE_METHOD(fixture, "a claim under a backlog reads due deliveries in index order",
                 "[pg][webhook]") {
  {
    // 5,000 due deliveries, as when slow endpoints fall behind.
    pqxx::work tx(conn);
    insert_5000_predictions(tx, token_id);
    tx.exec_params(
        "INSERT INTO webhook_deliveries (message_id, prediction_id, token_id, event, url, payload, "
        "next_attempt_at) SELECT 'msg_' || g, lpad(to_hex(g), 26, '0'), $1, 'completed', $2, '{}', "
        "now() - interval '1 hour' + g * interval '1 millisecond' FROM generate_series(1, 5000) g",
        token_id, url_a);
    tx.commit();
  }
  pqxx::nontransaction(conn).exec("ANALYZE webhook_deliveries");
  std::vector<storage::delivery_claimed> claimed;
  const auto plan = claim_plan(conn, true, claimed);
  CHECK(claimed.size() == 32);  // the endpoint's limit
  CHECK(claimed.front().message_id == "msg_1");
  INFO("auto_explain: " << plan);
  REQUIRE_FALSE(plan.empty());
  // The candidates come from the index in the claim's order, and the scan stops at the limit
  // instead of reading and sorting every due row.
  CHECK(plan.find("webhook_deliveries_fresh_due_order") != std::string::npos);
  CHECK(plan.find("Sort") == std::string::npos);
}

TEST_CASE_METHOD(fixture, "a claim scans the due index even when the statistics lag behind",
                 "[pg][webhook]") {
  {
    // 5,000 retries analyzed while 150 were due...
    pqxx::work tx(conn);
    insert_5000_predictions(tx, token_id);
    tx.exec_params(
        "INSERT INTO webhook_deliveries (message_id, prediction_id, token_id, event, url, payload, "
        "attempts, next_attempt_at) SELECT 'msg_' || g, lpad(to_hex(g), 26, '0'), $1, "
        "'completed', $2, '{}', 1, now() + CASE WHEN g <= 150 THEN -interval '2 hours' ELSE "
        "interval '1 hour' END + g * interval '1 millisecond' FROM generate_series(1, 5000) g",
        token_id, url_a);
    tx.commit();
  }
  pqxx::nontransaction(conn).exec("ANALYZE webhook_deliveries");
  {
    // ...then all due, each leaving a dead row version behind, as leases and finished attempts do.
    pqxx::work tx(conn);
    tx.exec(
        "UPDATE webhook_deliveries SET next_attempt_at = next_attempt_at - interval '2 hours' "
        "WHERE next_attempt_at > now()");
    tx.commit();
  }
  std::vector<storage::delivery_claimed> claimed;
  const auto plan = claim_plan(conn, false, claimed);
  CHECK(claimed.size() == 32);  // the endpoint's limit
  CHECK(claimed.front().message_id == "msg_1");
  INFO("auto_explain: " << plan);
  REQUIRE_FALSE(plan.empty());
  // A bitmap scan would visit every dead version's heap page again at each claim; an index scan
  // marks the dead entries it meets, for the next claims to skip.
  CHECK(plan.find("Bitmap") == std::string::npos);
  CHECK(plan.find("webhook_deliveries_retry_due_order") != std::string::npos);
}
