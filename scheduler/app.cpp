#include "scheduler/app.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <future>
#include <thread>

#include "http/server.hpp"
#include "scheduler/api/rate_limiter.hpp"
#include "scheduler/auth.hpp"
#include "scheduler/config.hpp"
#include "scheduler/create_batcher.hpp"
#include "scheduler/database_target.hpp"
#include "scheduler/health_api.hpp"
#include "scheduler/prediction_watch.hpp"
#include "scheduler/predictions_api.hpp"
#include "storage/catalog.hpp"
#include "storage/database.hpp"
#include "storage/migrator.hpp"

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
  ~io_threads() {
    guard_.reset();
    ioc_.stop();
    for (auto& t : threads_) t.join();
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

  auto routes = std::make_shared<http::router>();
  add_health_routes(*routes, state);
  add_prediction_routes(*routes, api_slot);
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

  prediction_watch watch(target.conninfo);
  create_batcher batcher(db);
  authenticator auth(db);
  auto create_limiter = make_limiter(s.create_rate_limit);
  auto read_limiter = make_limiter(s.rate_limit);
  const auto ep = server.local_endpoint();
  predictions_api api{db,      batcher,        watch,        auth,
                      catalog, create_limiter, read_limiter, public_base_url(s, ep)};
  api_slot = &api;
  state.db = &db;
  spdlog::info("cogwheel listening on http://{}:{}", ep.address().to_string(), ep.port());

  stop_requested.get_future().wait();
  state.stopping = true;
  std::promise<void> drained;
  server.shutdown(std::chrono::milliseconds(s.shutdown_grace_ms), [&] { drained.set_value(); });
  drained.get_future().wait();
  state.db = nullptr;
  api_slot = nullptr;
  spdlog::info("HTTP server stopped");
  return 0;
  // threads join, then db closes its connections, then the embedded server stops.
}

}  // namespace cogwheel::scheduler
