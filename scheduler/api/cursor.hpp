#pragma once
// The opaque `cursor` of GET /v1/predictions (newest first): base64url, without padding, of
// "<f|b>.<created_at micros>.<id>".
#include <optional>
#include <string>
#include <string_view>

#include "storage/predictions.hpp"

namespace cogwheel::scheduler::api {

inline constexpr std::size_t max_cursor_length = 200;

struct cursor_value {
  bool forward = true;  // true: rows older than (created_at, id); false: newer ones
  storage::micros created_at = 0;
  std::string id;
  bool operator==(const cursor_value&) const = default;
};

std::string base64url_encode(std::string_view bytes);
// Strict: refuses padding, characters outside the alphabet, and non-canonical trailing bits.
std::optional<std::string> base64url_decode(std::string_view text);

std::string encode_cursor(const cursor_value& c);
// nullopt for anything that encode_cursor did not produce: garbage, a bad id, over 200 chars.
std::optional<cursor_value> decode_cursor(std::string_view text);

}  // namespace cogwheel::scheduler::api
