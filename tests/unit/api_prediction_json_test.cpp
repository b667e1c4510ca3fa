#include <catch2/catch.hpp>

#include "scheduler/api/prediction_json.hpp"

using namespace cogwheel::scheduler::api;
using nlohmann::json;

namespace {
cogwheel::storage::prediction_row fresh_row() {
  cogwheel::storage::prediction_row p;
  p.id = "0123456789abcdefghjkmnpqrs";
  p.model = "acme/hello";
  p.version_id = std::string(64, 'a');
  p.input_json = R"({"prompt":"hi"})";
  p.created_at = 1795310374765994;
  return p;
}
}  // namespace

TEST_CASE("a new prediction has every field, nulls where unset", "[api][json]") {
  const json j = prediction_json(fresh_row(), "https://cw.example");
  const json expected = {
      {"id", "0123456789abcdefghjkmnpqrs"},
      {"model", "acme/hello"},
      {"version", std::string(64, 'a')},
      {"input", {{"prompt", "hi"}}},
      {"output", nullptr},
      {"logs", ""},
      {"error", nullptr},
      {"error_code", nullptr},
      {"status", "starting"},
      {"source", "api"},
      {"data_removed", false},
      {"created_at", "2026-11-22T01:19:34.765994Z"},
      {"started_at", nullptr},
      {"completed_at", nullptr},
      {"deadline", nullptr},
      {"urls",
       {{"get", "https://cw.example/v1/predictions/0123456789abcdefghjkmnpqrs"},
        {"cancel", "https://cw.example/v1/predictions/0123456789abcdefghjkmnpqrs/cancel"},
        {"stream", "https://cw.example/v1/predictions/0123456789abcdefghjkmnpqrs/stream"},
        {"web", "https://cw.example/p/0123456789abcdefghjkmnpqrs"}}},
      {"metrics", json::object()},
      {"webhook", nullptr},
      {"webhook_events_filter", nullptr},
      {"deployment", nullptr},
  };
  CHECK(j == expected);
}

TEST_CASE("a finished prediction shows its output, times, metrics and echoes", "[api][json]") {
  auto p = fresh_row();
  p.status = "failed";
  p.output_json = R"(["a","b"])";
  p.logs = "line\n";
  p.error = "E6716: Timeout starting prediction";
  p.error_code = "E6716";
  p.metrics_json = R"({"predict_time":1.5,"total_time":2.0})";
  p.started_at = p.created_at + 1;
  p.completed_at = p.created_at + 2;
  p.deadline = p.created_at + 3;
  p.webhook = "https://hooks.example/x?y=1";
  p.webhook_events_filter = std::vector<std::string>{"start", "completed"};
  p.deployment = "acme/prod";
  const json j = prediction_json(p, "https://cw.example");
  CHECK(j["output"] == json::array({"a", "b"}));
  CHECK(j["logs"] == "line\n");
  CHECK(j["error"] == "E6716: Timeout starting prediction");
  CHECK(j["error_code"] == "E6716");
  CHECK(j["status"] == "failed");
  CHECK(j["started_at"] == "2026-11-22T01:19:34.765995Z");
  CHECK(j["completed_at"] == "2026-11-22T01:19:34.765996Z");
  CHECK(j["deadline"] == "2026-11-22T01:19:34.765997Z");
  CHECK(j["metrics"] == json{{"predict_time", 1.5}, {"total_time", 2.0}});
  CHECK(j["webhook"] == "https://hooks.example/x?y=1");
  CHECK(j["webhook_events_filter"] == json::array({"start", "completed"}));
  CHECK(j["deployment"] == "acme/prod");
  CHECK(j.size() == 20);
}

TEST_CASE("removed data shows as null input and output", "[api][json]") {
  auto p = fresh_row();
  p.output_json = R"("done")";
  p.data_removed = true;
  const json j = prediction_json(p, "https://cw.example");
  CHECK(j["input"].is_null());
  CHECK(j["output"].is_null());
  CHECK(j["data_removed"] == true);
}

