#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <future>
#include <pqxx/pqxx>
#include <thread>

#include "storage/database.hpp"
#include "storage/embedded_postgres.hpp"
#include "tests/support/pg.hpp"
#include "tests/support/process.hpp"

using namespace cogwheel;
namespace asio = boost::asio;

namespace {
storage::pool_options options_for(std::string conninfo, std::size_t size = 2) {
  storage::pool_options o;
  o.conninfo = std::move(conninfo);
  o.size = size;
  o.acquire_timeout = std::chrono::milliseconds(2000);
  return o;
}
// Asks the server, so that a dead connection shows itself.
int backend_pid(pqxx::connection& c) {
  return pqxx::read_transaction(c).exec1("SELECT pg_backend_pid()")[0].as<int>();
}
}  // namespace

TEST_CASE("the pool reuses connections and sets the statement timeout and no JIT", "[pg][pool]") {
  auto opts = options_for(test::test_database_url());
  opts.statement_timeout = std::chrono::milliseconds(200);
  storage::connection_pool pool(opts);
  const int pid1 = pool.run(backend_pid);
  const int pid2 = pool.run(backend_pid);
  CHECK(pid1 == pid2);
  CHECK(pool.open_connections() == 1);
  CHECK(pool.run([](pqxx::connection& c) {
    return pqxx::read_transaction(c).exec1("SHOW statement_timeout")[0].as<std::string>();
  }) == "200ms");
  CHECK(pool.run([](pqxx::connection& c) {
    return pqxx::read_transaction(c).exec1("SHOW jit")[0].as<std::string>();
  }) == "off");
  CHECK_THROWS_AS(pool.run([](pqxx::connection& c) {
    pqxx::work(c).exec("SELECT pg_sleep(5)");
    return 0;
  }),
                  pqxx::sql_error);
  // The connection survives a failed statement.
  CHECK(pool.run(backend_pid) == pid1);
}

TEST_CASE("the pool never opens more than its size", "[pg][pool]") {
  storage::connection_pool pool(options_for(test::test_database_url(), 2));
  std::promise<void> release;
  auto released = release.get_future().share();
  auto hold = [&] {
    return pool.run([&](pqxx::connection&) {
      released.wait();
      return 0;
    });
  };
  auto a = std::async(std::launch::async, hold);
  auto b = std::async(std::launch::async, hold);
  // Wait until both hold a connection, then a third caller times out.
  for (int i = 0; i < 500 && pool.open_connections() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling a condition
  }
  REQUIRE(pool.open_connections() == 2);
  CHECK_THROWS_AS(pool.run(backend_pid), storage::unavailable);
  release.set_value();
  a.get();
  b.get();
  CHECK(pool.open_connections() == 2);
}

TEST_CASE("a connection the server killed is replaced", "[pg][pool]") {
  storage::connection_pool pool(options_for(test::test_database_url(), 1));
  const int pid = pool.run(backend_pid);
  {
    pqxx::connection admin(test::test_database_url());
    pqxx::nontransaction(admin).exec("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
  }
  // The idle connection is dead: the pool notices, drops it and runs the call on a fresh one.
  const int fresh = pool.run(backend_pid);
  CHECK(fresh != pid);
  CHECK(pool.open_connections() == 1);
}

TEST_CASE("the pool recovers by itself after the server restarts", "[pg][pool][embedded]") {
  test::temp_dir dir;
  storage::embedded_options eo;
  eo.data_dir = dir.path() + "/data";
  auto server = std::make_unique<storage::embedded_postgres>(eo);
  const std::string conninfo = server->conninfo();
  storage::connection_pool pool(options_for(conninfo, 2));
  CHECK(pool.run(backend_pid) > 0);

  server.reset();  // stops the server
  CHECK_THROWS_AS(pool.run(backend_pid), storage::unavailable);

  server = std::make_unique<storage::embedded_postgres>(eo);
  CHECK(pool.run([](pqxx::connection& c) {
    return pqxx::read_transaction(c).exec1("SELECT 41 + 1")[0].as<int>();
  }) == 42);
}

TEST_CASE("database work runs off the I/O thread and resumes on it", "[pg][pool]") {
  storage::database db(options_for(test::test_database_url(), 2));
  asio::io_context ioc;
  std::thread::id io_thread, db_thread, resumed_on;
  auto fut = asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<int> {
        io_thread = std::this_thread::get_id();
        int v = co_await db.run([&](pqxx::connection& c) {
          db_thread = std::this_thread::get_id();
          return pqxx::read_transaction(c).exec1("SELECT 7")[0].as<int>();
        });
        resumed_on = std::this_thread::get_id();
        co_return v;
      },
      asio::use_future);
  ioc.run();
  CHECK(fut.get() == 7);
  CHECK(db_thread != io_thread);
  CHECK(resumed_on == io_thread);
}

TEST_CASE("a malformed DATABASE_URL is refused with libpq's reason", "[pool]") {
  try {
    storage::validate_conninfo("postgresql://user@host:notaport/db?bogus=1");
    FAIL("accepted");
  } catch (const storage::error& e) {
    CHECK_THAT(e.what(), Catch::StartsWith("malformed DATABASE_URL: "));
  }
  CHECK_NOTHROW(storage::validate_conninfo("postgresql://u@localhost:5432/db"));
  CHECK_NOTHROW(storage::validate_conninfo("host=/tmp dbname=x"));
  CHECK(storage::normalize_conninfo("postgresql://u@h:5/d", {{"connect_timeout", "5"}}) ==
        "user='u' dbname='d' host='h' port='5' connect_timeout='5'");
}
