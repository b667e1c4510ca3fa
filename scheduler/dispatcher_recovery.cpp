// The dispatcher when things go wrong: a container that exits or fails its health check, work
// whose process died (its lease lapsed), and handing work over at shutdown. The rules:
// - a prediction no container started goes back to the queue at its place, since sending it again
//   cannot make it run twice;
// - a prediction a container started is never sent again (Cog would run it twice): it keeps
//   receiving that container's updates when the container is still there, and fails with E8367
//   when it is gone.
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_future.hpp>

#include "scheduler/dispatcher.hpp"
#include "storage/dispatch.hpp"

namespace cogwheel::scheduler {

namespace asio = boost::asio;

namespace {

std::string gone_message(const std::string& cid) {
  return "Prediction stopped in non-terminal state: its container (" + cid + ") is gone";
}

}  // namespace

void dispatcher::lost(const std::string& cid, std::vector<std::string> ids) {
  asio::co_spawn(ioc_, recover_lost(cid, std::move(ids)), asio::detached);
}

asio::awaitable<void> dispatcher::recover_lost(std::string cid, std::vector<std::string> ids) {
  std::vector<cog_update> failures;
  for (const auto& id : ids) {
    // Not started there: back to the queue for another container. Started: it cannot finish.
    // The failure is applied after any update the container sent before it died (those were
    // queued first), so a terminal update it did send wins.
    if (!co_await requeue(id, cid)) {
      failures.push_back(internal_update(id, "failed", "processing", "E8367", gone_message(cid)));
    }
  }
  for (auto& f : failures) ingest(std::move(f));
  wake();
}

void dispatcher::unhealthy(const std::string& cid, container_health h,
                           std::vector<std::string> ids) {
  if (ids.empty()) return;
  asio::co_spawn(ioc_, resolve_unhealthy(cid, h, std::move(ids)), asio::detached);
}

asio::awaitable<void> dispatcher::resolve_unhealthy(std::string cid, container_health h,
                                                    std::vector<std::string> ids) {
  // Predictions sent to it that it has not started: another container of the version may still
  // take them (back to the queue; the start timeout bounds the wait), else they fail with E8765.
  // Started ones are left to the container's own updates, its exit, or the run timeout.
  const auto version = pool_.version_of(cid);
  const bool elsewhere = version && pool_.has_alternative(*version, cid);
  for (const auto& id : ids) {
    if (elsewhere) {
      if (co_await requeue(id, cid)) {
        spdlog::info("prediction {}: container {} is {}; back to the queue for another one", id,
                     cid, to_string(h));
      }
      continue;
    }
    ingest(internal_update(id, "failed", "starting", "E8765",
                           "Model health check failed: its container (" + cid + ") is " +
                               to_string(h) + " and no other container can take the prediction"));
  }
}

asio::awaitable<takeover_counts> dispatcher::take_over(
    std::vector<storage::lapsed_prediction> lapsed) {
  takeover_counts counts;
  std::vector<cog_update> failures;
  for (const auto& l : lapsed) {
    if (l.lease_owner == opts_.owner) {
      // Our own lease lapsed (renewals were late, e.g. the database was away): still ours.
      const std::string owner = opts_.owner;
      const auto lease = opts_.lease_ms;
      auto renew = [&l, &owner, lease](pqxx::connection& conn) {
        pqxx::work tx(conn);
        const bool ok = storage::prediction_adopt(tx, l.id, l.container_id, owner, lease);
        tx.commit();
        return ok;
      };
      co_await db_.run(renew);
      continue;
    }
    const auto c = pool_.find(l.container_id);
    const bool reachable =
        c && c->runtime == "static" &&
        (c->health == container_health::ready || c->health == container_health::busy);
    if (!reachable) {
      // A process container stopped with the process that ran it; an unknown or unreachable one
      // cannot be asked.
      if (!l.started && co_await requeue(l.id, l.container_id)) {
        ++counts.requeued;
      } else if (l.started) {
        failures.push_back(
            internal_update(l.id, "failed", "processing", "E8367", gone_message(l.container_id)));
        ++counts.lost;
      }
      continue;
    }
    const std::string owner = opts_.owner;
    const auto lease = opts_.lease_ms;
    auto work = [&l, &owner, lease](pqxx::connection& conn) {
      pqxx::work tx(conn);
      std::optional<storage::prediction_row> row;
      if (storage::prediction_adopt(tx, l.id, l.container_id, owner, lease)) {
        row = storage::prediction_get_by_id(tx, l.id);
      }
      tx.commit();
      return row;
    };
    auto row = co_await db_.run(work);
    if (!row) continue;  // another process was quicker, or it ended meanwhile
    pool_.acquire(l.container_id, l.id);
    if (l.started) {
      ++counts.adopted;  // its container's updates keep coming (Cog retries the terminal one)
    } else {
      // Ask the container: the same PUT while it runs answers 202 with its current state; one
      // that never got it starts it now. (Only a container that finished it and whose updates
      // were all lost would run it again.)
      ++counts.resent;
      asio::co_spawn(ioc_, send_put(std::move(*row), l.container_id), asio::detached);
    }
  }
  if (!failures.empty()) co_await apply(std::move(failures));
  co_return counts;
}

asio::awaitable<void> dispatcher::hand_over_async() {
  std::size_t failed = 0, requeued = 0;
  std::vector<cog_update> failures;
  for (const auto& [id, cid] : pool_.held(/*process_only=*/true)) {
    if (co_await requeue(id, cid)) {
      ++requeued;
      continue;
    }
    failures.push_back(internal_update(
        id, "failed", "processing", "E8367",
        "Prediction stopped in non-terminal state: cogwheel shut down while it ran, and its "
        "container (" +
            cid + ") stopped with it"));
    ++failed;
  }
  if (!failures.empty()) co_await apply(std::move(failures));
  // Work in static containers goes on there: give up the leases so that another process takes
  // it over now rather than when they run out.
  const std::string owner = opts_.owner;
  std::vector<std::string> ids;
  for (auto& [id, cid] : pool_.held(/*process_only=*/false)) ids.push_back(std::move(id));
  auto release = [&owner, &ids](pqxx::connection& c) {
    pqxx::work tx(c);
    auto n = storage::prediction_release_leases(tx, owner, ids);
    tx.commit();
    return n;
  };
  const auto released = co_await db_.run(release);
  if (failed + requeued + released > 0) {
    spdlog::warn(
        "shutdown: {} prediction(s) failed with E8367 (their containers stop with "
        "cogwheel), {} back in the queue, {} left running for another process",
        failed, requeued, released);
  }
}

void dispatcher::hand_over() {
  try {
    auto done = asio::co_spawn(ioc_, hand_over_async(), asio::use_future);
    if (done.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      spdlog::warn("shutdown: handing work over took too long; the reaper resolves the rest");
      return;
    }
    done.get();
  } catch (const std::exception& e) {
    spdlog::warn("shutdown: cannot hand work over ({}); the reaper resolves it", e.what());
  }
}

}  // namespace cogwheel::scheduler
