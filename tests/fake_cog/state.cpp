#include "tests/fake_cog/state.hpp"

#include "tests/fake_cog/behaviour.hpp"

namespace fake_cog {

using nlohmann::json;

double prediction_state::predict_time() const {
  if (!completed_at) return 0.0;
  return std::chrono::duration<double>(*completed_at - started_at).count();
}

json webhook_json(const prediction_state& s) {
  json j = {{"id", s.id},
            {"input", s.input},
            {"output", s.output},
            {"logs", s.logs},
            {"status", s.status},
            {"created_at", s.created_at},
            {"started_at", iso_timestamp(s.started_at)},
            {"webhook", s.webhook},
            {"webhook_events_filter", s.webhook_events_filter},
            {"output_file_prefix", s.output_file_prefix}};
  if (s.error) j["error"] = *s.error;
  if (s.completed_at) j["completed_at"] = iso_timestamp(*s.completed_at);
  if (s.has_metrics) j["metrics"] = {{"predict_time", s.predict_time()}};
  return j;
}

json full_json(const prediction_state& s) {
  json j = webhook_json(s);
  j["version"] = nullptr;
  if (!j.contains("error")) j["error"] = nullptr;
  if (!j.contains("completed_at")) j["completed_at"] = nullptr;
  if (!j.contains("metrics")) j["metrics"] = nullptr;
  return j;
}

bool is_terminal(std::string_view status) {
  return status == "succeeded" || status == "failed" || status == "canceled";
}

}  // namespace fake_cog
