#pragma once
// The dispatcher: claims queued predictions for free container slots, sends them to their
// containers with the Cog protocol (PUT /predictions/{id}, Prefer: respond-async), ingests the
// containers' updates in batches (conditional, forward-only writes with their webhook events in the
// same transaction), forwards cancels, and renews the leases of the work it holds.
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "http/client.hpp"
#include "scheduler/cog_update.hpp"
#include "scheduler/container_pool.hpp"
#include "storage/database.hpp"

namespace cogwheel::scheduler {

struct dispatcher_options {
  std::string owner;         // this process's lease owner: unique per process
  std::string callback_url;  // where containers send their updates (the container-update route)
  std::string public_url;    // the API's public base URL (webhook bodies carry urls)
  std::int64_t lease_ms = 30'000;
  std::chrono::milliseconds poll_interval{1'000};  // fallback when no notification arrives
  std::size_t max_claim = 256;                     // predictions per claim statement
  std::size_t max_ingest_batch = 1'000;            // updates per transaction
  std::chrono::milliseconds put_timeout{10'000};
};

class dispatcher {
 public:
  dispatcher(boost::asio::io_context& ioc, storage::database& db, container_pool& pool,
             http::client& client, dispatcher_options opts);
  ~dispatcher();
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  void start();
  // Stops claiming and waits (bounded by `grace`) for predictions in flight here to finish.
  void stop(std::chrono::milliseconds grace);

  // Something may be claimable (a create committed, a slot freed). Any thread.
  void wake();
  // Predictions changed (from the notification channel): forwards cancels for those held here.
  void changed(const std::vector<std::string>& ids);

  // A container's update, already validated. Applied in a batch; any thread.
  void ingest(cog_update u);
  // Fails a live prediction with an error code and message (E9243, E8367, ...).
  void fail(const std::string& id, const std::string& code, const std::string& message);

  // Called after each applied batch with the rows as written (SSE streams). Set before start().
  std::function<void(const std::vector<storage::prediction_row>&)> on_applied;

  std::size_t in_flight() const;

 private:
  boost::asio::awaitable<void> claim_loop();
  boost::asio::awaitable<void> send_put(storage::prediction_row row, std::string container_id);
  boost::asio::awaitable<void> send_cancel(std::string id, std::string container_id);
  boost::asio::awaitable<void> flush_updates();
  boost::asio::awaitable<void> requeue(const std::string& id, const std::string& container_id);
  void lost(const std::string& container_id, std::vector<std::string> ids);
  boost::asio::awaitable<void> recover_lost(std::string container_id, std::vector<std::string> ids);

  boost::asio::io_context& ioc_;
  storage::database& db_;
  container_pool& pool_;
  http::client& client_;
  dispatcher_options opts_;
  boost::asio::steady_timer wake_timer_;
  std::atomic<bool> wake_pending_{true};
  std::atomic<bool> cancel_check_{true};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> loop_done_{false};

  mutable std::mutex mu_;
  std::vector<cog_update> updates_;
  bool flushing_ = false;
  std::set<std::string> cancels_sent_;
  std::unordered_set<std::string> ignored_logged_;
};

}  // namespace cogwheel::scheduler
