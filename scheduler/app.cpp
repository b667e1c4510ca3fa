#include "scheduler/app.hpp"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <filesystem>
#include <future>
#include <thread>

#include "http/server.hpp"
#include "scheduler/api/rate_limiter.hpp"
#include "scheduler/auth.hpp"
#include "scheduler/config.hpp"
#include "scheduler/container_api.hpp"
#include "scheduler/container_pool.hpp"
#include "scheduler/create_batcher.hpp"
#include "scheduler/database_target.hpp"
#include "scheduler/health_api.hpp"
#include "scheduler/prediction_watch.hpp"
#include "scheduler/predictions_api.hpp"
#include "scheduler/reaper.hpp"
#include "scheduler/stream_api.hpp"
#include "scheduler/stream_hub.hpp"
#include "storage/catalog.hpp"
#include "storage/database.hpp"
#include "storage/dispatch.hpp"
#include "storage/embedded_postgres.hpp"
#include "storage/migrator.hpp"
#include "storage/secrets.hpp"
#include "webhook/delivery_service.hpp"

namespace cogwheel::scheduler {

namespace asio = boost::asio;

namespace {

void setup_logging(const settings& s) {
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(spdlog::level::from_str(s.log_level));
}

void log_migration(const storage::migrate_result& r) {
  for (const auto& label : r.applied) spdlog::info("applied migration {}", label);
  spdlog::info("database schema at version {}", r.version);
}

// Runs an io_context on N threads until stopped; joins them on destruction.
class io_threads {
 public:
  io_threads(asio::io_context& ioc, int n) : ioc_(ioc), guard_(asio::make_work_guard(ioc)) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { ioc_.run(); });
  }
  ~io_threads() { stop(); }
  void stop() {
    guard_.reset();
    ioc_.stop();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  asio::io_context& ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::vector<std::thread> threads_;
};

// A limiter allowing `per_minute` with bursts of a tenth of that (0: unlimited).
api::rate_limiter make_limiter(int per_minute) {
  return api::rate_limiter(per_minute, std::max(1.0, per_minute / 10.0));
}

std::string public_base_url(const settings& s, const asio::ip::tcp::endpoint& ep) {
  std::string url = s.public_url;
  if (url.empty()) {
    const auto addr = ep.address();
    url = "http://" + (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" +
          std::to_string(ep.port());
  }
  while (url.ends_with('/')) url.pop_back();
  return url;
}

std::string random_hex(std::size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) {
    throw std::runtime_error("cannot draw random bytes");
  }
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : buf) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 0xf]);
  }
  return out;
}

// Where containers reach this server: --callback-url, else the listening address (a wildcard
// address becomes loopback, where process containers run).
std::string callback_base_url(const settings& s, const asio::ip::tcp::endpoint& ep) {
  std::string url = s.callback_url;
  if (url.empty()) {
    auto addr = ep.address();
    if (addr.is_unspecified()) {
      addr = addr.is_v6() ? asio::ip::address(asio::ip::address_v6::loopback())
                          : asio::ip::address(asio::ip::address_v4::loopback());
    }
    url = "http://" + (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" +
          std::to_string(ep.port());
  }
  while (url.ends_with('/')) url.pop_back();
  return url;
}

// This process's lease owner: host, pid and a random part (a restarted process is another owner).
std::string lease_owner() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "localhost");
  return std::string(host) + ":" + std::to_string(::getpid()) + ":" + random_hex(4);
}

webhook::delivery_options webhook_delivery_options(const settings& s, const std::string& owner) {
  webhook::delivery_options o;
  o.owner = owner;
  o.max_in_flight = static_cast<std::size_t>(s.webhook_concurrency);
  o.per_endpoint = static_cast<std::size_t>(s.webhook_endpoint_concurrency);
  o.send.max_idle_per_endpoint = o.per_endpoint;  // every connection in flight can be kept
  o.poll = std::chrono::milliseconds(s.webhook_poll_ms);
  o.retry.completed = webhook::parse_schedule(s.webhook_retry_schedule);
  o.retry.other = webhook::parse_schedule(s.webhook_quick_schedule);
  o.retry.time_scale = s.webhook_time_scale;
  o.send.connect_timeout = std::chrono::milliseconds(s.webhook_connect_timeout_ms);
  o.send.total_timeout = std::chrono::milliseconds(s.webhook_timeout_ms);
  o.send.ca_file = s.webhook_ca_file;
  o.send.guard.allow = webhook_allow_entries(s);
  return o;
}

}  // namespace

