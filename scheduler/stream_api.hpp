#pragma once
// GET /v1/predictions/{id}/stream: Server-Sent Events of a prediction (urls.stream). Like
// Replicate's stream URLs it needs no token: the prediction id (26 random characters) is the
// capability, and the official clients send none. Resume with Last-Event-ID.
#include <atomic>

#include "http/router.hpp"
#include "scheduler/prediction_watch.hpp"
#include "scheduler/stream_hub.hpp"
#include "storage/database.hpp"

namespace cogwheel::scheduler {

struct stream_api {
  storage::database& db;
  prediction_watch& watch;
  stream_hub& hub;
  std::chrono::seconds keep_alive{15};      // a comment line this often while nothing happens
  std::chrono::seconds max_duration{3600};  // a stream ends after this; clients reconnect
};

void add_stream_routes(http::router& routes, std::atomic<stream_api*>& slot);

}  // namespace cogwheel::scheduler
