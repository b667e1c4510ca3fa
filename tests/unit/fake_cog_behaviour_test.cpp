#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>

#include "tests/fake_cog/behaviour.hpp"
#include "tests/fake_cog/state.hpp"

using nlohmann::json;
using namespace fake_cog;
using namespace std::chrono_literals;

namespace {

plan must_plan(const json& input) {
  auto parsed = parse_plan(input);
  REQUIRE(std::holds_alternative<plan>(parsed));
  return std::get<plan>(parsed);
}

std::vector<field_error> must_fail(const json& input) {
  auto parsed = parse_plan(input);
  REQUIRE(std::holds_alternative<std::vector<field_error>>(parsed));
  return std::get<std::vector<field_error>>(parsed);
}

prediction_request must_request(std::string_view body, std::string_view url_id) {
  auto parsed = parse_request(body, url_id);
  REQUIRE(std::holds_alternative<prediction_request>(parsed));
  return std::get<prediction_request>(parsed);
}

std::vector<field_error> must_reject(std::string_view body, std::string_view url_id) {
  auto parsed = parse_request(body, url_id);
  REQUIRE(std::holds_alternative<std::vector<field_error>>(parsed));
  return std::get<std::vector<field_error>>(parsed);
}

}  // namespace

TEST_CASE("fake_cog plan: an empty or unknown input echoes at once", "[fake_cog]") {
  auto p = must_plan(json::object());
  CHECK_FALSE(p.generator());
  CHECK(p.sleep_ms == 0);
  CHECK(p.steps() == 0);
  CHECK_FALSE(p.fail);
  CHECK_FALSE(p.exit_137);
  CHECK_FALSE(p.hang);
  CHECK_FALSE(p.upload);
  json input = {{"text", "hi"}, {"n", 3}};
  CHECK(echo_output(input) == input);
  CHECK(echo_output({{"prompt", "hello"}, {"n", 3}}) == "hello");
  CHECK(echo_output({{"prompt", json::array({1, 2})}}) == json::array({1, 2}));
}

TEST_CASE("fake_cog plan: behaviour fields", "[fake_cog]") {
  auto p = must_plan({{"prompt", "cat"},
                      {"sleep_ms", 250},
                      {"outputs", 3},
                      {"interval_ms", 10},
                      {"logs", 5},
                      {"fail", "boom"},
                      {"hang", false}});
  CHECK(p.generator());
  CHECK(*p.outputs == 3);
  CHECK(p.logs == 5);
  CHECK(p.steps() == 5);
  CHECK(p.interval_ms == 10);
  CHECK(p.sleep_ms == 250);
  CHECK(*p.fail == "boom");
  CHECK(generator_item(p, 0) == "cat-0");
  CHECK(generator_item(p, 2) == "cat-2");
  CHECK(generator_item(must_plan({{"outputs", 1}}), 0) == "out-0");
  CHECK(generator_item(must_plan({{"outputs", 1}, {"prompt", 7}}), 1) == "7-1");
  CHECK(log_line(3) == "log line 3\n");

  CHECK(must_plan({{"outputs", 0}}).generator());
  CHECK(must_plan({{"exit_137", true}}).exit_137);
  CHECK(must_plan({{"hang", true}}).hang);
  CHECK(must_plan({{"behaviour", "hang"}}).hang);
  CHECK(must_plan({{"behaviour", "exit_137"}}).exit_137);
  CHECK(*must_plan({{"behaviour", "fail"}}).fail == default_fail_message);
  CHECK(*must_plan({{"behaviour", "fail"}, {"fail", "mine"}}).fail == "mine");
  CHECK_FALSE(must_plan({{"behaviour", "echo"}}).fail);
  CHECK(must_plan({{"sleep_ms", nullptr}}).sleep_ms == 0);
}

