#pragma once
// The webhook dispatcher: claims due deliveries from the outbox (webhook_deliveries), signs and
// sends them, records every attempt and schedules retries. Many processes may run one on the same
// database: a claim leases the delivery to this process for about twice the attempt's time limit,
// so a delivery whose process died goes out again (same webhook-id) once its lease lapses.
// - a prediction's deliveries go out in order, one at a time;
// - at most `per_endpoint` attempts in flight per endpoint (scheme, host and port) in this
//   process, and `max_in_flight` in all: a slow endpoint holds its own slots only;
// - fresh deliveries and retries are claimed through separate indexes, fresh ones first.
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "storage/database.hpp"
#include "storage/deliveries.hpp"
#include "webhook/retry.hpp"
#include "webhook/sender.hpp"

namespace cogwheel::webhook {

struct delivery_options {
  std::string owner;                    // the lease owner: this process
  std::size_t max_in_flight = 256;      // attempts in flight in all
  std::size_t per_endpoint = 32;        // attempts in flight per endpoint
  std::size_t claim_batch = 128;        // deliveries claimed per statement at most
  std::chrono::milliseconds poll{250};  // how often due retries and other processes' events
                                        // are looked for without a wake()
  // After a claim that took less than a full batch, the next one waits at least this long, so
  // that attempts finishing one by one are claimed for together: each claim reads the due
  // deliveries from the oldest, past those of endpoints at their limit.
  std::chrono::milliseconds claim_gap{2};
  retry_options retry;
  sender_options send;
  // Throws std::invalid_argument naming the bad option.
  void validate() const;
  // How long a claim holds a delivery: twice the attempt's time limit, at least 1 s.
  std::chrono::milliseconds lease() const;
};

class delivery_service {
 public:
  delivery_service(boost::asio::io_context& ioc, storage::database& db, delivery_options opts);
  ~delivery_service();
  delivery_service(const delivery_service&) = delete;
  delivery_service& operator=(const delivery_service&) = delete;

  void start();
  // Stops claiming, lets the attempts in flight finish (each bounded by the attempt time limit),
  // records them. Blocks the caller (not an I/O thread of the io_context) until done.
  void stop();
  // New deliveries were queued (thread-safe, cheap): claim now rather than at the next poll.
  void wake();

  // One round: claims what fits and starts the attempts; returns how many were claimed.
  boost::asio::awaitable<std::size_t> run_once();

  const delivery_options& options() const { return opts_; }

 private:
  boost::asio::awaitable<void> loop();
  boost::asio::awaitable<void> attempt(storage::delivery_claimed d);
  boost::asio::awaitable<void> flush();
  void finished(const std::string& endpoint, storage::delivery_outcome outcome);
  storage::delivery_outcome not_sent(const storage::delivery_claimed& d, std::string why) const;

  boost::asio::io_context& ioc_;
  storage::database& db_;
  delivery_options opts_;
  sender sender_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer timer_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> woken_{false};
  std::atomic<bool> running_{false};

  std::mutex mu_;                                 // everything below
  std::map<std::string, std::size_t> in_flight_;  // per endpoint
  std::size_t total_in_flight_ = 0;
  std::vector<storage::delivery_outcome> outcomes_;  // to record
  bool flushing_ = false;
  std::mt19937_64 rng_;
};

}  // namespace cogwheel::webhook
