#pragma once
// Standard Webhooks signing (PROTOCOLS.md §2): pure functions, no I/O.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cogwheel::webhook {

// A new signing secret: "whsec_" + base64 of 32 random bytes (OpenSSL's CSPRNG).
std::string generate_secret();

// The key bytes behind a "whsec_<base64>" secret; throws std::invalid_argument when malformed or
// not 24 to 64 bytes long.
std::vector<unsigned char> secret_key(std::string_view secret);

// "v1,<base64 HMAC-SHA256(key, msg_id + '.' + timestamp + '.' + body)>".
std::string sign(std::string_view secret, std::string_view msg_id, std::int64_t timestamp,
                 std::string_view body);

// The webhook-signature header: one entry per secret, space-separated (two while rotating).
std::string signature_header(const std::vector<std::string>& secrets, std::string_view msg_id,
                             std::int64_t timestamp, std::string_view body);

}  // namespace cogwheel::webhook
