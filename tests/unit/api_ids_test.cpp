#include <catch2/catch.hpp>
#include <set>

#include "scheduler/api/ids.hpp"

using namespace cogwheel::scheduler::api;

TEST_CASE("encode_id maps 128 bits to 26 Crockford characters", "[api][ids]") {
  std::array<std::uint8_t, 16> zero{};
  CHECK(encode_id(zero) == "00000000000000000000000000");
  std::array<std::uint8_t, 16> ones;
  ones.fill(0xff);
  CHECK(encode_id(ones) == "7zzzzzzzzzzzzzzzzzzzzzzzzz");
  std::array<std::uint8_t, 16> one{};
  one[15] = 1;
  CHECK(encode_id(one) == "00000000000000000000000001");
  std::array<std::uint8_t, 16> top{};
  top[0] = 0x80;  // bit 127: the 130-bit number's bit 2 from the top, i.e. 4 in the first char
  CHECK(encode_id(top) == "40000000000000000000000000");
  // Characters that straddle the two 64-bit halves, and the last one.
  std::array<std::uint8_t, 16> counting{};
  for (std::size_t i = 0; i < counting.size(); ++i) counting[i] = static_cast<std::uint8_t>(i + 1);
  CHECK(encode_id(counting) == "01081g81860w40j2gb1g6gw3rg");
  std::array<std::uint8_t, 16> stripes{};
  for (std::size_t i = 0; i < stripes.size(); ++i) stripes[i] = i % 2 == 0 ? 0xa5 : 0x5a;
  CHECK(encode_id(stripes) == "55bajnn9atmndaapn5bajnn9at");
  top[15] = 0x1f;
  CHECK(encode_id(top) == "4000000000000000000000000z");
}

TEST_CASE("new_prediction_id is a valid, fresh id", "[api][ids]") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto id = new_prediction_id();
    INFO(id);
    CHECK(is_prediction_id(id));
    CHECK(id[0] >= '0');
    CHECK(id[0] <= '7');
    seen.insert(id);
  }
  CHECK(seen.size() == 1000);
}

TEST_CASE("is_prediction_id matches the database CHECK", "[api][ids]") {
  CHECK(is_prediction_id("0123456789abcdefghjkmnpqrs"));
  CHECK(is_prediction_id("tvwxyz0123456789abcdefghjk"));
  CHECK_FALSE(is_prediction_id(""));
  CHECK_FALSE(is_prediction_id("0123456789abcdefghjkmnpqr"));    // 25
  CHECK_FALSE(is_prediction_id("0123456789abcdefghjkmnpqrst"));  // 27
  for (char bad : std::string("ilouIABZ-_ ")) {
    std::string id(26, '0');
    id[5] = bad;
    INFO(id);
    CHECK_FALSE(is_prediction_id(id));
  }
}