TEST_CASE("fake_cog plan: upload and its content", "[fake_cog]") {
  auto p = must_plan({{"upload", "out.txt"}, {"content", "abc"}});
  CHECK(*p.upload == "out.txt");
  CHECK(p.content == "abc");
  CHECK(must_plan({{"upload", "a.txt"}, {"prompt", "words"}}).content == "words");
  CHECK_FALSE(must_plan({{"upload", "a.txt"}}).content.empty());
  CHECK(content_type_for("a.TXT") == "text/plain");
  CHECK(content_type_for("x.png") == "image/png");
  CHECK(content_type_for("noext") == "application/octet-stream");
}

TEST_CASE("fake_cog plan: invalid inputs are 422 errors naming the field", "[fake_cog]") {
  auto errors = must_fail({{"sleep_ms", "10"}});
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].loc == json::array({"body", "input", "sleep_ms"}));
  CHECK(errors[0].msg == "value is not a valid integer");
  CHECK(errors[0].type == "type_error.integer");

  CHECK(must_fail({{"sleep_ms", 1.5}})[0].type == "type_error.integer");
  CHECK(must_fail({{"sleep_ms", true}})[0].type == "type_error.integer");
  CHECK(must_fail({{"outputs", -1}})[0].type == "value_error.number.not_ge");
  CHECK(must_fail({{"logs", max_count + 1}})[0].type == "value_error.number.not_le");
  CHECK(must_fail({{"hang", "yes"}})[0].loc == json::array({"body", "input", "hang"}));
  CHECK(must_fail({{"fail", 3}})[0].type == "type_error.str");
  auto behaviour = must_fail({{"behaviour", "explode"}});
  CHECK(behaviour[0].loc == json::array({"body", "input", "behaviour"}));
  CHECK(behaviour[0].type == "value_error");
  CHECK(must_fail({{"upload", "../etc/passwd"}})[0].loc ==
        json::array({"body", "input", "upload"}));
  CHECK(must_fail({{"upload", "a.txt"}, {"outputs", 2}})[0].msg ==
        "cannot be combined with outputs");
  CHECK(must_fail({{"sleep_ms", "x"}, {"logs", "y"}}).size() == 2);
  CHECK(must_fail(json::array())[0].loc == json::array({"body", "input"}));

  auto body = validation_body(must_fail({{"sleep_ms", "10"}}));
  CHECK(body == json::parse(R"({"detail": [{"loc": ["body", "input", "sleep_ms"],
      "msg": "value is not a valid integer", "type": "type_error.integer"}]})"));
}

TEST_CASE("fake_cog request: the Cog prediction request body", "[fake_cog]") {
  auto req = must_request(R"({"id": "p1", "input": {"prompt": "x", "sleep_ms": 5},
      "webhook": "http://127.0.0.1:9/hook", "webhook_events_filter": ["completed", "start"],
      "created_at": "2024-01-02T03:04:05.000000+00:00"})",
                          "p1");
  CHECK(req.id == "p1");
  CHECK(req.input == json({{"prompt", "x"}, {"sleep_ms", 5}}));
  CHECK(req.behaviour.sleep_ms == 5);
  CHECK(*req.webhook == "http://127.0.0.1:9/hook");
  CHECK(req.events == (ev_completed | ev_start));
  CHECK(req.events_json == json::array({"completed", "start"}));
  CHECK(req.created_at == "2024-01-02T03:04:05.000000+00:00");

  auto bare = must_request("", "abc");
  CHECK(bare.id == "abc");
  CHECK(bare.input == json::object());
  CHECK_FALSE(bare.webhook);
  CHECK(bare.events == all_events);
  CHECK(bare.events_json == json::array({"start", "output", "logs", "completed"}));
  CHECK(bare.created_at.is_null());

  CHECK(must_request(R"({"id": "given"})", "").id == "given");
  auto empty_filter = must_request(R"({"webhook_events_filter": []})", "x");
  CHECK(empty_filter.events == all_events);
  CHECK(empty_filter.events_json == json::array());
  auto null_filter = must_request(R"({"webhook_events_filter": null})", "x");
  CHECK(null_filter.events == all_events);
  CHECK(null_filter.events_json.is_null());
  CHECK(must_request(R"({"input": null})", "").id.empty());
}

