#include "storage/deliveries.hpp"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "storage/prepared.hpp"

namespace cogwheel::storage {

namespace {

// Microseconds since the epoch of a timestamptz expression, exactly.
#define US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"
#define FROM_US(v) "(timestamptz 'epoch' + (" v ") * interval '1 microsecond')"

std::string id_array(const std::vector<std::int64_t>& ids) {
  std::string a = "{";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) a += ',';
    a += std::to_string(ids[i]);
  }
  return a + "}";
}

template <class T>
std::optional<T> opt(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<T>();
}

// The candidates: due, not leased (or the lease lapsed), not behind an earlier pending delivery
// of the same prediction; oldest due first.
// Fresh ones and retries by their own index; endpoints at their limit are left out. Read without
// locks: only the ones chosen are locked (SKIP LOCKED), by the lease statement, which checks
// again that they are still free.
#define CLAIM_CANDIDATES(attempts)                                                             \
  "SELECT d.id, d.endpoint FROM webhook_deliveries d WHERE d.state = 'pending' AND " attempts  \
  " AND d.next_attempt_at <= now() AND (d.lease_expires_at IS NULL OR d.lease_expires_at < "   \
  "now()) AND d.endpoint <> ALL($2::text[]) AND NOT EXISTS (SELECT 1 FROM webhook_deliveries " \
  "e WHERE e.prediction_id = d.prediction_id AND e.state = 'pending' AND e.id < d.id) ORDER "  \
  "BY d.next_attempt_at, d.id LIMIT $1"
const char* const claim_fresh_sql = CLAIM_CANDIDATES("d.attempts = 0");
const char* const claim_retry_sql = CLAIM_CANDIDATES("d.attempts > 0");

// A text[] literal of endpoints ("https://host:port" never holds a quote or a backslash after
// the URL checks, but they are escaped anyway).
std::string text_array(const std::vector<std::string>& items) {
  std::string a = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) a += ',';
    a += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') a += '\\';
      a += c;
    }
    a += '"';
  }
  return a + "}";
}

const char* const claim_lease_sql =
    "UPDATE webhook_deliveries d SET lease_owner = $1, lease_expires_at = now() + $2 * "
    "interval '1 millisecond', attempts = d.attempts + 1 FROM api_tokens t WHERE d.id IN "
    "(SELECT c.id FROM webhook_deliveries c WHERE c.id = ANY($3::bigint[]) AND c.state = "
    "'pending' AND (c.lease_expires_at IS NULL OR c.lease_expires_at < now()) ORDER BY "
    "c.next_attempt_at, c.id LIMIT $4 FOR UPDATE SKIP LOCKED) AND t.id = d.token_id "
    "RETURNING d.id, d.message_id, "
    "d.prediction_id, d.token_id, d.event, d.url, d.endpoint, d.payload, d.attempts, "
    "t.webhook_secret, CASE WHEN t.previous_secret_until > now() THEN "
    "t.previous_webhook_secret END, EXISTS (SELECT 1 FROM webhook_disabled_urls u WHERE "
    "u.token_id = d.token_id AND u.url = d.url)";

const char* const finish_sql =
    "WITH r AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS r(id bigint, attempt integer, "
    "started_us bigint, latency_ms float8, status_code integer, error text, excerpt text, "
    "state text, next_us bigint, disable_url boolean)), "
    "n AS (SELECT r.*, d.token_id, d.url, CASE WHEN r.state = 'pending' AND d.event IN "
    "('output', 'logs') AND EXISTS (SELECT 1 FROM webhook_deliveries c WHERE c.prediction_id = "
    "d.prediction_id AND c.event = 'completed') THEN 'superseded' ELSE r.state END AS st "
    "FROM r JOIN webhook_deliveries d ON d.id = r.id WHERE d.state = 'pending' AND "
    "d.lease_owner = $1), "
    "a AS (INSERT INTO webhook_attempts (delivery_id, attempt, started_at, latency_ms, "
    "status_code, error, response_excerpt) SELECT n.id, n.attempt, " FROM_US("n.started_us") ", "
    "n.latency_ms, n.status_code, nullif(n.error, ''), nullif(n.excerpt, '') FROM n "
    "ON CONFLICT (delivery_id, attempt) DO NOTHING), "
    "x AS (INSERT INTO webhook_disabled_urls (token_id, url) SELECT n.token_id, n.url FROM n "
    "WHERE n.disable_url ON CONFLICT DO NOTHING) "
    "UPDATE webhook_deliveries d SET state = n.st, next_attempt_at = CASE WHEN n.st = "
    "'pending' THEN " FROM_US("n.next_us") " ELSE d.next_attempt_at END, finished_at = CASE "
    "WHEN n.st = 'pending' THEN NULL ELSE now() END, lease_owner = NULL, lease_expires_at = "
    "NULL, last_error = CASE WHEN n.st = 'delivered' THEN NULL ELSE coalesce(nullif(n.error, "
    "''), 'HTTP ' || n.status_code) END FROM n WHERE d.id = n.id AND d.state = 'pending' AND "
    "d.lease_owner = $1";