TEST_CASE("a trailing slash on the base URL is dropped", "[api][json]") {
  const json urls = prediction_urls("http://localhost:8080//", "abc");
  CHECK(urls["get"] == "http://localhost:8080/v1/predictions/abc");
  CHECK(urls["web"] == "http://localhost:8080/p/abc");
  CHECK(trim_base_url("https://x/") == "https://x");
  CHECK(trim_base_url("https://x") == "https://x");
  CHECK(trim_base_url("") == "");
}

TEST_CASE("a corrupt JSON column shows as null, bad metrics as {}", "[api][json]") {
  auto p = fresh_row();
  p.output_json = "{not json";
  p.metrics_json = "[1]";
  const json j = prediction_json(p, "https://cw.example");
  CHECK(j["output"].is_null());
  CHECK(j["metrics"] == json::object());
}

TEST_CASE("the text lists the members in the API's order", "[api][json]") {
  const std::string text = prediction_json_text(fresh_row(), "https://cw.example");
  const std::vector<std::string> order = {"id",
                                          "model",
                                          "version",
                                          "input",
                                          "output",
                                          "logs",
                                          "error",
                                          "error_code",
                                          "status",
                                          "source",
                                          "data_removed",
                                          "created_at",
                                          "started_at",
                                          "completed_at",
                                          "deadline",
                                          "urls",
                                          "metrics",
                                          "webhook",
                                          "webhook_events_filter",
                                          "deployment"};
  std::size_t at = 0;
  for (const auto& key : order) {
    const auto found = text.find("\"" + key + "\":", at);
    INFO(key);
    REQUIRE(found != std::string::npos);
    at = found;
  }
  CHECK(text.front() == '{');
  CHECK(text.back() == '}');
}

TEST_CASE("strings are escaped, and invalid UTF-8 is replaced", "[api][json]") {
  auto p = fresh_row();
  p.logs = std::string("quote \" backslash \\ tab \t nl \n nul ") + '\0' + " bell \x07 é 🙂";
  p.error = std::string("bad \xff byte, cut \xe2\x82 sequence, overlong \xc0\xaf");
  p.error_code = "E6716";
  p.status = "failed";
  const std::string text = prediction_json_text(p, "https://cw.example");
  const json j = json::parse(text);  // strict: throws on invalid UTF-8
  CHECK(j["logs"] == p.logs);
  CHECK(text.find(R"(nul \u0000 bell \u0007 é 🙂)") != std::string::npos);
  CHECK(j["error"] ==
        "bad \xEF\xBF\xBD byte, cut \xEF\xBF\xBD\xEF\xBF\xBD sequence, overlong "
        "\xEF\xBF\xBD\xEF\xBF\xBD");
  std::string escaped;
  append_json_string(escaped, "\xed\xa0\x80");  // a UTF-16 surrogate is not UTF-8
  CHECK(escaped == "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
  escaped.clear();
  append_json_string(escaped, "\xf4\x8f\xbf\xbf \xf4\x90\x80\x80");  // U+10FFFF, then beyond
  CHECK(escaped.substr(0, 6) == "\"\xf4\x8f\xbf\xbf ");
  CHECK(json::parse(escaped).get<std::string>().find("\xEF\xBF\xBD") == 5);
}

TEST_CASE("stored JSON text is carried as it is, numbers included", "[api][json]") {
  auto p = fresh_row();
  p.input_json = R"({"seed": 18446744073709551617, "scale": 1.10, "text": "a\u00e9"})";
  const std::string text = prediction_json_text(p, "https://cw.example");
  CHECK(text.find(R"("input":{"seed": 18446744073709551617, "scale": 1.10, "text": "a\u00e9"})") !=
        std::string::npos);
  CHECK(prediction_url("https://cw.example/", "abc") == "https://cw.example/v1/predictions/abc");
}
