#pragma once
// The webhook events a prediction's change queues in the outbox (storage/outbox.hpp), in the
// change's own transaction: one delivery per event that the prediction's filter lets through, the
// body being the prediction as GET returns it. A change with output and logs both new queues one
// delivery (one snapshot carries both); completed queues no older snapshot beside it and
// supersedes the output and logs deliveries still waiting. A change that both starts and ends the
// prediction gives start the body of the prediction as it started (processing, no output yet).
#include <set>
#include <string>
#include <vector>

#include "storage/outbox.hpp"
#include "storage/predictions.hpp"

namespace cogwheel::scheduler {

std::vector<storage::delivery_new> webhook_deliveries_for(const storage::prediction_row& row,
                                                          const std::set<std::string>& events,
                                                          const std::string& public_url);

}  // namespace cogwheel::scheduler
