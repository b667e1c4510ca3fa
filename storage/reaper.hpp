#pragma once
// The reaper's statements: what is due (deadlines, start and run timeouts, lapsed leases), taking
// lapsed work over, retention, and the leader lease that keeps these loops in one process at a
// time. Lookups are bounded by `limit` and served by the partial indexes of migrations 0001-0002;
// changes of status go through the dispatcher's conditional batch writes, not through here.
#include <cstdint>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace cogwheel::storage {

// A live prediction that something is due for.
struct due_prediction {
  std::string id;
  std::string status;                       // starting | processing
  std::optional<std::string> container_id;  // set once dispatched
  std::int64_t limit_ms = 0;                // the timeout that ran out (start or run), if any
};

// Live predictions whose deadline (Cancel-After) has passed, oldest deadline first.
std::vector<due_prediction> prediction_due_deadlines(pqxx::transaction_base& tx, std::size_t limit);
// `starting` predictions past start_by; limit_ms = start_by - created_at.
std::vector<due_prediction> prediction_due_start_timeouts(pqxx::transaction_base& tx,
                                                          std::size_t limit);
// `processing` predictions past run_by; limit_ms = their run timeout.
std::vector<due_prediction> prediction_due_run_timeouts(pqxx::transaction_base& tx,
                                                        std::size_t limit);

// Dispatched live predictions whose lease ran out (the process that held them is gone).
struct lapsed_prediction {
  std::string id;
  std::string status;
  std::string container_id;
  bool started = false;
  std::string lease_owner;
};
std::vector<lapsed_prediction> prediction_lapsed_leases(pqxx::transaction_base& tx,
                                                        std::size_t limit);

// Takes a lapsed prediction over: its lease becomes `owner`'s. False when someone else took it
// first, or it ended, or moved to another container.
bool prediction_adopt(pqxx::transaction_base& tx, const std::string& id,
                      const std::string& container_id, const std::string& owner,
                      std::int64_t lease_ms);

// Gives up `owner`'s leases on these predictions at once (on shutdown), so that another process
// takes over without waiting for them to run out; returns how many.
std::size_t prediction_release_leases(pqxx::transaction_base& tx, const std::string& owner,
                                      const std::vector<std::string>& ids);

// Retention. Removes input, output and logs of terminal predictions completed more than
// `older_than_ms` ago (data_removed = true) and the payloads of their finished webhook
// deliveries; returns the ids (their files are the caller's to delete).
std::vector<std::string> prediction_remove_data(pqxx::transaction_base& tx,
                                                std::int64_t older_than_ms, std::size_t limit);
// Deletes terminal predictions completed more than `older_than_ms` ago that have no webhook
// delivery still pending; returns how many.
std::size_t prediction_delete_expired(pqxx::transaction_base& tx, std::int64_t older_than_ms,
                                      std::size_t limit);

// The leader lease `name`: taken (or renewed) by `owner` when free, expired or already its own.
// Returns whether `owner` holds it now.
bool leader_acquire(pqxx::transaction_base& tx, const std::string& name, const std::string& owner,
                    std::int64_t ttl_ms);
void leader_release(pqxx::transaction_base& tx, const std::string& name, const std::string& owner);

}  // namespace cogwheel::storage
