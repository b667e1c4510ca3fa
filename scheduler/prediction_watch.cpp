#include "scheduler/prediction_watch.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <pqxx/pqxx>

#include "storage/dispatch.hpp"
#include "storage/outbox.hpp"
#include "storage/pool.hpp"

namespace cogwheel::scheduler {

namespace asio = boost::asio;

namespace {

class receiver : public pqxx::notification_receiver {
 public:
  receiver(pqxx::connection_base& c, prediction_watch& watch)
      : pqxx::notification_receiver(c, storage::prediction_channel), watch_(watch) {}
  void operator()(const std::string& payload, int) override {
    watch_.notify(storage::prediction_notes_parse(payload));
  }

 private:
  prediction_watch& watch_;
};

class queue_receiver : public pqxx::notification_receiver {
 public:
  queue_receiver(pqxx::connection_base& c, prediction_watch& watch)
      : pqxx::notification_receiver(c, storage::queue_channel), watch_(watch) {}
  // The payload is the batch's versions, comma-separated (storage::notify_payloads).
  void operator()(const std::string& payload, int) override {
    watch_.queued(storage::notify_items(payload));
  }

 private:
  prediction_watch& watch_;
};

}  // namespace

void prediction_watch::set_hooks(notes_hook on_change, queue_hook on_queue) {
  std::lock_guard lock(hooks_mu_);
  on_change_ = std::move(on_change);
  on_queue_ = std::move(on_queue);
}

void prediction_watch::queued(const std::vector<std::string>& versions) {
  queue_hook hook;
  {
    std::lock_guard lock(hooks_mu_);
    hook = on_queue_;
  }
  if (hook) hook(versions);
}

prediction_watch::prediction_watch(std::string conninfo) {
  if (!conninfo.empty()) {
    listener_ = std::thread([this, c = std::move(conninfo)] { listen_loop(c); });
  }
}

prediction_watch::~prediction_watch() {
  stop_ = true;
  if (listener_.joinable()) listener_.join();
}

void prediction_watch::listen_loop(std::string conninfo) {
  const auto full = storage::normalize_conninfo(
      conninfo, {{"connect_timeout", "5"}, {"application_name", "cogwheel listen"}});
  auto backoff = std::chrono::milliseconds(100);
  while (!stop_) {
    try {
      pqxx::connection conn(full);
      receiver r(conn, *this);
      queue_receiver q(conn, *this);
      conn.get_notifs();
      listening_ = true;
      backoff = std::chrono::milliseconds(100);
      notify_all();  // whatever changed while we were not listening
      queued({});    // and whatever was queued
      while (!stop_) conn.await_notification(0, 200'000);
    } catch (const std::exception& e) {
      if (listening_) spdlog::warn("prediction listener lost its connection: {}", e.what());
    }
    listening_ = false;
    // Bounded wait before reconnecting, checking for stop.
    const auto until = std::chrono::steady_clock::now() + backoff;
    while (!stop_ && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5'000));
  }
}

std::shared_ptr<prediction_watch::waiter> prediction_watch::subscribe(const std::string& id,
                                                                      asio::any_io_executor ex) {
  auto w = std::make_shared<waiter>(*this, id, std::move(ex));
  std::lock_guard lock(mu_);
  waiters_.emplace(id, w);
  return w;
}

void prediction_watch::notify(const std::vector<storage::prediction_note>& notes) {
  notes_hook hook;
  {
    std::lock_guard lock(hooks_mu_);
    hook = on_change_;
  }
  if (hook) hook(notes);
  std::vector<std::shared_ptr<waiter>> woken;
  {
    std::lock_guard lock(mu_);
    for (const auto& n : notes) {
      auto [begin, end] = waiters_.equal_range(n.id);
      for (auto it = begin; it != end; ++it) {
        if (auto w = it->second.lock()) woken.push_back(std::move(w));
      }
    }
  }
  for (auto& w : woken) waiter::wake(std::move(w));
}

void prediction_watch::notify_all() {
  std::vector<std::shared_ptr<waiter>> woken;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, weak] : waiters_) {
      if (auto w = weak.lock()) woken.push_back(std::move(w));
    }
  }
  for (auto& w : woken) waiter::wake(std::move(w));
}

void prediction_watch::unsubscribe(const std::string& id, const waiter* w) {
  std::lock_guard lock(mu_);
  auto [begin, end] = waiters_.equal_range(id);
  for (auto it = begin; it != end; ++it) {
    auto locked = it->second.lock();
    if (!locked || locked.get() == w) {
      waiters_.erase(it);
      return;
    }
  }
}

prediction_watch::waiter::waiter(prediction_watch& owner, std::string id, asio::any_io_executor ex)
    : owner_(owner), id_(std::move(id)), timer_(std::move(ex)) {}

prediction_watch::waiter::~waiter() {
  owner_.unsubscribe(id_, this);
}

void prediction_watch::waiter::wake(std::shared_ptr<waiter> self) {
  // The posted work keeps the waiter alive until it ran on the waiter's executor.
  auto ex = self->timer_.get_executor();
  asio::post(ex, [self = std::move(self)] {
    self->woken_ = true;
    self->timer_.cancel();
  });
}

asio::awaitable<bool> prediction_watch::waiter::wait_until(
    std::chrono::steady_clock::time_point deadline) {
  if (!woken_) {
    timer_.expires_at(deadline);
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  const bool woken = woken_;
  woken_ = false;
  co_return woken;
}

}  // namespace cogwheel::scheduler
