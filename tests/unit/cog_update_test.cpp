// What a Cog container's prediction state means for a stored prediction (PROTOCOLS.md §3, §4).
#include "scheduler/cog_update.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace cogwheel;
using namespace cogwheel::scheduler;
using nlohmann::json;

namespace {

constexpr const char* cog_oom_error =
    "Prediction failed for an unknown reason. It might have run out of memory? (exitcode 137)";

// A prediction that a container has been given but has not yet reported on.
storage::prediction_row dispatched() {
  storage::prediction_row p;
  p.id = "0123456789abcdefghjkmnpqrs";
  p.model = "acme/echo";
  p.version_id = std::string(64, 'a');
  p.input_json = R"({"prompt":"hi"})";
  p.created_at = 1795310374765994;
  p.webhook = "https://hooks.example/cog";
  return p;
}

storage::prediction_row running(const std::string& output_json = "null",
                                const std::string& logs = "") {
  auto p = dispatched();
  p.status = "processing";
  p.started_at = p.created_at + 1000;
  p.output_json = output_json;
  p.logs = logs;
  return p;
}

// A Cog body, parsed; the test fails when it is refused.
cog_update cog(const json& body) {
  std::string why;
  auto u = parse_cog_update(body, why);
  INFO(body.dump() << ": " << why);
  REQUIRE(u);
  return *u;
}

// A Cog body with `status` and the fields of `extra` (JSON text).
json cog_body(const std::string& status, const char* extra = "{}") {
  json body = json::parse(extra);
  body["id"] = "0123456789abcdefghjkmnpqrs";
  body["status"] = status;
  return body;
}

// Every field a merge may write, for comparisons with readable failures.
std::string state(const storage::prediction_row& p) {
  json j = {{"status", p.status},
            {"output", p.output_json},
            {"logs", p.logs},
            {"error", p.error ? json(*p.error) : json()},
            {"error_code", p.error_code ? json(*p.error_code) : json()},
            {"metrics", p.metrics_json ? json(*p.metrics_json) : json()},
            {"started", p.started_at.has_value()},
            {"completed", p.completed_at.has_value()}};
  return j.dump();
}

using events = std::vector<std::string>;

}  // namespace

TEST_CASE("parse_cog_update reads a full Cog prediction body", "[cog_update]") {
  const json body = json::parse(R"({
    "id": "0123456789abcdefghjkmnpqrs", "status": "processing", "input": {"prompt": "hi"},
    "output": ["a", "b"], "logs": "step 1\n", "error": null, "metrics": {"predict_time": 1.25},
    "started_at": "2026-11-22T01:19:34.765994+00:00"})");
  std::string why;
  auto u = parse_cog_update(body, why);
  REQUIRE(u);
  CHECK(u->id == "0123456789abcdefghjkmnpqrs");
  CHECK(u->status == "processing");
  REQUIRE(u->output);
  CHECK(*u->output == json::parse(R"(["a","b"])"));
  CHECK(u->logs == std::optional<std::string>("step 1\n"));
  CHECK_FALSE(u->error);
  REQUIRE(u->predict_time);
  CHECK(*u->predict_time == Approx(1.25));
  CHECK_FALSE(u->error_code);
  CHECK(u->from_container);
}

TEST_CASE("parse_cog_update accepts every Cog status and a bare body", "[cog_update]") {
  for (const char* status : {"starting", "processing", "succeeded", "failed", "canceled"}) {
    INFO(status);
    std::string why;
    auto u = parse_cog_update(cog_body(status), why);
    REQUIRE(u);
    CHECK(u->status == status);
    CHECK_FALSE(u->output);
    CHECK_FALSE(u->logs);
    CHECK_FALSE(u->error);
    CHECK_FALSE(u->predict_time);
  }
  auto failed = cog(cog_body("failed", R"({"error":"boom"})"));
  CHECK(failed.error == std::optional<std::string>("boom"));
  auto null_logs = cog(cog_body("processing", R"({"logs":null})"));
  CHECK_FALSE(null_logs.logs);
}

TEST_CASE("parse_cog_update refuses bodies that are not Cog predictions", "[cog_update]") {
  const json refused[] = {
      json::array({cog_body("processing")}),  // not an object
      json("processing"),
      json(nullptr),
      json(42),
      {{"status", "processing"}},              // no id
      {{"id", ""}, {"status", "processing"}},  // empty id
      {{"id", 7}, {"status", "processing"}},   // id not a string
      {{"id", "0123456789abcdefghjkmnpqrs"}},  // no status
      cog_body("running"),                     // unknown status
      cog_body("aborted"),                     // cogwheel's status, not Cog's
      cog_body(""),                            //
      cog_body("PROCESSING"),                  //
      {{"id", "0123456789abcdefghjkmnpqrs"}, {"status", 1}},
      cog_body("processing", R"({"logs":42})"),  // logs not a string
      cog_body("processing", R"({"logs":["a"]})"),
  };
  for (const auto& body : refused) {
    INFO(body.dump());
    std::string why;
    CHECK_FALSE(parse_cog_update(body, why));
    CHECK_FALSE(why.empty());
  }
}

