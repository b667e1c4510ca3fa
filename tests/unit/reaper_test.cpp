// The reaper's pure parts: the internal updates it decides (timeouts, aborts, cancels) as merged
// into a stored prediction (DESIGN.md, lifecycle; PROTOCOLS.md §4), its options and its counts.
#include "scheduler/reaper.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "scheduler/cog_update.hpp"

using namespace cogwheel;
using namespace cogwheel::scheduler;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

const std::string id = "0123456789abcdefghjkmnpqrs";

// A prediction given to a container that has not reported on it yet.
storage::prediction_row starting() {
  storage::prediction_row p;
  p.id = id;
  p.model = "acme/echo";
  p.version_id = std::string(64, 'a');
  p.input_json = R"({"prompt":"hi"})";
  p.created_at = 1795310374765994;
  p.webhook = "https://hooks.example/reaper";
  return p;
}

storage::prediction_row processing() {
  auto p = starting();
  p.status = "processing";
  p.started_at = p.created_at + 1000;
  p.output_json = R"(["a"])";
  p.logs = "step 1\n";
  return p;
}

storage::prediction_row succeeded() {
  auto p = processing();
  p.status = "succeeded";
  p.completed_at = p.created_at + 2000;
  p.metrics_json = R"({"predict_time":1.0})";
  return p;
}

// Every field a merge may write, for comparisons with readable failures.
std::string state(const storage::prediction_row& p) {
  json j = {{"status", p.status},
            {"output", p.output_json},
            {"logs", p.logs},
            {"error", p.error ? json(*p.error) : json()},
            {"error_code", p.error_code ? json(*p.error_code) : json()},
            {"metrics", p.metrics_json ? json(*p.metrics_json) : json()},
            {"started_at", p.started_at ? json(*p.started_at) : json()},
            {"completed_at", p.completed_at ? json(*p.completed_at) : json()}};
  return j.dump();
}

using events = std::vector<std::string>;

void check_unchanged(const storage::prediction_row& current, const cog_update& u) {
  auto m = merge_update(current, u);
  CHECK_FALSE(m.changed);
  CHECK(state(m.after) == state(current));
  CHECK(m.events.empty());
}

}  // namespace

TEST_CASE("internal_update marks cogwheel's own decisions", "[reaper]") {
  auto u = internal_update(id, "failed", "starting", "E6716", "Timeout starting prediction");
  CHECK(u.id == id);
  CHECK(u.status == "failed");
  CHECK_FALSE(u.from_container);
  CHECK(u.only_if_status == std::optional<std::string>("starting"));
  CHECK(u.error_code == std::optional<std::string>("E6716"));
  CHECK(u.error == std::optional<std::string>("Timeout starting prediction"));
  CHECK_FALSE(u.output);
  CHECK_FALSE(u.logs);

  auto any = internal_update(id, "canceled");
  CHECK_FALSE(any.from_container);
  CHECK_FALSE(any.only_if_status);
  CHECK_FALSE(any.error_code);
  CHECK_FALSE(any.error);
}

TEST_CASE("an internal update for another status than the current one changes nothing",
          "[reaper]") {
  // A start timeout decided while starting, arriving after the container started it.
  check_unchanged(processing(), internal_update(id, "failed", "starting", "E6716",
                                                "Timeout starting prediction"));
  // A run timeout decided while running, for a prediction that is not running (yet).
  check_unchanged(starting(),
                  internal_update(id, "failed", "processing", "E8367", "Run timeout of 60 s"));
  check_unchanged(starting(), internal_update(id, "canceled", "processing"));
  check_unchanged(processing(), internal_update(id, "aborted", "starting"));

  // The same updates in the status they expect do apply.
  CHECK(
      merge_update(starting(), internal_update(id, "failed", "starting", "E6716", "late")).changed);
  CHECK(merge_update(processing(), internal_update(id, "failed", "processing", "E8367", "late"))
            .changed);
}

TEST_CASE("aborted: only a prediction that never started", "[reaper]") {
  auto m = merge_update(starting(), internal_update(id, "aborted", "starting"));
  CHECK(m.changed);
  CHECK(m.after.status == "aborted");
  CHECK_FALSE(m.after.started_at);
  CHECK(m.after.completed_at);
  CHECK_FALSE(m.after.error);
  CHECK_FALSE(m.after.error_code);
  CHECK(m.after.output_json == "null");
  CHECK(m.events == events{"completed"});

  // Without a status condition it is just as much for starting predictions only.
  auto any = merge_update(starting(), internal_update(id, "aborted"));
  CHECK(any.changed);
  CHECK(any.after.status == "aborted");
  CHECK_FALSE(any.after.started_at);

  // A running prediction is canceled instead, never aborted.
  check_unchanged(processing(), internal_update(id, "aborted"));
  check_unchanged(processing(), internal_update(id, "aborted", "processing"));
}

