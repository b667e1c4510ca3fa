#include "tests/fake_cog/behaviour.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>

namespace fake_cog {

using nlohmann::json;

namespace {

json input_loc(std::string_view field) {
  return json::array({"body", "input", field});
}

// A JSON integer (not a bool, not a float) within [min, max].
std::optional<std::int64_t> integer_field(const json& input, std::string_view name,
                                          std::int64_t max, std::vector<field_error>& errors) {
  auto it = input.find(name);
  if (it == input.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) {
    errors.push_back({input_loc(name), "value is not a valid integer", "type_error.integer"});
    return std::nullopt;
  }
  if (it->is_number_unsigned() && it->get<std::uint64_t>() > static_cast<std::uint64_t>(max)) {
    errors.push_back({input_loc(name),
                      "ensure this value is less than or equal to " + std::to_string(max),
                      "value_error.number.not_le"});
    return std::nullopt;
  }
  auto value = it->get<std::int64_t>();
  if (value < 0) {
    errors.push_back({input_loc(name), "ensure this value is greater than or equal to 0",
                      "value_error.number.not_ge"});
    return std::nullopt;
  }
  if (value > max) {
    errors.push_back({input_loc(name),
                      "ensure this value is less than or equal to " + std::to_string(max),
                      "value_error.number.not_le"});
    return std::nullopt;
  }
  return value;
}

std::optional<bool> bool_field(const json& input, std::string_view name,
                               std::vector<field_error>& errors) {
  auto it = input.find(name);
  if (it == input.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) {
    errors.push_back(
        {input_loc(name), "value could not be parsed to a boolean", "type_error.bool"});
    return std::nullopt;
  }
  return it->get<bool>();
}

std::optional<std::string> string_field(const json& input, std::string_view name,
                                        std::vector<field_error>& errors) {
  auto it = input.find(name);
  if (it == input.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) {
    errors.push_back({input_loc(name), "str type expected", "type_error.str"});
    return std::nullopt;
  }
  return it->get<std::string>();
}

bool valid_file_name(std::string_view name) {
  if (name.empty() || name == "." || name == ".." || name.size() > 255) return false;
  return std::none_of(name.begin(), name.end(), [](char c) {
    return c == '/' || c == '\\' || c == '?' || c == '#' || c == '%' ||
           static_cast<unsigned char>(c) < 0x20 || c == ' ';
  });
}

bool valid_http_url(std::string_view url) {
  std::string_view rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else {
    return false;
  }
  auto host_end = rest.find_first_of("/?#");
  return host_end != 0 && !rest.empty();
}

}  // namespace

json validation_body(const std::vector<field_error>& errors) {
  json detail = json::array();
  for (const auto& e : errors) detail.push_back({{"loc", e.loc}, {"msg", e.msg}, {"type", e.type}});
  return {{"detail", detail}};
}

std::variant<plan, std::vector<field_error>> parse_plan(const json& input) {
  std::vector<field_error> errors;
  plan p;
  if (!input.is_object()) {
    errors.push_back(
        {json::array({"body", "input"}), "value is not a valid dict", "type_error.dict"});
    return errors;
  }
  if (auto it = input.find("prompt"); it != input.end() && !it->is_null()) p.prompt = *it;
  p.sleep_ms = integer_field(input, "sleep_ms", 24LL * 3600 * 1000, errors).value_or(0);
  p.outputs = integer_field(input, "outputs", max_count, errors);
  p.interval_ms = integer_field(input, "interval_ms", 3600LL * 1000, errors).value_or(0);
  p.logs = integer_field(input, "logs", max_count, errors).value_or(0);
  p.fail = string_field(input, "fail", errors);
  p.exit_137 = bool_field(input, "exit_137", errors).value_or(false);
  p.hang = bool_field(input, "hang", errors).value_or(false);
  p.start_delay_ms =
      integer_field(input, "start_delay_ms", 24LL * 3600 * 1000, errors).value_or(0);
  p.upload = string_field(input, "upload", errors);
  auto content = string_field(input, "content", errors);

  if (auto behaviour = string_field(input, "behaviour", errors)) {
    if (*behaviour == "fail") {
      if (!p.fail) p.fail = std::string(default_fail_message);
    } else if (*behaviour == "exit_137") {
      p.exit_137 = true;
    } else if (*behaviour == "hang") {
      p.hang = true;
    } else if (*behaviour != "echo") {
      errors.push_back({input_loc("behaviour"),
                        "unexpected value; permitted: 'echo', 'fail', 'exit_137', 'hang'",
                        "value_error"});
    }
  }
  if (p.upload) {
    if (!valid_file_name(*p.upload)) {
      errors.push_back({input_loc("upload"),
                        "must be a plain file name (no '/', '?', '#', '%', spaces or controls)",
                        "value_error"});
    } else if (p.outputs) {
      errors.push_back({input_loc("upload"), "cannot be combined with outputs", "value_error"});
    }
  }
  if (content) {
    p.content = *content;
  } else if (p.prompt && p.prompt->is_string()) {
    p.content = p.prompt->get<std::string>();
  } else {
    p.content = "fake_cog output\n";
  }
  if (!errors.empty()) return errors;
  return p;
}

json echo_output(const json& input) {
  if (input.is_object()) {
    if (auto it = input.find("prompt"); it != input.end() && !it->is_null()) return *it;
  }
  return input;
}

std::string generator_item(const plan& p, std::int64_t i) {
  std::string base = "out";
  if (p.prompt) base = p.prompt->is_string() ? p.prompt->get<std::string>() : p.prompt->dump();
  return base + "-" + std::to_string(i);
}

std::string log_line(std::int64_t i) {
  return "log line " + std::to_string(i) + "\n";
}

std::string content_type_for(std::string_view file_name) {
  auto dot = file_name.rfind('.');
  if (dot == std::string_view::npos) return "application/octet-stream";
  std::string ext(file_name.substr(dot + 1));
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  });
  if (ext == "txt") return "text/plain";
  if (ext == "json") return "application/json";
  if (ext == "png") return "image/png";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  if (ext == "webp") return "image/webp";
  if (ext == "wav") return "audio/x-wav";
  if (ext == "mp4") return "video/mp4";
  return "application/octet-stream";
}

