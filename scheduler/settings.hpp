#pragma once
// Every option of cogwheel, declared once: flag, environment variable, default and meaning.
// The command line, the environment and the README's table all come from this one list.
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace cogwheel::scheduler {

struct settings {
  std::string listen = "127.0.0.1:5080";
  std::string database_url;  // empty: the embedded PostgreSQL in data_dir
  std::string data_dir;      // empty: storage::default_data_dir()
  std::string pg_bin_dir;    // empty: the newest installed PostgreSQL
  int db_pool_size = 8;
  int statement_timeout_ms = 5'000;
  int io_threads = 2;
  int shutdown_grace_ms = 10'000;
  std::string log_level = "info";
  std::string config_file;      // empty: no models (every create is a 404/422)
  std::string public_url;       // empty: http://<listen>
  int create_rate_limit = 600;  // per token per minute; 0: unlimited
  int rate_limit = 3'000;       // other requests, per token per minute; 0: unlimited
  int max_body_bytes = 10 * 1024 * 1024;
  std::string callback_url;     // empty: http://<listen>, 0.0.0.0 and :: as loopback
  std::string container_token;  // empty: a random one per start
  std::string files_dir;        // empty: <data dir>/files
  int file_url_ttl_s = 3'600;
  int health_interval_ms = 1'000;
  int lease_ms = 30'000;
  int reaper_interval_ms = 1'000;
  int leader_lease_ms = 15'000;
  int data_retention_s = 3'600;       // 0: keep
  int row_retention_s = 30 * 86'400;  // 0: keep
  std::string webhook_allow;  // comma-separated addresses / CIDR ranges the SSRF guard lets by
  int webhook_concurrency = 256;
  int webhook_endpoint_concurrency = 32;
  int webhook_connect_timeout_ms = 5'000;
  int webhook_timeout_ms = 15'000;
  std::string webhook_retry_schedule = "0,5s,5m,30m,2h,5h,10h,14h,20h,24h";
  std::string webhook_quick_schedule = "0,1s,5s,15s,30s";
  double webhook_time_scale = 1.0;
  int webhook_throttle_ms = 500;
  int webhook_poll_ms = 250;
  std::string webhook_ca_file;
  int webhook_secret_overlap_s = 86'400;
  bool operator==(const settings&) const = default;
};

// Which subcommands an option belongs to.
enum scope : unsigned {
  for_serve = 1,
  for_migrate = 2,
  for_token = 4,
  for_database = for_serve | for_migrate | for_token
};

struct option_def {
  std::string flag;          // "--listen"
  std::string env;           // "COGWHEEL_LISTEN"
  std::string default_text;  // as shown in --help and the README
  std::string meaning;
  unsigned scopes;
  std::function<CLI::Option*(CLI::App&, settings&, const option_def&)> bind;
};

const std::vector<option_def>& option_defs();

// Adds the options of `s` (a scope) to a subcommand, bound to `target`.
void add_options(CLI::App& cmd, settings& target, scope s);

// Checks ranges after parsing; throws CLI::ValidationError with a clear message.
void validate(const settings& s);

// The entries of --webhook-allow: split at commas, spaces removed, empty ones left out.
std::vector<std::string> webhook_allow_entries(const settings& s);

// The README's configuration table, in Markdown.
std::string options_markdown();

}  // namespace cogwheel::scheduler
