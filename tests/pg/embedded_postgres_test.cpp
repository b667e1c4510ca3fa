// The embedded PostgreSQL launcher against the installed server binaries. Each test case uses its
// own fresh folder under /tmp; every server a test starts is stopped by RAII, even on failure.
#include "storage/embedded_postgres.hpp"

#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <thread>

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using cogwheel::storage::embedded_options;
using cogwheel::storage::embedded_postgres;

namespace {

// A fresh folder under /tmp, searchable by the postgres system user, removed at the end.
class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = "/tmp/cwpg-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
    fs::permissions(path_, fs::perms(0755));
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

embedded_options options_for(const fs::path& data_dir) {
  embedded_options o;
  o.data_dir = data_dir;
  return o;
}

std::string query_one(const std::string& conninfo, const std::string& sql) {
  pqxx::connection c{conninfo};
  pqxx::work w{c};
  const pqxx::row r = w.exec1(sql);
  w.commit();
  return r[0].is_null() ? std::string() : r[0].c_str();
}

bool can_connect(const std::string& conninfo) {
  try {
    pqxx::connection c{conninfo};
    return c.is_open();
  } catch (const pqxx::broken_connection&) {
    return false;
  }
}

std::string system_identifier(const std::string& conninfo) {
  return query_one(conninfo, "SELECT system_identifier::text FROM pg_control_system()");
}

}  // namespace

TEST_CASE("embedded: conninfo quotes its values", "[pg][embedded]") {
  CHECK(cogwheel::storage::embedded_conninfo("/a b/it's\\x", "my db") ==
        R"(host='/a b/it\'s\\x' port=5432 dbname='my db' user='cogwheel')");
  CHECK(cogwheel::storage::embedded_socket_path("/v/postgres") ==
        fs::path("/v/postgres/.s.PGSQL.5432"));
}

TEST_CASE("embedded: default data folder and binaries", "[pg][embedded]") {
  if (::geteuid() == 0)
    CHECK(cogwheel::storage::default_data_dir() == fs::path("/var/lib/cogwheel"));
  else
    CHECK(cogwheel::storage::default_data_dir() == fs::current_path() / "var");
  const fs::path bin = cogwheel::storage::find_pg_bin_dir({});
  CHECK(fs::exists(bin / "pg_ctl"));
  CHECK(fs::exists(bin / "initdb"));
}

TEST_CASE("embedded: first start initialises and starts the server", "[pg][embedded]") {
  temp_dir tmp;
  const fs::path data = tmp.path() / "it's a data dir";  // a quote and spaces on every path
  embedded_postgres pg{options_for(data)};
  CHECK(pg.started_here());
  CHECK(pg.pgdata() == data / "postgres");
  CHECK(fs::exists(data / "postgres" / "PG_VERSION"));
  CHECK(fs::exists(data / "postgres.log"));
  CHECK_FALSE(fs::exists(data / "postgres.initdb"));
  CHECK(query_one(pg.conninfo(), "SELECT current_database()") == "cogwheel");
  CHECK(query_one(pg.conninfo(), "SELECT current_user") == "cogwheel");
  CHECK(query_one(pg.conninfo(), "SHOW listen_addresses").empty());  // Unix socket only
  CHECK(query_one(pg.conninfo(), "SHOW unix_socket_directories") ==
        "\"" + pg.pgdata().string() + "\"");
  CHECK(query_one(pg.conninfo(), "SHOW fsync") == "on");
  CHECK(query_one(pg.conninfo(), "SHOW synchronous_commit") == "on");
  CHECK(query_one(pg.conninfo(), "SHOW server_encoding") == "UTF8");
  if (::geteuid() == 0) {  // the server runs as the postgres system user and owns its files
    const passwd* pw = ::getpwnam("postgres");
    REQUIRE(pw != nullptr);
    struct stat st {};
    REQUIRE(::stat(pg.pgdata().c_str(), &st) == 0);
    CHECK(st.st_uid == pw->pw_uid);
    CHECK(query_one(pg.conninfo(), "SELECT pg_backend_pid()") != "");
  }
}

TEST_CASE("embedded: destruction stops the server it started", "[pg][embedded]") {
  temp_dir tmp;
  std::string conninfo;
  fs::path pgdata;
  {
    embedded_postgres pg{options_for(tmp.path() / "var")};
    conninfo = pg.conninfo();
    pgdata = pg.pgdata();
    REQUIRE(can_connect(conninfo));
    REQUIRE(fs::exists(pgdata / "postmaster.pid"));
  }
  CHECK_FALSE(fs::exists(pgdata / "postmaster.pid"));  // pg_ctl stop -w waited for it
  CHECK_FALSE(can_connect(conninfo));
}

