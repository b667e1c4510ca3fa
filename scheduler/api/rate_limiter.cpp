#include "scheduler/api/rate_limiter.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace cogwheel::scheduler::api {

namespace {
constexpr double max_retry_seconds = 86'400.0;  // a limit slower than one a day still says a day
}  // namespace

rate_limiter::rate_limiter(double per_minute, double burst, std::size_t max_keys)
    : per_second_(per_minute / 60.0),
      burst_(burst),
      max_per_shard_(std::max<std::size_t>(1, max_keys / shard_count)) {
  if (!(per_minute >= 0) || !std::isfinite(per_minute)) {
    throw std::invalid_argument("rate limit per minute must be >= 0");
  }
  if (per_minute > 0 && (!(burst >= 1) || !std::isfinite(burst))) {
    throw std::invalid_argument("rate limit burst must be >= 1");
  }
  if (max_keys == 0) throw std::invalid_argument("rate limiter max_keys must be > 0");
}

double rate_limiter::refilled(const bucket& b, clock::time_point now) const {
  const std::chrono::duration<double> elapsed = std::max(now - b.last, clock::duration::zero());
  return std::min(burst_, b.tokens + elapsed.count() * per_second_);
}

rate_limiter::shard& rate_limiter::shard_for(std::int64_t key) {
  const auto mixed = static_cast<std::uint64_t>(key) * 0x9E3779B97F4A7C15ULL;  // Fibonacci hashing
  return shards_[mixed >> 60];
}

// Called with the shard locked when a new key does not fit: drop full buckets, then, if fewer
// than a quarter went, arbitrary ones down to three quarters, so sweeps stay rare.
void rate_limiter::make_room(shard& s, clock::time_point now) {
  std::erase_if(s.buckets, [&](const auto& kv) { return refilled(kv.second, now) >= burst_; });
  const std::size_t target = max_per_shard_ - std::max<std::size_t>(1, max_per_shard_ / 4);
  for (auto it = s.buckets.begin(); s.buckets.size() > target && it != s.buckets.end();) {
    it = s.buckets.erase(it);
  }
}

rate_limiter::decision rate_limiter::acquire(std::int64_t key, clock::time_point now) {
  if (per_second_ == 0) return {true, std::chrono::seconds{0}};
  shard& s = shard_for(key);
  std::lock_guard lock(s.mutex);
  auto it = s.buckets.find(key);
  if (it == s.buckets.end()) {
    if (s.buckets.size() >= max_per_shard_) make_room(s, now);
    it = s.buckets.emplace(key, bucket{burst_, now}).first;
  }
  bucket& b = it->second;
  b.tokens = refilled(b, now);
  b.last = std::max(b.last, now);
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return {true, std::chrono::seconds{0}};
  }
  const double wait = std::min(std::ceil((1 - b.tokens) / per_second_), max_retry_seconds);
  return {false, std::chrono::seconds{std::max<std::int64_t>(1, static_cast<std::int64_t>(wait))}};
}

std::size_t rate_limiter::tracked_keys() const {
  std::size_t n = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s.mutex);
    n += s.buckets.size();
  }
  return n;
}

}  // namespace cogwheel::scheduler::api