std::string_view event_name(event e) {
  switch (e) {
    case ev_start:
      return "start";
    case ev_output:
      return "output";
    case ev_logs:
      return "logs";
    case ev_completed:
      return "completed";
  }
  return "unknown";
}

std::variant<prediction_request, std::vector<field_error>> parse_request(std::string_view body,
                                                                         std::string_view url_id) {
  std::vector<field_error> errors;
  json doc = json::object();
  if (body.find_first_not_of(" \t\r\n") != std::string_view::npos) {
    doc = json::parse(body, nullptr, false);
    if (doc.is_discarded()) {
      errors.push_back(
          {json::array({"body"}), "Expecting value: invalid JSON", "value_error.jsondecode"});
      return errors;
    }
  }
  if (doc.is_null()) doc = json::object();
  if (!doc.is_object()) {
    errors.push_back({json::array({"body"}), "value is not a valid dict", "type_error.dict"});
    return errors;
  }

  prediction_request req;
  req.id = std::string(url_id);
  if (auto it = doc.find("id"); it != doc.end() && !it->is_null()) {
    if (!it->is_string()) {
      errors.push_back({json::array({"body", "id"}), "str type expected", "type_error.str"});
    } else if (!url_id.empty() && it->get<std::string>() != url_id) {
      errors.push_back({json::array({"body", "id"}),
                        "prediction ID must match the ID supplied in the URL", "value_error"});
    } else {
      req.id = it->get<std::string>();
    }
  }
  if (auto it = doc.find("input"); it != doc.end() && !it->is_null()) {
    if (!it->is_object()) {
      errors.push_back(
          {json::array({"body", "input"}), "value is not a valid dict", "type_error.dict"});
    } else {
      req.input = *it;
    }
  }
  if (auto it = doc.find("webhook"); it != doc.end() && !it->is_null()) {
    if (!it->is_string()) {
      errors.push_back({json::array({"body", "webhook"}), "str type expected", "type_error.str"});
    } else if (!valid_http_url(it->get<std::string>())) {
      errors.push_back({json::array({"body", "webhook"}), "invalid or missing URL scheme",
                        "value_error.url.scheme"});
    } else {
      req.webhook = it->get<std::string>();
    }
  }
  // As Cog 0.9: the filter is echoed as given (null included); null or an empty list means every
  // event (`webhook_events_filter or default_events()`).
  req.events_json = json::array({"start", "output", "logs", "completed"});
  if (auto it = doc.find("webhook_events_filter"); it != doc.end()) {
    if (it->is_null()) {
      req.events_json = nullptr;
    } else if (!it->is_array()) {
      errors.push_back({json::array({"body", "webhook_events_filter"}), "value is not a valid list",
                        "type_error.list"});
    } else {
      unsigned events = 0;
      for (std::size_t i = 0; i < it->size(); ++i) {
        const json& name = (*it)[i];
        unsigned bit = 0;
        for (event e : {ev_start, ev_output, ev_logs, ev_completed}) {
          if (name.is_string() && name.get<std::string>() == event_name(e)) bit = e;
        }
        if (bit == 0) {
          errors.push_back({json::array({"body", "webhook_events_filter", i}),
                            "value is not a valid enumeration member; permitted: 'start', "
                            "'output', 'logs', 'completed'",
                            "type_error.enum"});
        }
        events |= bit;
      }
      req.events_json = *it;
      req.events = events == 0 ? all_events : events;
    }
  }
  if (auto it = doc.find("created_at"); it != doc.end() && !it->is_null()) {
    if (!it->is_string()) {
      errors.push_back(
          {json::array({"body", "created_at"}), "invalid datetime format", "value_error.datetime"});
    } else {
      req.created_at = *it;
    }
  }
  if (auto it = doc.find("output_file_prefix"); it != doc.end() && it->is_string()) {
    req.output_file_prefix = *it;
  }
  auto parsed = parse_plan(req.input);
  if (auto* errs = std::get_if<std::vector<field_error>>(&parsed)) {
    errors.insert(errors.end(), errs->begin(), errs->end());
  } else {
    req.behaviour = std::get<plan>(std::move(parsed));
  }
  if (!errors.empty()) return errors;
  return req;
}

