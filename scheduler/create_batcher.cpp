#include "scheduler/create_batcher.hpp"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

namespace cogwheel::scheduler {

namespace asio = boost::asio;

namespace {
void complete(asio::any_io_executor ex, asio::any_completion_handler<create_batcher::signature> h,
              std::exception_ptr ep, storage::insert_result r) {
  asio::post(std::move(ex), [h = std::move(h), ep, r = std::move(r)]() mutable {
    std::move(h)(ep, std::move(r));
  });
}
}  // namespace

create_batcher::create_batcher(storage::database& db, create_batcher_options opts,
                               in_transaction hook, wants_transaction wants)
    : db_(db), opts_(opts), hook_(std::move(hook)), wants_(std::move(wants)) {
  if (opts_.max_batch == 0 || opts_.max_in_flight == 0) {
    throw std::invalid_argument("create batcher needs max_batch and max_in_flight >= 1");
  }
}

create_batcher::~create_batcher() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return in_flight_ == 0; });
}

void create_batcher::enqueue(storage::prediction_new row, asio::any_io_executor ex,
                             asio::any_completion_handler<signature> h) {
  std::lock_guard lock(mu_);
  queue_.push_back({std::move(row), std::move(ex), std::move(h)});
  if (in_flight_ < opts_.max_in_flight) start_batch_locked();
}

void create_batcher::start_batch_locked() {
  if (queue_.empty()) return;
  std::vector<pending> batch;
  if (queue_.size() <= opts_.max_batch) {
    batch.swap(queue_);
  } else {
    auto end = queue_.begin() + static_cast<std::ptrdiff_t>(opts_.max_batch);
    batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(end));
    queue_.erase(queue_.begin(), end);
  }
  ++in_flight_;
  asio::post(db_.executor(), [this, b = std::move(batch)]() mutable { run_batch(std::move(b)); });
}

bool create_batcher::needs_transaction(const std::vector<storage::prediction_new>& rows) const {
  std::vector<std::string> versions;
  for (const auto& r : rows) {
    if (r.idempotency_key) return true;  // resolving a taken key reads and writes more
    versions.push_back(r.version_id);
  }
  if (!hook_) return false;
  return !wants_ || wants_(versions);
}

void create_batcher::run_batch(std::vector<pending> batch) {
  auto announce = [this](const std::vector<storage::insert_result>& results) {
    if (!committed) return;
    if (auto versions = storage::created_versions(results); !versions.empty()) committed(versions);
  };
  std::vector<storage::prediction_new> rows;
  rows.reserve(batch.size());
  for (auto& p : batch) rows.push_back(p.row);
  auto insert = [&](const std::vector<storage::prediction_new>& some) {
    return db_.run_blocking([&](pqxx::connection& c) {
      if (!needs_transaction(some)) {
        pqxx::nontransaction tx(c);
        auto r = storage::prediction_insert_many(tx, some);
        announce(r);
        return r;
      }
      pqxx::work tx(c);
      auto r = storage::prediction_insert_many(tx, some);
      std::function<void(bool)> after = hook_ ? hook_(tx, r) : nullptr;
      try {
        tx.commit();
      } catch (...) {
        if (after) after(false);
        throw;
      }
      if (after) after(true);
      announce(r);
      return r;
    });
  };
  // One bad row must not fail its neighbours: retry each alone, so only it gets the error.
  auto each_alone = [&] {
    for (std::size_t i = 0; i < batch.size(); ++i) {
      try {
        auto one = insert({rows[i]});
        complete(std::move(batch[i].executor), std::move(batch[i].handler), nullptr,
                 std::move(one.at(0)));
      } catch (...) {
        complete(std::move(batch[i].executor), std::move(batch[i].handler),
                 std::current_exception(), {});
      }
    }
  };
  try {
    auto results = insert(rows);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      complete(std::move(batch[i].executor), std::move(batch[i].handler), nullptr,
               std::move(results[i]));
    }
  } catch (const pqxx::sql_error&) {
    each_alone();  // a row the database refused
  } catch (const nlohmann::json::exception&) {
    each_alone();  // a row some JSON of the same transaction cannot carry
  } catch (...) {
    auto failure = std::current_exception();
    for (auto& p : batch) complete(std::move(p.executor), std::move(p.handler), failure, {});
  }
  std::lock_guard lock(mu_);
  --in_flight_;
  stats_.batches += 1;
  stats_.rows += batch.size();
  start_batch_locked();
  if (in_flight_ == 0) idle_.notify_all();
}

create_batcher::stats create_batcher::totals() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace cogwheel::scheduler
