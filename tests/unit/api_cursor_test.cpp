#include <catch2/catch.hpp>
#include <cstdint>

#include "scheduler/api/cursor.hpp"

using namespace cogwheel::scheduler::api;

namespace {
const std::string id = "0123456789abcdefghjkmnpqrs";
}

TEST_CASE("base64url matches RFC 4648 test vectors without padding", "[api][cursor]") {
  CHECK(base64url_encode("") == "");
  CHECK(base64url_encode("f") == "Zg");
  CHECK(base64url_encode("fo") == "Zm8");
  CHECK(base64url_encode("foo") == "Zm9v");
  CHECK(base64url_encode("foob") == "Zm9vYg");
  CHECK(base64url_encode("fooba") == "Zm9vYmE");
  CHECK(base64url_encode("foobar") == "Zm9vYmFy");
  CHECK(base64url_encode("\xfb\xff") == "-_8");
  CHECK(base64url_decode("Zm9vYmE") == "fooba");
  CHECK(base64url_decode("-_8") == "\xfb\xff");
  CHECK(base64url_decode("") == "");
}

TEST_CASE("base64url_decode is strict", "[api][cursor]") {
  for (const char* bad : {"Zg==", "Z", "Zm9vY", "Zh", "Zm+v", "Zm/v", "Zm9 v", "Zm9v\n"}) {
    INFO(bad);
    CHECK_FALSE(base64url_decode(bad));
  }
}

TEST_CASE("cursors round-trip", "[api][cursor]") {
  for (const cursor_value& c :
       {cursor_value{true, 1795310374765994, id}, cursor_value{false, 0, id},
        cursor_value{true, -5, id}, cursor_value{false, INT64_MAX, id},
        cursor_value{true, INT64_MIN, id}}) {
    const auto text = encode_cursor(c);
    INFO(text);
    CHECK(text.size() <= max_cursor_length);
    CHECK(text.find_first_not_of(
              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
          std::string::npos);
    CHECK(decode_cursor(text) == c);
  }
}

TEST_CASE("decode_cursor refuses anything else", "[api][cursor]") {
  CHECK_FALSE(decode_cursor(""));
  CHECK_FALSE(decode_cursor("garbage!"));
  CHECK_FALSE(decode_cursor("Zm9vYmFy"));  // "foobar"
  CHECK_FALSE(decode_cursor(std::string(201, 'A')));
  for (std::string raw :
       {"x.1." + id, "f1." + id, "f." + id, "f.1" + id, std::string("f.1."), std::string("f.1.ABC"),
        "f.1." + id + "x", "f.+1." + id, "f.1x." + id, "f.1.1." + id,
        "f.99999999999999999999." + id, "F.1." + id, "f.1." + id.substr(1)}) {
    INFO(raw);
    CHECK_FALSE(decode_cursor(base64url_encode(raw)));
  }
  CHECK(decode_cursor(base64url_encode("b.1." + id)) == cursor_value{false, 1, id});
}
