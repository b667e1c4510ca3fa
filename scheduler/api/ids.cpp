#include "scheduler/api/ids.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <stdexcept>

namespace cogwheel::scheduler::api {

std::string encode_id(const std::array<std::uint8_t, 16>& bits) {
  std::string out(prediction_id_length, '0');
  // Bit i of the 130-bit number (0 = most significant) is bit i - 2 of the input.
  for (std::size_t c = 0; c < prediction_id_length; ++c) {
    unsigned v = 0;
    for (std::size_t k = 0; k < 5; ++k) {
      const std::size_t i = c * 5 + k;
      unsigned bit = 0;
      if (i >= 2) {
        const std::size_t j = i - 2;
        bit = (bits[j / 8] >> (7 - j % 8)) & 1U;
      }
      v = (v << 1) | bit;
    }
    out[c] = crockford_alphabet[v];
  }
  return out;
}

std::string new_prediction_id() {
  // Drawn from OpenSSL's CSPRNG 4 KiB at a time per thread: one RAND_bytes call per 256 ids
  // instead of one each (the call costs more than the bytes).
  thread_local std::array<std::uint8_t, 4096> pool{};
  thread_local std::size_t used = pool.size();
  std::array<std::uint8_t, 16> bits{};
  if (used + bits.size() > pool.size()) {
    if (RAND_bytes(pool.data(), static_cast<int>(pool.size())) != 1) {
      throw std::runtime_error("RAND_bytes failed");
    }
    used = 0;
  }
  std::copy_n(pool.begin() + static_cast<std::ptrdiff_t>(used), bits.size(), bits.begin());
  std::fill_n(pool.begin() + static_cast<std::ptrdiff_t>(used), bits.size(), 0);  // used once
  used += bits.size();
  return encode_id(bits);
}

bool is_prediction_id(std::string_view s) {
  if (s.size() != prediction_id_length) return false;
  for (char ch : s) {
    if (crockford_alphabet.find(ch) == std::string_view::npos) return false;
  }
  return true;
}

}  // namespace cogwheel::scheduler::api
