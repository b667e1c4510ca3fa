// The first migration's rules: the database itself refuses states the lifecycle forbids.
#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include "storage/migrator.hpp"
#include "tests/support/pg.hpp"

using namespace cogwheel;

namespace {

constexpr const char* version_id =
    "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa";

struct fixture {
  test::test_schema schema;
  pqxx::connection conn{migrated(schema)};

  fixture() {
    pqxx::work tx(conn);
    tx.exec(
        "INSERT INTO api_tokens (name, token_sha256, token_hint, webhook_secret) VALUES "
        "('t', sha256('secret'), 'r8_abc', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')");
    tx.exec("INSERT INTO models (owner, name) VALUES ('acme', 'echo')");
    tx.exec_params("INSERT INTO versions (id, model_id) SELECT $1, id FROM models", version_id);
    tx.commit();
  }

  void insert(const std::string& id) {
    pqxx::work tx(conn);
    tx.exec_params(
        "INSERT INTO predictions (id, token_id, model, version_id, input) "
        "SELECT $1, id, 'acme/echo', $2, '{}' FROM api_tokens",
        id, version_id);
    tx.commit();
  }

  // Runs one statement in its own transaction; returns the affected row count or throws.
  std::size_t exec(const std::string& sql) {
    pqxx::work tx(conn);
    auto r = tx.exec(sql);
    tx.commit();
    return r.affected_rows();
  }
};

const std::string id1 = "0123456789abcdefghjkmnpqrs";

}  // namespace

TEST_CASE_METHOD(fixture, "a prediction moves forward through its states", "[pg][schema]") {
  insert(id1);
  CHECK(exec("UPDATE predictions SET dispatched_at = now(), container_id = 'c1' WHERE id = '" +
             id1 + "' AND status = 'starting'") == 1);
  CHECK(exec("UPDATE predictions SET status = 'processing', started_at = now() WHERE id = '" + id1 +
             "' AND status = 'starting'") == 1);
  CHECK(exec("UPDATE predictions SET status = 'succeeded', completed_at = now(), output = '1' "
             "WHERE id = '" +
             id1 + "' AND status = 'processing'") == 1);
  // A late update that names the old state changes nothing.
  CHECK(exec("UPDATE predictions SET status = 'processing' WHERE id = '" + id1 +
             "' AND status = 'starting'") == 0);
}

TEST_CASE_METHOD(fixture, "a terminal state is final", "[pg][schema]") {
  insert(id1);
  exec("UPDATE predictions SET status = 'canceled', completed_at = now() WHERE id = '" + id1 + "'");
  CHECK_THROWS_AS(
      exec("UPDATE predictions SET status = 'starting', completed_at = NULL WHERE id = '" + id1 +
           "'"),
      pqxx::check_violation);
}

TEST_CASE_METHOD(fixture, "processing never returns to starting", "[pg][schema]") {
  insert(id1);
  exec(
      "UPDATE predictions SET status = 'processing', started_at = now(), dispatched_at = now(), "
      "container_id = 'c' WHERE id = '" +
      id1 + "'");
  CHECK_THROWS_AS(
      exec("UPDATE predictions SET status = 'starting', started_at = NULL WHERE id = '" + id1 +
           "'"),
      pqxx::check_violation);
}

TEST_CASE_METHOD(fixture, "completed_at is set exactly when the status is terminal",
                 "[pg][schema]") {
  insert(id1);
  CHECK_THROWS_AS(exec("UPDATE predictions SET status = 'canceled' WHERE id = '" + id1 + "'"),
                  pqxx::check_violation);
  CHECK_THROWS_AS(exec("UPDATE predictions SET completed_at = now() WHERE id = '" + id1 + "'"),
                  pqxx::check_violation);
}

TEST_CASE_METHOD(fixture, "a failed prediction carries its error code and message",
                 "[pg][schema]") {
  insert(id1);
  CHECK_THROWS_AS(
      exec("UPDATE predictions SET status = 'failed', completed_at = now() WHERE id = '" + id1 +
           "'"),
      pqxx::check_violation);
  CHECK_THROWS_AS(exec("UPDATE predictions SET status = 'failed', completed_at = now(), "
                       "error_code = 'E6716', error = 'timeout' WHERE id = '" +
                       id1 + "'"),
                  pqxx::check_violation);
  CHECK(
      exec("UPDATE predictions SET status = 'failed', completed_at = now(), error_code = 'E6716', "
           "error = 'E6716: Timeout starting prediction' WHERE id = '" +
           id1 + "'") == 1);
}

