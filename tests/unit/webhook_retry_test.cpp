// The webhook retry schedule: parsing and formatting schedules, and what judge() makes of one
// attempt's result (delivered, disabled, pending with the next delay, failed or dropped).
#include <catch2/catch.hpp>
#include <chrono>
#include <stdexcept>
#include <vector>

#include "webhook/retry.hpp"

using namespace cogwheel::webhook;
using namespace std::chrono_literals;
using std::chrono::milliseconds;

namespace {

attempt_result status(int code) {
  attempt_result r;
  r.status = code;
  return r;
}

attempt_result status_retry_after(int code, std::chrono::seconds after) {
  attempt_result r;
  r.status = code;
  r.retry_after = after;
  return r;
}

}  // namespace

TEST_CASE("parse_schedule reads units, bare seconds and spaces", "[webhook][retry]") {
  CHECK(parse_schedule("0,5s,5m,30m,2h") == std::vector<milliseconds>{0ms, 5s, 5min, 30min, 2h});
  CHECK(parse_schedule("500ms") == std::vector<milliseconds>{500ms});
  CHECK(parse_schedule("7") == std::vector<milliseconds>{7s});
  CHECK(parse_schedule("0,1,15") == std::vector<milliseconds>{0ms, 1s, 15s});
  CHECK(parse_schedule(" 0 , 5s ,  2h ") == std::vector<milliseconds>{0ms, 5s, 2h});
}

TEST_CASE("parse_schedule refuses malformed entries", "[webhook][retry]") {
  CHECK_THROWS_AS(parse_schedule(""), std::invalid_argument);
  CHECK_THROWS_AS(parse_schedule("5x"), std::invalid_argument);
  CHECK_THROWS_AS(parse_schedule("-1s"), std::invalid_argument);
  CHECK_THROWS_AS(parse_schedule("5s,,1s"), std::invalid_argument);
  CHECK_THROWS_AS(parse_schedule("5s,"), std::invalid_argument);
  CHECK_THROWS_AS(parse_schedule("s"), std::invalid_argument);
}

TEST_CASE("format_schedule round-trips the default schedules", "[webhook][retry]") {
  const auto completed = retry_options::default_completed();
  const auto other = retry_options::default_other();
  CHECK(format_schedule(completed) == "0s,5s,5m,30m,2h,5h,10h,14h,20h,24h");
  CHECK(format_schedule(other) == "0s,1s,5s,15s,30s");
  CHECK(parse_schedule(format_schedule(completed)) == completed);
  CHECK(parse_schedule(format_schedule(other)) == other);
  const std::vector<milliseconds> odd{250ms, 1500ms, 90s};
  CHECK(format_schedule(odd) == "250ms,1500ms,90s");
  CHECK(parse_schedule(format_schedule(odd)) == odd);
}

TEST_CASE("judge: 2xx is delivered, 410 disables the URL", "[webhook][retry]") {
  const retry_options opts;
  for (int code : {200, 201, 204, 299}) {
    const auto v = judge(opts, "completed", 1, status(code), 0.5);
    CHECK(v.state == "delivered");
    CHECK_FALSE(v.disable_url);
  }
  for (const char* event : {"start", "output", "logs", "completed"}) {
    const auto v = judge(opts, event, 3, status(410), 0.5);
    CHECK(v.state == "disabled");
    CHECK(v.disable_url);
  }
}

TEST_CASE("judge: a 500 is retried after the schedule's delay with jitter", "[webhook][retry]") {
  const retry_options opts;  // completed: 0, 5 s, 5 min, ...; jitter 10 %
  SECTION("the middle of the jitter is the schedule's delay") {
    const auto v = judge(opts, "completed", 1, status(500), 0.5);
    CHECK(v.state == "pending");
    CHECK(v.delay == 5000ms);
    CHECK_FALSE(v.disable_url);
  }
  SECTION("random01 0 is 10 % early") {
    CHECK(judge(opts, "completed", 1, status(500), 0.0).delay == 4500ms);
  }
  SECTION("random01 just under 1 is about 10 % late") {
    const auto d = judge(opts, "completed", 1, status(500), 0.99999).delay;
    CHECK(d >= 5499ms);
    CHECK(d <= 5500ms);
  }
  SECTION("the next attempts wait the next entries") {
    CHECK(judge(opts, "completed", 2, status(500), 0.5).delay == 5min);
    CHECK(judge(opts, "completed", 4, status(500), 0.5).delay == 2h);
    CHECK(judge(opts, "start", 1, status(500), 0.5).delay == 1s);
  }
  SECTION("no jitter: exactly the schedule") {
    retry_options flat;
    flat.jitter = 0;
    CHECK(judge(flat, "completed", 1, status(500), 0.0).delay == 5s);
    CHECK(judge(flat, "completed", 1, status(500), 0.99).delay == 5s);
  }
}

TEST_CASE("judge: time_scale compresses every delay", "[webhook][retry]") {
  retry_options opts;
  opts.time_scale = 0.001;
  CHECK(judge(opts, "completed", 1, status(500), 0.5).delay == 5ms);
  CHECK(judge(opts, "completed", 2, status(500), 0.5).delay == 300ms);    // 5 min
  CHECK(judge(opts, "completed", 9, status(500), 0.5).delay == 86400ms);  // 24 h
  CHECK(judge(opts, "completed", 2, status(500), 0.0).delay == 270ms);
}