const char* const delivery_columns =
    "d.id, d.message_id, d.event, d.url, d.state, d.attempts, " US("d.created_at") ", "
    "CASE WHEN d.state = 'pending' THEN " US("d.next_attempt_at") " END, " US("d.finished_at")
    ", d.last_error";

delivery_row delivery_from(const pqxx::row& r) {
  delivery_row d;
  d.message_id = r[1].as<std::string>();
  d.event = r[2].as<std::string>();
  d.url = r[3].as<std::string>();
  d.state = r[4].as<std::string>();
  d.attempts = r[5].as<int>();
  d.created_at = r[6].as<micros>();
  d.next_attempt_at = opt<micros>(r[7]);
  d.finished_at = opt<micros>(r[8]);
  d.last_error = opt<std::string>(r[9]);
  return d;
}

}  // namespace

std::vector<delivery_claimed> delivery_claim_due(pqxx::transaction_base& tx,
                                                 const delivery_claim_params& p) {
  std::vector<delivery_claimed> out;
  if (p.limit == 0) return out;
  // More candidates than wanted: some may belong to endpoints already at their limit.
  std::map<std::string, std::size_t> busy(p.in_flight.begin(), p.in_flight.end());
  std::vector<std::string> full;
  for (const auto& [endpoint, n] : busy) {
    if (n >= p.per_endpoint) full.push_back(endpoint);
  }
  // Candidates by an index scan in the claim's order, never by a bitmap scan. Every lease and
  // every finished attempt leaves a dead row version behind in the due indexes until VACUUM comes
  // (autovacuum looks at a database once a minute at most): an index scan marks the dead entries it
  // meets, so the next claim steps over them, while a bitmap scan visits their heap pages again at
  // every claim. The planner chose the bitmap scan when its statistics lagged behind the table's
  // growth: 150-225 ms claims over 22,525 entries for 84 live rows, and webhook latencies of
  // seconds (bench/README.md, "Dead index entries and the claim's plan").
  tx.exec("SET LOCAL enable_bitmapscan = off");
  auto candidates = exec_planned_sql(tx, p.fresh ? claim_fresh_sql : claim_retry_sql,
                                     static_cast<long>(p.limit * 4), text_array(full));
  std::vector<std::int64_t> chosen;
  // Every candidate within its endpoint's limit; the lease takes the first `limit` of them that
  // no concurrent claim holds (a subset stays within the limits).
  for (const auto& row : candidates) {
    auto& n = busy[row[1].as<std::string>()];
    if (n >= p.per_endpoint) continue;
    ++n;
    chosen.push_back(row[0].as<std::int64_t>());
  }
  if (chosen.empty()) return out;
  auto rows = exec_planned_sql(tx, claim_lease_sql, p.owner, static_cast<long>(p.lease.count()),
                               id_array(chosen), static_cast<long>(p.limit));
  for (const auto& r : rows) {
    delivery_claimed d;
    d.id = r[0].as<std::int64_t>();
    d.message_id = r[1].as<std::string>();
    d.prediction_id = r[2].as<std::string>();
    d.token_id = r[3].as<std::int64_t>();
    d.event = r[4].as<std::string>();
    d.url = r[5].as<std::string>();
    d.endpoint = r[6].as<std::string>();
    d.payload = r[7].as<std::string>();
    d.attempt = r[8].as<int>();
    d.secrets.push_back(r[9].as<std::string>());
    if (!r[10].is_null()) d.secrets.push_back(r[10].as<std::string>());
    d.disabled = r[11].as<bool>();
    out.push_back(std::move(d));
  }
  // Oldest due first, as claimed (RETURNING has no order).
  std::map<std::int64_t, std::size_t> rank;
  for (std::size_t i = 0; i < chosen.size(); ++i) rank[chosen[i]] = i;
  std::sort(out.begin(), out.end(),
            [&](const auto& a, const auto& b) { return rank[a.id] < rank[b.id]; });
  return out;
}

