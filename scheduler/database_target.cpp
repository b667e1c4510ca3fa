#include "scheduler/database_target.hpp"

#include <libpq-fe.h>

#include "storage/pool.hpp"

namespace cogwheel::scheduler {

namespace {

// host/port/dbname of a conninfo, never its password.
std::string describe(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts == nullptr) {
    if (err) PQfreemem(err);
    return "PostgreSQL";
  }
  std::string host = "localhost", port = "5432", db;
  for (auto* o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    std::string_view k = o->keyword;
    if (k == "host" || k == "hostaddr") host = o->val;
    if (k == "port") port = o->val;
    if (k == "dbname") db = o->val;
  }
  PQconninfoFree(opts);
  return "PostgreSQL at " + host + ":" + port + (db.empty() ? "" : "/" + db);
}

}  // namespace

database_target open_database(const settings& s) {
  database_target t;
  if (!s.database_url.empty()) {
    storage::validate_conninfo(s.database_url);
    t.conninfo = s.database_url;
    t.description = describe(s.database_url);
    return t;
  }
  storage::embedded_options opts;
  opts.data_dir =
      s.data_dir.empty() ? storage::default_data_dir() : std::filesystem::path(s.data_dir);
  opts.pg_bin_dir = s.pg_bin_dir;
  t.embedded = std::make_unique<storage::embedded_postgres>(opts);
  t.conninfo = t.embedded->conninfo();
  t.description = "embedded PostgreSQL in " + std::filesystem::absolute(opts.data_dir).string() +
                  (t.embedded->started_here() ? "" : " (already running)");
  return t;
}

}  // namespace cogwheel::scheduler
