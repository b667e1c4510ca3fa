#pragma once
// Who is calling: `Authorization: Bearer <token>` (or `Token <token>`) to a tenant. Tokens are
// looked up by their SHA-256 and cached briefly, so a create costs no extra database round trip.
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "storage/database.hpp"

namespace cogwheel::scheduler {

struct tenant {
  std::int64_t token_id = 0;
  std::string name;
  std::string webhook_secret;
};

class authenticator {
 public:
  // ttl: how long a looked-up token is trusted (a revoked token works at most this long).
  explicit authenticator(storage::database& db,
                         std::chrono::seconds ttl = std::chrono::seconds(30));

  // nullopt: no credentials, malformed ones, or an unknown or revoked token.
  boost::asio::awaitable<std::optional<tenant>> authenticate(std::string_view authorization);

  void forget(std::int64_t token_id);  // drop cached entries of a token (e.g. after rotation)

 private:
  struct entry {
    std::optional<tenant> who;
    std::chrono::steady_clock::time_point expires;
  };
  storage::database& db_;
  std::chrono::seconds ttl_;
  std::mutex mu_;
  std::unordered_map<std::string, entry> cache_;  // key: raw SHA-256 of the token
};

}  // namespace cogwheel::scheduler
