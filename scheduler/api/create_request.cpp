#include "scheduler/api/create_request.hpp"

#include <algorithm>
#include <array>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

namespace cogwheel::scheduler::api {

namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 4> known_events = {"start", "output", "logs", "completed"};
constexpr std::string_view e4875 = "E4875";

constexpr std::size_t max_echo = 64;    // characters of a client's string shown in a reason
constexpr std::size_t max_listed = 10;  // field names listed in a detail

// A client-supplied string cut short for an error message.
std::string echo(std::string_view s) {
  return s.size() <= max_echo ? std::string(s) : std::string(s.substr(0, max_echo)) + "...";
}

bool is_absent(const json& body, const char* key) {
  auto it = body.find(key);
  return it == body.end() || it->is_null();
}

// Collects the fields of one body as they are validated.
struct checker {
  const json& body;
  create_route route;
  create_request out;
  std::vector<invalid_field> fields;

  void fail(std::string field, std::string reason) {
    fields.push_back({std::move(field), std::move(reason)});
  }

  void unknown_fields() {
    for (const auto& [key, value] : body.items()) {
      const bool known = key == "input" || key == "webhook" || key == "webhook_events_filter" ||
                         key == "stream" ||
                         (key == "version" && route == create_route::predictions);
      if (!known) fail(echo(key), "unknown field");
    }
  }

  void version() {
    if (route != create_route::predictions) return;  // refused as unknown above
    if (is_absent(body, "version")) return fail("version", "required");
    const json& v = body.at("version");
    if (!v.is_string()) return fail("version", "must be a string");
    out.version = parse_version_ref(v.get_ref<const std::string&>());
    if (!out.version) {
      fail("version", "must be a 64-character hex version id, owner/name or owner/name:id");
    }
  }

  void input() {
    if (is_absent(body, "input")) return fail("input", "required");
    const json& v = body.at("input");
    if (!v.is_object()) return fail("input", "must be an object");
    out.input = v;
  }

  void webhook() {
    if (is_absent(body, "webhook")) return;
    const json& v = body.at("webhook");
    if (!v.is_string()) return fail("webhook", "must be a string");
    const auto& s = v.get_ref<const std::string&>();
    if (s.empty()) return;
    std::string reason;
    out.webhook = normalize_webhook_url(s, reason);
    if (!out.webhook) fail("webhook", reason);
  }

  void events_filter() {
    if (is_absent(body, "webhook_events_filter")) return;
    const json& v = body.at("webhook_events_filter");
    const char* field = "webhook_events_filter";
    if (!v.is_array()) return fail(field, "must be an array of strings");
    if (v.empty()) return fail(field, "must not be empty (omit it to receive all events)");
    std::vector<std::string> events;
    for (const auto& e : v) {
      if (!e.is_string()) return fail(field, "must be an array of strings");
      const auto& s = e.get_ref<const std::string&>();
      if (std::find(known_events.begin(), known_events.end(), s) == known_events.end()) {
        return fail(
            field, "unknown event \"" + echo(s) + "\" (expected start, output, logs or completed)");
      }
      if (std::find(events.begin(), events.end(), s) != events.end()) {
        return fail(field, "duplicate event \"" + s + "\"");
      }
      events.push_back(s);
    }
    out.webhook_events_filter = std::move(events);
  }

  void stream() {
    if (!is_absent(body, "stream") && !body.at("stream").is_boolean()) {
      fail("stream", "must be a boolean");
    }
  }

  // A filter without a webhook to send to: Replicate's E4875.
  bool filter_without_webhook() const {
    if (is_absent(body, "webhook_events_filter")) return false;
    auto it = body.find("webhook");
    return it == body.end() || it->is_null() ||
           (it->is_string() && it->get_ref<const std::string&>().empty());
  }
};

std::string summary(const std::vector<invalid_field>& fields) {
  if (fields.size() == 1) {
    return "The request body has an invalid field: " + fields[0].field + " (" + fields[0].reason +
           ").";
  }
  std::string names;
  for (std::size_t i = 0; i < fields.size() && i < max_listed; ++i) {
    names += (i == 0 ? "" : ", ") + fields[i].field;
  }
  if (fields.size() > max_listed)
    names += " and " + std::to_string(fields.size() - max_listed) + " more";
  return "The request body has " + std::to_string(fields.size()) + " invalid fields: " + names +
         ".";
}

// nlohmann's message without its "[json.exception.parse_error.101] " prefix.
std::string parse_error_text(const json::parse_error& e) {
  std::string_view what = e.what();
  if (auto pos = what.find("] "); pos != std::string_view::npos) what.remove_prefix(pos + 2);
  return std::string(what);
}

}  // namespace

bool is_version_id(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool is_slug(std::string_view s) {
  auto alnum = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  };
  if (s.empty() || !alnum(s[0])) return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return alnum(c) || c == '_' || c == '.' || c == '-'; });
}

std::optional<version_ref> parse_version_ref(std::string_view s) {
  if (is_version_id(s)) return version_ref{std::nullopt, std::nullopt, std::string(s)};
  const auto slash = s.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const auto owner = s.substr(0, slash);
  auto rest = s.substr(slash + 1);
  std::optional<std::string> id;
  if (const auto colon = rest.find(':'); colon != std::string_view::npos) {
    if (!is_version_id(rest.substr(colon + 1))) return std::nullopt;
    id = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
  }
  if (!is_slug(owner) || !is_slug(rest)) return std::nullopt;
  return version_ref{std::string(owner), std::string(rest), std::move(id)};
}

std::optional<std::string> normalize_webhook_url(std::string_view s, std::string& reason) {
  if (s.size() > max_webhook_length) {
    reason = "must be at most " + std::to_string(max_webhook_length) + " characters";
    return std::nullopt;
  }
  auto parsed = boost::urls::parse_uri(s);
  if (!parsed) {
    reason = "must be an absolute http or https URL";
    return std::nullopt;
  }
  boost::urls::url u(*parsed);
  if (u.scheme_id() != boost::urls::scheme::http && u.scheme_id() != boost::urls::scheme::https) {
    reason = "must use http or https";
    return std::nullopt;
  }
  if (!u.has_authority() || u.encoded_host().empty()) {
    reason = "must have a host";
    return std::nullopt;
  }
  u.normalize_scheme();
  return std::string(u.buffer());
}

std::variant<create_request, validation_error> parse_create(std::string_view body,
                                                            create_route route) {
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::parse_error& e) {
    return validation_error{
        400, "", "The request body is not valid JSON: " + parse_error_text(e), {}};
  }
  if (!doc.is_object()) {
    return validation_error{400, "", "The request body must be a JSON object.", {}};
  }
  checker c{doc, route, {}, {}};
  c.unknown_fields();
  c.version();
  c.input();
  c.webhook();
  c.events_filter();
  c.stream();
  if (c.filter_without_webhook()) {
    c.fail("webhook", "required when webhook_events_filter is given");
    std::string detail = "E4875: webhook URL empty: webhook_events_filter needs a webhook.";
    if (c.fields.size() > 1) detail += " " + summary(c.fields);
    return validation_error{422, std::string(e4875), std::move(detail), std::move(c.fields)};
  }
  if (!c.fields.empty()) return validation_error{422, "", summary(c.fields), std::move(c.fields)};
  return std::move(c.out);
}

}  // namespace cogwheel::scheduler::api
