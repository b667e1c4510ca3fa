#include "scheduler/settings.hpp"

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

using namespace cogwheel::scheduler;

namespace {
settings parse(std::vector<std::string> args) {
  CLI::App app;
  settings s;
  add_options(app, s, scope::for_database);
  std::vector<const char*> argv = {"cogwheel"};
  for (auto& a : args) argv.push_back(a.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
  return s;
}
}  // namespace

TEST_CASE("every documented default is the real default", "[settings]") {
  for (const auto& d : option_defs()) {
    if (d.default_text.starts_with("(") || d.default_text.find(' ') != std::string::npos) continue;
    INFO(d.flag);
    CHECK(parse({d.flag, d.default_text}) == settings{});
  }
}

TEST_CASE("options come from the environment", "[settings]") {
  setenv("COGWHEEL_DB_POOL_SIZE", "3", 1);
  auto s = parse({});
  unsetenv("COGWHEEL_DB_POOL_SIZE");
  CHECK(s.db_pool_size == 3);
}

TEST_CASE("out-of-range values are refused with the option's name", "[settings]") {
  settings s;
  s.io_threads = 0;
  CHECK_THROWS_WITH(validate(s), Catch::Contains("--io-threads"));
  CHECK_THROWS_AS(parse({"--log-level", "loud"}), CLI::ValidationError);
}

TEST_CASE("README.md carries the configuration table of this binary", "[settings][docs]") {
  std::ifstream in(COGWHEEL_SOURCE_DIR "/README.md");
  std::stringstream readme;
  readme << in.rdbuf();
  CHECK_THAT(readme.str(), Catch::Contains(options_markdown()));
}

TEST_CASE("webhook options are checked", "[settings][webhook]") {
  settings s;
  s.webhook_allow = "127.0.0.1, 10.0.0.0/8,::1,fd00::/8";
  CHECK_NOTHROW(validate(s));
  for (const char* bad : {"localhost", "10.0.0.0/33", "::1/129", "10.0.0.0/", "1.2.3.4/x"}) {
    s.webhook_allow = bad;
    INFO(bad);
    CHECK_THROWS_WITH(validate(s), Catch::Contains("--webhook-allow"));
  }
  s = settings{};
  s.webhook_retry_schedule = "0,5x";
  CHECK_THROWS_WITH(validate(s), Catch::Contains("schedule"));
  s = settings{};
  s.webhook_timeout_ms = 100;
  CHECK_THROWS_WITH(validate(s), Catch::Contains("--webhook-timeout-ms"));
  s = settings{};
  s.webhook_time_scale = 0;
  CHECK_THROWS_WITH(validate(s), Catch::Contains("--webhook-time-scale"));
}
