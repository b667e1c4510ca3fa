#include "scheduler/settings.hpp"

#include <boost/asio/ip/address.hpp>
#include <sstream>
#include <stdexcept>

#include "webhook/retry.hpp"

namespace cogwheel::scheduler {

namespace {

template <class T>
auto member(T settings::*field) {
  return [field](CLI::App& app, settings& s, const option_def& d) {
    return app.add_option(d.flag, s.*field, d.meaning)->envname(d.env);
  };
}

// An entry of --webhook-allow: an IPv4 or IPv6 address, or one with a /prefix length.
bool valid_allow_entry(const std::string& entry) {
  boost::system::error_code ec;
  const auto slash = entry.find('/');
  const auto address = boost::asio::ip::make_address(entry.substr(0, slash), ec);
  if (ec) return false;
  if (slash == std::string::npos) return true;
  const std::string bits = entry.substr(slash + 1);
  if (bits.empty() || bits.size() > 3 ||
      bits.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  return std::stoi(bits) <= (address.is_v4() ? 32 : 128);
}

}  // namespace

const std::vector<option_def>& option_defs() {
  static const std::vector<option_def> defs = {
      {"--listen", "COGWHEEL_LISTEN", "127.0.0.1:5080",
       "Address and port the HTTP API listens on (HOST:PORT; port 0 picks a free one).", for_serve,
       member(&settings::listen)},
      {"--database-url", "DATABASE_URL", "(embedded)",
       "PostgreSQL connection URI or key=value string. Unset: cogwheel runs its own PostgreSQL in "
       "the data folder.",
       for_database, member(&settings::database_url)},
      {"--data-dir", "COGWHEEL_DATA_DIR", "./var (root: /var/lib/cogwheel)",
       "Folder of the embedded PostgreSQL (used only without DATABASE_URL).", for_database,
       member(&settings::data_dir)},
      {"--pg-bin-dir", "COGWHEEL_PG_BIN_DIR", "(newest /usr/lib/postgresql/N/bin)",
       "Where the embedded PostgreSQL's initdb and pg_ctl are.", for_database,
       member(&settings::pg_bin_dir)},
      {"--db-pool-size", "COGWHEEL_DB_POOL_SIZE", "8",
       "Database connections (and database threads) the service uses.", for_serve,
       member(&settings::db_pool_size)},
      {"--statement-timeout-ms", "COGWHEEL_STATEMENT_TIMEOUT_MS", "5000",
       "Longest a single SQL statement may run, in milliseconds.", for_serve,
       member(&settings::statement_timeout_ms)},
      {"--io-threads", "COGWHEEL_IO_THREADS", "2", "Threads serving HTTP.", for_serve,
       member(&settings::io_threads)},
      {"--shutdown-grace-ms", "COGWHEEL_SHUTDOWN_GRACE_MS", "10000",
       "On SIGINT/SIGTERM, how long requests in flight may take to finish, in milliseconds.",
       for_serve, member(&settings::shutdown_grace_ms)},
      {"--config", "COGWHEEL_CONFIG", "(none)",
       "YAML file declaring models, versions and deployments; loaded into the database at start.",
       for_serve, member(&settings::config_file)},
      {"--public-url", "COGWHEEL_PUBLIC_URL", "(http://LISTEN)",
       "Base URL clients reach this server at; prediction `urls` and `Location` are built from it.",
       for_serve, member(&settings::public_url)},
      {"--create-rate-limit", "COGWHEEL_CREATE_RATE_LIMIT", "600",
       "Prediction creates per token per minute, with bursts of a tenth of that; 0: no limit.",
       for_serve, member(&settings::create_rate_limit)},
      {"--rate-limit", "COGWHEEL_RATE_LIMIT", "3000",
       "Other API requests per token per minute, with bursts of a tenth of that; 0: no limit.",
       for_serve, member(&settings::rate_limit)},
      {"--max-body-bytes", "COGWHEEL_MAX_BODY_BYTES", "10485760",
       "Largest request body accepted; larger ones get 413.", for_serve,
       member(&settings::max_body_bytes)},
      {"--callback-url", "COGWHEEL_CALLBACK_URL", "(http://LISTEN)",
       "Base URL model containers reach this server at, for their updates and file uploads (a "
       "shared service address when several cogwheel processes run).",
       for_serve, member(&settings::callback_url)},
      {"--container-token", "COGWHEEL_CONTAINER_TOKEN", "(generated once, kept in the database)",
       "Bearer token containers send with their updates (Cog's WEBHOOK_AUTH_TOKEN). Process "
       "containers get it; give static ones the same value (set this option to choose it).",
       for_serve, member(&settings::container_token)},
      {"--files-dir", "COGWHEEL_FILES_DIR", "(DATA_DIR/files)",
       "Folder where output files that containers upload are kept.", for_serve,
       member(&settings::files_dir)},
      {"--file-url-ttl", "COGWHEEL_FILE_URL_TTL", "3600",
       "How long the signed URL of an output file works, in seconds.", for_serve,
       member(&settings::file_url_ttl_s)},
      {"--health-interval-ms", "COGWHEEL_HEALTH_INTERVAL_MS", "1000",
       "How often each container's GET /health-check is polled once it is up, in milliseconds.",
       for_serve, member(&settings::health_interval_ms)},
      {"--lease-ms", "COGWHEEL_LEASE_MS", "30000",
       "Lease on dispatched work, renewed while this process lives; after it runs out another "
       "process may take the work over, in milliseconds.",
       for_serve, member(&settings::lease_ms)},
      {"--reaper-interval-ms", "COGWHEEL_REAPER_INTERVAL_MS", "1000",
       "How often the maintenance leader looks for deadlines, timeouts, lapsed leases and "
       "retention work, in milliseconds.",
       for_serve, member(&settings::reaper_interval_ms)},
      {"--leader-lease-ms", "COGWHEEL_LEADER_LEASE_MS", "15000",
       "Lease of the maintenance leadership (one serve process at a time runs the reaper); "
       "another process takes over this long after the leader dies, in milliseconds.",
       for_serve, member(&settings::leader_lease_ms)},
      {"--data-retention", "COGWHEEL_DATA_RETENTION", "3600",
       "Seconds after a prediction ends until its input, output, logs and files are removed "
       "(data_removed); 0 keeps them.",
       for_serve, member(&settings::data_retention_s)},
      {"--row-retention", "COGWHEEL_ROW_RETENTION", "2592000",
       "Seconds after a prediction ends until its row is deleted (30 days); 0 keeps rows.",
       for_serve, member(&settings::row_retention_s)},
      {"--webhook-allow", "COGWHEEL_WEBHOOK_ALLOW", "(none)",
       "Addresses or CIDR ranges webhooks may go to although the SSRF guard refuses them "
       "(loopback, private, link-local...), comma-separated, e.g. 10.0.0.0/8,127.0.0.1.",
       for_serve, member(&settings::webhook_allow)},
      {"--webhook-concurrency", "COGWHEEL_WEBHOOK_CONCURRENCY", "256",
       "Webhook attempts in flight at once in this process.", for_serve,
       member(&settings::webhook_concurrency)},
      {"--webhook-endpoint-concurrency", "COGWHEEL_WEBHOOK_ENDPOINT_CONCURRENCY", "32",
       "Webhook attempts in flight at once to one endpoint (scheme, host and port): a slow "
       "receiver holds only these.",
       for_serve, member(&settings::webhook_endpoint_concurrency)},
      {"--webhook-connect-timeout-ms", "COGWHEEL_WEBHOOK_CONNECT_TIMEOUT_MS", "5000",
       "Longest a webhook attempt may take to resolve, connect and finish TLS, in milliseconds.",
       for_serve, member(&settings::webhook_connect_timeout_ms)},
      {"--webhook-timeout-ms", "COGWHEEL_WEBHOOK_TIMEOUT_MS", "15000",
       "Longest a whole webhook attempt may take, in milliseconds.", for_serve,
       member(&settings::webhook_timeout_ms)},
      {"--webhook-retry-schedule", "COGWHEEL_WEBHOOK_RETRY_SCHEDULE",
       "0,5s,5m,30m,2h,5h,10h,14h,20h,24h",
       "Delays before each attempt of a `completed` webhook (units ms, s, m, h; ±10% jitter); "
       "after the last one fails the delivery is recorded as failed.",
       for_serve, member(&settings::webhook_retry_schedule)},
      {"--webhook-quick-schedule", "COGWHEEL_WEBHOOK_QUICK_SCHEDULE", "0,1s,5s,15s,30s",
       "Delays before each attempt of a `start`, `output` or `logs` webhook; after the last one "
       "fails the delivery is dropped (and recorded).",
       for_serve, member(&settings::webhook_quick_schedule)},
      {"--webhook-time-scale", "COGWHEEL_WEBHOOK_TIME_SCALE", "1",
       "Multiplies every delay of both schedules (e.g. 0.001 compresses a day into 86 s, for "
       "tests).",
       for_serve, member(&settings::webhook_time_scale)},
      {"--webhook-throttle-ms", "COGWHEEL_WEBHOOK_THROTTLE_MS", "500",
       "At most one `output` or `logs` webhook per prediction per this many milliseconds; the "
       "one that goes carries the newest state.",
       for_serve, member(&settings::webhook_throttle_ms)},
      {"--webhook-poll-ms", "COGWHEEL_WEBHOOK_POLL_MS", "250",
       "How often due retries and other processes' webhook events are looked for, in "
       "milliseconds (this process's own events go out at once).",
       for_serve, member(&settings::webhook_poll_ms)},
      {"--webhook-ca-file", "COGWHEEL_WEBHOOK_CA_FILE", "(none)",
       "A PEM file of certificate authorities trusted for HTTPS webhooks besides the system's.",
       for_serve, member(&settings::webhook_ca_file)},
      {"--webhook-secret-overlap", "COGWHEEL_WEBHOOK_SECRET_OVERLAP", "86400",
       "Seconds the previous signing secret keeps signing after a rotation (both signatures are "
       "sent).",
       for_serve, member(&settings::webhook_secret_overlap_s)},
      {"--log-level", "COGWHEEL_LOG_LEVEL", "info", "One of trace, debug, info, warn, error, off.",
       for_database,
       [](CLI::App& app, settings& s, const option_def& d) {
         return app.add_option(d.flag, s.log_level, d.meaning)
             ->envname(d.env)
             ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
       }},
  };
  return defs;
}

void add_options(CLI::App& cmd, settings& target, scope s) {
  for (const auto& d : option_defs()) {
    if ((d.scopes & s) == 0) continue;
    d.bind(cmd, target, d)->default_str(d.default_text);
  }
}

void validate(const settings& s) {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw CLI::ValidationError(what);
  };
  require(s.db_pool_size >= 1 && s.db_pool_size <= 1000, "--db-pool-size must be 1 to 1000");
  require(s.statement_timeout_ms >= 0, "--statement-timeout-ms must be >= 0 (0: no limit)");
  require(s.io_threads >= 1 && s.io_threads <= 256, "--io-threads must be 1 to 256");
  require(s.shutdown_grace_ms >= 0, "--shutdown-grace-ms must be >= 0");
  require(s.create_rate_limit >= 0, "--create-rate-limit must be >= 0 (0: no limit)");
  require(s.rate_limit >= 0, "--rate-limit must be >= 0 (0: no limit)");
  require(s.max_body_bytes >= 1024, "--max-body-bytes must be at least 1024");
  require(s.file_url_ttl_s >= 1, "--file-url-ttl must be at least 1 second");
  require(s.health_interval_ms >= 10 && s.health_interval_ms <= 600'000,
          "--health-interval-ms must be 10 to 600000");
  require(s.lease_ms >= 1'000, "--lease-ms must be at least 1000");
  require(s.reaper_interval_ms >= 10, "--reaper-interval-ms must be at least 10");
  require(s.leader_lease_ms >= 2 * s.reaper_interval_ms,
          "--leader-lease-ms must be at least twice --reaper-interval-ms");
  require(s.data_retention_s >= 0, "--data-retention must be >= 0 (0: keep)");
  require(s.row_retention_s >= 0, "--row-retention must be >= 0 (0: keep)");
  require(
      s.row_retention_s == 0 || s.data_retention_s == 0 || s.row_retention_s >= s.data_retention_s,
      "--row-retention must not be shorter than --data-retention");
  require(s.webhook_concurrency >= 1, "--webhook-concurrency must be at least 1");
  require(s.webhook_endpoint_concurrency >= 1, "--webhook-endpoint-concurrency must be at least 1");
  require(s.webhook_connect_timeout_ms >= 1, "--webhook-connect-timeout-ms must be positive");
  require(s.webhook_timeout_ms >= s.webhook_connect_timeout_ms,
          "--webhook-timeout-ms must not be shorter than --webhook-connect-timeout-ms");
  require(s.webhook_time_scale > 0 && s.webhook_time_scale <= 1000,
          "--webhook-time-scale must be above 0 and at most 1000");
  require(s.webhook_throttle_ms >= 0, "--webhook-throttle-ms must be >= 0");
  require(s.webhook_poll_ms >= 10, "--webhook-poll-ms must be at least 10");
  require(s.webhook_secret_overlap_s >= 0, "--webhook-secret-overlap must be >= 0");
  for (const auto* schedule : {&s.webhook_retry_schedule, &s.webhook_quick_schedule}) {
    try {
      if (webhook::parse_schedule(*schedule).empty()) throw std::invalid_argument("empty");
    } catch (const std::invalid_argument& e) {
      throw CLI::ValidationError(std::string("--webhook-retry-schedule / quick-schedule: ") +
                                 e.what());
    }
  }
  for (const auto& entry : webhook_allow_entries(s)) {
    require(valid_allow_entry(entry),
            "--webhook-allow: \"" + entry + "\" is not an address or CIDR range");
  }
  require(s.container_token.empty() || s.container_token.size() >= 16,
          "--container-token must be at least 16 characters");
}

std::vector<std::string> webhook_allow_entries(const settings& s) {
  std::vector<std::string> out;
  for (std::size_t start = 0; start < s.webhook_allow.size();) {
    auto comma = s.webhook_allow.find(',', start);
    if (comma == std::string::npos) comma = s.webhook_allow.size();
    std::string entry = s.webhook_allow.substr(start, comma - start);
    std::erase(entry, ' ');
    if (!entry.empty()) out.push_back(std::move(entry));
    start = comma + 1;
  }
  return out;
}

std::string options_markdown() {
  std::ostringstream out;
  out << "| option | environment | default | meaning |\n| --- | --- | --- | --- |\n";
  for (const auto& d : option_defs()) {
    out << "| `" << d.flag << "` | `" << d.env << "` | " << d.default_text << " | " << d.meaning
        << " |\n";
  }
  return out.str();
}

}  // namespace cogwheel::scheduler
