#pragma once
// GET /health (the process is up) and GET /ready (the database is reachable and migrated).
#include <atomic>

#include "http/router.hpp"
#include "storage/database.hpp"

namespace cogwheel::scheduler {

// What the health routes look at; the composition root fills it as the service starts and stops.
struct service_state {
  std::atomic<storage::database*> db{nullptr};  // set once migrations ran
  std::atomic<bool> stopping{false};
};

void add_health_routes(http::router& routes, service_state& state);

}  // namespace cogwheel::scheduler