int run_migrate(const settings& s) {
  setup_logging(s);
  auto target = open_database(s);
  spdlog::info("migrating {}", target.description);
  log_migration(storage::migrate(target.conninfo, storage::embedded_migrations()));
  return 0;
}

int run_serve(const settings& s) {
  setup_logging(s);
  const config catalog = load_config(s.config_file);  // fail fast on a bad config file
  asio::io_context ioc(s.io_threads);
  service_state state;
  std::atomic<predictions_api*> api_slot{nullptr};
  std::atomic<container_api*> container_slot{nullptr};
  std::atomic<stream_api*> stream_slot{nullptr};

  auto routes = std::make_shared<http::router>();
  add_health_routes(*routes, state);
  add_prediction_routes(*routes, api_slot);
  add_stream_routes(*routes, stream_slot);
  add_container_routes(*routes, container_slot);
  http::server_options http_opts;
  http_opts.listen = s.listen;
  http_opts.body_limit = static_cast<std::size_t>(s.max_body_bytes);
  http::server server(ioc, http_opts, routes);
  server.start();  // fail fast, before the database starts, when the port is taken

  std::promise<void> stop_requested;
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int signo) {
    if (ec) return;
    spdlog::info("received signal {}, shutting down", signo);
    stop_requested.set_value();
  });
  io_threads threads(ioc, s.io_threads);

  auto target = open_database(s);
  spdlog::info("using {}", target.description);
  log_migration(storage::migrate(target.conninfo, storage::embedded_migrations()));
  storage::pool_options pool_opts;
  pool_opts.conninfo = target.conninfo;
  pool_opts.size = static_cast<std::size_t>(s.db_pool_size);
  pool_opts.statement_timeout = std::chrono::milliseconds(s.statement_timeout_ms);
  storage::database db(pool_opts);
  db.run_blocking([&](pqxx::connection& c) {
    pqxx::work tx(c);
    storage::catalog_sync(tx, catalog.spec());
    tx.commit();
  });
  spdlog::info("loaded {} model(s) and {} deployment(s){}", catalog.spec().models.size(),
               catalog.spec().deployments.size(),
               s.config_file.empty() ? " (no --config)" : " from " + s.config_file);

  const auto ep = server.local_endpoint();
  const std::string public_url = public_base_url(s, ep);
  const std::string callback_url = callback_base_url(s, ep);
  // Shared by every process on this database and kept across restarts (storage/secrets.hpp).
  const auto [stored_token, file_key] = db.run_blocking([](pqxx::connection& c) {
    pqxx::work tx(c);
    auto token = storage::secret_get_or_create(tx, "container_token", random_hex(24));
    auto key = storage::secret_get_or_create(tx, "file_url_key", random_hex(32));
    tx.commit();
    return std::pair{token, key};
  });
  const std::string container_token = s.container_token.empty() ? stored_token : s.container_token;
  const std::filesystem::path data_dir =
      s.data_dir.empty() ? storage::default_data_dir() : std::filesystem::path(s.data_dir);

  // Dispatch: the container pool, the dispatcher, and the streams they feed.
  http::client cog_client;
  file_store_options files;
  files.dir = s.files_dir.empty() ? data_dir / "files" : std::filesystem::path(s.files_dir);
  files.signing_key = file_key;
  files.url_ttl = std::chrono::seconds(s.file_url_ttl_s);
  const std::string upload_key =
      file_signature(container_token, "cogwheel", "uploads", 0).substr(0, 32);
  container_pool_options pool_opts_c;
  pool_opts_c.callback_token = container_token;
  pool_opts_c.upload_url = callback_url + "/internal/cog/uploads/" + upload_key;
  pool_opts_c.config_dir = s.config_file.empty()
                               ? std::filesystem::current_path()
                               : std::filesystem::absolute(s.config_file).parent_path();
  pool_opts_c.health_interval = std::chrono::milliseconds(s.health_interval_ms);
  container_pool pool(ioc, cog_client, catalog.spec(), pool_opts_c);
  dispatcher_options dispatch_opts;
  dispatch_opts.owner = lease_owner();
  dispatch_opts.callback_url = callback_url + "/internal/cog/webhook";
  dispatch_opts.public_url = public_url;
  dispatch_opts.lease_ms = s.lease_ms;
  dispatch_opts.webhook_throttle_ms = s.webhook_throttle_ms;
  dispatcher dispatch(ioc, db, pool, cog_client, dispatch_opts);
  webhook::delivery_service deliveries(ioc, db, webhook_delivery_options(s, dispatch_opts.owner));
  stream_hub hub;
  // Each applied batch may have queued webhook events: send them now rather than at the next poll.
  dispatch.on_applied = [&hub, &deliveries](const std::vector<storage::prediction_row>& rows) {
    for (const auto& row : rows) hub.feed(row);
    deliveries.wake();
  };

  prediction_watch watch(target.conninfo);
  watch.set_hooks(
      [&dispatch](const std::vector<storage::prediction_note>& notes) { dispatch.changed(notes); },
      [&dispatch](const std::vector<std::string>& versions) { dispatch.queued(versions); });
  // Creates claim what this process's free container slots can take in their own transaction;
  // every insert also announces its versions to every process (one NOTIFY per batch).
  create_batcher batcher(
      db, {},
      [&dispatch](pqxx::transaction_base& tx, const std::vector<storage::insert_result>& results) {
        auto versions = storage::created_versions(results);
        std::sort(versions.begin(), versions.end());
        versions.erase(std::unique(versions.begin(), versions.end()), versions.end());
        return dispatch.claim_in(tx, versions);
      },
      [&dispatch](const std::vector<std::string>& versions) {
        return dispatch.can_claim(versions);
      });
  // This process's own inserts, without waiting for their NOTIFY to come back: the claim loop runs
  // only when a container here has room for one of the versions (an empty claim otherwise: one
  // transaction per batch for nothing).
  batcher.committed = [&dispatch](const std::vector<std::string>& versions) {
    dispatch.queued(versions);
  };
  authenticator auth(db);
  auto create_limiter = make_limiter(s.create_rate_limit);
  auto read_limiter = make_limiter(s.rate_limit);
  predictions_api api{db,
                      batcher,
                      watch,
                      auth,
                      catalog,
                      create_limiter,
                      read_limiter,
                      public_url,
                      deliveries.options().send.guard,
                      std::chrono::seconds(s.webhook_secret_overlap_s),
                      s.webhook_throttle_ms,
                      [&deliveries] { deliveries.wake(); }};
  container_api capi{dispatch, container_token, upload_key, public_url, files};
  stream_api sapi{db, watch, hub};
  reaper_options reaper_opts;
  reaper_opts.owner = dispatch_opts.owner;
  reaper_opts.interval = std::chrono::milliseconds(s.reaper_interval_ms);
  reaper_opts.leader_lease = std::chrono::milliseconds(s.leader_lease_ms);
  reaper_opts.data_retention = std::chrono::seconds(s.data_retention_s);
  reaper_opts.row_retention = std::chrono::seconds(s.row_retention_s);
  reaper_opts.files_dir = files.dir;
  reaper maintenance(ioc, db, dispatch, reaper_opts);
  dispatch.start();
  pool.start();
  maintenance.start();
  deliveries.start();
  api_slot = &api;
  container_slot = &capi;
  stream_slot = &sapi;
  state.db = &db;
  spdlog::info("cogwheel listening on http://{}:{}; containers call back at {}",
               ep.address().to_string(), ep.port(), callback_url);

  stop_requested.get_future().wait();
  state.stopping = true;
  // Hand the leadership over, stop claiming, and let running predictions finish while
  // containers can still report.
  maintenance.stop();
  dispatch.stop(std::chrono::milliseconds(s.shutdown_grace_ms));
  std::promise<void> drained;
  server.shutdown(std::chrono::milliseconds(s.shutdown_grace_ms), [&] { drained.set_value(); });
  drained.get_future().wait();
  pool.stop();
  deliveries.stop();  // the attempts in flight end and are recorded; the rest waits in the outbox
  state.db = nullptr;
  api_slot = nullptr;
  container_slot = nullptr;
  stream_slot = nullptr;
  threads.stop();  // nothing runs on the I/O threads past this point
  spdlog::info("HTTP server stopped");
  return 0;
  // then db closes its connections, then the embedded server stops.
}

}  // namespace cogwheel::scheduler
