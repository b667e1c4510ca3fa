// fake_cog: the webhooks of one prediction, as Cog 0.9 sends them: filtered by the prediction's
// webhook_events_filter, non-terminal events throttled (an event within the throttle interval of
// the previous send is dropped; the next one carries the newest state) and sent once, errors
// ignored; the terminal event always sent and retried with backoff.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tests/fake_cog/behaviour.hpp"
#include "tests/fake_cog/client.hpp"
#include "tests/fake_cog/config.hpp"

namespace fake_cog {

class webhook_sender {
 public:
  // `url` empty: no webhooks.
  webhook_sender(const config& cfg, std::string url, unsigned events);

  // A start, output or logs event. Returns once sent (or dropped, or failed).
  asio::awaitable<void> send(event e, const nlohmann::json& state);

  // The completed event: retried on a network error or a non-2xx answer, up to
  // cfg.terminal_retries times. Returns true when delivered (or filtered out / no webhook).
  asio::awaitable<bool> send_terminal(const nlohmann::json& state);

 private:
  client_request make_request(const nlohmann::json& state) const;

  const config& cfg_;
  std::string url_;
  unsigned events_;
  std::optional<std::chrono::steady_clock::time_point> last_sent_;
};

}  // namespace fake_cog
