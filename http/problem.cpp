#include "http/problem.hpp"

#include <stdexcept>

namespace cogwheel::http {

namespace {

response make_response(bhttp::status status, std::string_view content_type, std::string body) {
  response res{status, 11};
  res.set(bhttp::field::server, server_name);
  res.set(bhttp::field::content_type, content_type);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

}  // namespace

std::string dump_json(const nlohmann::json& body) {
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

response problem(bhttp::status status, std::string detail, nlohmann::json extra,
                 std::string title) {
  if (!extra.is_object() && !extra.is_null()) {
    throw std::invalid_argument("problem(): extra members must be a JSON object");
  }
  nlohmann::json body = nlohmann::json::object();
  if (extra.is_object()) body = std::move(extra);
  if (title.empty()) title = std::string(bhttp::obsolete_reason(status));
  body["title"] = std::move(title);
  body["detail"] = std::move(detail);
  body["status"] = static_cast<unsigned>(status);
  return make_response(status, problem_content_type, dump_json(body));
}

response json(bhttp::status status, const nlohmann::json& body) {
  return make_response(status, json_content_type, dump_json(body));
}

response json_text(bhttp::status status, std::string body) {
  return make_response(status, json_content_type, std::move(body));
}

}  // namespace cogwheel::http
