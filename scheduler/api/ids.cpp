#include "scheduler/api/ids.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <stdexcept>

namespace cogwheel::scheduler::api {

std::string encode_id(const std::array<std::uint8_t, 16>& bits) {
  std::uint64_t hi = 0, lo = 0;  // bits 127..64 and 63..0 of the number
  for (std::size_t i = 0; i < 8; ++i) {
    hi = (hi << 8) | bits[i];
    lo = (lo << 8) | bits[i + 8];
  }
  // Character c holds bits 129 - 5c .. 125 - 5c of the 130-bit number (bits 129 and 128 are 0).
  std::string out(prediction_id_length, '0');
  for (std::size_t c = 0; c < prediction_id_length; ++c) {
    const std::size_t low = 125 - 5 * c;  // the lowest bit of the character
    std::uint64_t v;
    if (low >= 64) {
      v = hi >> (low - 64);
    } else {
      v = lo >> low;
      if (low > 59) v |= hi << (64 - low);  // the character straddles the halves
    }
    out[c] = crockford_alphabet[v & 31U];
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
