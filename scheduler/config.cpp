#include "scheduler/config.hpp"

#include <yaml-cpp/yaml.h>

#include <boost/url/parse.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <utility>

namespace cogwheel::scheduler {

namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

// Where problems are reported: the file, and the YAML position of the node at fault.
class context {
 public:
  explicit context(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const YAML::Mark& mark, const std::string& path,
                         const std::string& problem) const {
    std::string where = file_;
    if (!mark.is_null()) {
      where += ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
    }
    std::string line = where + ": " + (path.empty() ? "" : path + ": ") + problem;
    for (char& c : line) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    throw config_error(line);
  }
  [[noreturn]] void fail(const YAML::Node& at, const std::string& path,
                         const std::string& problem) const {
    fail(at.Mark(), path, problem);
  }

 private:
  std::string file_;
};

// A YAML node and the path that names it in messages ("models[0].versions[1].id").
struct located {
  YAML::Node node;
  std::string path;
};

std::string in_quotes(std::string_view s) {
  constexpr std::size_t most = 80;
  return "\"" + std::string(s.substr(0, most)) + (s.size() > most ? "...\"" : "\"");
}

// A YAML mapping whose keys are checked: no duplicates, and only the keys the caller allows.
class mapping {
 public:
  mapping(const context& ctx, located at) : ctx_(ctx), at_(std::move(at)) {
    if (!at_.node.IsMap()) ctx_.fail(at_.node, at_.path, "must be a mapping of keys to values");
    for (const auto& kv : at_.node) {
      if (!kv.first.IsScalar()) ctx_.fail(kv.first, at_.path, "keys must be plain names");
      const std::string key = kv.first.Scalar();
      const auto [_, fresh] = entries_.emplace(key, std::make_pair(kv.first, kv.second));
      if (!fresh) ctx_.fail(kv.first, child(key), "duplicate key");
    }
  }

  // Refuses every key not in `allowed`, naming the ones that are.
  void only(std::initializer_list<std::string_view> allowed, std::string_view what) const {
    for (const auto& [key, kv] : entries_) {
      bool known = false;
      for (auto a : allowed) known = known || a == key;
      if (known) continue;
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      ctx_.fail(kv.first, child(key),
                "unknown key in " + std::string(what) + " (known: " + list + ")");
    }
  }

  // The value of `key`; nullopt when absent or null (`key:` with nothing after it).
  std::optional<located> get(const std::string& key) const {
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.second.IsNull()) return std::nullopt;
    return located{it->second.second, child(key)};
  }

  located require(const std::string& key) const {
    auto v = get(key);
    if (!v) ctx_.fail(at_.node, at_.path, "missing required key `" + key + "`");
    return *v;
  }

  const located& where() const { return at_; }

 private:
  std::string child(const std::string& key) const {
    return at_.path.empty() ? key : at_.path + "." + key;
  }

  const context& ctx_;
  located at_;
  std::map<std::string, std::pair<YAML::Node, YAML::Node>> entries_;
};

std::vector<located> sequence(const context& ctx, const located& at) {
  if (!at.node.IsSequence()) ctx.fail(at.node, at.path, "must be a list");
  std::vector<located> items;
  for (std::size_t i = 0; i < at.node.size(); ++i) {
    const YAML::Node& node = at.node;
    items.push_back({node[i], at.path + "[" + std::to_string(i) + "]"});
  }
  return items;
}

std::string scalar(const context& ctx, const located& at) {
  if (at.node.IsNull()) ctx.fail(at.node, at.path, "must not be empty");
  if (!at.node.IsScalar()) ctx.fail(at.node, at.path, "must be a single value, not a list or map");
  return at.node.Scalar();
}

std::int64_t integer(const context& ctx, const located& at, std::int64_t lo, std::int64_t hi) {
  const std::string text = scalar(ctx, at);
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < lo || v > hi) {
    ctx.fail(at.node, at.path,
             "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                 ", got " + in_quotes(text));
  }
  return v;
}

bool boolean(const context& ctx, const located& at) {
  const std::string text = scalar(ctx, at);
  if (text == "true") return true;
  if (text == "false") return false;
  ctx.fail(at.node, at.path, "must be true or false, got " + in_quotes(text));
}

std::int64_t duration_ms(const context& ctx, const located& at) {
  const std::string text = scalar(ctx, at);
  auto d = parse_duration(text);
  if (!d) {
    ctx.fail(at.node, at.path,
             "must be a duration such as 30s, 10m, 1h30m or a number of seconds (more than zero, "
             "at most 30 days), got " +
                 in_quotes(text));
  }
  return d->count();
}

