#pragma once
// Child processes for end-to-end tests: the real cogwheel binary, with its output kept in a file.
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cogwheel::test {

class child_process {
 public:
  // Starts argv[0] with argv, the current environment plus `env` (an empty value unsets a
  // variable), stdout and stderr appended to a temporary log file.
  child_process(std::vector<std::string> argv, std::map<std::string, std::string> env = {});
  ~child_process();  // SIGKILL if still running, then reaps
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  int pid() const { return pid_; }
  void signal(int signo);
  // The exit code (128 + signal when killed), or nullopt if still running after `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();
  std::string output() const;  // everything it printed so far
  // Polls output() until it contains `text` or the deadline passes (or the process exits).
  bool wait_for_output(const std::string& text, std::chrono::milliseconds timeout);

 private:
  int pid_ = -1;
  std::optional<int> status_;
  std::string log_path_;
};

// Runs a command to completion (bounded by timeout); returns {exit code, output}.
struct run_result {
  int code;
  std::string output;
};
run_result run(std::vector<std::string> argv, std::map<std::string, std::string> env = {},
               std::chrono::milliseconds timeout = std::chrono::seconds(120));

// A fresh folder under /tmp, searchable by every user (so the postgres user can reach a data
// folder inside it), removed on destruction.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
unsigned short free_port();

}  // namespace cogwheel::test
