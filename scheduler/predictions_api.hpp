#pragma once
// The Replicate-compatible predictions API (PROTOCOLS.md §1): routes and their handlers.
#include <atomic>
#include <string>

#include "http/router.hpp"
#include "scheduler/api/rate_limiter.hpp"
#include "scheduler/auth.hpp"
#include "scheduler/config.hpp"
#include "scheduler/create_batcher.hpp"
#include "scheduler/prediction_watch.hpp"
#include "storage/database.hpp"

namespace cogwheel::scheduler {

struct predictions_api {
  storage::database& db;
  create_batcher& batcher;
  prediction_watch& watch;
  authenticator& auth;
  const config& catalog;
  api::rate_limiter& create_limiter;
  api::rate_limiter& read_limiter;
  std::string public_url;  // without trailing slash
};

// Registers every /v1 route. Until `slot` points at the API's parts (the database is being
// started and migrated), the routes answer 503 with Retry-After. `slot` must outlive the router.
void add_prediction_routes(http::router& routes, std::atomic<predictions_api*>& slot);

}  // namespace cogwheel::scheduler