TEST_CASE("a start timeout fails with E6716 and does not start the prediction", "[reaper]") {
  auto m = merge_update(starting(), internal_update(id, "failed", "starting", "E6716",
                                                    "Timeout starting prediction after 600 s"));
  CHECK(m.changed);
  CHECK(m.after.status == "failed");
  CHECK(m.after.error_code == std::optional<std::string>("E6716"));
  CHECK(m.after.error ==
        std::optional<std::string>("E6716: Timeout starting prediction after 600 s"));
  CHECK_FALSE(m.after.started_at);
  CHECK(m.after.completed_at);
  REQUIRE(m.after.metrics_json);
  CHECK(json::parse(*m.after.metrics_json) == json::object());
  CHECK(m.events == events{"completed"});

  // The code is cogwheel's, not guessed from the text.
  auto oom = merge_update(starting(), internal_update(id, "failed", "starting", "E6716",
                                                      "it might have run out of memory"));
  CHECK(oom.after.error_code == std::optional<std::string>("E6716"));
  CHECK(oom.after.error == std::optional<std::string>("E6716: it might have run out of memory"));
}

TEST_CASE("a run timeout fails a running prediction with E8367, keeping what it made", "[reaper]") {
  const auto current = processing();
  auto m = merge_update(current, internal_update(id, "failed", "processing", "E8367",
                                                 "Prediction exceeded its run timeout of 60 s"));
  CHECK(m.changed);
  CHECK(m.after.status == "failed");
  CHECK(m.after.error_code == std::optional<std::string>("E8367"));
  CHECK(m.after.error ==
        std::optional<std::string>("E8367: Prediction exceeded its run timeout of 60 s"));
  CHECK(m.after.started_at == current.started_at);
  CHECK(m.after.completed_at);
  CHECK(m.after.output_json == current.output_json);
  CHECK(m.after.logs == current.logs);
  CHECK(m.events == events{"completed"});
}

TEST_CASE("an internal cancel of a running prediction ends it canceled", "[reaper]") {
  const auto current = processing();
  auto m = merge_update(current, internal_update(id, "canceled", "processing"));
  CHECK(m.changed);
  CHECK(m.after.status == "canceled");
  REQUIRE(m.after.completed_at);
  CHECK(*m.after.completed_at == current.created_at);  // the marker; the database sets the time
  CHECK(m.after.started_at == current.started_at);
  CHECK_FALSE(m.after.error);
  CHECK_FALSE(m.after.error_code);
  CHECK(m.after.output_json == current.output_json);
  CHECK(is_terminal(m.after.status));
  CHECK(m.events == events{"completed"});

  // Before the start it is canceled too, and stays not started.
  auto early = merge_update(starting(), internal_update(id, "canceled"));
  CHECK(early.changed);
  CHECK(early.after.status == "canceled");
  CHECK_FALSE(early.after.started_at);
  CHECK(early.after.completed_at);
}

TEST_CASE("a terminal prediction ignores every internal update", "[reaper]") {
  for (const auto& current : {succeeded(), [] {
                                auto p = starting();
                                p.status = "aborted";
                                p.completed_at = p.created_at;
                                return p;
                              }()}) {
    INFO(current.status);
    check_unchanged(current, internal_update(id, "canceled"));
    check_unchanged(current, internal_update(id, "aborted"));
    check_unchanged(current, internal_update(id, "failed", "", "E8367", "lost"));
    // Even when it names the terminal status it is in.
    check_unchanged(current, internal_update(id, "failed", current.status, "E6716", "late"));
    check_unchanged(current, internal_update(id, "canceled", current.status));
  }
}

TEST_CASE("the webhook events of internal updates follow the filter", "[reaper]") {
  auto p = starting();
  p.webhook_events_filter = std::vector<std::string>{"start", "output"};
  auto m = merge_update(p, internal_update(id, "aborted", "starting"));
  CHECK(m.changed);
  CHECK(m.events.empty());
  p.webhook.reset();
  p.webhook_events_filter.reset();
  CHECK(merge_update(p, internal_update(id, "failed", "", "E6716", "timeout")).events.empty());
}

namespace {

reaper_options good_options() {
  reaper_options o;
  o.owner = "host-1:4242";
  return o;
}

void check_refused(const reaper_options& o, const std::string& naming) {
  CHECK_THROWS_AS(o.validate(), std::invalid_argument);
  CHECK_THROWS_WITH(o.validate(), Catch::Contains(naming));
}

}  // namespace

