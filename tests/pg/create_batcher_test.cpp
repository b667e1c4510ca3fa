// The create batcher and the deferred commit flush against a real PostgreSQL: each create is
// answered only after a flush barrier that followed its commit; a row the database refuses fails
// alone; the claim hook's work after the commit waits for the barrier too.
#include "scheduler/create_batcher.hpp"

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
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
  std::uint64_t barriers = 0;  // barriers the batcher had run when the answer arrived
};

// Submits every row at once from this thread and runs their answers on an io_context of its own.
std::vector<answer> submit_all(scheduler::create_batcher& batcher,
                               std::vector<storage::prediction_new> rows) {
  asio::io_context ioc;
  auto guard = asio::make_work_guard(ioc);
  std::vector<answer> out(rows.size());
  std::size_t left = rows.size();
  for (std::size_t i = 0; i < rows.size(); ++i) {
    batcher.submit(std::move(rows[i]),
                   asio::bind_executor(ioc, [&, i](std::exception_ptr e, storage::insert_result r) {
                     out[i] = {true, e, std::move(r), batcher.totals().barriers};
                     if (--left == 0) guard.reset();
                   }));
  }
  ioc.run_for(std::chrono::seconds(60));  // bounded: returns once every answer ran
  return out;
}

}  // namespace

TEST_CASE_METHOD(fixture,
                 "a deferred insert commits without waiting for its flush, the barrier "
                 "flushes it",
                 "[pg][create]") {
  pqxx::connection c(conninfo);
  // The test server runs with synchronous_commit off; the property needs it on.
  c.set_variable("synchronous_commit", "on");
  {
    pqxx::work tx(c);
    storage::prediction_insert_many(tx, {row(1)}, storage::commit_flush::deferred);
    CHECK(tx.exec1("SHOW synchronous_commit")[0].as<std::string>() == "off");
    tx.commit();
  }
  {
    pqxx::work tx(c);
    storage::prediction_insert_many(tx, {row(2)}, storage::commit_flush::wait);
    CHECK(tx.exec1("SHOW synchronous_commit")[0].as<std::string>() == "on");
    tx.commit();
  }
  std::string written;
  {
    pqxx::nontransaction tx(c);
    storage::prediction_insert_many(tx, {row(3)}, storage::commit_flush::deferred);
    // Only the autocommitted statement ran without waiting: the session is as it was.
    CHECK(tx.exec1("SHOW synchronous_commit")[0].as<std::string>() == "on");
    written = tx.exec1("SELECT pg_current_wal_insert_lsn()::text")[0].as<std::string>();
  }
  storage::wal_flush_barrier(c);
  pqxx::nontransaction tx(c);
  CHECK(tx.exec_params1("SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn", written)[0].as<bool>());
  CHECK(stored() == 3);
}

TEST_CASE_METHOD(fixture, "each create is answered after a barrier that followed its commit",
                 "[pg][create]") {
  storage::pool_options opts;
  opts.conninfo = conninfo;
  opts.size = 4;
  storage::database db(opts);
  std::atomic<int> committed_calls{0};
  const bool deferred = GENERATE(true, false);
  INFO("deferred_flush " << deferred);
  scheduler::create_batcher_options bo;
  bo.deferred_flush = deferred;
  scheduler::create_batcher batcher(db, bo);
  batcher.committed = [&] { ++committed_calls; };

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
    if (deferred) {
      CHECK(answers[i].barriers >= 1);
    } else {
      CHECK(answers[i].barriers == 0);
    }
    ++created;
  }
  CHECK(created == 199);
  CHECK(stored() == 199);
  const auto totals = batcher.totals();
  CHECK(totals.rows == 200);
  CHECK(totals.batches < 200);  // grouped
  CHECK(committed_calls.load() >= 1);
  if (deferred) {
    CHECK(totals.barriers >= 1);
    CHECK(totals.barriers <= totals.batches);
  } else {
    CHECK(totals.barriers == 0);
  }
}

TEST_CASE_METHOD(fixture, "the claim hook's work after the commit waits for the barrier",
                 "[pg][create]") {
  storage::pool_options opts;
  opts.conninfo = conninfo;
  opts.size = 4;
  storage::database db(opts);
  // Recorded on the database threads, checked here (Catch2's assertions are for this thread).
  std::mutex mu;
  std::vector<std::string> commit_modes;
  std::vector<std::size_t> hook_rows;
  std::vector<std::pair<bool, std::uint64_t>> afters;  // committed, barriers run by then
  scheduler::create_batcher* self = nullptr;
  scheduler::create_batcher batcher(
      db, {},
      [&](pqxx::transaction_base& tx, const std::vector<storage::insert_result>& r) {
        // Runs in the batch's transaction, which commits without waiting for its flush.
        auto mode = tx.exec1("SHOW synchronous_commit")[0].as<std::string>();
        std::lock_guard lock(mu);
        commit_modes.push_back(mode);
        hook_rows.push_back(r.size());
        return std::function<void(bool)>([&](bool ok) {
          const auto barriers = self->totals().barriers;
          std::lock_guard lock2(mu);
          afters.emplace_back(ok, barriers);
        });
      },
      [](const std::vector<std::string>&) { return true; });
  self = &batcher;
  std::vector<storage::prediction_new> rows;
  for (std::size_t n = 1; n <= 10; ++n) rows.push_back(row(n));
  rows[3].idempotency_key = "key-3";  // a keyed row needs the transaction too
  rows[3].idempotency_sha256 = std::string(32, '\x07');
  auto answers = submit_all(batcher, rows);
  for (const auto& a : answers) {
    REQUIRE(a.done);
    CHECK(a.error == nullptr);
    CHECK(a.barriers >= 1);
  }
  std::lock_guard lock(mu);
  REQUIRE(!commit_modes.empty());
  for (const auto& m : commit_modes) CHECK(m == "off");
  std::size_t hooked = 0;
  for (auto n : hook_rows) hooked += n;
  CHECK(hooked == 10);
  REQUIRE(afters.size() == commit_modes.size());
  for (const auto& [ok, barriers] : afters) {
    CHECK(ok);
    CHECK(barriers >= 1);
  }
  CHECK(stored() == 10);
}
