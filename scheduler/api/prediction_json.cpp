#include "scheduler/api/prediction_json.hpp"

#include "scheduler/api/timefmt.hpp"

namespace cogwheel::scheduler::api {

namespace {

using nlohmann::json;

json parse_column(std::string_view text) {
  json v = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return v.is_discarded() ? json(nullptr) : v;
}

json time_or_null(const std::optional<storage::micros>& t) {
  return t ? json(rfc3339_micros(*t)) : json(nullptr);
}

template <typename T>
json value_or_null(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

}  // namespace

std::string_view trim_base_url(std::string_view base) {
  while (!base.empty() && base.back() == '/') base.remove_suffix(1);
  return base;
}

json prediction_urls(std::string_view public_base_url, std::string_view id) {
  const std::string base(trim_base_url(public_base_url));
  const std::string api = base + "/v1/predictions/" + std::string(id);
  return {{"get", api},
          {"cancel", api + "/cancel"},
          {"stream", api + "/stream"},
          {"web", base + "/p/" + std::string(id)}};
}

json prediction_json(const storage::prediction_row& p, std::string_view public_base_url) {
  json metrics = p.metrics_json ? parse_column(*p.metrics_json) : json(nullptr);
  if (!metrics.is_object()) metrics = json::object();
  return {
      {"id", p.id},
      {"model", p.model},
      {"version", p.version_id},
      {"input", p.data_removed ? json(nullptr) : parse_column(p.input_json)},
      {"output", p.data_removed ? json(nullptr) : parse_column(p.output_json)},
      {"logs", p.logs},
      {"error", value_or_null(p.error)},
      {"error_code", value_or_null(p.error_code)},
      {"status", p.status},
      {"source", p.source},
      {"data_removed", p.data_removed},
      {"created_at", rfc3339_micros(p.created_at)},
      {"started_at", time_or_null(p.started_at)},
      {"completed_at", time_or_null(p.completed_at)},
      {"deadline", time_or_null(p.deadline)},
      {"urls", prediction_urls(public_base_url, p.id)},
      {"metrics", std::move(metrics)},
      {"webhook", value_or_null(p.webhook)},
      {"webhook_events_filter", value_or_null(p.webhook_events_filter)},
      {"deployment", value_or_null(p.deployment)},
  };
}

}  // namespace cogwheel::scheduler::api