std::size_t delivery_finish_many(pqxx::transaction_base& tx, const std::string& owner,
                                 const std::vector<delivery_outcome>& outcomes) {
  if (outcomes.empty()) return 0;
  nlohmann::json batch = nlohmann::json::array();
  for (const auto& o : outcomes) {
    batch.push_back({{"id", o.id},
                     {"attempt", o.attempt},
                     {"started_us", o.started_at},
                     {"latency_ms", o.latency_ms ? nlohmann::json(*o.latency_ms) : nullptr},
                     {"status_code", o.status_code ? nlohmann::json(*o.status_code) : nullptr},
                     {"error", o.error},
                     {"excerpt", o.excerpt},
                     {"state", o.state},
                     {"next_us", o.next_attempt_at},
                     {"disable_url", o.disable_url}});
  }
  // Response excerpts are whatever the receiver sent: invalid UTF-8 is replaced, not refused.
  const auto json = batch.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  auto r = exec_planned_sql(tx, finish_sql, owner, json);
  return static_cast<std::size_t>(r.affected_rows());
}

void delivery_release(pqxx::transaction_base& tx, const std::string& owner,
                      const std::vector<std::int64_t>& ids) {
  if (ids.empty()) return;
  tx.exec_params(
      "UPDATE webhook_deliveries SET lease_owner = NULL, lease_expires_at = NULL, attempts = "
      "greatest(attempts - 1, 0) WHERE id = ANY($2::bigint[]) AND lease_owner = $1 AND "
      "state = 'pending'",
      owner, id_array(ids));
}

std::vector<delivery_row> delivery_list(pqxx::transaction_base& tx, std::int64_t token_id,
                                        const std::string& prediction_id) {
  auto rows = tx.exec_params(std::string("SELECT ") + delivery_columns +
                                 " FROM webhook_deliveries d WHERE d.prediction_id = $1 AND "
                                 "d.token_id = $2 ORDER BY d.id",
                             prediction_id, token_id);
  std::vector<delivery_row> out;
  std::map<std::int64_t, std::size_t> index;
  for (const auto& r : rows) {
    index[r[0].as<std::int64_t>()] = out.size();
    out.push_back(delivery_from(r));
  }
  if (out.empty()) return out;
  auto attempts = tx.exec_params(
      "SELECT a.delivery_id, a.attempt, " US("a.started_at") ", a.latency_ms, a.status_code, "
      "a.error, a.response_excerpt FROM webhook_attempts a JOIN webhook_deliveries d ON "
      "d.id = a.delivery_id WHERE d.prediction_id = $1 AND d.token_id = $2 "
      "ORDER BY a.delivery_id, a.attempt",
      prediction_id, token_id);
  for (const auto& r : attempts) {
    attempt_row a;
    a.attempt = r[1].as<int>();
    a.started_at = r[2].as<micros>();
    a.latency_ms = opt<double>(r[3]);
    a.status_code = opt<int>(r[4]);
    a.error = opt<std::string>(r[5]);
    a.response_excerpt = opt<std::string>(r[6]);
    out[index.at(r[0].as<std::int64_t>())].attempt_log.push_back(std::move(a));
  }
  return out;
}

std::optional<delivery_row> delivery_redeliver(pqxx::transaction_base& tx, std::int64_t token_id,
                                               const std::string& prediction_id,
                                               const std::string& message_id) {
  auto r = tx.exec_params(
      std::string("UPDATE webhook_deliveries d SET state = 'pending', next_attempt_at = now(), "
                  "finished_at = NULL, last_error = NULL WHERE d.prediction_id = $1 AND "
                  "d.token_id = $2 AND d.message_id = $3 AND (d.state <> 'pending' OR "
                  "d.lease_owner IS NULL) RETURNING ") +
          delivery_columns,
      prediction_id, token_id, message_id);
  if (r.empty()) {
    // Already pending and being sent: nothing to do but show it.
    auto same = tx.exec_params(std::string("SELECT ") + delivery_columns +
                                   " FROM webhook_deliveries d WHERE d.prediction_id = $1 AND "
                                   "d.token_id = $2 AND d.message_id = $3",
                               prediction_id, token_id, message_id);
    if (same.empty()) return std::nullopt;
    return delivery_from(same[0]);
  }
  tx.exec_params(
      "DELETE FROM webhook_disabled_urls u USING webhook_deliveries d WHERE d.message_id = $1 "
      "AND u.token_id = d.token_id AND u.url = d.url",
      message_id);
  return delivery_from(r[0]);
}

}  // namespace cogwheel::storage
