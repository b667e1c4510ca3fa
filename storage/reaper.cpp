#include "storage/reaper.hpp"

#include <nlohmann/json.hpp>

namespace cogwheel::storage {

namespace {

std::vector<due_prediction> due(pqxx::transaction_base& tx, const std::string& sql,
                                std::size_t limit) {
  std::vector<due_prediction> out;
  for (const auto& r : tx.exec_params(sql, static_cast<std::int64_t>(limit))) {
    due_prediction d;
    d.id = r[0].as<std::string>();
    d.status = r[1].as<std::string>();
    if (!r[2].is_null()) d.container_id = r[2].as<std::string>();
    d.limit_ms = r[3].is_null() ? 0 : r[3].as<std::int64_t>();
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace

std::vector<due_prediction> prediction_due_deadlines(pqxx::transaction_base& tx,
                                                     std::size_t limit) {
  // predictions_deadline: (deadline) WHERE deadline IS NOT NULL AND status IN (live)
  static const std::string sql =
      "SELECT id, status, container_id, NULL::bigint FROM predictions "
      "WHERE deadline IS NOT NULL AND status IN ('starting', 'processing') AND deadline < now() "
      "ORDER BY deadline LIMIT $1";
  return due(tx, sql, limit);
}

std::vector<due_prediction> prediction_due_start_timeouts(pqxx::transaction_base& tx,
                                                          std::size_t limit) {
  // predictions_start_due: (start_by) WHERE status = 'starting'
  static const std::string sql =
      "SELECT id, status, container_id, "
      "(extract(epoch FROM start_by - created_at) * 1000)::bigint FROM predictions "
      "WHERE status = 'starting' AND start_by < now() ORDER BY start_by LIMIT $1";
  return due(tx, sql, limit);
}

std::vector<due_prediction> prediction_due_run_timeouts(pqxx::transaction_base& tx,
                                                        std::size_t limit) {
  // predictions_run_due: (run_by) WHERE status = 'processing'
  static const std::string sql =
      "SELECT id, status, container_id, run_timeout_ms FROM predictions "
      "WHERE status = 'processing' AND run_by < now() ORDER BY run_by LIMIT $1";
  return due(tx, sql, limit);
}

std::vector<lapsed_prediction> prediction_lapsed_leases(pqxx::transaction_base& tx,
                                                        std::size_t limit) {
  // predictions_live_lease: (lease_expires_at) WHERE lease_expires_at IS NOT NULL AND live
  auto result = tx.exec_params(
      "SELECT id, status, container_id, started_at IS NOT NULL, lease_owner FROM predictions "
      "WHERE status IN ('starting', 'processing') AND lease_expires_at IS NOT NULL "
      "AND lease_expires_at < now() "
      "AND dispatched_at IS NOT NULL ORDER BY lease_expires_at LIMIT $1",
      static_cast<std::int64_t>(limit));
  std::vector<lapsed_prediction> out;
  for (const auto& r : result) {
    out.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(),
                   r[3].as<bool>(), r[4].as<std::string>()});
  }
  return out;
}

bool prediction_adopt(pqxx::transaction_base& tx, const std::string& id,
                      const std::string& container_id, const std::string& owner,
                      std::int64_t lease_ms) {
  auto r = tx.exec_params(
      "UPDATE predictions SET lease_owner = $3, lease_expires_at = now() + $4 * interval "
      "'1 millisecond', updated_at = now() WHERE id = $1 AND container_id = $2 AND status IN "
      "('starting', 'processing') AND lease_expires_at < now()",
      id, container_id, owner, lease_ms);
  return r.affected_rows() == 1;
}

std::size_t prediction_release_leases(pqxx::transaction_base& tx, const std::string& owner,
                                      const std::vector<std::string>& ids) {
  if (ids.empty()) return 0;
  auto r = tx.exec_params(
      "UPDATE predictions SET lease_expires_at = now() - interval '1 millisecond' "
      "WHERE id = ANY(ARRAY(SELECT id FROM predictions WHERE id IN (SELECT "
      "jsonb_array_elements_text($2::jsonb)) AND lease_owner = $1 AND dispatched_at IS NOT NULL "
      "AND status IN ('starting', 'processing') ORDER BY id FOR UPDATE SKIP LOCKED))",
      owner, nlohmann::json(ids).dump());
  return static_cast<std::size_t>(r.affected_rows());
}

std::vector<std::string> prediction_remove_data(pqxx::transaction_base& tx,
                                                std::int64_t older_than_ms, std::size_t limit) {
  // predictions_retention: (data_removed, completed_at) WHERE completed_at IS NOT NULL
  auto result = tx.exec_params(
      "UPDATE predictions SET input = NULL, output = NULL, logs = '', data_removed = true, "
      "updated_at = now() WHERE id = ANY(ARRAY(SELECT id FROM predictions WHERE completed_at IS "
      "NOT NULL AND data_removed = false AND completed_at < now() - $1 * interval '1 millisecond' "
      "ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING id",
      older_than_ms, static_cast<std::int64_t>(limit));
  std::vector<std::string> ids;
  ids.reserve(result.size());
  for (const auto& r : result) ids.push_back(r[0].as<std::string>());
  if (!ids.empty()) {
    // The finished deliveries' bodies carried the same data; pending ones still have to go out.
    tx.exec_params(
        "UPDATE webhook_deliveries SET payload = '' WHERE prediction_id IN "
        "(SELECT jsonb_array_elements_text($1::jsonb)) AND state <> 'pending' AND payload <> ''",
        nlohmann::json(ids).dump());
  }
  return ids;
}

std::size_t prediction_delete_expired(pqxx::transaction_base& tx, std::int64_t older_than_ms,
                                      std::size_t limit) {
  // predictions_retention: (data_removed, completed_at) WHERE completed_at IS NOT NULL, read once
  // for rows whose data is gone (the usual case) and once for rows kept with their data.
  static const std::string sql =
      "DELETE FROM predictions WHERE id = ANY(ARRAY(SELECT p.id FROM predictions p "
      "WHERE p.completed_at IS NOT NULL AND p.data_removed = $3 AND p.completed_at < now() - $1 * "
      "interval '1 millisecond' AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE "
      "d.prediction_id = p.id AND d.state = 'pending') ORDER BY p.completed_at LIMIT $2 FOR "
      "UPDATE SKIP LOCKED))";
  std::size_t deleted = 0;
  for (const bool removed : {true, false}) {
    if (deleted >= limit) break;
    auto r =
        tx.exec_params(sql, older_than_ms, static_cast<std::int64_t>(limit - deleted), removed);
    deleted += static_cast<std::size_t>(r.affected_rows());
  }
  return deleted;
}

bool leader_acquire(pqxx::transaction_base& tx, const std::string& name, const std::string& owner,
                    std::int64_t ttl_ms) {
  auto r = tx.exec_params(
      "INSERT INTO leader_leases (name, owner, expires_at) "
      "VALUES ($1, $2, now() + $3 * interval '1 millisecond') "
      "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at "
      "WHERE leader_leases.owner = excluded.owner OR leader_leases.expires_at < now() "
      "RETURNING owner",
      name, owner, ttl_ms);
  return !r.empty();
}

void leader_release(pqxx::transaction_base& tx, const std::string& name, const std::string& owner) {
  tx.exec_params("DELETE FROM leader_leases WHERE name = $1 AND owner = $2", name, owner);
}

}  // namespace cogwheel::storage
