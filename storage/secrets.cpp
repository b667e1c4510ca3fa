#include "storage/secrets.hpp"

namespace cogwheel::storage {

std::string secret_get_or_create(pqxx::transaction_base& tx, const std::string& name,
                                 const std::string& candidate) {
  tx.exec_params(
      "INSERT INTO service_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
      name, candidate);
  return tx.exec_params1("SELECT value FROM service_secrets WHERE name = $1", name)[0]
      .as<std::string>();
}

}  // namespace cogwheel::storage