TEST_CASE("reaper_options::validate accepts the defaults with an owner", "[reaper]") {
  const reaper_options defaults;
  CHECK(defaults.interval == 1000ms);
  CHECK(defaults.leader_lease >= defaults.interval * 2);
  CHECK(defaults.batch > 0);
  CHECK(defaults.row_retention >= defaults.data_retention);
  CHECK_NOTHROW(good_options().validate());
}

TEST_CASE("reaper_options::validate refuses bad options, naming them", "[reaper]") {
  SECTION("no owner") {
    auto o = good_options();
    o.owner.clear();
    check_refused(o, "owner");
  }
  SECTION("an interval under 10 ms") {
    auto o = good_options();
    o.interval = 9ms;
    o.leader_lease = 1000ms;
    check_refused(o, "--reaper-interval-ms");
    o.interval = 0ms;
    check_refused(o, "--reaper-interval-ms");
    o.interval = 10ms;  // the least allowed
    CHECK_NOTHROW(o.validate());
  }
  SECTION("a leader lease under twice the interval") {
    auto o = good_options();
    o.interval = 1000ms;
    o.leader_lease = 1999ms;
    check_refused(o, "--leader-lease-ms");
    o.leader_lease = 1000ms;
    check_refused(o, "--leader-lease-ms");
    o.leader_lease = 2000ms;
    CHECK_NOTHROW(o.validate());
    o.interval = 10ms;
    o.leader_lease = 19ms;
    check_refused(o, "--leader-lease-ms");
  }
  SECTION("a batch of 0") {
    auto o = good_options();
    o.batch = 0;
    check_refused(o, "batch");
    o.batch = 1;
    CHECK_NOTHROW(o.validate());
  }
  SECTION("rows kept for less time than their data") {
    auto o = good_options();
    o.data_retention = 2000ms;
    o.row_retention = 1999ms;
    check_refused(o, "--row-retention");
    o.row_retention = 2000ms;
    CHECK_NOTHROW(o.validate());
    // 0 means keep: no conflict either way.
    o.row_retention = 0ms;
    CHECK_NOTHROW(o.validate());
    o.row_retention = 1ms;
    o.data_retention = 0ms;
    CHECK_NOTHROW(o.validate());
  }
}

TEST_CASE("reaper_counts: any and describe", "[reaper]") {
  reaper_counts none;
  CHECK_FALSE(none.any());
  CHECK(none.describe() == "nothing");

  // Holding the lease and a full round are not themselves news.
  reaper_counts held;
  held.leader = true;
  held.full = true;
  CHECK_FALSE(held.any());
  CHECK(held.describe() == "nothing");

  reaper_counts became;
  became.leader = true;
  became.became_leader = true;
  CHECK(became.any());

  auto one = [](auto set) {
    reaper_counts c;
    set(c);
    return c;
  };
  const std::vector<std::pair<reaper_counts, std::string>> singles = {
      {one([](reaper_counts& c) { c.aborted = 1; }), "1 aborted (deadline before the start)"},
      {one([](reaper_counts& c) { c.canceled = 2; }), "2 canceled (deadline while running)"},
      {one([](reaper_counts& c) { c.start_timeouts = 3; }), "3 start timeouts (E6716)"},
      {one([](reaper_counts& c) { c.run_timeouts = 4; }), "4 run timeouts (E8367)"},
      {one([](reaper_counts& c) { c.takeover.adopted = 5; }), "5 running predictions taken over"},
      {one([](reaper_counts& c) { c.takeover.resent = 6; }),
       "6 dispatched predictions sent again to their container"},
      {one([](reaper_counts& c) { c.takeover.requeued = 7; }),
       "7 dispatched predictions back in the queue"},
      {one([](reaper_counts& c) { c.takeover.lost = 8; }),
       "8 predictions whose container is gone (E8367)"},
      {one([](reaper_counts& c) { c.data_removed = 9; }), "9 predictions' data removed"},
      {one([](reaper_counts& c) { c.rows_deleted = 10; }), "10 old predictions deleted"},
  };
  for (const auto& [counts, text] : singles) {
    INFO(text);
    CHECK(counts.any());
    CHECK(counts.describe() == text);
  }

  reaper_counts several;
  several.start_timeouts = 2;
  several.aborted = 1;
  several.takeover.lost = 3;
  several.rows_deleted = 40;
  CHECK(several.any());
  CHECK(several.describe() ==
        "1 aborted (deadline before the start), 2 start timeouts (E6716), 3 predictions whose "
        "container is gone (E8367), 40 old predictions deleted");
}