TEST_CASE("embedded: stop() is idempotent", "[pg][embedded]") {
  temp_dir tmp;
  embedded_postgres pg{options_for(tmp.path() / "var")};
  pg.stop();
  CHECK_FALSE(fs::exists(pg.pgdata() / "postmaster.pid"));
  CHECK_NOTHROW(pg.stop());
  CHECK_FALSE(can_connect(pg.conninfo()));
}

TEST_CASE("embedded: a second start reuses the data folder", "[pg][embedded]") {
  temp_dir tmp;
  const fs::path data = tmp.path() / "var";
  std::string first_id;
  {
    embedded_postgres pg{options_for(data)};
    REQUIRE(pg.started_here());
    first_id = system_identifier(pg.conninfo());
    pqxx::connection c{pg.conninfo()};
    pqxx::work w{c};
    w.exec0("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)");
    w.commit();
  }
  embedded_postgres pg{options_for(data)};
  CHECK(pg.started_here());
  CHECK(system_identifier(pg.conninfo()) ==
        first_id);  // the same cluster: initdb did not run again
  CHECK(query_one(pg.conninfo(), "SELECT v FROM kept") == "42");
}

TEST_CASE("embedded: a second object on a running folder attaches", "[pg][embedded]") {
  temp_dir tmp;
  const fs::path data = tmp.path() / "var";
  embedded_postgres first{options_for(data)};
  REQUIRE(first.started_here());
  {
    embedded_postgres second{options_for(data)};
    CHECK_FALSE(second.started_here());
    CHECK(second.conninfo() == first.conninfo());
    CHECK(query_one(first.conninfo(), "SELECT 1") == "1");
    CHECK(query_one(second.conninfo(), "SELECT 2") == "2");
  }
  // Destroying the attached one left the server running.
  CHECK(fs::exists(first.pgdata() / "postmaster.pid"));
  CHECK(query_one(first.conninfo(), "SELECT 3") == "3");
}

TEST_CASE("embedded: the last cogwheel user stops a server another one started", "[pg][embedded]") {
  temp_dir tmp;
  const fs::path data = tmp.path() / "var";
  std::optional<embedded_postgres> starter{std::in_place, options_for(data)};
  REQUIRE(starter->started_here());
  embedded_options other = options_for(data);
  other.database = "second db";  // attaching creates a missing database too
  std::optional<embedded_postgres> attached{std::in_place, other};
  REQUIRE_FALSE(attached->started_here());
  const std::string conninfo = attached->conninfo();
  const fs::path pgdata = attached->pgdata();
  CHECK(query_one(conninfo, "SELECT current_database()") == "second db");

  starter.reset();  // a short-lived command that started the server ends while another uses it
  CHECK(fs::exists(pgdata / "postmaster.pid"));
  CHECK(query_one(conninfo, "SELECT 1") == "1");

  attached.reset();  // the last user lets go: the server stops
  CHECK_FALSE(fs::exists(pgdata / "postmaster.pid"));
  CHECK_FALSE(can_connect(conninfo));
}

TEST_CASE("embedded: a server left behind by a killed cogwheel is reused, then stopped",
          "[pg][embedded]") {
  temp_dir tmp;
  const fs::path data = tmp.path() / "var";
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // a cogwheel process that dies without running its destructors
    try {
      embedded_postgres pg{options_for(data)};
      ::_exit(pg.started_here() ? 0 : 2);  // no destructor runs
    } catch (...) {
      ::_exit(1);
    }
  }
  int status = -1;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(fs::exists(data / "postgres" / "postmaster.pid"));
  {
    embedded_postgres pg{options_for(data)};
    CHECK_FALSE(pg.started_here());  // the orphaned server still runs: attach to it
    CHECK(query_one(pg.conninfo(), "SELECT 1") == "1");
  }
  // The last user of a server cogwheel started stops it, even one it did not start itself.
  CHECK_FALSE(fs::exists(data / "postgres" / "postmaster.pid"));
}

