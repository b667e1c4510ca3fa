// fake_cog: a prediction's state (Cog 0.9's PredictionResponse) and its two JSON forms. Pure.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace fake_cog {

struct prediction_state {
  std::string id;
  nlohmann::json input = nlohmann::json::object();
  nlohmann::json output;  // null until set
  std::string logs;
  std::optional<std::string> error;
  std::string status = "processing";
  nlohmann::json created_at;  // as the request gave it, or null
  std::chrono::system_clock::time_point started_at;
  std::optional<std::chrono::system_clock::time_point> completed_at;
  bool has_metrics = false;  // Cog 0.9 sets metrics only when a prediction succeeds
  nlohmann::json webhook;    // null or the URL
  nlohmann::json webhook_events_filter = nlohmann::json::array();
  nlohmann::json output_file_prefix;

  // Seconds from started_at to completed_at (0 before completion).
  double predict_time() const;
};

// The form of HTTP responses (202, sync 200), like jsonable_encoder(response): every field,
// null when unset: id, version, input, output, logs, error, status, created_at, started_at,
// completed_at, metrics, webhook, webhook_events_filter, output_file_prefix.
nlohmann::json full_json(const prediction_state& s);

// The form of webhook bodies, like response.dict(exclude_unset=True): no `version`; `error`,
// `completed_at` and `metrics` only once set.
nlohmann::json webhook_json(const prediction_state& s);

bool is_terminal(std::string_view status);

}  // namespace fake_cog
