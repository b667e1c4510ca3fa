#pragma once
// A bounded pool of libpqxx connections. Blocking: call it only from the database executor
// (storage/database.hpp), never from an Asio I/O thread.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "storage/errors.hpp"

namespace cogwheel::storage {

struct pool_options {
  std::string conninfo;                                // libpq URI or key=value string
  std::size_t size = 8;                                // most connections open at once
  std::chrono::milliseconds statement_timeout{5'000};  // per statement, set on every connection
  std::chrono::milliseconds acquire_timeout{5'000};    // wait for a free connection
  std::chrono::seconds connect_timeout{5};
  std::string application_name = "cogwheel";
  void validate() const;  // throws std::invalid_argument
};

// Checks a DATABASE_URL / conninfo with libpq's own parser; throws storage::error naming the
// problem.
void validate_conninfo(const std::string& conninfo);

// Rewrites a URI or key=value conninfo as key=value pairs, adding `defaults` for keys it lacks.
std::string normalize_conninfo(const std::string& conninfo,
                               const std::vector<std::pair<std::string, std::string>>& defaults);

class connection_pool {
 public:
  explicit connection_pool(pool_options opts);
  connection_pool(const connection_pool&) = delete;
  connection_pool& operator=(const connection_pool&) = delete;
  ~connection_pool();

  // Runs f(pqxx::connection&) on a pooled connection. A connection that broke is dropped. When a
  // connection that had sat idle turns out to be dead (the server restarted), every idle connection
  // is dropped and f runs once more on a fresh one: a broken connection never committed anything.
  // Throws storage::unavailable when the server cannot be reached.
  template <class F>
  auto run(F&& f) -> decltype(f(std::declval<pqxx::connection&>()));

  std::size_t open_connections() const;
  const pool_options& options() const { return opts_; }

 private:
  struct lease {
    std::unique_ptr<pqxx::connection> conn;
    bool reused = false;
  };
  lease acquire();
  void release(std::unique_ptr<pqxx::connection> conn, bool healthy);
  void drop_idle();
  std::unique_ptr<pqxx::connection> connect();

  pool_options opts_;
  std::string full_conninfo_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  std::size_t open_ = 0;
};

template <class F>
auto connection_pool::run(F&& f) -> decltype(f(std::declval<pqxx::connection&>())) {
  for (int attempt = 0;; ++attempt) {
    lease l = acquire();
    try {
      if constexpr (std::is_void_v<decltype(f(*l.conn))>) {
        f(*l.conn);
        release(std::move(l.conn), true);
        return;
      } else {
        auto result = f(*l.conn);
        release(std::move(l.conn), true);
        return result;
      }
    } catch (const pqxx::in_doubt_error&) {
      release(std::move(l.conn), false);
      throw;
    } catch (const pqxx::broken_connection& e) {
      release(std::move(l.conn), false);
      if (l.reused && attempt == 0) {
        drop_idle();
        continue;
      }
      throw unavailable(std::string("database connection lost: ") + e.what());
    } catch (...) {
      // A failed statement leaves the connection usable once its transaction object is gone.
      const bool healthy = l.conn && l.conn->is_open();
      release(std::move(l.conn), healthy);
      throw;
    }
  }
}

}  // namespace cogwheel::storage
