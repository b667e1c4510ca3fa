#include "storage/outbox.hpp"

#include <nlohmann/json.hpp>

#include "storage/prepared.hpp"

namespace cogwheel::storage {

void delivery_insert_many(pqxx::transaction_base& tx, const std::vector<delivery_new>& rows) {
  if (rows.empty()) return;
  nlohmann::json batch = nlohmann::json::array();
  for (const auto& d : rows) {
    batch.push_back({{"message_id", d.message_id},
                     {"prediction_id", d.prediction_id},
                     {"token_id", d.token_id},
                     {"event", d.event},
                     {"url", d.url},
                     {"payload", d.payload}});
  }
  tx.exec_params(
      "INSERT INTO webhook_deliveries (message_id, prediction_id, token_id, event, url, payload) "
      "SELECT r.message_id, r.prediction_id, r.token_id, r.event, r.url, r.payload "
      "FROM jsonb_to_recordset($1::jsonb) AS r(message_id text, prediction_id text, "
      "token_id bigint, event text, url text, payload text)",
      batch.dump());
}

void notify_batched(pqxx::transaction_base& tx, const char* channel,
                    const std::vector<std::string>& items) {
  constexpr std::size_t max_payload = 7900;  // NOTIFY payloads must stay under 8000 bytes
  std::string payload;
  auto flush = [&] {
    if (payload.empty()) return;
    exec_prepared_sql(tx, "notify", "SELECT pg_notify($1, $2)", std::string(channel), payload);
    payload.clear();
  };
  for (const auto& item : items) {
    if (payload.size() + item.size() + 1 > max_payload) flush();
    if (!payload.empty()) payload.push_back(',');
    payload += item;
  }
  flush();
}

void prediction_notify_changed(pqxx::transaction_base& tx, const std::vector<std::string>& ids) {
  notify_batched(tx, prediction_channel, ids);
}

void prediction_notify_notes(pqxx::transaction_base& tx,
                             const std::vector<prediction_note>& notes) {
  std::vector<std::string> entries;
  entries.reserve(notes.size());
  for (const auto& n : notes) entries.push_back(n.note.empty() ? n.id : n.id + ":" + n.note);
  notify_batched(tx, prediction_channel, entries);
}

std::vector<prediction_note> prediction_notes_parse(const std::string& payload) {
  std::vector<prediction_note> out;
  std::size_t start = 0;
  while (start < payload.size()) {
    auto comma = payload.find(',', start);
    if (comma == std::string::npos) comma = payload.size();
    if (comma > start) {
      const std::string entry = payload.substr(start, comma - start);
      const auto colon = entry.find(':');
      if (colon == std::string::npos) {
        out.push_back({entry, ""});
      } else {
        out.push_back({entry.substr(0, colon), entry.substr(colon + 1)});
      }
    }
    start = comma + 1;
  }
  return out;
}

}  // namespace cogwheel::storage
