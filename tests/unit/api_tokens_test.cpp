#include <catch2/catch.hpp>
#include <cctype>
#include <map>
#include <set>

#include "scheduler/api/tokens.hpp"

using namespace cogwheel::scheduler::api;
using nlohmann::json;

namespace {
std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}
}  // namespace

TEST_CASE("generated tokens are cw_ and 40 base62 characters", "[api][tokens]") {
  std::set<std::string> seen;
  std::map<char, int> counts;
  for (int i = 0; i < 2000; ++i) {
    auto t = generate_api_token();
    REQUIRE(t.size() == 43);
    CHECK(t.starts_with("cw_"));
    for (char c : t.substr(3)) {
      CHECK(std::isalnum(static_cast<unsigned char>(c)));
      ++counts[c];
    }
    seen.insert(t);
  }
  CHECK(seen.size() == 2000);
  // 80,000 draws over 62 symbols: about 1290 each; every symbol appears, none wildly off.
  CHECK(counts.size() == 62);
  for (const auto& [c, n] : counts) {
    INFO(c);
    CHECK(n > 1000);
    CHECK(n < 1600);
  }
}

TEST_CASE("sha256_bytes matches the FIPS test vectors", "[api][tokens]") {
  CHECK(sha256_bytes("").size() == 32);
  CHECK(hex(sha256_bytes("")) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(hex(sha256_bytes("abc")) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("token_hint is the first 7 characters", "[api][tokens]") {
  CHECK(token_hint("cw_AbCdEfGh") == "cw_AbCd");
  CHECK(token_hint("cw_A") == "cw_A");
  CHECK(token_hint("") == "");
}

TEST_CASE("request_fingerprint ignores key order but not content or route", "[api][tokens]") {
  const auto a = json::parse(R"({"version":"x","input":{"a":1,"b":[1,2]}})");
  const auto b = json::parse(R"({"input":{"b":[1,2],"a":1},"version":"x"})");
  const auto c = json::parse(R"({"input":{"b":[2,1],"a":1},"version":"x"})");
  CHECK(request_fingerprint("POST /v1/predictions", a).size() == 32);
  CHECK(request_fingerprint("POST /v1/predictions", a) ==
        request_fingerprint("POST /v1/predictions", b));
  CHECK(request_fingerprint("POST /v1/predictions", a) !=
        request_fingerprint("POST /v1/predictions", c));
  CHECK(request_fingerprint("POST /v1/predictions", a) !=
        request_fingerprint("POST /v1/models/o/n/predictions", a));
  CHECK(request_fingerprint("r", json::object()) == sha256_bytes("r\n{}"));
}
