#include "scheduler/cog_update.hpp"

#include <algorithm>
#include <cctype>

namespace cogwheel::scheduler {

using nlohmann::json;

namespace {

constexpr const char* cog_statuses[] = {"starting", "processing", "succeeded", "failed",
                                        "canceled"};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Whether `next` may replace `current` output while the prediction runs: never shorter.
bool output_is_newer(const std::string& current_text, const json& next) {
  if (next.is_null()) return false;  // a late update from before the first output
  if (current_text == "null") return true;
  json current = json::parse(current_text, nullptr, false);
  if (current.is_discarded()) return true;
  if (current.is_array() && next.is_array()) {
    return next.size() > current.size() || (next.size() == current.size() && next != current);
  }
  if (current.is_string() && next.is_string()) {
    // Streamed text: a longer string is newer; an equal-length one is a correction.
    return next.get_ref<const std::string&>().size() >=
               current.get_ref<const std::string&>().size() &&
           next != current;
  }
  return next != current;
}

}  // namespace

bool is_terminal(const std::string& status) {
  return status == "succeeded" || status == "failed" || status == "canceled" || status == "aborted";
}

bool event_wanted(const storage::prediction_row& p, const std::string& event) {
  if (!p.webhook) return false;
  if (!p.webhook_events_filter) return true;
  const auto& f = *p.webhook_events_filter;
  return std::find(f.begin(), f.end(), event) != f.end();
}

std::string failure_code(const std::string& cog_error) {
  const std::string e = lower(cog_error);
  // Cog 0.9: "Prediction failed for an unknown reason. It might have run out of memory?
  // (exitcode 137)"; Kubernetes and Docker say "OOMKilled".
  for (const char* sign :
       {"out of memory", "exitcode 137", "exit code 137", "oomkilled", "oom-kill", "oom kill"}) {
    if (e.find(sign) != std::string::npos) return "E1001";
  }
  return "E1000";
}

std::optional<cog_update> parse_cog_update(const json& body, std::string& why) {
  if (!body.is_object()) {
    why = "the body must be a JSON object";
    return std::nullopt;
  }
  cog_update u;
  auto id = body.find("id");
  if (id == body.end() || !id->is_string() || id->get_ref<const std::string&>().empty()) {
    why = "id must be a non-empty string";
    return std::nullopt;
  }
  u.id = id->get<std::string>();
  auto status = body.find("status");
  if (status == body.end() || !status->is_string()) {
    why = "status must be a string";
    return std::nullopt;
  }
  u.status = status->get<std::string>();
  if (std::find(std::begin(cog_statuses), std::end(cog_statuses), u.status) ==
      std::end(cog_statuses)) {
    why = "status must be one of starting, processing, succeeded, failed, canceled";
    return std::nullopt;
  }
  if (auto o = body.find("output"); o != body.end()) u.output = *o;
  if (auto l = body.find("logs"); l != body.end() && !l->is_null()) {
    if (!l->is_string()) {
      why = "logs must be a string";
      return std::nullopt;
    }
    u.logs = l->get<std::string>();
  }
  if (auto e = body.find("error"); e != body.end() && !e->is_null()) {
    u.error = e->is_string() ? e->get<std::string>() : e->dump();
  }
  if (auto m = body.find("metrics"); m != body.end() && m->is_object()) {
    if (auto p = m->find("predict_time"); p != m->end() && p->is_number()) {
      u.predict_time = p->get<double>();
    }
  }
  return u;
}

cog_update internal_update(std::string id, std::string status, std::string only_if,
                           std::string code, std::string message) {
  cog_update u;
  u.id = std::move(id);
  u.status = std::move(status);
  u.from_container = false;
  if (!only_if.empty()) u.only_if_status = std::move(only_if);
  if (!code.empty()) {
    u.error_code = std::move(code);
    u.error = std::move(message);
  }
  return u;
}

merge_result merge_update(const storage::prediction_row& current, const cog_update& u) {
  merge_result r;
  r.after = current;
  if (is_terminal(current.status)) return r;  // stale: a finished prediction never changes
  if (u.only_if_status && current.status != *u.only_if_status) return r;  // it moved on
  // Aborted means it never started; a started prediction is canceled instead.
  if (u.status == "aborted" && current.status != "starting") return r;
  auto& a = r.after;
  const bool terminal = is_terminal(u.status);
  const bool starts = current.status == "starting" && u.status != "starting" && u.from_container;
  if (starts) {
    a.status = "processing";
    a.started_at = a.created_at;  // marker: the database sets the time
  }
  bool output_changed = false, logs_changed = false;
  if (u.output) {
    if (terminal ? u.output->dump() != current.output_json
                 : output_is_newer(current.output_json, *u.output)) {
      a.output_json = u.output->dump();
      output_changed = true;
    }
  }
  if (u.logs && *u.logs != current.logs && (terminal || u.logs->size() >= current.logs.size())) {
    a.logs = *u.logs;
    logs_changed = true;
  }
  if (terminal) {
    a.status = u.status;
    a.completed_at = a.created_at;  // marker
    if (u.status == "failed") {
      const std::string text = u.error.value_or("the model failed without an error message");
      a.error_code = u.error_code ? *u.error_code : failure_code(text);
      a.error = *a.error_code + ": " + text;
    } else {
      a.error.reset();
      a.error_code.reset();
    }
    if (u.status == "succeeded" && !a.started_at) a.started_at = a.created_at;
    json metrics = json::object();
    if (u.predict_time) metrics["predict_time"] = *u.predict_time;
    a.metrics_json = metrics.dump();
  }
  if (starts && event_wanted(current, "start")) r.events.push_back("start");
  if (!terminal) {
    if (output_changed && event_wanted(current, "output")) r.events.push_back("output");
    if (logs_changed && event_wanted(current, "logs")) r.events.push_back("logs");
  } else if (event_wanted(current, "completed")) {
    r.events.push_back("completed");
  }
  r.changed = starts || output_changed || logs_changed || terminal;
  return r;
}

}  // namespace cogwheel::scheduler