std::string iso_timestamp(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  auto micros = duration_cast<microseconds>(t.time_since_epoch()).count();
  auto secs = static_cast<std::time_t>(micros / 1'000'000);
  auto frac = micros % 1'000'000;
  if (frac < 0) {
    frac += 1'000'000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::array<char, 64> buf{};
  std::snprintf(buf.data(), buf.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%06lld+00:00",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return buf.data();
}

std::chrono::milliseconds retry_delay(int retry, std::chrono::milliseconds base) {
  constexpr std::chrono::milliseconds cap{120'000};
  if (retry <= 1) return std::chrono::milliseconds::zero();
  auto delay = base;
  for (int i = 1; i < retry && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

json openapi_document() {
  auto integer = [](std::string title, std::string description) {
    return json{{"type", "integer"},
                {"title", std::move(title)},
                {"description", std::move(description)},
                {"minimum", 0}};
  };
  auto boolean = [](std::string title, std::string description) {
    return json{{"type", "boolean"},
                {"title", std::move(title)},
                {"description", std::move(description)},
                {"default", false}};
  };
  auto string = [](std::string title, std::string description) {
    return json{
        {"type", "string"}, {"title", std::move(title)}, {"description", std::move(description)}};
  };
  json input_props = {
      {"prompt", string("Prompt", "Echoed as the output; the prefix of generator items")},
      {"sleep_ms", integer("Sleep Ms", "Milliseconds to take before finishing (cancellable)")},
      {"outputs", integer("Outputs", "Generator: number of items of the output list")},
      {"interval_ms", integer("Interval Ms", "Milliseconds before each log line / output item")},
      {"logs", integer("Logs", "Number of log lines to print")},
      {"fail", string("Fail", "End failed with this error")},
      {"exit_137", boolean("Exit 137", "The model process dies (exit code 137)")},
      {"hang", boolean("Hang", "Never finish until canceled")},
      {"start_delay_ms",
       integer("Start Delay Ms", "Stay starting this long before starting (cancellable)")},
      {"upload", string("Upload", "Output a file of this name, uploaded to --upload-url")},
      {"content", string("Content", "The uploaded file's content")},
      {"behaviour",
       {{"title", "Behaviour"},
        {"type", "string"},
        {"enum", {"echo", "fail", "exit_137", "hang"}},
        {"default", "echo"}}},
  };
  json status = {{"title", "Status"},
                 {"description", "An enumeration."},
                 {"enum", {"starting", "processing", "succeeded", "canceled", "failed"}},
                 {"type", "string"}};
  json webhook_event = {{"title", "WebhookEvent"},
                        {"description", "An enumeration."},
                        {"enum", {"start", "output", "logs", "completed"}},
                        {"type", "string"}};
  json request = {
      {"title", "PredictionRequest"},
      {"type", "object"},
      {"properties",
       {{"id", {{"title", "Id"}, {"type", "string"}}},
        {"input", {{"$ref", "#/components/schemas/Input"}}},
        {"webhook", {{"title", "Webhook"}, {"type", "string"}, {"format", "uri"}}},
        {"webhook_events_filter",
         {{"type", "array"},
          {"items", {{"$ref", "#/components/schemas/WebhookEvent"}}},
          {"default", {"start", "output", "logs", "completed"}}}},
        {"created_at", {{"title", "Created At"}, {"type", "string"}, {"format", "date-time"}}},
        {"output_file_prefix", {{"title", "Output File Prefix"}, {"type", "string"}}}}}};
  json response = {{"title", "PredictionResponse"},
                   {"type", "object"},
                   {"properties",
                    {{"id", {{"type", "string"}}},
                     {"input", {{"$ref", "#/components/schemas/Input"}}},
                     {"output", {{"$ref", "#/components/schemas/Output"}}},
                     {"logs", {{"type", "string"}, {"default", ""}}},
                     {"error", {{"type", "string"}}},
                     {"status", {{"$ref", "#/components/schemas/Status"}}},
                     {"created_at", {{"type", "string"}, {"format", "date-time"}}},
                     {"started_at", {{"type", "string"}, {"format", "date-time"}}},
                     {"completed_at", {{"type", "string"}, {"format", "date-time"}}},
                     {"metrics", {{"type", "object"}}}}}};
  auto body_of = [](std::string ref) {
    return json{{"content", {{"application/json", {{"schema", {{"$ref", std::move(ref)}}}}}}}};
  };
  json responses = {{"200",
                     {{"description", "Successful Response"},
                      {"content",
                       {{"application/json",
                         {{"schema", {{"$ref", "#/components/schemas/PredictionResponse"}}}}}}}}},
                    {"422", {{"description", "Validation Error"}}}};
  return {{"openapi", "3.0.2"},
          {"info", {{"title", "Cog"}, {"version", "0.1.0"}, {"description", "fake_cog"}}},
          {"paths",
           {{"/predictions",
             {{"post",
               {{"summary", "Predict"},
                {"requestBody", body_of("#/components/schemas/PredictionRequest")},
                {"responses", responses}}}}},
            {"/predictions/{prediction_id}",
             {{"put",
               {{"summary", "Predict Idempotent"},
                {"requestBody", body_of("#/components/schemas/PredictionRequest")},
                {"responses", responses}}}}},
            {"/predictions/{prediction_id}/cancel", {{"post", {{"summary", "Cancel"}}}}},
            {"/health-check", {{"get", {{"summary", "Healthcheck"}}}}},
            {"/shutdown", {{"post", {{"summary", "Start Shutdown"}}}}}}},
          {"components",
           {{"schemas",
             {{"Input", {{"title", "Input"}, {"type", "object"}, {"properties", input_props}}},
              {"Output", {{"title", "Output"}}},
              {"Status", status},
              {"WebhookEvent", webhook_event},
              {"PredictionRequest", request},
              {"PredictionResponse", response}}}}}};
}

}  // namespace fake_cog
