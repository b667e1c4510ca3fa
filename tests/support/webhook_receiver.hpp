#pragma once
// A webhook receiver for end-to-end tests: a real HTTP server on 127.0.0.1 (a free port) that
// records every request to /hook/{name} and answers as the test says, each request on its own
// (a slow answer holds only its own connection).
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace cogwheel::test {

struct received_webhook {
  std::string name;                            // the {name} of /hook/{name}
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // the exact bytes received
  std::chrono::steady_clock::time_point at;    // when the request had been read
  nlohmann::json json() const { return nlohmann::json::parse(body); }
  std::string header(const std::string& h) const;
};

struct webhook_reply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds delay{0};  // before answering
  std::string body = "ok";
};

class webhook_receiver {
 public:
  webhook_receiver();
  ~webhook_receiver();
  webhook_receiver(const webhook_receiver&) = delete;
  webhook_receiver& operator=(const webhook_receiver&) = delete;

  unsigned short port() const { return port_; }
  std::string url(const std::string& name) const;  // http://127.0.0.1:<port>/hook/<name>

  // How /hook/<name> answers its n-th request (from 1); default 200 "ok" at once.
  void on(const std::string& name, std::function<webhook_reply(int n)> reply);

  std::vector<received_webhook> requests(const std::string& name) const;
  // Waits until `done(requests(name))` holds or `timeout` passes; returns the requests then.
  std::vector<received_webhook> wait_for(
      const std::string& name,
      const std::function<bool(const std::vector<received_webhook>&)>& done,
      std::chrono::milliseconds timeout = std::chrono::seconds(20)) const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  unsigned short port_ = 0;
};

// The requests whose body is the prediction `id`.
std::vector<received_webhook> for_prediction(const std::vector<received_webhook>& all,
                                             const std::string& id);

}  // namespace cogwheel::test
