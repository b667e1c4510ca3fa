#include "scheduler/container_pool.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

extern char** environ;

namespace cogwheel::scheduler {

namespace asio = boost::asio;
using nlohmann::json;

struct container_pool::container {
  std::string id;  // base URL
  std::string version_id;
  bool process = false;
  int slots = 1;
  std::set<std::string> running;
  int reserved = 0;  // slots reserved for a claim in progress
  container_health health = container_health::unknown;
  int restarts = 0;
  // process runtime
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  pid_t pid = 0;
  bool gone = false;  // replaced or stopped: its watcher ends
  asio::steady_timer timer;
  explicit container(asio::io_context& ioc) : timer(ioc) {}

  // Slots free for a new prediction of one of `versions` (empty: of any version); with
  // `counting_reserved`, reserved slots count as free.
  int free_for(const std::vector<std::string>& versions, bool counting_reserved = false) const {
    if (health != container_health::ready || gone) return 0;
    if (!versions.empty() &&
        std::find(versions.begin(), versions.end(), version_id) == versions.end()) {
      return 0;
    }
    return slots - static_cast<int>(running.size()) - (counting_reserved ? 0 : reserved);
  }
};

const char* to_string(container_health h) {
  switch (h) {
    case container_health::unknown:
      return "unknown";
    case container_health::starting:
      return "STARTING";
    case container_health::ready:
      return "READY";
    case container_health::busy:
      return "BUSY";
    case container_health::setup_failed:
      return "SETUP_FAILED";
    case container_health::defunct:
      return "DEFUNCT";
    case container_health::unreachable:
      return "unreachable";
  }
  return "unknown";
}

container_health parse_health(std::string_view s) {
  if (s == "STARTING") return container_health::starting;
  if (s == "READY") return container_health::ready;
  if (s == "BUSY") return container_health::busy;
  if (s == "SETUP_FAILED") return container_health::setup_failed;
  if (s == "DEFUNCT") return container_health::defunct;
  return container_health::unknown;
}

namespace {

// A free TCP port on the loopback interface (the kernel picks it; the socket is closed again).
int free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error("cannot pick a free port: " + why);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Starts argv with env; the child dies with this process (PR_SET_PDEATHSIG) and has its own
// process group. Everything the child touches is prepared before fork().
pid_t start_process(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  int pipefd[2];  // reports exec failure: closed on exec success (O_CLOEXEC)
  if (::pipe2(pipefd, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execvpe(cargv[0], cargv.data(), cenv.data());
    const int err = errno;
    [[maybe_unused]] auto n = ::write(pipefd[1], &err, sizeof err);
    ::_exit(127);
  }
  ::close(pipefd[1]);
  int err = 0;
  const auto n = ::read(pipefd[0], &err, sizeof err);
  ::close(pipefd[0]);
  if (n == static_cast<ssize_t>(sizeof err)) {
    ::waitpid(pid, nullptr, 0);
    throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(err));
  }
  return pid;
}

}  // namespace

container_pool::container_pool(asio::io_context& ioc, http::client& client,
                               const storage::catalog_spec& spec, container_pool_options opts)
    : ioc_(ioc), client_(client), opts_(std::move(opts)) {
  for (const auto& model : spec.models) {
    for (const auto& v : model.versions) {
      const json rt = json::parse(v.runtime_json, nullptr, false);
      if (!rt.is_object()) continue;
      const int slots = rt.value("slots", 1);
      const std::string type = rt.value("type", "");
      if (type == "static") {
        for (const auto& url : rt.value("urls", json::array())) {
          auto c = std::make_shared<container>(ioc_);
          c->id = url.get<std::string>();
          while (c->id.ends_with('/')) c->id.pop_back();
          c->version_id = v.id;
          c->slots = slots;
          containers_.push_back(std::move(c));
        }
      } else if (type == "process") {
        const int instances = rt.value("instances", 1);
        for (int i = 0; i < instances; ++i) {
          auto c = std::make_shared<container>(ioc_);
          c->version_id = v.id;
          c->process = true;
          c->slots = slots;
          for (const auto& a : rt.value("command", json::array()))
            c->argv.push_back(a.get<std::string>());
          if (!c->argv.empty() && c->argv[0].find('/') != std::string::npos &&
              std::filesystem::path(c->argv[0]).is_relative()) {
            c->argv[0] = (opts_.config_dir / c->argv[0]).lexically_normal().string();
          }
          const json env = rt.value("env", json::object());  // named: items() must not dangle
          for (const auto& [k, val] : env.items()) {
            c->env[k] = val.is_string() ? val.get<std::string>() : val.dump();
          }
          containers_.push_back(std::move(c));
        }
      }
    }
  }
}

container_pool::~container_pool() {
  stop();
}

void container_pool::spawn(container& c) {
  const int port = free_loopback_port();
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    const auto name = kv.substr(0, kv.find('='));
    if (name == "PORT" || name == "WEBHOOK_AUTH_TOKEN" || name == "COG_UPLOAD_URL" ||
        c.env.contains(std::string(name))) {
      continue;
    }
    env.emplace_back(kv);
  }
  env.push_back("PORT=" + std::to_string(port));
  if (!opts_.callback_token.empty()) env.push_back("WEBHOOK_AUTH_TOKEN=" + opts_.callback_token);
  if (!opts_.upload_url.empty()) env.push_back("COG_UPLOAD_URL=" + opts_.upload_url);
  for (const auto& [k, v] : c.env) env.push_back(k + "=" + v);
  // Cog's server takes the upload URL as an argument (python -m cog.server.http --upload-url).
  std::vector<std::string> argv = c.argv;
  if (!opts_.upload_url.empty()) {
    argv.push_back("--upload-url");
    argv.push_back(opts_.upload_url);
  }
  c.pid = start_process(argv, env);
  c.id = "http://127.0.0.1:" + std::to_string(port);
  c.reserved = 0;  // reservations named the old address: they settle as unknown
  c.health = container_health::starting;
  spdlog::info("started container {} (pid {}) for version {}", c.id, c.pid,
               c.version_id.substr(0, 12));
}

