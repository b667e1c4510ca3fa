#pragma once
// Wakes requests that wait for a prediction to change (Prefer: wait), whichever process changed
// it: a listener thread LISTENs on storage::prediction_channel and wakes the waiters of the ids it
// hears. Waiting holds no thread and no database connection.
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "storage/outbox.hpp"

namespace cogwheel::scheduler {

class prediction_watch {
 public:
  // Starts listening on its own connection; empty conninfo: in-process notifications only.
  explicit prediction_watch(std::string conninfo);
  ~prediction_watch();
  prediction_watch(const prediction_watch&) = delete;
  prediction_watch& operator=(const prediction_watch&) = delete;

  class waiter;
  // Subscribe before reading the state you wait on, so that no change slips between the two.
  std::shared_ptr<waiter> subscribe(const std::string& id, boost::asio::any_io_executor ex);

  // Wakes the waiters of these predictions (also called by the listener for what it hears).
  void notify(const std::vector<storage::prediction_note>& notes);
  void notify_all();

  bool listening() const { return listening_; }

  // Hooks for the dispatcher, called on the listener thread (keep them short): the changed
  // predictions with their notes (storage::prediction_channel), and "new work was queued" for
  // these versions (storage::queue_channel; no versions: unknown, after a reconnect).
  using notes_hook = std::function<void(const std::vector<storage::prediction_note>&)>;
  using queue_hook = std::function<void(const std::vector<std::string>& versions)>;
  void set_hooks(notes_hook on_change, queue_hook on_queue);
  void queued(const std::vector<std::string>& versions);  // calls the queue hook

 private:
  void listen_loop(std::string conninfo);
  void unsubscribe(const std::string& id, const waiter* w);

  std::mutex mu_;
  std::unordered_multimap<std::string, std::weak_ptr<waiter>> waiters_;
  std::mutex hooks_mu_;
  notes_hook on_change_;
  queue_hook on_queue_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> listening_{false};
  std::thread listener_;
};

class prediction_watch::waiter {
 public:
  waiter(prediction_watch& owner, std::string id, boost::asio::any_io_executor ex);
  ~waiter();
  // True when woken by a change, false when the deadline passed first. Call from the executor
  // given to subscribe().
  boost::asio::awaitable<bool> wait_until(std::chrono::steady_clock::time_point deadline);

 private:
  friend class prediction_watch;
  static void wake(std::shared_ptr<waiter> self);  // any thread
  prediction_watch& owner_;
  std::string id_;
  boost::asio::steady_timer timer_;
  bool woken_ = false;  // touched only on the timer's executor
};

}  // namespace cogwheel::scheduler