std::optional<std::int64_t> optional_duration_ms(const context& ctx, const mapping& m,
                                                 const std::string& key) {
  if (auto v = m.get(key)) return duration_ms(ctx, *v);
  return std::nullopt;
}

bool valid_part(std::string_view s) {
  if (s.empty() || !std::isalnum(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return s.size() <= 100;
}

std::pair<std::string, std::string> owner_name(const context& ctx, const located& at) {
  const std::string text = scalar(ctx, at);
  const auto slash = text.find('/');
  if (slash == std::string::npos || !valid_part(text.substr(0, slash)) ||
      !valid_part(text.substr(slash + 1))) {
    ctx.fail(at.node, at.path,
             "must be owner/name, each part up to 100 letters, digits, '_', '.' or '-' starting "
             "with a letter or digit, got " +
                 in_quotes(text));
  }
  return {text.substr(0, slash), text.substr(slash + 1)};
}

std::string version_id(const context& ctx, const located& at) {
  const std::string text = scalar(ctx, at);
  bool ok = text.size() == 64;
  for (char c : text) ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  if (!ok)
    ctx.fail(at.node, at.path, "must be 64 lowercase hex characters, got " + in_quotes(text));
  return text;
}

json string_list(const context& ctx, const located& at) {
  json list = json::array();
  for (const auto& item : sequence(ctx, at)) list.push_back(scalar(ctx, item));
  if (list.empty()) ctx.fail(at.node, at.path, "must not be empty");
  return list;
}

bool http_url(const std::string& s) {
  auto u = boost::urls::parse_absolute_uri(s);
  if (!u) return false;
  const auto scheme = u->scheme_id();
  return (scheme == boost::urls::scheme::http || scheme == boost::urls::scheme::https) &&
         u->has_authority() && !u->encoded_host().empty();
}

json process_runtime(const context& ctx, const mapping& m) {
  m.only({"type", "command", "instances", "env", "slots"}, "a process runtime");
  json r = {{"type", "process"}};
  const located command = m.require("command");
  r["command"] = string_list(ctx, command);
  if (r["command"][0].get<std::string>().empty()) {
    ctx.fail(command.node, command.path, "the program (first item) must not be empty");
  }
  const auto instances = m.get("instances");
  r["instances"] = instances ? integer(ctx, *instances, 1, 1000) : 1;
  json env = json::object();
  if (auto e = m.get("env")) {
    const mapping vars(ctx, *e);  // a mapping without duplicate names
    for (const auto& kv : e->node) {
      const std::string name = kv.first.Scalar();
      bool ok = !name.empty() && !std::isdigit(static_cast<unsigned char>(name[0]));
      for (char c : name) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
      if (!ok) ctx.fail(kv.first, e->path, "bad variable name " + in_quotes(name));
      if (name == "PORT") ctx.fail(kv.first, e->path, "PORT is set by cogwheel for each container");
      env[name] = scalar(ctx, {kv.second, e->path + "." + name});
    }
  }
  r["env"] = std::move(env);
  const auto slots = m.get("slots");
  r["slots"] = slots ? integer(ctx, *slots, 1, 1000) : 1;
  return r;
}

json static_runtime(const context& ctx, const mapping& m) {
  m.only({"type", "urls", "slots"}, "a static runtime");
  json r = {{"type", "static"}};
  const located urls = m.require("urls");
  r["urls"] = string_list(ctx, urls);
  for (std::size_t i = 0; i < r["urls"].size(); ++i) {
    const auto url = r["urls"][i].get<std::string>();
    if (!http_url(url)) {
      ctx.fail(std::as_const(urls.node)[i], urls.path + "[" + std::to_string(i) + "]",
               "must be an http:// or https:// URL with a host, got " + in_quotes(url));
    }
  }
  const auto slots = m.get("slots");
  r["slots"] = slots ? integer(ctx, *slots, 1, 1000) : 1;
  return r;
}

json runtime(const context& ctx, const located& at) {
  const mapping m(ctx, at);
  const located type = m.require("type");
  const std::string t = scalar(ctx, type);
  if (t == "process") return process_runtime(ctx, m);
  if (t == "static") return static_runtime(ctx, m);
  ctx.fail(type.node, type.path, "must be process or static, got " + in_quotes(t));
}

storage::catalog_version version(const context& ctx, const located& at) {
  const mapping m(ctx, at);
  m.only({"id", "start_timeout", "run_timeout", "runtime"}, "a version");
  storage::catalog_version v;
  v.id = version_id(ctx, m.require("id"));
  v.start_timeout_ms = optional_duration_ms(ctx, m, "start_timeout");
  v.run_timeout_ms = optional_duration_ms(ctx, m, "run_timeout");
  v.runtime_json = runtime(ctx, m.require("runtime")).dump();
  return v;
}

storage::catalog_model model(const context& ctx, const located& at) {
  const mapping m(ctx, at);
  m.only({"name", "description", "versions"}, "a model");
  storage::catalog_model model;
  std::tie(model.owner, model.name) = owner_name(ctx, m.require("name"));
  if (auto d = m.get("description")) model.description = scalar(ctx, *d);
  const located versions = m.require("versions");
  for (const auto& v : sequence(ctx, versions)) model.versions.push_back(version(ctx, v));
  if (model.versions.empty()) ctx.fail(versions.node, versions.path, "needs at least one version");
  return model;
}

storage::catalog_deployment deployment(const context& ctx, const located& at) {
  const mapping m(ctx, at);
  m.only({"name", "version", "min_instances", "max_instances", "require_webhook", "start_timeout",
          "run_timeout"},
         "a deployment");
  storage::catalog_deployment d;
  std::tie(d.owner, d.name) = owner_name(ctx, m.require("name"));
  d.version_id = version_id(ctx, m.require("version"));
  if (auto v = m.get("min_instances"))
    d.min_instances = static_cast<int>(integer(ctx, *v, 0, 10000));
  d.max_instances = std::max(1, d.min_instances);
  if (auto v = m.get("max_instances")) {
    d.max_instances = static_cast<int>(integer(ctx, *v, 1, 10000));
    if (d.min_instances > d.max_instances) {
      ctx.fail(v->node, v->path,
               "max_instances " + std::to_string(d.max_instances) + " is below min_instances " +
                   std::to_string(d.min_instances));
    }
  }
  if (auto v = m.get("require_webhook")) d.require_webhook = boolean(ctx, *v);
  d.start_timeout_ms = optional_duration_ms(ctx, m, "start_timeout");
  d.run_timeout_ms = optional_duration_ms(ctx, m, "run_timeout");
  return d;
}

// Records a name at its position; fails at the second occurrence, naming the first.
class unique_names {
 public:
  unique_names(const context& ctx, std::string what) : ctx_(ctx), what_(std::move(what)) {}
  void add(const std::string& name, const located& at) {
    const auto [it, fresh] = seen_.emplace(name, at.node.Mark());
    if (fresh) return;
    ctx_.fail(at.node, at.path,
              "duplicate " + what_ + " " + in_quotes(name) + " (first at line " +
                  std::to_string(it->second.line + 1) + ")");
  }
  bool contains(const std::string& name) const { return seen_.count(name) != 0; }

 private:
  const context& ctx_;
  std::string what_;
  std::map<std::string, YAML::Mark> seen_;
};

storage::catalog_spec catalog(const context& ctx, const YAML::Node& root) {
  storage::catalog_spec spec;
  if (root.IsNull()) return spec;  // an empty file
  const mapping top(ctx, {root, ""});
  top.only({"models", "deployments"}, "the top level");
  unique_names models(ctx, "model"), versions(ctx, "version id"), deployments(ctx, "deployment");
  if (auto list = top.get("models")) {
    for (const auto& item : sequence(ctx, *list)) {
      spec.models.push_back(model(ctx, item));
      const auto& m = spec.models.back();
      const YAML::Node& node = item.node;  // const: lookups never add keys
      models.add(m.owner + "/" + m.name, {node["name"], item.path + ".name"});
      for (std::size_t i = 0; i < m.versions.size(); ++i) {
        const auto path = item.path + ".versions[" + std::to_string(i) + "].id";
        versions.add(m.versions[i].id, {node["versions"][i]["id"], path});
      }
    }
  }
  if (auto list = top.get("deployments")) {
    for (const auto& item : sequence(ctx, *list)) {
      spec.deployments.push_back(deployment(ctx, item));
      const auto& d = spec.deployments.back();
      const YAML::Node& node = item.node;
      deployments.add(d.owner + "/" + d.name, {node["name"], item.path + ".name"});
      if (!versions.contains(d.version_id)) {
        ctx.fail(node["version"], item.path + ".version",
                 "unknown version " + d.version_id + " (declare it under a model's versions)");
      }
    }
  }
  return spec;
}

resolved_version resolve(const std::string& model, const storage::catalog_version& v) {
  resolved_version r;
  r.model = model;
  r.version_id = v.id;
  if (v.start_timeout_ms) r.start_timeout = milliseconds(*v.start_timeout_ms);
  if (v.run_timeout_ms) r.run_timeout = milliseconds(*v.run_timeout_ms);
  return r;
}

}  // namespace

std::optional<milliseconds> parse_duration(std::string_view text) {
  constexpr std::int64_t most = 30LL * 24 * 3600 * 1000;
  const auto digits = [](std::string_view s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
  };
  if (digits(text)) {
    std::int64_t s = 0;
    if (text.size() > 10) return std::nullopt;
    std::from_chars(text.data(), text.data() + text.size(), s);
    if (s <= 0 || s * 1000 > most) return std::nullopt;
    return milliseconds(s * 1000);
  }
  static constexpr std::pair<std::string_view, std::int64_t> units[] = {
      {"h", 3'600'000}, {"ms", 1}, {"m", 60'000}, {"s", 1'000}};
  static constexpr int rank[] = {0, 3, 1, 2};  // the order units must appear in: h, m, s, ms
  std::int64_t total = 0;
  int last_rank = -1;
  while (!text.empty()) {
    const auto n = text.find_first_not_of("0123456789");
    if (n == 0 || n == std::string_view::npos || n > 10) return std::nullopt;
    std::int64_t value = 0;
    std::from_chars(text.data(), text.data() + n, value);
    text.remove_prefix(n);
    int found = -1;
    for (int i = 0; i < 4 && found < 0; ++i) {
      if (text.starts_with(units[i].first)) found = i;
    }
    if (found < 0 || rank[found] <= last_rank) return std::nullopt;
    last_rank = rank[found];
    text.remove_prefix(units[found].first.size());
    total += value * units[found].second;
    if (total > most) return std::nullopt;
  }
  if (total <= 0) return std::nullopt;
  return milliseconds(total);
}

config::config(storage::catalog_spec spec) : spec_(std::move(spec)) {
  for (const auto& m : spec_.models) {
    const std::string model = m.owner + "/" + m.name;
    for (const auto& v : m.versions) versions_.insert_or_assign(v.id, resolve(model, v));
    if (!m.versions.empty()) latest_.insert_or_assign(model, versions_.at(m.versions.back().id));
  }
  for (const auto& d : spec_.deployments) {
    auto it = versions_.find(d.version_id);
    if (it == versions_.end()) {
      throw config_error("deployment " + d.owner + "/" + d.name + ": unknown version " +
                         d.version_id);
    }
    resolved_version r = it->second;
    r.deployment = d.owner + "/" + d.name;
    r.require_webhook = d.require_webhook;
    if (d.start_timeout_ms) r.start_timeout = milliseconds(*d.start_timeout_ms);
    if (d.run_timeout_ms) r.run_timeout = milliseconds(*d.run_timeout_ms);
    deployments_.insert_or_assign(*r.deployment, std::move(r));
  }
}

const resolved_version* config::find_version(std::string_view id) const {
  auto it = versions_.find(id);
  return it == versions_.end() ? nullptr : &it->second;
}

const resolved_version* config::find_model_latest(std::string_view owner,
                                                  std::string_view name) const {
  std::string key;
  key.reserve(owner.size() + 1 + name.size());
  key.append(owner).append("/").append(name);
  auto it = latest_.find(key);
  return it == latest_.end() ? nullptr : &it->second;
}

const resolved_version* config::find_deployment(std::string_view owner,
                                                std::string_view name) const {
  std::string key;
  key.reserve(owner.size() + 1 + name.size());
  key.append(owner).append("/").append(name);
  auto it = deployments_.find(key);
  return it == deployments_.end() ? nullptr : &it->second;
}

config load_config_string(std::string_view yaml, std::string_view name_for_errors) {
  const context ctx{std::string(name_for_errors)};
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::ParserException& e) {
    ctx.fail(e.mark, "", "YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {
    ctx.fail(e.mark, "", "YAML error: " + e.msg);
  }
  return config(catalog(ctx, root));
}

config load_config(const std::string& path) {
  if (path.empty()) return config{};
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw config_error(path + ": cannot read the config file: it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw config_error(path + ": cannot read the config file: " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    throw config_error(path + ": cannot read the config file: " + std::strerror(errno));
  }
  return load_config_string(text.str(), path);
}

}  // namespace cogwheel::scheduler
