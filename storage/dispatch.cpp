#include "storage/dispatch.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "storage/outbox.hpp"
#include "storage/prediction_columns.hpp"
#include "storage/prepared.hpp"

namespace cogwheel::storage {

namespace {

std::string text_array(const std::vector<std::string>& items) {
  return nlohmann::json(items).dump();
}

}  // namespace

std::vector<claimed_prediction> dispatch_claim(pqxx::transaction_base& tx, const claim_params& p) {
  std::vector<claimed_prediction> out;
  if (p.slots.empty()) return out;
  // The queued rows are locked oldest first; each takes the slot of the same rank.
  static const std::string sql = std::string(R"(
WITH picked AS (
  SELECT id AS pid, row_number() OVER (ORDER BY created_at, id) AS ord
  FROM (SELECT id, created_at FROM predictions
        WHERE status = 'starting' AND dispatched_at IS NULL AND version_id = $1
        ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) q),
slots AS (
  SELECT cid, ord FROM jsonb_array_elements_text($3::jsonb) WITH ORDINALITY AS s(cid, ord))
UPDATE predictions p
SET dispatched_at = now(), container_id = slots.cid, attempt = p.attempt + 1,
    lease_owner = $4, lease_expires_at = now() + $5 * interval '1 millisecond', updated_at = now()
FROM picked JOIN slots USING (ord)
WHERE p.id = picked.pid
RETURNING )") + prediction_columns +
                                 ", p.container_id";
  // prediction_columns are unqualified: the joined relations use other column names.
  auto result = exec_prepared_sql(tx, "dispatch_claim", sql, p.version_id,
                                  static_cast<std::int64_t>(p.slots.size()), text_array(p.slots),
                                  p.owner, p.lease_ms);
  out.reserve(result.size());
  for (const auto& r : result) {
    claimed_prediction c;
    c.row = prediction_from_row(r);
    c.container_id = r[static_cast<pqxx::row::size_type>(r.size() - 1)].as<std::string>();
    out.push_back(std::move(c));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.row.created_at != b.row.created_at ? a.row.created_at < b.row.created_at
                                                : a.row.id < b.row.id;
  });
  return out;
}

bool dispatch_requeue(pqxx::transaction_base& tx, const std::string& id,
                      const std::string& container_id) {
  auto r = tx.exec_params(
      "UPDATE predictions SET dispatched_at = NULL, container_id = NULL, lease_owner = NULL, "
      "lease_expires_at = NULL, updated_at = now() "
      "WHERE id = $1 AND container_id = $2 AND status = 'starting' AND started_at IS NULL",
      id, container_id);
  return r.affected_rows() == 1;
}

std::vector<prediction_row> prediction_lock_many(pqxx::transaction_base& tx,
                                                 std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::vector<prediction_row> rows;
  if (ids.empty()) return rows;
  static const std::string sql =
      std::string("SELECT ") + prediction_columns +
      " FROM predictions WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)) "
      "ORDER BY id FOR UPDATE";
  auto result = exec_planned_sql(tx, sql, text_array(ids));
  rows.reserve(result.size());
  for (const auto& r : result) rows.push_back(prediction_from_row(r));
  return rows;
}

std::vector<versioned_row> prediction_read_many(pqxx::transaction_base& tx,
                                                std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::vector<versioned_row> rows;
  if (ids.empty()) return rows;
  static const std::string sql =
      std::string("SELECT ") + prediction_columns +
      ", xmin::text FROM predictions WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)) "
      "ORDER BY id";
  auto result = exec_planned_sql(tx, sql, text_array(ids));
  rows.reserve(result.size());
  for (const auto& r : result) {
    rows.push_back({prediction_from_row(r),
                    r[static_cast<pqxx::row::size_type>(r.size() - 1)].as<std::string>()});
  }
  return rows;
}

