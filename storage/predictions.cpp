#include "storage/predictions.hpp"

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "storage/outbox.hpp"
#include "storage/prediction_columns.hpp"
#include "storage/prepared.hpp"

namespace cogwheel::storage {

namespace {

// Microseconds since the epoch of a timestamptz column, exactly (extract returns numeric).
#define US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"

}  // namespace

const char* const prediction_columns =
    "id, token_id, model, version_id, deployment, source, status, coalesce(input::text, 'null'), "
    "coalesce(output::text, 'null'), logs, error, error_code, metrics::text, data_removed, " US(
        "created_at") ", " US("started_at") ", " US("completed_at") ", " US(
        "deadline") ", webhook, array_to_json(webhook_events_filter)::text";

namespace {
template <class T>
std::optional<T> opt(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<T>();
}
}  // namespace

prediction_row prediction_from_row(const pqxx::row& r) {
  prediction_row p;
  p.id = r[0].as<std::string>();
  p.token_id = r[1].as<std::int64_t>();
  p.model = r[2].as<std::string>();
  p.version_id = r[3].as<std::string>();
  p.deployment = opt<std::string>(r[4]);
  p.source = r[5].as<std::string>();
  p.status = r[6].as<std::string>();
  p.input_json = r[7].as<std::string>();
  p.output_json = r[8].as<std::string>();
  p.logs = r[9].as<std::string>();
  p.error = opt<std::string>(r[10]);
  p.error_code = opt<std::string>(r[11]);
  p.metrics_json = opt<std::string>(r[12]);
  p.data_removed = r[13].as<bool>();
  p.created_at = r[14].as<micros>();
  p.started_at = opt<micros>(r[15]);
  p.completed_at = opt<micros>(r[16]);
  p.deadline = opt<micros>(r[17]);
  p.webhook = opt<std::string>(r[18]);
  if (!r[19].is_null()) {
    p.webhook_events_filter = nlohmann::json::parse(r[19].c_str()).get<std::vector<std::string>>();
  }
  return p;
}

namespace {

std::string hex(const std::string& raw) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 0xf]);
  }
  return out;
}

// One column of the insert batch as a PostgreSQL array literal: `{"a","b",NULL}` or `{1,2}`.
// Text elements are always quoted, with `"` and `\` escaped, so any text travels as it is.
class array_literal {
 public:
  explicit array_literal(std::size_t expected_size) {
    text_.reserve(expected_size);
    text_ += '{';
  }
  void text(std::string_view v) {
    separate();
    text_ += '"';
    for (char c : v) {
      if (c == '"' || c == '\\') text_ += '\\';
      text_ += c;
    }
    text_ += '"';
  }
  void maybe_text(const std::optional<std::string>& v) { v ? text(*v) : null(); }
  void number(std::int64_t v) {
    separate();
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    text_.append(buf, r.ptr);
  }
  void maybe_number(const std::optional<std::int64_t>& v) { v ? number(*v) : null(); }
  void null() {
    separate();
    text_ += "NULL";
  }
  std::string done() {
    text_ += '}';
    return std::move(text_);
  }

 private:
  void separate() {
    if (text_.size() > 1) text_ += ',';
  }
  std::string text_;
};

// The batch's columns, in the order of insert_sql's $3..$15.
struct batch_columns {
  std::string id, token_id, model, version_id, deployment, input, webhook, events_filter,
      deadline_us, start_timeout_ms, run_timeout_ms, idempotency_key, idempotency_hex;
};

batch_columns batch_arrays(const std::vector<prediction_new>& rows) {
  const std::size_t n = rows.size();
  std::size_t input_size = 0, webhook_size = 0;
  for (const auto& r : rows) {
    input_size += r.input_json.size() + 8;
    webhook_size += r.webhook.value_or("").size() + 8;
  }
  array_literal id(n * 30), token_id(n * 8), model(n * 32), version_id(n * 68), deployment(n * 8),
      input(input_size * 5 / 4), webhook(webhook_size), events_filter(n * 8), deadline_us(n * 8),
      start_timeout_ms(n * 10), run_timeout_ms(n * 10), idempotency_key(n * 8),
      idempotency_hex(n * 8);
  for (const auto& p : rows) {
    id.text(p.id);
    token_id.number(p.token_id);
    model.text(p.model);
    version_id.text(p.version_id);
    deployment.maybe_text(p.deployment);
    input.text(p.input_json);
    webhook.maybe_text(p.webhook);
    if (p.webhook_events_filter) {
      // Event names are start, output, logs, completed: the list travels comma-joined.
      std::string joined;
      for (const auto& e : *p.webhook_events_filter) {
        if (!joined.empty()) joined += ',';
        joined += e;
      }
      events_filter.text(joined);
    } else {
      events_filter.null();
    }
    deadline_us.maybe_number(p.deadline);
    start_timeout_ms.number(p.start_timeout_ms);
    run_timeout_ms.number(p.run_timeout_ms);
    idempotency_key.maybe_text(p.idempotency_key);
    if (p.idempotency_key) {
      idempotency_hex.text(hex(p.idempotency_sha256.value_or("")));
    } else {
      idempotency_hex.null();
    }
  }
  return {id.done(),
          token_id.done(),
          model.done(),
          version_id.done(),
          deployment.done(),
          input.done(),
          webhook.done(),
          events_filter.done(),
          deadline_us.done(),
          start_timeout_ms.done(),
          run_timeout_ms.done(),
          idempotency_key.done(),
          idempotency_hex.done()};
}

