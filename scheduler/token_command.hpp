#pragma once
// `cogwheel token create`: makes an API token, stores only its SHA-256, prints the token once.
#include <cstdint>
#include <string>

#include "scheduler/settings.hpp"

namespace cogwheel::scheduler {

struct created_token {
  std::int64_t id = 0;
  std::string token;  // "cw_" + 40 base62 characters; never stored
  std::string hint;   // its first 7 characters, stored to tell tokens apart
};

// Throws std::invalid_argument unless `name` is 1 to 200 characters without control characters.
void validate_token_name(const std::string& name);

// Creates a token with a new webhook secret in the (migrated) database at `conninfo`.
created_token create_token(const std::string& conninfo, const std::string& name);

// Opens the database (DATABASE_URL or the embedded one), migrates it, creates the token and prints
// exactly the token and a newline to stdout; logs go to stderr. Returns the exit code; throws
// std::exception with a one-line message on failure.
int run_token_create(const settings& s, const std::string& name);

}  // namespace cogwheel::scheduler
