#pragma once
// What a Cog container's prediction state (its webhook body, or the body of its 202) means for a
// stored prediction: a pure merge, so that out-of-order and duplicate updates can be reasoned
// about and tested without I/O.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "storage/predictions.hpp"

namespace cogwheel::scheduler {

// A container's report on one prediction, validated.
struct cog_update {
  std::string id;
  std::string status;                    // starting | processing | succeeded | failed | canceled
  std::optional<nlohmann::json> output;  // absent: not reported
  std::optional<std::string> logs;
  std::optional<std::string> error;
  std::optional<double> predict_time;  // metrics.predict_time, seconds
  // Set by cogwheel itself for failures it decides (E9243, E8367, ...): the code to record. Such
  // updates never mark a prediction as started.
  std::optional<std::string> error_code;
  bool from_container = true;
  // Set by cogwheel for its own decisions (timeouts, aborts): applied only while the prediction is
  // still in this status, and stale otherwise. Such updates may also be `aborted`.
  std::optional<std::string> only_if_status;
};

// cogwheel's own decision about a prediction: a failure with its code and message, or a cancel or
// abort (error_code and message empty), applied only while it is in `only_if` ("" = any live one).
cog_update internal_update(std::string id, std::string status, std::string only_if = "",
                           std::string code = "", std::string message = "");

// Parses a Cog prediction body. nullopt with `why` set when it is not one (not an object, no id,
// unknown status, wrong field types).
std::optional<cog_update> parse_cog_update(const nlohmann::json& body, std::string& why);

// The result of merging an update into a stored prediction.
struct merge_result {
  bool changed = false;
  storage::prediction_row after;
  std::vector<std::string>
      events;  // webhook events this change causes: start/output/logs/completed
};

// Forward-only merge:
// - a terminal prediction never changes (a late or duplicate update is stale);
// - starting -> processing sets started_at; a terminal update sets completed_at and its error;
// - output and logs are replaced by the newest, and "newest" is judged by length while running
//   (Cog sends the full list of generator outputs and the full log text each time), so an older
//   update arriving late never shortens them; a terminal update carries the final values;
// - a failed update becomes E1001 when the container died (out of memory, exit code 137) and
//   E1000 otherwise, keeping the model's text after the code.
// Timestamps in `after` are only markers (the database sets the real ones).
merge_result merge_update(const storage::prediction_row& current, const cog_update& u);

// The error code of a failed Cog prediction's error text.
std::string failure_code(const std::string& cog_error);

bool is_terminal(const std::string& status);

// Whether an event passes a prediction's webhook_events_filter (absent: all events).
bool event_wanted(const storage::prediction_row& p, const std::string& event);

}  // namespace cogwheel::scheduler
