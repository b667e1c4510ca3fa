#include "storage/embedded_postgres.hpp"

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <system_error>
#include <utility>
#include <vector>

namespace cogwheel::storage {
namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* pg_root = "/usr/lib/postgresql";
constexpr const char* superuser = "cogwheel";  // initdb -U: the cluster's bootstrap superuser
constexpr int port = 5432;

std::string errno_text(int e) {
  return std::error_code(e, std::generic_category()).message();
}

// ---------------------------------------------------------------------------------------------
// Small helpers

class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

// The line of a tool's output or of the server log worth showing: the last error-looking line,
// else the last non-empty one.
std::string meaningful_line(std::string_view text) {
  std::string last, last_error;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    line = trim(line);
    if (line.empty()) continue;
    last = line;
    for (const char* mark : {"FATAL:", "PANIC:", "ERROR:", "error:", "could not", "fatal:"}) {
      if (const auto at = line.find(mark); at != std::string::npos) {
        // Server log lines start with a timestamp and a pid: keep what follows them.
        last_error = mark[0] == 'c' ? line : line.substr(at);
        if (const auto gap = last_error.find(":  "); gap != std::string::npos)
          last_error.erase(gap + 1, 1);
        break;
      }
    }
  }
  return last_error.empty() ? last : last_error;
}

std::string read_file_from(const fs::path& p, std::uintmax_t offset) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return {};
  in.seekg(static_cast<std::streamoff>(offset));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::optional<std::string> read_small_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// A libpq conninfo value: single-quoted, with \ and ' escaped.
std::string conninfo_value(std::string_view v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  return out + "'";
}

// A POSIX shell word: pg_ctl hands its -o options to /bin/sh.
std::string shell_word(std::string_view v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

// Waits for a condition that offers no notification (a flock, a server coming up), a short
// nap at a time, until deadline. Returns whether the condition held.
template <class F>
bool poll_until(steady::time_point deadline, F&& condition) {
  for (;;) {
    if (condition()) return true;
    if (steady::now() >= deadline) return false;
    ::poll(nullptr, 0, 25);
  }
}

// ---------------------------------------------------------------------------------------------
// Child processes: fork + exec with an explicit argv and environment, no shell, as the server
// user when we are root. Between fork and exec only async-signal-safe calls.

struct credentials {
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

void child_write(const char* s) {
  ssize_t ignored = ::write(STDERR_FILENO, s, std::char_traits<char>::length(s));
  (void)ignored;
}

// In the child: reset signals, set up fds 0-2 (stdin and stdout from /dev/null, stderr to
// err_fd), close everything else, switch user, chdir("/"). Returns false on failure.
bool child_setup(const credentials& cred, int devnull, int err_fd) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < 32; ++s) {
    if (s != SIGKILL && s != SIGSTOP) sigaction(s, &dfl, nullptr);
  }
  if (::dup2(devnull, STDIN_FILENO) < 0 || ::dup2(devnull, STDOUT_FILENO) < 0 ||
      ::dup2(err_fd, STDERR_FILENO) < 0)
    return false;
  if (::close_range(3, ~0U, 0) != 0) {
    for (int fd = 3; fd < 4096; ++fd) ::close(fd);
  }
  if (cred.switch_user) {
    if (::setgroups(cred.groups.size(), cred.groups.data()) != 0 || ::setgid(cred.gid) != 0 ||
        ::setuid(cred.uid) != 0) {
      child_write("cogwheel: could not switch to the postgres system user\n");
      return false;
    }
  }
  if (::chdir("/") != 0) return false;
  return true;
}

// Waits for pid to exit, reading its stderr from err_fd (non-blocking) meanwhile. Kills it at
// the deadline. Always reaps it.
struct exit_info {
  int status = -1;  // waitpid status
  bool timed_out = false;
  std::string err;
};