// One statement for the whole batch: the rows travel as one array parameter per column
// (PostgreSQL reads arrays with less work than a JSON document of the rows: bench/README.md,
// "What PostgreSQL spends on an insert"), and the new queued work is announced on queue_channel
// ($1, one notification per payload of $2). Only what the database decides comes back
// (created_at); the rest of each row is what was sent. With `on_conflict`, a row whose idempotency
// key is taken is skipped here and resolved afterwards; a batch without keys leaves the clause
// out, since it makes every row a speculative insertion (one more lock and one more WAL record
// each).
std::string insert_sql(std::string_view on_conflict) {
  return std::string(R"(
WITH announced AS (
  SELECT count(pg_notify($1, payload)) AS n FROM json_array_elements_text($2::json) AS payload
), inserted AS (
  INSERT INTO predictions (id, token_id, model, version_id, deployment, input, webhook,
                           webhook_events_filter, deadline, start_by, run_timeout_ms,
                           idempotency_key, idempotency_sha256)
  SELECT r.id, r.token_id, r.model, r.version_id, r.deployment, r.input::jsonb, r.webhook,
         string_to_array(r.events_filter, ','),
         CASE WHEN r.deadline_us IS NULL THEN NULL
              ELSE timestamptz 'epoch' + r.deadline_us * interval '1 microsecond' END,
         now() + r.start_timeout_ms * interval '1 millisecond', r.run_timeout_ms,
         r.idempotency_key, decode(r.idempotency_hex, 'hex')
  FROM unnest($3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[],
              $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[], $14::text[],
              $15::text[])
       WITH ORDINALITY AS r(id, token_id, model, version_id, deployment, input, webhook,
                            events_filter, deadline_us, start_timeout_ms, run_timeout_ms,
                            idempotency_key, idempotency_hex, ord)
  ORDER BY r.ord
  )") + std::string(on_conflict) +
         R"(
  RETURNING id, )" +
         US("created_at") + R"( AS created_us
)
SELECT inserted.id, inserted.created_us FROM inserted CROSS JOIN announced)";
}

const std::string insert_keyed_sql = insert_sql(
    "ON CONFLICT (token_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING");
const std::string insert_unkeyed_sql = insert_sql("");

// The row as stored by insert_sql: what was sent, as the column defaults complete it.
prediction_row inserted_row(const prediction_new& p, micros created_at) {
  prediction_row r;
  r.id = p.id;
  r.token_id = p.token_id;
  r.model = p.model;
  r.version_id = p.version_id;
  r.deployment = p.deployment;
  r.input_json = p.input_json;
  r.created_at = created_at;
  r.deadline = p.deadline;
  r.webhook = p.webhook;
  r.webhook_events_filter = p.webhook_events_filter;
  return r;
}

// The announcement of a batch: its versions, each once.
std::string announcement(const std::vector<prediction_new>& rows) {
  std::vector<std::string> versions;
  versions.reserve(rows.size());
  for (const auto& r : rows) versions.push_back(r.version_id);
  std::sort(versions.begin(), versions.end());
  versions.erase(std::unique(versions.begin(), versions.end()), versions.end());
  return nlohmann::json(notify_payloads(versions)).dump();
}

constexpr std::int64_t idempotency_window_us = 24LL * 3600 * 1'000'000;

}  // namespace

