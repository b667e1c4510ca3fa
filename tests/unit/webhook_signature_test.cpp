#include <catch2/catch.hpp>

#include "webhook/signature.hpp"

using namespace cogwheel::webhook;

TEST_CASE("signature matches the Standard Webhooks test vector", "[webhook][signature]") {
  // From the Standard Webhooks specification's reference libraries.
  const std::string secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  CHECK(sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, R"({"test": 2432232314})") ==
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST_CASE("a changed body, id or timestamp changes the signature", "[webhook][signature]") {
  const std::string secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  const auto base = sign(secret, "msg_1", 1, "{}");
  CHECK(sign(secret, "msg_2", 1, "{}") != base);
  CHECK(sign(secret, "msg_1", 2, "{}") != base);
  CHECK(sign(secret, "msg_1", 1, "{ }") != base);
}

TEST_CASE("generated secrets are whsec_ with 32 random bytes", "[webhook][signature]") {
  const auto a = generate_secret();
  const auto b = generate_secret();
  CHECK(a != b);
  CHECK(a.starts_with("whsec_"));
  CHECK(secret_key(a).size() == 32);
}

TEST_CASE("malformed secrets are refused", "[webhook][signature]") {
  CHECK_THROWS_AS(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), std::invalid_argument);
  CHECK_THROWS_AS(secret_key("whsec_"), std::invalid_argument);
  CHECK_THROWS_AS(secret_key("whsec_abc"), std::invalid_argument);
  CHECK_THROWS_AS(secret_key("whsec_AAAA"), std::invalid_argument);  // 3 bytes: too short
}

TEST_CASE("rotation sends one signature per secret", "[webhook][signature]") {
  const auto s1 = generate_secret();
  const auto s2 = generate_secret();
  const auto header = signature_header({s1, s2}, "msg_x", 10, "body");
  CHECK(header == sign(s1, "msg_x", 10, "body") + " " + sign(s2, "msg_x", 10, "body"));
}