exit_info wait_child(pid_t pid, int err_fd, steady::time_point deadline) {
  exit_info out;
  // syscall(): glibc 2.36's <sys/pidfd.h> lacks extern "C", so its pidfd_open does not link from
  // C++.
  unique_fd pidfd{static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))};
  std::array<pollfd, 2> fds{{{err_fd, POLLIN, 0}, {pidfd.get(), POLLIN, 0}}};
  bool exited = false;
  auto drain = [&] {
    std::array<char, 4096> buf{};
    for (;;) {
      const ssize_t n = ::read(fds[0].fd, buf.data(), buf.size());
      if (n > 0) {
        out.err.append(buf.data(), static_cast<std::size_t>(n));
        if (out.err.size() > 65536) out.err.erase(0, out.err.size() - 65536);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) fds[0].fd = -1;  // EOF
      return;                      // EOF or EAGAIN
    }
  };
  // With a pidfd: until the child exits (a grandchild may hold stderr open). Without: until EOF.
  while (pidfd ? !exited : fds[0].fd >= 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    if (left <= 0ms) {
      ::kill(pid, SIGKILL);
      out.timed_out = true;
      break;
    }
    const int r =
        ::poll(fds.data(), fds.size(), static_cast<int>(std::min<long>(left.count(), 1000)));
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    if (fds[0].revents != 0) drain();
    if (fds[1].revents != 0) {
      exited = true;
      fds[1].fd = -1;
    }
  }
  if (fds[0].fd >= 0) drain();  // whatever the child wrote before it exited
  while (::waitpid(pid, &out.status, 0) < 0 && errno == EINTR) {
  }
  return out;
}

struct run_result {
  bool ok = false;      // exited with status 0
  std::string message;  // the meaningful stderr line, or why it did not run
};

run_result run(const std::vector<std::string>& argv, const credentials& cred,
               const std::vector<std::string>& env, std::chrono::seconds timeout) {
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);

  unique_fd devnull{::open("/dev/null", O_RDWR | O_CLOEXEC)};
  std::array<int, 2> p{-1, -1};
  if (!devnull || ::pipe2(p.data(), O_CLOEXEC) != 0)
    return {false, "cannot run " + argv[0] + ": " + errno_text(errno)};
  unique_fd rd{p[0]}, wr{p[1]};
  const pid_t pid = ::fork();
  if (pid < 0) return {false, "cannot run " + argv[0] + ": " + errno_text(errno)};
  if (pid == 0) {
    if (child_setup(cred, devnull.get(), wr.get())) {
      ::execve(cargv[0], cargv.data(), cenv.data());
      child_write("cogwheel: could not execute ");
      child_write(cargv[0]);
      child_write("\n");
    }
    ::_exit(127);
  }
  wr.reset();
  ::fcntl(rd.get(), F_SETFL, ::fcntl(rd.get(), F_GETFL) | O_NONBLOCK);
  const exit_info info = wait_child(pid, rd.get(), steady::now() + timeout);
  const std::string line = meaningful_line(info.err);
  if (info.timed_out)
    return {false, argv[0] + " did not finish within " + std::to_string(timeout.count()) + " s" +
                       (line.empty() ? "" : ": " + line)};
  if (WIFEXITED(info.status) && WEXITSTATUS(info.status) == 0) return {true, line};
  std::string why = WIFSIGNALED(info.status)
                        ? "killed by signal " + std::to_string(WTERMSIG(info.status))
                        : "exit status " + std::to_string(WEXITSTATUS(info.status));
  return {false, line.empty() ? why : line};
}

// Whether the server user can search path (and so every folder above it): access(X_OK) in a
// child that has switched user. Returns 0 or the errno.
int child_access(const credentials& cred, const fs::path& path) {
  const std::string p = path.string();
  unique_fd devnull{::open("/dev/null", O_RDWR | O_CLOEXEC)};
  if (!devnull) return errno;
  const pid_t pid = ::fork();
  if (pid < 0) return errno;
  if (pid == 0) {
    if (!child_setup(cred, devnull.get(), devnull.get())) ::_exit(255);
    ::_exit(::access(p.c_str(), X_OK) == 0 ? 0 : (errno & 0xff));
  }
  const exit_info info = wait_child(pid, devnull.get(), steady::now() + 10s);
  if (info.timed_out || !WIFEXITED(info.status)) return EIO;
  return WEXITSTATUS(info.status) == 255 ? EPERM : WEXITSTATUS(info.status);
}

credentials postgres_credentials() {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwnam_r("postgres", &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr)
    throw error(
        "postgres system user not found: install postgresql-15 (PostgreSQL refuses to run as "
        "root)");
  credentials c;
  c.switch_user = true;
  c.uid = pw.pw_uid;
  c.gid = pw.pw_gid;
  int n = 32;
  for (int attempt = 0; attempt < 4; ++attempt) {
    c.groups.resize(static_cast<std::size_t>(n));
    if (::getgrouplist(pw.pw_name, pw.pw_gid, c.groups.data(), &n) >= 0) {
      c.groups.resize(static_cast<std::size_t>(n));
      return c;
    }
  }
  c.groups = {pw.pw_gid};
  return c;
}

