// Dispatch to Cog containers end to end: the real cogwheel binary, real PostgreSQL, and the fake
// Cog container (tests/fake_cog) in the process and static runtimes, over loopback HTTP.
#include <catch2/catch.hpp>
#include <fstream>
#include <pqxx/pqxx>
#include <thread>

#include "tests/support/cogwheel.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/pg.hpp"
#include "tests/support/predictions.hpp"

using namespace cogwheel;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

constexpr const char* container_token = "test-container-token-0123456789";

struct dispatch_fixture {
  test::test_schema schema;
  test::temp_dir dir;
  std::map<std::string, std::string> env{{"DATABASE_URL", schema.url()}};
  std::string token = test::create_token(env, "tenant");
  test::cogwheel_server server;
  test::http_client client{"127.0.0.1", server.port()};

  explicit dispatch_fixture(const test::fake_model& model, std::vector<std::string> extra = {})
      : server(env, args(model, std::move(extra))) {}

  std::vector<std::string> args(const test::fake_model& model, std::vector<std::string> extra) {
    std::vector<std::string> a = {"--config",
                                  test::write_fake_model_config(dir.path(), model),
                                  "--create-rate-limit",
                                  "0",
                                  "--rate-limit",
                                  "0",
                                  "--container-token",
                                  container_token,
                                  "--health-interval-ms",
                                  "100"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  test::prediction_client api{schema.conninfo(), token, server.port(), [this] { return log(); }};

  test::header_list auth(test::header_list more = {}) const { return api.auth(std::move(more)); }
  json create(const json& input, test::header_list headers = {}) {
    return api.create(input, std::move(headers));
  }
  json get(const std::string& id) { return api.get(id); }
  json wait_for(const std::string& id, const std::function<bool(const json&)>& done,
                std::chrono::milliseconds timeout = 20s) {
    return api.wait_for(id, done, timeout);
  }
  json wait_status(const std::string& id, const std::string& status) {
    return api.wait_status(id, status);
  }
  pqxx::row stored(const std::string& id, const std::string& columns) {
    return api.stored(id, columns);
  }
  test::http_result update(const json& body, const std::string& bearer = container_token) {
    test::header_list h;
    if (!bearer.empty()) h.emplace_back("Authorization", "Bearer " + bearer);
    return client.post("/internal/cog/webhook", body.dump(), h);
  }
  std::string log() { return server.process().output(); }
};

// The path and query of an absolute URL on the server.
std::string target_of(const std::string& url, const std::string& base) {
  REQUIRE(url.starts_with(base));
  return url.substr(base.size());
}

}  // namespace

TEST_CASE("a prediction runs in a process container and succeeds", "[e2e][dispatch]") {
  dispatch_fixture f({});
  auto p = f.create({{"prompt", "hello"}}, {{"Prefer", "wait=30"}});
  INFO(p.dump());
  CHECK(p["status"] == "succeeded");
  CHECK(p["output"] == "hello");
  CHECK(p["error"].is_null());
  CHECK(p["started_at"].is_string());
  CHECK(p["completed_at"].is_string());
  CHECK(p["started_at"].get<std::string>() <= p["completed_at"].get<std::string>());
  CHECK(p["metrics"]["predict_time"].is_number());
  CHECK(p["metrics"]["total_time"].is_number());
  CHECK(p["metrics"]["total_time"].get<double>() >= p["metrics"]["predict_time"].get<double>());

  auto row = f.stored(p["id"], "container_id, attempt, dispatched_at IS NOT NULL, lease_owner");
  CHECK(row[0].as<std::string>().starts_with("http://127.0.0.1:"));
  CHECK(row[1].as<int>() == 1);
  CHECK(row[2].as<bool>());
  CHECK(row[3].is_null());  // a finished prediction holds no lease
}

TEST_CASE("generator outputs and logs arrive while running and all are kept", "[e2e][dispatch]") {
  test::fake_model m;
  m.env = {{"FAKE_COG_THROTTLE_MS", "50"}};
  dispatch_fixture f(m);
  auto p = f.create({{"outputs", 4}, {"logs", 4}, {"interval_ms", 250}});
  const std::string id = p["id"];
  // While it runs, a part of the output is visible.
  auto partial = f.wait_for(id, [](const json& q) {
    return q["status"] == "processing" && q["output"].is_array() && !q["output"].empty() &&
           q["output"].size() < 4;
  });
  CHECK(partial["output"][0] == "out-0");
  CHECK(partial["logs"].get<std::string>().starts_with("log line 0\n"));
  auto done = f.wait_for(id, test::is_terminal);
  CHECK(done["status"] == "succeeded");
  CHECK(done["output"] == json::array({"out-0", "out-1", "out-2", "out-3"}));
  CHECK(done["logs"] == "log line 0\nlog line 1\nlog line 2\nlog line 3\n");
}

TEST_CASE("model failures carry their code and the model's text", "[e2e][dispatch]") {
  dispatch_fixture f({});

  SECTION("a failure of the model is E1000 with its message") {
    auto p = f.create({{"fail", "boom"}}, {{"Prefer", "wait=30"}});
    CHECK(p["status"] == "failed");
    CHECK(p["error"] == "E1000: boom");
    CHECK(p["error_code"] == "E1000");
    CHECK(p["started_at"].is_string());
  }

  SECTION("input the container refuses is E9243 with its detail, never started") {
    auto p = f.create({{"sleep_ms", "soon"}}, {{"Prefer", "wait=30"}});
    INFO(p.dump());
    CHECK(p["status"] == "failed");
    CHECK(p["error_code"] == "E9243");
    const std::string error = p["error"];
    CHECK(error.starts_with("E9243: "));
    CHECK(error.find("sleep_ms") != std::string::npos);
    CHECK(error.find("422") != std::string::npos);
    CHECK(p["started_at"].is_null());
  }
}

TEST_CASE("exit 137 is E1001 and the process runtime restarts the container", "[e2e][dispatch]") {
  dispatch_fixture f({});
  auto p = f.create({{"exit_137", true}}, {{"Prefer", "wait=30"}});
  INFO(p.dump());
  CHECK(p["status"] == "failed");
  CHECK(p["error_code"] == "E1001");
  CHECK(p["error"].get<std::string>().find("out of memory") != std::string::npos);
  const auto first = f.stored(p["id"], "container_id")[0].as<std::string>();

  // The container died; cogwheel starts a new one and the next prediction runs there.
  auto next = f.create({{"prompt", "again"}});
  auto done = f.wait_for(next["id"], test::is_terminal);
  CHECK(done["status"] == "succeeded");
  CHECK(done["output"] == "again");
  const auto second = f.stored(next["id"], "container_id")[0].as<std::string>();
  CHECK(second != first);
  CHECK(f.log().find("exited with code 137") != std::string::npos);
}

TEST_CASE("cancel reaches the container of a running prediction", "[e2e][dispatch]") {
  dispatch_fixture f({});
  auto p = f.create({{"hang", true}});
  const std::string id = p["id"];
  f.wait_status(id, "processing");
  auto r = f.client.post("/v1/predictions/" + id + "/cancel", "", f.auth());
  REQUIRE(r.status == 200);
  auto done = f.wait_for(id, test::is_terminal);
  CHECK(done["status"] == "canceled");
  CHECK(done["error"].is_null());
  CHECK(done["completed_at"].is_string());
  // The one container is free again: the next prediction runs.
  auto next = f.create({{"prompt", "after"}}, {{"Prefer", "wait=30"}});
  CHECK(next["status"] == "succeeded");
}

TEST_CASE("no ready container: predictions wait in the queue and cancel directly",
          "[e2e][dispatch]") {
  test::fake_model m;
  m.runtime = "static";
  m.urls = {"http://127.0.0.1:" + std::to_string(test::free_port())};  // nothing listens
  dispatch_fixture f(m);
  auto p = f.create({{"prompt", "x"}});
  const std::string id = p["id"];
  // The health checks fail: the prediction is never dispatched.
  REQUIRE(f.server.process().wait_for_output("unreachable", 10s));
  auto row = f.stored(id, "status, dispatched_at IS NULL");
  CHECK(row[0].as<std::string>() == "starting");
  CHECK(row[1].as<bool>());
  auto r = f.client.post("/v1/predictions/" + id + "/cancel", "", f.auth());
  REQUIRE(r.status == 200);
  CHECK(r.json()["status"] == "canceled");
  CHECK(r.json()["started_at"].is_null());
}

TEST_CASE("a container that answers 409 gets the prediction back in the queue", "[e2e][dispatch]") {
  // One real slot, but the config claims two: the second PUT meets 409 (busy).
  const auto port = test::free_port();
  test::child_process cog({COGWHEEL_FAKE_COG_BINARY, "--port", std::to_string(port)},
                          {{"WEBHOOK_AUTH_TOKEN", container_token}});
  REQUIRE(cog.wait_for_output("fake_cog listening on", 10s));
  test::fake_model m;
  m.runtime = "static";
  m.slots = 2;
  m.urls = {"http://127.0.0.1:" + std::to_string(port)};
  dispatch_fixture f(m);
  REQUIRE(f.server.process().wait_for_output("-> READY", 10s));

  auto a = f.create({{"sleep_ms", 300}, {"prompt", "a"}});
  auto b = f.create({{"sleep_ms", 300}, {"prompt", "b"}});
  auto da = f.wait_for(a["id"], test::is_terminal);
  auto db = f.wait_for(b["id"], test::is_terminal);
  CHECK(da["status"] == "succeeded");
  CHECK(db["status"] == "succeeded");
  CHECK(da["output"] == "a");
  CHECK(db["output"] == "b");
  const int attempts =
      f.stored(a["id"], "attempt")[0].as<int>() + f.stored(b["id"], "attempt")[0].as<int>();
  CHECK(attempts >= 3);  // one of them was sent twice
  CHECK(f.log().find("answered HTTP 409") != std::string::npos);
}

TEST_CASE("container updates are forward-only, and bad ones are refused", "[e2e][dispatch]") {
  test::fake_model m;
  m.slots = 2;
  m.env = {{"FAKE_COG_CONCURRENCY", "2"}};
  dispatch_fixture f(m);
  const std::string id = f.create({{"hang", true}})["id"];
  const std::string marker = f.create({{"hang", true}})["id"];
  f.wait_status(id, "processing");
  f.wait_status(marker, "processing");
  int marks = 0;
  // Updates are applied in arrival order: once a later marker update shows, earlier ones were.
  auto settle = [&] {
    const std::string logs = "mark " + std::to_string(++marks) + "\n";
    REQUIRE(f.update({{"id", marker}, {"status", "processing"}, {"logs", logs}}).status == 200);
    f.wait_for(marker, [&](const json& q) { return q["logs"] == logs; });
  };

  SECTION("unauthenticated or malformed updates change nothing") {
    const json good = {{"id", id}, {"status", "succeeded"}, {"output", "forged"}};
    CHECK(f.update(good, "").status == 401);
    CHECK(f.update(good, "wrong-token-wrong-token-wrong").status == 401);
    CHECK(f.client
              .post("/internal/cog/webhook", "{not json",
                    {{"Authorization", std::string("Bearer ") + container_token}})
              .status == 400);
    CHECK(f.update({{"id", id}, {"status", "exploded"}}).status == 422);
    CHECK(f.update({{"status", "succeeded"}}).status == 422);
    CHECK(f.update({{"id", id}, {"status", "processing"}, {"logs", 5}}).status == 422);
    settle();
    auto p = f.get(id);
    CHECK(p["status"] == "processing");
    CHECK(p["output"].is_null());
  }

  SECTION("late and duplicate updates never move a prediction back") {
    const json two = {
        {"id", id}, {"status", "processing"}, {"output", {"a", "b"}}, {"logs", "1\n2\n"}};
    REQUIRE(f.update(two).status == 200);
    REQUIRE(f.update(two).status == 200);  // duplicate
    // An older update arriving late: shorter output and logs, and no output at all.
    REQUIRE(f.update({{"id", id}, {"status", "processing"}, {"output", {"a"}}, {"logs", "1\n"}})
                .status == 200);
    REQUIRE(f.update({{"id", id}, {"status", "starting"}, {"output", nullptr}}).status == 200);
    settle();
    auto p = f.get(id);
    CHECK(p["status"] == "processing");
    CHECK(p["output"] == json::array({"a", "b"}));
    CHECK(p["logs"] == "1\n2\n");

    REQUIRE(f.update({{"id", id},
                      {"status", "succeeded"},
                      {"output", {"a", "b", "c"}},
                      {"logs", "1\n2\n3\n"},
                      {"metrics", {{"predict_time", 1.5}}}})
                .status == 200);
    auto done = f.wait_status(id, "succeeded");
    // A terminal state is final: late updates of any kind change nothing.
    REQUIRE(f.update(two).status == 200);
    REQUIRE(f.update({{"id", id}, {"status", "failed"}, {"error", "late"}}).status == 200);
    REQUIRE(f.update({{"id", id}, {"status", "succeeded"}, {"output", "other"}}).status == 200);
    settle();
    auto after = f.get(id);
    CHECK(after["status"] == "succeeded");
    CHECK(after["output"] == json::array({"a", "b", "c"}));
    CHECK(after["logs"] == "1\n2\n3\n");
    CHECK(after["completed_at"] == done["completed_at"]);
    CHECK(after["metrics"]["predict_time"] == 1.5);
  }

  SECTION("updates for unknown predictions are ignored and logged once") {
    const json unknown = {{"id", "0000000000000000000000000z"}, {"status", "succeeded"}};
    CHECK(f.update(unknown).status == 200);
    CHECK(f.update(unknown).status == 200);
    settle();
    CHECK(test::count_of(f.log(), "unknown prediction 0000000000000000000000000z") == 1);
  }
}

TEST_CASE("uploaded output files become signed URLs that expire", "[e2e][dispatch]") {
  dispatch_fixture f({}, {"--file-url-ttl", "2"});
  auto p =
      f.create({{"upload", "greeting.txt"}, {"content", "hello file"}}, {{"Prefer", "wait=30"}});
  INFO(p.dump());
  REQUIRE(p["status"] == "succeeded");
  const std::string url = p["output"];
  const std::string target = target_of(url, f.server.base_url());
  CHECK(target.starts_with("/files/" + p["id"].get<std::string>() + "/"));
  CHECK(target.find("greeting.txt") != std::string::npos);

  auto file = f.client.get(target);
  CHECK(file.status == 200);
  CHECK(file.body == "hello file");
  // A changed signature or expiry is refused. The URL is /files/<id>/<expires>/<signature>/<name>.
  const auto sig_end = target.rfind('/');
  std::string forged = target;
  forged[sig_end - 1] = forged[sig_end - 1] == '0' ? '1' : '0';
  CHECK(f.client.get(forged).status == 404);
  const auto expires_at = target.find('/', 7 + 26) + 1;
  std::string later = target;
  later[expires_at] = later[expires_at] == '9' ? '8' : '9';
  CHECK(f.client.get(later).status == 404);
  // Once the URL expires: 410 Gone.
  const auto until = std::chrono::steady_clock::now() + 10s;
  int status = 0;
  while (std::chrono::steady_clock::now() < until &&
         (status = f.client.get(target).status) == 200) {
    std::this_thread::sleep_for(100ms);
  }
  CHECK(status == 410);
}

TEST_CASE("a file that cannot be stored fails the prediction with E9825", "[e2e][dispatch]") {
  test::temp_dir scratch;
  const std::string not_a_dir = scratch.path() + "/plain-file";
  std::ofstream(not_a_dir) << "x";
  dispatch_fixture f({}, {"--files-dir", not_a_dir});
  auto p = f.create({{"upload", "out.bin"}, {"content", "bytes"}});
  auto done = f.wait_for(p["id"], test::is_terminal);
  INFO(done.dump());
  CHECK(done["status"] == "failed");
  CHECK(done["error_code"] == "E9825");
  CHECK(done["error"].get<std::string>().starts_with("E9825: "));
}

TEST_CASE("urls.stream serves Server-Sent Events and resumes from Last-Event-ID",
          "[e2e][dispatch]") {
  test::fake_model m;
  m.env = {{"FAKE_COG_THROTTLE_MS", "20"}};
  dispatch_fixture f(m);
  auto p = f.create({{"outputs", 3}, {"interval_ms", 150}});
  const std::string id = p["id"];
  const std::string stream = target_of(p["urls"]["stream"], f.server.base_url());
  CHECK(stream == "/v1/predictions/" + id + "/stream");

  auto r = f.client.request("GET", stream, {}, {{"Accept", "text/event-stream"}}, 30s);
  REQUIRE(r.status == 200);
  CHECK(r.header("Content-Type").starts_with("text/event-stream"));
  INFO(r.body);
  // Every output item once, in order, then done.
  const auto o0 = r.body.find("event: output\ndata: out-0\n");
  const auto o1 = r.body.find("event: output\ndata: out-1\n");
  const auto o2 = r.body.find("event: output\ndata: out-2\n");
  const auto done = r.body.find("event: done\ndata: {}\n");
  REQUIRE(o0 != std::string::npos);
  REQUIRE(o1 != std::string::npos);
  REQUIRE(o2 != std::string::npos);
  REQUIRE(done != std::string::npos);
  CHECK(o0 < o1);
  CHECK(o1 < o2);
  CHECK(o2 < done);
  CHECK(test::count_of(r.body, "event: output\n") == 3);

  // Resume after the second event: only what follows it.
  const auto second_id_at = r.body.rfind("id: ", o1);
  const auto eol = r.body.find('\n', second_id_at);
  const std::string second_id = r.body.substr(second_id_at + 4, eol - second_id_at - 4);
  CHECK(second_id.find(':') != std::string::npos);
  auto resumed = f.client.request("GET", stream, {}, {{"Last-Event-ID", second_id}}, 30s);
  REQUIRE(resumed.status == 200);
  INFO(resumed.body);
  CHECK(resumed.body.find("data: out-0\n") == std::string::npos);
  CHECK(resumed.body.find("data: out-1\n") == std::string::npos);
  CHECK(resumed.body.find("data: out-2\n") != std::string::npos);
  CHECK(resumed.body.find("event: done\n") != std::string::npos);

  CHECK(f.client.get("/v1/predictions/0000000000000000000000000z/stream").status == 404);
}
