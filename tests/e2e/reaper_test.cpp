// Timeouts, leases, crash recovery, several processes and retention, end to end: real cogwheel
// processes (killed with SIGKILL where the test says so), real PostgreSQL, fake Cog containers.
#include <signal.h>

#include <catch2/catch.hpp>
#include <memory>
#include <pqxx/pqxx>
#include <set>
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

// Quick maintenance for tests: a round every 100 ms, leases of a second.
std::vector<std::string> fast_args(const std::string& config, std::vector<std::string> more = {}) {
  std::vector<std::string> a = {"--config",
                                config,
                                "--create-rate-limit",
                                "0",
                                "--rate-limit",
                                "0",
                                "--container-token",
                                container_token,
                                "--health-interval-ms",
                                "100",
                                "--reaper-interval-ms",
                                "100",
                                "--leader-lease-ms",
                                "1000",
                                "--lease-ms",
                                "1000"};
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

// A fake Cog container the test runs itself (it outlives a cogwheel that is killed).
struct static_container {
  unsigned short port = test::free_port();
  test::child_process proc;
  explicit static_container(int concurrency = 1)
      : proc({COGWHEEL_FAKE_COG_BINARY, "--port", std::to_string(port), "--concurrency",
              std::to_string(concurrency), "--retry-backoff-ms", "50"},
             {{"WEBHOOK_AUTH_TOKEN", container_token}}) {
    if (!proc.wait_for_output("fake_cog listening on", 10s)) FAIL(proc.output());
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

struct reaper_fixture {
  test::test_schema schema;
  test::temp_dir dir;
  std::map<std::string, std::string> env{{"DATABASE_URL", schema.url()}};
  std::string token = test::create_token(env, "tenant");
  std::string config;

  explicit reaper_fixture(const test::fake_model& model)
      : config(test::write_fake_model_config(dir.path(), model)) {}

  std::unique_ptr<test::cogwheel_server> serve(std::vector<std::string> more = {},
                                               unsigned short port = 0) {
    return std::make_unique<test::cogwheel_server>(env, fast_args(config, std::move(more)), port);
  }
  test::prediction_client client(test::cogwheel_server& s) {
    return {schema.conninfo(), token, s.port(), [&s] { return s.process().output(); }};
  }
  long count(const std::string& where) {
    pqxx::connection c(schema.conninfo());
    return pqxx::read_transaction(c)
        .exec1("SELECT count(*) FROM predictions WHERE " + where)[0]
        .as<long>();
  }
};

test::fake_model unreachable_model(std::string start_timeout = "") {
  test::fake_model m;
  m.runtime = "static";
  m.urls = {"http://127.0.0.1:" + std::to_string(test::free_port())};  // nothing listens
  m.start_timeout = std::move(start_timeout);
  return m;
}

}  // namespace

TEST_CASE("start timeout: a prediction no container starts fails with E6716", "[e2e][reaper]") {
  reaper_fixture f(unreachable_model("1s"));
  auto server = f.serve();
  auto api = f.client(*server);
  const std::string id = api.create({{"prompt", "x"}})["id"];
  auto p = api.wait_terminal(id, 15s);
  CHECK(p["status"] == "failed");
  CHECK(p["error_code"] == "E6716");
  CHECK(p["error"] == "E6716: Timeout starting prediction: no container became ready within 1 s");
  CHECK(p["started_at"].is_null());
}

TEST_CASE(
    "run timeout: a prediction that runs too long fails with E8367 and its container is "
    "freed",
    "[e2e][reaper]") {
  test::fake_model m;
  m.run_timeout = "1s";
  reaper_fixture f(m);
  auto server = f.serve();
  auto api = f.client(*server);
  const std::string id = api.create({{"hang", true}})["id"];
  auto p = api.wait_terminal(id, 15s);
  CHECK(p["status"] == "failed");
  CHECK(p["error_code"] == "E8367");
  CHECK(p["error"] ==
        "E8367: Prediction stopped in non-terminal state: it ran longer than its run timeout of 1 "
        "s");
  CHECK(p["started_at"].is_string());
  // The one container was told to cancel: it takes the next prediction.
  auto next = api.create({{"prompt", "next"}}, {{"Prefer", "wait=30"}});
  CHECK(next["status"] == "succeeded");
  CHECK(server->process().output().find("cancel requested") != std::string::npos);
}

TEST_CASE("Cancel-After: aborted before the start, canceled while running", "[e2e][reaper]") {
  SECTION("before the start") {
    reaper_fixture f(unreachable_model());
    auto server = f.serve();
    auto api = f.client(*server);
    auto created = api.create({{"prompt", "x"}}, {{"Cancel-After", "5s"}});
    CHECK(created["deadline"].is_string());
    auto p = api.wait_terminal(created["id"], 20s);
    CHECK(p["status"] == "aborted");
    CHECK(p["error"].is_null());
    CHECK(p["started_at"].is_null());
    CHECK(p["completed_at"].is_string());
  }
  SECTION("while running") {
    reaper_fixture f(test::fake_model{});
    auto server = f.serve();
    auto api = f.client(*server);
    const std::string id = api.create({{"hang", true}}, {{"Cancel-After", "5s"}})["id"];
    api.wait_status(id, "processing");
    auto p = api.wait_terminal(id, 20s);
    INFO(p.dump());
    CHECK(p["status"] == "canceled");
    CHECK(p["started_at"].is_string());
    auto next = api.create({{"prompt", "next"}}, {{"Prefer", "wait=30"}});
    CHECK(next["status"] == "succeeded");
  }
}

TEST_CASE("a container that fails its health check before starting a prediction", "[e2e][reaper]") {
  SECTION("with no other container: E8765") {
    static_container c;
    test::fake_model m;
    m.runtime = "static";
    m.urls = {c.url()};
    reaper_fixture f(m);
    auto server = f.serve();
    auto api = f.client(*server);
    REQUIRE(server->process().wait_for_output("-> READY", 10s));
    const std::string id = api.create({{"start_delay_ms", 60'000}})["id"];
    REQUIRE(c.proc.wait_for_output("prediction " + id + " started", 10s));
    c.proc.signal(SIGKILL);
    auto p = api.wait_terminal(id, 15s);
    CHECK(p["status"] == "failed");
    CHECK(p["error_code"] == "E8765");
    CHECK(p["error"].get<std::string>().starts_with("E8765: Model health check failed: "));
    CHECK(p["started_at"].is_null());
  }
  SECTION("with another container: back in the queue, sent there") {
    static_container a, b;
    test::fake_model m;
    m.runtime = "static";
    m.urls = {a.url(), b.url()};
    reaper_fixture f(m);
    auto server = f.serve();
    auto api = f.client(*server);
    REQUIRE(server->process().wait_for_output("-> READY", 10s));
    const std::string id = api.create({{"start_delay_ms", 200}})["id"];
    // Wait until one of them has it, then kill that one.
    const std::string first = [&] {
      for (int i = 0; i < 1000; ++i) {
        auto row = api.stored(id, "coalesce(container_id, '')");
        if (!row[0].as<std::string>().empty()) return row[0].as<std::string>();
        std::this_thread::sleep_for(10ms);
      }
      return std::string();
    }();
    REQUIRE(!first.empty());
    (first == a.url() ? a : b).proc.signal(SIGKILL);
    auto p = api.wait_terminal(id, 20s);
    INFO(server->process().output());
    CHECK(p["status"] == "succeeded");
    auto row = api.stored(id, "container_id, attempt");
    CHECK(row[0].as<std::string>() != first);
    CHECK(row[1].as<int>() >= 2);
  }
}

TEST_CASE("kill -9 with predictions in every phase, then a restart: none lost, none run twice",
          "[e2e][reaper]") {
  // Static containers outlive cogwheel; they keep running what they have and retry their
  // terminal webhooks until the restarted cogwheel answers on the same address.
  static_container a(4), b(4);
  test::fake_model m;
  m.runtime = "static";
  m.slots = 4;
  m.urls = {a.url(), b.url()};
  reaper_fixture f(m);
  auto first = f.serve();
  const auto port = first->port();
  std::vector<std::string> ids;
  {
    auto api = f.client(*first);
    REQUIRE(first->process().wait_for_output("-> READY", 10s));
    // Done before the kill; running across it; dispatched but not started across it; queued.
    ids.push_back(api.create({{"prompt", "done"}}, {{"Prefer", "wait=30"}})["id"]);
    for (int i = 0; i < 4; ++i) ids.push_back(api.create({{"sleep_ms", 1'500}})["id"]);
    // (Long enough to be still starting when the restarted process asks their container.)
    for (int i = 0; i < 3; ++i) ids.push_back(api.create({{"start_delay_ms", 4'000}})["id"]);
    for (int i = 0; i < 12; ++i) ids.push_back(api.create({{"sleep_ms", 50}})["id"]);
    // Wait until the containers hold their eight.
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (f.count("status = 'processing' OR (status = 'starting' AND dispatched_at IS NOT NULL)") <
               8 &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(10ms);
    }
    REQUIRE(f.count("status = 'processing'") >= 4);
  }
  first->process().signal(SIGKILL);
  REQUIRE(first->process().wait(10s).has_value());

  auto second = f.serve({}, port);
  auto api = f.client(*second);
  for (const auto& id : ids) {
    auto p = api.wait_terminal(id, 60s);
    INFO(id << " " << p.dump() << "\n" << second->process().output());
    CHECK(p["status"] == "succeeded");
  }
  // Every prediction ran exactly once in the containers.
  const std::string logs = a.proc.output() + b.proc.output();
  for (const auto& id : ids) {
    INFO(id);
    CHECK(test::count_of(logs, "prediction " + id + " started") == 1);
  }
}

TEST_CASE("two serve processes on one database share the work and dispatch each prediction once",
          "[e2e][reaper]") {
  test::fake_model m;
  m.instances = 2;
  m.slots = 4;
  m.env = {{"FAKE_COG_CONCURRENCY", "4"}};
  reaper_fixture f(m);
  auto one = f.serve();
  auto two = f.serve();
  auto api1 = f.client(*one);
  auto api2 = f.client(*two);
  std::vector<std::string> ids;
  for (int i = 0; i < 100; ++i) {
    auto& api = i % 2 ? api1 : api2;
    ids.push_back(api.create({{"sleep_ms", 10}, {"prompt", std::to_string(i)}})["id"]);
  }
  for (const auto& id : ids) CHECK(api1.wait_terminal(id, 60s)["status"] == "succeeded");
  CHECK(f.count("attempt <> 1") == 0);
  const std::string logs = one->process().output() + two->process().output();
  for (const auto& id : ids) {
    INFO(id);
    CHECK(test::count_of(logs, "prediction " + id + " started") == 1);
  }
  // Both took work: the containers of each ran some.
  CHECK(test::count_of(one->process().output(), " started: input") > 0);
  CHECK(test::count_of(two->process().output(), " started: input") > 0);
  CHECK(f.count("lease_owner IS NOT NULL") == 0);  // finished work holds no lease
  // Exactly one of them is the maintenance leader.
  const bool one_leads = one->process().output().find("maintenance leader") != std::string::npos;
  const bool two_leads = two->process().output().find("maintenance leader") != std::string::npos;
  CHECK(one_leads != two_leads);
}

TEST_CASE("leader failover: when the maintenance leader dies another process takes over",
          "[e2e][reaper]") {
  reaper_fixture f(unreachable_model("2s"));
  auto one = f.serve();
  REQUIRE(one->process().wait_for_output("this process is the maintenance leader", 10s));
  auto two = f.serve();
  one->process().signal(SIGKILL);
  REQUIRE(one->process().wait(10s).has_value());
  // The lease lapses (1 s) and the other takes it; its reaper then does the work.
  REQUIRE(two->process().wait_for_output("this process is the maintenance leader", 10s));
  auto api = f.client(*two);
  const std::string id = api.create({{"prompt", "x"}})["id"];
  CHECK(api.wait_terminal(id, 15s)["error_code"] == "E6716");
}

TEST_CASE("a graceful stop hands work over: process containers' predictions fail with E8367",
          "[e2e][reaper]") {
  reaper_fixture f(test::fake_model{});
  auto server = f.serve({"--shutdown-grace-ms", "200"});
  auto api = f.client(*server);
  const std::string id = api.create({{"hang", true}})["id"];
  api.wait_status(id, "processing");
  CHECK(server->stop() == 0);
  auto row = api.stored(id, "status, error_code, error");
  CHECK(row[0].as<std::string>() == "failed");
  CHECK(row[1].as<std::string>() == "E8367");
  CHECK(row[2].as<std::string>().find("shut down") != std::string::npos);
}

TEST_CASE("retention: data removed after the period, rows deleted after the longer one",
          "[e2e][reaper]") {
  reaper_fixture f(test::fake_model{});
  auto server = f.serve({"--data-retention", "1", "--row-retention", "3"});
  auto api = f.client(*server);
  auto p = api.create({{"upload", "out.txt"}, {"content", "bytes"}}, {{"Prefer", "wait=30"}});
  REQUIRE(p["status"] == "succeeded");
  const std::string id = p["id"];
  const std::string file = p["output"].get<std::string>().substr(server->base_url().size());
  CHECK(api.http().get(file).status == 200);
  auto removed = api.wait_for(
      id, [](const json& q) { return q["data_removed"] == true; }, 15s);
  CHECK(removed["input"].is_null());
  CHECK(removed["output"].is_null());
  CHECK(removed["logs"] == "");
  CHECK(removed["status"] == "succeeded");
  CHECK(api.http().get(file).status == 404);  // the file went with the data
  // Then the row itself.
  const auto until = std::chrono::steady_clock::now() + 15s;
  int status = 200;
  while (std::chrono::steady_clock::now() < until &&
         (status = api.http().get("/v1/predictions/" + id, api.auth()).status) == 200) {
    std::this_thread::sleep_for(50ms);
  }
  CHECK(status == 404);
}
