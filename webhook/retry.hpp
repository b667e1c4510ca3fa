#pragma once
// What to do after a webhook attempt: the retry schedule (PROTOCOLS.md §2, like the Standard
// Webhooks example), 410, Retry-After. Pure functions, no I/O.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cogwheel::webhook {

using std::chrono::milliseconds;

struct retry_options {
  // Delay before each attempt after a failure: entry i is waited before attempt i + 1 (entry 0,
  // before the first attempt, is the immediate try). completed events are retried until delivered
  // through this schedule; the others get a few quick retries within a minute, then are dropped.
  std::vector<milliseconds> completed = default_completed();
  std::vector<milliseconds> other = default_other();
  double time_scale = 1.0;  // multiplies every delay of the schedules (tests compress the clock)
  double jitter = 0.1;      // each delay is spread by up to ± this fraction
  std::chrono::seconds max_retry_after{3'600};  // Retry-After is honoured up to this
  // Throws std::invalid_argument naming the bad value.
  void validate() const;

  static std::vector<milliseconds> default_completed();  // 0, 5 s, 5 min, 30 min, 2 h ... 24 h
  static std::vector<milliseconds> default_other();      // 0, 1 s, 5 s, 15 s, 30 s
};

// "0,5s,5m,30m,2h" (units ms, s, m, h; a bare number is seconds); throws std::invalid_argument.
std::vector<milliseconds> parse_schedule(std::string_view text);
std::string format_schedule(const std::vector<milliseconds>& schedule);

// One attempt's result as the schedule sees it.
struct attempt_result {
  int status = 0;  // 0 when no response was read
  std::optional<std::chrono::seconds> retry_after;
};

struct verdict {
  std::string state;      // delivered | pending | failed | dropped | disabled
  milliseconds delay{0};  // until the next attempt, when pending
  bool disable_url = false;
};

// After attempt number `attempt` (from 1) of an `event` delivery. `random01` in [0, 1) draws the
// jitter. 2xx: delivered. 410: disabled (the URL too). Anything else is a failure: pending with
// the schedule's next delay (at least Retry-After, clamped, on 429 and 503), or when the schedule
// is exhausted failed (completed) or dropped (start, output, logs).
verdict judge(const retry_options& opts, std::string_view event, int attempt,
              const attempt_result& result, double random01);

}  // namespace cogwheel::webhook
