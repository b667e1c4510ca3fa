#pragma once
// The dispatcher: claims queued predictions for free container slots, sends them to their
// containers with the Cog protocol (PUT /predictions/{id}, Prefer: respond-async), ingests the
// containers' updates in batches (conditional, forward-only writes with their webhook events in the
// same transaction), forwards cancels, renews the leases of the work it holds, and takes over the
// work of processes that died (dispatcher_recovery.cpp).
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
#include "storage/dispatch.hpp"
#include "storage/outbox.hpp"
#include "storage/reaper.hpp"

namespace cogwheel::scheduler {

struct dispatcher_options {
  std::string owner;         // this process's lease owner: unique per process
  std::string callback_url;  // where containers send their updates (the container-update route)
  std::string public_url;    // the API's public base URL (webhook bodies carry urls)
  std::int64_t lease_ms = 30'000;
  int webhook_throttle_ms = 500;  // output and logs webhooks: one per prediction per interval
  std::chrono::milliseconds poll_interval{1'000};  // fallback when no notification arrives
  std::size_t max_claim = 256;                     // predictions per claim statement
  std::size_t max_ingest_batch = 1'000;            // updates per transaction
  std::chrono::milliseconds put_timeout{10'000};
};

// What a takeover of lapsed work did.
struct takeover_counts {
  std::size_t adopted = 0;   // running in a container this process can reach: now ours
  std::size_t resent = 0;    // dispatched, not started: sent again to the same container
  std::size_t requeued = 0;  // dispatched, not started, container gone: back in the queue
  std::size_t lost = 0;      // running in a container that is gone: failed with E8367
};

class dispatcher {
 public:
  dispatcher(boost::asio::io_context& ioc, storage::database& db, container_pool& pool,
             http::client& client, dispatcher_options opts);
  ~dispatcher();
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  void start();
  // Stops claiming, waits (bounded by `grace`) for predictions in flight here to finish, then hands
  // over what is left: running ones in this process's own containers (which stop with it) fail
  // with E8367, not started ones go back to the queue, and leases on static containers are given
  // up so that another process takes over at once.
  void stop(std::chrono::milliseconds grace);

  // Something may be claimable (a create committed, a slot freed). Any thread.
  void wake();
  // Predictions changed (storage::prediction_channel): frees the slots of those held here that
  // ended elsewhere, cancels them at their container when cogwheel ended them, and forwards cancel
  // requests. Any thread.
  void changed(const std::vector<storage::prediction_note>& notes);

  // Inside a create batch's transaction: claims queued predictions of these versions for free
  // container slots of this process (the new ones when nothing older waits: FIFO holds), so that
  // they are dispatched with one commit rather than two. Returns what to run once the transaction
  // ended (true: committed), or an empty function when nothing was claimed.
  std::function<void(bool committed)> claim_in(pqxx::transaction_base& tx,
                                               const std::vector<std::string>& versions);
  // Whether claim_in could claim anything for these versions now (a free slot of a ready
  // container). Any thread.
  bool can_claim(const std::vector<std::string>& versions);
  // New work was queued for `versions` (empty: unknown, e.g. after the listener reconnected):
  // wakes the claim loop unless no container here could take any of it. Any thread.
  void queued(const std::vector<std::string>& versions);

  // A container's update, already validated. Applied in a batch; any thread.
  void ingest(cog_update u);
  // Fails a live prediction with an error code and message (E9243, E8367, ...).
  void fail(const std::string& id, const std::string& code, const std::string& message);
  // Applies updates now, in one transaction (the reaper); returns how many predictions changed.
  boost::asio::awaitable<std::size_t> apply(std::vector<cog_update> updates);
  // Takes over dispatched work whose lease lapsed (the reaper, in the leader).
  boost::asio::awaitable<takeover_counts> take_over(std::vector<storage::lapsed_prediction> lapsed);

  // Called after each applied batch with the rows as written (SSE streams). Set before start().
  std::function<void(const std::vector<storage::prediction_row>&)> on_applied;

  const std::string& owner() const { return opts_.owner; }
  std::size_t in_flight() const;

 private:
  struct applied;
  boost::asio::awaitable<void> claim_loop();
  boost::asio::awaitable<void> forward_cancels();
  boost::asio::awaitable<void> renew_leases();
  boost::asio::awaitable<void> claim_free_slots(bool& more);
  void start_claimed(std::vector<storage::claimed_prediction> claimed);
  boost::asio::awaitable<void> send_put(storage::prediction_row row, std::string container_id);
  boost::asio::awaitable<void> send_cancel(std::string id, std::string container_id);
  boost::asio::awaitable<void> flush_updates();
  boost::asio::awaitable<applied> apply_with_retry(std::vector<cog_update> batch);
  void after_applied(const std::vector<cog_update>& batch, const applied& result);
  boost::asio::awaitable<bool> requeue(const std::string& id, const std::string& container_id);
  void lost(const std::string& container_id, std::vector<std::string> ids);
  boost::asio::awaitable<void> recover_lost(std::string container_id, std::vector<std::string> ids);
  void unhealthy(const std::string& container_id, container_health h, std::vector<std::string> ids);
  boost::asio::awaitable<void> resolve_unhealthy(std::string container_id, container_health h,
                                                 std::vector<std::string> ids);
  void hand_over();
  boost::asio::awaitable<void> hand_over_async();

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
  std::chrono::steady_clock::time_point last_renew_{};

  mutable std::mutex mu_;
  std::vector<cog_update> updates_;
  bool flushing_ = false;
  std::set<std::string> cancels_sent_;
  std::unordered_set<std::string> ignored_logged_;
};

}  // namespace cogwheel::scheduler