// ---------------------------------------------------------------------------------------------
// Finding the server binaries

bool has_server_binaries(const fs::path& dir) {
  for (const char* tool : {"pg_ctl", "initdb", "postgres"}) {
    std::error_code ec;
    const fs::path p = dir / tool;
    if (!fs::is_regular_file(p, ec) || ::access(p.c_str(), X_OK) != 0) return false;
  }
  return true;
}

[[noreturn]] void binaries_not_found(const fs::path& where) {
  throw error("PostgreSQL server binaries not found in " + where.string() +
              "; install postgresql-15 or pass --pg-bin-dir");
}

// "15" -> {15, 0}, "9.6" -> {9, 6}; nullopt for other names.
std::optional<std::pair<int, int>> version_of(const std::string& name) {
  std::pair<int, int> v{0, 0};
  const char* end = name.data() + name.size();
  auto [p, ec] = std::from_chars(name.data(), end, v.first);
  if (ec != std::errc{} || p == name.data()) return std::nullopt;
  if (p != end) {
    if (*p != '.') return std::nullopt;
    auto [q, ec2] = std::from_chars(p + 1, end, v.second);
    if (ec2 != std::errc{} || q != end) return std::nullopt;
  }
  return v;
}

// The binaries for pgdata: --pg-bin-dir when given; else those of the version that created the
// cluster when installed (a newer major cannot open it); else the newest.
fs::path bin_dir_for(const fs::path& hint, const fs::path& pgdata) {
  if (hint.empty()) {
    if (auto v = read_small_file(pgdata / "PG_VERSION")) {
      const fs::path dir = fs::path(pg_root) / trim(*v) / "bin";
      if (version_of(trim(*v)) && has_server_binaries(dir)) return dir;
    }
  }
  return find_pg_bin_dir(hint);
}

// ---------------------------------------------------------------------------------------------
// Locks

// flock with a deadline (flock itself cannot time out).
bool lock_until(int fd, int op, steady::time_point deadline) {
  return poll_until(deadline, [&] { return ::flock(fd, op | LOCK_NB) == 0; });
}

struct flock_guard {
  int fd;
  ~flock_guard() { ::flock(fd, LOCK_UN); }
};

