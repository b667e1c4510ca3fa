#include "tests/fake_cog/runner.hpp"

#include <spdlog/spdlog.h>

#include <boost/beast/core/detail/base64.hpp>

#include "tests/fake_cog/webhook_sender.hpp"

namespace fake_cog {

using nlohmann::json;
using namespace std::chrono_literals;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr int upload_retries = 3;  // Cog's upload session: Retry(total=3) on 408/429/5xx

bool retryable_upload_status(int status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

std::string strip_query(std::string url) {
  auto cut = url.find_first_of("?#");
  if (cut != std::string::npos) url.resize(cut);
  return url;
}

std::string data_url(std::string_view content_type, std::string_view bytes) {
  namespace b64 = boost::beast::detail::base64;
  std::string encoded(b64::encoded_size(bytes.size()), '\0');
  encoded.resize(b64::encode(encoded.data(), bytes.data(), bytes.size()));
  return "data:" + std::string(content_type) + ";base64," + encoded;
}
}  // namespace

struct prediction {
  prediction(asio::io_context& ioc, const config& cfg, prediction_request r, bool async)
      : req(std::move(r)),
        respond_async(async),
        timer(ioc),
        done_timer(ioc, asio::steady_timer::time_point::max()),
        hooks(cfg, req.webhook.value_or(""), req.events) {}

  prediction_request req;
  bool respond_async;
  prediction_state state;
  asio::steady_timer timer;       // the model's waits (interval, sleep, hang)
  asio::steady_timer done_timer;  // wait_done() waits on it; cancelled when done
  webhook_sender hooks;
  bool cancel_requested = false;
  bool done = false;
};

runner::runner(asio::io_context& ioc, config cfg, std::function<void(int)> exit)
    : ioc_(ioc), cfg_(std::move(cfg)), exit_(std::move(exit)), setup_timer_(ioc) {
  if (!cfg_.receipts_file.empty()) {
    receipts_ = std::fopen(cfg_.receipts_file.c_str(), "a");
    if (!receipts_) spdlog::error("cannot open {}", cfg_.receipts_file);
  }
}

runner::~runner() {
  if (receipts_) std::fclose(receipts_);
}

void runner::receipt(const std::string& id, const char* what) {
  if (!receipts_) return;
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  // One short write per line: lines of several processes appending to one file stay whole.
  std::fprintf(receipts_, "%s %s %lld\n", id.c_str(), what, static_cast<long long>(us));
  std::fflush(receipts_);
}

void runner::start_setup() {
  setup_started_at_ = iso_timestamp(std::chrono::system_clock::now());
  auto complete = [this] {
    setup_completed_at_ = iso_timestamp(std::chrono::system_clock::now());
    if (cfg_.setup_fail) {
      setup_logs_ += "fake_cog: setup failed (--setup-fail)\n";
      health_ = health_state::setup_failed;
      spdlog::warn("setup failed (--setup-fail)");
    } else {
      setup_logs_ += "fake_cog: setup complete\n";
      health_ = health_state::ready;
      spdlog::info("setup complete");
    }
  };
  setup_logs_ = "fake_cog: setup started (" + std::to_string(cfg_.setup_time.count()) + " ms)\n";
  if (cfg_.setup_time.count() <= 0) {
    complete();
    return;
  }
  setup_timer_.expires_after(cfg_.setup_time);
  setup_timer_.async_wait([complete](boost::system::error_code ec) {
    if (!ec) complete();
  });
}

json runner::health() const {
  std::string status;
  switch (health_) {
    case health_state::starting:
      status = "STARTING";
      break;
    case health_state::ready:
      status = active_.size() >= cfg_.concurrency ? "BUSY" : "READY";
      break;
    case health_state::setup_failed:
      status = "SETUP_FAILED";
      break;
    case health_state::defunct:
      status = "DEFUNCT";
      break;
  }
  json setup = json::object();  // Cog 0.9: {} until setup has completed
  if (health_ != health_state::starting) {
    setup = {{"started_at", setup_started_at_},
             {"completed_at", setup_completed_at_},
             {"logs", setup_logs_},
             {"status", cfg_.setup_fail ? "failed" : "succeeded"}};
  }
  return {{"status", status}, {"setup", setup}};
}

asio::awaitable<runner::create_result> runner::create(prediction_request req, bool respond_async) {
  create_result result;
  if (auto it = active_.find(req.id); it != active_.end()) {
    result.outcome = create_result::kind::existing;
    result.state = full_json(it->second->state);
    result.handle = it->second;
    co_return result;
  }
  result.outcome = create_result::kind::not_ready;
  if (stopping_) {
    result.detail = "Shutting down";
    co_return result;
  }
  switch (health_) {
    case health_state::starting:
      result.detail = "Already running a prediction";  // Cog 0.9: setup holds the runner
      co_return result;
    case health_state::setup_failed:
      result.detail = "Setup failed";
      co_return result;
    case health_state::defunct:
      result.detail = "Model is defunct";
      co_return result;
    case health_state::ready:
      break;
  }
  if (active_.size() >= cfg_.concurrency) {
    result.outcome = create_result::kind::busy;
    result.detail = "Already running a prediction";
    co_return result;
  }

  const std::string id = req.id;
  receipt(id, "accepted");
  auto p = std::make_shared<prediction>(ioc_, cfg_, std::move(req), respond_async);
  auto& s = p->state;
  s.id = id;
  s.input = p->req.input;
  s.created_at = p->req.created_at;
  s.started_at = std::chrono::system_clock::now();
  s.webhook = p->req.webhook ? json(*p->req.webhook) : json(nullptr);
  s.webhook_events_filter = p->req.events_json;
  s.output_file_prefix = p->req.output_file_prefix;
  active_.emplace(id, p);
  spdlog::info("prediction {} started: input {}", id, s.input.dump());

  // Cog 0.9 sends the start webhook before it answers the request. A delayed start stays
  // `starting` and sends it when it starts (run()).
  if (p->req.behaviour.start_delay_ms > 0) {
    s.status = "starting";
  } else {
    co_await p->hooks.send(ev_start, webhook_json(s));
  }

  result.outcome = create_result::kind::started;
  result.state = full_json(s);
  result.handle = p;
  asio::co_spawn(ioc_, run(p), [id](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("prediction {}: run failed: {}", id, ex.what());
    }
  });
  co_return result;
}

