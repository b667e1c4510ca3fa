#pragma once
// The database executor: blocking libpqxx work runs on its own threads, each with a pooled
// connection, so that Asio I/O threads never block on PostgreSQL (DESIGN.md).
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <optional>
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
  // GCC 12 destroys twice a temporary created as an argument inside a co_await operand, so pass a
  // named function object: `auto work = [..](pqxx::connection& c) {..}; co_await db.run(work);`
  template <class F>
  auto run(F&& f) -> boost::asio::awaitable<decltype(f(std::declval<pqxx::connection&>()))> {
    using result = decltype(f(std::declval<pqxx::connection&>()));
    using work_type = std::decay_t<F>;
    using signature = std::conditional_t<std::is_void_v<result>, void(std::exception_ptr),
                                         void(std::exception_ptr, result)>;
    return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, signature>(
        [this](auto handler, work_type work) {
          auto caller = boost::asio::get_associated_executor(handler);
          boost::asio::post(threads_, [this, work = std::move(work), handler = std::move(handler),
                                       caller]() mutable {
            std::exception_ptr failure;
            if constexpr (std::is_void_v<result>) {
              try {
                pool_.run(work);
              } catch (...) {
                failure = std::current_exception();
              }
              boost::asio::post(caller, [handler = std::move(handler), failure]() mutable {
                std::move(handler)(failure);
              });
            } else {
              std::optional<result> value;
              try {
                value.emplace(pool_.run(work));
              } catch (...) {
                failure = std::current_exception();
              }
              boost::asio::post(caller, [handler = std::move(handler), failure,
                                         value = std::move(value)]() mutable {
                std::move(handler)(failure, value ? std::move(*value) : result{});
              });
            }
          });
        },
        boost::asio::use_awaitable, work_type(std::forward<F>(f)));
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
