#include <atomic>
#include <catch2/catch.hpp>
#include <limits>
#include <thread>
#include <vector>

#include "scheduler/api/rate_limiter.hpp"

using namespace cogwheel::scheduler::api;
using namespace std::chrono_literals;

namespace {
const rate_limiter::clock::time_point t0{};
}

TEST_CASE("a bucket starts full and then refuses with Retry-After", "[api][rate]") {
  rate_limiter rl(60, 3);  // one a second, burst 3
  for (int i = 0; i < 3; ++i) CHECK(rl.acquire(1, t0).allowed);
  auto d = rl.acquire(1, t0);
  CHECK_FALSE(d.allowed);
  CHECK(d.retry_after == 1s);
  CHECK(rl.acquire(2, t0).allowed);  // other keys have their own bucket
}

TEST_CASE("tokens refill continuously up to the burst", "[api][rate]") {
  rate_limiter rl(6, 2);  // one every 10 s
  CHECK(rl.acquire(1, t0).allowed);
  CHECK(rl.acquire(1, t0).allowed);
  auto d = rl.acquire(1, t0);
  CHECK_FALSE(d.allowed);
  CHECK(d.retry_after == 10s);
  d = rl.acquire(1, t0 + 2500ms);
  CHECK_FALSE(d.allowed);
  CHECK(d.retry_after == 8s);  // ceil(7.5)
  CHECK(rl.acquire(1, t0 + 10s).allowed);
  CHECK_FALSE(rl.acquire(1, t0 + 10s).allowed);
  // A long idle period refills only to the burst.
  CHECK(rl.acquire(1, t0 + 1h).allowed);
  CHECK(rl.acquire(1, t0 + 1h).allowed);
  CHECK_FALSE(rl.acquire(1, t0 + 1h).allowed);
}

TEST_CASE("retry_after is at least one second", "[api][rate]") {
  rate_limiter rl(6000, 1);  // 100 a second
  CHECK(rl.acquire(1, t0).allowed);
  auto d = rl.acquire(1, t0);
  CHECK_FALSE(d.allowed);
  CHECK(d.retry_after == 1s);
}

TEST_CASE("a very slow limit caps retry_after at a day", "[api][rate]") {
  rate_limiter rl(1e-9, 1);
  CHECK(rl.acquire(1, t0).allowed);
  CHECK(rl.acquire(1, t0).retry_after == 24h);
}

TEST_CASE("a clock going backwards does not add tokens", "[api][rate]") {
  rate_limiter rl(60, 1);
  CHECK(rl.acquire(1, t0 + 10s).allowed);
  CHECK_FALSE(rl.acquire(1, t0).allowed);
  CHECK_FALSE(rl.acquire(1, t0 + 10s).allowed);
  CHECK(rl.acquire(1, t0 + 11s).allowed);
}

TEST_CASE("per_minute 0 is unlimited and tracks nothing", "[api][rate]") {
  rate_limiter rl(0, 0);
  for (int i = 0; i < 1000; ++i) CHECK(rl.acquire(i % 3, t0).allowed);
  CHECK(rl.tracked_keys() == 0);
}

TEST_CASE("invalid settings are refused", "[api][rate]") {
  CHECK_THROWS_AS(rate_limiter(-1, 1), std::invalid_argument);
  CHECK_THROWS_AS(rate_limiter(60, 0.5), std::invalid_argument);
  CHECK_THROWS_AS(rate_limiter(60, 1, 0), std::invalid_argument);
  CHECK_THROWS_AS(rate_limiter(std::numeric_limits<double>::quiet_NaN(), 1), std::invalid_argument);
}

TEST_CASE("memory stays bounded: full idle buckets go first", "[api][rate]") {
  rate_limiter rl(60, 5, 160);  // 10 per shard
  for (std::int64_t k = 0; k < 100'000; ++k) rl.acquire(k, t0 + std::chrono::seconds(k));
  CHECK(rl.tracked_keys() <= 160);
  // A busy key, drained now, keeps its state while idle keys are swept around it.
  rate_limiter busy(60, 2, 160);
  const auto now = t0 + 1h;
  busy.acquire(-1, now);
  busy.acquire(-1, now);
  for (std::int64_t k = 0; k < 1000; ++k) busy.acquire(k, t0);  // all full again by `now`
  for (std::int64_t k = 1000; k < 1200; ++k) busy.acquire(k, now);
  CHECK(busy.tracked_keys() <= 160);
  CHECK_FALSE(busy.acquire(-1, now).allowed);
}

TEST_CASE("many threads share the limiter safely", "[api][rate]") {
  rate_limiter rl(60, 100);
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (rl.acquire(i % 4, t0).allowed) ++allowed;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(allowed == 400);  // 4 keys, 100 each, no refill at a fixed time
  CHECK(rl.tracked_keys() == 4);
}
