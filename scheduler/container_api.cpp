#include "scheduler/container_api.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <fstream>
#include <nlohmann/json.hpp>

#include "http/problem.hpp"
#include "scheduler/api/ids.hpp"

namespace cogwheel::scheduler {

namespace asio = boost::asio;
namespace bhttp = http::bhttp;
using http::request_context;
using http::response;
using nlohmann::json;

namespace {

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(digits[p[i] >> 4]);
    out.push_back(digits[p[i] & 0xf]);
  }
  return out;
}

bool same(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string random_hex(std::size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return hex(buf.data(), buf.size());
}

response unavailable() {
  auto r = http::problem(bhttp::status::service_unavailable, "cogwheel is starting; retry shortly");
  r.set(bhttp::field::retry_after, "1");
  return r;
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class handlers {
 public:
  explicit handlers(container_api& api) : api_(api) {}

  asio::awaitable<response> update(request_context& ctx) {
    const auto auth = ctx.req[bhttp::field::authorization];
    if (!auth.starts_with("Bearer ") || !same(auth.substr(7), api_.token)) {
      co_return http::problem(bhttp::status::unauthorized,
                              "A container update needs Authorization: Bearer <container token>");
    }
    const json body = json::parse(ctx.req.body(), nullptr, false);
    if (body.is_discarded()) {
      co_return http::problem(bhttp::status::bad_request, "The body is not valid JSON");
    }
    std::string why;
    auto u = parse_cog_update(body, why);
    if (!u) co_return http::problem(bhttp::status::unprocessable_entity, why);
    // Answer at once: Cog holds its own answer to our PUT until its start webhook is answered.
    api_.dispatch.ingest(std::move(*u));
    co_return http::json(bhttp::status::ok, json::object());
  }

  asio::awaitable<response> upload(request_context& ctx) {
    if (!same(ctx.params.get("key"), api_.upload_key)) {
      co_return http::problem(bhttp::status::not_found, "Not found");
    }
    const std::string prediction_id(ctx.req["X-Prediction-ID"]);
    if (!api::is_prediction_id(prediction_id)) {
      co_return http::problem(bhttp::status::bad_request,
                              "An upload needs the X-Prediction-ID header of its prediction");
    }
    // Safe as a whole (and so at most 100 characters), as download() checks.
    const std::string name =
        safe_file_name(random_hex(8) + "-" + std::string(ctx.params.get("filename")));
    const auto folder = api_.files.dir / prediction_id;
    std::error_code ec;
    std::filesystem::create_directories(folder, ec);
    bool stored = !ec;
    if (stored) {
      std::ofstream out(folder / name, std::ios::binary | std::ios::trunc);
      out.write(ctx.req.body().data(), static_cast<std::streamsize>(ctx.req.body().size()));
      out.close();
      stored = static_cast<bool>(out);
    }
    if (!stored) {
      const std::string why = ec ? ec.message() : "cannot write " + (folder / name).string();
      spdlog::error("prediction {}: cannot store an uploaded file: {}", prediction_id, why);
      api_.dispatch.fail(prediction_id, "E9825", "Failed to upload file: " + why);
      co_return http::problem(bhttp::status::internal_server_error,
                              "The file could not be stored: " + why);
    }
    const std::int64_t expires = unix_now() + api_.files.url_ttl.count();
    // Signed in the path, not the query: Cog strips the query of the URL it is given back.
    const std::string url =
        api_.public_url + "/files/" + prediction_id + "/" + std::to_string(expires) + "/" +
        file_signature(api_.files.signing_key, prediction_id, name, expires) + "/" + name;
    auto res = http::json(bhttp::status::created, json{{"url", url}});
    res.set(bhttp::field::location, url);
    co_return res;
  }

  asio::awaitable<response> download(request_context& ctx) {
    const std::string prediction_id(ctx.params.get("prediction_id"));
    const std::string name(ctx.params.get("name"));
    const std::string signature(ctx.params.get("signature"));
    const std::string expires_text(ctx.params.get("expires"));
    std::int64_t expires = 0;
    const auto [end, ec] =
        std::from_chars(expires_text.data(), expires_text.data() + expires_text.size(), expires);
    if (ec != std::errc{} || end != expires_text.data() + expires_text.size()) expires = 0;
    if (!api::is_prediction_id(prediction_id) || name != safe_file_name(name) || expires == 0 ||
        !same(signature, file_signature(api_.files.signing_key, prediction_id, name, expires))) {
      co_return http::problem(bhttp::status::not_found, "File not found");
    }
    if (expires < unix_now()) {
      co_return http::problem(bhttp::status::gone, "This file URL has expired");
    }
    std::ifstream in(api_.files.dir / prediction_id / name, std::ios::binary);
    if (!in) co_return http::problem(bhttp::status::not_found, "File not found");
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    response res{bhttp::status::ok, 11};
    res.set(bhttp::field::content_type, "application/octet-stream");
    res.set(bhttp::field::cache_control, "private, max-age=60");
    res.body() = std::move(bytes);
    res.prepare_payload();
    co_return res;
  }

 private:
  container_api& api_;
};

using api_handler = std::function<asio::awaitable<response>(handlers&, request_context&)>;

http::handler guarded(std::atomic<container_api*>& slot, api_handler h) {
  return [&slot, h = std::move(h)](request_context& ctx) -> asio::awaitable<response> {
    container_api* api = slot.load();
    if (api == nullptr) co_return unavailable();
    handlers hs(*api);
    co_return co_await h(hs, ctx);
  };
}

}  // namespace

std::string file_signature(const std::string& key, const std::string& prediction_id,
                           const std::string& name, std::int64_t expires) {
  const std::string msg = prediction_id + "/" + name + "\n" + std::to_string(expires);
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac.data(), &len);
  return hex(mac.data(), len);
}

std::string safe_file_name(std::string_view name) {
  std::string out;
  for (char c : name) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    out.push_back(ok ? c : '_');
    if (out.size() >= 100) break;
  }
  while (!out.empty() && out.front() == '.') out.erase(out.begin());
  return out.empty() ? "file" : out;
}

void add_container_routes(http::router& routes, std::atomic<container_api*>& slot) {
  routes.add(bhttp::verb::post, "/internal/cog/webhook",
             guarded(slot, [](handlers& h, request_context& ctx) { return h.update(ctx); }));
  routes.add(bhttp::verb::put, "/internal/cog/uploads/{key}/{filename}",
             guarded(slot, [](handlers& h, request_context& ctx) { return h.upload(ctx); }));
  routes.add(bhttp::verb::get, "/files/{prediction_id}/{expires}/{signature}/{name}",
             guarded(slot, [](handlers& h, request_context& ctx) { return h.download(ctx); }));
}

}  // namespace cogwheel::scheduler
