// The Replicate-compatible API through real HTTP against the real binary and PostgreSQL.
#include <catch2/catch.hpp>
#include <pqxx/pqxx>
#include <thread>

#include "storage/embedded_postgres.hpp"
#include "tests/support/cogwheel.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/pg.hpp"

using namespace cogwheel;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

struct api_fixture {
  test::test_schema schema;
  test::temp_dir dir;
  std::map<std::string, std::string> env{{"DATABASE_URL", schema.url()}};
  std::string token_a = test::create_token(env, "tenant-a");
  std::string token_b = test::create_token(env, "tenant-b");
  test::cogwheel_server server{
      env, {"--config", test::write_echo_config(dir.path()), "--create-rate-limit", "0"}};
  test::http_client client{"127.0.0.1", server.port()};

  test::header_list auth(const std::string& token, test::header_list more = {}) {
    more.emplace_back("Authorization", "Bearer " + token);
    more.emplace_back("Content-Type", "application/json");
    return more;
  }
  test::http_result create(const json& body, test::header_list headers = {},
                           const std::string& path = "/v1/predictions") {
    return client.post(path, body.dump(), auth(token_a, std::move(headers)));
  }
  test::http_result raw_create(const std::string& body) {
    return client.post("/v1/predictions", body, auth(token_a));
  }
  long count(const std::string& table) {
    pqxx::connection c(schema.conninfo());
    return pqxx::read_transaction(c).exec1("SELECT count(*) FROM " + table)[0].as<long>();
  }
};

json echo_body(json input = json::object()) {
  return {{"version", test::echo_version}, {"input", std::move(input)}};
}

bool is_prediction_id(const std::string& s) {
  return s.size() == 26 &&
         s.find_first_not_of("0123456789abcdefghjkmnpqrstvwxyz") == std::string::npos;
}

// RFC 3339 UTC with microseconds: 2026-11-22T01:19:34.765994Z
bool is_micros_timestamp(const std::string& s) {
  const std::string shape = "dddd-dd-ddTdd:dd:dd.ddddddZ";
  if (s.size() != shape.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (shape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(s[i])) : s[i] != shape[i])
      return false;
  }
  return true;
}

bool has_field(const test::http_result& r, const std::string& field) {
  for (const auto& f : r.json().value("invalid_fields", json::array())) {
    if (f["field"] == field) return true;
  }
  return false;
}

}  // namespace

TEST_CASE_METHOD(api_fixture, "create returns 201, a Location and the full prediction object",
                 "[e2e][api]") {
  auto r = create(echo_body({{"prompt", "hello"}}));
  REQUIRE(r.status == 201);
  auto p = r.json();
  CHECK(is_prediction_id(p["id"].get<std::string>()));
  CHECK(p["status"] == "starting");
  CHECK(p["model"] == "acme/echo");
  CHECK(p["version"] == test::echo_version);
  CHECK(p["input"] == json{{"prompt", "hello"}});
  CHECK(p["output"].is_null());
  CHECK(p["logs"] == "");
  CHECK(p["error"].is_null());
  CHECK(p["source"] == "api");
  CHECK(p["data_removed"] == false);
  CHECK(is_micros_timestamp(p["created_at"].get<std::string>()));
  CHECK(p["started_at"].is_null());
  CHECK(p["completed_at"].is_null());
  const std::string get_url = server.base_url() + "/v1/predictions/" + p["id"].get<std::string>();
  CHECK(p["urls"]["get"] == get_url);
  CHECK(p["urls"]["cancel"] == get_url + "/cancel");
  CHECK(r.header("Location") == get_url);
  CHECK(count("predictions") == 1);

  auto got = client.get("/v1/predictions/" + p["id"].get<std::string>(), auth(token_a));
  CHECK(got.status == 200);
  CHECK(got.json() == p);
}

TEST_CASE_METHOD(api_fixture, "versions, models and deployments resolve as Replicate does",
                 "[e2e][api]") {
  CHECK(create({{"version", std::string("acme/echo")}, {"input", json::object()}})
            .json()["version"] == test::echo_version);
  CHECK(create({{"version", std::string("acme/echo:") + test::echo_old_version},
                {"input", json::object()}})
            .json()["version"] == test::echo_old_version);
  auto by_model = create({{"input", json::object()}}, {}, "/v1/models/acme/echo/predictions");
  CHECK(by_model.status == 201);
  CHECK(by_model.json()["version"] == test::echo_version);
  auto by_deployment =
      create({{"input", json::object()}}, {}, "/v1/deployments/acme/echo-prod/predictions");
  CHECK(by_deployment.status == 201);
  CHECK(by_deployment.json()["deployment"] == "acme/echo-prod");

  CHECK(create({{"input", json::object()}}, {}, "/v1/models/acme/nope/predictions").status == 404);
  CHECK(create({{"input", json::object()}}, {}, "/v1/deployments/acme/nope/predictions").status ==
        404);
  auto unknown = create({{"version", std::string(64, 'f')}, {"input", json::object()}});
  CHECK(unknown.status == 422);
  CHECK(has_field(unknown, "version"));
  CHECK(create({{"version", std::string("acme/other:") + test::echo_version},
                {"input", json::object()}})
            .status == 422);
  auto strict =
      create({{"input", json::object()}}, {}, "/v1/deployments/acme/echo-strict/predictions");
  CHECK(strict.status == 422);
  CHECK(strict.json()["code"] == "E4875");
}