TEST_CASE("parse_cog_update reads metrics.predict_time when it is a number", "[cog_update]") {
  CHECK(cog(cog_body("succeeded", R"({"metrics":{"predict_time":2}})")).predict_time ==
        std::optional<double>(2.0));
  CHECK(cog(cog_body("succeeded", R"({"metrics":{"predict_time":0.5}})")).predict_time ==
        std::optional<double>(0.5));
  CHECK_FALSE(cog(cog_body("succeeded", R"({"metrics":{}})")).predict_time);
  CHECK_FALSE(cog(cog_body("succeeded")).predict_time);
}

TEST_CASE("the first update from the container starts the prediction", "[cog_update]") {
  auto m = merge_update(dispatched(), cog(cog_body("processing")));
  CHECK(m.changed);
  CHECK(m.after.status == "processing");
  CHECK(m.after.started_at);
  CHECK_FALSE(m.after.completed_at);
  CHECK(m.events == events{"start"});

  auto with_output =
      merge_update(dispatched(), cog(cog_body("processing", R"({"output":["a"],"logs":"hi\n"})")));
  CHECK(with_output.after.status == "processing");
  CHECK(with_output.after.started_at);
  CHECK(json::parse(with_output.after.output_json) == json::parse(R"(["a"])"));
  CHECK(with_output.after.logs == "hi\n");
  CHECK(with_output.events == events{"start", "output", "logs"});
}

TEST_CASE("a container still reporting starting does not start the prediction", "[cog_update]") {
  auto m = merge_update(dispatched(), cog(cog_body("starting")));
  CHECK_FALSE(m.changed);
  CHECK(m.after.status == "starting");
  CHECK_FALSE(m.after.started_at);
  CHECK(m.events.empty());
}

TEST_CASE("generator output grows and is never shortened by a late update", "[cog_update]") {
  const auto current = running(R"(["a"])");
  auto grown = merge_update(current, cog(cog_body("processing", R"({"output":["a","b"]})")));
  CHECK(grown.changed);
  CHECK(json::parse(grown.after.output_json) == json::parse(R"(["a","b"])"));
  CHECK(grown.events == events{"output"});
  CHECK(grown.after.started_at == current.started_at);  // started once

  // The update that carried ["a"] arrives after the one with ["a", "b"].
  auto late = merge_update(grown.after, cog(cog_body("processing", R"({"output":["a"]})")));
  CHECK_FALSE(late.changed);
  CHECK(json::parse(late.after.output_json) == json::parse(R"(["a","b"])"));
  CHECK(late.events.empty());

  auto empty = merge_update(grown.after, cog(cog_body("processing", R"({"output":[]})")));
  CHECK_FALSE(empty.changed);
  CHECK(json::parse(empty.after.output_json) == json::parse(R"(["a","b"])"));
}

TEST_CASE("streamed text output is never shortened while running", "[cog_update]") {
  const auto current = running(R"("Hello, wor")");
  auto grown = merge_update(current, cog(cog_body("processing", R"({"output":"Hello, world"})")));
  CHECK(json::parse(grown.after.output_json) == json("Hello, world"));
  CHECK(grown.events == events{"output"});
  auto late = merge_update(grown.after, cog(cog_body("processing", R"({"output":"Hello"})")));
  CHECK_FALSE(late.changed);
  CHECK(json::parse(late.after.output_json) == json("Hello, world"));
}

TEST_CASE("a late update with output null never clears the output", "[cog_update]") {
  for (const char* output : {R"(["a","b"])", R"("text")", R"({"x":1})", "3"}) {
    INFO(output);
    auto m = merge_update(running(output), cog(cog_body("processing", R"({"output":null})")));
    CHECK_FALSE(m.changed);
    CHECK(m.after.output_json == output);
    CHECK(m.events.empty());
  }
}

