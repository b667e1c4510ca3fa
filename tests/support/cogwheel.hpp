#pragma once
// The real cogwheel binary for end-to-end tests: a served instance on a free loopback port, its
// config file, and API tokens made with `cogwheel token create`.
#include <map>
#include <string>
#include <vector>

#include "tests/support/process.hpp"

namespace cogwheel::test {

inline constexpr const char* echo_version =
    "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa";
inline constexpr const char* echo_old_version =
    "0b1ec0a9d4e0e33b43df3c46e0be5e6f5b65d9b1c8c5c1d6fb1f53d6c4d62b2a";

// A config with model acme/echo (versions echo_old_version then echo_version, the latest) and
// deployment acme/echo-prod pinned to echo_version; written into `dir`, returns its path.
std::string write_echo_config(const std::string& dir);

// A model acme/fake (version echo_version) served by the fake Cog container, in the process
// runtime (cogwheel starts `instances` fake_cog processes with `env`) or the static runtime (the
// Cog URLs in `urls`, e.g. fake_cog processes a test started itself).
struct fake_model {
  std::string runtime = "process";
  int instances = 1;
  int slots = 1;
  std::vector<std::string> urls;  // static runtime
  std::map<std::string, std::string> env;
  std::string start_timeout;  // e.g. "2s"; "" = the default
  std::string run_timeout;
};
// Writes the config into `dir`; returns its path.
std::string write_fake_model_config(const std::string& dir, const fake_model& model);

class cogwheel_server {
 public:
  // `cogwheel serve --listen 127.0.0.1:<free port> <extra...>` with env; waits until it listens.
  // On `port` when given (e.g. a restart on the port of one that was killed), else a free one.
  cogwheel_server(std::map<std::string, std::string> env, std::vector<std::string> extra = {},
                  unsigned short port = 0);
  unsigned short port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  child_process& process() { return proc_; }
  int stop();  // SIGTERM, then the exit code (fails the test when it does not exit in time)

 private:
  unsigned short port_;
  child_process proc_;
};

// `cogwheel token create --name NAME` against env's database; returns the token (fails the test
// on error).
std::string create_token(const std::map<std::string, std::string>& env, const std::string& name);

}  // namespace cogwheel::test
