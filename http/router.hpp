// Routing of requests to handlers by method and path pattern.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/types.hpp"

namespace cogwheel::http {

// Path parameters captured by the router, e.g. "/v1/predictions/{id}" -> get("id").
// Values are percent-decoded.
class path_params {
 public:
  // The value of parameter `name`, or "" when the pattern has no such parameter.
  std::string_view get(std::string_view name) const;
  bool contains(std::string_view name) const;
  void set(std::string name, std::string value);
  std::size_t size() const { return values_.size(); }
  bool empty() const { return values_.empty(); }

 private:
  std::vector<std::pair<std::string, std::string>> values_;
};

struct request_context {
  const request& req;
  path_params params;
  asio::ip::tcp::endpoint remote;

  // Streaming responses (Server-Sent Events): a handler that sets `stream` gets its response's
  // head sent with chunked encoding, then the producer writes the body piece by piece with the
  // writer it is given (false: the client is gone), and the connection closes when it returns.
  using chunk_writer = std::function<asio::awaitable<bool>(const std::string&)>;
  std::function<asio::awaitable<void>(chunk_writer)> stream;

  std::string_view path() const;   // the target without its query string
  std::string_view query() const;  // the raw query string without '?', "" when none
};

using handler = std::function<asio::awaitable<response>(request_context&)>;

class router {
 public:
  // Patterns are absolute paths of literal segments and whole-segment parameters, e.g.
  // "/v1/models/{owner}/{name}/predictions". Throws std::invalid_argument for a malformed pattern
  // or a method already registered for the same pattern.
  void add(bhttp::verb method, std::string pattern, handler h);

  // The pure matching step of dispatch().
  struct match_result {
    enum class kind { found, not_found, method_not_allowed, bad_target };
    kind outcome = kind::not_found;
    const handler* target = nullptr;  // when found
    path_params params;               // when found
    std::string allow;                // when method_not_allowed, e.g. "GET, POST"
  };
  match_result match(bhttp::verb method, std::string_view target) const;

  // Matching: literal segments beat {param} segments (leftmost first). No match: 404 problem; the
  // path matches but the method does not: 405 problem with an `Allow` header; a target that is not
  // an origin-form path: 400 problem. Exceptions of the handler propagate.
  asio::awaitable<response> dispatch(request_context& ctx) const;

 private:
  struct segment {
    std::string text;  // literal text, or the parameter name
    bool param = false;
  };
  struct route {
    bhttp::verb method;
    std::string pattern;
    std::vector<segment> segments;
    handler h;
  };
  std::vector<route> routes_;
};

}  // namespace cogwheel::http
