#include "tests/support/pg.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <pqxx/pqxx>
#include <random>

#include "storage/migrator.hpp"
#include "storage/pool.hpp"

namespace cogwheel::test {

std::string test_database_url() {
  const char* url = std::getenv("COGWHEEL_TEST_DATABASE_URL");
  if (url == nullptr || *url == '\0') {
    FAIL(
        "COGWHEEL_TEST_DATABASE_URL is not set: run the tests through scripts/test.sh, which "
        "starts a throwaway PostgreSQL");
  }
  return url;
}

test_schema::test_schema() {
  const std::string base = test_database_url();
  std::random_device rd;
  name_ = "t_" + std::to_string(rd()) + "_" + std::to_string(rd());
  {
    pqxx::connection c(base);
    pqxx::nontransaction tx(c);
    tx.exec("CREATE SCHEMA " + name_);
  }
  conninfo_ = storage::normalize_conninfo(base, {{"options", "-csearch_path=" + name_}});
  const std::string sep = base.find('?') == std::string::npos ? "?" : "&";
  url_ = base + sep + "options=-csearch_path%3D" + name_;
}

test_schema::~test_schema() {
  try {
    pqxx::connection c(test_database_url());
    pqxx::nontransaction tx(c);
    tx.exec("DROP SCHEMA " + name_ + " CASCADE");
  } catch (...) {
    // The next run starts from fresh schemas; a leftover one harms nothing.
  }
}

std::string migrated(const test_schema& schema) {
  storage::migrate(schema.conninfo(), storage::embedded_migrations());
  return schema.conninfo();
}

std::string nth_prediction_id(std::size_t n) {
  static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
  std::string id(26, '0');
  for (std::size_t i = 26; i-- > 0 && n > 0; n /= 32) id[i] = alphabet[n % 32];
  return id;
}

}  // namespace cogwheel::test
