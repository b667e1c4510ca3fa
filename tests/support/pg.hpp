#pragma once
// PostgreSQL for tests: the throwaway server the test command starts, one schema per test.
#include <cstddef>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace cogwheel::test {

// COGWHEEL_TEST_DATABASE_URL, or a failed test naming the variable when it is unset.
std::string test_database_url();

// A fresh schema, dropped on destruction. conninfo() points at the test database with the schema
// first on search_path, so that everything created through it lands in the schema.
class test_schema {
 public:
  test_schema();
  ~test_schema();
  test_schema(const test_schema&) = delete;
  test_schema& operator=(const test_schema&) = delete;
  const std::string& name() const { return name_; }
  const std::string& conninfo() const { return conninfo_; }
  // conninfo() as a postgresql:// URI, for DATABASE_URL.
  const std::string& url() const { return url_; }

 private:
  std::string name_;
  std::string conninfo_;
  std::string url_;
};

// Migrates the schema with the embedded migrations; returns its conninfo.
std::string migrated(const test_schema& schema);

// The n-th of many prediction ids, in numeric order (Crockford base 32, zero-padded to 26).
std::string nth_prediction_id(std::size_t n);

// Collects the server's notices of a connection (auto_explain's plans among them).
struct notices : pqxx::errorhandler {
  std::vector<std::string> received;
  explicit notices(pqxx::connection_base& c) : pqxx::errorhandler(c) {}
  bool operator()(const char msg[]) noexcept override {
    try {
      received.emplace_back(msg);
    } catch (...) {
    }
    return false;  // not printed
  }
};

// Turns auto_explain on for the rest of `tx`: each statement's plan arrives as a notice.
inline void plans_as_notices(pqxx::transaction_base& tx) {
  tx.exec("LOAD 'auto_explain'");
  tx.exec("SET LOCAL auto_explain.log_min_duration = 0");
  tx.exec("SET LOCAL auto_explain.log_level = notice");
  tx.exec("SET LOCAL client_min_messages = notice");
}

}  // namespace cogwheel::test
