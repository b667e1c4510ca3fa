#pragma once
// The api_tokens table: every SQL statement on it lives in tokens.cpp. Only a token's SHA-256 is
// stored, never the token itself.
#include <chrono>
#include <cstdint>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>

namespace cogwheel::storage {

using micros = std::int64_t;  // microseconds since the Unix epoch, UTC

struct token_new {
  std::string name;            // 1 to 200 characters: who the token is for
  std::string sha256;          // the raw 32 bytes of SHA-256(token)
  std::string hint;            // the token's first characters, to tell tokens apart
  std::string webhook_secret;  // "whsec_..." signing secret for this tenant's webhooks
};

struct token_row {
  std::int64_t id = 0;
  std::string name;
  std::string webhook_secret;
  std::optional<std::string> previous_webhook_secret;  // set while a rotation is in progress
  std::optional<micros> previous_secret_until;         // when the previous secret stops signing
  bool revoked = false;                                // returned anyway: the caller refuses it
};

// Inserts a token; returns its id. Throws pqxx::unique_violation when the hash already exists and
// pqxx::check_violation for a bad name, hash length or secret.
std::int64_t token_insert(pqxx::transaction_base& tx, const token_new& t);

// The token whose SHA-256 is `sha256_raw` (32 raw bytes), revoked or not; nullopt when unknown.
std::optional<token_row> token_find(pqxx::transaction_base& tx, std::string_view sha256_raw);

// The token with this id; nullopt when unknown.
std::optional<token_row> token_get(pqxx::transaction_base& tx, std::int64_t id);

// Replaces a tenant's webhook signing secret by `new_secret`; the current one keeps signing (both
// signatures are sent) until now + overlap. Returns the row afterwards; nullopt when unknown.
std::optional<token_row> token_rotate_secret(pqxx::transaction_base& tx, std::int64_t id,
                                             const std::string& new_secret,
                                             std::chrono::seconds overlap);

}  // namespace cogwheel::storage
