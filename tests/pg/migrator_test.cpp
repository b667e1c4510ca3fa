#include "storage/migrator.hpp"

#include <catch2/catch.hpp>
#include <future>
#include <pqxx/pqxx>

#include "storage/errors.hpp"
#include "tests/support/pg.hpp"

using namespace cogwheel;

namespace {
int count_tables(const std::string& conninfo) {
  pqxx::connection c(conninfo);
  pqxx::read_transaction tx(c);
  return tx
      .exec1(
          "SELECT count(*) FROM information_schema.tables WHERE table_schema = "
          "current_schema()")[0]
      .as<int>();
}
std::vector<storage::migration> two_step() {
  return {storage::make_migration("0001_first.sql", "CREATE TABLE a (x int);"),
          storage::make_migration("0002_second.sql", "CREATE TABLE b (y int);")};
}
}  // namespace

TEST_CASE("the migrator applies every embedded migration and is idempotent", "[pg][migrate]") {
  test::test_schema schema;
  const auto& all = storage::embedded_migrations();
  REQUIRE(!all.empty());
  auto first = storage::migrate(schema.conninfo(), all);
  CHECK(first.applied.size() == all.size());
  CHECK(first.version == static_cast<int>(all.size()));
  const int tables = count_tables(schema.conninfo());
  CHECK(tables >= 9);  // schema_migrations + the tables of 0001

  auto second = storage::migrate(schema.conninfo(), all);
  CHECK(second.applied.empty());
  CHECK(second.version == first.version);
  CHECK(count_tables(schema.conninfo()) == tables);

  pqxx::connection c(schema.conninfo());
  CHECK(storage::check_schema(c, all).current);
}

TEST_CASE("migrations apply in order, each recorded with name and checksum", "[pg][migrate]") {
  test::test_schema schema;
  auto steps = two_step();
  auto partial = storage::migrate(schema.conninfo(), {steps[0]});
  CHECK(partial.applied == std::vector<std::string>{"0001_first"});
  {
    pqxx::connection c(schema.conninfo());
    auto state = storage::check_schema(c, steps);
    CHECK_FALSE(state.current);
    CHECK(state.version == 1);
    CHECK_THAT(state.problem, Catch::Contains("version 1 of 2"));
  }
  auto rest = storage::migrate(schema.conninfo(), steps);
  CHECK(rest.applied == std::vector<std::string>{"0002_second"});
  pqxx::connection c(schema.conninfo());
  pqxx::read_transaction tx(c);
  auto rows = tx.exec("SELECT version, name, checksum FROM schema_migrations ORDER BY version");
  REQUIRE(rows.size() == 2);
  CHECK(rows[0][1].as<std::string>() == "first");
  CHECK(rows[1][2].as<std::string>() == steps[1].checksum());
}

TEST_CASE("two migrators started at once do not clash", "[pg][migrate]") {
  test::test_schema schema;
  const auto& all = storage::embedded_migrations();
  auto run = [&] { return storage::migrate(schema.conninfo(), all); };
  auto a = std::async(std::launch::async, run);
  auto b = std::async(std::launch::async, run);
  auto ra = a.get();
  auto rb = b.get();
  CHECK(ra.applied.size() + rb.applied.size() == all.size());
  CHECK((ra.applied.empty() || rb.applied.empty()));
  pqxx::connection c(schema.conninfo());
  pqxx::read_transaction tx(c);
  CHECK(tx.exec1("SELECT count(*) FROM schema_migrations")[0].as<std::size_t>() == all.size());
}

TEST_CASE("an applied migration whose file changed is refused", "[pg][migrate]") {
  test::test_schema schema;
  auto steps = two_step();
  storage::migrate(schema.conninfo(), steps);
  steps[0].sql += "\n-- edited";
  CHECK_THROWS_MATCHES(storage::migrate(schema.conninfo(), steps), storage::schema_mismatch,
                       Catch::Matchers::Predicate<storage::schema_mismatch>([](const auto& e) {
                         return std::string(e.what()).find("0001_first was changed") !=
                                std::string::npos;
                       }));
}

TEST_CASE("a database with a migration this binary does not know is refused", "[pg][migrate]") {
  test::test_schema schema;
  auto steps = two_step();
  storage::migrate(schema.conninfo(), steps);
  steps.pop_back();
  try {
    storage::migrate(schema.conninfo(), steps);
    FAIL("an unknown migration was accepted");
  } catch (const storage::schema_mismatch& e) {
    CHECK_THAT(e.what(), Catch::Contains("0002_second") && Catch::Contains("does not know"));
  }
  pqxx::connection c(schema.conninfo());
  CHECK_FALSE(storage::check_schema(c, steps).current);
}

TEST_CASE("a failing migration rolls back and names itself", "[pg][migrate]") {
  test::test_schema schema;
  std::vector<storage::migration> bad = {
      storage::make_migration("0001_ok.sql", "CREATE TABLE ok (x int);"),
      storage::make_migration("0002_broken.sql", "CREATE TABLE half (x int); SELECT 1/0;")};
  try {
    storage::migrate(schema.conninfo(), bad);
    FAIL("the broken migration was applied");
  } catch (const storage::error& e) {
    CHECK_THAT(e.what(), Catch::Contains("migration 0002_broken failed"));
  }
  pqxx::connection c(schema.conninfo());
  pqxx::read_transaction tx(c);
  CHECK(tx.exec1("SELECT to_regclass('half') IS NULL")[0].as<bool>());
  CHECK(tx.exec1("SELECT max(version) FROM schema_migrations")[0].as<int>() == 1);
}

TEST_CASE("migration file names are checked", "[migrate]") {
  CHECK(storage::make_migration("0012_add_things.sql", "").version == 12);
  CHECK(storage::make_migration("0012_add_things.sql", "").name == "add_things");
  CHECK_THROWS_AS(storage::make_migration("add_things.sql", ""), std::invalid_argument);
  CHECK_THROWS_AS(storage::make_migration("0000_zero.sql", ""), std::invalid_argument);
  CHECK_THROWS_AS(storage::make_migration("0001_x.txt", ""), std::invalid_argument);
  CHECK_THROWS_AS(storage::validate_sequence({storage::make_migration("0002_x.sql", "")}),
                  std::invalid_argument);
}
