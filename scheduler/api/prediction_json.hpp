#pragma once
// The prediction object of the Replicate HTTP API, built from a stored row.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "storage/predictions.hpp"

namespace cogwheel::scheduler::api {

// `base` without its trailing slashes, e.g. "https://x.example/" -> "https://x.example".
std::string_view trim_base_url(std::string_view base);

// {get, cancel, stream, web} for a prediction id under the public base URL.
nlohmann::json prediction_urls(std::string_view public_base_url, std::string_view id);

// The API URL of a prediction: <base>/v1/predictions/<id>.
std::string prediction_url(std::string_view public_base_url, std::string_view id);

// The full prediction object: id, model, version, input, output, logs, error, error_code, status,
// source, data_removed, created_at, started_at, completed_at, deadline, urls, metrics, webhook,
// webhook_events_filter, deployment. input and output are null once data is removed; a JSON text
// column that does not parse is shown as null rather than failing the whole response.
// Compact JSON text, written directly (no document is built): what every response and webhook
// body carries.
std::string prediction_json_text(const storage::prediction_row& p,
                                 std::string_view public_base_url);
// The same object as a document (prediction_json_text parsed).
nlohmann::json prediction_json(const storage::prediction_row& p, std::string_view public_base_url);

// Appends `s` as a JSON string (quoted and escaped; invalid UTF-8 replaced by U+FFFD).
void append_json_string(std::string& out, std::string_view s);

}  // namespace cogwheel::scheduler::api
