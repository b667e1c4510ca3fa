// Response factories: RFC 7807 problem details and plain JSON bodies.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "http/types.hpp"

namespace cogwheel::http {

inline constexpr std::string_view problem_content_type = "application/problem+json";
inline constexpr std::string_view json_content_type = "application/json";

// A problem details response: body {"title", "detail", "status"} plus the members of `extra`
// (e.g. "code", "invalid_fields"); the three standard members win over members of `extra` with the
// same name. `title` defaults to the status' reason phrase. Throws std::invalid_argument when
// `extra` is neither an object nor null.
response problem(bhttp::status status, std::string detail,
                 nlohmann::json extra = nlohmann::json::object(), std::string title = {});

// A JSON response (Content-Type application/json). Invalid UTF-8 in strings is replaced, not
// thrown.
response json(bhttp::status status, const nlohmann::json& body);

// A JSON response whose body is already JSON text.
response json_text(bhttp::status status, std::string body);

// Serialises JSON for a response body: compact, invalid UTF-8 replaced by U+FFFD.
std::string dump_json(const nlohmann::json& body);

}  // namespace cogwheel::http
