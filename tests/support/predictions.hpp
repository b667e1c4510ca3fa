#pragma once
// A tenant's view of a running cogwheel for end-to-end tests: creates and reads predictions over
// HTTP, waits for states (polling with a deadline), and reads the stored row for what the API does
// not show (container, attempt, lease).
#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <string>

#include "tests/support/http_client.hpp"

namespace cogwheel::test {

// Whether a prediction object is in a terminal status.
bool is_terminal(const nlohmann::json& prediction);

class prediction_client {
 public:
  // `diagnostics` is printed when a wait fails (e.g. the server's log).
  prediction_client(std::string conninfo, std::string token, unsigned short port,
                    std::function<std::string()> diagnostics = {});

  header_list auth(header_list more = {}) const;
  // POST /v1/predictions on `version` (default: test::echo_version); requires 201 or 202.
  nlohmann::json create(const nlohmann::json& input, header_list headers = {},
                        const std::string& version = {});
  nlohmann::json get(const std::string& id);
  // Polls the prediction until `done` holds; fails the test after `timeout`.
  nlohmann::json wait_for(const std::string& id,
                          const std::function<bool(const nlohmann::json&)>& done,
                          std::chrono::milliseconds timeout = std::chrono::seconds(20));
  nlohmann::json wait_status(const std::string& id, const std::string& status,
                             std::chrono::milliseconds timeout = std::chrono::seconds(20));
  nlohmann::json wait_terminal(const std::string& id,
                               std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Columns of the stored prediction (any SQL expressions over its row).
  pqxx::row stored(const std::string& id, const std::string& columns);
  http_client& http() { return client_; }

 private:
  std::string conninfo_;
  std::string token_;
  http_client client_;
  std::function<std::string()> diagnostics_;
};

// How many times `what` occurs in `text`.
std::size_t count_of(const std::string& text, const std::string& what);

}  // namespace cogwheel::test
