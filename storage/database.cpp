#include "storage/database.hpp"

#include "storage/prepared.hpp"

namespace cogwheel::storage {

database::database(pool_options opts) : pool_(std::move(opts)), threads_(pool_.options().size) {}

database::~database() {
  threads_.join();
}

void wal_flush_barrier(pqxx::connection& c) {
  // A transaction that only takes an xid writes no WAL of its own and PostgreSQL commits it
  // asynchronously whatever synchronous_commit says; the message is a record of its own.
  pqxx::nontransaction tx(c);
  exec_prepared_sql(tx, "wal_flush_barrier",
                    "SELECT pg_logical_emit_message(true, 'cogwheel', '')");
}

}  // namespace cogwheel::storage