TEST_CASE_METHOD(api_fixture, "bad input gets a clear 4xx and writes nothing", "[e2e][api]") {
  auto malformed = raw_create("{\"version\": ");
  CHECK(malformed.status == 400);
  CHECK(malformed.header("Content-Type") == "application/problem+json");

  auto not_object = create({{"version", test::echo_version}, {"input", "text"}});
  CHECK(not_object.status == 422);
  CHECK(has_field(not_object, "input"));

  auto unknown_field =
      create({{"version", test::echo_version}, {"input", json::object()}, {"colour", 1}});
  CHECK(unknown_field.status == 422);
  CHECK(has_field(unknown_field, "colour"));

  auto bad_version = create({{"version", "not a version"}, {"input", json::object()}});
  CHECK(bad_version.status == 422);
  CHECK(has_field(bad_version, "version"));

  for (const auto* url : {"ftp://example.com/x", "http://", "example.com/hook", "https:///path"}) {
    INFO(url);
    auto bad_hook =
        create({{"version", test::echo_version}, {"input", json::object()}, {"webhook", url}});
    CHECK(bad_hook.status == 422);
    CHECK(has_field(bad_hook, "webhook"));
  }

  auto bad_event = create({{"version", test::echo_version},
                           {"input", json::object()},
                           {"webhook", "https://example.com/h"},
                           {"webhook_events_filter", {"start", "finished"}}});
  CHECK(bad_event.status == 422);
  CHECK(has_field(bad_event, "webhook_events_filter"));

  auto no_hook = create({{"version", test::echo_version},
                         {"input", json::object()},
                         {"webhook_events_filter", {"completed"}}});
  CHECK(no_hook.status == 422);
  CHECK(no_hook.json()["code"] == "E4875");
  CHECK_THAT(no_hook.json()["detail"].get<std::string>(), Catch::StartsWith("E4875"));

  auto huge =
      client.post("/v1/predictions",
                  "{\"version\":\"" + std::string(test::echo_version) + "\",\"input\":{\"x\":\"" +
                      std::string(11 * 1024 * 1024, 'a') + "\"}}",
                  auth(token_a));
  CHECK(huge.status == 413);

  CHECK(create(echo_body(), {{"Prefer", "wait=600"}}).status == 400);
  CHECK(create(echo_body(), {{"Cancel-After", "soon"}}).status == 400);

  test::http_client fresh("127.0.0.1", server.port());
  CHECK(fresh.get("/v1/nothing-here", auth(token_a)).status == 404);
  auto wrong_method = fresh.request("DELETE", "/v1/predictions", {}, auth(token_a));
  CHECK(wrong_method.status == 405);
  CHECK(wrong_method.header("Allow") == "POST, GET");

  CHECK(count("predictions") == 0);
}

TEST_CASE_METHOD(api_fixture, "authentication and tenants", "[e2e][api]") {
  CHECK(client.post("/v1/predictions", echo_body().dump()).status == 401);
  CHECK(client.post("/v1/predictions", echo_body().dump(), {{"Authorization", "Bearer cw_nope"}})
            .status == 401);
  auto token_scheme =
      client.post("/v1/predictions", echo_body().dump(), {{"Authorization", "Token " + token_a}});
  REQUIRE(token_scheme.status == 201);
  const std::string id = token_scheme.json()["id"];
  CHECK(client.get("/v1/predictions/" + id, auth(token_b)).status == 404);
  CHECK(client.post("/v1/predictions/" + id + "/cancel", "", auth(token_b)).status == 404);
  CHECK(client.get("/v1/predictions/" + id, auth(token_a)).status == 200);

  auto secret_a = client.get("/v1/webhooks/default/secret", auth(token_a)).json()["key"];
  auto secret_b = client.get("/v1/webhooks/default/secret", auth(token_b)).json()["key"];
  CHECK_THAT(secret_a.get<std::string>(), Catch::StartsWith("whsec_"));
  CHECK(secret_a != secret_b);
}

