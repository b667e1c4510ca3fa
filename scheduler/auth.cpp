#include "scheduler/auth.hpp"

#include "scheduler/api/headers.hpp"
#include "scheduler/api/tokens.hpp"
#include "storage/tokens.hpp"

namespace cogwheel::scheduler {

namespace {
constexpr std::size_t max_cached = 10'000;
constexpr auto negative_ttl = std::chrono::seconds(2);
}  // namespace

authenticator::authenticator(storage::database& db, std::chrono::seconds ttl)
    : db_(db), ttl_(ttl) {}

boost::asio::awaitable<std::optional<tenant>> authenticator::authenticate(
    std::string_view authorization) {
  auto token = api::bearer_token(authorization);
  if (!token || token->empty() || token->size() > 200) co_return std::nullopt;
  const std::string key = api::sha256_bytes(*token);
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    if (auto it = cache_.find(key); it != cache_.end() && it->second.expires > now) {
      co_return it->second.who;
    }
  }
  auto lookup = [&key](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    return storage::token_find(tx, key);
  };
  auto row = co_await db_.run(lookup);
  std::optional<tenant> who;
  if (row && !row->revoked) who = tenant{row->id, row->name, row->webhook_secret};
  {
    std::lock_guard lock(mu_);
    if (cache_.size() >= max_cached) cache_.clear();
    cache_[key] = {who, now + (who ? ttl_ : std::chrono::seconds(negative_ttl))};
  }
  co_return who;
}

void authenticator::forget(std::int64_t token_id) {
  std::lock_guard lock(mu_);
  std::erase_if(
      cache_, [&](const auto& kv) { return kv.second.who && kv.second.who->token_id == token_id; });
}

}  // namespace cogwheel::scheduler
