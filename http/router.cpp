#include "http/router.hpp"

#include <algorithm>
#include <boost/url/parse.hpp>
#include <stdexcept>

#include "http/problem.hpp"

namespace cogwheel::http {

std::string_view path_params::get(std::string_view name) const {
  for (const auto& [key, value] : values_) {
    if (key == name) return value;
  }
  return {};
}

bool path_params::contains(std::string_view name) const {
  return std::any_of(values_.begin(), values_.end(),
                     [&](const auto& entry) { return entry.first == name; });
}

void path_params::set(std::string name, std::string value) {
  for (auto& entry : values_) {
    if (entry.first == name) {
      entry.second = std::move(value);
      return;
    }
  }
  values_.emplace_back(std::move(name), std::move(value));
}

std::string_view request_context::path() const {
  std::string_view target = req.target();
  return target.substr(0, target.find('?'));
}

std::string_view request_context::query() const {
  std::string_view target = req.target();
  auto mark = target.find('?');
  return mark == std::string_view::npos ? std::string_view{} : target.substr(mark + 1);
}

void router::add(bhttp::verb method, std::string pattern, handler h) {
  auto fail = [&](std::string_view why) {
    throw std::invalid_argument("route pattern \"" + pattern + "\": " + std::string(why));
  };
  if (pattern.empty() || pattern.front() != '/') fail("must start with '/'");
  if (!h) fail("handler is empty");
  route r{method, pattern, {}, std::move(h)};
  if (pattern != "/") {
    std::string_view rest = std::string_view(pattern).substr(1);
    while (true) {
      auto slash = rest.find('/');
      std::string_view text = rest.substr(0, slash);
      bool param = text.size() >= 2 && text.front() == '{' && text.back() == '}';
      if (param) text = text.substr(1, text.size() - 2);
      if (text.find_first_of("{}") != std::string_view::npos) fail("'{name}' must be a segment");
      if (param && std::any_of(r.segments.begin(), r.segments.end(),
                               [&](const segment& s) { return s.param && s.text == text; })) {
        fail("parameter named twice");
      }
      if (param && text.empty()) fail("empty parameter name");
      r.segments.push_back({std::string(text), param});
      if (slash == std::string_view::npos) break;
      rest = rest.substr(slash + 1);
    }
  }
  for (const auto& other : routes_) {
    if (other.method == method && other.pattern == pattern) fail("method already registered");
  }
  routes_.push_back(std::move(r));
}

router::match_result router::match(bhttp::verb method, std::string_view target) const {
  match_result result;
  auto url = boost::urls::parse_origin_form(target);
  if (!url) {
    result.outcome = match_result::kind::bad_target;
    return result;
  }
  std::vector<std::string> parts(url->segments().begin(), url->segments().end());

  // Among the routes whose pattern matches the path, the most specific one with the method wins:
  // literal beats parameter, segment by segment from the left.
  auto more_specific = [](const route& a, const route& b) {
    for (std::size_t i = 0; i < a.segments.size(); ++i) {
      if (a.segments[i].param != b.segments[i].param) return !a.segments[i].param;
    }
    return false;
  };
  const route* best = nullptr;
  std::vector<bhttp::verb> allowed;
  for (const auto& r : routes_) {
    if (r.segments.size() != parts.size()) continue;
    bool matches = true;
    for (std::size_t i = 0; i < parts.size() && matches; ++i) {
      matches = r.segments[i].param ? !parts[i].empty() : r.segments[i].text == parts[i];
    }
    if (!matches) continue;
    if (std::find(allowed.begin(), allowed.end(), r.method) == allowed.end()) {
      allowed.push_back(r.method);
    }
    if (r.method == method && (best == nullptr || more_specific(r, *best))) best = &r;
  }
  if (best != nullptr) {
    result.outcome = match_result::kind::found;
    result.target = &best->h;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      if (best->segments[i].param) result.params.set(best->segments[i].text, std::move(parts[i]));
    }
  } else if (!allowed.empty()) {
    result.outcome = match_result::kind::method_not_allowed;
    for (auto verb : allowed) {
      if (!result.allow.empty()) result.allow += ", ";
      result.allow += bhttp::to_string(verb);
    }
  }
  return result;
}

asio::awaitable<response> router::dispatch(request_context& ctx) const {
  auto found = match(ctx.req.method(), ctx.req.target());
  switch (found.outcome) {
    case match_result::kind::found:
      ctx.params = std::move(found.params);
      co_return co_await (*found.target)(ctx);
    case match_result::kind::method_not_allowed: {
      auto res = problem(bhttp::status::method_not_allowed,
                         "method " + std::string(ctx.req.method_string()) + " is not allowed on " +
                             std::string(ctx.path()));
      res.set(bhttp::field::allow, found.allow);
      co_return res;
    }
    case match_result::kind::bad_target:
      co_return problem(bhttp::status::bad_request, "malformed request target");
    case match_result::kind::not_found:
      break;
  }
  co_return problem(bhttp::status::not_found, "no route for " + std::string(ctx.path()));
}

}  // namespace cogwheel::http
