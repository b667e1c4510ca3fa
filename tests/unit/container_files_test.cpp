// The names and signed URLs of files that model containers upload.
#include <catch2/catch.hpp>

#include "scheduler/container_api.hpp"

using namespace cogwheel::scheduler;

namespace {
const std::string prediction = "0123456789abcdefghjkmnpqrs";
}  // namespace

TEST_CASE("safe_file_name keeps letters, digits, dot, underscore and dash", "[container_files]") {
  CHECK(safe_file_name("out-0_final.v2.png") == "out-0_final.v2.png");
  const std::string all = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
  CHECK(safe_file_name(all) == all);
}

TEST_CASE("safe_file_name replaces every other character with an underscore", "[container_files]") {
  CHECK(safe_file_name("my file (1).png") == "my_file__1_.png");
  CHECK(safe_file_name("a/b\\c") == "a_b_c");
  CHECK(safe_file_name("x?y=1&z#w%20") == "x_y_1_z_w_20");
  CHECK(safe_file_name("caf\xc3\xa9.jpg") == "caf__.jpg");  // each byte of a UTF-8 é
  CHECK(safe_file_name(std::string_view("a\0b", 3)) == "a_b");
  CHECK(safe_file_name("tab\tnew\nline") == "tab_new_line");
}

TEST_CASE("safe_file_name never starts with a dot", "[container_files]") {
  CHECK(safe_file_name(".hidden") == "hidden");
  CHECK(safe_file_name("...x") == "x");
  CHECK(safe_file_name("../../etc/passwd") == "_.._etc_passwd");
  CHECK(safe_file_name("..") == "file");
  CHECK(safe_file_name(".") == "file");
}

TEST_CASE("safe_file_name is at most 100 characters", "[container_files]") {
  CHECK(safe_file_name(std::string(100, 'a')) == std::string(100, 'a'));
  CHECK(safe_file_name(std::string(150, 'b')) == std::string(100, 'b'));
  CHECK(safe_file_name(std::string(250, ' ')) == std::string(100, '_'));
  CHECK(safe_file_name("." + std::string(120, 'c')).size() <= 100);
}

TEST_CASE("safe_file_name of nothing is file", "[container_files]") {
  CHECK(safe_file_name("") == "file");
}

TEST_CASE("safe_file_name is idempotent: a safe name is served under itself", "[container_files]") {
  const std::string names[] = {
      "out.png",    "my file.png", ".x", std::string(130, 'z'), "." + std::string(130, 'y'),
      "caf\xc3\xa9"};
  for (const auto& name : names) {
    INFO(name);
    const auto once = safe_file_name(name);
    CHECK(safe_file_name(once) == once);
  }
}

TEST_CASE("file_signature is hex HMAC-SHA256 of the id, name and expiry", "[container_files]") {
  // Computed with: printf '0123456789abcdefghjkmnpqrs/out.png\n1800000000' |
  //   openssl dgst -sha256 -hmac file-signing-key
  CHECK(file_signature("file-signing-key", prediction, "out.png", 1800000000) ==
        "3475ba65f044bcce78f3a9bf5a89dad83d1b0c4804b349ebecf1794ddc6ad254");
}

TEST_CASE("file_signature is deterministic, 64 hex characters, and covers every input",
          "[container_files]") {
  const auto base = file_signature("key", prediction, "out.png", 1800000000);
  CHECK(file_signature("key", prediction, "out.png", 1800000000) == base);
  CHECK(base.size() == 64);
  CHECK(base.find_first_not_of("0123456789abcdef") == std::string::npos);

  CHECK(file_signature("key2", prediction, "out.png", 1800000000) != base);
  CHECK(file_signature("key", "1123456789abcdefghjkmnpqrs", "out.png", 1800000000) != base);
  CHECK(file_signature("key", prediction, "out.jpg", 1800000000) != base);
  CHECK(file_signature("key", prediction, "out.png", 1800000001) != base);
}
