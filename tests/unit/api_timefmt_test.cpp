#include <catch2/catch.hpp>

#include "scheduler/api/timefmt.hpp"

using namespace cogwheel::scheduler::api;

namespace {
constexpr cogwheel::storage::micros example = 1795310374765994;  // 2026-11-22T01:19:34.765994Z
}

TEST_CASE("rfc3339_micros prints UTC with six digits and Z", "[api][time]") {
  CHECK(rfc3339_micros(example) == "2026-11-22T01:19:34.765994Z");
  CHECK(rfc3339_micros(0) == "1970-01-01T00:00:00.000000Z");
  CHECK(rfc3339_micros(1) == "1970-01-01T00:00:00.000001Z");
  CHECK(rfc3339_micros(-1) == "1969-12-31T23:59:59.999999Z");
  CHECK(rfc3339_micros(951782400000000) == "2000-02-29T00:00:00.000000Z");
  CHECK(rfc3339_micros(-62135596800000000) == "0001-01-01T00:00:00.000000Z");
  CHECK(rfc3339_micros(253402300799999999) == "9999-12-31T23:59:59.999999Z");
  CHECK(rfc3339_micros(253402300800000000) == "10000-01-01T00:00:00.000000Z");  // past 4 digits
}

TEST_CASE("parse_rfc3339 accepts timestamps with Z or an offset", "[api][time]") {
  CHECK(parse_rfc3339("2026-11-22T01:19:34.765994Z") == example);
  CHECK(parse_rfc3339("2026-11-22t01:19:34.765994z") == example);
  CHECK(parse_rfc3339("2026-11-22T01:19:34Z") == example - 765994);
  CHECK(parse_rfc3339("2026-11-22T01:19:34.7Z") == example - 65994);
  CHECK(parse_rfc3339("2026-11-22T01:19:34.765994999Z") == example);  // truncated
  CHECK(parse_rfc3339("2026-11-22T03:19:34.765994+02:00") == example);
  CHECK(parse_rfc3339("2026-11-21T20:49:34.765994-04:30") == example);
  CHECK(parse_rfc3339("1970-01-01T00:00:00+00:00") == 0);
}

TEST_CASE("parse_rfc3339 accepts a date alone as midnight UTC", "[api][time]") {
  CHECK(parse_rfc3339("1970-01-02") == 86400000000);
  CHECK(parse_rfc3339("2000-02-29") == 951782400000000);
}

TEST_CASE("parse_rfc3339 refuses everything else", "[api][time]") {
  for (const char* bad : {"",
                          "2026",
                          "2026-11",
                          "2026-11-22T",
                          "2026-11-22T01:19Z",
                          "2026-11-22T01:19:34",
                          "2026-11-22 01:19:34Z",
                          "2026-11-22T01:19:34.Z",
                          "2026-11-22T01:19:34+0200",
                          "2026-11-22T01:19:34+02",
                          "2026-11-22T01:19:34+24:00",
                          "2026-11-22T01:19:34+02:60",
                          "2026-02-30",
                          "2025-02-29",
                          "2026-13-01",
                          "2026-00-10",
                          "2026-11-00",
                          "2026-11-22T24:00:00Z",
                          "2026-11-22T01:60:00Z",
                          "2026-11-22T01:19:60Z",
                          "2026-11-22T01:19:34ZZ",
                          "+2026-11-22",
                          "2026-11-22x",
                          "2026-1-22",
                          "２０２６-11-22",
                          "2026-11-22T01:19:34.765994Z "}) {
    INFO(bad);
    CHECK_FALSE(parse_rfc3339(bad));
  }
}

TEST_CASE("rfc3339_micros and parse_rfc3339 round-trip", "[api][time]") {
  for (cogwheel::storage::micros t :
       {example, cogwheel::storage::micros{0}, cogwheel::storage::micros{-1}, now_micros()}) {
    CHECK(parse_rfc3339(rfc3339_micros(t)) == t);
  }
}

TEST_CASE("now_micros is the current time", "[api][time]") {
  CHECK(now_micros() > example - 365LL * 86400 * 1000000 * 2);  // later than 2024-11
}
