#include <catch2/catch.hpp>

#include "scheduler/api/headers.hpp"

using namespace cogwheel::scheduler::api;
using namespace std::chrono_literals;

TEST_CASE("Prefer: wait alone waits 60 s", "[api][headers]") {
  for (const char* h : {"wait", "WAIT", " wait ", "respond-async, wait", "wait; foo=bar"}) {
    INFO(h);
    auto r = parse_prefer(h);
    CHECK(r.error.empty());
    CHECK(r.wait == 60s);
  }
}

TEST_CASE("Prefer: wait=N waits N s", "[api][headers]") {
  CHECK(parse_prefer("wait=1").wait == 1s);
  CHECK(parse_prefer("wait=60").wait == 60s);
  CHECK(parse_prefer("respond-async, wait=5").wait == 5s);
  CHECK(parse_prefer("wait = 7").wait == 7s);
  CHECK(parse_prefer("wait=\"9\"").wait == 9s);
  CHECK(parse_prefer("wait=10, wait=20").wait == 10s);  // the first wins (RFC 7240)
  CHECK(parse_prefer("handling=lenient, Wait=30;x").wait == 30s);
}

TEST_CASE("Prefer without wait asks nothing", "[api][headers]") {
  for (const char* h : {"", "respond-async", "return=minimal", "waiting=5", " , ,"}) {
    INFO(h);
    auto r = parse_prefer(h);
    CHECK_FALSE(r.wait);
    CHECK(r.error.empty());
  }
}

TEST_CASE("Prefer: wait with a bad value is an error", "[api][headers]") {
  for (const char* h : {"wait=0", "wait=61", "wait=1000000000000", "wait=", "wait=abc", "wait=-5",
                        "wait=5s", "wait=1.5", "wait=\"\"", "wait=+5"}) {
    INFO(h);
    auto r = parse_prefer(h);
    CHECK_FALSE(r.wait);
    CHECK_FALSE(r.error.empty());
  }
}

TEST_CASE("Cancel-After reads Go-style durations", "[api][headers]") {
  CHECK(parse_cancel_after("30s").value == 30s);
  CHECK(parse_cancel_after("5m").value == 5min);
  CHECK(parse_cancel_after("1h").value == 1h);
  CHECK(parse_cancel_after("1h30m").value == 90min);
  CHECK(parse_cancel_after("1m30s").value == 90s);
  CHECK(parse_cancel_after("5500ms").value == 5500ms);
  CHECK(parse_cancel_after("1.5h").value == 90min);
  CHECK(parse_cancel_after("5.000001s").value == 5000001us);
  CHECK(parse_cancel_after(" 10s ").value == 10s);
  CHECK(parse_cancel_after("5s").value == 5s);
  CHECK(parse_cancel_after("24h").value == 24h);
  CHECK(parse_cancel_after("23h60m").value == 24h);
  CHECK(parse_cancel_after("1.s").value == std::nullopt);  // below the minimum
  CHECK(parse_cancel_after(".5m").value == 30s);
}

TEST_CASE("Cancel-After refuses out-of-range and malformed values", "[api][headers]") {
  CHECK_THAT(parse_cancel_after("4s").error, Catch::Contains("at least 5 seconds"));
  CHECK_THAT(parse_cancel_after("500ms").error, Catch::Contains("at least 5 seconds"));
  CHECK_THAT(parse_cancel_after("0s").error, Catch::Contains("at least 5 seconds"));
  CHECK_THAT(parse_cancel_after("24h1ms").error, Catch::Contains("at most 24 hours"));
  CHECK_THAT(parse_cancel_after("99999999999999999999999h").error,
             Catch::Contains("at most 24 hours"));
  CHECK_THAT(parse_cancel_after("9223372036854775807ms9223372036854775807ms").error,
             Catch::Contains("at most 24 hours"));
  for (const char* h : {"", "30", "s", "30x", "-30s", "+30s", "30 s", "1h 30m", "30S", "1d", "30s,",
                        ".s", "1..5s", "30us", "1e3s"}) {
    INFO(h);
    auto r = parse_cancel_after(h);
    CHECK_FALSE(r.value);
    CHECK_FALSE(r.error.empty());
  }
}

TEST_CASE("bearer_token reads Bearer and Token schemes", "[api][headers]") {
  CHECK(bearer_token("Bearer cw_abc") == "cw_abc");
  CHECK(bearer_token("bearer cw_abc") == "cw_abc");
  CHECK(bearer_token("BEARER   cw_abc") == "cw_abc");
  CHECK(bearer_token("Token r8_xyz") == "r8_xyz");
  CHECK(bearer_token("token r8_xyz") == "r8_xyz");
  for (const char* h :
       {"", "Bearer", "Bearer ", "Bearer   ", "Basic dXNlcjpwYXNz", "Bearercw_abc", "cw_abc",
        "Bearer a b", "Bearer\tcw_abc", " Bearer cw_abc", "Bearer cw_abc\t"}) {
    INFO(h);
    CHECK_FALSE(bearer_token(h));
  }
}
