#include "webhook/retry.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace cogwheel::webhook {

using namespace std::chrono_literals;

std::vector<milliseconds> retry_options::default_completed() {
  return {0ms, 5s, 5min, 30min, 2h, 5h, 10h, 14h, 20h, 24h};
}

std::vector<milliseconds> retry_options::default_other() {
  return {0ms, 1s, 5s, 15s, 30s};
}

void retry_options::validate() const {
  if (completed.empty() || other.empty()) {
    throw std::invalid_argument("a webhook retry schedule needs at least one entry");
  }
  if (!(time_scale > 0) || !std::isfinite(time_scale)) {
    throw std::invalid_argument("the webhook time scale must be a positive number");
  }
  if (!(jitter >= 0 && jitter < 1)) {
    throw std::invalid_argument("the webhook retry jitter must be in [0, 1)");
  }
  if (max_retry_after.count() < 0) {
    throw std::invalid_argument("the longest Retry-After honoured must not be negative");
  }
}

std::vector<milliseconds> parse_schedule(std::string_view text) {
  std::vector<milliseconds> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    long long n = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), n);
    const std::string_view unit(end, item.data() + item.size() - end);
    if (item.empty() || ec != std::errc() || n < 0) {
      throw std::invalid_argument("bad webhook retry schedule entry \"" + std::string(item) +
                                  "\": expected a duration like 500ms, 5s, 5m or 2h");
    }
    if (unit == "ms") {
      out.push_back(milliseconds(n));
    } else if (unit.empty() || unit == "s") {
      out.push_back(std::chrono::seconds(n));
    } else if (unit == "m") {
      out.push_back(std::chrono::minutes(n));
    } else if (unit == "h") {
      out.push_back(std::chrono::hours(n));
    } else {
      throw std::invalid_argument("bad unit in webhook retry schedule entry \"" +
                                  std::string(item) + "\": use ms, s, m or h");
    }
    start = comma + 1;
  }
  return out;
}

std::string format_schedule(const std::vector<milliseconds>& schedule) {
  std::string out;
  for (auto d : schedule) {
    if (!out.empty()) out += ',';
    const auto ms = d.count();
    if (ms % 3'600'000 == 0 && ms != 0) {
      out += std::to_string(ms / 3'600'000) + "h";
    } else if (ms % 60'000 == 0 && ms != 0) {
      out += std::to_string(ms / 60'000) + "m";
    } else if (ms % 1'000 == 0) {
      out += std::to_string(ms / 1'000) + "s";
    } else {
      out += std::to_string(ms) + "ms";
    }
  }
  return out;
}

verdict judge(const retry_options& opts, std::string_view event, int attempt,
              const attempt_result& result, double random01) {
  if (result.status >= 200 && result.status < 300) return {"delivered", {}, false};
  if (result.status == 410) return {"disabled", {}, true};
  const auto& schedule = event == "completed" ? opts.completed : opts.other;
  if (attempt < 1 || static_cast<std::size_t>(attempt) >= schedule.size()) {
    return {event == "completed" ? "failed" : "dropped", {}, false};
  }
  const double spread = 1.0 + opts.jitter * (2.0 * std::clamp(random01, 0.0, 1.0) - 1.0);
  auto delay = milliseconds(static_cast<long long>(
      std::llround(static_cast<double>(schedule[attempt].count()) * opts.time_scale * spread)));
  if ((result.status == 429 || result.status == 503) && result.retry_after) {
    const auto asked =
        std::clamp(*result.retry_after, std::chrono::seconds(0), opts.max_retry_after);
    delay = std::max(delay, milliseconds(asked));
  }
  return {"pending", delay, false};
}

}  // namespace cogwheel::webhook
