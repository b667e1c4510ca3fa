#pragma once
// Per-key token buckets (key: an API token id), thread-safe, with bounded memory.
#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace cogwheel::scheduler::api {

class rate_limiter {
 public:
  using clock = std::chrono::steady_clock;

  // per_minute 0 means unlimited. Buckets start full with `burst` tokens and refill continuously
  // at per_minute / 60 per second up to `burst`. At most about `max_keys` buckets are kept: when a
  // shard is full, buckets that have refilled completely are dropped (harmless: a new bucket starts
  // full), and if that is not enough, arbitrary ones (those keys get a fresh, full bucket).
  // Throws std::invalid_argument for per_minute < 0, burst < 1 (when limited) or max_keys 0.
  rate_limiter(double per_minute, double burst, std::size_t max_keys = 65536);

  struct decision {
    bool allowed = true;
    std::chrono::seconds retry_after{0};  // when refused: ceil of the time until one token, >= 1 s
  };
  decision acquire(std::int64_t key, clock::time_point now = clock::now());

  std::size_t tracked_keys() const;

 private:
  struct bucket {
    double tokens;
    clock::time_point last;
  };
  struct shard {
    mutable std::mutex mutex;
    std::unordered_map<std::int64_t, bucket> buckets;
  };
  static constexpr std::size_t shard_count = 16;

  double refilled(const bucket& b, clock::time_point now) const;
  void make_room(shard& s, clock::time_point now);
  shard& shard_for(std::int64_t key);

  double per_second_;
  double burst_;
  std::size_t max_per_shard_;
  std::array<shard, shard_count> shards_;
};

}  // namespace cogwheel::scheduler::api
