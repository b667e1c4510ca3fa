// The real cogwheel binary: serve, migrate, health and readiness, and its one-line errors.
#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <pqxx/pqxx>

#include "tests/support/cogwheel.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/pg.hpp"
#include "tests/support/process.hpp"

using namespace cogwheel;
using namespace std::chrono_literals;

namespace {

std::size_t line_count(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace

TEST_CASE("serve answers /health and /ready, and stops cleanly on SIGTERM", "[e2e][serve]") {
  test::test_schema schema;
  test::cogwheel_server s({{"DATABASE_URL", schema.url()}});
  test::http_client client("127.0.0.1", s.port());
  auto health = client.get("/health");
  CHECK(health.status == 200);
  CHECK(health.json()["status"] == "ok");
  auto ready = client.get("/ready");
  CHECK(ready.status == 200);
  CHECK(ready.json()["schema_version"].get<int>() >= 1);

  SECTION("an unknown route is a 404 problem") {
    auto r = client.get("/nope");
    CHECK(r.status == 404);
    CHECK(r.header("Content-Type") == "application/problem+json");
  }
  SECTION("/ready turns 503 when the schema is not one this binary knows") {
    pqxx::connection c(schema.conninfo());
    pqxx::work tx(c);
    tx.exec(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', "
        "repeat('a', 64))");
    tx.commit();
    auto r = client.get("/ready");
    CHECK(r.status == 503);
    CHECK(r.header("Retry-After") == "1");
    CHECK_THAT(r.json()["detail"].get<std::string>(), Catch::Contains("9999_future"));
  }
  CHECK(s.stop() == 0);
}

TEST_CASE("migrate applies the schema and exits", "[e2e][migrate]") {
  test::test_schema schema;
  auto r = test::run({COGWHEEL_BINARY, "migrate"}, {{"DATABASE_URL", schema.url()}});
  CHECK(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("applied migration 0001_initial"));
  auto again = test::run({COGWHEEL_BINARY, "migrate"}, {{"DATABASE_URL", schema.url()}});
  CHECK(again.code == 0);
  CHECK_THAT(again.output, !Catch::Contains("applied migration"));
}

TEST_CASE("startup failures are one clear line and a non-zero exit", "[e2e][errors]") {
  test::temp_dir dir;
  SECTION("malformed DATABASE_URL") {
    auto r = test::run({COGWHEEL_BINARY, "migrate"}, {{"DATABASE_URL", "postgresql://x?bogus=1"}});
    CHECK(r.code == 1);
    CHECK_THAT(r.output, Catch::StartsWith("cogwheel: error: malformed DATABASE_URL"));
    CHECK(line_count(r.output) == 1);
  }
  SECTION("database unreachable") {
    const auto port = test::free_port();
    auto r =
        test::run({COGWHEEL_BINARY, "migrate"},
                  {{"DATABASE_URL", "postgresql://u@127.0.0.1:" + std::to_string(port) + "/d"}});
    CHECK(r.code == 1);
    CHECK_THAT(r.output, Catch::Contains("cogwheel: error: database unreachable"));
    CHECK(line_count(r.output) <= 2);
  }
  SECTION("port in use") {
    test::test_schema schema;
    test::cogwheel_server first({{"DATABASE_URL", schema.url()}});
    auto r = test::run(
        {COGWHEEL_BINARY, "serve", "--listen", "127.0.0.1:" + std::to_string(first.port())},
        {{"DATABASE_URL", schema.url()}});
    CHECK(r.code == 1);
    CHECK_THAT(r.output, Catch::Contains("address already in use"));
    CHECK(line_count(r.output) == 1);
  }
  SECTION("data folder not writable") {
    auto r = test::run({COGWHEEL_BINARY, "migrate", "--data-dir", "/proc/cogwheel-data"},
                       {{"DATABASE_URL", ""}});
    CHECK(r.code == 1);
    CHECK_THAT(r.output,
               Catch::StartsWith("cogwheel: error: ") && Catch::Contains("/proc/cogwheel-data"));
    CHECK(line_count(r.output) == 1);
  }
  SECTION("PostgreSQL binaries missing") {
    auto r = test::run({COGWHEEL_BINARY, "migrate", "--data-dir", dir.path() + "/data",
                        "--pg-bin-dir", dir.path()},
                       {{"DATABASE_URL", ""}});
    CHECK(r.code == 1);
    CHECK_THAT(r.output, Catch::Contains("PostgreSQL server binaries not found"));
    CHECK(line_count(r.output) == 1);
  }
  SECTION("bad option values") {
    auto r = test::run({COGWHEEL_BINARY, "serve", "--db-pool-size", "0"}, {{"DATABASE_URL", ""}});
    CHECK(r.code != 0);
    CHECK_THAT(r.output, Catch::Contains("--db-pool-size must be 1 to 1000"));
  }
}

TEST_CASE("the embedded default: serve owns its PostgreSQL, other subcommands share it",
          "[e2e][embedded]") {
  test::temp_dir dir;
  const std::string data = dir.path() + "/data";
  const std::map<std::string, std::string> env = {{"DATABASE_URL", ""},
                                                  {"COGWHEEL_DATA_DIR", data}};
  {
    test::cogwheel_server s(env);
    test::http_client client("127.0.0.1", s.port());
    CHECK(client.get("/ready").status == 200);
    // While serve runs, migrate connects to the same server instead of starting another.
    auto m = test::run({COGWHEEL_BINARY, "migrate"}, env);
    CHECK(m.code == 0);
    CHECK_THAT(m.output, Catch::Contains("(already running)"));
    CHECK(client.get("/ready").status == 200);
    CHECK(s.stop() == 0);
  }
  // serve stopped its server on SIGTERM.
  CHECK_FALSE(std::filesystem::exists(data + "/postgres/postmaster.pid"));
  // With none running, migrate starts one for its own duration and reuses the data folder.
  auto m = test::run({COGWHEEL_BINARY, "migrate"}, env);
  CHECK(m.code == 0);
  CHECK_THAT(m.output, !Catch::Contains("applied migration"));
  CHECK_FALSE(std::filesystem::exists(data + "/postgres/postmaster.pid"));
}