TEST_CASE_METHOD(api_fixture, "cancel: a queued prediction becomes canceled with its event",
                 "[e2e][api]") {
  auto created = create({{"version", test::echo_version},
                         {"input", json::object()},
                         {"webhook", "https://example.com/hook?tenant=a"}});
  const std::string id = created.json()["id"];
  auto canceled = client.post("/v1/predictions/" + id + "/cancel", "", auth(token_a));
  CHECK(canceled.status == 200);
  CHECK(canceled.json()["status"] == "canceled");
  CHECK_FALSE(canceled.json()["completed_at"].is_null());
  auto again = client.post("/v1/predictions/" + id + "/cancel", "", auth(token_a));
  CHECK(again.json() == canceled.json());
  // The completed event was written with the change, carrying the prediction as GET shows it.
  pqxx::connection c(schema.conninfo());
  pqxx::read_transaction tx(c);
  auto rows = tx.exec("SELECT event, url, payload FROM webhook_deliveries");
  REQUIRE(rows.size() == 1);
  CHECK(rows[0][0].as<std::string>() == "completed");
  CHECK(rows[0][1].as<std::string>() == "https://example.com/hook?tenant=a");
  CHECK(json::parse(rows[0][2].as<std::string>()) == canceled.json());
  CHECK(
      client.post("/v1/predictions/00000000000000000000000000/cancel", "", auth(token_a)).status ==
      404);
}

TEST_CASE_METHOD(api_fixture, "list: newest first, 100 a page, cursors and date filters",
                 "[e2e][api]") {
  std::vector<std::string> ids;
  for (int i = 0; i < 105; ++i) ids.push_back(create(echo_body({{"i", i}})).json()["id"]);
  create(echo_body());  // someone else's prediction must not show up
  client.post("/v1/predictions", echo_body().dump(), auth(token_b));

  auto page1 = client.get("/v1/predictions", auth(token_a)).json();
  REQUIRE(page1["results"].size() == 100);
  CHECK(page1["previous"].is_null());
  REQUIRE(page1["next"].is_string());
  auto page1_first = page1["results"][0]["created_at"].get<std::string>();
  const std::string next = page1["next"];
  REQUIRE(next.starts_with(server.base_url() + "/v1/predictions?cursor="));
  auto page2 = client.get(next.substr(server.base_url().size()), auth(token_a)).json();
  CHECK(page2["results"].size() == 6);
  CHECK(page2["next"].is_null());
  REQUIRE(page2["previous"].is_string());
  CHECK(page2["results"].back()["id"] == ids.front());
  const std::string previous = page2["previous"];
  auto back = client.get(previous.substr(server.base_url().size()), auth(token_a)).json();
  CHECK(back["results"] == page1["results"]);

  auto created_after =
      client.get("/v1/predictions?created_after=" + page1_first, auth(token_a)).json();
  CHECK(created_after["results"].size() >= 1);
  auto before_all =
      client.get("/v1/predictions?created_before=2000-01-01T00:00:00Z", auth(token_a)).json();
  CHECK(before_all["results"].empty());
  CHECK(client.get("/v1/predictions?cursor=garbage", auth(token_a)).status == 400);
  CHECK(client.get("/v1/predictions?created_after=yesterday", auth(token_a)).status == 400);
}

TEST_CASE_METHOD(api_fixture, "Prefer: wait holds the create until the prediction changes",
                 "[e2e][api]") {
  SECTION("a wait that runs out answers 202 with the current state") {
    const auto start = std::chrono::steady_clock::now();
    auto r = create(echo_body(), {{"Prefer", "wait=1"}});
    CHECK(r.status == 202);
    CHECK(r.json()["status"] == "starting");
    CHECK(std::chrono::steady_clock::now() - start >= 900ms);
  }
  SECTION("a cancel from another connection wakes the waiting create") {
    // An idempotency key lets the other connection find the prediction the create is holding.
    std::thread waiter_thread;
    test::http_result held;
    test::http_client second("127.0.0.1", server.port());
    auto first = create(echo_body(), {{"Idempotency-Key", "k-wait"}});
    const std::string id = first.json()["id"];
    waiter_thread = std::thread([&] {
      test::http_client c("127.0.0.1", server.port());
      held = c.request("POST", "/v1/predictions", echo_body().dump(),
                       auth(token_a, {{"Prefer", "wait=30"}, {"Idempotency-Key", "k-wait"}}), 40s);
    });
    // Whether the cancel lands before or after the held create subscribed, it must come back
    // canceled well before its 30 s wait; after, only a working wake-up makes it.
    const auto start = std::chrono::steady_clock::now();
    auto r = second.post("/v1/predictions/" + id + "/cancel", "", auth(token_a));
    CHECK(r.status == 200);
    waiter_thread.join();
    CHECK(held.status == 201);
    CHECK(held.json()["id"] == id);
    CHECK(held.json()["status"] == "canceled");
    CHECK(std::chrono::steady_clock::now() - start < 20s);
  }
}

