#include "storage/pool.hpp"

#include <libpq-fe.h>

#include <memory>
#include <stdexcept>

namespace cogwheel::storage {

namespace {
std::string first_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (auto nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
  return s;
}
}  // namespace

void pool_options::validate() const {
  if (size == 0) throw std::invalid_argument("database pool size must be at least 1");
  if (statement_timeout.count() < 0) throw std::invalid_argument("statement timeout must be >= 0");
  if (acquire_timeout.count() <= 0) throw std::invalid_argument("pool acquire timeout must be > 0");
  validate_conninfo(conninfo);
}

namespace {
using parsed_conninfo = std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)>;

parsed_conninfo parse_conninfo(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts == nullptr) {
    std::string why = err ? first_line(err) : "out of memory";
    if (err) PQfreemem(err);
    throw error("malformed DATABASE_URL: " + why);
  }
  return {opts, &PQconninfoFree};
}

std::string quote_value(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\\' || c == '\'') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}
}  // namespace

void validate_conninfo(const std::string& conninfo) {
  parse_conninfo(conninfo);
}

std::string normalize_conninfo(const std::string& conninfo,
                               const std::vector<std::pair<std::string, std::string>>& defaults) {
  auto opts = parse_conninfo(conninfo);
  std::string out;
  auto append = [&](const std::string& key, const std::string& value) {
    if (!out.empty()) out.push_back(' ');
    out += key + "=" + quote_value(value);
  };
  for (auto* o = opts.get(); o->keyword != nullptr; ++o) {
    if (o->val != nullptr) append(o->keyword, o->val);
  }
  for (const auto& [key, value] : defaults) {
    bool present = false;
    for (auto* o = opts.get(); o->keyword != nullptr; ++o) {
      if (key == o->keyword && o->val != nullptr) present = true;
    }
    if (!present) append(key, value);
  }
  return out;
}

connection_pool::connection_pool(pool_options opts) : opts_(std::move(opts)) {
  opts_.validate();
  full_conninfo_ = normalize_conninfo(
      opts_.conninfo, {{"connect_timeout", std::to_string(opts_.connect_timeout.count())},
                       {"application_name", opts_.application_name}});
}

connection_pool::~connection_pool() = default;

std::unique_ptr<pqxx::connection> connection_pool::connect() {
  try {
    auto conn = std::make_unique<pqxx::connection>(full_conninfo_);
    pqxx::nontransaction tx(*conn);
    // No JIT: it compiles any statement the planner estimates as costly, which for the short
    // statements here (a batch joined with a table whose statistics lag) costs tens of
    // milliseconds each (bench/README.md, "Stale plans on growing tables").
    tx.exec("SET statement_timeout = " + std::to_string(opts_.statement_timeout.count()) +
            "; SET jit = off");
    return conn;
  } catch (const pqxx::broken_connection& e) {
    throw unavailable("database unreachable: " + first_line(e.what()));
  }
}

connection_pool::lease connection_pool::acquire() {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, opts_.acquire_timeout,
                    [&] { return !idle_.empty() || open_ < opts_.size; })) {
    throw unavailable("no database connection free within " +
                      std::to_string(opts_.acquire_timeout.count()) + " ms");
  }
  if (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    return {std::move(conn), true};
  }
  ++open_;
  lock.unlock();
  try {
    return {connect(), false};
  } catch (...) {
    lock.lock();
    --open_;
    cv_.notify_one();
    throw;
  }
}

void connection_pool::release(std::unique_ptr<pqxx::connection> conn, bool healthy) {
  std::unique_ptr<pqxx::connection> doomed;
  {
    std::lock_guard lock(mu_);
    if (healthy && conn) {
      idle_.push_back(std::move(conn));
    } else {
      doomed = std::move(conn);
      --open_;
    }
  }
  cv_.notify_one();
  // doomed's socket closes here, outside the lock.
}

void connection_pool::drop_idle() {
  std::vector<std::unique_ptr<pqxx::connection>> doomed;
  {
    std::lock_guard lock(mu_);
    open_ -= idle_.size();
    doomed.swap(idle_);
  }
  cv_.notify_all();
}

std::size_t connection_pool::open_connections() const {
  std::lock_guard lock(mu_);
  return open_;
}

}  // namespace cogwheel::storage
