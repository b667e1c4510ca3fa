#pragma once
// Which PostgreSQL the service uses: DATABASE_URL, or the embedded one in the data folder.
#include <memory>
#include <string>

#include "scheduler/settings.hpp"
#include "storage/embedded_postgres.hpp"

namespace cogwheel::scheduler {

struct database_target {
  std::unique_ptr<storage::embedded_postgres> embedded;  // null with DATABASE_URL
  std::string conninfo;
  std::string description;  // for the log: "embedded PostgreSQL in /x" or the URL without password
};

// Validates DATABASE_URL, or starts (or attaches to) the embedded server.
database_target open_database(const settings& s);

}  // namespace cogwheel::scheduler
