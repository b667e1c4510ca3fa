#pragma once
// The predictions table: every SQL statement on it lives in predictions.cpp. Functions take the
// caller's transaction, so that a state change and its webhook events commit together.
#include <cstdint>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <vector>

namespace cogwheel::storage {

using micros = std::int64_t;  // microseconds since the Unix epoch, UTC

// A prediction as stored. JSON columns are carried as JSON text.
struct prediction_row {
  std::string id;
  std::int64_t token_id = 0;
  std::string model;       // owner/name
  std::string version_id;  // 64 hex
  std::optional<std::string> deployment;
  std::string source = "api";
  std::string status = "starting";
  std::string input_json = "null";
  std::string output_json = "null";
  std::string logs;
  std::optional<std::string> error;
  std::optional<std::string> error_code;
  std::optional<std::string> metrics_json;
  bool data_removed = false;
  micros created_at = 0;
  std::optional<micros> started_at, completed_at, deadline;
  std::optional<std::string> webhook;
  std::optional<std::vector<std::string>> webhook_events_filter;
};

struct prediction_new {
  std::string id;
  std::int64_t token_id = 0;
  std::string model;
  std::string version_id;
  std::optional<std::string> deployment;
  std::string input_json;
  std::optional<std::string> webhook;
  std::optional<std::vector<std::string>> webhook_events_filter;
  std::optional<micros> deadline;
  std::int64_t start_timeout_ms = 600'000;  // it must start within this (start_by)
  std::int64_t run_timeout_ms = 1'800'000;  // once started, it may run this long (run_by)
  std::optional<std::string> idempotency_key;
  std::optional<std::string> idempotency_sha256;  // 32 raw bytes of the request's fingerprint
};

enum class insert_outcome {
  created,   // a new row
  existing,  // the same idempotency key and fingerprint within 24 h: the first prediction
  idempotency_conflict,  // the same key with another fingerprint: nothing written
};
struct insert_result {
  insert_outcome outcome = insert_outcome::created;
  prediction_row row;  // the new or the existing prediction (empty on conflict)
};

// The version of each row the insert created (neither existing nor in conflict), in row order,
// repeats included.
std::vector<std::string> created_versions(const std::vector<insert_result>& results);

// The channel on which inserts announce new queued work: payload = comma-separated version ids,
// each once, one notification per batch.
inline constexpr const char* queue_channel = "cogwheel_queue";

// Inserts many predictions with one multi-row statement that also announces them on
// queue_channel; results are in the order of `rows`. Without idempotency keys that statement is
// all it runs, so through a pqxx::nontransaction the batch is one autocommitted statement.
std::vector<insert_result> prediction_insert_many(pqxx::transaction_base& tx,
                                                  const std::vector<prediction_new>& rows);

// A tenant's prediction by id; another tenant's id is not found.
std::optional<prediction_row> prediction_get(pqxx::transaction_base& tx, std::int64_t token_id,
                                             std::string_view id);

struct prediction_cursor {
  micros created_at = 0;
  std::string id;
};
struct prediction_list_params {
  std::int64_t token_id = 0;
  std::optional<micros> created_after;      // inclusive
  std::optional<micros> created_before;     // exclusive
  std::optional<prediction_cursor> after;   // next page: rows older than this one
  std::optional<prediction_cursor> before;  // previous page: rows newer than this one
  std::size_t limit = 100;
};
// Newest first. Returns up to limit + 1 rows so the caller can tell whether another page exists.
std::vector<prediction_row> prediction_list(pqxx::transaction_base& tx,
                                            const prediction_list_params& p);

// Cancels: a queued prediction (starting, not dispatched) becomes canceled at once; a dispatched
// or processing one gets cancel_requested_at (the dispatcher asks its container); a terminal one is
// unchanged. Returns the row afterwards and whether it changed, or nullopt when not found.
struct cancel_result {
  prediction_row row;
  bool canceled_now = false;      // status became canceled in this transaction
  bool cancel_requested = false;  // a container must be asked
};
std::optional<cancel_result> prediction_cancel(pqxx::transaction_base& tx, std::int64_t token_id,
                                               std::string_view id);

}  // namespace cogwheel::storage
