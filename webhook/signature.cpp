#include "webhook/signature.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <stdexcept>

namespace cogwheel::webhook {

namespace {

constexpr std::string_view prefix = "whsec_";

std::string base64(const unsigned char* data, std::size_t len) {
  std::string out(4 * ((len + 2) / 3), '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(len));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

}  // namespace

std::string generate_secret() {
  std::array<unsigned char, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    throw std::runtime_error("the system random generator failed");
  }
  return std::string(prefix) + base64(bytes.data(), bytes.size());
}

std::vector<unsigned char> secret_key(std::string_view secret) {
  if (!secret.starts_with(prefix))
    throw std::invalid_argument("webhook secret must start with whsec_");
  std::string_view b64 = secret.substr(prefix.size());
  if (b64.empty() || b64.size() % 4 != 0) {
    throw std::invalid_argument("webhook secret is not valid base64");
  }
  std::vector<unsigned char> key(b64.size() / 4 * 3);
  const int n = EVP_DecodeBlock(key.data(), reinterpret_cast<const unsigned char*>(b64.data()),
                                static_cast<int>(b64.size()));
  if (n < 0) throw std::invalid_argument("webhook secret is not valid base64");
  std::size_t len = static_cast<std::size_t>(n);
  // EVP_DecodeBlock counts padding as zero bytes.
  for (auto it = b64.rbegin(); it != b64.rend() && *it == '='; ++it) --len;
  key.resize(len);
  if (len < 24 || len > 64) throw std::invalid_argument("webhook secret must be 24 to 64 bytes");
  return key;
}

std::string sign(std::string_view secret, std::string_view msg_id, std::int64_t timestamp,
                 std::string_view body) {
  const auto key = secret_key(secret);
  const std::string ts = std::to_string(timestamp);
  std::string content;
  content.reserve(msg_id.size() + ts.size() + body.size() + 2);
  content.append(msg_id).append(".").append(ts).append(".").append(body);
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(content.data()), content.size(), mac.data(),
           &mac_len) == nullptr) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  return "v1," + base64(mac.data(), mac_len);
}

std::string signature_header(const std::vector<std::string>& secrets, std::string_view msg_id,
                             std::int64_t timestamp, std::string_view body) {
  std::string header;
  for (const auto& s : secrets) {
    if (!header.empty()) header.push_back(' ');
    header += sign(s, msg_id, timestamp, body);
  }
  return header;
}

}  // namespace cogwheel::webhook