asio::awaitable<json> runner::wait_done(std::shared_ptr<prediction> p) {
  if (!p->done) co_await p->done_timer.async_wait(use_tuple);
  co_return full_json(p->state);
}

bool runner::cancel(std::string_view id) {
  auto it = active_.find(id);
  if (it == active_.end()) return false;
  spdlog::info("prediction {}: cancel requested", it->second->state.id);
  it->second->cancel_requested = true;
  it->second->timer.cancel();
  return true;
}

void runner::stop() {
  stopping_ = true;
  setup_timer_.cancel();
  for (auto& [id, p] : active_) p->timer.cancel();
}

asio::awaitable<bool> runner::pause(prediction& p, std::optional<std::chrono::milliseconds> d) {
  if (p.cancel_requested || stopping_) co_return false;
  if (d) {
    p.timer.expires_after(*d);
  } else {
    p.timer.expires_at(asio::steady_timer::time_point::max());
  }
  co_await p.timer.async_wait(use_tuple);
  co_return !(p.cancel_requested || stopping_);
}

asio::awaitable<void> runner::emit(prediction& p, event e) {
  co_await p.hooks.send(e, webhook_json(p.state));
}

asio::awaitable<std::pair<std::string, bool>> runner::upload(prediction& p) {
  const std::string& name = *p.req.behaviour.upload;
  const std::string& content = p.req.behaviour.content;
  const std::string type = content_type_for(name);
  if (!p.respond_async) co_return std::pair{data_url(type, content), true};
  if (cfg_.upload_url.empty()) {
    co_return std::pair{"fake_cog: cannot upload " + name + ": no --upload-url configured", false};
  }
  std::string url = cfg_.upload_url;
  if (!url.ends_with('/')) url += '/';
  url += name;
  auto executor = co_await asio::this_coro::executor;
  client_response res;
  for (int attempt = 0; attempt <= upload_retries; ++attempt) {
    if (auto delay = retry_delay(attempt, 100ms); delay.count() > 0) {
      asio::steady_timer timer(executor, delay);
      co_await timer.async_wait(use_tuple);
    }
    client_request req;
    req.method = bhttp::verb::put;
    req.url = url;
    req.headers = {{"Content-Type", type}, {"X-Prediction-ID", p.state.id}};
    req.body = content;
    req.connect_timeout = cfg_.connect_timeout;
    req.total_timeout = cfg_.total_timeout;
    res = co_await send_request(std::move(req));
    if (res.ok()) co_return std::pair{strip_query(res.location.empty() ? url : res.location), true};
    spdlog::warn("prediction {}: upload to {} failed (attempt {}): {}", p.state.id, url,
                 attempt + 1, res.describe());
    if (res.error.empty() && !retryable_upload_status(res.status)) break;
  }
  co_return std::pair{std::string(upload_failed_message), false};
}