void container_pool::start() {
  std::vector<std::shared_ptr<container>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& c : containers_) {
      if (c->process) {
        try {
          spawn(*c);
        } catch (const std::exception& e) {
          spdlog::error("version {}: {}", c->version_id.substr(0, 12), e.what());
          c->health = container_health::defunct;
        }
      }
    }
    all = containers_;
  }
  // Outside the lock: a watcher takes it.
  for (auto& c : all) {
    ++watchers_;
    asio::co_spawn(ioc_, watch(c), asio::detached);
  }
}

void container_pool::stop() {
  if (stopping_.exchange(true)) return;
  std::vector<std::shared_ptr<container>> all;
  {
    std::lock_guard lock(mu_);
    all = containers_;
    for (auto& c : all) {
      c->gone = true;
      asio::post(c->timer.get_executor(), [c] { c->timer.cancel(); });
    }
  }
  for (auto& c : all) {
    if (c->pid > 0) ::kill(c->pid, SIGTERM);
  }
  const auto until = std::chrono::steady_clock::now() + opts_.stop_grace;
  for (auto& c : all) {
    if (c->pid <= 0) continue;
    while (::waitpid(c->pid, nullptr, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= until) {
        spdlog::warn("container {} (pid {}) ignored SIGTERM; killing it", c->id, c->pid);
        ::kill(c->pid, SIGKILL);
        ::waitpid(c->pid, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    c->pid = 0;
  }
  // Watchers end at their next wake-up (their timers were canceled); wait for them, bounded.
  const auto watch_until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (watchers_ > 0 && std::chrono::steady_clock::now() < watch_until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

asio::awaitable<void> container_pool::watch(std::shared_ptr<container> c) {
  auto backoff = std::chrono::milliseconds(500);
  while (!stopping_ && !c->gone) {
    if (c->process && c->pid > 0) {
      int status = 0;
      if (::waitpid(c->pid, &status, WNOHANG) == c->pid) {
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        std::vector<std::string> held;
        std::string old_id;
        {
          std::lock_guard lock(mu_);
          old_id = c->id;
          held.assign(c->running.begin(), c->running.end());
          for (const auto& id : held) holders_.erase(id);
          c->running.clear();
          c->health = container_health::defunct;
          c->pid = 0;
        }
        spdlog::warn("container {} exited with code {}; restarting in {} ms", old_id, code,
                     backoff.count());
        if (on_lost) on_lost(old_id, std::move(held));
        c->timer.expires_after(backoff);
        co_await c->timer.async_wait(asio::as_tuple(asio::use_awaitable));
        if (stopping_ || c->gone) break;
        backoff = std::min(backoff * 2, std::chrono::milliseconds(30'000));
        std::lock_guard lock(mu_);
        try {
          spawn(*c);
          ++c->restarts;
        } catch (const std::exception& e) {
          spdlog::error("cannot restart container for version {}: {}", c->version_id.substr(0, 12),
                        e.what());
          c->pid = -1;  // not running: tried again below
        }
        continue;
      }
    }
    if (c->process && c->pid < 0) {
      c->timer.expires_after(backoff);
      co_await c->timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (stopping_ || c->gone) break;
      std::lock_guard lock(mu_);
      try {
        spawn(*c);
        ++c->restarts;
      } catch (const std::exception&) {
        backoff = std::min(backoff * 2, std::chrono::milliseconds(30'000));
      }
      continue;
    }
    co_await check_health(*c);
    if (c->health == container_health::ready) backoff = std::chrono::milliseconds(500);
    // Poll fast while a container boots, at the configured interval once it is up.
    const bool booting = c->health == container_health::starting ||
                         c->health == container_health::unknown ||
                         (c->process && c->health == container_health::unreachable);
    c->timer.expires_after(booting ? std::min(opts_.health_interval, std::chrono::milliseconds(50))
                                   : opts_.health_interval);
    co_await c->timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  --watchers_;
}

asio::awaitable<void> container_pool::check_health(container& c) {
  http::client_request req;
  req.method = http::bhttp::verb::get;
  {
    std::lock_guard lock(mu_);
    req.url = c.id + "/health-check";
  }
  req.connect_timeout = opts_.health_timeout;
  req.total_timeout = opts_.health_timeout;
  auto res = co_await client_.send(req);
  container_health h = container_health::unreachable;
  if (res.error.empty() && res.status == 200) {
    const json body = json::parse(res.body, nullptr, false);
    if (body.is_object() && body.contains("status") && body["status"].is_string()) {
      h = parse_health(body["status"].get<std::string>());
    }
  }
  bool capacity = false;
  std::vector<std::string> stranded;  // held by a container that just turned bad
  {
    std::lock_guard lock(mu_);
    const bool bad = h == container_health::setup_failed || h == container_health::defunct ||
                     h == container_health::unreachable;
    const bool was_bad = c.health == container_health::setup_failed ||
                         c.health == container_health::defunct ||
                         c.health == container_health::unreachable;
    if (bad && !was_bad) stranded.assign(c.running.begin(), c.running.end());
    if (h != c.health) {
      spdlog::log(h == container_health::ready || h == container_health::busy ? spdlog::level::info
                                                                              : spdlog::level::warn,
                  "container {}: {} -> {}{}", c.id, to_string(c.health), to_string(h),
                  res.error.empty() ? "" : " (" + res.error + ")");
    }
    capacity = h == container_health::ready && c.health != container_health::ready;
    c.health = h;
  }
  if (capacity) notify_capacity();
  if (!stranded.empty() && on_unhealthy) on_unhealthy(c.id, h, std::move(stranded));
}

void container_pool::notify_capacity() {
  if (on_capacity) on_capacity();
}

std::map<std::string, std::vector<std::string>> container_pool::reserve(
    const std::vector<std::string>& versions, std::size_t max_per_version) {
  std::map<std::string, std::vector<std::string>> out;
  std::lock_guard lock(mu_);
  for (auto& c : containers_) {
    const int free = c->free_for(versions);
    if (free <= 0) continue;
    auto& list = out[c->version_id];
    for (int i = 0; i < free && list.size() < max_per_version; ++i) {
      list.push_back(c->id);
      ++c->reserved;
    }
    if (list.empty()) out.erase(c->version_id);
  }
  return out;
}

bool container_pool::has_free_slot(const std::vector<std::string>& versions) {
  std::lock_guard lock(mu_);
  return std::any_of(containers_.begin(), containers_.end(),
                     [&](const auto& c) { return c->free_for(versions) > 0; });
}

bool container_pool::has_room(const std::vector<std::string>& versions) {
  std::lock_guard lock(mu_);
  return std::any_of(containers_.begin(), containers_.end(),
                     [&](const auto& c) { return c->free_for(versions, true) > 0; });
}

bool container_pool::confirm(const std::string& container_id, const std::string& prediction_id) {
  std::lock_guard lock(mu_);
  for (auto& c : containers_) {
    if (c->id == container_id && !c->gone) {
      if (c->reserved > 0) --c->reserved;
      c->running.insert(prediction_id);
      holders_[prediction_id] = container_id;
      return true;
    }
  }
  return false;
}

void container_pool::unreserve(const std::string& container_id) {
  std::lock_guard lock(mu_);
  for (auto& c : containers_) {
    if (c->id == container_id && c->reserved > 0) {
      --c->reserved;
      break;
    }
  }
}

bool container_pool::acquire(const std::string& container_id, const std::string& prediction_id) {
  std::lock_guard lock(mu_);
  for (auto& c : containers_) {
    if (c->id == container_id && !c->gone) {
      c->running.insert(prediction_id);
      holders_[prediction_id] = container_id;
      return true;
    }
  }
  return false;
}

std::optional<std::string> container_pool::release(const std::string& prediction_id) {
  std::optional<std::string> holder;
  bool capacity = false;
  {
    std::lock_guard lock(mu_);
    auto it = holders_.find(prediction_id);
    if (it == holders_.end()) return std::nullopt;
    holder = it->second;
    holders_.erase(it);
    for (auto& c : containers_) {
      if (c->id == *holder) {
        c->running.erase(prediction_id);
        capacity = c->health == container_health::ready;
      }
    }
  }
  if (capacity) notify_capacity();
  return holder;
}

void container_pool::mark(const std::string& container_id, container_health h) {
  std::lock_guard lock(mu_);
  for (auto& c : containers_) {
    if (c->id == container_id && c->health != h) {
      spdlog::info("container {}: {} -> {} (dispatch)", c->id, to_string(c->health), to_string(h));
      c->health = h;
    }
  }
}

std::optional<std::string> container_pool::holder(const std::string& prediction_id) {
  std::lock_guard lock(mu_);
  auto it = holders_.find(prediction_id);
  if (it == holders_.end()) return std::nullopt;
  return it->second;
}

bool container_pool::is_process(const std::string& container_id) {
  std::lock_guard lock(mu_);
  for (const auto& c : containers_) {
    if (c->id == container_id) return c->process;
  }
  return false;
}

std::optional<container_snapshot> container_pool::find(const std::string& container_id) {
  for (auto& c : snapshot()) {
    if (c.id == container_id) return c;
  }
  return std::nullopt;
}

std::optional<std::string> container_pool::version_of(const std::string& container_id) {
  if (auto c = find(container_id)) return c->version_id;
  return std::nullopt;
}

bool container_pool::has_alternative(const std::string& version, const std::string& except) {
  std::lock_guard lock(mu_);
  for (const auto& c : containers_) {
    if (c->version_id != version || c->id == except || c->gone) continue;
    if (c->health == container_health::ready || c->health == container_health::busy ||
        c->health == container_health::starting || c->health == container_health::unknown) {
      return true;
    }
  }
  return false;
}

std::vector<std::pair<std::string, std::string>> container_pool::held(bool process_only) {
  std::vector<std::pair<std::string, std::string>> out;
  std::lock_guard lock(mu_);
  for (const auto& c : containers_) {
    if (process_only && !c->process) continue;
    for (const auto& id : c->running) out.emplace_back(id, c->id);
  }
  return out;
}

std::vector<container_snapshot> container_pool::snapshot() {
  std::vector<container_snapshot> out;
  std::lock_guard lock(mu_);
  for (const auto& c : containers_) {
    out.push_back({c->id, c->version_id, c->process ? "process" : "static", c->health, c->slots,
                   static_cast<int>(c->running.size()), c->restarts, c->pid});
  }
  return out;
}

}  // namespace cogwheel::scheduler
