#include "scheduler/webhook_events.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace cogwheel;
using json = nlohmann::json;

namespace {
storage::prediction_row finished_row() {
  storage::prediction_row r;
  r.id = "0ka4c2f56y99svetv6q3asd8hr";
  r.token_id = 1;
  r.model = "acme/echo";
  r.version_id = std::string(64, 'a');
  r.status = "succeeded";
  r.output_json = R"("hi")";
  r.logs = "done\n";
  r.metrics_json = R"({"predict_time":0.1})";
  r.created_at = 1'700'000'000'000'000;
  r.started_at = r.created_at + 1'000;
  r.completed_at = r.created_at + 2'000;
  r.webhook = "https://example.com/h";
  return r;
}
}  // namespace

TEST_CASE("a change that starts and ends a prediction queues start with the started state",
          "[webhook][events]") {
  auto d = scheduler::webhook_deliveries_for(finished_row(), {"start", "completed"},
                                             "http://127.0.0.1:5080");
  REQUIRE(d.size() == 2);
  CHECK(d[0].event == "start");
  CHECK(json::parse(d[0].payload)["status"] == "processing");
  CHECK(json::parse(d[0].payload)["output"].is_null());
  CHECK(d[1].event == "completed");
  CHECK(json::parse(d[1].payload)["status"] == "succeeded");
  CHECK(d[0].message_id != d[1].message_id);
}

TEST_CASE("the filter, one snapshot per change, nothing older beside completed",
          "[webhook][events]") {
  auto row = finished_row();
  row.status = "processing";
  row.completed_at.reset();
  auto d = scheduler::webhook_deliveries_for(row, {"output", "logs"}, "http://x");
  REQUIRE(d.size() == 1);  // output and logs changed together: one delivery
  CHECK(d[0].event == "output");
  row.webhook_events_filter = std::vector<std::string>{"logs", "completed"};
  d = scheduler::webhook_deliveries_for(row, {"output", "logs"}, "http://x");
  REQUIRE(d.size() == 1);
  CHECK(d[0].event == "logs");
  auto done = finished_row();
  d = scheduler::webhook_deliveries_for(done, {"logs", "completed"}, "http://x");
  REQUIRE(d.size() == 1);
  CHECK(d[0].event == "completed");
  CHECK(d[0].supersedes);
  done.webhook_events_filter = std::vector<std::string>{"completed"};
  d = scheduler::webhook_deliveries_for(done, {"start", "completed"}, "http://x");
  REQUIRE(d.size() == 1);
  CHECK_FALSE(d[0].supersedes);
  done.webhook.reset();
  CHECK(scheduler::webhook_deliveries_for(done, {"completed"}, "http://x").empty());
}
