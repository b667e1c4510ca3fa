#include "scheduler/api/headers.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>

namespace cogwheel::scheduler::api {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
           return lower(x) == lower(y);
         });
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The value of one `wait[=N]` preference (parameters after `;` already removed).
prefer_result wait_value(std::string_view pref) {
  const auto eq = pref.find('=');
  if (eq == std::string_view::npos) return {max_prefer_wait, ""};
  auto value = trim(pref.substr(eq + 1));
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    value = value.substr(1, value.size() - 2);
  }
  int n = 0;
  if (!all_digits(value) || value.size() > 3 ||
      std::from_chars(value.data(), value.data() + value.size(), n).ec != std::errc{} || n < 1 ||
      n > max_prefer_wait.count()) {
    return {std::nullopt, "Prefer: wait must be between 1 and 60 seconds"};
  }
  return {std::chrono::seconds{n}, ""};
}

struct unit_def {
  std::string_view name;
  std::int64_t micros;
};
// Longest names first so that "ms" is not read as "m" followed by "s".
constexpr unit_def units[] = {
    {"ms", 1'000}, {"h", 3'600'000'000}, {"m", 60'000'000}, {"s", 1'000'000}};

// Reads one <number><unit> term at the front of `s`, advancing it; nullopt when malformed.
// The result is capped at just over the maximum so nothing overflows.
std::optional<std::int64_t> duration_term(std::string_view& s) {
  std::size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  const auto whole = s.substr(0, i);
  std::string_view frac;
  if (i < s.size() && s[i] == '.') {
    const auto start = ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    frac = s.substr(start, i - start);
  }
  if (whole.empty() && frac.empty()) return std::nullopt;
  s.remove_prefix(i);
  const auto unit = std::find_if(std::begin(units), std::end(units),
                                 [&](const unit_def& u) { return s.starts_with(u.name); });
  if (unit == std::end(units)) return std::nullopt;
  s.remove_prefix(unit->name.size());
  const std::int64_t cap = std::chrono::microseconds(max_cancel_after).count() + 1;
  std::int64_t v = 0;
  for (char c : whole) {
    v = v * 10 + (c - '0');
    if (v > cap / unit->micros) return cap;
  }
  v *= unit->micros;
  std::int64_t scale = unit->micros;
  for (char c : frac) {  // digits below a microsecond are dropped
    scale /= 10;
    v += (c - '0') * scale;
  }
  return std::min(v, cap);
}

}  // namespace

prefer_result parse_prefer(std::string_view header) {
  while (!header.empty()) {
    const auto comma = header.find(',');
    auto pref = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
    pref = trim(pref.substr(0, pref.find(';')));
    const auto name = trim(pref.substr(0, pref.find('=')));
    if (iequals(name, "wait")) return wait_value(pref);
  }
  return {};
}

duration_result parse_cancel_after(std::string_view header) {
  auto s = trim(header);
  if (s.empty()) return {std::nullopt, "Cancel-After must not be empty"};
  const std::int64_t max = std::chrono::microseconds(max_cancel_after).count();
  std::int64_t total = 0;
  while (!s.empty()) {
    auto term = duration_term(s);
    if (!term) {
      return {std::nullopt,
              "Cancel-After must be a duration such as 30s, 5m, 1h or 1h30m (units h, m, s, ms)"};
    }
    total = std::min(total + *term, max + 1);
  }
  if (total < std::chrono::microseconds(min_cancel_after).count()) {
    return {std::nullopt, "Cancel-After must be at least 5 seconds"};
  }
  if (total > max) return {std::nullopt, "Cancel-After must be at most 24 hours"};
  return {std::chrono::microseconds{total}, ""};
}

std::optional<std::string> bearer_token(std::string_view authorization) {
  const auto space = authorization.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const auto scheme = authorization.substr(0, space);
  if (!iequals(scheme, "Bearer") && !iequals(scheme, "Token")) return std::nullopt;
  auto token = authorization.substr(space);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  if (token.empty() ||
      std::any_of(token.begin(), token.end(), [](char c) { return c <= ' ' || c == 0x7f; })) {
    return std::nullopt;
  }
  return std::string(token);
}

}  // namespace cogwheel::scheduler::api
