// Common aliases of the HTTP library: the Beast message types every part of cogwheel speaks.
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace cogwheel::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;

using request = bhttp::request<bhttp::string_body>;
using response = bhttp::response<bhttp::string_body>;

// The value of the `Server` header on every response.
inline constexpr std::string_view server_name = "cogwheel";

}  // namespace cogwheel::http
