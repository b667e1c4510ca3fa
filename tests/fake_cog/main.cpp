// fake_cog: a fake Cog 0.9 model container for tests, benchmarks and demos. Parses the options and
// starts; the behaviour lives in runner.cpp, the routes in server.cpp.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>

#include "http/server.hpp"
#include "tests/fake_cog/config.hpp"
#include "tests/fake_cog/runner.hpp"
#include "tests/fake_cog/server.hpp"

namespace {

std::string env_or(const char* name, std::string fallback) {
  const char* value = std::getenv(name);
  return value ? std::string(value) : std::move(fallback);
}

int serve(const fake_cog::config& cfg) {
  namespace asio = cogwheel::http::asio;
  asio::io_context ioc{1};  // one thread: the runner's state is not locked
  std::optional<int> exit_code;
  std::unique_ptr<cogwheel::http::server> server;
  asio::steady_timer exit_deadline(ioc);
  auto request_exit = [&](int code) {
    if (exit_code) return;
    exit_code = code;
    asio::post(ioc, [&] {
      server->shutdown(std::chrono::milliseconds(1'000), [&ioc] { ioc.stop(); });
      exit_deadline.expires_after(std::chrono::milliseconds(3'000));
      exit_deadline.async_wait([&ioc](boost::system::error_code ec) {
        if (!ec) ioc.stop();
      });
    });
  };
  fake_cog::runner model(ioc, cfg, [&](int code) { request_exit(code); });
  auto exit_with = [&](int code) {
    model.stop();
    request_exit(code);
  };
  // /shutdown and signals stop the model at once (no more webhooks), like killing Cog's worker.
  auto routes = fake_cog::make_routes(model, [&](int code) { exit_with(code); });

  cogwheel::http::server_options opts;
  opts.listen = (cfg.host.find(':') != std::string::npos ? "[" + cfg.host + "]" : cfg.host) + ":" +
                std::to_string(cfg.port);
  opts.body_limit = 16 * 1024 * 1024;
  server = std::make_unique<cogwheel::http::server>(ioc, opts, routes);

  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int signo) {
    if (ec) return;
    spdlog::info("signal {}: exiting", signo);
    exit_with(0);
  });

  model.start_setup();
  server->start();
  auto endpoint = server->local_endpoint();
  std::printf("fake_cog listening on %s:%u\n", endpoint.address().to_string().c_str(),
              static_cast<unsigned>(endpoint.port()));
  std::fflush(stdout);

  ioc.run();
  signals.cancel();
  server.reset();
  return exit_code.value_or(0);
}

}  // namespace

int main(int argc, char** argv) {
  // stdout carries only the "listening" line; logs go to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("fake_cog"));
  spdlog::set_pattern("[%H:%M:%S.%e] [fake_cog] [%l] %v");

  CLI::App app{"fake_cog: a fake Cog 0.9 model container; behaviour chosen by each input",
               "fake_cog"};
  fake_cog::config cfg;
  int setup_ms = 0;
  int throttle_ms = static_cast<int>(cfg.throttle.count());
  int backoff_ms = static_cast<int>(cfg.retry_backoff.count());
  std::string log_level = "info";
  app.add_option("--host", cfg.host, "Address to listen on")->capture_default_str();
  app.add_option("--port", cfg.port, "Port to listen on (0: any free port)")
      ->envname("PORT")
      ->capture_default_str();
  app.add_option("--setup-ms", setup_ms, "Setup takes this long (health STARTING meanwhile)")
      ->envname("FAKE_COG_SETUP_MS")
      ->check(CLI::Range(0, 24 * 3600 * 1000))
      ->capture_default_str();
  app.add_flag("--setup-fail", cfg.setup_fail, "Setup fails: health SETUP_FAILED forever")
      ->envname("FAKE_COG_SETUP_FAIL");
  app.add_option("--concurrency", cfg.concurrency, "Prediction slots")
      ->envname("FAKE_COG_CONCURRENCY")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--upload-url", cfg.upload_url, "Where file outputs are PUT (Cog's --upload-url)")
      ->envname("COG_UPLOAD_URL");
  app.add_option("--throttle-ms", throttle_ms, "Minimum interval of non-terminal webhooks")
      ->envname("FAKE_COG_THROTTLE_MS")
      ->check(CLI::Range(0, 3600 * 1000))
      ->capture_default_str();
  app.add_option("--terminal-retries", cfg.terminal_retries,
                 "Retries of the terminal webhook on failure or non-2xx")
      ->envname("FAKE_COG_TERMINAL_RETRIES")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("--retry-backoff-ms", backoff_ms,
                 "Backoff factor of terminal retries: retry n waits factor*2^(n-1) (none for the "
                 "first), at most 120 s")
      ->envname("FAKE_COG_RETRY_BACKOFF_MS")
      ->check(CLI::Range(0, 120 * 1000))
      ->capture_default_str();
  app.add_flag("--exit-on-defunct,!--no-exit-on-defunct", cfg.exit_on_defunct,
               "Exit with code 137 once DEFUNCT (after the terminal webhook); default on")
      ->envname("FAKE_COG_EXIT_ON_DEFUNCT");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->envname("FAKE_COG_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  bool quiet = false;
  app.add_flag("--quiet", quiet, "Log only warnings and errors (same as --log-level warn)")
      ->envname("FAKE_COG_QUIET");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  cfg.setup_time = std::chrono::milliseconds(setup_ms);
  cfg.throttle = std::chrono::milliseconds(throttle_ms);
  cfg.retry_backoff = std::chrono::milliseconds(backoff_ms);
  cfg.webhook_auth_token = env_or("WEBHOOK_AUTH_TOKEN", "");
  cfg.receipts_file = env_or("FAKE_COG_RECEIPTS", "");
  spdlog::set_level(quiet ? spdlog::level::warn : spdlog::level::from_str(log_level));

  try {
    return serve(cfg);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fake_cog: error: %s\n", e.what());
    return 1;
  }
}
