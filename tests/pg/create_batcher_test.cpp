// The create batcher against a real PostgreSQL: concurrent creates share a few batches, each
// answered after its commit; a row the database refuses fails alone; the claim hook runs in the
// batch's transaction, and its work after the commit runs before the callers are answered.
#include "scheduler/create_batcher.hpp"

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <mutex>
#include <pqxx/pqxx>
#include <utility>

#include "storage/catalog.hpp"
#include "storage/database.hpp"
#include "storage/predictions.hpp"
#include "storage/tokens.hpp"
#include "tests/support/pg.hpp"

using namespace cogwheel;
namespace asio = boost::asio;

namespace {

const std::string v1(64, 'a');

struct fixture {
  test::test_schema schema;
  std::string conninfo = test::migrated(schema);
  std::int64_t token_id = 0;

  fixture() {
    pqxx::connection c(conninfo);
    pqxx::work tx(c);
    storage::catalog_spec spec;
    spec.models.push_back({"acme", "echo", "", {{v1, "{}", {}, {}}}});
    storage::catalog_sync(tx, spec);
    token_id = storage::token_insert(tx, {"alice", std::string(32, '\x01'), "cw_test",
                                          "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"});
    tx.commit();
  }

  storage::prediction_new row(std::size_t n) const {
    storage::prediction_new p;
    p.id = test::nth_prediction_id(n);
    p.token_id = token_id;
    p.model = "acme/echo";
    p.version_id = v1;
    p.input_json = R"({"n":)" + std::to_string(n) + "}";
    return p;
  }

  std::size_t stored() const {
    pqxx::connection c(conninfo);
    pqxx::read_transaction tx(c);
    return tx.exec1("SELECT count(*) FROM predictions")[0].as<std::size_t>();
  }
};

struct answer {
  bool done = false;
  std::exception_ptr error;
  storage::insert_result result;
};

// Submits every row at once from this thread and runs their answers on an io_context of its own;
// `on_answer` runs with each, on this thread.
std::vector<answer> submit_all(scheduler::create_batcher& batcher,
                               std::vector<storage::prediction_new> rows,
                               const std::function<void(std::size_t)>& on_answer = {}) {
  asio::io_context ioc;
  auto guard = asio::make_work_guard(ioc);
  std::vector<answer> out(rows.size());
  std::size_t left = rows.size();
  for (std::size_t i = 0; i < rows.size(); ++i) {
    batcher.submit(std::move(rows[i]),
                   asio::bind_executor(ioc, [&, i](std::exception_ptr e, storage::insert_result r) {
                     out[i] = {true, e, std::move(r)};
                     if (on_answer) on_answer(i);
                     if (--left == 0) guard.reset();
                   }));
  }
  ioc.run_for(std::chrono::seconds(60));  // bounded: returns once every answer ran
  return out;
}

storage::pool_options pool_for(const std::string& conninfo) {
  storage::pool_options opts;
  opts.conninfo = conninfo;
  opts.size = 4;
  return opts;
}

}  // namespace

TEST_CASE_METHOD(fixture, "concurrent creates share batches, and a refused row fails alone",
                 "[pg][create]") {
  storage::database db(pool_for(conninfo));
  std::atomic<int> committed_calls{0};
  scheduler::create_batcher batcher(db);
  std::atomic<std::size_t> announced{0};
  batcher.committed = [&](const std::vector<std::string>& versions) {
    ++committed_calls;
    announced += versions.size();
  };

  std::vector<storage::prediction_new> rows;
  for (std::size_t n = 1; n <= 200; ++n) rows.push_back(row(n));
  rows[57].id = "NOT-A-PREDICTION-ID-AT-ALL";  // the table's CHECK refuses it
  auto answers = submit_all(batcher, rows);

  std::size_t created = 0;
  for (std::size_t i = 0; i < answers.size(); ++i) {
    INFO("row " << i);
    REQUIRE(answers[i].done);
    if (i == 57) {
      CHECK(answers[i].error != nullptr);
      continue;
    }
    REQUIRE(answers[i].error == nullptr);
    CHECK(answers[i].result.outcome == storage::insert_outcome::created);
    CHECK(answers[i].result.row.id == rows[i].id);
    CHECK(answers[i].result.row.created_at > 0);
    ++created;
  }
  CHECK(created == 199);
  CHECK(stored() == 199);
  const auto totals = batcher.totals();
  CHECK(totals.rows == 200);
  CHECK(totals.batches < 200);  // grouped
  CHECK(committed_calls.load() >= 1);
  CHECK(announced.load() == 199);  // the version of every row created, and only of those
}

TEST_CASE_METHOD(fixture,
                 "the claim hook runs in the batch's transaction and its work after the commit "
                 "before the answers",
                 "[pg][create]") {
  storage::database db(pool_for(conninfo));
  // Recorded on the database threads, checked here (Catch2's assertions are for this thread).
  std::mutex mu;
  std::vector<std::int64_t> visible;  // the batch's rows the hook's transaction sees
  std::vector<std::size_t> hooked;    // the batch's rows the hook was given
  std::vector<bool> afters;           // what each hook's work after the commit was told
  std::atomic<std::size_t> afters_run{0};
  scheduler::create_batcher batcher(
      db, {},
      [&](pqxx::transaction_base& tx, const std::vector<storage::insert_result>& r) {
        std::string ids;
        for (const auto& x : r) ids += (ids.empty() ? "" : ",") + x.row.id;
        const auto n =
            tx.exec_params1("SELECT count(*) FROM predictions WHERE id = ANY($1::text[])",
                            "{" + ids + "}")[0]
                .as<std::int64_t>();
        std::lock_guard lock(mu);
        visible.push_back(n);
        hooked.push_back(r.size());
        return std::function<void(bool)>([&](bool committed) {
          std::lock_guard lock2(mu);
          afters.push_back(committed);
          ++afters_run;
        });
      },
      [](const std::vector<std::string>&) { return true; });

  std::vector<storage::prediction_new> rows;
  for (std::size_t n = 1; n <= 10; ++n) rows.push_back(row(n));
  rows[3].idempotency_key = "key-3";
  rows[3].idempotency_sha256 = std::string(32, '\x07');
  std::vector<std::size_t> afters_at_answer(rows.size());
  auto answers =
      submit_all(batcher, rows, [&](std::size_t i) { afters_at_answer[i] = afters_run.load(); });

  for (const auto& a : answers) {
    REQUIRE(a.done);
    CHECK(a.error == nullptr);
  }
  std::lock_guard lock(mu);
  REQUIRE(!hooked.empty());
  std::size_t total = 0;
  for (std::size_t i = 0; i < hooked.size(); ++i) {
    total += hooked[i];
    CHECK(visible[i] == static_cast<std::int64_t>(hooked[i]));
  }
  CHECK(total == 10);
  REQUIRE(afters.size() == hooked.size());
  for (bool committed : afters) CHECK(committed);
  for (auto n : afters_at_answer) CHECK(n >= 1);
  CHECK(stored() == 10);
}
