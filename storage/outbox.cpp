#include "storage/outbox.hpp"

#include <nlohmann/json.hpp>

#include "storage/prepared.hpp"

namespace cogwheel::storage {

void delivery_insert_many(pqxx::transaction_base& tx, const std::vector<delivery_new>& rows,
                          int throttle_ms) {
  if (rows.empty()) return;
  nlohmann::json batch = nlohmann::json::array();
  bool supersede = false, throttled = false;
  for (const auto& d : rows) {
    supersede = supersede || d.supersedes;
    throttled = throttled || d.event == "output" || d.event == "logs";
    batch.push_back({{"message_id", d.message_id},
                     {"prediction_id", d.prediction_id},
                     {"token_id", d.token_id},
                     {"event", d.event},
                     {"url", d.url},
                     {"payload", d.payload},
                     {"supersedes", d.supersedes}});
  }
  const std::string json = batch.dump();
  static const std::string recordset =
      "jsonb_to_recordset($1::jsonb) AS r(message_id text, prediction_id text, token_id bigint, "
      "event text, url text, payload text, supersedes boolean)";
  if (supersede) {
    exec_planned_sql(tx,
                     "UPDATE webhook_deliveries d SET state = 'superseded', finished_at = now(), "
                     "lease_owner = NULL, lease_expires_at = NULL FROM " +
                         recordset +
                         " WHERE r.supersedes AND d.prediction_id = r.prediction_id AND "
                         "d.state = 'pending' AND d.event IN ('output', 'logs') AND "
                         "(d.lease_owner IS NULL OR d.lease_expires_at < now())",
                     json);
  }
  // Coalescing: the newest body replaces the one still waiting. The message ids it returns are
  // those of the new events that were folded in.
  std::string folded = "[]";
  if (throttled) {
    auto r = exec_planned_sql(
        tx,
        "WITH n AS (SELECT * FROM " + recordset +
            " WHERE r.event IN ('output', 'logs')), "
            "f AS (UPDATE webhook_deliveries d SET payload = n.payload FROM n WHERE "
            "d.prediction_id = n.prediction_id AND d.url = n.url AND d.state = 'pending' AND "
            "d.attempts = 0 AND d.lease_owner IS NULL AND d.event IN ('output', 'logs') "
            "RETURNING n.message_id) SELECT coalesce(jsonb_agg(message_id), '[]') FROM f",
        json);
    folded = r[0][0].c_str();
  }
  exec_planned_sql(
      tx,
      "INSERT INTO webhook_deliveries (message_id, prediction_id, token_id, event, url, payload, "
      "due_at, next_attempt_at) SELECT r.message_id, r.prediction_id, r.token_id, r.event, r.url, "
      "r.payload, t.due, t.due FROM " +
          recordset +
          " CROSS JOIN LATERAL (SELECT CASE WHEN r.event IN ('output', 'logs') THEN "
          "greatest(now(), (SELECT max(e.due_at) FROM webhook_deliveries e WHERE "
          "e.prediction_id = r.prediction_id AND e.event IN ('output', 'logs')) + "
          "make_interval(secs => $3 / 1000.0)) ELSE now() END AS due) t "
          "WHERE NOT r.message_id IN (SELECT jsonb_array_elements_text($2::jsonb))",
      json, folded, throttle_ms);
}

std::vector<std::string> notify_payloads(const std::vector<std::string>& items) {
  constexpr std::size_t max_payload = 7900;  // NOTIFY payloads must stay under 8000 bytes
  std::vector<std::string> payloads;
  std::string payload;
  for (const auto& item : items) {
    if (!payload.empty() && payload.size() + item.size() + 1 > max_payload) {
      payloads.push_back(std::move(payload));
      payload.clear();
    }
    if (!payload.empty()) payload.push_back(',');
    payload += item;
  }
  if (!payload.empty()) payloads.push_back(std::move(payload));
  return payloads;
}

void notify_batched(pqxx::transaction_base& tx, const char* channel,
                    const std::vector<std::string>& items) {
  for (const auto& payload : notify_payloads(items)) {
    exec_prepared_sql(tx, "notify", "SELECT pg_notify($1, $2)", std::string(channel), payload);
  }
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

std::vector<std::string> notify_items(const std::string& payload) {
  std::vector<std::string> items;
  std::size_t start = 0;
  while (start < payload.size()) {
    auto comma = payload.find(',', start);
    if (comma == std::string::npos) comma = payload.size();
    if (comma > start) items.push_back(payload.substr(start, comma - start));
    start = comma + 1;
  }
  return items;
}

std::vector<prediction_note> prediction_notes_parse(const std::string& payload) {
  std::vector<prediction_note> out;
  for (auto& entry : notify_items(payload)) {
    const auto colon = entry.find(':');
    if (colon == std::string::npos) {
      out.push_back({std::move(entry), ""});
    } else {
      out.push_back({entry.substr(0, colon), entry.substr(colon + 1)});
    }
  }
  return out;
}

}  // namespace cogwheel::storage
