#pragma once
// Request headers of the create route: Prefer, Cancel-After, Authorization.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace cogwheel::scheduler::api {

inline constexpr std::chrono::seconds max_prefer_wait{60};

// `Prefer: wait` (60 s) or `wait=N` with N in 1..60 (RFC 7240: preference names are
// case-insensitive, the value may be quoted, other preferences and `;` parameters are ignored, the
// first `wait` wins). `wait` is nullopt when not asked; `error` is non-empty when malformed.
struct prefer_result {
  std::optional<std::chrono::seconds> wait;
  std::string error;
};
prefer_result parse_prefer(std::string_view header);

inline constexpr std::chrono::seconds min_cancel_after{5};
inline constexpr std::chrono::hours max_cancel_after{24};

// `Cancel-After`: one or more <number><unit> terms, Go-style: "30s", "5m", "1h30m", "500ms",
// "1.5h". Units: h, m, s, ms. The total must lie in [5 s, 24 h]; `error` is non-empty otherwise.
struct duration_result {
  std::optional<std::chrono::microseconds> value;
  std::string error;
};
duration_result parse_cancel_after(std::string_view header);

// The token of `Bearer <t>` or `Token <t>` (scheme case-insensitive, one or more spaces between);
// nullopt for any other form, an empty token, or a token containing whitespace.
std::optional<std::string> bearer_token(std::string_view authorization);

}  // namespace cogwheel::scheduler::api
