#pragma once
// RFC 3339 timestamps as the API shows them: UTC, `Z`, always six fractional digits.
#include <optional>
#include <string>
#include <string_view>

#include "storage/predictions.hpp"

namespace cogwheel::scheduler::api {

// e.g. 2026-11-22T01:19:34.765994Z. Times before 1970 are floored correctly.
std::string rfc3339_micros(storage::micros t);

// Accepts `YYYY-MM-DDTHH:MM:SS[.fraction]` followed by `Z` or `±HH:MM` (`T`/`Z` in either case),
// or a date alone `YYYY-MM-DD` (midnight UTC). Fractions beyond microseconds are truncated.
// Refuses anything else, including impossible dates (Feb 30) and leap seconds (:60).
std::optional<storage::micros> parse_rfc3339(std::string_view s);

// The system clock in microseconds since the epoch.
storage::micros now_micros();

}  // namespace cogwheel::scheduler::api
