// A container's health as Cog's GET /health-check reports it (PROTOCOLS.md §3).
#include "scheduler/container_pool.hpp"

#include <catch2/catch.hpp>

using cogwheel::scheduler::container_health;
using cogwheel::scheduler::parse_health;
using cogwheel::scheduler::to_string;

TEST_CASE("parse_health reads every Cog health status", "[container_pool]") {
  CHECK(parse_health("STARTING") == container_health::starting);
  CHECK(parse_health("READY") == container_health::ready);
  CHECK(parse_health("BUSY") == container_health::busy);
  CHECK(parse_health("SETUP_FAILED") == container_health::setup_failed);
  CHECK(parse_health("DEFUNCT") == container_health::defunct);
}

TEST_CASE("parse_health of any other text is unknown", "[container_pool]") {
  for (const char* s : {"", "ready", "Ready", "READY ", "OK", "unreachable", "unknown"}) {
    INFO('"' << s << '"');
    CHECK(parse_health(s) == container_health::unknown);
  }
}

TEST_CASE("to_string names each health, Cog's in Cog's words", "[container_pool]") {
  CHECK(std::string(to_string(container_health::unknown)) == "unknown");
  CHECK(std::string(to_string(container_health::starting)) == "STARTING");
  CHECK(std::string(to_string(container_health::ready)) == "READY");
  CHECK(std::string(to_string(container_health::busy)) == "BUSY");
  CHECK(std::string(to_string(container_health::setup_failed)) == "SETUP_FAILED");
  CHECK(std::string(to_string(container_health::defunct)) == "DEFUNCT");
  CHECK(std::string(to_string(container_health::unreachable)) == "unreachable");
}

TEST_CASE("to_string and parse_health round-trip Cog's statuses", "[container_pool]") {
  for (auto h : {container_health::starting, container_health::ready, container_health::busy,
                 container_health::setup_failed, container_health::defunct}) {
    INFO(to_string(h));
    CHECK(parse_health(to_string(h)) == h);
  }
  // Not Cog statuses: unreachable is cogwheel's own observation.
  CHECK(parse_health(to_string(container_health::unreachable)) == container_health::unknown);
}
