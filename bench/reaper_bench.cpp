// The reaper's cost on a large table: 1,000,000 terminal and 100,000 live predictions (by default),
// each statement the reaper runs per round timed (200 calls: mean, p50, p99) and its plan captured
// with auto_explain (EXPLAIN ANALYZE, buffers, nested statements), in two states: steady (nothing
// due) and busy (more than a batch of 500 due for every lookup).
//   cogwheel_reaper_bench [DATABASE_URL] [--terminal N] [--live N] [--calls N]
// The database must be empty of predictions (bench/reaper.sh gives it a throwaway one): the bench
// migrates it, fills it and leaves the rows there. Blocking libpqxx code on one connection.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "storage/migrator.hpp"
#include "storage/reaper.hpp"

namespace {

using namespace cogwheel;
using clock_type = std::chrono::steady_clock;

// The reaper's defaults (scheduler/reaper.hpp, reaper_options).
constexpr std::size_t batch = 500;
constexpr std::int64_t data_retention_ms = 3'600'000;         // 1 h
constexpr std::int64_t row_retention_ms = 30LL * 86'400'000;  // 30 days
constexpr std::int64_t leader_ttl_ms = 15'000;
constexpr const char* flush_marker = "SELECT 'reaper bench: flush auto_explain'";

struct settings {
  std::string url;
  std::int64_t terminal = 1'000'000;
  std::int64_t live = 100'000;
  int calls = 200;
};

// Collects the server's notices (auto_explain's plans) while `on`; never prints them.
struct notices : pqxx::errorhandler {
  bool on = false;
  std::vector<std::string> received;
  explicit notices(pqxx::connection_base& c) : pqxx::errorhandler(c) {}
  bool operator()(const char msg[]) noexcept override {
    if (!on) return false;
    try {
      received.emplace_back(msg);
    } catch (...) {
    }
    return false;
  }
};

double ms_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

void session(pqxx::connection& conn, const std::string& sql) {
  pqxx::nontransaction tx(conn);
  tx.exec(sql);
}

std::string scalar(pqxx::connection& conn, const std::string& sql) {
  pqxx::nontransaction tx(conn);
  auto r = tx.exec1(sql);
  return r[0].is_null() ? "" : r[0].as<std::string>();
}

// id of the n-th row: hexadecimal digits are inside the id alphabet [0-9a-hjkmnp-tv-z], and the
// fixed width keeps text order equal to numeric order (to creation order, like real ids).
std::string id_sql(const std::string& n) {
  return "lpad(to_hex(" + n + "), 26, '0')";
}

// ---- the data -------------------------------------------------------------------------------

// Terminal rows n = 1..T completed evenly over the last 72 hours (up to a minute ago); data present
// only for the last 45 minutes (older ones had it removed by retention), so that nothing crosses
// the 1 h data retention while the bench runs. Live rows n = T+k, k = 1..L, created over the last
// 30 minutes: k % 10 < 8 queued, 8 dispatched, 9 processing; a third with a deadline, every
// timeout and lease hours ahead. Every 7th row has a webhook and its delivered deliveries.
void fill(pqxx::connection& conn, const settings& s) {
  const std::string T = std::to_string(s.terminal), L = std::to_string(s.live);
  pqxx::work tx(conn);
  const auto token =
      tx.exec1(
            "INSERT INTO api_tokens (name, token_sha256, token_hint, webhook_secret) "
            "VALUES ('reaper-bench', sha256('cogwheel reaper bench'::bytea), "
            "'r8_bench', 'whsec_cmVhcGVyYmVuY2hyZWFwZXJiZW5jaA==') RETURNING id")[0]
          .as<std::int64_t>();
  const auto model =
      tx.exec1("INSERT INTO models (owner, name) VALUES ('bench', 'echo') RETURNING id")[0]
          .as<std::int64_t>();
  const auto version = tx.exec_params1(
                             "INSERT INTO versions (id, model_id) VALUES "
                             "(encode(sha256('bench/echo v1'::bytea), 'hex'), $1) RETURNING id",
                             model)[0]
                           .as<std::string>();
  tx.exec_params("UPDATE models SET latest_version_id = $1 WHERE id = $2", version, model);

  tx.exec_params(
      "INSERT INTO predictions (id, token_id, model, version_id, status, input, output, logs, "
      "error, error_code, metrics, data_removed, created_at, started_at, completed_at, webhook, "
      "dispatched_at, container_id, attempt, updated_at, start_by, run_timeout_ms, run_by) "
      "SELECT " +
          id_sql("g.n") +
          ", $1, 'bench/echo', $2, s.status, "
          "CASE WHEN s.keep THEN jsonb_build_object('prompt', 'bench ' || g.n) END, "
          "CASE WHEN s.keep AND s.status = 'succeeded' THEN to_jsonb('ok ' || g.n) END, "
          "CASE WHEN s.keep THEN 'setup\npredicting\ndone\n' ELSE '' END, "
          "CASE WHEN s.status = 'failed' THEN 'E1000: bench failure' END, "
          "CASE WHEN s.status = 'failed' THEN 'E1000' END, "
          "CASE WHEN s.status <> 'aborted' THEN '{\"predict_time\": 1.5}'::jsonb END, "
          "NOT s.keep, t.done - interval '2 seconds', "
          "CASE WHEN s.status <> 'aborted' THEN t.done - interval '1.5 seconds' END, t.done, "
          "CASE WHEN g.n % 7 = 0 THEN 'https://hooks.example.com/bench' END, "
          "CASE WHEN s.status <> 'aborted' THEN t.done - interval '1.9 seconds' END, "
          "CASE WHEN s.status <> 'aborted' THEN 'http://127.0.0.1:' || (5000 + g.n % 8) END, "
          "CASE WHEN s.status <> 'aborted' THEN 1 ELSE 0 END, t.done, "
          "t.done + interval '5 minutes', 1800000, "
          "CASE WHEN s.status <> 'aborted' THEN t.done + interval '30 minutes' END "
          "FROM generate_series(1, " +
          T +
          ") g(n) "
          "CROSS JOIN LATERAL (SELECT now() - interval '1 minute' - interval '72 hours' * ((" +
          T + " - g.n)::float8 / " + T +
          ") AS done) t "
          "CROSS JOIN LATERAL (SELECT CASE WHEN g.n % 100 < 90 THEN 'succeeded' "
          "WHEN g.n % 100 < 96 THEN 'failed' WHEN g.n % 100 < 99 THEN 'canceled' "
          "ELSE 'aborted' END AS status, t.done > now() - interval '45 minutes' AS keep) s",
      token, version);

  tx.exec_params(
      "INSERT INTO predictions (id, token_id, model, version_id, status, input, created_at, "
      "started_at, deadline, webhook, dispatched_at, container_id, attempt, lease_owner, "
      "lease_expires_at, updated_at, start_by, run_timeout_ms, run_by) "
      "SELECT " +
          id_sql(T + " + g.k") +
          ", $1, 'bench/echo', $2, CASE WHEN g.k % 10 = 9 THEN 'processing' ELSE 'starting' END, "
          "jsonb_build_object('prompt', 'bench ' || g.k), t.created, "
          "CASE WHEN g.k % 10 = 9 THEN t.created + interval '1 second' END, "
          "CASE WHEN g.k % 3 = 0 THEN now() + interval '3 hours' END, "
          "CASE WHEN g.k % 7 = 0 THEN 'https://hooks.example.com/bench' END, "
          "CASE WHEN g.k % 10 >= 8 THEN t.created + interval '0.5 seconds' END, "
          "CASE WHEN g.k % 10 >= 8 THEN 'http://127.0.0.1:' || (5000 + g.k % 8) END, "
          "CASE WHEN g.k % 10 >= 8 THEN 1 ELSE 0 END, "
          "CASE WHEN g.k % 10 >= 8 THEN 'bench-process' END, "
          "CASE WHEN g.k % 10 >= 8 THEN now() + interval '2 hours' END, t.created, "
          "now() + interval '2 hours', 1800000, "
          "CASE WHEN g.k % 10 = 9 THEN now() + interval '2 hours' END "
          "FROM generate_series(1, " +
          L +
          ") g(k) "
          "CROSS JOIN LATERAL (SELECT now() - interval '30 minutes' * ((" +
          L + " - g.k)::float8 / " + L + ") - interval '2 seconds' AS created) t",
      token, version);

  // The outbox: a delivered `completed` for every terminal row with a webhook (its payload gone
  // with the data), a delivered `start` for running ones, and a few still pending (retrying).
  tx.exec(
      "INSERT INTO webhook_deliveries (message_id, prediction_id, token_id, event, url, payload, "
      "state, attempts, next_attempt_at, created_at, finished_at) "
      "SELECT 'msg_c' || p.id, p.id, p.token_id, 'completed', p.webhook, "
      "CASE WHEN p.data_removed THEN '' "
      "ELSE '{\"id\": \"' || p.id || '\", \"status\": \"' || p.status || '\"}' END, "
      "'delivered', 1, p.completed_at, p.completed_at, p.completed_at + interval '40 ms' "
      "FROM predictions p WHERE p.webhook IS NOT NULL AND p.completed_at IS NOT NULL");
  tx.exec(
      "INSERT INTO webhook_deliveries (message_id, prediction_id, token_id, event, url, payload, "
      "state, attempts, next_attempt_at, created_at, finished_at) "
      "SELECT 'msg_s' || p.id, p.id, p.token_id, 'start', p.webhook, "
      "'{\"id\": \"' || p.id || '\", \"status\": \"processing\"}', 'delivered', 1, p.started_at, "
      "p.started_at, p.started_at + interval '40 ms' "
      "FROM predictions p WHERE p.webhook IS NOT NULL AND p.status = 'processing'");
  tx.exec(
      "INSERT INTO webhook_deliveries (message_id, prediction_id, token_id, event, url, payload, "
      "state, attempts, next_attempt_at, last_error, created_at) "
      "SELECT 'msg_r' || p.id, p.id, p.token_id, 'completed', p.webhook, "
      "'{\"id\": \"' || p.id || '\"}', 'pending', 3, now() + interval '10 minutes', "
      "'HTTP 503', p.completed_at "
      "FROM predictions p WHERE p.webhook IS NOT NULL AND p.completed_at IS NOT NULL "
      "AND p.id LIKE '%00'");
  tx.exec(
      "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, latency_ms, status_code) "
      "SELECT d.id, 1, d.created_at, 3.5, CASE WHEN d.state = 'pending' THEN 503 ELSE 200 END "
      "FROM webhook_deliveries d");
  tx.commit();
}

void vacuum(pqxx::connection& conn) {
  session(conn, "SET maintenance_work_mem = '256MB'");
  session(conn, "VACUUM (ANALYZE) predictions");
  session(conn, "VACUUM (ANALYZE) webhook_deliveries");
  session(conn, "VACUUM (ANALYZE) webhook_attempts");
  session(conn, "VACUUM (ANALYZE) leader_leases");
  session(conn, "CHECKPOINT");
}

// More than a batch due for every lookup, each set of rows apart from the others.
std::vector<std::pair<std::string, std::size_t>> make_busy(pqxx::connection& conn,
                                                           const settings& s) {
  const std::string T = std::to_string(s.terminal);
  auto live = [&T](int from, int to, const std::string& kinds) {
    return "id IN (SELECT " + id_sql(T + " + k") + " FROM generate_series(" + std::to_string(from) +
           ", " + std::to_string(to) + ") k WHERE " + kinds + ")";
  };
  auto terminal = [](std::int64_t from, std::int64_t to) {
    return "id IN (SELECT " + id_sql("n") + " FROM generate_series(" + std::to_string(from) + ", " +
           std::to_string(to) + ") n)";
  };
  std::vector<std::pair<std::string, std::size_t>> made;
  pqxx::work tx(conn);
  auto run = [&](const std::string& what, const std::string& sql) {
    made.emplace_back(what, static_cast<std::size_t>(tx.exec(sql).affected_rows()));
  };
  run("deadline passed (queued)",
      "UPDATE predictions SET deadline = now() - interval '1 minute' - random() * interval '1 "
      "hour' "
      "WHERE " +
          live(1, 1250, "k % 10 < 8"));
  run("start_by passed (queued and dispatched)",
      "UPDATE predictions SET start_by = created_at + interval '1 second' WHERE " +
          live(1251, 2500, "k % 10 <= 8"));
  run("run_by passed (processing)",
      "UPDATE predictions SET run_by = started_at + interval '0.5 seconds' WHERE " +
          live(2501, 12500, "k % 10 = 9"));
  run("lease lapsed (dispatched and processing)",
      "UPDATE predictions SET lease_expires_at = now() - interval '1 minute' - random() * "
      "interval '1 hour' WHERE " +
          live(12501, 17500, "k % 10 >= 8"));
  // Terminal rows about 36 h old whose data is still there (as if retention had been off).
  const std::int64_t mid = s.terminal / 2;
  run("completed > 1 h ago, data present",
      "UPDATE predictions SET data_removed = false, "
      "input = jsonb_build_object('prompt', 'bench ' || id), "
      "output = CASE WHEN status = 'succeeded' THEN to_jsonb('ok ' || id) END, "
      "logs = 'setup\npredicting\ndone\n' WHERE " +
          terminal(mid, mid + 1999));
  tx.exec(
      "UPDATE webhook_deliveries SET payload = '{\"id\": \"' || prediction_id || '\"}' "
      "WHERE state <> 'pending' AND prediction_id IN (SELECT " +
      id_sql("n") + " FROM generate_series(" + std::to_string(mid) + ", " +
      std::to_string(mid + 1999) + ") n)");
  // The oldest terminal rows moved back 31 days, past the 30-day row retention.
  run("completed > 30 days ago",
      "UPDATE predictions SET created_at = created_at - interval '31 days', "
      "started_at = started_at - interval '31 days', "
      "dispatched_at = dispatched_at - interval '31 days', "
      "completed_at = completed_at - interval '31 days', "
      "updated_at = updated_at - interval '31 days', start_by = start_by - interval '31 days', "
      "run_by = run_by - interval '31 days' WHERE " +
          terminal(1, 1000));
  tx.commit();
  return made;
}

// ---- measuring ------------------------------------------------------------------------------

enum class tx_kind { read_only, rolled_back, committed };

struct step {
  std::string name;
  tx_kind how;
  std::function<std::size_t(pqxx::transaction_base&)> run;
};

std::vector<step> reaper_round() {
  return {
      {"leader_acquire", tx_kind::committed,
       [](pqxx::transaction_base& tx) -> std::size_t {
         return storage::leader_acquire(tx, "maintenance", "reaper-bench", leader_ttl_ms) ? 1 : 0;
       }},
      {"prediction_due_deadlines", tx_kind::read_only,
       [](pqxx::transaction_base& tx) {
         return storage::prediction_due_deadlines(tx, batch).size();
       }},
      {"prediction_due_start_timeouts", tx_kind::read_only,
       [](pqxx::transaction_base& tx) {
         return storage::prediction_due_start_timeouts(tx, batch).size();
       }},
      {"prediction_due_run_timeouts", tx_kind::read_only,
       [](pqxx::transaction_base& tx) {
         return storage::prediction_due_run_timeouts(tx, batch).size();
       }},
      {"prediction_lapsed_leases", tx_kind::read_only,
       [](pqxx::transaction_base& tx) {
         return storage::prediction_lapsed_leases(tx, batch).size();
       }},
      {"prediction_remove_data (1 h)", tx_kind::rolled_back,
       [](pqxx::transaction_base& tx) {
         return storage::prediction_remove_data(tx, data_retention_ms, batch).size();
       }},
      {"prediction_delete_expired (30 d)", tx_kind::rolled_back,
       [](pqxx::transaction_base& tx) {
         return storage::prediction_delete_expired(tx, row_retention_ms, batch);
       }},
  };
}

struct timing {
  std::size_t rows = 0;
  double statement_ms = 0;
  double commit_ms = 0;
};

// One call in the transaction the reaper uses for it; `before_end` runs just before it ends.
timing call(pqxx::connection& conn, const step& st,
            const std::function<void(pqxx::transaction_base&)>& before_end = {}) {
  timing t;
  auto measure = [&](pqxx::transaction_base& tx) {
    const auto a = clock_type::now();
    t.rows = st.run(tx);
    t.statement_ms = ms_between(a, clock_type::now());
    if (before_end) before_end(tx);
  };
  if (st.how == tx_kind::read_only) {
    pqxx::read_transaction tx(conn);
    measure(tx);
    tx.commit();
  } else if (st.how == tx_kind::rolled_back) {
    pqxx::work tx(conn);
    measure(tx);
    tx.abort();
  } else {
    pqxx::work tx(conn);
    measure(tx);
    const auto a = clock_type::now();
    tx.commit();
    t.commit_ms = ms_between(a, clock_type::now());
  }
  return t;
}

struct summary {
  std::size_t rows = 0;
  double mean = 0, p50 = 0, p99 = 0;
};

summary summarize(std::vector<double> v, std::size_t rows) {
  summary s;
  s.rows = rows;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  auto rank = [&v](double p) {
    auto i = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
    return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
  };
  s.p50 = rank(0.50);
  s.p99 = rank(0.99);
  return s;
}

// The names that follow `tag` in a plan ("Index Scan using NAME on ...").
void names_after(const std::string& plan, const std::string& tag, std::set<std::string>& out) {
  for (auto at = plan.find(tag); at != std::string::npos; at = plan.find(tag, at + 1)) {
    const auto from = at + tag.size();
    const auto end = plan.find_first_of(" ,\n", from);
    out.insert(plan.substr(from, end == std::string::npos ? std::string::npos : end - from));
  }
}

// "TABLE (rows=N)" or "TABLE (never executed)" for every Seq Scan node: a seq scan node that
// the executor left after one row is not the same cost as one that read the table.
void seq_scans(const std::string& plan, std::set<std::string>& out) {
  const std::string tag = "Seq Scan on ";
  for (auto at = plan.find(tag); at != std::string::npos; at = plan.find(tag, at + 1)) {
    const auto from = at + tag.size();
    const auto end = plan.find_first_of(" \n", from);
    const auto line_end = plan.find('\n', from);
    const std::string line =
        plan.substr(from, line_end == std::string::npos ? line_end : line_end - from);
    std::string what = plan.substr(from, end == std::string::npos ? end : end - from);
    if (line.find("never executed") != std::string::npos) {
      what += " (never executed)";
    } else if (const auto actual = line.find("actual "); actual != std::string::npos) {
      const auto rows = line.find("rows=", actual);
      const auto rows_end = line.find(' ', rows);
      if (rows != std::string::npos) what += " (" + line.substr(rows, rows_end - rows) + ")";
    }
    out.insert(what);
  }
}

std::string query_text(const std::string& notice) {
  const std::string tag = "Query Text: ";
  const auto at = notice.find(tag);
  if (at == std::string::npos) return "";
  const auto from = at + tag.size();
  const auto end = notice.find('\n', from);
  return notice.substr(from, end == std::string::npos ? std::string::npos : end - from);
}

struct plan_capture {
  std::string text;  // every distinct statement's first plan, with a count of repeats
  std::set<std::string> indexes, seq_scans;
};

// Runs the step once with auto_explain on (EXPLAIN ANALYZE of every statement, nested ones too).
plan_capture capture(pqxx::connection& conn, notices& got, const step& st) {
  got.received.clear();
  session(conn, "SET auto_explain.log_min_duration = 0");
  got.on = true;
  // A statement with parameters reports its plan when its portal closes: with the next one.
  call(conn, st, [](pqxx::transaction_base& tx) { tx.exec(flush_marker); });
  got.on = false;
  session(conn, "SET auto_explain.log_min_duration = -1");

  plan_capture out;
  std::vector<std::string> order;
  std::map<std::string, std::pair<std::string, int>> by_query;
  for (const auto& n : got.received) {
    const std::string q = query_text(n);
    if (q.empty() || q.find("reaper bench: flush") != std::string::npos) continue;
    auto [it, fresh] = by_query.try_emplace(q, n, 0);
    if (fresh) order.push_back(q);
    ++it->second.second;
    for (const char* tag : {"Index Scan using ", "Index Scan Backward using ",
                            "Index Only Scan using ", "Index Only Scan Backward using ",
                            "Bitmap Index Scan on ", "Conflict Arbiter Indexes: "}) {
      names_after(n, tag, out.indexes);
    }
    seq_scans(n, out.seq_scans);
  }
  for (const auto& q : order) {
    const auto& [notice, count] = by_query[q];
    if (count > 1) {
      out.text += "(the first of " + std::to_string(count) + " runs of this statement)\n";
    }
    out.text += notice;
    if (!notice.empty() && notice.back() != '\n') out.text += '\n';
  }
  return out;
}

struct row {
  std::string state, query;
  summary s;
  std::string indexes, seq_scans;
  bool commit = false;  // no rows of its own
};

std::string join(const std::set<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "none" : out;
}

std::vector<row> measure_state(pqxx::connection& conn, notices& got, const std::string& state,
                               int calls, std::string& costliest_plan) {
  std::vector<row> rows;
  std::vector<double> commits;
  double worst = -1;
  for (const auto& st : reaper_round()) {
    const auto plan = capture(conn, got, st);
    std::cout << "\n#### " << state << ": " << st.name << "\n\n```\n" << plan.text << "```\n";
    std::vector<double> ms;
    std::size_t returned = 0;
    for (int i = 0; i < calls; ++i) {
      const auto t = call(conn, st);
      ms.push_back(t.statement_ms);
      returned = t.rows;
      if (st.how == tx_kind::committed) commits.push_back(t.commit_ms);
    }
    // Drift: a rolled-back write leaves its dead row versions behind for the next call to step
    // over (the same rows come back every time), so its later calls may cost more than its first.
    const std::size_t tenth = std::max<std::size_t>(1, ms.size() / 10);
    const double first = summarize({ms.begin(), ms.begin() + static_cast<long>(tenth)}, 0).mean;
    const double last = summarize({ms.end() - static_cast<long>(tenth), ms.end()}, 0).mean;
    std::printf("timed: %zu calls; mean of the first %zu %.3f ms, of the last %zu %.3f ms\n",
                ms.size(), tenth, first, tenth, last);
    row r{state, st.name, summarize(ms, returned), join(plan.indexes), join(plan.seq_scans)};
    if (r.s.mean > worst) {
      worst = r.s.mean;
      costliest_plan =
          "#### " + state + ": " + st.name + " (the costliest)\n\n```\n" + plan.text + "```\n";
    }
    rows.push_back(std::move(r));
  }
  rows.push_back({state, "COMMIT of leader_acquire (durable)", summarize(commits, 0), "-", "-"});
  rows.back().commit = true;
  return rows;
}

void print_sizes(pqxx::connection& conn, const std::string& when) {
  pqxx::nontransaction tx(conn);
  std::cout << "\nTable sizes " << when << ":\n\n| relation | size |\n| --- | --- |\n";
  for (const auto& r :
       tx.exec("SELECT 'predictions (heap + TOAST)', pg_size_pretty(pg_table_size('predictions')) "
               "UNION ALL SELECT 'predictions, all indexes', "
               "pg_size_pretty(pg_indexes_size('predictions')) "
               "UNION ALL (SELECT '  ' || c.relname, pg_size_pretty(pg_relation_size(c.oid)) "
               "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
               "WHERE i.indrelid = 'predictions'::regclass ORDER BY c.relname) "
               "UNION ALL SELECT 'webhook_deliveries + its indexes', "
               "pg_size_pretty(pg_total_relation_size('webhook_deliveries')) "
               "UNION ALL SELECT 'webhook_attempts + its indexes', "
               "pg_size_pretty(pg_total_relation_size('webhook_attempts'))")) {
    std::cout << "| " << r[0].as<std::string>() << " | " << r[1].as<std::string>() << " |\n";
  }
}

void print_counts(pqxx::connection& conn) {
  pqxx::nontransaction tx(conn);
  std::cout << "\n| rows | count |\n| --- | --- |\n";
  for (const auto& r :
       tx.exec("SELECT 'terminal (' || status || ')', count(*) FROM predictions "
               "WHERE completed_at IS NOT NULL GROUP BY status "
               "UNION ALL SELECT 'terminal with data present', count(*) FROM predictions "
               "WHERE completed_at IS NOT NULL AND NOT data_removed "
               "UNION ALL SELECT 'live: queued', count(*) FROM predictions "
               "WHERE status = 'starting' AND dispatched_at IS NULL "
               "UNION ALL SELECT 'live: dispatched', count(*) FROM predictions "
               "WHERE status = 'starting' AND dispatched_at IS NOT NULL "
               "UNION ALL SELECT 'live: processing', count(*) FROM predictions "
               "WHERE status = 'processing' "
               "UNION ALL SELECT 'webhook_deliveries (' || state || ')', count(*) "
               "FROM webhook_deliveries GROUP BY state "
               "UNION ALL SELECT 'webhook_attempts', count(*) FROM webhook_attempts")) {
    std::cout << "| " << r[0].as<std::string>() << " | " << r[1].as<std::string>() << " |\n";
  }
}

// Returns false when CLI11 handled the command line itself (--help) or refused it.
bool parse(int argc, char** argv, settings& s, int& exit_code) {
  CLI::App app{"The reaper's statements on a large predictions table: plans and timings",
               "cogwheel_reaper_bench"};
  if (const char* env = std::getenv("DATABASE_URL")) s.url = env;
  app.add_option("url", s.url, "PostgreSQL URL of an empty database (default: DATABASE_URL)");
  app.add_option("--terminal", s.terminal, "terminal predictions")
      ->check(CLI::Range(std::int64_t{20'000}, std::int64_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--live", s.live, "live predictions (queued, dispatched, processing)")
      ->check(CLI::Range(std::int64_t{20'000}, std::int64_t{1'000'000}))
      ->capture_default_str();
  app.add_option("--calls", s.calls, "timed calls per statement and state")
      ->check(CLI::Range(1, 10'000))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    exit_code = app.exit(e);
    return false;
  }
  if (s.url.empty()) {
    std::cerr << "reaper bench: give a database URL (argument or DATABASE_URL)\n";
    exit_code = 2;
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  if (int code = 0; !parse(argc, argv, s, code)) return code;
  try {
    const auto started = clock_type::now();
    storage::migrate(s.url, storage::embedded_migrations());
    pqxx::connection conn(s.url);
    notices got(conn);
    session(conn, "SET statement_timeout = '300s'");
    if (scalar(conn, "SELECT count(*) FROM predictions") != "0") {
      throw std::runtime_error(
          "the database already holds predictions; give the bench an empty one");
    }
    std::cout << "PostgreSQL " << scalar(conn, "SHOW server_version") << "; " << s.terminal
              << " terminal and " << s.live << " live predictions; " << s.calls
              << " calls per statement, batch " << batch << "\n";

    auto a = clock_type::now();
    fill(conn, s);
    const double fill_s = ms_between(a, clock_type::now()) / 1000;
    a = clock_type::now();
    vacuum(conn);
    const double vacuum_s = ms_between(a, clock_type::now()) / 1000;
    std::printf("filled in %.1f s (one transaction), VACUUM ANALYZE + CHECKPOINT in %.1f s\n",
                fill_s, vacuum_s);
    print_counts(conn);
    print_sizes(conn, "after the fill and VACUUM");

    session(conn, "LOAD 'auto_explain'");
    session(conn, "SET auto_explain.log_min_duration = -1");  // on only while capturing
    session(conn, "SET auto_explain.log_analyze = on");
    session(conn, "SET auto_explain.log_buffers = on");
    session(conn, "SET auto_explain.log_nested_statements = on");
    session(conn, "SET auto_explain.log_level = notice");
    session(conn, "SET client_min_messages = notice");

    std::cout << "\n### Plans (auto_explain: EXPLAIN ANALYZE with buffers, nested statements)\n";
    std::string steady_plan, busy_plan;
    auto rows = measure_state(conn, got, "steady", s.calls, steady_plan);

    const auto made = make_busy(conn, s);
    vacuum(conn);
    std::cout << "\nMade due for the busy state (then VACUUM ANALYZE):\n\n";
    for (const auto& [what, n] : made) std::cout << "- " << what << ": " << n << " rows\n";
    auto busy = measure_state(conn, got, "busy", s.calls, busy_plan);
    rows.insert(rows.end(), busy.begin(), busy.end());

    print_sizes(conn, "at the end (after the busy state's rolled-back retention calls)");
    std::cout << "\n### The costliest statement of the busy state\n\n" << busy_plan;

    std::cout
        << "\n### Reaper statements, " << s.calls
        << " calls each (ms, measured at the client over the Unix socket)\n\n"
        << "| state | statement | rows | mean | p50 | p99 | indexes in the plan | seq scans |\n"
        << "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |\n";
    std::map<std::string, double> round;
    for (const auto& r : rows) {
      round[r.state] += r.s.mean;
      const std::string returned = r.commit ? "-" : std::to_string(r.s.rows);
      std::printf("| %s | %s | %s | %.3f | %.3f | %.3f | %s | %s |\n", r.state.c_str(),
                  r.query.c_str(), returned.c_str(), r.s.mean, r.s.p50, r.s.p99, r.indexes.c_str(),
                  r.seq_scans.c_str());
    }
    for (const char* state : {"steady", "busy"}) {
      std::printf("| %s | **one reaper round (sum of means)** | | **%.3f** | | | | |\n", state,
                  round[state]);
    }
    std::printf("\nbench total %.1f s\n", ms_between(started, clock_type::now()) / 1000);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "reaper bench: " << e.what() << "\n";
    return 1;
  }
}
