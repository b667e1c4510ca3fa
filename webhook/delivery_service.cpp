#include "webhook/delivery_service.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>
#include <thread>

#include "webhook/signature.hpp"

namespace cogwheel::webhook {

namespace asio = boost::asio;
using std::chrono::milliseconds;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

storage::micros now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void delivery_options::validate() const {
  if (owner.empty()) throw std::invalid_argument("the webhook dispatcher needs an owner name");
  if (max_in_flight == 0) throw std::invalid_argument("--webhook-concurrency must be at least 1");
  if (per_endpoint == 0) {
    throw std::invalid_argument("--webhook-endpoint-concurrency must be at least 1");
  }
  if (claim_batch == 0) throw std::invalid_argument("the webhook claim batch must be at least 1");
  if (poll.count() <= 0) throw std::invalid_argument("--webhook-poll-ms must be positive");
  if (send.connect_timeout.count() <= 0 || send.total_timeout.count() <= 0) {
    throw std::invalid_argument("webhook timeouts must be positive");
  }
  retry.validate();
}

milliseconds delivery_options::lease() const {
  return std::max(milliseconds(1'000), 2 * send.total_timeout);
}

delivery_service::delivery_service(asio::io_context& ioc, storage::database& db,
                                   delivery_options opts)
    : ioc_(ioc),
      db_(db),
      opts_((opts.validate(), std::move(opts))),
      sender_(opts_.send),
      strand_(asio::make_strand(ioc)),
      timer_(strand_),
      rng_(std::random_device{}()) {}

delivery_service::~delivery_service() {
  stop();
}

void delivery_service::start() {
  running_ = true;
  asio::co_spawn(strand_, loop(), asio::detached);
}

void delivery_service::wake() {
  woken_ = true;
  asio::post(strand_, [this] { timer_.cancel(); });
}

void delivery_service::stop() {
  if (!running_ || stopping_.exchange(true)) return;
  asio::post(strand_, [this] { timer_.cancel(); });
  // Attempts end within their time limit; their outcomes are then recorded.
  const auto until = std::chrono::steady_clock::now() + opts_.send.total_timeout +
                     opts_.send.connect_timeout + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < until) {
    {
      std::lock_guard lock(mu_);
      if (!running_ && total_in_flight_ == 0 && outcomes_.empty() && !flushing_) break;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
}

asio::awaitable<void> delivery_service::loop() {
  asio::steady_timer gap(strand_);  // not cancelled by wake(): only the poll wait is
  while (!stopping_) {
    const auto began = std::chrono::steady_clock::now();
    std::size_t claimed = 0;
    try {
      claimed = co_await run_once();
    } catch (const std::exception& e) {
      spdlog::warn("webhooks: cannot claim deliveries ({}); trying again", e.what());
    }
    if (stopping_) break;
    // A full batch: more is likely due, claim again at once.
    if (claimed >= opts_.claim_batch) continue;
    if (claimed > 0 || woken_) {
      gap.expires_at(began + opts_.claim_gap);
      co_await gap.async_wait(use_tuple);
      woken_ = false;
      continue;
    }
    timer_.expires_after(opts_.poll);
    co_await timer_.async_wait(use_tuple);
  }
  running_ = false;
}

asio::awaitable<std::size_t> delivery_service::run_once() {
  storage::delivery_claim_params p;
  p.owner = opts_.owner;
  p.lease = opts_.lease();
  p.per_endpoint = opts_.per_endpoint;
  std::size_t free = 0;
  {
    std::lock_guard lock(mu_);
    free = opts_.max_in_flight - std::min(opts_.max_in_flight, total_in_flight_);
    p.in_flight.assign(in_flight_.begin(), in_flight_.end());
  }
  if (free == 0) co_return 0;  // a finished attempt wakes the loop
  // Fresh deliveries first, then retries with what is left (at least a quarter of the free
  // slots, so that retries are not starved either), in one transaction. Losing these writes in a
  // crash only sends a delivery again: no durable commit needed.
  const std::size_t fresh_limit = std::min(opts_.claim_batch, free - free / 4);
  auto work = [&p, free, fresh_limit, batch = opts_.claim_batch](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec("SET LOCAL synchronous_commit = off");
    p.fresh = true;
    p.limit = fresh_limit;
    auto claimed = storage::delivery_claim_due(tx, p);
    p.fresh = false;
    p.limit = std::min(batch, free - claimed.size());
    for (const auto& d : claimed) {
      bool found = false;
      for (auto& [endpoint, n] : p.in_flight) {
        if (endpoint == d.endpoint) {
          ++n;
          found = true;
        }
      }
      if (!found) p.in_flight.emplace_back(d.endpoint, 1);
    }
    auto retries = storage::delivery_claim_due(tx, p);
    for (auto& d : retries) claimed.push_back(std::move(d));
    tx.commit();
    return claimed;
  };
  auto claimed = co_await db_.run(work);
  {
    std::lock_guard lock(mu_);
    for (const auto& d : claimed) {
      ++in_flight_[d.endpoint];
      ++total_in_flight_;
    }
  }
  for (auto& d : claimed) asio::co_spawn(ioc_, attempt(std::move(d)), asio::detached);
  co_return claimed.size();
}

storage::delivery_outcome delivery_service::not_sent(const storage::delivery_claimed& d,
                                                     std::string why) const {
  storage::delivery_outcome o;
  o.id = d.id;
  o.attempt = d.attempt;
  o.started_at = now_us();
  o.error = std::move(why);
  o.state = "disabled";
  return o;
}

asio::awaitable<void> delivery_service::attempt(storage::delivery_claimed d) {
  if (d.disabled) {
    finished(d.endpoint,
             not_sent(d, "not sent: this URL answered 410 Gone to an earlier delivery"));
    co_return;
  }
  storage::delivery_outcome o;
  o.id = d.id;
  o.attempt = d.attempt;
  o.started_at = now_us();
  send_result r;
  try {
    // Signed at each attempt: webhook-timestamp is the attempt's time; webhook-id stays.
    const auto ts = now_seconds();
    std::vector<std::pair<std::string, std::string>> headers{
        {"webhook-id", d.message_id},
        {"webhook-timestamp", std::to_string(ts)},
        {"webhook-signature", signature_header(d.secrets, d.message_id, ts, d.payload)}};
    r = co_await sender_.post(d.url, headers, d.payload);
  } catch (const std::exception& e) {
    r.error = std::string("cannot send: ") + e.what();
  }
  if (r.status != 0) o.status_code = r.status;
  if (r.status != 0 || r.latency.count() > 0) {
    o.latency_ms = static_cast<double>(r.latency.count()) / 1000.0;
  }
  o.error = r.error;
  o.excerpt = r.excerpt;
  attempt_result ar{r.status,
                    r.retry_after.empty() ? std::nullopt : parse_retry_after(r.retry_after)};
  if (!r.error.empty()) ar.status = 0;
  double draw = 0;
  {
    std::lock_guard lock(mu_);
    draw = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  }
  const auto v = judge(opts_.retry, d.event, d.attempt, ar, draw);
  o.state = v.state;
  o.disable_url = v.disable_url;
  if (v.state == "pending") {
    o.next_attempt_at =
        now_us() + std::chrono::duration_cast<std::chrono::microseconds>(v.delay).count();
  }
  if (v.state == "failed" || v.state == "dropped") {
    spdlog::warn("webhooks: {} delivery {} of prediction {} to {} {} after {} attempts ({})",
                 d.event, d.message_id, d.prediction_id, d.endpoint,
                 v.state == "failed" ? "failed" : "dropped", d.attempt,
                 r.error.empty() ? "HTTP " + std::to_string(r.status) : r.error);
  }
  finished(d.endpoint, std::move(o));
}

void delivery_service::finished(const std::string& endpoint, storage::delivery_outcome outcome) {
  bool start_flush = false;
  {
    std::lock_guard lock(mu_);
    if (auto it = in_flight_.find(endpoint); it != in_flight_.end() && --it->second == 0) {
      in_flight_.erase(it);
    }
    --total_in_flight_;
    outcomes_.push_back(std::move(outcome));
    if (!flushing_) flushing_ = start_flush = true;
  }
  if (start_flush) asio::co_spawn(ioc_, flush(), asio::detached);
  wake();  // a slot is free: other predictions' deliveries may go now, before the record is written
}

// Writes the outcomes gathered meanwhile, batch after batch, until none is left; then the next
// deliveries of those predictions (and what the limits held back) may be claimed.
asio::awaitable<void> delivery_service::flush() {
  for (int round = 0;; ++round) {
    std::vector<storage::delivery_outcome> batch;
    {
      std::lock_guard lock(mu_);
      if (outcomes_.empty()) {
        flushing_ = false;
        break;
      }
      batch.swap(outcomes_);
    }
    auto work = [&batch, &owner = opts_.owner](pqxx::connection& c) {
      pqxx::work tx(c);
      // A lost write here only sends the delivery again (at least once).
      tx.exec("SET LOCAL synchronous_commit = off");
      const auto n = storage::delivery_finish_many(tx, owner, batch);
      tx.commit();
      return n;
    };
    bool written = false;
    for (int tries = 0; tries < 50 && !written; ++tries) {
      try {
        co_await db_.run(work);
        written = true;
      } catch (const std::exception& e) {
        // The leases keep the deliveries ours for a while; try again shortly.
        spdlog::warn("webhooks: cannot record {} attempts ({}); trying again", batch.size(),
                     e.what());
      }
      if (!written) {
        asio::steady_timer t(ioc_, milliseconds(100 * (tries + 1)));
        co_await t.async_wait(use_tuple);
      }
    }
    if (!written) {
      spdlog::error(
          "webhooks: gave up recording {} attempts; they will be sent again once "
          "their leases lapse",
          batch.size());
    }
    wake();
  }
}

}  // namespace cogwheel::webhook
