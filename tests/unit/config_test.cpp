#include "scheduler/config.hpp"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

using namespace cogwheel::scheduler;
using namespace std::chrono_literals;

namespace {

const std::string v1(64, 'a');
const std::string v2(64, 'b');

config parse(const std::string& yaml) {
  return load_config_string(yaml, "test.yaml");
}

// The message of the config_error that parsing `yaml` throws.
std::string error_of(const std::string& yaml) {
  try {
    parse(yaml);
  } catch (const config_error& e) {
    const std::string what = e.what();
    CHECK(what.find('\n') == std::string::npos);
    CHECK_THAT(what, Catch::StartsWith("test.yaml"));
    return what;
  }
  FAIL("no config_error for:\n" << yaml);
  return {};
}

// One model with one version; `runtime` lines are re-indented under `runtime:`.
std::string one_model(const std::string& version_extra = "",
                      const std::string& runtime = "type: static\nurls: [\"http://h:5000\"]") {
  std::string yaml = "models:\n  - name: acme/echo\n    versions:\n      - id: " + v1 + "\n" +
                     version_extra + "        runtime:\n";
  std::size_t start = 0;
  while (start <= runtime.size()) {
    auto end = runtime.find('\n', start);
    if (end == std::string::npos) end = runtime.size();
    auto line = runtime.substr(start, end - start);
    line.erase(0, line.find_first_not_of(' '));
    yaml += "          " + line + "\n";
    start = end + 1;
  }
  return yaml;
}

std::string with_deployment(const std::string& body) {
  return one_model() + "deployments:\n  - name: acme/echo-prod\n    version: " + v1 + "\n" + body;
}

// A folder removed at the end of the test.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    path = std::filesystem::temp_directory_path() /
           ("cogwheel-config-test-" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(path);
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return (path / name).string();
  }
};

}  // namespace

TEST_CASE("the documented example loads", "[config]") {
  auto cfg = parse(R"(
models:
  - name: acme/echo
    description: Echoes its input
    versions:
      - id: )" + v1 +
                   R"(
        runtime:
          type: static
          urls: ["http://10.0.0.5:5000"]
      - id: )" + v2 +
                   R"(
        start_timeout: 10m
        run_timeout: 1h30m
        runtime:
          type: process
          command: ["./build/tests/fake_cog/fake_cog", "--quiet"]
          instances: 2
          env: {MODE: echo, DELAY: 5}
