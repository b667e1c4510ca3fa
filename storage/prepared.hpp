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

}  // namespace cogwheel::storage
