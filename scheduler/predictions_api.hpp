#pragma once
// The Replicate-compatible predictions API (PROTOCOLS.md §1): routes and their handlers. Ours
// besides: GET /v1/predictions/{id}/webhooks (a prediction's webhook deliveries and attempts),
// POST there with {"delivery": "msg_..."} (send one again), POST
// /v1/webhooks/default/secret/rotate.
#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include "http/router.hpp"
#include "scheduler/api/rate_limiter.hpp"
#include "scheduler/auth.hpp"
#include "scheduler/config.hpp"
#include "scheduler/create_batcher.hpp"
#include "scheduler/prediction_watch.hpp"
#include "storage/database.hpp"
#include "webhook/address_guard.hpp"

namespace cogwheel::scheduler {

struct predictions_api {
  storage::database& db;
  create_batcher& batcher;
  prediction_watch& watch;
  authenticator& auth;
  const config& catalog;
  api::rate_limiter& create_limiter;
  api::rate_limiter& read_limiter;
  std::string public_url;                       // without trailing slash
  webhook::guard_options webhook_guard;         // webhook URLs refused at create (422)
  std::chrono::seconds secret_overlap{86'400};  // the previous secret signs this long
  int webhook_throttle_ms = 500;
  std::function<void()> webhooks_queued;  // after a commit that queued webhook events
};

// Registers every /v1 route. Until `slot` points at the API's parts (the database is being
// started and migrated), the routes answer 503 with Retry-After. `slot` must outlive the router.
void add_prediction_routes(http::router& routes, std::atomic<predictions_api*>& slot);

}  // namespace cogwheel::scheduler
