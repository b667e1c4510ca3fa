#include "storage/tokens.hpp"

namespace cogwheel::storage {

namespace {

constexpr const char* insert_sql = R"(
INSERT INTO api_tokens (name, token_sha256, token_hint, webhook_secret)
VALUES ($1, $2, $3, $4)
RETURNING id)";

#define TOKEN_COLUMNS                                                       \
  "id, name, webhook_secret, previous_webhook_secret, (extract(epoch FROM " \
  "previous_secret_until) * 1000000)::bigint, revoked_at IS NOT NULL"

constexpr const char* find_sql = "SELECT " TOKEN_COLUMNS " FROM api_tokens WHERE token_sha256 = $1";
constexpr const char* get_sql = "SELECT " TOKEN_COLUMNS " FROM api_tokens WHERE id = $1";
// A second rotation replaces the previous secret: at most two secrets sign at once.
constexpr const char* rotate_sql =
    "UPDATE api_tokens SET previous_webhook_secret = webhook_secret, previous_secret_until = "
    "now() + $3 * interval '1 second', webhook_secret = $2 WHERE id = $1 RETURNING " TOKEN_COLUMNS;

std::optional<token_row> token_from(const pqxx::result& rows) {
  if (rows.empty()) return std::nullopt;
  const auto& r = rows[0];
  token_row t;
  t.id = r[0].as<std::int64_t>();
  t.name = r[1].as<std::string>();
  t.webhook_secret = r[2].as<std::string>();
  if (!r[3].is_null()) t.previous_webhook_secret = r[3].as<std::string>();
  if (!r[4].is_null()) t.previous_secret_until = r[4].as<micros>();
  t.revoked = r[5].as<bool>();
  return t;
}

}  // namespace

std::int64_t token_insert(pqxx::transaction_base& tx, const token_new& t) {
  const pqxx::binarystring hash(t.sha256.data(), t.sha256.size());
  return tx.exec_params1(insert_sql, t.name, hash, t.hint, t.webhook_secret)[0].as<std::int64_t>();
}

std::optional<token_row> token_find(pqxx::transaction_base& tx, std::string_view sha256_raw) {
  const pqxx::binarystring hash(sha256_raw.data(), sha256_raw.size());
  return token_from(tx.exec_params(find_sql, hash));
}

std::optional<token_row> token_get(pqxx::transaction_base& tx, std::int64_t id) {
  return token_from(tx.exec_params(get_sql, id));
}

std::optional<token_row> token_rotate_secret(pqxx::transaction_base& tx, std::int64_t id,
                                             const std::string& new_secret,
                                             std::chrono::seconds overlap) {
  return token_from(tx.exec_params(rotate_sql, id, new_secret, static_cast<long>(overlap.count())));
}

}  // namespace cogwheel::storage
