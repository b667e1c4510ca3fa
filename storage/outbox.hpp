#pragma once
// The webhook outbox (webhook_deliveries) and change notifications. Both are written inside the
// caller's transaction, so they exist exactly when the change that caused them committed.
#include <cstdint>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace cogwheel::storage {

struct delivery_new {
  std::string message_id;  // "msg_..." stable across retries
  std::string prediction_id;
  std::int64_t token_id = 0;
  std::string event;  // start | output | logs | completed
  std::string url;
  std::string payload;  // the exact bytes to send and sign
  // For a completed event: the prediction's pending output and logs deliveries that no process
  // is sending are superseded (no older snapshot goes out after completed was queued). Set when
  // the prediction's filter lets output or logs through.
  bool supersedes = false;
};

// The throttle of output and logs events (PROTOCOLS.md: at most one delivery per interval per
// prediction, coalesced so that the body carries the newest state).
inline constexpr int default_throttle_ms = 500;

// Queues webhook events. An output or logs event whose prediction already has one of those
// queued, not yet attempted and not being sent, to the same URL replaces that one's body (and
// keeps its message id); otherwise it is due `throttle_ms` after the prediction's previous output
// or logs delivery was due (or now). start and completed are due now.
void delivery_insert_many(pqxx::transaction_base& tx, const std::vector<delivery_new>& rows,
                          int throttle_ms = default_throttle_ms);

// `items` comma-separated, in as few payloads as fit NOTIFY's limit (one for any usual batch).
std::vector<std::string> notify_payloads(const std::vector<std::string>& items);
// The items of one such payload (empty items skipped).
std::vector<std::string> notify_items(const std::string& payload);
// NOTIFY on `channel` with each of notify_payloads(items).
void notify_batched(pqxx::transaction_base& tx, const char* channel,
                    const std::vector<std::string>& items);

// The NOTIFY channel on which every change of a prediction's state is announced: a comma-separated
// list of entries "<id>" or "<id>:<note>", where the note is the new status, or "cancel" for a
// cancel the API asked for (one notification per batch, split to fit NOTIFY's limit).
inline constexpr const char* prediction_channel = "cogwheel_predictions";
void prediction_notify_changed(pqxx::transaction_base& tx, const std::vector<std::string>& ids);
struct prediction_note {
  std::string id;
  std::string note;  // a status, or "cancel"
};
void prediction_notify_notes(pqxx::transaction_base& tx, const std::vector<prediction_note>& notes);
// The entries of a payload of prediction_channel (note "" when an entry has none).
std::vector<prediction_note> prediction_notes_parse(const std::string& payload);

}  // namespace cogwheel::storage
