// Webhook delivery end to end: the real cogwheel binary and fake Cog container, real PostgreSQL, a
// real receiver on loopback (tests/support/webhook_receiver.hpp). Retry schedules are compressed
// with --webhook-time-scale.
#include <catch2/catch.hpp>
#include <csignal>
#include <pqxx/pqxx>
#include <set>

#include "tests/support/cogwheel.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/pg.hpp"
#include "tests/support/predictions.hpp"
#include "tests/support/webhook_receiver.hpp"
#include "webhook/signature.hpp"

using namespace cogwheel;
using namespace std::chrono_literals;
using json = nlohmann::json;
using test::received_webhook;

namespace {

std::vector<std::string> base_args(const std::string& config, std::vector<std::string> extra) {
  std::vector<std::string> a = {"--config",        config,     "--create-rate-limit",  "0",
                                "--rate-limit",    "0",        "--health-interval-ms", "100",
                                "--webhook-allow", "127.0.0.1"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

struct webhook_fixture {
  test::test_schema schema;
  test::temp_dir dir;
  std::map<std::string, std::string> env{{"DATABASE_URL", schema.url()}};
  std::string token = test::create_token(env, "tenant");
  test::webhook_receiver receiver;
  std::optional<test::cogwheel_server> server;
  std::optional<test::prediction_client> api;
  std::string config;

  explicit webhook_fixture(std::vector<std::string> extra = {}, int slots = 8) {
    test::fake_model model;
    model.slots = slots;
    config = test::write_fake_model_config(dir.path(), model);
    start(std::move(extra));
  }
  void start(std::vector<std::string> extra, unsigned short port = 0) {
    api.reset();
    server.emplace(env, base_args(config, std::move(extra)), port);
    api.emplace(schema.conninfo(), token, server->port(),
                [this] { return server->process().output(); });
  }
  json create(const json& input, const std::string& hook, std::optional<json> events = {}) {
    json body = {{"version", test::echo_version}, {"input", input}, {"webhook", hook}};
    if (events) body["webhook_events_filter"] = *events;
    auto r = api->http().post("/v1/predictions", body.dump(), api->auth());
    INFO(r.body);
    REQUIRE(r.status == 201);
    return r.json();
  }
  std::string secret() {
    return api->http().get("/v1/webhooks/default/secret", api->auth()).json()["key"];
  }
  json deliveries(const std::string& id) {
    auto r = api->http().get("/v1/predictions/" + id + "/webhooks", api->auth());
    REQUIRE(r.status == 200);
    return r.json()["results"];
  }
  // Polls GET …/webhooks until `done` holds for the list (bounded).
  json deliveries_until(const std::string& id, const std::function<bool(const json&)>& done,
                        std::chrono::milliseconds timeout = 20s) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    json d = deliveries(id);
    while (!done(d) && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(20ms);  // polling a condition, with a deadline
      d = deliveries(id);
    }
    INFO(d.dump(2));
    INFO(server->process().output());
    REQUIRE(done(d));
    return d;
  }
};

bool verifies(const received_webhook& r, const std::string& secret) {
  const auto id = r.header("webhook-id");
  const auto ts = std::stoll(r.header("webhook-timestamp"));
  const auto expected = webhook::sign(secret, id, ts, r.body);
  const auto sigs = r.header("webhook-signature");
  std::size_t start = 0;
  while (start < sigs.size()) {
    auto space = sigs.find(' ', start);
    if (space == std::string::npos) space = sigs.size();
    if (sigs.substr(start, space - start) == expected) return true;
    start = space + 1;
  }
  return false;
}

std::vector<std::string> statuses(const std::vector<received_webhook>& got) {
  std::vector<std::string> s;
  for (const auto& r : got) s.push_back(r.json()["status"]);
  return s;
}

auto has_status(const std::string& status) {
  return [status](const std::vector<received_webhook>& got) {
    for (const auto& r : got) {
      if (r.json()["status"] == status) return true;
    }
    return false;
  };
}

// The state of the i-th delivery in a GET …/webhooks list, "" when there is none yet.
std::string state_of(const json& deliveries, std::size_t i = 0) {
  return i < deliveries.size() ? deliveries[i]["state"].get<std::string>() : "";
}

test::webhook_reply reply(int status, std::vector<std::pair<std::string, std::string>> headers = {},
                          std::chrono::milliseconds delay = {}) {
  test::webhook_reply r;
  r.status = status;
  r.headers = std::move(headers);
  r.delay = delay;
  return r;
}

}  // namespace

TEST_CASE("start and completed webhooks are signed, filtered and carry the prediction",
          "[e2e][webhook]") {
  webhook_fixture f;
  const auto secret = f.secret();
  auto p = f.create({{"prompt", "hi"}}, f.receiver.url("a"), json{"start", "completed"});
  auto got = f.receiver.wait_for("a", has_status("succeeded"));
  REQUIRE(statuses(got) == std::vector<std::string>{"processing", "succeeded"});
  std::set<std::string> ids;
  for (const auto& r : got) {
    CHECK(verifies(r, secret));
    CHECK(r.header("content-type") == "application/json");
    ids.insert(r.header("webhook-id"));
  }
  CHECK(ids.size() == 2);
  // The completed body is the prediction as GET returns it.
  CHECK(got.back().json() == f.api->get(p["id"]));
  CHECK(got.back().json()["output"] == "hi");
  auto d = f.deliveries_until(p["id"], [](const json& x) {
    return x.size() == 2 && state_of(x) == "delivered" && state_of(x, 1) == "delivered";
  });
  CHECK(d[0]["event"] == "start");
  CHECK(d[1]["event"] == "completed");
  CHECK(d[1]["attempt_log"].size() == 1);
  CHECK(d[1]["attempt_log"][0]["status_code"] == 200);
  CHECK(ids.contains(d[1]["id"].get<std::string>()));

  SECTION("only the events of the filter") {
    auto q =
        f.create({{"outputs", 3}, {"interval_ms", 20}}, f.receiver.url("b"), json{"completed"});
    auto only = f.receiver.wait_for("b", has_status("succeeded"));
    CHECK(statuses(only) == std::vector<std::string>{"succeeded"});
    f.deliveries_until(q["id"],
                       [](const json& x) { return x.size() == 1 && state_of(x) == "delivered"; });
  }
}

TEST_CASE("output and logs webhooks are throttled and coalesced, and completed comes last",
          "[e2e][webhook]") {
  webhook_fixture f({"--webhook-throttle-ms", "300"});
  // 12 outputs and log lines 40 ms apart: about 500 ms of output, far more changes than the
  // throttle lets through.
  auto p = f.create({{"outputs", 12}, {"logs", 12}, {"interval_ms", 40}}, f.receiver.url("t"));
  auto got = f.receiver.wait_for("t", has_status("succeeded"));
  REQUIRE(got.size() >= 2);
  CHECK(got.front().json()["status"] == "processing");  // start
  CHECK(got.back().json()["status"] == "succeeded");
  CHECK(got.back().json()["output"].size() == 12);
  // Between start and completed: output/logs snapshots, at least the throttle apart, fewer than
  // the changes, each newer than the one before.
  std::size_t previous_outputs = 0;
  for (std::size_t i = 1; i + 1 < got.size(); ++i) {
    const auto body = got[i].json();
    CHECK(body["status"] == "processing");
    const auto n = body["output"].is_array() ? body["output"].size() : 0;
    CHECK(n >= previous_outputs);
    previous_outputs = n;
  }
  // Each snapshot was due at least the throttle after the one before (a busy machine may send one
  // late and the next on time, so the spacing at the receiver is not checked pairwise).
  const auto span = got.back().at - got.front().at;
  CHECK(got.size() - 2 <= static_cast<std::size_t>(span / 300ms) + 1);
  CHECK(got.size() - 2 < 12);
  // Nothing after completed.
  auto d = f.deliveries_until(p["id"], [](const json& x) {
    for (const auto& one : x) {
      if (one["state"] == "pending") return false;
    }
    return true;
  });
  CHECK(d.back()["event"] == "completed");
  CHECK(f.receiver.requests("t").size() == got.size());
}

TEST_CASE("completed is retried on the schedule with the same webhook-id, and others are dropped",
          "[e2e][webhook]") {
  // 0.001: 5 s → 5 ms, 5 min → 300 ms, 30 min → 1.8 s.
  webhook_fixture f({"--webhook-time-scale", "0.001"});
  const auto secret = f.secret();
  // completed fails three times (500, 503 without Retry-After, 302 which is not followed), then
  // succeeds; start always fails.
  f.receiver.on("r", [](int) { return reply(500); });
  f.receiver.on("c", [](int n) {
    if (n == 1) return reply(500);
    if (n == 2) return reply(503);
    if (n == 3) return reply(302, {{"Location", "/hook/elsewhere"}});
    return reply(200);
  });
  auto p = f.create({{"prompt", "x"}}, f.receiver.url("c"), json{"completed"});
  auto got = f.receiver.wait_for("c", [](const auto& g) { return g.size() >= 4; });
  REQUIRE(got.size() == 4);
  for (const auto& r : got) {
    CHECK(r.header("webhook-id") == got[0].header("webhook-id"));
    CHECK(verifies(r, secret));
  }
  CHECK(got[2].at - got[1].at >= 250ms);  // the third entry: 5 min scaled
  CHECK(f.receiver.requests("elsewhere").empty());
  auto d = f.deliveries_until(p["id"], [](const json& x) { return state_of(x) == "delivered"; });
  REQUIRE(d[0]["attempt_log"].size() == 4);
  CHECK(d[0]["attempt_log"][0]["status_code"] == 500);
  CHECK(d[0]["attempt_log"][2]["status_code"] == 302);
  CHECK(d[0]["attempt_log"][3]["status_code"] == 200);

  auto q = f.create({{"prompt", "y"}}, f.receiver.url("r"), json{"start"});
  auto dropped = f.deliveries_until(
      q["id"], [](const json& x) { return x.size() == 1 && state_of(x) == "dropped"; });
  CHECK(dropped[0]["attempts"] == 5);  // the quick schedule: 0, 1 s, 5 s, 15 s, 30 s
  CHECK(f.receiver.requests("r").size() == 5);
  CHECK(dropped[0]["last_error"] == "HTTP 500");

  SECTION("a redelivery sends it again with its webhook-id") {
    f.receiver.on("r", [](int) { return reply(200); });
    const std::string msg = dropped[0]["id"];
    auto r = f.api->http().post("/v1/predictions/" + q["id"].get<std::string>() + "/webhooks",
                                json{{"delivery", msg}}.dump(), f.api->auth());
    REQUIRE(r.status == 202);
    f.deliveries_until(q["id"], [](const json& x) { return state_of(x) == "delivered"; });
    CHECK(f.receiver.requests("r").back().header("webhook-id") == msg);
    auto bad = f.api->http().post("/v1/predictions/" + q["id"].get<std::string>() + "/webhooks",
                                  json{{"delivery", "msg_nope"}}.dump(), f.api->auth());
    CHECK(bad.status == 404);
    auto malformed = f.api->http().post(
        "/v1/predictions/" + q["id"].get<std::string>() + "/webhooks", "{", f.api->auth());
    CHECK(malformed.status == 400);
  }
}

TEST_CASE("410 disables the URL for the tenant, and Retry-After is honoured", "[e2e][webhook]") {
  webhook_fixture f({"--webhook-time-scale", "0.001"});
  f.receiver.on("gone", [](int) { return reply(410); });
  auto p = f.create({{"prompt", "1"}}, f.receiver.url("gone"), json{"completed"});
  f.deliveries_until(p["id"], [](const json& x) { return state_of(x) == "disabled"; });
  auto q = f.create({{"prompt", "2"}}, f.receiver.url("gone"), json{"completed"});
  auto d = f.deliveries_until(q["id"], [](const json& x) { return state_of(x) == "disabled"; });
  CHECK(f.receiver.requests("gone").size() == 1);  // the second one was not sent
  CHECK(d[0]["last_error"].get<std::string>().find("410") != std::string::npos);

  f.receiver.on("busy", [](int n) {
    return n == 1 ? reply(429, {{"Retry-After", "1"}}) : reply(200);
  });
  auto r = f.create({{"prompt", "3"}}, f.receiver.url("busy"), json{"completed"});
  auto got = f.receiver.wait_for("busy", [](const auto& g) { return g.size() >= 2; });
  REQUIRE(got.size() == 2);
  // The schedule alone would wait 5 ms (scaled); Retry-After asked for a second.
  CHECK(got[1].at - got[0].at >= 900ms);
  f.deliveries_until(r["id"], [](const json& x) { return state_of(x) == "delivered"; });
}

TEST_CASE("a slow endpoint does not hold up deliveries to others", "[e2e][webhook]") {
  webhook_fixture f({"--webhook-endpoint-concurrency", "2", "--webhook-timeout-ms", "20000"}, 16);
  test::webhook_receiver slow_host;  // another port: another endpoint
  slow_host.on("slow", [](int) { return reply(200, {}, 10s); });
  for (int i = 0; i < 6; ++i) f.create({{"prompt", i}}, slow_host.url("slow"), json{"completed"});
  slow_host.wait_for("slow", [](const auto& g) { return g.size() >= 2; });
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> fast;
  for (int i = 0; i < 6; ++i) {
    fast.push_back(f.create({{"prompt", i}}, f.receiver.url("fast"), json{"completed"})["id"]);
  }
  auto got = f.receiver.wait_for("fast", [](const auto& g) { return g.size() >= 6; });
  CHECK(got.size() == 6);
  // All of them while the slow endpoint still holds its two first requests (10 s each).
  CHECK(got.back().at - t0 < 8s);
  CHECK(slow_host.requests("slow").size() == 2);
}

TEST_CASE("the SSRF guard refuses private targets at create and at delivery", "[e2e][webhook]") {
  test::test_schema schema;
  test::temp_dir dir;
  std::map<std::string, std::string> env{{"DATABASE_URL", schema.url()}};
  const auto token = test::create_token(env, "tenant");
  test::fake_model model;
  // No allowlist here: loopback is refused like any private address.
  std::vector<std::string> args = {"--config",
                                   test::write_fake_model_config(dir.path(), model),
                                   "--create-rate-limit",
                                   "0",
                                   "--rate-limit",
                                   "0"};
  test::cogwheel_server server(env, args);
  test::prediction_client api(schema.conninfo(), token, server.port());
  for (const char* url :
       {"http://127.0.0.1/h", "http://10.1.2.3/h", "http://169.254.169.254/latest", "http://[::1]/",
        "http://[::ffff:10.0.0.1]/", "http://100.64.0.1/", "http://2130706433/",
        "http://0x7f000001/", "http://127.1/", "http://0177.0.0.1/", "http://0.0.0.0/",
        "http://[64:ff9b::a00:1]/", "http://[2002:a00:1::]/", "http://224.0.0.1/",
        "http://user:pw@example.com/"}) {
    json body = {{"version", test::echo_version}, {"input", json::object()}, {"webhook", url}};
    auto r = api.http().post("/v1/predictions", body.dump(), api.auth());
    INFO(url);
    INFO(r.body);
    CHECK(r.status == 422);
    CHECK(r.body.find("webhook") != std::string::npos);
  }
  {
    pqxx::connection c(schema.conninfo());
    pqxx::read_transaction tx(c);
    CHECK(tx.exec1("SELECT count(*) FROM predictions")[0].as<int>() == 0);
  }

  // A host name is resolved at delivery: localhost is loopback, refused and recorded.
  test::webhook_receiver receiver;
  const std::string hook = "http://localhost:" + std::to_string(receiver.port()) + "/hook/l";
  json body = {{"version", test::echo_version},
               {"input", {{"prompt", "x"}}},
               {"webhook", hook},
               {"webhook_events_filter", {"start"}}};
  auto r = api.http().post("/v1/predictions", body.dump(), api.auth());
  REQUIRE(r.status == 201);
  const std::string id = r.json()["id"];
  // The claim counts an attempt when it leases the delivery and records it when the attempt ends:
  // wait for the record itself.
  const auto until = std::chrono::steady_clock::now() + 60s;
  json d;
  do {
    std::this_thread::sleep_for(50ms);  // polling a condition, with a deadline
    d = api.http().get("/v1/predictions/" + id + "/webhooks", api.auth()).json()["results"];
  } while ((d.empty() || d[0]["attempt_log"].empty()) && std::chrono::steady_clock::now() < until);
  INFO(d.dump(2));
  REQUIRE(!d.empty());
  REQUIRE(!d[0]["attempt_log"].empty());
  CHECK(d[0]["attempt_log"][0]["error"].get<std::string>().find("loopback") != std::string::npos);
  CHECK(receiver.requests("l").empty());
}

TEST_CASE("kill -9 during deliveries: after a restart every event arrives with its webhook-id",
          "[e2e][webhook]") {
  // A short attempt limit: the dead process's leases (twice that) lapse soon.
  std::vector<std::string> extra = {"--webhook-timeout-ms", "1000", "--webhook-connect-timeout-ms",
                                    "500"};
  webhook_fixture f(extra);
  std::atomic<bool> answering{false};
  // Until the kill, the receiver takes requests and never answers in time.
  f.receiver.on("k", [&answering](int) { return answering ? reply(200) : reply(200, {}, 5s); });
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i) {
    ids.push_back(f.create({{"prompt", i}}, f.receiver.url("k"), json{"completed"})["id"]);
  }
  for (const auto& id : ids) f.api->wait_status(id, "succeeded");
  auto before = f.receiver.wait_for("k", [](const auto& g) { return !g.empty(); });
  REQUIRE(!before.empty());
  std::map<std::string, std::string> first_ids;  // prediction → webhook-id, as first sent
  for (const auto& r : before) first_ids.emplace(r.json()["id"], r.header("webhook-id"));
  const auto port = f.server->port();
  f.server->process().signal(SIGKILL);
  f.server->process().wait(10s);
  answering = true;
  f.start(extra, port);
  auto after = f.receiver.wait_for(
      "k",
      [&ids](const auto& g) {
        std::set<std::string> delivered;
        for (const auto& r : g) delivered.insert(r.json()["id"]);
        return delivered.size() == ids.size();
      },
      60s);
  std::map<std::string, std::set<std::string>> webhook_ids;
  for (const auto& r : after) webhook_ids[r.json()["id"]].insert(r.header("webhook-id"));
  REQUIRE(webhook_ids.size() == ids.size());
  for (const auto& [prediction, hooks] : webhook_ids) {
    CHECK(hooks.size() == 1);  // the same webhook-id on every attempt
    if (first_ids.contains(prediction)) CHECK(*hooks.begin() == first_ids.at(prediction));
  }
  for (const auto& id : ids) {
    f.deliveries_until(
        id, [](const json& x) { return state_of(x) == "delivered"; }, 30s);
  }
}

