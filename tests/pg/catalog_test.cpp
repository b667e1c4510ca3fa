#include "storage/catalog.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include "storage/errors.hpp"
#include "storage/migrator.hpp"
#include "tests/support/pg.hpp"

using namespace cogwheel;

namespace {

const std::string v1(64, 'a');
const std::string v2(64, 'b');
const std::string v3(64, 'c');

storage::catalog_spec echo_spec() {
  storage::catalog_spec spec;
  spec.models.push_back(
      {"acme", "echo", "Echoes", {{v1, R"({"type":"static"})", std::nullopt, 60'000}}});
  spec.deployments.push_back({"acme", "echo-prod", v1, 1, 4, std::nullopt, std::nullopt, true});
  return spec;
}

// Syncs `spec` in its own transaction, committed when it succeeds.
storage::catalog_sync_result sync(const std::string& conninfo, const storage::catalog_spec& spec) {
  pqxx::connection c(conninfo);
  pqxx::work tx(c);
  auto result = storage::catalog_sync(tx, spec);
  tx.commit();
  return result;
}

std::string query1(const std::string& conninfo, const std::string& sql) {
  pqxx::connection c(conninfo);
  pqxx::read_transaction tx(c);
  auto f = tx.exec1(sql)[0];
  return f.is_null() ? "null" : f.as<std::string>();
}

struct migrated_schema {
  test::test_schema schema;
  migrated_schema() { storage::migrate(schema.conninfo(), storage::embedded_migrations()); }
  const std::string& conninfo() const { return schema.conninfo(); }
};

}  // namespace

TEST_CASE("catalog sync inserts models, versions and deployments", "[pg][catalog]") {
  migrated_schema db;
  auto r = sync(db.conninfo(), echo_spec());
  CHECK(r.models_inserted == 1);
  CHECK(r.versions_inserted == 1);
  CHECK(r.deployments_inserted == 1);
  CHECK(r.models_updated + r.versions_updated + r.deployments_updated == 0);

  CHECK(query1(db.conninfo(), "SELECT owner || '/' || name || ':' || description FROM models") ==
        "acme/echo:Echoes");
  CHECK(query1(db.conninfo(), "SELECT latest_version_id FROM models") == v1);
  CHECK(query1(db.conninfo(), "SELECT runtime->>'type' FROM versions") == "static");
  CHECK(query1(db.conninfo(), "SELECT start_timeout_ms FROM versions") == "null");
  CHECK(query1(db.conninfo(), "SELECT run_timeout_ms FROM versions") == "60000");
  CHECK(query1(db.conninfo(),
               "SELECT concat_ws(',', owner, name, version_id = '" + v1 +
                   "', min_instances, max_instances, require_webhook) FROM deployments") ==
        "acme,echo-prod,t,1,4,t");
}

TEST_CASE("catalog re-sync is idempotent and applies changes", "[pg][catalog]") {
  migrated_schema db;
  sync(db.conninfo(), echo_spec());
  auto again = sync(db.conninfo(), echo_spec());
  CHECK(again.models_inserted + again.versions_inserted + again.deployments_inserted == 0);
  CHECK(again.models_updated == 1);
  CHECK(again.versions_updated == 1);
  CHECK(again.deployments_updated == 1);
  CHECK(query1(db.conninfo(), "SELECT count(*) FROM models") == "1");
  CHECK(query1(db.conninfo(), "SELECT count(*) FROM versions") == "1");
  CHECK(query1(db.conninfo(), "SELECT count(*) FROM deployments") == "1");

  auto spec = echo_spec();
  spec.models[0].description = "Echoes, louder";
  spec.models[0].versions[0].runtime_json = R"({"type":"process"})";
  spec.models[0].versions[0].run_timeout_ms.reset();
  spec.models[0].versions.push_back({v2, "{}", 5'000, std::nullopt});
  spec.deployments[0].version_id = v2;
  spec.deployments[0].max_instances = 8;
  spec.deployments[0].require_webhook = false;
  auto changed = sync(db.conninfo(), spec);
  CHECK(changed.versions_inserted == 1);
  CHECK(changed.versions_updated == 1);
  CHECK(query1(db.conninfo(), "SELECT description FROM models") == "Echoes, louder");
  CHECK(query1(db.conninfo(), "SELECT latest_version_id FROM models") == v2);
  CHECK(query1(db.conninfo(), "SELECT runtime->>'type' FROM versions WHERE id = '" + v1 + "'") ==
        "process");
  CHECK(query1(db.conninfo(), "SELECT run_timeout_ms FROM versions WHERE id = '" + v1 + "'") ==
        "null");
  CHECK(query1(db.conninfo(), "SELECT concat_ws(',', version_id = '" + v2 +
                                  "', max_instances, require_webhook) FROM deployments") ==
        "t,8,f");
}

TEST_CASE("the latest version is the last one listed", "[pg][catalog]") {
  migrated_schema db;
  storage::catalog_spec spec;
  spec.models.push_back({"acme", "echo", "", {{v2, "{}", {}, {}}, {v1, "{}", {}, {}}}});
  sync(db.conninfo(), spec);
  CHECK(query1(db.conninfo(), "SELECT latest_version_id FROM models") == v1);
  std::swap(spec.models[0].versions[0], spec.models[0].versions[1]);
  sync(db.conninfo(), spec);
  CHECK(query1(db.conninfo(), "SELECT latest_version_id FROM models") == v2);
}

TEST_CASE("entries missing from the spec are left in place", "[pg][catalog]") {
  migrated_schema db;
  auto spec = echo_spec();
  spec.models.push_back({"acme", "old", "", {{v3, "{}", {}, {}}}});
  sync(db.conninfo(), spec);
  sync(db.conninfo(), storage::catalog_spec{});
  CHECK(query1(db.conninfo(), "SELECT count(*) FROM models") == "2");
  CHECK(query1(db.conninfo(), "SELECT count(*) FROM versions") == "2");
  CHECK(query1(db.conninfo(), "SELECT count(*) FROM deployments") == "1");
}

TEST_CASE("a version never moves to another model", "[pg][catalog]") {
  migrated_schema db;
  sync(db.conninfo(), echo_spec());
  storage::catalog_spec spec;
  spec.models.push_back({"acme", "thief", "", {{v1, R"({"type":"process"})", {}, {}}}});
  try {
    sync(db.conninfo(), spec);
    FAIL("the version moved");
  } catch (const storage::error& e) {
    CHECK_THAT(e.what(), Catch::Contains("version " + v1 + " belongs to model acme/echo") &&
                             Catch::Contains("acme/thief"));
  }
  // Rolled back: neither the new model nor a change to the version was written.
  CHECK(query1(db.conninfo(), "SELECT count(*) FROM models") == "1");
  CHECK(query1(db.conninfo(), "SELECT runtime->>'type' FROM versions") == "static");
}

TEST_CASE("rows the schema refuses fail the sync", "[pg][catalog]") {
  migrated_schema db;
  auto spec = echo_spec();
  spec.deployments[0].version_id = v3;  // not declared
  CHECK_THROWS_AS(sync(db.conninfo(), spec), pqxx::foreign_key_violation);
  spec = echo_spec();
  spec.models[0].owner = "-bad";
  CHECK_THROWS_AS(sync(db.conninfo(), spec), pqxx::check_violation);
}