TEST_CASE("logs are replaced by the newest and never shortened while running", "[cog_update]") {
  const auto current = running("null", "one\ntwo\n");
  auto grown =
      merge_update(current, cog(cog_body("processing", R"({"logs":"one\ntwo\nthree\n"})")));
  CHECK(grown.changed);
  CHECK(grown.after.logs == "one\ntwo\nthree\n");
  CHECK(grown.events == events{"logs"});

  auto late = merge_update(grown.after, cog(cog_body("processing", R"({"logs":"one\n"})")));
  CHECK_FALSE(late.changed);
  CHECK(late.after.logs == "one\ntwo\nthree\n");
  CHECK(late.events.empty());

  auto blank = merge_update(grown.after, cog(cog_body("processing", R"({"logs":""})")));
  CHECK_FALSE(blank.changed);
  CHECK(blank.after.logs == "one\ntwo\nthree\n");
}

TEST_CASE("a terminal update completes the prediction with its final values", "[cog_update]") {
  const auto current = running(R"(["a"])", "step 1\n");
  auto m = merge_update(
      current, cog(cog_body("succeeded", R"({"output":["a","b","c"],"logs":"step 1\nstep 2\n",
                                      "metrics":{"predict_time":2.5}})")));
  CHECK(m.changed);
  CHECK(m.after.status == "succeeded");
  CHECK(m.after.completed_at);
  CHECK(m.after.started_at == current.started_at);
  CHECK(json::parse(m.after.output_json) == json::parse(R"(["a","b","c"])"));
  CHECK(m.after.logs == "step 1\nstep 2\n");
  REQUIRE(m.after.metrics_json);
  CHECK(json::parse(*m.after.metrics_json).value("predict_time", -1.0) == Approx(2.5));
  CHECK_FALSE(m.after.error);
  CHECK_FALSE(m.after.error_code);
  CHECK(m.events == events{"completed"});
}

TEST_CASE("a terminal update carries the final output even when it is not longer", "[cog_update]") {
  auto m = merge_update(running(R"(["a","b"])", "long log text\n"),
                        cog(cog_body("succeeded", R"({"output":["z"],"logs":"short\n"})")));
  CHECK(json::parse(m.after.output_json) == json::parse(R"(["z"])"));
  CHECK(m.after.logs == "short\n");
}

TEST_CASE("a prediction that succeeds before any other report still starts", "[cog_update]") {
  auto m = merge_update(dispatched(), cog(cog_body("succeeded", R"({"output":"done"})")));
  CHECK(m.after.status == "succeeded");
  CHECK(m.after.started_at);
  CHECK(m.after.completed_at);
  CHECK(m.events == events{"start", "completed"});
}

TEST_CASE("a terminal prediction never changes again", "[cog_update]") {
  auto done =
      merge_update(running(R"(["a"])"), cog(cog_body("succeeded", R"({"output":["a","b"]})")))
          .after;
  REQUIRE(done.status == "succeeded");
  const json later[] = {
      cog_body("processing", R"({"output":["a","b","c"],"logs":"more\n"})"),
      cog_body("succeeded", R"({"output":["x","y","z"]})"),
      cog_body("failed", R"({"error":"boom"})"),
      cog_body("canceled"),
      cog_body("starting"),
  };
  for (const auto& body : later) {
    INFO(body.dump());
    auto m = merge_update(done, cog(body));
    CHECK_FALSE(m.changed);
    CHECK(state(m.after) == state(done));
    CHECK(m.events.empty());
  }
  // Failures decided by cogwheel itself do not reopen it either.
  cog_update own;
  own.id = done.id;
  own.status = "failed";
  own.error = "Timeout";
  own.error_code = "E8367";
  own.from_container = false;
  auto m = merge_update(done, own);
  CHECK_FALSE(m.changed);
  CHECK(state(m.after) == state(done));
}

TEST_CASE("a duplicate update changes nothing", "[cog_update]") {
  const auto u = cog(cog_body("processing", R"({"output":["a","b"],"logs":"x\n"})"));
  auto first = merge_update(dispatched(), u);
  REQUIRE(first.changed);
  auto again = merge_update(first.after, u);
  CHECK_FALSE(again.changed);
  CHECK(state(again.after) == state(first.after));
  CHECK(again.events.empty());

  const auto text = cog(cog_body("processing", R"({"output":"abc"})"));
  auto t1 = merge_update(dispatched(), text);
  auto t2 = merge_update(t1.after, text);
  CHECK_FALSE(t2.changed);
  CHECK(t2.events.empty());
}

TEST_CASE("a container that died fails the prediction with E1001", "[cog_update]") {
  for (const char* text :
       {cog_oom_error, "OOMKilled", "container exited: OOMKilled (exit code 137)"}) {
    INFO(text);
    auto body = cog_body("failed");
    body["error"] = text;
    auto m = merge_update(running(), cog(body));
    CHECK(m.after.status == "failed");
    CHECK(m.after.error_code == std::optional<std::string>("E1001"));
    CHECK(m.after.error == std::optional<std::string>(std::string("E1001: ") + text));
    CHECK(m.after.completed_at);
    CHECK(m.events == events{"completed"});
  }
}

TEST_CASE("any other model failure is E1000 with the model's text", "[cog_update]") {
  auto m = merge_update(running(), cog(cog_body("failed", R"({"error":"boom"})")));
  CHECK(m.after.status == "failed");
  CHECK(m.after.error_code == std::optional<std::string>("E1000"));
  CHECK(m.after.error == std::optional<std::string>("E1000: boom"));

  auto silent = merge_update(running(), cog(cog_body("failed")));
  CHECK(silent.after.error_code == std::optional<std::string>("E1000"));
  REQUIRE(silent.after.error);
  CHECK_THAT(*silent.after.error, Catch::StartsWith("E1000: "));
  CHECK(silent.after.error->size() > std::string("E1000: ").size());
}

TEST_CASE("a failure decided by cogwheel keeps its code and does not start the prediction",
          "[cog_update]") {
  cog_update u;
  u.id = "0123456789abcdefghjkmnpqrs";
  u.status = "failed";
  u.error = "Error starting prediction: the container answered 422";
  u.error_code = "E9243";
  u.from_container = false;
  auto m = merge_update(dispatched(), u);
  CHECK(m.changed);
  CHECK(m.after.status == "failed");
  CHECK(m.after.error_code == std::optional<std::string>("E9243"));
  CHECK(m.after.error ==
        std::optional<std::string>("E9243: Error starting prediction: the container answered 422"));
  CHECK_FALSE(m.after.started_at);
  CHECK(m.after.completed_at);
  CHECK(m.events == events{"completed"});
}

TEST_CASE("the events honour the webhook events filter", "[cog_update]") {
  const auto update = cog(cog_body("processing", R"({"output":["a"],"logs":"x\n"})"));
  const auto finish = cog(cog_body("succeeded", R"({"output":["a","b"]})"));

  SECTION("only completed") {
    auto p = dispatched();
    p.webhook_events_filter = std::vector<std::string>{"completed"};
    auto m = merge_update(p, update);
    CHECK(m.changed);  // the state changes even when nobody is told
    CHECK(m.after.status == "processing");
    CHECK(m.events.empty());
    CHECK(merge_update(m.after, finish).events == events{"completed"});
  }
  SECTION("start and logs") {
    auto p = dispatched();
    p.webhook_events_filter = std::vector<std::string>{"start", "logs"};
    auto m = merge_update(p, update);
    CHECK(m.events == events{"start", "logs"});
    CHECK(merge_update(m.after, finish).events.empty());
  }
  SECTION("no webhook: no events") {
    auto p = dispatched();
    p.webhook.reset();
    auto m = merge_update(p, update);
    CHECK(m.changed);
    CHECK(m.events.empty());
    CHECK(merge_update(m.after, finish).events.empty());
  }
}

TEST_CASE("event_wanted follows the filter, and no filter means every event", "[cog_update]") {
  auto p = dispatched();
  for (const char* e : {"start", "output", "logs", "completed"}) CHECK(event_wanted(p, e));
  p.webhook_events_filter = std::vector<std::string>{"output"};
  CHECK(event_wanted(p, "output"));
  CHECK_FALSE(event_wanted(p, "start"));
  CHECK_FALSE(event_wanted(p, "logs"));
  CHECK_FALSE(event_wanted(p, "completed"));
  p.webhook_events_filter = std::vector<std::string>{};
  CHECK_FALSE(event_wanted(p, "completed"));
  p.webhook.reset();
  p.webhook_events_filter.reset();
  CHECK_FALSE(event_wanted(p, "completed"));
}

TEST_CASE("failure_code: E1001 only for a dead container", "[cog_update]") {
  CHECK(failure_code(cog_oom_error) == "E1001");
  CHECK(failure_code("OOMKilled") == "E1001");
  CHECK(failure_code("CUDA out of memory. Tried to allocate 2.00 GiB") == "E1001");
  CHECK(failure_code("process exited with exit code 137") == "E1001");
  CHECK(failure_code("boom") == "E1000");
  CHECK(failure_code("Booming failure in the zoom layer") == "E1000");
  CHECK(failure_code("room not found") == "E1000");
  CHECK(failure_code("ValueError: bad prompt") == "E1000");
  CHECK(failure_code("") == "E1000");
}

TEST_CASE("is_terminal", "[cog_update]") {
  for (const char* s : {"succeeded", "failed", "canceled", "aborted"}) CHECK(is_terminal(s));
  for (const char* s : {"starting", "processing", "", "SUCCEEDED"}) CHECK_FALSE(is_terminal(s));
}
