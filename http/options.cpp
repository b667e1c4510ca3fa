#include "http/options.hpp"

#include <boost/url/parse.hpp>
#include <charconv>
#include <stdexcept>

namespace cogwheel::http {

listen_address parse_listen(std::string_view text) {
  auto fail = [&](std::string_view why) {
    throw std::invalid_argument("listen address \"" + std::string(text) +
                                "\": " + std::string(why) + " (expected HOST:PORT)");
  };
  auto authority = boost::urls::parse_authority(text);
  if (!authority) fail("malformed");
  if (authority->has_userinfo()) fail("unexpected '@'");
  if (!authority->has_port() || authority->port().empty()) fail("missing port");
  if (authority->host_type() == boost::urls::host_type::ipvfuture) fail("unsupported host");

  std::string_view port_text = authority->port();
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535) {
    fail("port must be 0 to 65535");
  }
  listen_address result;
  result.port = static_cast<std::uint16_t>(port);
  result.host = authority->host_address();  // percent-decoded, IPv6 without brackets
  if (result.host.empty()) fail("missing host");
  return result;
}

void server_options::validate() const {
  auto fail = [](std::string message) { throw std::invalid_argument(std::move(message)); };
  parse_listen(listen);
  if (header_limit == 0) fail("header_limit must be positive");
  if (body_limit == 0) fail("body_limit must be positive");
  if (read_timeout <= std::chrono::milliseconds::zero()) fail("read_timeout must be positive");
  if (idle_timeout <= std::chrono::milliseconds::zero()) fail("idle_timeout must be positive");
  if (write_timeout <= std::chrono::milliseconds::zero()) fail("write_timeout must be positive");
}

}  // namespace cogwheel::http
