// fake_cog: the model's state machine. Setup, health, prediction slots, and each prediction's run
// (timers, logs, outputs, uploads, webhooks). Everything runs on one thread: main.cpp runs the
// io_context on a single thread, so no member needs a lock.
#pragma once

#include <chrono>
#include <functional>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "tests/fake_cog/behaviour.hpp"
#include "tests/fake_cog/client.hpp"
#include "tests/fake_cog/config.hpp"
#include "tests/fake_cog/state.hpp"

namespace fake_cog {

struct prediction;

class runner {
 public:
  // `exit` asks the process to exit with that code (after answering in-flight requests).
  runner(asio::io_context& ioc, config cfg, std::function<void(int)> exit);
  ~runner();
  runner(const runner&) = delete;
  runner& operator=(const runner&) = delete;

  // Starts the (fake) setup: STARTING for cfg.setup_time, then READY or SETUP_FAILED.
  void start_setup();

  // The GET /health-check body.
  nlohmann::json health() const;

  struct create_result {
    enum class kind { started, existing, not_ready, busy };
    kind outcome = kind::started;
    nlohmann::json state;  // started/existing: the prediction's current state (full form)
    std::string detail;    // not_ready/busy: the 409 detail
    std::shared_ptr<prediction> handle;
  };
  // Idempotent create: an id that is running answers `existing`; else starts it when a slot is
  // free (after the start webhook was answered, as Cog 0.9 does). Without `respond_async` (a
  // synchronous request) a file output becomes a data: URL instead of an upload, as in Cog.
  asio::awaitable<create_result> create(prediction_request req, bool respond_async);

  // Waits until the prediction has ended and its terminal webhook was sent; its final state.
  asio::awaitable<nlohmann::json> wait_done(std::shared_ptr<prediction> p);

  // Asks a running prediction to cancel; false when no prediction with that id is running.
  bool cancel(std::string_view id);

  // Shutdown: wakes every waiting prediction (they end canceled without webhooks).
  void stop();

 private:
  asio::awaitable<void> run(std::shared_ptr<prediction> p);
  asio::awaitable<bool> pause(prediction& p, std::optional<std::chrono::milliseconds> d);
  asio::awaitable<void> emit(prediction& p, event e);
  // The output URL of an `upload` plan, or the error.
  asio::awaitable<std::pair<std::string, bool>> upload(prediction& p);
  asio::awaitable<void> finish(std::shared_ptr<prediction> p, std::string status);
  // FAKE_COG_RECEIPTS: "<id> accepted|terminal <unix us>" (the terminal one as its webhook goes).
  void receipt(const std::string& id, const char* what);

  asio::io_context& ioc_;
  const config cfg_;
  std::function<void(int)> exit_;

  enum class health_state { starting, ready, setup_failed, defunct };
  health_state health_ = health_state::starting;
  std::string setup_started_at_;
  std::string setup_completed_at_;
  std::string setup_logs_;
  asio::steady_timer setup_timer_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<prediction>, std::less<>> active_;  // the slots
  std::FILE* receipts_ = nullptr;                                          // cfg_.receipts_file
};

}  // namespace fake_cog
