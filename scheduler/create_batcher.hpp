#pragma once
// Group commit for creates: every create waiting at a moment goes into one multi-row INSERT in one
// transaction, and each caller is answered only after that commit (DESIGN.md: throughput comes from
// batching, not from more commits).
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <vector>

#include "storage/database.hpp"
#include "storage/predictions.hpp"

namespace cogwheel::scheduler {

struct create_batcher_options {
  std::size_t max_batch = 1'000;  // rows per INSERT
  // Concurrent batch transactions. One: the next batch gathers everything that arrived during the
  // commit. Two made no measurable difference on the 2-core machine (bench/README.md, "Where a
  // create's time goes"); three were slower when last measured.
  std::size_t max_in_flight = 1;
};

class create_batcher {
 public:
  using signature = void(std::exception_ptr, storage::insert_result);
  // Runs inside a batch's transaction after the insert, before the commit (a claim); what it
  // returns, if anything, runs once the transaction ended (true: committed).
  using in_transaction = std::function<std::function<void(bool)>(
      pqxx::transaction_base&, const std::vector<storage::insert_result>&)>;
  // Asked before each batch with its rows' versions (repeats included): whether `in_transaction`
  // has work for them (free container slots). When it has none, and no row carries an
  // idempotency key, the batch is one autocommitted statement instead of BEGIN, INSERT, hook,
  // COMMIT.
  using wants_transaction = std::function<bool(const std::vector<std::string>& versions)>;

  create_batcher(storage::database& db, create_batcher_options opts = {}, in_transaction hook = {},
                 wants_transaction wants = {});
  // Waits for the batches in flight: they run on the database's threads and use this object (each
  // statement is bounded by the pool's statement timeout).
  ~create_batcher();
  create_batcher(const create_batcher&) = delete;
  create_batcher& operator=(const create_batcher&) = delete;

  // Takes the row by rvalue reference: no temporary in the caller's co_await operand (GCC 12).
  template <class Token = boost::asio::use_awaitable_t<>>
  auto submit(storage::prediction_new&& row, Token&& token = {}) {
    return boost::asio::async_initiate<Token, signature>(
        [this](auto handler, storage::prediction_new r) {
          // The caller's executor, taken before type erasure: the answer is posted back to it.
          boost::asio::any_io_executor ex =
              boost::asio::get_associated_executor(handler, db_.executor());
          enqueue(std::move(r), std::move(ex),
                  boost::asio::any_completion_handler<signature>(std::move(handler)));
        },
        token, std::move(row));
  }

  // Called on the database thread after each batch committed that created rows, with their
  // versions (repeats included): e.g. to wake the dispatcher at once when a container here has
  // room for one of them. Set before the first submit.
  std::function<void(const std::vector<std::string>& versions)> committed;

  struct stats {
    std::uint64_t batches = 0;
    std::uint64_t rows = 0;
  };
  stats totals() const;

 private:
  struct pending {
    storage::prediction_new row;
    boost::asio::any_io_executor executor;
    boost::asio::any_completion_handler<signature> handler;
  };
  void enqueue(storage::prediction_new row, boost::asio::any_io_executor ex,
               boost::asio::any_completion_handler<signature> h);
  void start_batch_locked();
  bool needs_transaction(const std::vector<storage::prediction_new>& rows) const;
  void run_batch(std::vector<pending> batch);

  storage::database& db_;
  create_batcher_options opts_;
  in_transaction hook_;
  wants_transaction wants_;
  mutable std::mutex mu_;
  std::condition_variable idle_;  // in_flight_ became 0
  std::vector<pending> queue_;
  std::size_t in_flight_ = 0;
  stats stats_;
};

}  // namespace cogwheel::scheduler
