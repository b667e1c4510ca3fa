#pragma once
// Validation of a create-prediction body for the three create routes. Pure: no lookups; whether a
// version or model exists is the caller's business.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace cogwheel::scheduler::api {

enum class create_route {
  predictions,  // POST /v1/predictions
  model,        // POST /v1/models/{owner}/{name}/predictions
  deployment,   // POST /v1/deployments/{owner}/{name}/predictions
};

// "64hex" | "owner/name" | "owner/name:64hex". owner and name are both set or both empty.
struct version_ref {
  std::optional<std::string> owner, name;
  std::optional<std::string> id;
  bool operator==(const version_ref&) const = default;
};

// True for 64 lower-case hex characters (the versions table's CHECK).
bool is_version_id(std::string_view s);
// True for an owner or model name: `^[A-Za-z0-9][A-Za-z0-9_.-]*$`.
bool is_slug(std::string_view s);
std::optional<version_ref> parse_version_ref(std::string_view s);

inline constexpr std::size_t max_webhook_length = 2048;
// Checks an absolute http(s) URL with a non-empty host, at most 2048 characters (a fragment is
// allowed and kept; it is never sent). Returns the URL with its scheme lower-cased (the database
// CHECK is `^https?://`), or nullopt and sets `reason`.
std::optional<std::string> normalize_webhook_url(std::string_view s, std::string& reason);

struct create_request {
  std::optional<version_ref> version;  // set on the predictions route only
  nlohmann::json input;                // always an object
  std::optional<std::string> webhook;  // nullopt when absent, null or ""
  std::optional<std::vector<std::string>> webhook_events_filter;  // non-empty, unique
};

struct invalid_field {
  std::string field;
  std::string reason;
  bool operator==(const invalid_field&) const = default;
};

struct validation_error {
  int status = 422;  // 400 when the body is not a JSON object
  std::string code;  // "" or "E4875"
  std::string detail;
  std::vector<invalid_field> fields;  // every invalid field, in a fixed order
};

// Parses and validates a body. Every problem is collected into one validation_error.
std::variant<create_request, validation_error> parse_create(std::string_view body,
                                                            create_route route);

}  // namespace cogwheel::scheduler::api
