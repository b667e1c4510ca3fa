#include "scheduler/app.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <future>
#include <thread>

#include "http/server.hpp"
#include "scheduler/database_target.hpp"
#include "scheduler/health_api.hpp"
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
  asio::io_context ioc(s.io_threads);
  service_state state;

  auto routes = std::make_shared<http::router>();
  add_health_routes(*routes, state);
  http::server_options http_opts;
  http_opts.listen = s.listen;
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
  state.db = &db;
  const auto ep = server.local_endpoint();
  spdlog::info("cogwheel listening on http://{}:{}", ep.address().to_string(), ep.port());

  stop_requested.get_future().wait();
  state.stopping = true;
  std::promise<void> drained;
  server.shutdown(std::chrono::milliseconds(s.shutdown_grace_ms), [&] { drained.set_value(); });
  drained.get_future().wait();
  state.db = nullptr;
  spdlog::info("HTTP server stopped");
  return 0;
  // threads join, then db closes its connections, then the embedded server stops.
}

}  // namespace cogwheel::scheduler
