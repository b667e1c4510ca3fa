#include "scheduler/stream_hub.hpp"

#include <charconv>
#include <nlohmann/json.hpp>

#include "scheduler/cog_update.hpp"

namespace cogwheel::scheduler {

using nlohmann::json;

namespace {

std::string item_text(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// What was appended to `before` to give `after`; all of `after` when it is not an extension.
std::string appended(const std::string& before, const std::string& after) {
  if (after.size() >= before.size() && after.compare(0, before.size(), before) == 0) {
    return after.substr(before.size());
  }
  return after;
}

int status_rank(const std::string& status) {
  if (status == "starting") return 0;
  if (status == "processing") return 1;
  return 2;
}

std::size_t output_items(const std::string& output_json) {
  const json v = json::parse(output_json, nullptr, false);
  if (v.is_array()) return v.size();
  if (v.is_string()) return v.get_ref<const std::string&>().size();
  return v.is_null() || v.is_discarded() ? 0 : 1;
}

}  // namespace

bool is_older(const storage::prediction_row& row, const storage::prediction_row& than) {
  const int a = status_rank(row.status), b = status_rank(than.status);
  if (a != b) return a < b;
  // The same phase: running output and logs only grow.
  return row.logs.size() < than.logs.size() ||
         output_items(row.output_json) < output_items(than.output_json);
}

std::vector<sse_event> derive_events(const storage::prediction_row* before,
                                     const storage::prediction_row& after) {
  std::vector<sse_event> out;
  const std::string before_output = before ? before->output_json : "null";
  if (after.output_json != before_output && after.output_json != "null") {
    const json next = json::parse(after.output_json, nullptr, false);
    const json prev = json::parse(before_output, nullptr, false);
    if (next.is_array()) {
      const std::size_t from = prev.is_array() && prev.size() <= next.size() ? prev.size() : 0;
      for (std::size_t i = from; i < next.size(); ++i)
        out.push_back({0, "output", item_text(next[i])});
    } else if (next.is_string()) {
      const std::string chunk =
          appended(prev.is_string() ? prev.get<std::string>() : "", next.get<std::string>());
      if (!chunk.empty()) out.push_back({0, "output", chunk});
    } else if (!next.is_discarded()) {
      out.push_back({0, "output", next.dump()});
    }
  }
  const std::string before_logs = before ? before->logs : "";
  if (after.logs != before_logs) {
    const std::string chunk = appended(before_logs, after.logs);
    if (!chunk.empty()) out.push_back({0, "logs", chunk});
  }
  const bool was_terminal = before && is_terminal(before->status);
  if (is_terminal(after.status) && !was_terminal) {
    if (after.status == "failed") {
      out.push_back({0, "error", json{{"detail", after.error.value_or("failed")}}.dump()});
    }
    std::string done = "{}";
    if (after.status == "failed") done = R"({"reason":"error"})";
    if (after.status == "canceled" || after.status == "aborted") done = R"({"reason":"canceled"})";
    out.push_back({0, "done", done});
  }
  return out;
}

std::string format_event(const sse_event& e, std::int64_t seconds) {
  std::string out =
      "id: " + std::to_string(seconds) + ":" + std::to_string(e.seq) + "\nevent: " + e.event + "\n";
  // One data line per line of the text; SSE clients end a line at CRLF, LF or a lone CR (which
  // progress bars print), so all three split here.
  std::size_t start = 0;
  for (;;) {
    const auto end = e.data.find_first_of("\r\n", start);
    out += "data: " + e.data.substr(start, end == std::string::npos ? end : end - start) + "\n";
    if (end == std::string::npos) break;
    start = end + (e.data.compare(end, 2, "\r\n") == 0 ? 2 : 1);
  }
  out += "\n";
  return out;
}

std::uint64_t parse_last_event_id(std::string_view id) {
  const auto number = [](std::string_view digits, std::uint64_t& value) {
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    return !digits.empty() && ec == std::errc{} && p == digits.data() + digits.size();
  };
  const auto colon = id.find(':');
  if (colon == std::string_view::npos) return 0;
  std::uint64_t seconds = 0, seq = 0;
  if (!number(id.substr(0, colon), seconds) || !number(id.substr(colon + 1), seq)) return 0;
  return seq;
}

void stream_hub::track(const storage::prediction_row& row) {
  std::lock_guard lock(mu_);
  purge_locked();
  if (tracked_.contains(row.id)) return;
  tracked t;
  t.last = row;
  t.events = derive_events(nullptr, row);
  for (std::size_t i = 0; i < t.events.size(); ++i) t.events[i].seq = i + 1;
  t.version = 1;
  if (is_terminal(row.status)) t.ended_at = std::chrono::steady_clock::now();
  tracked_.emplace(row.id, std::move(t));
}

void stream_hub::feed(const storage::prediction_row& row) {
  std::lock_guard lock(mu_);
  auto it = tracked_.find(row.id);
  if (it == tracked_.end()) return;
  auto& t = it->second;
  if (is_terminal(t.last.status)) return;  // ended: nothing follows `done`
  if (is_older(row, t.last)) return;       // a state read before the newest one fed
  auto events = derive_events(&t.last, row);
  for (auto& e : events) {
    e.seq = t.events.size() + 1;
    t.events.push_back(std::move(e));
  }
  t.last = row;
  ++t.version;
  if (is_terminal(row.status)) t.ended_at = std::chrono::steady_clock::now();
}

std::optional<stream_hub::view> stream_hub::events_after(const std::string& id,
                                                         std::uint64_t after) {
  std::lock_guard lock(mu_);
  auto it = tracked_.find(id);
  if (it == tracked_.end()) return std::nullopt;
  view v;
  const auto& t = it->second;
  for (const auto& e : t.events) {
    if (e.seq > after) v.events.push_back(e);
  }
  v.ended = t.ended_at.has_value();
  v.seconds = t.last.created_at / 1'000'000;
  v.version = t.version;
  return v;
}

void stream_hub::purge_locked() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = tracked_.begin(); it != tracked_.end();) {
    if (it->second.ended_at && now - *it->second.ended_at > keep_after_end_) {
      it = tracked_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace cogwheel::scheduler
