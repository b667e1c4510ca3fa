#pragma once
// The reaper: the maintenance loop that makes sure no prediction hangs forever or is lost, run by
// one `serve` process at a time (the holder of the "maintenance" leader lease; another takes over
// when it dies). Each round:
// - deadlines (Cancel-After) that passed: `aborted` before the start, `canceled` while running;
// - start timeouts: still `starting` past start_by: failed, E6716;
// - run timeouts: `processing` past run_by: failed, E8367 (and canceled at the container);
// - lapsed leases (their process died): taken over (dispatcher::take_over);
// - retention: the data of old terminal predictions removed (data_removed), older rows deleted.
// Every change of status goes through the dispatcher's conditional batch writes (with their
// webhook events); every lookup is bounded and served by an index.
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <filesystem>
#include <string>

#include "scheduler/dispatcher.hpp"
#include "storage/database.hpp"

namespace cogwheel::scheduler {

struct reaper_options {
  std::string owner;                                    // the leader lease owner: this process
  std::chrono::milliseconds interval{1'000};            // between rounds
  std::chrono::milliseconds leader_lease{15'000};       // renewed every round
  std::size_t batch = 500;                              // rows per lookup and per round
  std::chrono::milliseconds data_retention{3'600'000};  // 0: keep the data
  std::chrono::milliseconds row_retention{30LL * 86'400'000};  // 0: keep the rows
  std::filesystem::path files_dir;  // uploaded files, removed with the data
  // Throws std::invalid_argument naming the bad option.
  void validate() const;
};

struct reaper_counts {
  bool leader = false;
  bool became_leader = false;
  std::size_t aborted = 0, canceled = 0, start_timeouts = 0, run_timeouts = 0;
  takeover_counts takeover;
  std::size_t data_removed = 0, rows_deleted = 0;
  bool full = false;  // some lookup hit the batch size: more is due now
  bool any() const;
  std::string describe() const;  // "2 start timeouts (E6716), 1 aborted, ..."
};

class reaper {
 public:
  reaper(boost::asio::io_context& ioc, storage::database& db, dispatcher& dispatch,
         reaper_options opts);
  ~reaper();
  reaper(const reaper&) = delete;
  reaper& operator=(const reaper&) = delete;

  void start();
  void stop();  // waits for the round in progress (bounded), then gives up the leader lease
  boost::asio::awaitable<reaper_counts> run_once();
  bool leader() const { return leader_; }

 private:
  boost::asio::awaitable<void> loop();
  boost::asio::awaitable<void> timeouts(reaper_counts& counts);
  boost::asio::awaitable<void> retention(reaper_counts& counts);

  boost::asio::io_context& ioc_;
  storage::database& db_;
  dispatcher& dispatch_;
  reaper_options opts_;
  boost::asio::steady_timer timer_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> running_{false};
  std::atomic<bool> leader_{false};
};

}  // namespace cogwheel::scheduler