TEST_CASE("judge: completed fails once the schedule is exhausted", "[webhook][retry]") {
  const retry_options opts;
  const auto entries = static_cast<int>(opts.completed.size());  // 10
  const auto last = judge(opts, "completed", entries - 1, status(500), 0.5);
  CHECK(last.state == "pending");
  CHECK(last.delay == 24h);
  const auto over = judge(opts, "completed", entries, status(500), 0.5);
  CHECK(over.state == "failed");
  CHECK_FALSE(over.disable_url);
  CHECK(judge(opts, "completed", entries + 3, status(0), 0.5).state == "failed");
}

TEST_CASE("judge: start, output and logs are dropped after the quick retries", "[webhook][retry]") {
  const retry_options opts;  // other: 0, 1 s, 5 s, 15 s, 30 s
  for (const char* event : {"start", "output", "logs"}) {
    INFO(event);
    const auto fourth = judge(opts, event, 4, status(500), 0.5);
    CHECK(fourth.state == "pending");
    CHECK(fourth.delay == 30s);
    CHECK(judge(opts, event, 5, status(500), 0.5).state == "dropped");
    CHECK(judge(opts, event, 5, status(0), 0.5).state == "dropped");
  }
}

TEST_CASE("judge: Retry-After on 429 and 503 lengthens the delay, up to the cap",
          "[webhook][retry]") {
  retry_options opts;
  for (int code : {429, 503}) {
    INFO(code);
    const auto v = judge(opts, "completed", 1, status_retry_after(code, 60s), 0.5);
    CHECK(v.state == "pending");
    CHECK(v.delay >= 60s);
    CHECK(v.delay == 60s);
    // A Retry-After shorter than the schedule does not shorten it.
    CHECK(judge(opts, "completed", 2, status_retry_after(code, 60s), 0.5).delay == 5min);
    // Clamped at max_retry_after (1 h by default).
    CHECK(judge(opts, "completed", 1, status_retry_after(code, 86'400s), 0.5).delay == 1h);
  }
  opts.max_retry_after = 10s;
  CHECK(judge(opts, "completed", 1, status_retry_after(429, 60s), 0.5).delay == 10s);
  CHECK(judge(opts, "completed", 1, status_retry_after(429, 8s), 0.0).delay == 8s);
  // Retry-After does not revive an exhausted schedule.
  CHECK(judge(opts, "output", 5, status_retry_after(503, 5s), 0.5).state == "dropped");
}

TEST_CASE("judge: Retry-After on other statuses is ignored", "[webhook][retry]") {
  const retry_options opts;
  CHECK(judge(opts, "completed", 1, status_retry_after(500, 60s), 0.5).delay == 5s);
  CHECK(judge(opts, "completed", 1, status_retry_after(502, 60s), 0.5).delay == 5s);
  CHECK(judge(opts, "completed", 1, status_retry_after(0, 60s), 0.5).delay == 5s);
}

TEST_CASE("judge: redirects, client errors and network errors are failures", "[webhook][retry]") {
  const retry_options opts;
  for (int code : {0, 301, 302, 308, 400, 404, 500}) {
    INFO(code);
    const auto v = judge(opts, "completed", 1, status(code), 0.5);
    CHECK(v.state == "pending");
    CHECK(v.delay == 5s);
    CHECK_FALSE(v.disable_url);
  }
}

TEST_CASE("retry_options::validate refuses impossible options", "[webhook][retry]") {
  CHECK_NOTHROW(retry_options{}.validate());
  SECTION("empty completed schedule") {
    retry_options o;
    o.completed.clear();
    CHECK_THROWS_AS(o.validate(), std::invalid_argument);
  }
  SECTION("empty other schedule") {
    retry_options o;
    o.other.clear();
    CHECK_THROWS_AS(o.validate(), std::invalid_argument);
  }
  SECTION("time scale zero or negative") {
    retry_options o;
    o.time_scale = 0;
    CHECK_THROWS_AS(o.validate(), std::invalid_argument);
    o.time_scale = -1;
    CHECK_THROWS_AS(o.validate(), std::invalid_argument);
    o.time_scale = 0.001;
    CHECK_NOTHROW(o.validate());
  }
  SECTION("jitter 1 or more, or negative") {
    retry_options o;
    o.jitter = 1;
    CHECK_THROWS_AS(o.validate(), std::invalid_argument);
    o.jitter = 1.5;
    CHECK_THROWS_AS(o.validate(), std::invalid_argument);
    o.jitter = -0.1;
    CHECK_THROWS_AS(o.validate(), std::invalid_argument);
    o.jitter = 0.99;
    CHECK_NOTHROW(o.validate());
  }
  SECTION("negative max Retry-After") {
    retry_options o;
    o.max_retry_after = std::chrono::seconds(-1);
    CHECK_THROWS_AS(o.validate(), std::invalid_argument);
  }
}
