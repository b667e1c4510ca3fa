#pragma once
// The migration runner: applies numbered SQL files in order, each in its own transaction, under an
// advisory lock, and refuses a database whose history this binary does not recognise.
#include <pqxx/connection>
#include <string>
#include <vector>

namespace cogwheel::storage {

struct migration {
  int version = 0;               // NNNN of NNNN_name.sql
  std::string name;              // the part after NNNN_, without .sql
  std::string sql;               // the file's bytes
  std::string checksum() const;  // lower-case hex SHA-256 of sql
  std::string label() const;     // "0001_initial"
};

// The migrations/ folder as compiled into this binary, in order.
const std::vector<migration>& embedded_migrations();

// Builds a migration from a file name "NNNN_name.sql" and its text; throws std::invalid_argument.
migration make_migration(const std::string& file_name, std::string sql);

// Throws std::invalid_argument unless versions are 1, 2, 3, ... in order.
void validate_sequence(const std::vector<migration>& migrations);

struct migrate_result {
  std::vector<std::string> applied;  // labels applied by this call, in order
  int version = 0;                   // the schema version afterwards
};

// Opens its own connection, takes the advisory lock (per schema), verifies recorded history,
// applies what is missing. Throws storage::schema_mismatch for an unknown or changed migration,
// storage::unavailable when the server cannot be reached, storage::error when a migration fails.
migrate_result migrate(const std::string& conninfo, const std::vector<migration>& migrations);

struct schema_state {
  bool current = false;  // every known migration applied, nothing unknown or changed
  int version = 0;
  std::string problem;  // why not current, in one line
};

// Read-only check for readiness probes; needs no lock. Throws pqxx errors.
schema_state check_schema(pqxx::connection& conn, const std::vector<migration>& migrations);

}  // namespace cogwheel::storage
