#pragma once
// API tokens: generated, hashed for storage, shown by a short hint; request fingerprints for
// idempotency keys.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace cogwheel::scheduler::api {

inline constexpr std::string_view api_token_prefix = "cw_";
inline constexpr std::size_t api_token_random_chars = 40;

// "cw_" + 40 base62 characters from OpenSSL's CSPRNG, uniform (rejection sampling: bytes >= 248
// are redrawn). Throws std::runtime_error if RAND_bytes fails.
std::string generate_api_token();

// The 32 raw bytes of SHA-256(data).
std::string sha256_bytes(std::string_view data);

// The first 7 characters of a token, e.g. "cw_AbCd", to show which token is which.
std::string token_hint(std::string_view token);

// 32 raw bytes: SHA-256 over route_key + "\n" + body.dump(). Object keys dump sorted, so their
// order in the request does not matter.
std::string request_fingerprint(std::string_view route_key, const nlohmann::json& body);

}  // namespace cogwheel::scheduler::api