asio::awaitable<void> runner::run(std::shared_ptr<prediction> p) {
  const plan& pl = p->req.behaviour;
  auto& s = p->state;
  auto canceled = [&] { return p->cancel_requested || stopping_; };
  bool ok = true;
  if (pl.start_delay_ms > 0) {
    ok = co_await pause(*p, std::chrono::milliseconds(pl.start_delay_ms));
    if (ok && !canceled()) {
      s.status = "processing";
      s.started_at = std::chrono::system_clock::now();
      co_await p->hooks.send(ev_start, webhook_json(s));
    }
  }
  if (pl.generator()) s.output = json::array();
  for (std::int64_t i = 0; ok && i < pl.steps(); ++i) {
    if (pl.interval_ms > 0) ok = co_await pause(*p, std::chrono::milliseconds(pl.interval_ms));
    if (!ok || canceled()) {
      ok = false;
      break;
    }
    if (i < pl.logs) {
      s.logs += log_line(i);
      co_await emit(*p, ev_logs);
    }
    if (i < pl.outputs.value_or(0)) {
      s.output.push_back(generator_item(pl, i));
      co_await emit(*p, ev_output);
    }
  }
  if (ok && pl.sleep_ms > 0) ok = co_await pause(*p, std::chrono::milliseconds(pl.sleep_ms));
  if (ok && pl.hang) ok = co_await pause(*p, std::nullopt);
  if (!ok || canceled()) {
    co_await finish(p, "canceled");
    co_return;
  }
  if (pl.exit_137) {
    spdlog::warn("prediction {}: the model process dies (exit code 137)", s.id);
    health_ = health_state::defunct;
    s.error = std::string(exit_137_message);
    co_await finish(p, "failed");
    co_return;
  }
  if (pl.fail) {
    s.error = *pl.fail;
    co_await finish(p, "failed");
    co_return;
  }
  if (pl.upload) {
    auto [text, uploaded] = co_await upload(*p);
    if (!uploaded) {
      s.error = text;
      co_await finish(p, "failed");
      co_return;
    }
    s.output = text;
  } else if (!pl.generator()) {
    s.output = echo_output(s.input);
  }
  co_await finish(p, "succeeded");
}

asio::awaitable<void> runner::finish(std::shared_ptr<prediction> p, std::string status) {
  auto& s = p->state;
  s.status = std::move(status);
  s.completed_at = std::chrono::system_clock::now();
  s.has_metrics = s.status == "succeeded";
  spdlog::info("prediction {} {}{}", s.id, s.status, s.error ? ": " + *s.error : std::string());
  receipt(s.id, "terminal");
  if (!stopping_) co_await p->hooks.send_terminal(webhook_json(s));
  // The slot stays taken until the terminal webhook was sent, as in Cog 0.9.
  p->done = true;
  p->done_timer.cancel();
  if (auto it = active_.find(s.id); it != active_.end() && it->second == p) active_.erase(it);
  if (health_ == health_state::defunct && cfg_.exit_on_defunct && !stopping_) {
    spdlog::warn("exiting with code 137 (--exit-on-defunct)");
    exit_(137);
  }
}

}  // namespace fake_cog
