#pragma once
// The models, versions and deployments tables: every SQL statement on them lives in catalog.cpp.
// The catalog is declared in the config file (scheduler/config.hpp) and written here at start.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace cogwheel::storage {

struct catalog_version {
  std::string id;                                // 64 lowercase hex
  std::string runtime_json = "{}";               // how its containers are obtained, as JSON text
  std::optional<std::int64_t> start_timeout_ms;  // null: the service default
  std::optional<std::int64_t> run_timeout_ms;
};

struct catalog_model {
  std::string owner;
  std::string name;
  std::string description;
  std::vector<catalog_version> versions;  // the last one is the model's latest
};

struct catalog_deployment {
  std::string owner;
  std::string name;
  std::string version_id;
  int min_instances = 0;
  int max_instances = 1;
  std::optional<std::int64_t> start_timeout_ms;  // null: the version's
  std::optional<std::int64_t> run_timeout_ms;
  bool require_webhook = false;
};

// Everything the config file declares. Plain data: no YAML here.
struct catalog_spec {
  std::vector<catalog_model> models;
  std::vector<catalog_deployment> deployments;
};

// What a sync wrote: rows inserted, and rows that existed and were updated.
struct catalog_sync_result {
  std::size_t models_inserted = 0, models_updated = 0;
  std::size_t versions_inserted = 0, versions_updated = 0;
  std::size_t deployments_inserted = 0, deployments_updated = 0;
};

// Upserts every model (on owner/name), version (on id) and deployment (on owner/name) of `spec`,
// and sets each model's latest_version_id to its last-listed version (unchanged for a model
// listed without versions). Idempotent.
//
// Models, versions and deployments that are in the database but not in `spec` are left in place:
// predictions reference them, and their history must stay readable. They simply stop being
// creatable, because the API resolves creates from the config, not from these tables.
//
// Throws storage::error when a version id already belongs to another model (a version never
// moves); the caller must then roll back, as some rows may already have been written. Throws pqxx
// errors for rows the schema refuses (bad names, a deployment pinned to an unknown version).
catalog_sync_result catalog_sync(pqxx::transaction_base& tx, const catalog_spec& spec);

}  // namespace cogwheel::storage
