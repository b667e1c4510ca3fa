#pragma once
// The dispatcher's statements on the predictions table: claiming queued work for container slots,
// putting it back, and applying container updates. Every state change is conditional on the state
// it expects, so a late or duplicate message can never move a prediction backwards.
#include <cstdint>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "storage/predictions.hpp"

namespace cogwheel::storage {

struct claimed_prediction {
  prediction_row row;
  std::string container_id;
};

struct claim_params {
  std::string version_id;
  std::vector<std::string> slots;  // one container id per free slot; at most that many are claimed
  std::string owner;               // this process's lease owner
  std::int64_t lease_ms = 30'000;
};

// Claims the oldest queued predictions of a version (FIFO, FOR UPDATE SKIP LOCKED), one per slot,
// recording container, attempt and lease in the same statement.
std::vector<claimed_prediction> dispatch_claim(pqxx::transaction_base& tx, const claim_params& p);

// Puts a dispatched prediction that its container never started back in the queue, at its place
// (its created_at is unchanged). False when it had moved on (started, finished, another container).
bool dispatch_requeue(pqxx::transaction_base& tx, const std::string& id,
                      const std::string& container_id);

// Locks and reads predictions for an update (FOR UPDATE), in id order to avoid deadlocks between
// concurrent batches. Unknown ids are absent from the result.
std::vector<prediction_row> prediction_lock_many(pqxx::transaction_base& tx,
                                                 std::vector<std::string> ids);

// Reads predictions without locking them, in id order, each with its row version (PostgreSQL's
// xmin, which every update changes): a change computed from one is applied with that version as
// its condition (optimistic concurrency), so a row updated meanwhile is left alone.
struct versioned_row {
  prediction_row row;
  std::string version;
};
std::vector<versioned_row> prediction_read_many(pqxx::transaction_base& tx,
                                                std::vector<std::string> ids);

// A new state computed from a read row: applied only if the row still has `expected_status` and,
// when given, `expected_version`.
struct prediction_change {
  std::string id;
  std::string expected_status;
  prediction_row after;  // status, output_json, logs, error, error_code, metrics_json,
                         // started_at, completed_at are written
  std::optional<std::string> expected_version = std::nullopt;
};
// Applies changes with one statement, in id order; returns the rows as updated (timestamps and
// metrics.total_time come from the database clock). A row whose status or version moved on is
// left alone and absent.
std::vector<prediction_row> prediction_apply_many(pqxx::transaction_base& tx,
                                                  const std::vector<prediction_change>& changes);

// A prediction by id, whichever tenant it belongs to (the dispatcher and streams).
std::optional<prediction_row> prediction_get_by_id(pqxx::transaction_base& tx,
                                                   const std::string& id);

// Renews the leases of these live predictions (the ones the caller holds) where `owner` holds
// them; returns how many.
std::size_t dispatch_renew_leases(pqxx::transaction_base& tx, const std::string& owner,
                                  const std::vector<std::string>& ids, std::int64_t lease_ms);

// Live predictions of `owner` whose cancel was requested: (id, container_id).
std::vector<std::pair<std::string, std::string>> dispatch_cancels_pending(
    pqxx::transaction_base& tx, const std::string& owner, const std::vector<std::string>& ids);

}  // namespace cogwheel::storage
