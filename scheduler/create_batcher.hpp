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
  // Batches running their INSERT at once. One: the next batch gathers everything that arrived
  // during the insert. Two made no measurable difference on the 2-core machine (bench/README.md,
  // "Where a create's time goes"); three were slower when last measured.
  std::size_t max_in_flight = 1;
  // A batch's transaction commits without waiting for its WAL flush (storage::commit_flush::
  // deferred), and the next batch's INSERT starts at once; a flush barrier on another connection
  // (storage::wal_flush_barrier) then makes the batch durable, and only then are its callers
  // answered and its claims sent to containers. One barrier covers every batch that committed
  // before it. false: each batch's commit waits for its own flush before the next batch starts.
  bool deferred_flush = true;
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
  // Waits for the batches and barriers in flight (each statement is bounded by the pool's
  // statement timeout), since they run on the database's threads and use this object.
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

  // Called on a database thread once a batch's commit is durable (e.g. to wake the dispatcher at
  // once). Set before the first submit.
  std::function<void()> committed;

  struct stats {
    std::uint64_t batches = 0;
    std::uint64_t rows = 0;
    std::uint64_t barriers = 0;  // flush barriers run (deferred_flush)
  };
  stats totals() const;

 private:
  struct pending {
    storage::prediction_new row;
    boost::asio::any_io_executor executor;
    boost::asio::any_completion_handler<signature> handler;
  };
  // A batch whose transaction has ended: what each caller gets, and what runs once it is durable.
  struct settled {
    std::vector<pending> batch;
    std::vector<storage::insert_result> results;
    std::vector<std::exception_ptr> failures;      // per row; null: results[i] holds
    std::vector<std::function<void(bool)>> after;  // in_transaction's work after the commit
    bool committed = false;                        // some row's transaction committed
  };
  void enqueue(storage::prediction_new row, boost::asio::any_io_executor ex,
               boost::asio::any_completion_handler<signature> h);
  void start_batch_locked();
  void start_flush_locked();
  bool needs_transaction(const std::vector<storage::prediction_new>& rows) const;
  void run_batch(std::vector<pending> batch);
  void flush(std::vector<settled> group);
  // Answers the callers; `failure` (the barrier's) replaces the results of rows that committed.
  void answer(settled& s, const std::exception_ptr& failure);

  storage::database& db_;
  create_batcher_options opts_;
  in_transaction hook_;
  wants_transaction wants_;
  mutable std::mutex mu_;
  std::condition_variable idle_;  // in_flight_ == 0 and nothing to flush
  std::vector<pending> queue_;
  std::size_t in_flight_ = 0;
  std::vector<settled> unflushed_;  // committed, waiting for the next barrier
  bool flushing_ = false;           // a barrier is running
  stats stats_;
};

}  // namespace cogwheel::scheduler
