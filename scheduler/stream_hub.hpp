#pragma once
// Server-Sent Events of running predictions (PROTOCOLS.md §1, urls.stream): `output` chunks,
// `logs`, `error`, `done`, with ids "<seconds>:<seq>". Events are derived from the successive
// states of a prediction (the same updates that are written to the database), and kept only for
// predictions someone streams, for a while after they end, so that a client can resume with
// Last-Event-ID.
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "storage/predictions.hpp"

namespace cogwheel::scheduler {

struct sse_event {
  std::uint64_t seq = 0;  // 1, 2, ...
  std::string event;      // output | logs | error | done
  std::string data;
};

// The events a change from `before` to `after` causes (pure; `before` null: from nothing).
std::vector<sse_event> derive_events(const storage::prediction_row* before,
                                     const storage::prediction_row& after);

// Whether `row` is an earlier state than `than` (a lower phase, or shorter output or logs).
bool is_older(const storage::prediction_row& row, const storage::prediction_row& than);

// "id: <seconds>:<seq>\nevent: <event>\ndata: <line>\n...\n\n"
std::string format_event(const sse_event& e, std::int64_t seconds);

// The seq of a Last-Event-ID ("<seconds>:<seq>"); 0 when absent or malformed.
std::uint64_t parse_last_event_id(std::string_view id);

class stream_hub {
 public:
  explicit stream_hub(std::chrono::seconds keep_after_end = std::chrono::seconds(300))
      : keep_after_end_(keep_after_end) {}

  // Starts tracking a prediction (a client streams it) from its current state; no-op when tracked.
  void track(const storage::prediction_row& row);
  // A prediction's newest state: new events for tracked predictions; others are ignored.
  void feed(const storage::prediction_row& row);

  struct view {
    std::vector<sse_event> events;  // after the requested seq
    bool ended = false;             // `done` was emitted
    std::int64_t seconds = 0;       // the id prefix
    std::uint64_t version = 0;      // changes whenever the prediction's state was fed
  };
  std::optional<view> events_after(const std::string& id, std::uint64_t after);

 private:
  struct tracked {
    storage::prediction_row last;
    std::vector<sse_event> events;
    std::uint64_t version = 0;
    std::optional<std::chrono::steady_clock::time_point> ended_at;
  };
  void purge_locked();

  std::chrono::seconds keep_after_end_;
  std::mutex mu_;
  std::map<std::string, tracked, std::less<>> tracked_;
};

}  // namespace cogwheel::scheduler
