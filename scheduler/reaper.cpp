#include "scheduler/reaper.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>
#include <thread>

#include "storage/reaper.hpp"

namespace cogwheel::scheduler {

namespace asio = boost::asio;

namespace {

constexpr const char* leader_name = "maintenance";

std::string seconds_text(std::int64_t ms) {
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

}  // namespace

void reaper_options::validate() const {
  if (owner.empty()) throw std::invalid_argument("the reaper needs an owner");
  if (interval < std::chrono::milliseconds(10)) {
    throw std::invalid_argument("--reaper-interval-ms must be at least 10");
  }
  if (leader_lease < interval * 2) {
    throw std::invalid_argument("--leader-lease-ms must be at least twice --reaper-interval-ms");
  }
  if (batch == 0) throw std::invalid_argument("the reaper's batch must be at least 1");
  if (row_retention.count() > 0 && data_retention.count() > 0 && row_retention < data_retention) {
    throw std::invalid_argument("--row-retention must not be shorter than --data-retention");
  }
}

bool reaper_counts::any() const {
  return became_leader || aborted || canceled || start_timeouts || run_timeouts ||
         takeover.adopted || takeover.resent || takeover.requeued || takeover.lost ||
         data_removed || rows_deleted;
}

std::string reaper_counts::describe() const {
  std::string out;
  auto add = [&out](std::size_t n, const char* what) {
    if (n == 0) return;
    if (!out.empty()) out += ", ";
    out += std::to_string(n) + " " + what;
  };
  add(aborted, "aborted (deadline before the start)");
  add(canceled, "canceled (deadline while running)");
  add(start_timeouts, "start timeouts (E6716)");
  add(run_timeouts, "run timeouts (E8367)");
  add(takeover.adopted, "running predictions taken over");
  add(takeover.resent, "dispatched predictions sent again to their container");
  add(takeover.requeued, "dispatched predictions back in the queue");
  add(takeover.lost, "predictions whose container is gone (E8367)");
  add(data_removed, "predictions' data removed");
  add(rows_deleted, "old predictions deleted");
  return out.empty() ? "nothing" : out;
}

reaper::reaper(asio::io_context& ioc, storage::database& db, dispatcher& dispatch,
               reaper_options opts)
    : ioc_(ioc), db_(db), dispatch_(dispatch), opts_(std::move(opts)), timer_(ioc) {
  opts_.validate();
}

reaper::~reaper() {
  stop();
}

void reaper::start() {
  running_ = true;
  asio::co_spawn(timer_.get_executor(), loop(), asio::detached);
}

void reaper::stop() {
  if (stopping_.exchange(true)) return;
  asio::post(timer_.get_executor(), [this] { timer_.cancel(); });
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (running_ && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!leader_) return;
  try {
    db_.run_blocking([this](pqxx::connection& c) {
      pqxx::work tx(c);
      storage::leader_release(tx, leader_name, opts_.owner);
      tx.commit();
    });
    spdlog::info("reaper: gave up the maintenance leadership");
  } catch (const std::exception& e) {
    spdlog::warn("reaper: cannot give up the leadership ({}); it lapses by itself", e.what());
  }
  leader_ = false;
}

asio::awaitable<void> reaper::loop() {
  bool warned = false;
  int rounds_in_a_row = 0;
  while (!stopping_) {
    bool again = false;
    try {
      const auto counts = co_await run_once();
      if (counts.became_leader) spdlog::info("reaper: this process is the maintenance leader");
      if (counts.any() && counts.describe() != "nothing") {
        spdlog::info("reaper: {}", counts.describe());
      }
      if (warned) spdlog::info("reaper: database reachable again");
      warned = false;
      // More is due: go on at once, but yield after a few full rounds.
      again = counts.full && ++rounds_in_a_row < 10;
    } catch (const std::exception& e) {
      if (!warned) spdlog::warn("reaper: {}", e.what());
      warned = true;
    }
    if (again) continue;
    rounds_in_a_row = 0;
    timer_.expires_after(opts_.interval);
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  running_ = false;
}

asio::awaitable<reaper_counts> reaper::run_once() {
  reaper_counts counts;
  const std::string owner = opts_.owner;
  const std::int64_t ttl = opts_.leader_lease.count();
  auto acquire = [&owner, ttl](pqxx::connection& c) {
    pqxx::work tx(c);
    const bool ok = storage::leader_acquire(tx, leader_name, owner, ttl);
    tx.commit();
    return ok;
  };
  const bool was_leader = leader_;
  try {
    leader_ = co_await db_.run(acquire);
  } catch (...) {
    leader_ = false;  // it cannot be renewed; another process may take it over
    throw;
  }
  counts.leader = leader_;
  counts.became_leader = leader_ && !was_leader;
  if (!was_leader && !leader_) co_return counts;
  if (was_leader && !leader_) {
    spdlog::warn("reaper: another process took the maintenance leadership");
    co_return counts;
  }
  co_await timeouts(counts);
  const std::size_t limit = opts_.batch;
  auto lapsed_work = [limit](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    return storage::prediction_lapsed_leases(tx, limit);
  };
  auto lapsed = co_await db_.run(lapsed_work);
  counts.full = counts.full || lapsed.size() == limit;
  if (!lapsed.empty()) counts.takeover = co_await dispatch_.take_over(std::move(lapsed));
  co_await retention(counts);
  co_return counts;
}

asio::awaitable<void> reaper::timeouts(reaper_counts& counts) {
  const std::size_t limit = opts_.batch;
  auto lookup = [limit](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    return std::tuple{storage::prediction_due_deadlines(tx, limit),
                      storage::prediction_due_start_timeouts(tx, limit),
                      storage::prediction_due_run_timeouts(tx, limit)};
  };
  auto [deadlines, starts, runs] = co_await db_.run(lookup);
  counts.full = deadlines.size() == limit || starts.size() == limit || runs.size() == limit;
  std::vector<cog_update> updates;
  std::set<std::string> deadline_ids;
  for (const auto& d : deadlines) {
    deadline_ids.insert(d.id);
    if (d.status == "starting") {
      updates.push_back(internal_update(d.id, "aborted", "starting"));
      ++counts.aborted;
    } else {
      updates.push_back(internal_update(d.id, "canceled", "processing"));
      ++counts.canceled;
    }
  }
  for (const auto& d : starts) {
    if (deadline_ids.contains(d.id)) continue;
    const std::string why =
        d.container_id ? "its container did not start it within " + seconds_text(d.limit_ms)
                       : "no container became ready within " + seconds_text(d.limit_ms);
    updates.push_back(internal_update(d.id, "failed", "starting", "E6716",
                                      "Timeout starting prediction: " + why));
    ++counts.start_timeouts;
  }
  for (const auto& d : runs) {
    if (deadline_ids.contains(d.id)) continue;
    updates.push_back(internal_update(
        d.id, "failed", "processing", "E8367",
        "Prediction stopped in non-terminal state: it ran longer than its run timeout of " +
            seconds_text(d.limit_ms)));
    ++counts.run_timeouts;
  }
  if (!updates.empty()) co_await dispatch_.apply(std::move(updates));
}

asio::awaitable<void> reaper::retention(reaper_counts& counts) {
  const std::size_t limit = opts_.batch;
  const std::int64_t data_ms = opts_.data_retention.count();
  const std::int64_t row_ms = opts_.row_retention.count();
  if (data_ms > 0) {
    const auto& files = opts_.files_dir;
    auto remove = [limit, data_ms, &files](pqxx::connection& c) {
      pqxx::work tx(c);
      auto ids = storage::prediction_remove_data(tx, data_ms, limit);
      tx.commit();
      // The files go with the data (on this blocking thread, not an I/O one).
      for (const auto& id : ids) {
        std::error_code ec;
        std::filesystem::remove_all(files / id, ec);
        if (ec) spdlog::warn("reaper: cannot remove the files of {}: {}", id, ec.message());
      }
      return ids.size();
    };
    counts.data_removed = co_await db_.run(remove);
    counts.full = counts.full || counts.data_removed == limit;
  }
  if (row_ms > 0) {
    auto remove = [limit, row_ms](pqxx::connection& c) {
      pqxx::work tx(c);
      auto n = storage::prediction_delete_expired(tx, row_ms, limit);
      tx.commit();
      return n;
    };
    counts.rows_deleted = co_await db_.run(remove);
    counts.full = counts.full || counts.rows_deleted == limit;
  }
}

}  // namespace cogwheel::scheduler
