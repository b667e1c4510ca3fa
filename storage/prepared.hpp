#pragma once
// Hot statements run as prepared statements: parsed and planned once per connection instead of
// on every call. pqxx keeps the definition per connection and prepares it on first use (again
// after a reconnect); defining the same name with the same text again is a cheap lookup.
#include <pqxx/pqxx>
#include <string>
#include <utility>

namespace cogwheel::storage {

template <class... Args>
pqxx::result exec_prepared_sql(pqxx::transaction_base& tx, const std::string& name,
                               const std::string& sql, Args&&... args) {
  tx.conn().prepare(name, sql);
  return tx.exec_prepared(name, std::forward<Args>(args)...);
}

// Statements that join a batch (a JSON or array parameter) with a table whose size changes fast:
// run unnamed, so that PostgreSQL plans each call for the batch and the table as they are. A
// prepared statement's generic plan, made while the table was small, keeps scanning all of it
// once it is large (bench/README.md, "Stale plans on growing tables"); planning costs well under a
// millisecond per batch.
template <class... Args>
pqxx::result exec_planned_sql(pqxx::transaction_base& tx, const std::string& sql, Args&&... args) {
  return tx.exec_params(sql, std::forward<Args>(args)...);
}

}  // namespace cogwheel::storage
