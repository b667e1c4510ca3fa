#include "scheduler/api/timefmt.hpp"

#include <chrono>
#include <cstdio>

namespace cogwheel::scheduler::api {

namespace {

using namespace std::chrono;

constexpr storage::micros micros_per_second = 1'000'000;
constexpr storage::micros micros_per_day = 86'400 * micros_per_second;

// Reads exactly `n` digits at `pos`; nullopt if any is not a digit.
std::optional<int> digits(std::string_view s, std::size_t pos, std::size_t n) {
  if (pos + n > s.size()) return std::nullopt;
  int v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

// Days since the epoch for a valid civil date, else nullopt.
std::optional<storage::micros> date_micros(std::string_view s) {
  auto y = digits(s, 0, 4), m = digits(s, 5, 2), d = digits(s, 8, 2);
  if (!y || !m || !d || s[4] != '-' || s[7] != '-') return std::nullopt;
  const year_month_day ymd{year{*y}, month{static_cast<unsigned>(*m)},
                           day{static_cast<unsigned>(*d)}};
  if (!ymd.ok()) return std::nullopt;
  return sys_days{ymd}.time_since_epoch().count() * micros_per_day;
}

// Parses `.fraction` at `pos` (if present), advancing pos; nullopt on a dot without digits.
std::optional<storage::micros> fraction(std::string_view s, std::size_t& pos) {
  if (pos >= s.size() || s[pos] != '.') return 0;
  ++pos;
  storage::micros v = 0;
  std::size_t n = 0;
  for (; pos < s.size() && s[pos] >= '0' && s[pos] <= '9'; ++pos, ++n) {
    if (n < 6) v = v * 10 + (s[pos] - '0');
  }
  if (n == 0) return std::nullopt;
  for (; n < 6; ++n) v *= 10;
  return v;
}

// `Z` or `±HH:MM` making up the rest of the string: the offset east of UTC in micros.
std::optional<storage::micros> offset(std::string_view rest) {
  if (rest == "Z" || rest == "z") return 0;
  if (rest.size() != 6 || (rest[0] != '+' && rest[0] != '-') || rest[3] != ':') {
    return std::nullopt;
  }
  auto h = digits(rest, 1, 2), m = digits(rest, 4, 2);
  if (!h || !m || *h > 23 || *m > 59) return std::nullopt;
  const storage::micros v = (*h * 3600 + *m * 60) * micros_per_second;
  return rest[0] == '+' ? v : -v;
}

}  // namespace

std::string rfc3339_micros(storage::micros t) {
  const sys_time<microseconds> tp{microseconds{t}};
  const auto days_tp = floor<days>(tp);
  const year_month_day ymd{days_tp};
  const hh_mm_ss<microseconds> tod{tp - days_tp};
  const int year_value = int{ymd.year()};
  if (year_value < 0 || year_value > 9999) {  // outside RFC 3339's four digits: as printf would
    char buf[48];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%06lldZ", year_value,
                  unsigned{ymd.month()}, unsigned{ymd.day()}, static_cast<int>(tod.hours().count()),
                  static_cast<int>(tod.minutes().count()), static_cast<int>(tod.seconds().count()),
                  static_cast<long long>(tod.subseconds().count()));
    return buf;
  }
  // "YYYY-MM-DDTHH:MM:SS.uuuuuuZ", digit by digit (this is in every response).
  std::string out = "0000-00-00T00:00:00.000000Z";
  const auto put = [&out](std::size_t end, long long v, int n) {
    for (int i = 0; i < n; ++i, v /= 10)
      out[end - static_cast<std::size_t>(i)] = static_cast<char>('0' + v % 10);
  };
  put(3, year_value, 4);
  put(6, unsigned{ymd.month()}, 2);
  put(9, unsigned{ymd.day()}, 2);
  put(12, tod.hours().count(), 2);
  put(15, tod.minutes().count(), 2);
  put(18, tod.seconds().count(), 2);
  put(25, tod.subseconds().count(), 6);
  return out;
}

std::optional<storage::micros> parse_rfc3339(std::string_view s) {
  if (s.size() < 10) return std::nullopt;
  auto date = date_micros(s.substr(0, 10));
  if (!date) return std::nullopt;
  if (s.size() == 10) return date;
  if (s.size() < 20 || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':') {
    return std::nullopt;
  }
  auto hh = digits(s, 11, 2), mm = digits(s, 14, 2), ss = digits(s, 17, 2);
  if (!hh || !mm || !ss || *hh > 23 || *mm > 59 || *ss > 59) return std::nullopt;
  std::size_t pos = 19;
  auto frac = fraction(s, pos);
  if (!frac) return std::nullopt;
  auto off = offset(s.substr(pos));
  if (!off) return std::nullopt;
  return *date + (*hh * 3600 + *mm * 60 + *ss) * micros_per_second + *frac - *off;
}

storage::micros now_micros() {
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace cogwheel::scheduler::api
