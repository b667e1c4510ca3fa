#pragma once
// The database executor: blocking libpqxx work runs on its own threads, each with a pooled
// connection, so that Asio I/O threads never block on PostgreSQL (DESIGN.md).
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <type_traits>

#include "storage/pool.hpp"

namespace cogwheel::storage {

class database {
 public:
  // One executor thread per pooled connection: a thread never waits for a connection.
  explicit database(pool_options opts);
  database(const database&) = delete;
  database& operator=(const database&) = delete;
  ~database();  // waits for work in flight, then closes the connections

  // Awaitable from any executor: runs f(pqxx::connection&) on a database thread and resumes the
  // caller on its own executor with the result, or with the exception f threw.
  template <class F>
  auto run(F f) -> boost::asio::awaitable<decltype(f(std::declval<pqxx::connection&>()))> {
    using result = decltype(f(std::declval<pqxx::connection&>()));
    co_return co_await boost::asio::co_spawn(
        threads_,
        [this, f = std::move(f)]() mutable -> boost::asio::awaitable<result> {
          co_return pool_.run(f);
        },
        boost::asio::use_awaitable);
  }

  // For code already off the I/O threads (the migration runner, command-line subcommands).
  template <class F>
  auto run_blocking(F&& f) {
    return pool_.run(std::forward<F>(f));
  }

  connection_pool& pool() { return pool_; }
  boost::asio::thread_pool::executor_type executor() { return threads_.get_executor(); }

 private:
  connection_pool pool_;
  boost::asio::thread_pool threads_;
};

}  // namespace cogwheel::storage
