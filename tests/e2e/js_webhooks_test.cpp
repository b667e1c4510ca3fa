// Webhook deliveries checked with the official npm clients (tests/js/webhooks.test.mjs):
// standardwebhooks' Webhook.verify and replicate's validateWebhook, against a receiver in node on
// loopback, with the real binary dispatching to the fake Cog container.
#include <catch2/catch.hpp>
#include <filesystem>

#include "tests/support/cogwheel.hpp"
#include "tests/support/pg.hpp"

using namespace cogwheel;
using namespace std::chrono_literals;

TEST_CASE("webhooks verify with the standardwebhooks and replicate npm clients", "[e2e][js]") {
  const std::string js_dir = COGWHEEL_SOURCE_DIR "/tests/js";
  REQUIRE(std::filesystem::exists(js_dir + "/node_modules/replicate"));  // scripts/test.sh: npm ci
  REQUIRE(std::filesystem::exists(js_dir + "/node_modules/standardwebhooks"));
  test::test_schema schema;
  test::temp_dir dir;
  std::map<std::string, std::string> env{{"DATABASE_URL", schema.url()}};
  const auto token = test::create_token(env, "js-webhooks");
  // The receiver listens on 127.0.0.1, which the SSRF guard refuses unless allowed.
  test::cogwheel_server server(env, {"--config", test::write_fake_model_config(dir.path(), {}),
                                     "--webhook-allow", "127.0.0.1"});

  auto r = test::run({"/usr/bin/env", "node", "--test", js_dir + "/webhooks.test.mjs"},
                     {{"COGWHEEL_BASE_URL", server.base_url() + "/v1"},
                      {"COGWHEEL_API_URL", server.base_url()},
                      {"COGWHEEL_TOKEN", token},
                      {"COGWHEEL_VERSION", test::echo_version},
                      {"NODE_PATH", js_dir + "/node_modules"}},
                     180s);
  INFO(r.output);
  INFO(server.process().output());
  CHECK(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("# fail 0"));
}
