#pragma once
// Prediction ids: 26 lower-case Crockford base32 characters from 128 random bits.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace cogwheel::scheduler::api {

inline constexpr std::string_view crockford_alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
inline constexpr std::size_t prediction_id_length = 26;

// Encodes 128 bits as 26 base32 characters, most significant first. The 130-bit encoding's two
// leading bits are zero, so the first character is 0-7.
std::string encode_id(const std::array<std::uint8_t, 16>& bits);

// A fresh id from OpenSSL's CSPRNG. Throws std::runtime_error if RAND_bytes fails.
std::string new_prediction_id();

// True when `s` passes the database CHECK: 26 characters of the alphabet above.
bool is_prediction_id(std::string_view s);

}  // namespace cogwheel::scheduler::api
