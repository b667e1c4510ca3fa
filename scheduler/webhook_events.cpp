#include "scheduler/webhook_events.hpp"

#include "scheduler/api/ids.hpp"
#include "scheduler/api/prediction_json.hpp"
#include "scheduler/cog_update.hpp"

namespace cogwheel::scheduler {

std::vector<storage::delivery_new> webhook_deliveries_for(const storage::prediction_row& row,
                                                          const std::set<std::string>& events,
                                                          const std::string& public_url) {
  std::vector<storage::delivery_new> out;
  if (!row.webhook || events.empty()) return out;
  std::vector<std::string> wanted;
  for (const char* ev : {"start", "output", "logs", "completed"}) {
    if (events.contains(ev) && event_wanted(row, ev)) wanted.emplace_back(ev);
  }
  if (wanted.empty()) return out;
  const bool completed = events.contains("completed") && event_wanted(row, "completed");
  const std::string payload = api::prediction_json_text(row, public_url);
  // Started and finished in one change (a fast model whose updates were applied together): the
  // start event carries the prediction as it was when it started, not its final state.
  std::string start_payload = payload;
  if (completed && row.started_at) {
    storage::prediction_row started = row;
    started.status = "processing";
    started.output_json = "null";
    started.logs.clear();
    started.error.reset();
    started.error_code.reset();
    started.metrics_json.reset();
    started.completed_at.reset();
    start_payload = api::prediction_json_text(started, public_url);
  }
  bool snapshot = false;  // an output or logs delivery already queued for this change
  for (const auto& ev : wanted) {
    const bool throttled = ev == "output" || ev == "logs";
    if (throttled && (completed || snapshot)) continue;
    snapshot = snapshot || throttled;
    storage::delivery_new d{
        "msg_" + api::new_prediction_id(),      row.id, row.token_id, ev, *row.webhook,
        ev == "start" ? start_payload : payload};
    d.supersedes = ev == "completed" && (event_wanted(row, "output") || event_wanted(row, "logs"));
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace cogwheel::scheduler