fs::path normalised_data_dir(const fs::path& p) {
  if (p.empty()) throw error("no data folder given: pass --data-dir");
  std::error_code ec;
  fs::path abs = fs::absolute(p, ec).lexically_normal();
  if (ec) throw error("cannot resolve data folder " + p.string() + ": " + ec.message());
  if (!abs.has_filename() && abs.has_relative_path()) abs = abs.parent_path();
  // pg_ctl puts -D and -l inside double quotes in a shell command line.
  if (abs.string().find_first_of("\"\\$`\n") != std::string::npos)
    throw error("data folder path " + abs.string() +
                " contains a character pg_ctl cannot quote (\" \\ $ ` or a newline): pass another "
                "--data-dir");
  return abs;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Free functions

fs::path default_data_dir() {
  if (::geteuid() == 0) return "/var/lib/cogwheel";
  return fs::absolute("var");
}

fs::path find_pg_bin_dir(const fs::path& hint) {
  if (!hint.empty()) {
    if (has_server_binaries(hint)) return fs::absolute(hint).lexically_normal();
    binaries_not_found(hint);
  }
  std::optional<std::pair<std::pair<int, int>, fs::path>> best;
  std::error_code ec;
  for (fs::directory_iterator it(pg_root, ec), end; !ec && it != end; it.increment(ec)) {
    const auto v = version_of(it->path().filename().string());
    if (v && has_server_binaries(it->path() / "bin") && (!best || best->first < *v))
      best.emplace(*v, it->path() / "bin");
  }
  if (!best) binaries_not_found(pg_root);
  return best->second;
}

fs::path embedded_socket_path(const fs::path& pgdata) {
  return pgdata / (".s.PGSQL." + std::to_string(port));
}

std::string embedded_conninfo(const fs::path& socket_dir, const std::string& database) {
  return "host=" + conninfo_value(socket_dir.string()) + " port=" + std::to_string(port) +
         " dbname=" + conninfo_value(database) + " user=" + conninfo_value(superuser);
}

// ---------------------------------------------------------------------------------------------
// embedded_postgres

struct embedded_postgres::impl {
  embedded_options opts;
  fs::path pgdata, log_file, bin_dir;
  std::string conninfo, admin_conninfo;
  credentials server_user;  // who runs initdb and pg_ctl
  std::vector<std::string> env;
  unique_fd lock_fd;   // .embedded.lock: flocked around decisions
  unique_fd users_fd;  // .embedded.users: LOCK_SH while this object uses the server
  bool started_here = false;

  explicit impl(embedded_options o);
  void prepare_data_dir();
  void start_or_attach();
  bool server_answers(steady::time_point deadline) const;
  void initdb_once();
  void start_server();
  void stop_server();
  void ensure_database() const;
  void release();
  std::string postmaster_identity() const;
  fs::path marker() const { return opts.data_dir / ".embedded.started"; }
  steady::time_point lock_deadline() const { return steady::now() + 3 * opts.start_timeout + 60s; }

  void chown_to_server(const fs::path& p) const {
    if (server_user.switch_user && ::chown(p.c_str(), server_user.uid, server_user.gid) != 0)
      throw error("cannot hand " + p.string() +
                  " to the postgres system user: " + errno_text(errno));
  }
  fs::path tool(const char* name) const { return bin_dir / name; }
};

embedded_postgres::impl::impl(embedded_options o) : opts(std::move(o)) {
  opts.data_dir = normalised_data_dir(opts.data_dir);
  if (opts.database.empty()) throw error("no database name given for the embedded PostgreSQL");
  if (opts.start_timeout <= 0s) opts.start_timeout = 60s;
  pgdata = opts.data_dir / "postgres";
  log_file = opts.data_dir / "postgres.log";
  const std::string socket = embedded_socket_path(pgdata).string();
  if (socket.size() > max_socket_path_bytes)
    throw error("data folder path too long for a Unix socket (" + std::to_string(socket.size()) +
                " > " + std::to_string(max_socket_path_bytes) +
                " bytes): pass a shorter --data-dir");
  conninfo = embedded_conninfo(pgdata, opts.database);
  admin_conninfo = embedded_conninfo(pgdata, "postgres") + " connect_timeout=10";
  bin_dir = bin_dir_for(opts.pg_bin_dir, pgdata);
  if (::geteuid() == 0) server_user = postgres_credentials();
  env = {"PATH=" + bin_dir.string() + ":/usr/bin:/bin", "LC_ALL=C", "HOME=/"};
  if (const char* tz = std::getenv("TZ")) env.push_back(std::string("TZ=") + tz);
}

void embedded_postgres::impl::prepare_data_dir() {
  const std::string dir = opts.data_dir.string();
  std::error_code ec;
  // The server user must search every folder down to the data folder: check the part that
  // exists before creating anything, and the data folder itself once it exists.
  auto check_reach = [&](const fs::path& p) {
    if (!server_user.switch_user) return;
    if (const int e = child_access(server_user, p); e != 0)
      throw error("the postgres system user cannot reach " + dir + " (" + errno_text(e) +
                  "; a parent folder is not searchable); pass a --data-dir it can reach, such as "
                  "/var/lib/cogwheel");
  };
  fs::path existing = opts.data_dir;
  while (!fs::exists(existing, ec) && existing.has_relative_path())
    existing = existing.parent_path();
  if (fs::is_directory(existing, ec)) check_reach(existing);
  // Create the missing folders 0755 whatever the umask: the server user must search them.
  std::vector<fs::path> missing;
  for (fs::path p = opts.data_dir; p != existing; p = p.parent_path()) missing.push_back(p);
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0755) == 0)
      ::chmod(it->c_str(), 0755);
    else if (errno != EEXIST)
      throw error("data folder " + dir + " is not writable: " + errno_text(errno));
  }
  if (!fs::is_directory(opts.data_dir, ec))
    throw error("data folder " + dir + " is not writable: " + errno_text(ENOTDIR));
  auto open_lock = [&](const char* name) {
    unique_fd fd{
        ::open((opts.data_dir / name).c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644)};
    if (!fd) throw error("data folder " + dir + " is not writable: " + errno_text(errno));
    return fd;
  };
  lock_fd = open_lock(".embedded.lock");
  users_fd = open_lock(".embedded.users");
  check_reach(opts.data_dir);
}

embedded_postgres::embedded_postgres(embedded_options opts)
    : impl_(std::make_unique<impl>(std::move(opts))) {
  impl_->prepare_data_dir();
  impl_->start_or_attach();
}

embedded_postgres::~embedded_postgres() {
  try {
    stop();
  } catch (
      ...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw; stop() reports otherwise
  }
}

