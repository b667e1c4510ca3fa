#pragma once
// The embedded default (DESIGN.md): with no DATABASE_URL, cogwheel runs a private PostgreSQL from
// the installed server binaries, in its data folder, listening on a Unix socket only.
//
// Layout of the data folder:
//   <data_dir>/postgres          the cluster (PGDATA); also holds the Unix socket
//   <data_dir>/postgres.log      the server log
//   <data_dir>/postgres.initdb   scratch folder of a first initdb, renamed to postgres when
//   complete <data_dir>/.embedded.lock    exclusive flock held while deciding to
//   initdb/start/attach/stop <data_dir>/.embedded.users   shared flock held by every live
//   embedded_postgres (a use count) <data_dir>/.embedded.started written by the cogwheel process
//   that started the server
//
// Several cogwheel processes share one server: the first starts it, the others attach. The server
// stops when the last cogwheel user of a server that cogwheel started lets go, so a short
// `cogwheel get` that started the server never pulls it away from a `serve` that attached later.
// A server started outside cogwheel (by hand with pg_ctl) is never stopped by cogwheel.
//
// When cogwheel runs as root, initdb and pg_ctl run as the `postgres` system user (PostgreSQL
// refuses to run as root). Every failure is a storage::error with a one-line message.
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>

#include "storage/errors.hpp"

namespace cogwheel::storage {

struct embedded_options {
  std::filesystem::path
      data_dir;  // cogwheel's data folder; the cluster lives in data_dir/"postgres"
  std::filesystem::path pg_bin_dir;  // empty: the binaries matching the cluster's PG_VERSION if
                                     // installed, else the newest /usr/lib/postgresql/<N>/bin
  std::string database = "cogwheel";
  std::chrono::seconds start_timeout{60};  // bounds initdb, pg_ctl start and waiting for the lock
};

// "./var" made absolute for a normal user; "/var/lib/cogwheel" when running as root (root's home
// and clones under it are usually not searchable by the postgres user).
std::filesystem::path default_data_dir();

// hint non-empty: hint itself, if it holds pg_ctl, initdb and postgres. Empty: the newest
// /usr/lib/postgresql/<N>/bin holding them. Throws storage::error "PostgreSQL server binaries not
// found in ...; install postgresql-15 or pass --pg-bin-dir".
std::filesystem::path find_pg_bin_dir(const std::filesystem::path& hint);

// The Unix socket a cluster in pgdata listens on (port 5432 in the cluster's own folder). Its path
// must fit sockaddr_un::sun_path: at most max_socket_path_bytes.
std::filesystem::path embedded_socket_path(const std::filesystem::path& pgdata);
inline constexpr std::size_t max_socket_path_bytes = 107;

// A libpq key=value conninfo for the server whose socket is in socket_dir.
std::string embedded_conninfo(const std::filesystem::path& socket_dir, const std::string& database);

class embedded_postgres {
 public:
  // initdb on first use, then start the server, or attach to the one already running on this
  // folder; then create the database if missing. Throws storage::error.
  explicit embedded_postgres(embedded_options opts);
  ~embedded_postgres();  // stop(); never throws
  embedded_postgres(const embedded_postgres&) = delete;
  embedded_postgres& operator=(const embedded_postgres&) = delete;
  embedded_postgres(embedded_postgres&&) = delete;
  embedded_postgres& operator=(embedded_postgres&&) = delete;

  // host='<socket dir>' port=5432 dbname='<database>' user='cogwheel'
  const std::string& conninfo() const;
  bool started_here() const;  // this object ran pg_ctl start
  const std::filesystem::path& pgdata() const;
  const std::filesystem::path& log_file() const;

  // Lets go of the server, and stops it (pg_ctl stop -m fast -w) when this was the last cogwheel
  // user of a server cogwheel started. Idempotent. Throws storage::error when pg_ctl stop fails.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace cogwheel::storage
