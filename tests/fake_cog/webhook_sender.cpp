#include "tests/fake_cog/webhook_sender.hpp"

#include <spdlog/spdlog.h>

#include "http/problem.hpp"

namespace fake_cog {

namespace {
constexpr std::string_view user_agent = "cog-worker/0.9.0 (fake_cog)";
}

webhook_sender::webhook_sender(const config& cfg, std::string url, unsigned events)
    : cfg_(cfg), url_(std::move(url)), events_(events) {}

client_request webhook_sender::make_request(const nlohmann::json& state) const {
  client_request req;
  req.method = bhttp::verb::post;
  req.url = url_;
  req.headers = {{"Content-Type", "application/json"}, {"User-Agent", std::string(user_agent)}};
  if (!cfg_.webhook_auth_token.empty()) {
    req.headers.emplace_back("Authorization", "Bearer " + cfg_.webhook_auth_token);
  }
  req.body = cogwheel::http::dump_json(state);
  req.connect_timeout = cfg_.connect_timeout;
  req.total_timeout = cfg_.total_timeout;
  return req;
}

asio::awaitable<void> webhook_sender::send(event e, const nlohmann::json& state) {
  if (url_.empty() || (events_ & e) == 0) co_return;
  auto now = std::chrono::steady_clock::now();
  if (last_sent_ && now - *last_sent_ < cfg_.throttle) {
    spdlog::debug("webhook {} for {} throttled", event_name(e), state.value("id", ""));
    co_return;
  }
  auto res = co_await send_request(make_request(state));
  if (!res.ok()) {
    spdlog::warn("webhook {} for {} to {} failed: {}", event_name(e), state.value("id", ""), url_,
                 res.describe());
  } else {
    spdlog::debug("webhook {} for {} sent", event_name(e), state.value("id", ""));
  }
  last_sent_ = std::chrono::steady_clock::now();
}

asio::awaitable<bool> webhook_sender::send_terminal(const nlohmann::json& state) {
  if (url_.empty() || (events_ & ev_completed) == 0) co_return true;
  auto executor = co_await asio::this_coro::executor;
  const auto id = state.value("id", "");
  bool delivered = false;
  for (int attempt = 0; attempt <= cfg_.terminal_retries; ++attempt) {
    if (attempt > 0) {
      auto delay = retry_delay(attempt, cfg_.retry_backoff);
      if (delay.count() > 0) {
        asio::steady_timer timer(executor, delay);
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      }
    }
    auto res = co_await send_request(make_request(state));
    if (res.ok()) {
      delivered = true;
      spdlog::debug("webhook completed for {} sent ({})", id, state.value("status", ""));
      break;
    }
    spdlog::warn("webhook completed for {} to {} failed (attempt {} of {}): {}", id, url_,
                 attempt + 1, cfg_.terminal_retries + 1, res.describe());
  }
  if (!delivered) spdlog::error("webhook completed for {}: giving up", id);
  last_sent_ = std::chrono::steady_clock::now();
  co_return delivered;
}

}  // namespace fake_cog
