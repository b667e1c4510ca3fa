#include "storage/tokens.hpp"

#include <openssl/evp.h>

#include <array>
#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include "scheduler/token_command.hpp"
#include "storage/migrator.hpp"
#include "tests/support/pg.hpp"
#include "webhook/signature.hpp"

using namespace cogwheel;

namespace {

std::string sha256(std::string_view text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int len = 0;
  REQUIRE(EVP_Digest(text.data(), text.size(), digest.data(), &len, EVP_sha256(), nullptr) == 1);
  return {reinterpret_cast<const char*>(digest.data()), len};
}

struct migrated_schema {
  test::test_schema schema;
  migrated_schema() { storage::migrate(schema.conninfo(), storage::embedded_migrations()); }
  const std::string& conninfo() const { return schema.conninfo(); }
};

storage::token_new sample(const std::string& token) {
  return {"alice", sha256(token), token.substr(0, 7), webhook::generate_secret()};
}

}  // namespace

TEST_CASE("a token is found by its hash, and only by it", "[pg][tokens]") {
  migrated_schema db;
  pqxx::connection c(db.conninfo());
  pqxx::work tx(c);
  const auto t = sample("cw_first");
  const auto id = storage::token_insert(tx, t);
  CHECK(id > 0);
  const auto other = storage::token_insert(tx, sample("cw_second"));
  CHECK(other != id);

  auto found = storage::token_find(tx, sha256("cw_first"));
  REQUIRE(found);
  CHECK(found->id == id);
  CHECK(found->name == "alice");
  CHECK(found->webhook_secret == t.webhook_secret);
  CHECK_FALSE(found->previous_webhook_secret);
  CHECK_FALSE(found->previous_secret_until);
  CHECK_FALSE(found->revoked);

  CHECK_FALSE(storage::token_find(tx, sha256("cw_unknown")));
  CHECK_FALSE(storage::token_find(tx, ""));
  // Only the hash is stored, never the token.
  CHECK(tx.exec_params1("SELECT count(*) FROM api_tokens WHERE token_hint = 'cw_firs'")[0]
            .as<int>() == 1);
  CHECK(tx.exec1("SELECT count(*) FROM api_tokens WHERE token_sha256 = 'cw_first'::bytea")[0]
            .as<int>() == 0);
}

TEST_CASE("a revoked token is returned as revoked", "[pg][tokens]") {
  migrated_schema db;
  pqxx::connection c(db.conninfo());
  pqxx::work tx(c);
  const auto id = storage::token_insert(tx, sample("cw_revoked"));
  tx.exec_params0("UPDATE api_tokens SET revoked_at = now() WHERE id = $1", id);
  auto found = storage::token_find(tx, sha256("cw_revoked"));
  REQUIRE(found);
  CHECK(found->revoked);
}

TEST_CASE("a rotating token carries its previous secret", "[pg][tokens]") {
  migrated_schema db;
  pqxx::connection c(db.conninfo());
  pqxx::work tx(c);
  const auto id = storage::token_insert(tx, sample("cw_rotating"));
  const auto previous = webhook::generate_secret();
  tx.exec_params0(
      "UPDATE api_tokens SET previous_webhook_secret = $2, "
      "previous_secret_until = to_timestamp(1700000000.123456) WHERE id = $1",
      id, previous);
  auto found = storage::token_find(tx, sha256("cw_rotating"));
  REQUIRE(found);
  CHECK(found->previous_webhook_secret == previous);
  CHECK(found->previous_secret_until == 1'700'000'000'123'456);
}

TEST_CASE("the same token hash cannot be stored twice", "[pg][tokens]") {
  migrated_schema db;
  pqxx::connection c(db.conninfo());
  pqxx::work tx(c);
  storage::token_insert(tx, sample("cw_twice"));
  CHECK_THROWS_AS(storage::token_insert(tx, sample("cw_twice")), pqxx::unique_violation);
}

TEST_CASE("token create stores the hash of a fresh cw_ token", "[pg][tokens]") {
  migrated_schema db;
  const auto a = scheduler::create_token(db.conninfo(), "batch jobs");
  const auto b = scheduler::create_token(db.conninfo(), "batch jobs");
  CHECK(a.token != b.token);
  for (const auto& t : {a, b}) {
    CHECK_THAT(t.token, Catch::Matches("cw_[0-9A-Za-z]{40}"));
    CHECK(t.hint == t.token.substr(0, 7));
  }
  pqxx::connection c(db.conninfo());
  pqxx::work tx(c);
  auto found = storage::token_find(tx, sha256(a.token));
  REQUIRE(found);
  CHECK(found->id == a.id);
  CHECK(found->name == "batch jobs");
  CHECK_THAT(found->webhook_secret, Catch::StartsWith("whsec_"));
  CHECK(tx.exec_params1("SELECT token_hint FROM api_tokens WHERE id = $1", a.id)[0]
            .as<std::string>() == a.hint);
}

TEST_CASE("token names are checked before anything is written", "[tokens]") {
  CHECK_THROWS_WITH(scheduler::validate_token_name(""), Catch::Contains("1 to 200 characters"));
  CHECK_THROWS_WITH(scheduler::validate_token_name(std::string(201, 'x')),
                    Catch::Contains("got 201"));
  CHECK_THROWS_WITH(scheduler::validate_token_name("two\nlines"),
                    Catch::Contains("control characters"));
  CHECK_NOTHROW(scheduler::validate_token_name(std::string(200, 'x')));
  std::string accents;
  for (int i = 0; i < 200; ++i) accents += "é";  // 400 bytes, 200 characters
  CHECK_NOTHROW(scheduler::validate_token_name(accents));
}
