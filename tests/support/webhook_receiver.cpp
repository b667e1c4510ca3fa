#include "tests/support/webhook_receiver.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "http/router.hpp"
#include "http/server.hpp"

namespace cogwheel::test {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;

struct webhook_receiver::impl {
  asio::io_context ioc{2};
  std::unique_ptr<http::server> server;
  std::vector<std::thread> threads;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;

  mutable std::mutex mu;
  mutable std::condition_variable changed;
  std::vector<received_webhook> got;
  std::map<std::string, std::function<webhook_reply(int)>> replies;
  std::map<std::string, int> counts;

  asio::awaitable<http::response> handle(http::request_context& ctx) {
    received_webhook r;
    r.name = std::string(ctx.params.get("name"));
    for (const auto& f : ctx.req) {
      std::string key(f.name_string());
      for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers[key] = std::string(f.value());
    }
    r.body = ctx.req.body();
    r.at = std::chrono::steady_clock::now();
    webhook_reply reply;
    {
      std::lock_guard lock(mu);
      const int n = ++counts[r.name];
      if (auto it = replies.find(r.name); it != replies.end()) reply = it->second(n);
      got.push_back(std::move(r));
    }
    changed.notify_all();
    if (reply.delay.count() > 0) {
      asio::steady_timer t(co_await asio::this_coro::executor, reply.delay);
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    http::response res{static_cast<bhttp::status>(reply.status), 11};
    for (const auto& [k, v] : reply.headers) res.set(k, v);
    res.body() = reply.body;
    res.prepare_payload();
    co_return res;
  }
};

std::string received_webhook::header(const std::string& h) const {
  auto it = headers.find(h);
  return it == headers.end() ? "" : it->second;
}

webhook_receiver::webhook_receiver() : impl_(std::make_unique<impl>()) {
  auto routes = std::make_shared<http::router>();
  routes->add(bhttp::verb::post, "/hook/{name}",
              [this](http::request_context& ctx) { return impl_->handle(ctx); });
  http::server_options opts;
  opts.listen = "127.0.0.1:0";
  impl_->server = std::make_unique<http::server>(impl_->ioc, opts, routes);
  impl_->server->start();
  port_ = impl_->server->local_endpoint().port();
  impl_->guard.emplace(impl_->ioc.get_executor());
  for (int i = 0; i < 2; ++i) impl_->threads.emplace_back([this] { impl_->ioc.run(); });
}

webhook_receiver::~webhook_receiver() {
  impl_->server.reset();
  impl_->guard.reset();
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
}

std::string webhook_receiver::url(const std::string& name) const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/hook/" + name;
}

void webhook_receiver::on(const std::string& name, std::function<webhook_reply(int)> reply) {
  std::lock_guard lock(impl_->mu);
  impl_->replies[name] = std::move(reply);
}

std::vector<received_webhook> webhook_receiver::requests(const std::string& name) const {
  std::lock_guard lock(impl_->mu);
  std::vector<received_webhook> out;
  for (const auto& r : impl_->got) {
    if (r.name == name) out.push_back(r);
  }
  return out;
}

std::vector<received_webhook> webhook_receiver::wait_for(
    const std::string& name, const std::function<bool(const std::vector<received_webhook>&)>& done,
    std::chrono::milliseconds timeout) const {
  const auto until = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(impl_->mu);
  for (;;) {
    std::vector<received_webhook> mine;
    for (const auto& r : impl_->got) {
      if (r.name == name) mine.push_back(r);
    }
    if (done(mine) || impl_->changed.wait_until(lock, until) == std::cv_status::timeout) {
      if (!done(mine)) {
        mine.clear();
        for (const auto& r : impl_->got) {
          if (r.name == name) mine.push_back(r);
        }
      }
      return mine;
    }
  }
}

std::vector<received_webhook> for_prediction(const std::vector<received_webhook>& all,
                                             const std::string& id) {
  std::vector<received_webhook> out;
  for (const auto& r : all) {
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (!j.is_discarded() && j.value("id", "") == id) out.push_back(r);
  }
  return out;
}

}  // namespace cogwheel::test
