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
};

void delivery_insert_many(pqxx::transaction_base& tx, const std::vector<delivery_new>& rows);

// NOTIFY on `channel` with `items` comma-separated, in as few notifications as fit NOTIFY's
// payload limit (one for any usual batch).
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
