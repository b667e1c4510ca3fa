#include "scheduler/api/tokens.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <stdexcept>

namespace cogwheel::scheduler::api {

namespace {

constexpr std::string_view base62 =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr unsigned reject_from = 248;  // 4 * 62: bytes below it map uniformly by % 62

}  // namespace

std::string generate_api_token() {
  std::string out(api_token_prefix);
  std::array<unsigned char, 64> pool{};
  while (out.size() < api_token_prefix.size() + api_token_random_chars) {
    if (RAND_bytes(pool.data(), static_cast<int>(pool.size())) != 1) {
      throw std::runtime_error("RAND_bytes failed");
    }
    for (unsigned char b : pool) {
      if (b >= reject_from) continue;
      out += base62[b % 62];
      if (out.size() == api_token_prefix.size() + api_token_random_chars) break;
    }
  }
  return out;
}

std::string sha256_bytes(std::string_view data) {
  // Fetched once: EVP_sha256() makes every EVP_Digest look the implementation up again.
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  std::string out(32, '\0');
  unsigned len = 0;
  if (sha256 == nullptr ||
      EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &len,
                 sha256, nullptr) != 1 ||
      len != out.size()) {
    throw std::runtime_error("SHA-256 failed");
  }
  return out;
}

std::string token_hint(std::string_view token) {
  return std::string(token.substr(0, 7));
}

std::string request_fingerprint(std::string_view route_key, const nlohmann::json& body) {
  std::string text(route_key);
  text += '\n';
  // Invalid UTF-8 cannot come from a parsed body; replacing it keeps this from throwing.
  text += body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return sha256_bytes(text);
}

}  // namespace cogwheel::scheduler::api
