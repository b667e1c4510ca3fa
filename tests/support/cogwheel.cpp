#include "tests/support/cogwheel.hpp"

#include <signal.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

namespace cogwheel::test {

using namespace std::chrono_literals;

std::string write_echo_config(const std::string& dir) {
  const std::string path = dir + "/cogwheel.yaml";
  std::ofstream out(path);
  out << "models:\n"
         "  - name: acme/echo\n"
         "    versions:\n"
         "      - id: "
      << echo_old_version
      << "\n"
         "        runtime: {type: static, urls: [\"http://127.0.0.1:9\"]}\n"
         "      - id: "
      << echo_version
      << "\n"
         "        runtime: {type: static, urls: [\"http://127.0.0.1:9\"]}\n"
         "deployments:\n"
         "  - name: acme/echo-prod\n"
         "    version: "
      << echo_version
      << "\n"
         "  - name: acme/echo-strict\n"
         "    version: "
      << echo_version
      << "\n"
         "    require_webhook: true\n";
  return path;
}

std::string write_fake_model_config(const std::string& dir, const fake_model& m) {
  const std::string path = dir + "/fake-model.yaml";
  std::ofstream out(path);
  out << "models:\n"
         "  - name: acme/fake\n"
         "    versions:\n"
         "      - id: "
      << echo_version << "\n";
  if (!m.start_timeout.empty()) out << "        start_timeout: " << m.start_timeout << "\n";
  if (!m.run_timeout.empty()) out << "        run_timeout: " << m.run_timeout << "\n";
  out << "        runtime:\n          type: " << m.runtime << "\n          slots: " << m.slots
      << "\n";
  if (m.runtime == "process") {
    out << "          command: [\"" << COGWHEEL_FAKE_COG_BINARY << "\"]\n"
        << "          instances: " << m.instances << "\n";
    if (!m.env.empty()) {
      out << "          env:\n";
      for (const auto& [k, v] : m.env) out << "            " << k << ": \"" << v << "\"\n";
    }
  } else {
    out << "          urls:\n";
    for (const auto& u : m.urls) out << "            - " << u << "\n";
  }
  return path;
}

namespace {
std::vector<std::string> serve_args(unsigned short port, std::vector<std::string> extra) {
  std::vector<std::string> a = {COGWHEEL_BINARY, "serve", "--listen",
                                "127.0.0.1:" + std::to_string(port)};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}
}  // namespace

cogwheel_server::cogwheel_server(std::map<std::string, std::string> env,
                                 std::vector<std::string> extra, unsigned short port)
    : port_(port != 0 ? port : free_port()),
      proc_(serve_args(port_, std::move(extra)), std::move(env)) {
  if (!proc_.wait_for_output("cogwheel listening on", 60s)) {
    FAIL("cogwheel serve did not start:\n" << proc_.output());
  }
}

int cogwheel_server::stop() {
  proc_.signal(SIGTERM);
  auto code = proc_.wait(60s);
  REQUIRE(code.has_value());
  return *code;
}

std::string create_token(const std::map<std::string, std::string>& env, const std::string& name) {
  auto r = run({COGWHEEL_BINARY, "token", "create", "--name", name}, env, 60s);
  INFO(r.output);
  REQUIRE(r.code == 0);
  // The token is the one line that is nothing but cw_ and 40 base62 characters (logs go to stderr,
  // which shares the output file, and mention the token's first characters).
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.size() == 43 && line.starts_with("cw_") &&
        line.find_first_not_of("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                               3) == std::string::npos) {
      return line;
    }
  }
  FAIL("no token in the output of cogwheel token create");
  return {};
}

}  // namespace cogwheel::test
