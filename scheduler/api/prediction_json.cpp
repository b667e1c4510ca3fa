#include "scheduler/api/prediction_json.hpp"

#include "scheduler/api/timefmt.hpp"

namespace cogwheel::scheduler::api {

namespace {

using nlohmann::json;

// The length of the valid UTF-8 sequence starting at s[i], or 0 when it is not one.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
    if (c == 0xED && b(1) > 0x9F) return 0;  // surrogates
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
    if (c == 0xF4 && b(1) > 0x8F) return 0;  // beyond U+10FFFF
    return 4;
  }
  return 0;
}

// Builds one JSON object member by member.
class object_writer {
 public:
  explicit object_writer(std::string& out) : out_(out) { out_ += '{'; }
  void end() { out_ += '}'; }

  void string(std::string_view key, std::string_view value) {
    name(key);
    append_json_string(out_, value);
  }
  void string_or_null(std::string_view key, const std::optional<std::string>& value) {
    if (value) {
      string(key, *value);
    } else {
      null(key);
    }
  }
  void time(std::string_view key, const std::optional<storage::micros>& t) {
    if (t) {
      string(key, rfc3339_micros(*t));
    } else {
      null(key);
    }
  }
  void boolean(std::string_view key, bool value) {
    name(key);
    out_ += value ? "true" : "false";
  }
  void null(std::string_view key) {
    name(key);
    out_ += "null";
  }
  // JSON text from the database, spliced in as it is when it is valid JSON (of an object, with
  // `object_only`); otherwise `fallback`.
  void json_text(std::string_view key, std::string_view text, std::string_view fallback,
                 bool object_only = false) {
    name(key);
    const auto first = text.find_first_not_of(" \t\r\n");
    const bool usable = first != std::string_view::npos && (!object_only || text[first] == '{') &&
                        json::accept(text);
    out_ += usable ? text : fallback;
  }
  void strings(std::string_view key, const std::optional<std::vector<std::string>>& values) {
    if (!values) return null(key);
    name(key);
    out_ += '[';
    for (std::size_t i = 0; i < values->size(); ++i) {
      if (i > 0) out_ += ',';
      append_json_string(out_, (*values)[i]);
    }
    out_ += ']';
  }
  void name(std::string_view key) {
    if (!first_) out_ += ',';
    first_ = false;
    out_ += '"';
    out_ += key;  // keys are ours: plain ASCII
    out_ += "\":";
  }

 private:
  std::string& out_;
  bool first_ = true;
};

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    // The run of characters that need nothing done goes in at once.
    std::size_t run = i;
    while (run < s.size()) {
      const auto c = static_cast<unsigned char>(s[run]);
      if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) break;
      ++run;
    }
    out.append(s.data() + i, run - i);
    i = run;
    if (i == s.size()) break;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      if (const auto n = utf8_length(s, i); n > 0) {
        out.append(s.data() + i, n);
        i += n;
      } else {
        out += "\xEF\xBF\xBD";  // U+FFFD for a byte that begins no valid sequence
        ++i;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 0xF];
    }
    ++i;
  }
  out += '"';
}

std::string_view trim_base_url(std::string_view base) {
  while (!base.empty() && base.back() == '/') base.remove_suffix(1);
  return base;
}

std::string prediction_url(std::string_view public_base_url, std::string_view id) {
  std::string url(trim_base_url(public_base_url));
  url += "/v1/predictions/";
  url += id;
  return url;
}

json prediction_urls(std::string_view public_base_url, std::string_view id) {
  const std::string api = prediction_url(public_base_url, id);
  return {{"get", api},
          {"cancel", api + "/cancel"},
          {"stream", api + "/stream"},
          {"web", std::string(trim_base_url(public_base_url)) + "/p/" + std::string(id)}};
}

std::string prediction_json_text(const storage::prediction_row& p,
                                 std::string_view public_base_url) {
  std::string out;
  out.reserve(1024 + p.input_json.size() + p.output_json.size() + p.logs.size());
  object_writer o(out);
  o.string("id", p.id);
  o.string("model", p.model);
  o.string("version", p.version_id);
  if (p.data_removed) {
    o.null("input");
    o.null("output");
  } else {
    o.json_text("input", p.input_json, "null");
    o.json_text("output", p.output_json, "null");
  }
  o.string("logs", p.logs);
  o.string_or_null("error", p.error);
  o.string_or_null("error_code", p.error_code);
  o.string("status", p.status);
  o.string("source", p.source);
  o.boolean("data_removed", p.data_removed);
  o.time("created_at", p.created_at);
  o.time("started_at", p.started_at);
  o.time("completed_at", p.completed_at);
  o.time("deadline", p.deadline);
  {
    const std::string api = prediction_url(public_base_url, p.id);
    o.name("urls");
    object_writer urls(out);
    urls.string("get", api);
    urls.string("cancel", api + "/cancel");
    urls.string("stream", api + "/stream");
    urls.string("web", std::string(trim_base_url(public_base_url)) + "/p/" + p.id);
    urls.end();
  }
  o.json_text("metrics", p.metrics_json.value_or("{}"), "{}", /*object_only=*/true);
  o.string_or_null("webhook", p.webhook);
  o.strings("webhook_events_filter", p.webhook_events_filter);
  o.string_or_null("deployment", p.deployment);
  o.end();
  return out;
}

json prediction_json(const storage::prediction_row& p, std::string_view public_base_url) {
  return json::parse(prediction_json_text(p, public_base_url));
}

}  // namespace cogwheel::scheduler::api