TEST_CASE("embedded: a server that fails to start is a clear error", "[pg][embedded]") {
  temp_dir tmp;
  const fs::path data = tmp.path() / "var";
  { embedded_postgres pg{options_for(data)}; }
  std::ofstream(data / "postgres" / "postgresql.conf", std::ios::app) << "this is not a setting\n";
  CHECK_THROWS_WITH(
      embedded_postgres{options_for(data)},
      StartsWith("PostgreSQL failed to start; see " + (data / "postgres.log").string() + ": ") &&
          Contains("FATAL: configuration file") && Contains("postgresql.conf"));
  CHECK_FALSE(fs::exists(data / "postgres" / "postmaster.pid"));
}

TEST_CASE("embedded: two objects starting at once on a fresh folder", "[pg][embedded]") {
  temp_dir tmp;
  const fs::path data = tmp.path() / "var";
  std::optional<embedded_postgres> a, b;
  std::string error_a, error_b;
  auto start = [&](std::optional<embedded_postgres>& slot, std::string& err) {
    try {
      slot.emplace(options_for(data));
    } catch (const std::exception& e) {
      err = e.what();
    }
  };
  std::thread ta{start, std::ref(a), std::ref(error_a)};
  std::thread tb{start, std::ref(b), std::ref(error_b)};
  ta.join();
  tb.join();
  CHECK(error_a.empty());
  CHECK(error_b.empty());
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(a->started_here() != b->started_here());  // exactly one ran initdb and pg_ctl start
  CHECK(query_one(a->conninfo(), "SELECT 1") == "1");
  CHECK(query_one(b->conninfo(), "SELECT 1") == "1");
}

TEST_CASE("embedded: missing binaries are a clear error", "[pg][embedded]") {
  temp_dir tmp;
  const fs::path empty_bin = tmp.path() / "bin";
  fs::create_directory(empty_bin);
  embedded_options o = options_for(tmp.path() / "var");
  o.pg_bin_dir = empty_bin;
  REQUIRE_THROWS_AS(embedded_postgres{o}, cogwheel::storage::error);
  REQUIRE_THROWS_WITH(embedded_postgres{o}, "PostgreSQL server binaries not found in " +
                                                empty_bin.string() +
                                                "; install postgresql-15 or pass --pg-bin-dir");
  CHECK_THROWS_WITH(cogwheel::storage::find_pg_bin_dir(empty_bin),
                    StartsWith("PostgreSQL server binaries"));
}

TEST_CASE("embedded: a data folder that cannot be written is a clear error", "[pg][embedded]") {
  temp_dir tmp;
  const fs::path file = tmp.path() / "a-file";
  std::ofstream(file) << "not a folder";
  CHECK_THROWS_WITH(embedded_postgres{options_for(file / "var")},
                    "data folder " + (file / "var").string() + " is not writable: Not a directory");
  CHECK_THROWS_WITH(embedded_postgres{options_for("/proc/cogwheel-test/var")},
                    StartsWith("data folder /proc/cogwheel-test/var is not writable: "));
}

TEST_CASE("embedded: a data folder path too long for a Unix socket is a clear error",
          "[pg][embedded]") {
  temp_dir tmp;
  const fs::path data = tmp.path() / std::string(100, 'd');
  const auto expected_bytes = (data / "postgres" / ".s.PGSQL.5432").string().size();
  CHECK_THROWS_WITH(embedded_postgres{options_for(data)},
                    "data folder path too long for a Unix socket (" +
                        std::to_string(expected_bytes) +
                        " > 107 bytes): pass a shorter --data-dir");
  CHECK_FALSE(fs::exists(data));  // refused before touching anything
}

TEST_CASE("embedded: a folder the postgres user cannot reach is a clear error", "[pg][embedded]") {
  if (::geteuid() != 0) {
    WARN("not root: the server runs as the current user, nothing to check");
    return;
  }
  temp_dir tmp;
  const fs::path closed = tmp.path() / "closed";
  fs::create_directory(closed);
  fs::permissions(closed, fs::perms(0700));
  CHECK_THROWS_WITH(
      embedded_postgres{options_for(closed / "var")},
      StartsWith("the postgres system user cannot reach " + (closed / "var").string()) &&
          Contains("--data-dir"));
  CHECK_FALSE(fs::exists(closed / "var"));  // refused before creating anything
}

TEST_CASE("embedded: a postgres folder that is not a cluster is refused", "[pg][embedded]") {
  temp_dir tmp;
  const fs::path data = tmp.path() / "var";
  fs::create_directories(data / "postgres");
  std::ofstream(data / "postgres" / "stray") << "x";
  CHECK_THROWS_WITH(embedded_postgres{options_for(data)}, Contains("holds no PostgreSQL cluster"));
  CHECK(fs::exists(data / "postgres" / "stray"));
}