TEST_CASE_METHOD(fixture, "bad values are refused by the table itself", "[pg][schema]") {
  CHECK_THROWS_AS(insert("NOT-A-VALID-ID"), pqxx::check_violation);
  // Ids are exactly 26 characters of the Crockford alphabet (no i, l, o, u; lower case).
  CHECK_THROWS_AS(insert("0123456789abcdefghjkmnpqr"), pqxx::check_violation);    // 25
  CHECK_THROWS_AS(insert("0123456789abcdefghjkmnpqrst"), pqxx::check_violation);  // 27
  CHECK_THROWS_AS(insert("0123456789abcdefghjkmnpqri"), pqxx::check_violation);
  CHECK_THROWS_AS(insert("0123456789abcdefghjkmnpqrS"), pqxx::check_violation);
  CHECK_THROWS_AS(insert("0123456789abcdefghjkmnpq\u00e9"), pqxx::check_violation);  // 26 bytes
  CHECK_THROWS_AS(insert(""), pqxx::check_violation);
  insert("tvwxyz0123456789abcdefghjk");
  insert(id1);
  CHECK_THROWS_AS(exec("UPDATE predictions SET webhook_events_filter = '{start,bogus}', "
                       "webhook = 'http://x' WHERE id = '" +
                       id1 + "'"),
                  pqxx::check_violation);
  CHECK_THROWS_AS(
      exec("UPDATE predictions SET webhook_events_filter = '{start}' WHERE id = '" + id1 + "'"),
      pqxx::check_violation);
  CHECK_THROWS_AS(exec("UPDATE predictions SET webhook = 'ftp://x' WHERE id = '" + id1 + "'"),
                  pqxx::check_violation);
  CHECK_THROWS_AS(exec("UPDATE predictions SET dispatched_at = now() WHERE id = '" + id1 + "'"),
                  pqxx::check_violation);
}

TEST_CASE_METHOD(fixture, "claiming queued work uses the partial index", "[pg][schema]") {
  pqxx::work tx(conn);
  // Enough rows that the planner prefers the index over a scan.
  tx.exec_params(
      "INSERT INTO predictions (id, token_id, model, version_id, input, status, started_at, "
      "completed_at, dispatched_at, container_id) "
      "SELECT lpad(to_hex(g), 26, '0'), (SELECT id FROM api_tokens), 'acme/echo', $1, '{}', "
      "'succeeded', now(), now(), now(), 'c' FROM generate_series(1, 20000) g",
      version_id);
  tx.exec("ANALYZE predictions");
  auto plan = tx.exec_params(
      "EXPLAIN SELECT id FROM predictions WHERE version_id = $1 AND status = 'starting' AND "
      "dispatched_at IS NULL ORDER BY created_at, id LIMIT 100 FOR UPDATE SKIP LOCKED",
      version_id);
  std::string text;
  for (const auto& row : plan) text += row[0].as<std::string>() + "\n";
  CHECK_THAT(text, Catch::Contains("predictions_queued"));
}

TEST_CASE_METHOD(fixture, "the text keys of predictions compare bytewise", "[pg][schema]") {
  pqxx::work tx(conn);
  auto collations = tx.exec(
      "SELECT a.attrelid::regclass::text || '.' || a.attname, c.collname FROM pg_attribute a "
      "JOIN pg_collation c ON c.oid = a.attcollation WHERE (a.attrelid, a.attname) IN ("
      "('predictions'::regclass, 'id'), ('predictions'::regclass, 'version_id'), "
      "('predictions'::regclass, 'idempotency_key'), "
      "('webhook_deliveries'::regclass, 'prediction_id'))");
  REQUIRE(collations.size() == 4);
  for (const auto& row : collations) {
    INFO(row[0].as<std::string>());
    CHECK(row[1].as<std::string>() == "C");
  }
  // A parameter (of the default collation) compared with a key takes the key's collation, so the
  // key's index still serves the lookup.
  tx.exec("SET LOCAL enable_seqscan = off");
  std::string text;
  for (const auto& row :
       tx.exec_params("EXPLAIN SELECT id FROM predictions WHERE id = $1", std::string(id1))) {
    text += row[0].as<std::string>() + "\n";
  }
  CHECK_THAT(text, Catch::Contains("predictions_pkey"));
  // The deliveries still go with their prediction.
  CHECK(tx.exec1("SELECT confdeltype FROM pg_constraint WHERE conrelid = "
                 "'webhook_deliveries'::regclass AND confrelid = 'predictions'::regclass")[0]
            .as<std::string>() == "c");
}
