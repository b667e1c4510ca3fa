#pragma once
// The service_secrets table: secrets the service generates once and every process shares.
#include <pqxx/pqxx>
#include <string>

namespace cogwheel::storage {

// The secret `name`, stored as `candidate` if there was none yet (the first process wins).
std::string secret_get_or_create(pqxx::transaction_base& tx, const std::string& name,
                                 const std::string& candidate);

}  // namespace cogwheel::storage