TEST_CASE_METHOD(api_fixture, "Cancel-After sets the deadline", "[e2e][api]") {
  auto r = create(echo_body(), {{"Cancel-After", "1m30s"}});
  REQUIRE(r.status == 201);
  auto p = r.json();
  REQUIRE(p["deadline"].is_string());
  pqxx::connection c(schema.conninfo());
  auto seconds = pqxx::read_transaction(c)
                     .exec_params1(
                         "SELECT extract(epoch FROM deadline - created_at) FROM predictions "
                         "WHERE id = $1",
                         p["id"].get<std::string>())[0]
                     .as<double>();
  CHECK(seconds == Approx(90).margin(5));
}

TEST_CASE_METHOD(api_fixture,
                 "Idempotency-Key returns the first prediction or refuses another body",
                 "[e2e][api]") {
  auto first = create(echo_body({{"n", 1}}), {{"Idempotency-Key", "abc"}});
  auto second = create(echo_body({{"n", 1}}), {{"Idempotency-Key", "abc"}});
  CHECK(first.status == 201);
  CHECK(second.status == 201);
  CHECK(second.json()["id"] == first.json()["id"]);
  CHECK(second.header("Idempotent-Replayed") == "true");
  auto different = create(echo_body({{"n", 2}}), {{"Idempotency-Key", "abc"}});
  CHECK(different.status == 422);
  CHECK(count("predictions") == 1);
  // The same key belongs to each tenant separately.
  CHECK(client
            .post("/v1/predictions", echo_body({{"n", 2}}).dump(),
                  auth(token_b, {{"Idempotency-Key", "abc"}}))
            .status == 201);
  // A key that is not printable ASCII is refused before anything is written. Bytes that are not
  // UTF-8 used to fail the JSON of the whole batch: a 500 for every create in it.
  for (const std::string& bad : {std::string("k\xffk"), std::string("caf\xc3\xa9"),
                                 std::string("a\tb"), std::string(256, 'k')}) {
    auto refused = create(echo_body({{"n", 3}}), {{"Idempotency-Key", bad}});
    CHECK(refused.status == 400);
    CHECK(has_field(refused, "Idempotency-Key"));
  }
  CHECK(count("predictions") == 2);
}

TEST_CASE("per-token rate limits answer 429 with Retry-After", "[e2e][api]") {
  test::test_schema schema;
  test::temp_dir dir;
  std::map<std::string, std::string> env{{"DATABASE_URL", schema.url()}};
  const auto token = test::create_token(env, "limited");
  test::cogwheel_server server(
      env, {"--config", test::write_echo_config(dir.path()), "--create-rate-limit", "10"});
  test::http_client client("127.0.0.1", server.port());
  int refused = 0;
  test::http_result last;
  for (int i = 0; i < 5 && refused == 0; ++i) {
    last =
        client.post("/v1/predictions", echo_body().dump(), {{"Authorization", "Bearer " + token}});
    refused += last.status == 429;
  }
  REQUIRE(refused == 1);
  CHECK(last.header("Content-Type") == "application/problem+json");
  CHECK(std::stoi(last.header("Retry-After")) >= 1);
  // Reads have their own budget.
  CHECK(client.get("/v1/predictions", {{"Authorization", "Bearer " + token}}).status == 200);
}

TEST_CASE("database unreachable: 503 with Retry-After, then the service resumes by itself",
          "[e2e][api][embedded]") {
  test::temp_dir dir;
  storage::embedded_options eo;
  eo.data_dir = dir.path() + "/data";
  auto pg = std::make_unique<storage::embedded_postgres>(eo);
  const std::map<std::string, std::string> env{{"DATABASE_URL", pg->conninfo()}};
  const auto token = test::create_token(env, "outage");
  test::cogwheel_server server(env, {"--config", test::write_echo_config(dir.path())});
  test::http_client client("127.0.0.1", server.port());
  const test::header_list auth{{"Authorization", "Bearer " + token}};
  auto created = client.post("/v1/predictions", echo_body().dump(), auth);
  REQUIRE(created.status == 201);
  const std::string path = "/v1/predictions/" + created.json()["id"].get<std::string>();

  pg.reset();  // the server goes away
  auto down = client.get(path, auth);
  CHECK(down.status == 503);
  CHECK(down.header("Retry-After") == "1");
  CHECK(down.header("Content-Type") == "application/problem+json");
  CHECK(client.get("/ready").status == 503);

  pg = std::make_unique<storage::embedded_postgres>(eo);  // and comes back
  CHECK(client.get(path, auth).status == 200);
  CHECK(client.get("/ready").status == 200);
  CHECK(client.post("/v1/predictions", echo_body().dump(), auth).status == 201);
}
