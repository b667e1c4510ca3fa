#pragma once
// The webhook dispatcher's statements on webhook_deliveries, webhook_attempts and
// webhook_disabled_urls (the outbox inserts are in outbox.hpp). Every change of a delivery is
// conditional on its state and on the lease of the process that claimed it.
#include <chrono>
#include <cstdint>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "storage/tokens.hpp"  // micros

namespace cogwheel::storage {

struct delivery_claim_params {
  std::string owner;  // this process
  std::chrono::milliseconds lease{30'000};
  std::size_t limit = 64;
  bool fresh = true;              // never attempted (true) or retries (false)
  std::size_t per_endpoint = 32;  // at most this many of one endpoint...
  std::vector<std::pair<std::string, std::size_t>> in_flight;  // ...counting these in flight
};

struct delivery_claimed {
  std::int64_t id = 0;
  std::string message_id;
  std::string prediction_id;
  std::int64_t token_id = 0;
  std::string event;
  std::string url;
  std::string endpoint;
  std::string payload;
  int attempt = 0;                   // this attempt's number, from 1
  std::vector<std::string> secrets;  // the tenant's signing secrets: current, then previous
  bool disabled = false;             // the URL answered 410 for this tenant: not sent
};

// Claims due pending deliveries (FOR UPDATE SKIP LOCKED, oldest due first), each only when the
// prediction has no earlier pending delivery, within the per-endpoint limit; leases them to
// `owner` and counts the attempt.
std::vector<delivery_claimed> delivery_claim_due(pqxx::transaction_base& tx,
                                                 const delivery_claim_params& p);

// What became of one attempt.
struct delivery_outcome {
  std::int64_t id = 0;
  int attempt = 0;
  micros started_at = 0;
  std::optional<double> latency_ms;
  std::optional<int> status_code;
  std::string error;
  std::string excerpt;
  // The delivery's next state: delivered, failed, dropped, disabled, or pending again at
  // next_attempt_at. A failed output or logs delivery whose prediction has a completed one
  // queued is superseded instead of retried.
  std::string state;
  micros next_attempt_at = 0;
  bool disable_url = false;  // 410: the tenant's URL is disabled
};

// Records the attempts and moves the deliveries on, only where `owner` still holds the lease.
// Returns how many deliveries were moved.
std::size_t delivery_finish_many(pqxx::transaction_base& tx, const std::string& owner,
                                 const std::vector<delivery_outcome>& outcomes);

// Gives leases back without an attempt (shutdown): the attempt is uncounted.
void delivery_release(pqxx::transaction_base& tx, const std::string& owner,
                      const std::vector<std::int64_t>& ids);

struct attempt_row {
  int attempt = 0;
  micros started_at = 0;
  std::optional<double> latency_ms;
  std::optional<int> status_code;
  std::optional<std::string> error;
  std::optional<std::string> response_excerpt;
};
struct delivery_row {
  std::string message_id;
  std::string event;
  std::string url;
  std::string state;
  int attempts = 0;
  micros created_at = 0;
  std::optional<micros> next_attempt_at;  // while pending
  std::optional<micros> finished_at;
  std::optional<std::string> last_error;
  std::vector<attempt_row> attempt_log;
};

// A prediction's deliveries, oldest first, with their attempts; the token must own it.
std::vector<delivery_row> delivery_list(pqxx::transaction_base& tx, std::int64_t token_id,
                                        const std::string& prediction_id);

// Queues a delivery again, now, with its message id and body (its URL re-enabled when a 410 had
// disabled it). nullopt when the tenant's prediction has no such delivery.
std::optional<delivery_row> delivery_redeliver(pqxx::transaction_base& tx, std::int64_t token_id,
                                               const std::string& prediction_id,
                                               const std::string& message_id);

}  // namespace cogwheel::storage
