#pragma once
// JSON text written directly, without building a document.
#include <string>
#include <string_view>

namespace cogwheel::storage {

// Appends `s` as a JSON string (quoted and escaped; invalid UTF-8 replaced by U+FFFD).
void append_json_string(std::string& out, std::string_view s);

}  // namespace cogwheel::storage