std::vector<prediction_row> prediction_apply_many(pqxx::transaction_base& tx,
                                                  const std::vector<prediction_change>& changes) {
  std::vector<prediction_row> rows;
  if (changes.empty()) return rows;
  // In id order: concurrent batches lock rows in the same order and cannot deadlock.
  std::vector<const prediction_change*> ordered;
  for (const auto& c : changes) ordered.push_back(&c);
  std::sort(ordered.begin(), ordered.end(), [](auto a, auto b) { return a->id < b->id; });
  nlohmann::json batch = nlohmann::json::array();
  for (const auto* cp : ordered) {
    const auto& c = *cp;
    const auto& a = c.after;
    nlohmann::json j = {{"u_id", c.id},
                        {"u_expected", c.expected_status},
                        {"u_status", a.status},
                        {"u_output", a.output_json},
                        {"u_logs", a.logs},
                        {"u_started", a.started_at.has_value()},
                        {"u_completed", a.completed_at.has_value()}};
    if (a.error) j["u_error"] = *a.error;
    if (a.error_code) j["u_error_code"] = *a.error_code;
    if (a.metrics_json) j["u_metrics"] = *a.metrics_json;
    if (c.expected_version) j["u_version"] = *c.expected_version;
    batch.push_back(std::move(j));
  }
  // Timestamps come from the database clock; total_time is measured from created_at.
  static const std::string sql = std::string(R"(
UPDATE predictions p
SET status = u.u_status,
    output = u.u_output::jsonb,
    logs = u.u_logs,
    error = u.u_error,
    error_code = u.u_error_code,
    started_at = CASE WHEN u.u_started THEN coalesce(p.started_at, now()) ELSE p.started_at END,
    run_by = CASE WHEN u.u_started AND p.started_at IS NULL AND p.run_timeout_ms IS NOT NULL
                  THEN now() + p.run_timeout_ms * interval '1 millisecond' ELSE p.run_by END,
    completed_at = CASE WHEN u.u_completed THEN now() ELSE NULL END,
    metrics = CASE WHEN u.u_completed
                   THEN coalesce(u.u_metrics::jsonb, '{}'::jsonb) || jsonb_build_object(
                          'total_time', extract(epoch FROM now() - p.created_at)::float8)
                   ELSE p.metrics END,
    lease_owner = CASE WHEN u.u_completed THEN NULL ELSE p.lease_owner END,
    lease_expires_at = CASE WHEN u.u_completed THEN NULL ELSE p.lease_expires_at END,
    updated_at = now()
FROM jsonb_to_recordset($1::jsonb) AS u(u_id text, u_expected text, u_status text, u_output text,
     u_logs text, u_error text, u_error_code text, u_metrics text, u_started boolean,
     u_completed boolean, u_version text)
WHERE p.id = u.u_id AND p.status = u.u_expected
  AND (u.u_version IS NULL OR p.xmin::text = u.u_version)
RETURNING )") + prediction_columns;
  auto result = exec_planned_sql(tx, sql, batch.dump());
  rows.reserve(result.size());
  for (const auto& r : result) rows.push_back(prediction_from_row(r));
  return rows;
}

std::optional<prediction_row> prediction_get_by_id(pqxx::transaction_base& tx,
                                                   const std::string& id) {
  auto r = tx.exec_params(
      std::string("SELECT ") + prediction_columns + " FROM predictions WHERE id = $1", id);
  if (r.empty()) return std::nullopt;
  return prediction_from_row(r[0]);
}

std::size_t dispatch_renew_leases(pqxx::transaction_base& tx, const std::string& owner,
                                  const std::vector<std::string>& ids, std::int64_t lease_ms) {
  if (ids.empty()) return 0;
  // Rows another transaction holds (an update being applied) are skipped rather than waited
  // for, and in id order like every multi-row lock here: no deadlock with update batches. A
  // skipped row is renewed next time, well before its lease runs out.
  auto r = tx.exec_params(
      "UPDATE predictions SET lease_expires_at = now() + $2 * interval '1 millisecond' "
      "WHERE id = ANY(ARRAY(SELECT id FROM predictions WHERE id IN (SELECT "
      "jsonb_array_elements_text($3::jsonb)) AND lease_owner = $1 AND dispatched_at IS NOT NULL "
      "AND status IN ('starting', 'processing') ORDER BY id FOR UPDATE SKIP LOCKED))",
      owner, lease_ms, text_array(ids));
  return static_cast<std::size_t>(r.affected_rows());
}

std::vector<std::pair<std::string, std::string>> dispatch_cancels_pending(
    pqxx::transaction_base& tx, const std::string& owner, const std::vector<std::string>& ids) {
  std::vector<std::pair<std::string, std::string>> out;
  auto result = tx.exec_params(
      "SELECT id, container_id FROM predictions WHERE cancel_requested_at IS NOT NULL "
      "AND status IN ('starting', 'processing') AND lease_owner = $1 AND container_id IS NOT NULL "
      "AND ($2::jsonb IS NULL OR id IN (SELECT jsonb_array_elements_text($2::jsonb)))",
      owner,
      ids.empty() ? std::optional<std::string>{} : std::optional<std::string>{text_array(ids)});
  for (const auto& r : result) out.emplace_back(r[0].as<std::string>(), r[1].as<std::string>());
  return out;
}

}  // namespace cogwheel::storage