const std::string& embedded_postgres::conninfo() const {
  return impl_->conninfo;
}
bool embedded_postgres::started_here() const {
  return impl_->started_here;
}
const fs::path& embedded_postgres::pgdata() const {
  return impl_->pgdata;
}
const fs::path& embedded_postgres::log_file() const {
  return impl_->log_file;
}
void embedded_postgres::stop() {
  impl_->release();
}

void embedded_postgres::impl::start_or_attach() {
  if (!lock_until(lock_fd.get(), LOCK_EX, lock_deadline()))
    throw error("another cogwheel process holds " + (opts.data_dir / ".embedded.lock").string() +
                " for too long");
  flock_guard unlock{lock_fd.get()};
  const bool running =
      fs::exists(pgdata / "postmaster.pid") && server_answers(steady::now() + opts.start_timeout);
  if (!running) {
    initdb_once();
    start_server();
  }
  try {
    ensure_database();
    if (::flock(users_fd.get(), LOCK_SH | LOCK_NB) !=
        0)  // only stop() takes it exclusively, under lock_fd
      throw error("cannot take " + (opts.data_dir / ".embedded.users").string() + ": " +
                  errno_text(errno));
  } catch (...) {
    if (started_here) {
      try {
        stop_server();
      } catch (...) {  // NOLINT(bugprone-empty-catch): the first error is the one to report
      }
    }
    throw;
  }
}

// True when a server answers on our socket; waits while it is starting up or shutting down.
bool embedded_postgres::impl::server_answers(steady::time_point deadline) const {
  bool answers = false;
  poll_until(deadline, [&] {
    switch (PQping(admin_conninfo.c_str())) {
      case PQPING_OK:
        answers = true;
        return true;
      case PQPING_REJECT:  // starting up, shutting down or recovering: ask again
        return !fs::exists(pgdata / "postmaster.pid");
      default:
        return true;  // nobody listens: a stale postmaster.pid that the server will clean
    }
  });
  return answers;
}

void embedded_postgres::impl::initdb_once() {
  std::error_code ec;
  if (fs::exists(pgdata / "PG_VERSION", ec)) return;
  if (fs::exists(pgdata, ec) && !fs::is_empty(pgdata, ec))
    throw error(pgdata.string() +
                " exists but holds no PostgreSQL cluster (no PG_VERSION): move it away");
  // initdb into a scratch folder renamed into place once complete: a crash mid-initdb leaves no
  // half-made cluster behind.
  const fs::path scratch = opts.data_dir / "postgres.initdb";
  fs::remove_all(scratch, ec);
  if (::mkdir(scratch.c_str(), 0700) != 0)
    throw error("data folder " + opts.data_dir.string() + " is not writable: " + errno_text(errno));
  chown_to_server(scratch);
  const run_result r = run({tool("initdb").string(), "-D", scratch.string(), "-U", superuser,
                            "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"},
                           server_user, env, opts.start_timeout + 60s);
  if (!r.ok) {
    fs::remove_all(scratch, ec);
    throw error("initdb failed: " + r.message);
  }
  fs::rename(scratch, pgdata, ec);
  if (ec) throw error("cannot move the new cluster into " + pgdata.string() + ": " + ec.message());
}

void embedded_postgres::impl::start_server() {
  unique_fd log{
      ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600)};
  if (!log)
    throw error("cannot open the server log " + log_file.string() + ": " + errno_text(errno));
  if (server_user.switch_user && ::fchown(log.get(), server_user.uid, server_user.gid) != 0)
    throw error("cannot hand " + log_file.string() +
                " to the postgres system user: " + errno_text(errno));
  struct stat st {};
  const auto log_offset =
      ::fstat(log.get(), &st) == 0 ? static_cast<std::uintmax_t>(st.st_size) : 0;
  log.reset();

  // Command-line settings win over postgresql.conf: Unix socket only, in the cluster's folder.
  const std::string server_options =
      "-c listen_addresses='' -c port=" + std::to_string(port) + " -c " +
      shell_word("unix_socket_directories=\"" + pgdata.string() + "\"") +
      " -c unix_socket_permissions=0700";
  const auto secs = std::to_string(opts.start_timeout.count());
  const run_result r = run({tool("pg_ctl").string(), "start", "-w", "-t", secs, "-D",
                            pgdata.string(), "-l", log_file.string(), "-o", server_options},
                           server_user, env, opts.start_timeout + 30s);
  if (!r.ok) {
    std::string line = meaningful_line(read_file_from(log_file, log_offset));
    if (line.empty()) line = r.message;
    if (fs::exists(pgdata /
                   "postmaster.pid")) {  // still starting after the timeout: do not leave it behind
      run({tool("pg_ctl").string(), "stop", "-D", pgdata.string(), "-m", "immediate", "-w", "-t",
           "30"},
          server_user, env, 40s);
    }
    throw error("PostgreSQL failed to start; see " + log_file.string() + ": " + line);
  }
  started_here = true;
  // Mark the server as cogwheel's, so that the last cogwheel user stops it (see the header).
  const fs::path tmp = marker().string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << postmaster_identity();
  }
  std::error_code ec;
  fs::rename(tmp, marker(), ec);
}