TEST_CASE("fake_cog request: invalid bodies", "[fake_cog]") {
  CHECK(must_reject("{nope", "a")[0].type == "value_error.jsondecode");
  CHECK(must_reject("[]", "a")[0].loc == json::array({"body"}));
  auto mismatch = must_reject(R"({"id": "b"})", "a");
  CHECK(mismatch[0].loc == json::array({"body", "id"}));
  CHECK(mismatch[0].msg == "prediction ID must match the ID supplied in the URL");
  CHECK(must_reject(R"({"input": "text"})", "a")[0].loc == json::array({"body", "input"}));
  CHECK(must_reject(R"({"webhook": "ftp://x/y"})", "a")[0].loc == json::array({"body", "webhook"}));
  auto filter = must_reject(R"({"webhook_events_filter": ["start", "bogus"]})", "a");
  CHECK(filter[0].loc == json::array({"body", "webhook_events_filter", 1}));
  CHECK(must_reject(R"({"input": {"sleep_ms": "1"}})", "a")[0].loc ==
        json::array({"body", "input", "sleep_ms"}));
}

TEST_CASE("fake_cog state: response and webhook forms", "[fake_cog]") {
  prediction_state s;
  s.id = "p1";
  s.input = {{"prompt", "x"}};
  s.started_at = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));
  s.webhook = "http://127.0.0.1:1/h";
  s.webhook_events_filter = json::array({"start", "completed"});

  auto full = full_json(s);
  CHECK(full["status"] == "processing");
  CHECK(full["output"].is_null());
  CHECK(full["logs"] == "");
  CHECK(full["started_at"] == "2023-11-14T22:13:20.000000+00:00");
  for (auto key : {"error", "completed_at", "metrics", "version", "created_at"}) {
    INFO(key);
    CHECK(full.contains(key));
    CHECK(full[key].is_null());
  }
  auto hook = webhook_json(s);
  CHECK_FALSE(hook.contains("error"));
  CHECK_FALSE(hook.contains("completed_at"));
  CHECK_FALSE(hook.contains("metrics"));
  CHECK_FALSE(hook.contains("version"));
  CHECK(hook["webhook_events_filter"] == json::array({"start", "completed"}));

  s.status = "succeeded";
  s.output = "x";
  s.completed_at = s.started_at + 1500ms;
  s.has_metrics = true;
  hook = webhook_json(s);
  CHECK(hook["completed_at"] == "2023-11-14T22:13:21.500000+00:00");
  CHECK(hook["metrics"]["predict_time"].get<double>() == Approx(1.5));
  CHECK(is_terminal("succeeded"));
  CHECK(is_terminal("canceled"));
  CHECK_FALSE(is_terminal("processing"));
}

TEST_CASE("fake_cog: retry backoff like urllib3", "[fake_cog]") {
  CHECK(retry_delay(1, 100ms) == 0ms);
  CHECK(retry_delay(2, 100ms) == 200ms);
  CHECK(retry_delay(3, 100ms) == 400ms);
  CHECK(retry_delay(12, 100ms) == 120'000ms);
  std::chrono::milliseconds total{0};
  for (int i = 1; i <= 12; ++i) total += retry_delay(i, 100ms);
  CHECK(total > 300s);
  CHECK(total < 330s);
  CHECK(retry_delay(5, 0ms) == 0ms);
}

TEST_CASE("fake_cog: timestamps and the openapi document", "[fake_cog]") {
  auto t = std::chrono::system_clock::time_point(std::chrono::microseconds(1'700'000'000'123'456));
  CHECK(iso_timestamp(t) == "2023-11-14T22:13:20.123456+00:00");
  auto doc = openapi_document();
  CHECK(doc["openapi"] == "3.0.2");
  auto props = doc["components"]["schemas"]["Input"]["properties"];
  for (auto key : {"prompt", "sleep_ms", "outputs", "interval_ms", "logs", "fail", "exit_137",
                   "hang", "upload", "content", "behaviour", "start_delay_ms"}) {
    INFO(key);
    CHECK(props.contains(key));
  }
}
