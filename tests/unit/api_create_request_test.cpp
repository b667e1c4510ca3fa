#include <catch2/catch.hpp>

#include "scheduler/api/create_request.hpp"

using namespace cogwheel::scheduler::api;
using nlohmann::json;

namespace {
const std::string hex64(64, 'c');

create_request ok(const json& body, create_route route = create_route::predictions) {
  auto r = parse_create(body.dump(), route);
  if (auto* e = std::get_if<validation_error>(&r)) FAIL(e->detail);
  return std::get<create_request>(std::move(r));
}

validation_error bad_text(std::string_view body, create_route route = create_route::predictions) {
  auto r = parse_create(body, route);
  REQUIRE(std::holds_alternative<validation_error>(r));
  return std::get<validation_error>(std::move(r));
}

validation_error bad(const json& body, create_route route = create_route::predictions) {
  return bad_text(body.dump(), route);
}

bool names(const validation_error& e, const std::string& field) {
  for (const auto& f : e.fields) {
    if (f.field == field) return true;
  }
  return false;
}
}  // namespace

TEST_CASE("parse_version_ref reads the three forms", "[api][create]") {
  CHECK(parse_version_ref(hex64) == version_ref{std::nullopt, std::nullopt, hex64});
  CHECK(parse_version_ref("acme/hello") == version_ref{"acme", "hello", std::nullopt});
  CHECK(parse_version_ref("acme/hello-2.x_y:" + hex64) ==
        version_ref{"acme", "hello-2.x_y", hex64});
  for (std::string bad_ref :
       {std::string(""), std::string(63, 'c'), std::string(65, 'c'), std::string(64, 'C'),
        std::string(64, 'g'), std::string("acme"), std::string("acme/"), std::string("/hello"),
        std::string("acme/hello/x"), std::string("acme/hello:"), std::string("acme/hello:abc"),
        std::string("-acme/hello"), std::string("acme/he llo"), ":" + hex64,
        "acme/hello:" + hex64 + "x", std::string("acme/hello:" + hex64 + ":" + hex64)}) {
    INFO(bad_ref);
    CHECK_FALSE(parse_version_ref(bad_ref));
  }
}

TEST_CASE("a minimal create body parses on each route", "[api][create]") {
  auto r = ok({{"version", hex64}, {"input", {{"prompt", "hi"}}}});
  CHECK(r.version == version_ref{std::nullopt, std::nullopt, hex64});
  CHECK(r.input == json{{"prompt", "hi"}});
  CHECK_FALSE(r.webhook);
  CHECK_FALSE(r.webhook_events_filter);
  for (auto route : {create_route::model, create_route::deployment}) {
    auto m = ok({{"input", json::object()}, {"stream", true}}, route);
    CHECK_FALSE(m.version);
    CHECK(m.input == json::object());
  }
}

TEST_CASE("webhook and filter are returned", "[api][create]") {
  auto r = ok({{"version", "acme/hello"},
               {"input", json::object()},
               {"webhook", "HTTPS://hooks.example:8443/p?q=1"},
               {"webhook_events_filter", {"completed", "start"}},
               {"stream", false}});
  CHECK(r.webhook == "https://hooks.example:8443/p?q=1");
  CHECK(r.webhook_events_filter == std::vector<std::string>{"completed", "start"});
}

TEST_CASE("null or empty optional fields count as absent", "[api][create]") {
  auto r = ok({{"version", hex64},
               {"input", json::object()},
               {"webhook", ""},
               {"webhook_events_filter", nullptr},
               {"stream", nullptr}});
  CHECK_FALSE(r.webhook);
  CHECK_FALSE(r.webhook_events_filter);
}

TEST_CASE("malformed JSON is a 400 saying where", "[api][create]") {
  auto e = bad_text("{\"input\": {}");
  CHECK(e.status == 400);
  CHECK_THAT(e.detail, Catch::StartsWith("The request body is not valid JSON"));
  CHECK_THAT(e.detail, Catch::Contains("line 1, column"));
  CHECK(bad_text("").status == 400);
}

TEST_CASE("a body that is not an object is a 400", "[api][create]") {
  for (const char* body : {"[]", "\"x\"", "null", "42"}) {
    INFO(body);
    auto e = bad_text(body);
    CHECK(e.status == 400);
    CHECK(e.detail == "The request body must be a JSON object.");
  }
}

TEST_CASE("required fields are named", "[api][create]") {
  auto e = bad(json::object());
  CHECK(e.status == 422);
  CHECK(e.code.empty());
  CHECK(e.fields == std::vector<invalid_field>{{"version", "required"}, {"input", "required"}});
  CHECK(e.detail == "The request body has 2 invalid fields: version, input.");
  CHECK(bad(json{{"input", json::object()}, {"version", nullptr}}).fields ==
        std::vector<invalid_field>{{"version", "required"}});
  CHECK(bad(json::object(), create_route::model).fields ==
        std::vector<invalid_field>{{"input", "required"}});
}

TEST_CASE("unknown fields are refused, version too on model and deployment routes",
          "[api][create]") {
  auto e = bad(json{{"version", hex64}, {"input", json::object()}, {"extra", 1}});
  CHECK(e.fields == std::vector<invalid_field>{{"extra", "unknown field"}});
  CHECK(e.detail == "The request body has an invalid field: extra (unknown field).");
  for (auto route : {create_route::model, create_route::deployment}) {
    CHECK(bad(json{{"version", hex64}, {"input", json::object()}}, route).fields ==
          std::vector<invalid_field>{{"version", "unknown field"}});
  }
}

