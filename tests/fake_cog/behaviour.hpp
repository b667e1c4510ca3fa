// fake_cog: the pure part. Parsing of a prediction request (Cog 0.9's PredictionRequest) and of its
// input into a plan of what the fake model does, plus the documents built from pure data.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace fake_cog {

// One entry of a 422 body, as FastAPI/pydantic v1 reports it.
struct field_error {
  nlohmann::json loc;  // e.g. ["body", "input", "sleep_ms"]
  std::string msg;
  std::string type;  // e.g. "type_error.integer", "value_error"
};

// {"detail": [{"loc", "msg", "type"}, ...]}
nlohmann::json validation_body(const std::vector<field_error>& errors);

// What a prediction does, chosen by its input. After `start_delay_ms` (in `starting`), the steps
// run in this order: `max(logs, outputs)`
// steps (each waits `interval_ms`, then appends log line i and/or output item i), then `sleep_ms`,
// then `hang` (until canceled), then the ending: exit_137, fail, upload or success.
struct plan {
  std::optional<nlohmann::json> prompt;  // the input's `prompt`, any JSON value
  std::int64_t sleep_ms = 0;
  std::optional<std::int64_t> outputs;  // set: a generator, the output is a growing list
  std::int64_t interval_ms = 0;
  std::int64_t logs = 0;
  std::optional<std::string> fail;  // the error message
  bool exit_137 = false;
  bool hang = false;
  std::optional<std::string> upload;  // file name
  std::string content;                // the uploaded file's bytes
  // Accepted but held in `starting` this long before it starts (the 202 says "starting" and the
  // start webhook comes later), as a container that queues work does.
  std::int64_t start_delay_ms = 0;

  bool generator() const { return outputs.has_value(); }
  std::int64_t steps() const { return std::max(logs, outputs.value_or(0)); }
};

inline constexpr std::int64_t max_count = 100'000;  // of outputs and of logs
inline constexpr std::string_view default_fail_message = "fake_cog: prediction failed as asked";
inline constexpr std::string_view exit_137_message =
    "Prediction failed for an unknown reason. It might have run out of memory? (exitcode 137)";
inline constexpr std::string_view upload_failed_message = "Got error trying to upload output files";

// Parses a prediction's input (a JSON object). Errors have loc ["body", "input", <field>].
// Unknown fields are ignored (they are echoed).
std::variant<plan, std::vector<field_error>> parse_plan(const nlohmann::json& input);

// The output of a plain prediction: the input's `prompt` if present, else the whole input.
nlohmann::json echo_output(const nlohmann::json& input);
// Item i (0-based) of a generator: "<prompt>-<i>" (prompt as text; "out" without a prompt).
std::string generator_item(const plan& p, std::int64_t i);
// Log line i (0-based): "log line <i>\n".
std::string log_line(std::int64_t i);
// The Content-Type of an uploaded file, by its extension.
std::string content_type_for(std::string_view file_name);

// Webhook events, as a bit mask.
enum event : unsigned { ev_start = 1, ev_output = 2, ev_logs = 4, ev_completed = 8 };
inline constexpr unsigned all_events = ev_start | ev_output | ev_logs | ev_completed;
std::string_view event_name(event e);

// A parsed PUT /predictions/{id} or POST /predictions body.
struct prediction_request {
  std::string id;  // "" when neither the URL nor the body names one
  nlohmann::json input = nlohmann::json::object();
  std::optional<std::string> webhook;
  unsigned events = all_events;  // null or [] in the request: every event, as in Cog 0.9
  nlohmann::json events_json;    // the filter as echoed in states: as given, or the default list
  nlohmann::json created_at;     // as given (string) or null
  nlohmann::json output_file_prefix;
  plan behaviour;
};

// Parses a request body ("" is an empty request). `url_id` is the id of the URL ("" for POST
// /predictions); a body id that differs from it is an error, as in Cog.
std::variant<prediction_request, std::vector<field_error>> parse_request(std::string_view body,
                                                                         std::string_view url_id);

// A timestamp as Python's datetime.isoformat() of an aware UTC time:
// "2024-05-01T12:34:56.123456+00:00".
std::string iso_timestamp(std::chrono::system_clock::time_point t);

// The delay before terminal-webhook retry `retry` (1-based), like urllib3's Retry with
// backoff_factor `base`: 0 for the first retry, then base * 2^(retry-1), at most 120 s.
std::chrono::milliseconds retry_delay(int retry, std::chrono::milliseconds base);

// The GET /openapi.json document.
nlohmann::json openapi_document();

}  // namespace fake_cog