std::vector<insert_result> prediction_insert_many(pqxx::transaction_base& tx,
                                                  const std::vector<prediction_new>& rows) {
  std::vector<insert_result> results(rows.size());
  if (rows.empty()) return results;

  std::unordered_map<std::string_view, std::size_t> index_of;
  for (std::size_t i = 0; i < rows.size(); ++i) index_of.emplace(rows[i].id, i);
  std::vector<bool> done(rows.size(), false);
  auto insert = [&](const std::vector<prediction_new>& some) {
    const bool keyed = std::any_of(some.begin(), some.end(), [](const prediction_new& p) {
      return p.idempotency_key.has_value();
    });
    auto c = batch_arrays(some);
    return exec_prepared_sql(tx, keyed ? "prediction_insert_keyed" : "prediction_insert_unkeyed",
                             keyed ? insert_keyed_sql : insert_unkeyed_sql,
                             std::string(queue_channel), announcement(some), c.id, c.token_id,
                             c.model, c.version_id, c.deployment, c.input, c.webhook,
                             c.events_filter, c.deadline_us, c.start_timeout_ms, c.run_timeout_ms,
                             c.idempotency_key, c.idempotency_hex);
  };
  for (const auto& r : insert(rows)) {
    const auto i = index_of.at(std::string_view(r[0].c_str(), r[0].size()));
    results[i] = {insert_outcome::created, inserted_row(rows[i], r[1].as<micros>())};
    done[i] = true;
  }

  // Rows skipped for a taken idempotency key: the same request again returns the first prediction;
  // another request under the same key is a conflict; a key older than the window is released.
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (done[i]) continue;
    const auto& p = rows[i];
    auto existing = tx.exec_params(
        std::string("SELECT ") + prediction_columns +
            ", encode(idempotency_sha256, 'hex') FROM predictions WHERE token_id = $1 AND "
            "idempotency_key = $2",
        p.token_id, *p.idempotency_key);
    if (existing.empty()) {
      throw std::logic_error("prediction " + p.id + " was neither inserted nor found");
    }
    auto row = prediction_from_row(existing[0]);
    const bool same = existing[0][20].as<std::string>() == hex(p.idempotency_sha256.value_or(""));
    const bool expired =
        row.created_at < (tx.exec1("SELECT " US("now()"))[0].as<micros>() - idempotency_window_us);
    if (expired) {
      tx.exec_params(
          "UPDATE predictions SET idempotency_key = NULL, idempotency_sha256 = NULL WHERE id = $1",
          row.id);
      auto again = insert({p});
      results[i] = {insert_outcome::created, inserted_row(p, again.at(0)[1].as<micros>())};
    } else if (same) {
      results[i] = {insert_outcome::existing, std::move(row)};
    } else {
      results[i] = {insert_outcome::idempotency_conflict, {}};
    }
  }
  return results;
}

std::vector<std::string> created_versions(const std::vector<insert_result>& results) {
  std::vector<std::string> versions;
  for (const auto& r : results) {
    if (r.outcome == insert_outcome::created) versions.push_back(r.row.version_id);
  }
  return versions;
}

std::optional<prediction_row> prediction_get(pqxx::transaction_base& tx, std::int64_t token_id,
                                             std::string_view id) {
  static const std::string sql = std::string("SELECT ") + prediction_columns +
                                 " FROM predictions WHERE token_id = $1 AND id = $2";
  auto r = exec_prepared_sql(tx, "prediction_get", sql, token_id, std::string(id));
  if (r.empty()) return std::nullopt;
  return prediction_from_row(r[0]);
}

std::vector<prediction_row> prediction_list(pqxx::transaction_base& tx,
                                            const prediction_list_params& p) {
  const bool backward = p.before.has_value();
  const auto& cursor = backward ? p.before : p.after;
  std::string sql = std::string("SELECT ") + prediction_columns +
                    " FROM predictions WHERE token_id = $1"
                    " AND ($2::bigint IS NULL OR created_at >= timestamptz 'epoch' + $2 * interval "
                    "'1 microsecond')"
                    " AND ($3::bigint IS NULL OR created_at < timestamptz 'epoch' + $3 * interval "
                    "'1 microsecond')";
  if (cursor) {
    sql += backward ? " AND (created_at, id) > " : " AND (created_at, id) < ";
    sql += "(timestamptz 'epoch' + $4 * interval '1 microsecond', $5)";
  } else {
    sql += " AND $4::bigint IS NULL AND $5::text IS NULL";
  }
  sql += backward ? " ORDER BY created_at, id" : " ORDER BY created_at DESC, id DESC";
  sql += " LIMIT $6";
  auto result = tx.exec_params(sql, p.token_id, p.created_after, p.created_before,
                               cursor ? std::optional<micros>(cursor->created_at) : std::nullopt,
                               cursor ? std::optional<std::string>(cursor->id) : std::nullopt,
                               static_cast<std::int64_t>(p.limit + 1));
  std::vector<prediction_row> rows;
  rows.reserve(result.size());
  for (const auto& r : result) rows.push_back(prediction_from_row(r));
  if (backward) std::reverse(rows.begin(), rows.end());
  return rows;
}

std::optional<cancel_result> prediction_cancel(pqxx::transaction_base& tx, std::int64_t token_id,
                                               std::string_view id) {
  const std::string sid(id);
  auto queued = tx.exec_params(
      std::string("UPDATE predictions SET status = 'canceled', completed_at = now(), "
                  "updated_at = now(), metrics = jsonb_build_object('total_time', "
                  "extract(epoch FROM now() - created_at)::float8) "
                  "WHERE token_id = $1 AND id = $2 AND status = 'starting' AND "
                  "dispatched_at IS NULL RETURNING ") +
          prediction_columns,
      token_id, sid);
  if (!queued.empty()) return cancel_result{prediction_from_row(queued[0]), true, false};
  auto running = tx.exec_params(
      std::string("UPDATE predictions SET cancel_requested_at = coalesce(cancel_requested_at, "
                  "now()), updated_at = now() WHERE token_id = $1 AND id = $2 AND status IN "
                  "('starting', 'processing') RETURNING ") +
          prediction_columns,
      token_id, sid);
  if (!running.empty()) return cancel_result{prediction_from_row(running[0]), false, true};
  auto row = prediction_get(tx, token_id, sid);
  if (!row) return std::nullopt;
  return cancel_result{std::move(*row), false, false};
}

#undef US

}  // namespace cogwheel::storage