TEST_CASE("wrong types name the field and the expected type", "[api][create]") {
  auto e = bad(json{{"version", 5},
                    {"input", "text"},
                    {"webhook", 3},
                    {"webhook_events_filter", "start"},
                    {"stream", "yes"}});
  CHECK(e.status == 422);
  CHECK(e.fields ==
        std::vector<invalid_field>{{"version", "must be a string"},
                                   {"input", "must be an object"},
                                   {"webhook", "must be a string"},
                                   {"webhook_events_filter", "must be an array of strings"},
                                   {"stream", "must be a boolean"}});
  CHECK(bad(json{{"version", hex64}, {"input", json::array()}}).fields ==
        std::vector<invalid_field>{{"input", "must be an object"}});
}

TEST_CASE("a version string of neither form is refused", "[api][create]") {
  auto e = bad(json{{"version", "not a version"}, {"input", json::object()}});
  REQUIRE(e.fields.size() == 1);
  CHECK(e.fields[0].field == "version");
}

TEST_CASE("bad webhook URLs are refused", "[api][create]") {
  for (std::string url :
       {std::string("not a url"), std::string("/relative"), std::string("ftp://x.example/"),
        std::string("http://"), std::string("https:///path"), std::string("mailto:a@b.example"),
        std::string("http:x.example"), "https://x.example/" + std::string(2048, 'a')}) {
    INFO(url);
    auto e = bad(json{{"version", hex64}, {"input", json::object()}, {"webhook", url}});
    REQUIRE(e.fields.size() == 1);
    CHECK(e.fields[0].field == "webhook");
  }
  std::string reason;
  const std::string longest = "https://x.example/" + std::string(2048 - 18, 'a');
  CHECK(normalize_webhook_url(longest, reason) == longest);
  CHECK(normalize_webhook_url("http://10.0.0.1:9/x#f", reason) == "http://10.0.0.1:9/x#f");
  CHECK(normalize_webhook_url("http://[::1]/", reason) == "http://[::1]/");
}

TEST_CASE("bad webhook_events_filter values are refused", "[api][create]") {
  auto filter_error = [](json filter) {
    auto e = bad(json{{"version", hex64},
                      {"input", json::object()},
                      {"webhook", "https://h.example/"},
                      {"webhook_events_filter", filter}});
    REQUIRE(e.fields.size() == 1);
    CHECK(e.fields[0].field == "webhook_events_filter");
    return e.fields[0].reason;
  };
  CHECK_THAT(filter_error(json::array()), Catch::Contains("must not be empty"));
  CHECK_THAT(filter_error({"start", "start"}), Catch::Contains("duplicate event \"start\""));
  CHECK_THAT(filter_error({"start", "finished"}), Catch::Contains("unknown event \"finished\""));
  CHECK_THAT(filter_error({"start", 1}), Catch::Contains("array of strings"));
  CHECK_THAT(filter_error({"Start"}), Catch::Contains("unknown event"));
}

TEST_CASE("a filter without a webhook is E4875", "[api][create]") {
  const json base = {
      {"version", hex64}, {"input", json::object()}, {"webhook_events_filter", {"start"}}};
  json with_null = base, with_empty = base;
  with_null["webhook"] = nullptr;
  with_empty["webhook"] = "";
  for (const json& body : {base, with_null, with_empty}) {
    INFO(body.dump());
    auto e = bad(body);
    CHECK(e.status == 422);
    CHECK(e.code == "E4875");
    CHECK(e.detail == "E4875: webhook URL empty: webhook_events_filter needs a webhook.");
    CHECK(names(e, "webhook"));
  }
  auto more = bad(json{{"input", json::object()}, {"webhook_events_filter", {"start"}}});
  CHECK(more.code == "E4875");
  CHECK_THAT(more.detail, Catch::StartsWith("E4875: webhook URL empty"));
  CHECK_THAT(more.detail, Catch::EndsWith("2 invalid fields: version, webhook."));
}

TEST_CASE("every invalid field is reported at once", "[api][create]") {
  auto e = bad(json{{"version", "x"},
                    {"webhook", "ftp://a"},
                    {"webhook_events_filter", json::array()},
                    {"foo", 1},
                    {"bar", 2}});
  CHECK(e.status == 422);
  CHECK(names(e, "version"));
  CHECK(names(e, "input"));
  CHECK(names(e, "webhook"));
  CHECK(names(e, "webhook_events_filter"));
  CHECK(names(e, "foo"));
  CHECK(names(e, "bar"));
  CHECK(e.fields.size() == 6);
  CHECK(e.detail ==
        "The request body has 6 invalid fields: bar, foo, version, input, webhook, "
        "webhook_events_filter.");
}

TEST_CASE("client strings are cut short in messages", "[api][create]") {
  const std::string long_name(500, 'k');
  json body = {{"version", hex64}, {"input", json::object()}};
  body[long_name] = 1;
  auto e = bad(body);
  REQUIRE(e.fields.size() == 1);
  CHECK(e.fields[0].field == std::string(64, 'k') + "...");
  for (int i = 0; i < 30; ++i) body["x" + std::to_string(i)] = i;
  CHECK_THAT(bad(body).detail, Catch::EndsWith("and 21 more."));
}
