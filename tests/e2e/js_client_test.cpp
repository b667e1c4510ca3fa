// The official `replicate` npm client (tests/js) against the real binary, base URL changed only.
#include <catch2/catch.hpp>
#include <filesystem>

#include "tests/support/cogwheel.hpp"
#include "tests/support/pg.hpp"

using namespace cogwheel;
using namespace std::chrono_literals;

TEST_CASE("the official replicate npm client works against cogwheel", "[e2e][js]") {
  const std::string js_dir = COGWHEEL_SOURCE_DIR "/tests/js";
  REQUIRE(std::filesystem::exists(js_dir + "/node_modules/replicate"));  // scripts/test.sh: npm ci
  test::test_schema schema;
  test::temp_dir dir;
  std::map<std::string, std::string> env{{"DATABASE_URL", schema.url()}};
  const auto token = test::create_token(env, "js");
  const auto other = test::create_token(env, "js-other");
  test::cogwheel_server server(env, {"--config", test::write_echo_config(dir.path())});

  auto r = test::run({"/usr/bin/env", "node", "--test", js_dir + "/replicate_client.test.mjs"},
                     {{"COGWHEEL_BASE_URL", server.base_url() + "/v1"},
                      {"COGWHEEL_TOKEN", token},
                      {"COGWHEEL_OTHER_TOKEN", other},
                      {"COGWHEEL_VERSION", test::echo_version},
                      {"COGWHEEL_MODEL", "acme/echo"},
                      {"COGWHEEL_DEPLOYMENT", "acme/echo-prod"},
                      {"NODE_PATH", js_dir + "/node_modules"}},
                     120s);
  INFO(r.output);
  CHECK(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("# fail 0"));
}