TEST_CASE("a rotated secret signs beside the new one", "[e2e][webhook]") {
  webhook_fixture f;
  const auto old_secret = f.secret();
  auto rotated = f.api->http().post("/v1/webhooks/default/secret/rotate", "", f.api->auth());
  REQUIRE(rotated.status == 200);
  const std::string new_secret = rotated.json()["key"];
  CHECK(new_secret != old_secret);
  CHECK(rotated.json().contains("previous_key_expires_at"));
  CHECK(f.secret() == new_secret);
  f.create({{"prompt", "r"}}, f.receiver.url("s"), json{"completed"});
  auto got = f.receiver.wait_for("s", has_status("succeeded"));
  REQUIRE(got.size() == 1);
  CHECK(test::count_of(got[0].header("webhook-signature"), "v1,") == 2);
  CHECK(verifies(got[0], old_secret));
  CHECK(verifies(got[0], new_secret));
  CHECK_FALSE(verifies(got[0], webhook::generate_secret()));
}

TEST_CASE("many fast predictions: each gets a start webhook, then its completed one",
          "[e2e][webhook]") {
  webhook_fixture f({}, 32);
  std::vector<std::string> ids;
  for (int i = 0; i < 60; ++i) {
    ids.push_back(f.create({{"prompt", i}}, f.receiver.url("m"), json{"start", "completed"})["id"]);
  }
  auto got = f.receiver.wait_for(
      "m", [&](const auto& g) { return g.size() >= 2 * ids.size(); }, 30s);
  for (const auto& id : ids) {
    auto mine = test::for_prediction(got, id);
    INFO(id);
    REQUIRE(mine.size() == 2);
    CHECK(mine[0].json()["status"] == "processing");
    CHECK(mine[1].json()["status"] == "succeeded");
  }
}
