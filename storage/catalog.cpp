#include "storage/catalog.hpp"

#include "storage/errors.hpp"

namespace cogwheel::storage {

namespace {

// (xmax = 0) is true for a row this statement inserted, false for one it updated.
constexpr const char* model_upsert_sql = R"(
INSERT INTO models (owner, name, description) VALUES ($1, $2, $3)
ON CONFLICT (owner, name) DO UPDATE SET description = EXCLUDED.description
RETURNING id, (xmax = 0))";

// The WHERE clause keeps a version on its model: a conflicting id of another model updates
// nothing and returns no row.
constexpr const char* version_upsert_sql = R"(
INSERT INTO versions (id, model_id, runtime, start_timeout_ms, run_timeout_ms)
VALUES ($1, $2, $3::jsonb, $4, $5)
ON CONFLICT (id) DO UPDATE SET runtime = EXCLUDED.runtime,
                               start_timeout_ms = EXCLUDED.start_timeout_ms,
                               run_timeout_ms = EXCLUDED.run_timeout_ms
  WHERE versions.model_id = EXCLUDED.model_id
RETURNING (xmax = 0))";

constexpr const char* version_owner_sql = R"(
SELECT m.owner || '/' || m.name FROM versions v JOIN models m ON m.id = v.model_id
WHERE v.id = $1)";

constexpr const char* model_latest_sql = R"(
UPDATE models SET latest_version_id = $2 WHERE id = $1)";

constexpr const char* deployment_upsert_sql = R"(
INSERT INTO deployments (owner, name, version_id, min_instances, max_instances, start_timeout_ms,
                         run_timeout_ms, require_webhook)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (owner, name) DO UPDATE SET version_id = EXCLUDED.version_id,
                                        min_instances = EXCLUDED.min_instances,
                                        max_instances = EXCLUDED.max_instances,
                                        start_timeout_ms = EXCLUDED.start_timeout_ms,
                                        run_timeout_ms = EXCLUDED.run_timeout_ms,
                                        require_webhook = EXCLUDED.require_webhook
RETURNING (xmax = 0))";

void count(bool inserted, std::size_t& inserts, std::size_t& updates) {
  ++(inserted ? inserts : updates);
}

void sync_versions(pqxx::transaction_base& tx, const catalog_model& m, std::int64_t model_id,
                   catalog_sync_result& result) {
  for (const auto& v : m.versions) {
    const auto rows = tx.exec_params(version_upsert_sql, v.id, model_id, v.runtime_json,
                                     v.start_timeout_ms, v.run_timeout_ms);
    if (rows.empty()) {
      const auto owner = tx.exec_params1(version_owner_sql, v.id)[0].as<std::string>();
      throw error("version " + v.id + " belongs to model " + owner + " and cannot move to " +
                  m.owner + "/" + m.name);
    }
    count(rows[0][0].as<bool>(), result.versions_inserted, result.versions_updated);
  }
  if (!m.versions.empty()) tx.exec_params0(model_latest_sql, model_id, m.versions.back().id);
}

}  // namespace

catalog_sync_result catalog_sync(pqxx::transaction_base& tx, const catalog_spec& spec) {
  catalog_sync_result result;
  for (const auto& m : spec.models) {
    const auto row = tx.exec_params1(model_upsert_sql, m.owner, m.name, m.description);
    count(row[1].as<bool>(), result.models_inserted, result.models_updated);
    sync_versions(tx, m, row[0].as<std::int64_t>(), result);
  }
  for (const auto& d : spec.deployments) {
    const auto row =
        tx.exec_params1(deployment_upsert_sql, d.owner, d.name, d.version_id, d.min_instances,
                        d.max_instances, d.start_timeout_ms, d.run_timeout_ms, d.require_webhook);
    count(row[0].as<bool>(), result.deployments_inserted, result.deployments_updated);
  }
  return result;
}

}  // namespace cogwheel::storage