deployments:
  - name: acme/echo-prod
    version: )" + v1 +
                   R"(
    min_instances: 1
    max_instances: 4
    require_webhook: true
    run_timeout: 45s
)");
  REQUIRE(cfg.spec().models.size() == 1);
  const auto& m = cfg.spec().models[0];
  CHECK(m.owner == "acme");
  CHECK(m.name == "echo");
  CHECK(m.description == "Echoes its input");
  REQUIRE(m.versions.size() == 2);
  CHECK_FALSE(m.versions[0].start_timeout_ms);
  CHECK(m.versions[1].start_timeout_ms == 600'000);
  CHECK(m.versions[1].run_timeout_ms == 5'400'000);

  auto process = nlohmann::json::parse(m.versions[1].runtime_json);
  CHECK(process == nlohmann::json::parse(R"({"type":"process",
      "command":["./build/tests/fake_cog/fake_cog","--quiet"], "instances":2,
      "env":{"MODE":"echo","DELAY":"5"}, "slots":1})"));
  auto fixed = nlohmann::json::parse(m.versions[0].runtime_json);
  CHECK(fixed == nlohmann::json::parse(R"({"type":"static","urls":["http://10.0.0.5:5000"],
      "slots":1})"));

  REQUIRE(cfg.spec().deployments.size() == 1);
  const auto& d = cfg.spec().deployments[0];
  CHECK(d.owner == "acme");
  CHECK(d.name == "echo-prod");
  CHECK(d.min_instances == 1);
  CHECK(d.max_instances == 4);
  CHECK(d.require_webhook);
  CHECK(d.run_timeout_ms == 45'000);
  CHECK_FALSE(d.start_timeout_ms);
}

TEST_CASE("lookups resolve versions, latest versions and deployments", "[config]") {
  auto cfg = parse(one_model() + "      - id: " + v2 +
                   "\n        start_timeout: 2m\n        runtime: {type: static, urls: "
                   "[\"https://x\"]}\n"
                   "deployments:\n  - name: acme/pinned\n    version: " +
                   v1 + "\n    require_webhook: true\n    start_timeout: 1m\n");
  const auto* first = cfg.find_version(v1);
  REQUIRE(first != nullptr);
  CHECK(first->model == "acme/echo");
  CHECK(first->version_id == v1);
  CHECK_FALSE(first->deployment);
  CHECK_FALSE(first->require_webhook);
  CHECK(first->start_timeout == default_start_timeout);
  CHECK(first->run_timeout == default_run_timeout);

  const auto* latest = cfg.find_model_latest("acme", "echo");
  REQUIRE(latest != nullptr);
  CHECK(latest->version_id == v2);  // the last one listed
  CHECK(latest->start_timeout == 2min);

  const auto* dep = cfg.find_deployment("acme", "pinned");
  REQUIRE(dep != nullptr);
  CHECK(dep->model == "acme/echo");
  CHECK(dep->version_id == v1);
  CHECK(dep->deployment == "acme/pinned");
  CHECK(dep->require_webhook);
  CHECK(dep->start_timeout == 1min);
  CHECK(dep->run_timeout == default_run_timeout);

  CHECK(cfg.find_version(std::string(64, 'c')) == nullptr);
  CHECK(cfg.find_model_latest("acme", "other") == nullptr);
  CHECK(cfg.find_model_latest("acme/echo", "") == nullptr);
  CHECK(cfg.find_deployment("acme", "echo") == nullptr);
}

TEST_CASE("defaults: slots, instances, deployment sizes", "[config]") {
  auto cfg = parse(one_model("", "type: process\n      command: [run]") +
                   "deployments:\n  - {name: a/one, version: " + v1 + "}\n" +
                   "  - {name: a/three, version: " + v1 + ", min_instances: 3}\n");
  auto rt = nlohmann::json::parse(cfg.spec().models[0].versions[0].runtime_json);
  CHECK(rt["instances"] == 1);
  CHECK(rt["slots"] == 1);
  CHECK(rt["env"] == nlohmann::json::object());
  const auto& deps = cfg.spec().deployments;
  CHECK(deps[0].min_instances == 0);
  CHECK(deps[0].max_instances == 1);
  CHECK_FALSE(deps[0].require_webhook);
  CHECK(deps[1].min_instances == 3);
  CHECK(deps[1].max_instances == 3);
}

TEST_CASE("an empty path, file or document is an empty config", "[config]") {
  CHECK(load_config("").empty());
  CHECK(parse("").empty());
  CHECK(parse("# only a comment\n").empty());
  CHECK(parse("models: []\ndeployments: []\n").empty());
  CHECK(parse("models:\n").empty());
  CHECK(config{}.find_version(v1) == nullptr);
}

TEST_CASE("files are read, and unreadable ones are named", "[config]") {
  temp_dir dir;
  auto cfg = load_config(dir.write("ok.yaml", one_model()));
  CHECK(cfg.find_version(v1) != nullptr);

  const auto missing = (dir.path / "missing.yaml").string();
  CHECK_THROWS_WITH(load_config(missing),
                    Catch::StartsWith(missing) && Catch::Contains("No such file"));
  CHECK_THROWS_WITH(load_config(dir.path.string()), Catch::Contains("is a directory"));

  const auto bad = dir.write("bad.yaml", "models:\n  - name: [unclosed\n");
  CHECK_THROWS_WITH(load_config(bad),
                    Catch::StartsWith(bad + ":") && Catch::Contains("YAML syntax error"));
}

TEST_CASE("YAML syntax errors carry line and column", "[config]") {
  CHECK_THAT(error_of("models:\n  - name: acme/echo\n   bad: [\n"),
             Catch::Contains("YAML syntax error"));
  CHECK_THAT(error_of("models: [\n"), Catch::Matches("test\\.yaml:\\d+:\\d+: YAML syntax.*"));
}

TEST_CASE("unknown keys are refused where they are", "[config]") {
  CHECK_THAT(error_of("model: []\n"), Catch::StartsWith("test.yaml:1:1: model: unknown key in "
                                                        "the top level"));
  CHECK_THAT(error_of(one_model("        run_timout: 1m\n")),
             Catch::StartsWith("test.yaml:5:9: models[0].versions[0].run_timout: unknown key in "
                               "a version"));
  CHECK_THAT(error_of("models:\n  - name: a/b\n    versions: []\n    colour: red\n"),
             Catch::Contains("models[0].colour: unknown key in a model"));
  CHECK_THAT(error_of(with_deployment("    replicas: 2\n")),
             Catch::Contains("deployments[0].replicas: unknown key in a deployment"));
  CHECK_THAT(
      error_of(one_model("", "type: static\n      urls: [\"http://h\"]\n      command: [x]")),
      Catch::Contains("runtime.command: unknown key in a static runtime"));
  CHECK_THAT(
      error_of(one_model("", "type: process\n      command: [x]\n      urls: [\"http://h\"]")),
      Catch::Contains("runtime.urls: unknown key in a process runtime"));
  CHECK_THAT(error_of("models: []\nmodels: []\n"), Catch::Contains("2:1: models: duplicate key"));
}

TEST_CASE("shapes and required keys", "[config]") {
  CHECK_THAT(error_of("- a\n"), Catch::Contains("must be a mapping"));
  CHECK_THAT(error_of("models: {a: b}\n"), Catch::Contains("models: must be a list"));
  CHECK_THAT(error_of("models:\n  - versions: []\n"),
             Catch::Contains("models[0]: missing required key `name`"));
  CHECK_THAT(error_of("models:\n  - name: a/b\n"),
             Catch::Contains("models[0]: missing required key `versions`"));
  CHECK_THAT(error_of("models:\n  - name: a/b\n    versions: []\n"),
             Catch::Contains("models[0].versions: needs at least one version"));
  CHECK_THAT(error_of("models:\n  - name: a/b\n    versions:\n      - id: " + v1 + "\n"),
             Catch::Contains("missing required key `runtime`"));
  CHECK_THAT(error_of("models:\n  - name: a/b\n    description: [x]\n    versions: []\n"),
             Catch::Contains("models[0].description: must be a single value"));
}

TEST_CASE("bad owner/name is refused", "[config]") {
  for (const std::string& bad :
       std::vector<std::string>{"echo", "acme/", "/echo", "acme/echo/x", "acme/-echo", "ac me/echo",
                                "acme/échо", std::string(101, 'a') + "/x"}) {
    INFO(bad);
    CHECK_THAT(
        error_of("models:\n  - name: \"" + bad + "\"\n    versions: []\n"),
        Catch::Contains("test.yaml:2:") && Catch::Contains("models[0].name: must be owner/name"));
  }
  auto yaml = with_deployment("");
  yaml.replace(yaml.find("acme/echo-prod"), 14, "prod");
  CHECK_THAT(error_of(yaml), Catch::Contains("deployments[0].name: must be owner/name"));
  CHECK_NOTHROW(parse("models:\n  - name: A_1.b/x-Y.z_2\n    versions:\n      - id: " + v1 +
                      "\n        runtime: {type: static, urls: [\"http://h\"]}\n"));
}

TEST_CASE("version ids must be 64 lowercase hex", "[config]") {
  for (const std::string& bad : {std::string(63, 'a'), std::string(65, 'a'), std::string(64, 'A'),
                                 std::string(63, 'a') + "g", std::string("")}) {
    INFO(bad);
    auto yaml = one_model();
    yaml.replace(yaml.find(v1), v1.size(), "\"" + bad + "\"");
    CHECK_THAT(error_of(yaml), Catch::Contains("test.yaml:4:") &&
                                   Catch::Contains("must be 64 lowercase hex characters"));
  }
  auto yaml = with_deployment("");
  yaml.replace(yaml.rfind(v1), v1.size(), "abc");
  CHECK_THAT(error_of(yaml), Catch::Contains("deployments[0].version: must be 64 lowercase hex"));
}

TEST_CASE("duplicate models, version ids and deployments are refused", "[config]") {
  const std::string rt = "\n        runtime: {type: static, urls: [\"http://h\"]}\n";
  CHECK_THAT(
      error_of(one_model() + "  - name: acme/echo\n    versions:\n      - id: " + v2 + rt),
      Catch::Contains("test.yaml:8:") &&
          Catch::Contains("models[1].name: duplicate model \"acme/echo\" (first at line 2)"));
  CHECK_THAT(error_of(one_model() + "  - name: acme/other\n    versions:\n      - id: " + v1 + rt),
             Catch::Contains("models[1].versions[0].id: duplicate version id"));
  CHECK_THAT(error_of(one_model() + "      - id: " + v1 + rt),
             Catch::Contains("models[0].versions[1].id: duplicate version id"));
  CHECK_THAT(error_of(with_deployment("  - name: acme/echo-prod\n    version: " + v1 + "\n")),
             Catch::Contains("deployments[1].name: duplicate deployment"));
}

TEST_CASE("a deployment must pin a declared version", "[config]") {
  auto yaml = with_deployment("");
  yaml.replace(yaml.rfind(v1), v1.size(), v2);
  CHECK_THAT(error_of(yaml), Catch::Contains("deployments[0].version: unknown version " + v2));
}

TEST_CASE("deployment instance counts are checked", "[config]") {
  CHECK_THAT(error_of(with_deployment("    min_instances: 3\n    max_instances: 2\n")),
             Catch::Contains("max_instances 2 is below min_instances 3"));
  CHECK_THAT(error_of(with_deployment("    min_instances: -1\n")),
             Catch::Contains("min_instances: must be an integer from 0"));
  CHECK_THAT(error_of(with_deployment("    max_instances: 0\n")),
             Catch::Contains("max_instances: must be an integer from 1"));
  CHECK_THAT(error_of(with_deployment("    max_instances: two\n")), Catch::Contains("got \"two\""));
  CHECK_THAT(error_of(with_deployment("    require_webhook: maybe\n")),
             Catch::Contains("require_webhook: must be true or false"));
}

TEST_CASE("durations", "[config]") {
  CHECK(parse_duration("30s") == 30s);
  CHECK(parse_duration("10m") == 10min);
  CHECK(parse_duration("1h") == 1h);
  CHECK(parse_duration("1h30m") == 90min);
  CHECK(parse_duration("1h2m3s4ms") == 1h + 2min + 3s + 4ms);
  CHECK(parse_duration("500ms") == 500ms);
  CHECK(parse_duration("90") == 90s);
  CHECK(parse_duration("720h") == 720h);
  for (const char* bad : {"", "0", "0s", "-5", "m", "1.5h", "30m1h", "1m1m", "10 m", "10x", "1h ",
                          "721h", "99999999999", "99999999999s", "5ms3s"}) {
    INFO(bad);
    CHECK_FALSE(parse_duration(bad));
  }
  CHECK_THAT(error_of(one_model("        start_timeout: 10 minutes\n")),
             Catch::StartsWith("test.yaml:5:24: models[0].versions[0].start_timeout: must be a "
                               "duration"));
  CHECK_THAT(error_of(one_model("        run_timeout: 0\n")),
             Catch::Contains("run_timeout: must be a duration"));
  CHECK_THAT(error_of(with_deployment("    start_timeout: soon\n")),
             Catch::Contains("deployments[0].start_timeout: must be a duration"));
  CHECK(parse(one_model("        run_timeout: 120\n")).find_version(v1)->run_timeout == 2min);
}

TEST_CASE("runtimes are validated", "[config]") {
  CHECK_THAT(error_of(one_model("", "type: docker")),
             Catch::Contains("runtime.type: must be process or static, got \"docker\""));
  CHECK_THAT(error_of(one_model("", "urls: [\"http://h\"]")),
             Catch::Contains("runtime: missing required key `type`"));
  CHECK_THAT(error_of(one_model("", "type: process")),
             Catch::Contains("missing required key `command`"));
  CHECK_THAT(error_of(one_model("", "type: process\n      command: []")),
             Catch::Contains("runtime.command: must not be empty"));
  CHECK_THAT(error_of(one_model("", "type: process\n      command: run")),
             Catch::Contains("runtime.command: must be a list"));
  CHECK_THAT(error_of(one_model("", "type: process\n      command: [[a]]")),
             Catch::Contains("runtime.command[0]: must be a single value"));
  CHECK_THAT(error_of(one_model("", "type: process\n      command: [\"\"]")),
             Catch::Contains("the program (first item) must not be empty"));
  CHECK_THAT(error_of(one_model("", "type: process\n      command: [x]\n      instances: 0")),
             Catch::Contains("runtime.instances: must be an integer from 1"));
  CHECK_THAT(error_of(one_model("", "type: process\n      command: [x]\n      slots: 0")),
             Catch::Contains("runtime.slots: must be an integer from 1"));
  CHECK_THAT(error_of(one_model("", "type: process\n      command: [x]\n      env: [A]")),
             Catch::Contains("runtime.env: must be a mapping"));
  CHECK_THAT(error_of(one_model("", "type: process\n      command: [x]\n      env: {1A: x}")),
             Catch::Contains("bad variable name \"1A\""));
  CHECK_THAT(error_of(one_model("", "type: process\n      command: [x]\n      env: {PORT: 1}")),
             Catch::Contains("PORT is set by cogwheel"));
  CHECK_THAT(error_of(one_model("", "type: static")),
             Catch::Contains("missing required key `urls`"));
  CHECK_THAT(error_of(one_model("", "type: static\n      urls: []")),
             Catch::Contains("runtime.urls: must not be empty"));
  for (const char* bad : {"ftp://h:21", "h:5000", "http://", "not a url", "/relative"}) {
    INFO(bad);
    CHECK_THAT(error_of(one_model(
                   "", std::string("type: static\n      urls: [\"http://ok\", \"") + bad + "\"]")),
               Catch::Contains("runtime.urls[1]: must be an http:// or https:// URL"));
  }
  auto rt = nlohmann::json::parse(
      parse(one_model("", "type: static\n      urls: [\"https://a:1/x\"]\n      slots: 4"))
          .spec()
          .models[0]
          .versions[0]
          .runtime_json);
  CHECK(rt["slots"] == 4);
}

TEST_CASE("deploy/cogwheel.example.yaml is valid", "[config]") {
  auto cfg = load_config(COGWHEEL_SOURCE_DIR "/deploy/cogwheel.example.yaml");
  CHECK(cfg.find_model_latest("acme", "echo") != nullptr);
  CHECK(cfg.find_deployment("acme", "echo-prod") != nullptr);
}
