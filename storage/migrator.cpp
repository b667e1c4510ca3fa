#include "storage/migrator.hpp"

#include <openssl/evp.h>

#include <array>
#include <charconv>
#include <map>
#include <pqxx/pqxx>
#include <stdexcept>

#include "storage/errors.hpp"
#include "storage/pool.hpp"

namespace cogwheel::storage {

namespace {

constexpr const char* create_history_sql = R"(
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    integer PRIMARY KEY CHECK (version > 0),
  name       text NOT NULL,
  checksum   text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
  applied_at timestamptz NOT NULL DEFAULT now()
))";

struct recorded {
  std::string name;
  std::string checksum;
};

std::string pad4(int v) {
  std::string s = std::to_string(v);
  return std::string(s.size() < 4 ? 4 - s.size() : 0, '0') + s;
}

// Compares the database's history with ours; returns the problem in one line, or "".
std::string history_problem(const std::map<int, recorded>& history,
                            const std::vector<migration>& migrations) {
  for (const auto& [version, rec] : history) {
    if (version > static_cast<int>(migrations.size())) {
      return "the database has migration " + pad4(version) + "_" + rec.name +
             ", which this cogwheel does not know (it knows up to " +
             (migrations.empty() ? std::string("none") : migrations.back().label()) +
             "); run a newer cogwheel";
    }
    const migration& m = migrations[static_cast<std::size_t>(version - 1)];
    if (rec.checksum != m.checksum()) {
      return "migration " + m.label() + " was changed after it was applied (checksum " +
             rec.checksum.substr(0, 12) + " in the database, " + m.checksum().substr(0, 12) +
             " in this cogwheel); applied migrations must never be edited";
    }
  }
  return {};
}

std::map<int, recorded> read_history(pqxx::transaction_base& tx) {
  std::map<int, recorded> history;
  for (const auto& row : tx.exec("SELECT version, name, checksum FROM schema_migrations")) {
    history[row[0].as<int>()] = {row[1].as<std::string>(), row[2].as<std::string>()};
  }
  return history;
}

bool history_table_exists(pqxx::transaction_base& tx) {
  return tx.exec1("SELECT to_regclass('schema_migrations') IS NOT NULL")[0].as<bool>();
}

}  // namespace

std::string migration::checksum() const {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int len = 0;
  if (EVP_Digest(sql.data(), sql.size(), digest.data(), &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 0xf]);
  }
  return out;
}

std::string migration::label() const {
  return pad4(version) + "_" + name;
}

migration make_migration(const std::string& file_name, std::string sql) {
  const auto us = file_name.find('_');
  const bool ok_shape = us != std::string::npos && us >= 1 && file_name.size() > us + 5 &&
                        file_name.ends_with(".sql");
  int version = 0;
  if (ok_shape) {
    auto [ptr, ec] = std::from_chars(file_name.data(), file_name.data() + us, version);
    if (ec != std::errc() || ptr != file_name.data() + us || version <= 0) version = 0;
  }
  if (version == 0) {
    throw std::invalid_argument("migration file name must look like NNNN_name.sql: " + file_name);
  }
  return {version, file_name.substr(us + 1, file_name.size() - us - 5), std::move(sql)};
}

void validate_sequence(const std::vector<migration>& migrations) {
  for (std::size_t i = 0; i < migrations.size(); ++i) {
    if (migrations[i].version != static_cast<int>(i + 1)) {
      throw std::invalid_argument("migrations must be numbered 1, 2, 3... without gaps; found " +
                                  migrations[i].label() + " at position " + std::to_string(i + 1));
    }
  }
}

migrate_result migrate(const std::string& conninfo, const std::vector<migration>& migrations) {
  validate_sequence(migrations);
  std::unique_ptr<pqxx::connection> conn;
  try {
    conn = std::make_unique<pqxx::connection>(normalize_conninfo(
        conninfo, {{"connect_timeout", "10"}, {"application_name", "cogwheel migrate"}}));
  } catch (const pqxx::broken_connection& e) {
    std::string why = e.what();
    if (auto nl = why.find('\n'); nl != std::string::npos) why.resize(nl);
    throw unavailable("database unreachable: " + why);
  }
  migrate_result result;
  try {
    auto session = [&](const char* sql) { pqxx::nontransaction(*conn).exec(sql); };
    // Migrations may take long (index builds); waiting for another migrator is bounded.
    session("SET statement_timeout = 0");
    session("SET lock_timeout = '10min'");
    session("SELECT pg_advisory_lock(hashtext('cogwheel.migrate.' || current_schema()))");
    session(create_history_sql);
    std::map<int, recorded> history;
    {
      pqxx::work tx(*conn);
      history = read_history(tx);
    }
    if (auto problem = history_problem(history, migrations); !problem.empty()) {
      throw schema_mismatch(problem);
    }
    for (const auto& m : migrations) {
      if (history.count(m.version)) continue;
      try {
        pqxx::work tx(*conn);
        tx.exec(m.sql);
        tx.exec_params(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            m.version, m.name, m.checksum());
        tx.commit();
      } catch (const pqxx::broken_connection&) {
        throw;
      } catch (const std::exception& e) {
        std::string why = e.what();
        if (auto nl = why.find('\n'); nl != std::string::npos) why.resize(nl);
        throw error("migration " + m.label() + " failed: " + why);
      }
      result.applied.push_back(m.label());
    }
    result.version = static_cast<int>(migrations.size());
    session("SELECT pg_advisory_unlock(hashtext('cogwheel.migrate.' || current_schema()))");
  } catch (const pqxx::broken_connection& e) {
    throw unavailable(std::string("database connection lost while migrating: ") + e.what());
  }
  return result;
}

schema_state check_schema(pqxx::connection& conn, const std::vector<migration>& migrations) {
  pqxx::read_transaction tx(conn);
  schema_state state;
  if (!history_table_exists(tx)) {
    state.problem = "the database has no cogwheel schema; run cogwheel migrate";
    return state;
  }
  auto history = read_history(tx);
  state.version = history.empty() ? 0 : history.rbegin()->first;
  state.problem = history_problem(history, migrations);
  if (state.problem.empty() && history.size() < migrations.size()) {
    state.problem = "the database schema is at version " + std::to_string(state.version) + " of " +
                    std::to_string(migrations.size()) + "; run cogwheel migrate";
  }
  state.current = state.problem.empty();
  return state;
}

}  // namespace cogwheel::storage
