#include "storage/outbox.hpp"

#include <nlohmann/json.hpp>

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

void prediction_notify_changed(pqxx::transaction_base& tx, const std::vector<std::string>& ids) {
  constexpr std::size_t max_payload = 7900;  // NOTIFY payloads must stay under 8000 bytes
  std::string payload;
  auto flush = [&] {
    if (payload.empty()) return;
    tx.exec_params("SELECT pg_notify($1, $2)", std::string(prediction_channel), payload);
    payload.clear();
  };
  for (const auto& id : ids) {
    if (payload.size() + id.size() + 1 > max_payload) flush();
    if (!payload.empty()) payload.push_back(',');
    payload += id;
  }
  flush();
}

}  // namespace cogwheel::storage
