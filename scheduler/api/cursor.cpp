#include "scheduler/api/cursor.hpp"

#include <charconv>
#include <cstdint>

#include "scheduler/api/ids.hpp"

namespace cogwheel::scheduler::api {

namespace {

constexpr std::string_view alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int sextet(char c) {
  const auto pos = alphabet.find(c);
  return pos == std::string_view::npos ? -1 : static_cast<int>(pos);
}

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char ch : bytes) {
    acc = (acc << 8) | static_cast<unsigned char>(ch);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += alphabet[(acc >> bits) & 0x3f];
    }
  }
  if (bits > 0) out += alphabet[(acc << (6 - bits)) & 0x3f];
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char ch : text) {
    const int v = sextet(ch);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if ((acc & ((1U << bits) - 1)) != 0) return std::nullopt;  // leftover bits must be zero
  return out;
}

std::string encode_cursor(const cursor_value& c) {
  return base64url_encode(std::string(c.forward ? "f" : "b") + "." + std::to_string(c.created_at) +
                          "." + c.id);
}

std::optional<cursor_value> decode_cursor(std::string_view text) {
  if (text.empty() || text.size() > max_cursor_length) return std::nullopt;
  const auto raw = base64url_decode(text);
  if (!raw || raw->size() < 4 || (raw->at(0) != 'f' && raw->at(0) != 'b') || raw->at(1) != '.') {
    return std::nullopt;
  }
  const std::string_view rest = std::string_view(*raw).substr(2);
  const auto dot = rest.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  cursor_value c{raw->at(0) == 'f', 0, std::string(rest.substr(dot + 1))};
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + dot, c.created_at);
  if (ec != std::errc{} || end != rest.data() + dot || !is_prediction_id(c.id)) {
    return std::nullopt;
  }
  return c;
}

}  // namespace cogwheel::scheduler::api