// The first line (pid) and third line (start time) of postmaster.pid: they name one server run.
std::string embedded_postgres::impl::postmaster_identity() const {
  const auto text = read_small_file(pgdata / "postmaster.pid");
  if (!text) return {};
  std::istringstream in(*text);
  std::string pid, dir, start;
  std::getline(in, pid);
  std::getline(in, dir);
  std::getline(in, start);
  if (pid.empty() || start.empty()) return {};
  return pid + "\n" + start + "\n";
}

void embedded_postgres::impl::ensure_database() const {
  std::unique_ptr<PGconn, decltype(&PQfinish)> c{PQconnectdb(admin_conninfo.c_str()), &PQfinish};
  if (PQstatus(c.get()) != CONNECTION_OK)
    throw unavailable("cannot connect to the embedded PostgreSQL in " + pgdata.string() + ": " +
                      meaningful_line(PQerrorMessage(c.get())));
  using result_ptr = std::unique_ptr<PGresult, decltype(&PQclear)>;
  auto failed = [](const result_ptr& r, ExecStatusType expected) {
    return PQresultStatus(r.get()) != expected;
  };
  const char* name = opts.database.c_str();
  result_ptr found{PQexecParams(c.get(), "SELECT 1 FROM pg_database WHERE datname = $1", 1, nullptr,
                                &name, nullptr, nullptr, 0),
                   &PQclear};
  if (failed(found, PGRES_TUPLES_OK))
    throw error("cannot look up database " + opts.database + ": " +
                meaningful_line(PQerrorMessage(c.get())));
  if (PQntuples(found.get()) > 0) return;
  std::unique_ptr<char, decltype(&PQfreemem)> ident{
      PQescapeIdentifier(c.get(), opts.database.data(), opts.database.size()), &PQfreemem};
  if (!ident) throw error("invalid database name " + opts.database);
  result_ptr created{PQexec(c.get(), ("CREATE DATABASE " + std::string(ident.get())).c_str()),
                     &PQclear};
  if (failed(created, PGRES_COMMAND_OK)) {
    const char* state = PQresultErrorField(created.get(), PG_DIAG_SQLSTATE);
    const std::string code = state ? state : "";
    if (code != "42P04" && code != "23505")  // created meanwhile by someone else: fine
      throw error("cannot create database " + opts.database + ": " +
                  meaningful_line(PQerrorMessage(c.get())));
  }
}

void embedded_postgres::impl::stop_server() {
  const run_result r =
      run({tool("pg_ctl").string(), "stop", "-D", pgdata.string(), "-m", "fast", "-w", "-t", "60"},
          server_user, env, 75s);
  if (!r.ok && fs::exists(pgdata / "postmaster.pid"))
    throw error("PostgreSQL did not stop; see " + log_file.string() + ": " + r.message);
  std::error_code ec;
  fs::remove(marker(), ec);
}

void embedded_postgres::impl::release() {
  if (!users_fd) return;
  unique_fd users = std::move(users_fd);  // closing it lets go of our use, whatever happens
  if (!lock_until(lock_fd.get(), LOCK_EX, lock_deadline()))
    throw error("another cogwheel process holds " + (opts.data_dir / ".embedded.lock").string() +
                " for too long; PostgreSQL left running");
  flock_guard unlock{lock_fd.get()};
  // Under lock_fd nobody can attach meanwhile. An exclusive lock on .embedded.users means no
  // other cogwheel process (or object) uses the server.
  const bool last = ::flock(users.get(), LOCK_EX | LOCK_NB) == 0;
  if (!last || !fs::exists(pgdata / "postmaster.pid")) return;
  const auto mark = read_small_file(marker());
  const bool ours = started_here || (mark && !mark->empty() && *mark == postmaster_identity());
  if (ours) stop_server();
}

}  // namespace cogwheel::storage
