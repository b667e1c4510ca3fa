#include "scheduler/token_command.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string_view>

#include "scheduler/api/tokens.hpp"
#include "scheduler/database_target.hpp"
#include "storage/migrator.hpp"
#include "storage/pool.hpp"
#include "storage/tokens.hpp"
#include "webhook/signature.hpp"

namespace cogwheel::scheduler {

namespace {

// Logs of this command go to stderr: stdout carries only the token.
void log_to_stderr(const settings& s) {
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(spdlog::level::from_str(s.log_level));
}

}  // namespace

void validate_token_name(const std::string& name) {
  std::size_t chars = 0;
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) {
      throw std::invalid_argument("token name must not contain control characters");
    }
    if ((c & 0xc0) != 0x80) ++chars;  // count UTF-8 characters, not bytes
  }
  if (chars < 1 || chars > 200) {
    throw std::invalid_argument("token name must be 1 to 200 characters, got " +
                                std::to_string(chars));
  }
}

created_token create_token(const std::string& conninfo, const std::string& name) {
  validate_token_name(name);
  created_token created;
  created.token = api::generate_api_token();
  created.hint = api::token_hint(created.token);
  storage::pool_options opts;
  opts.conninfo = conninfo;
  opts.size = 1;
  opts.application_name = "cogwheel token";
  storage::connection_pool pool(opts);
  created.id = pool.run([&](pqxx::connection& c) {
    pqxx::work tx(c);
    const auto id = storage::token_insert(
        tx, {name, api::sha256_bytes(created.token), created.hint, webhook::generate_secret()});
    tx.commit();
    return id;
  });
  return created;
}

int run_token_create(const settings& s, const std::string& name) {
  validate_token_name(name);
  log_to_stderr(s);
  auto target = open_database(s);
  spdlog::info("using {}", target.description);
  const auto migrated = storage::migrate(target.conninfo, storage::embedded_migrations());
  for (const auto& label : migrated.applied) spdlog::info("applied migration {}", label);
  const auto created = create_token(target.conninfo, name);
  spdlog::info("created token {} for \"{}\" (starts with {}); it is shown only once", created.id,
               name, created.hint);
  std::fputs((created.token + "\n").c_str(), stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace cogwheel::scheduler
