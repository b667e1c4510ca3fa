#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "webhook/sender.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace ssl = asio::ssl;
using namespace cogwheel::webhook;
using namespace std::chrono_literals;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Polls `condition` every few milliseconds until it holds or `deadline` passes.
template <typename Condition>
bool wait_until(Condition condition, std::chrono::milliseconds deadline = 5s) {
  auto until = std::chrono::steady_clock::now() + deadline;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// ---- A throwaway PKI: a CA and server certificates it signs, made with OpenSSL at test time.

struct pkey_free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct x509_free {
  void operator()(X509* p) const { X509_free(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;
using x509_ptr = std::unique_ptr<X509, x509_free>;

void ensure(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("OpenSSL: ") + what);
}

pkey_ptr make_key() {
  EVP_PKEY_CTX* kctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  ensure(kctx != nullptr, "EVP_PKEY_CTX_new_from_name");
  EVP_PKEY* key = nullptr;
  const bool ok = EVP_PKEY_keygen_init(kctx) == 1 &&
                  EVP_PKEY_CTX_set_group_name(kctx, "P-256") == 1 &&
                  EVP_PKEY_keygen(kctx, &key) == 1;
  EVP_PKEY_CTX_free(kctx);
  ensure(ok, "EC P-256 key generation");
  return pkey_ptr(key);
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX v3{};
  X509V3_set_ctx(&v3, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
  ensure(ext != nullptr, "X509V3_EXT_conf_nid");
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  ensure(ok, "X509_add_ext");
}

// A certificate for `key` named `cn`, signed by `issuer`/`issuer_key` (self-signed when null).
x509_ptr make_cert(EVP_PKEY* key, const char* cn, long serial, X509* issuer, EVP_PKEY* issuer_key,
                   const char* san) {
  x509_ptr cert(X509_new());
  ensure(cert != nullptr, "X509_new");
  X509* x = cert.get();
  ensure(X509_set_version(x, X509_VERSION_3) == 1, "X509_set_version");
  ensure(ASN1_INTEGER_set(X509_get_serialNumber(x), serial) == 1, "serial");
  ensure(X509_gmtime_adj(X509_getm_notBefore(x), -3600) != nullptr, "notBefore");
  ensure(X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400) != nullptr, "notAfter");
  ensure(X509_set_pubkey(x, key) == 1, "X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(x);
  ensure(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                    reinterpret_cast<const unsigned char*>(cn), -1, -1, 0) == 1,
         "CN");
  X509* signer = issuer != nullptr ? issuer : x;
  ensure(X509_set_issuer_name(x, X509_get_subject_name(signer)) == 1, "issuer");
  if (issuer == nullptr) {
    add_ext(x, signer, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(x, signer, NID_subject_key_identifier, "hash");
  } else {
    add_ext(x, signer, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, signer, NID_key_usage, "critical,digitalSignature");
    add_ext(x, signer, NID_ext_key_usage, "serverAuth");
    add_ext(x, signer, NID_subject_alt_name, san);
    add_ext(x, signer, NID_authority_key_identifier, "keyid:always");
  }
  ensure(X509_sign(x, issuer_key != nullptr ? issuer_key : key, EVP_sha256()) > 0, "X509_sign");
  return cert;
}

struct test_pki {
  pkey_ptr ca_key = make_key();
  x509_ptr ca = make_cert(ca_key.get(), "cogwheel test CA", 1, nullptr, nullptr, nullptr);
  pkey_ptr server_key = make_key();
  // Valid for the loopback address and localhost.
  x509_ptr server = make_cert(server_key.get(), "localhost", 2, ca.get(), ca_key.get(),
                              "IP:127.0.0.1,DNS:localhost");
  // Signed by the same CA, but for another name only.
  x509_ptr other =
      make_cert(server_key.get(), "other.example", 3, ca.get(), ca_key.get(), "DNS:other.example");
  std::filesystem::path ca_file;

  test_pki() {
    ca_file = std::filesystem::temp_directory_path() /
              ("cogwheel-sender-test-ca-" + std::to_string(::getpid()) + ".pem");
    std::FILE* f = std::fopen(ca_file.c_str(), "w");
    ensure(f != nullptr, "cannot write the CA file");
    const bool ok = PEM_write_X509(f, ca.get()) == 1;
    std::fclose(f);
    ensure(ok, "PEM_write_X509");
  }
  ~test_pki() {
    std::error_code ec;
    std::filesystem::remove(ca_file, ec);
  }

  // A TLS server context presenting `cert`.
  std::unique_ptr<ssl::context> server_context(X509* cert) const {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    ensure(SSL_CTX_use_certificate(ctx->native_handle(), cert) == 1, "SSL_CTX_use_certificate");
    ensure(SSL_CTX_use_PrivateKey(ctx->native_handle(), server_key.get()) == 1,
           "SSL_CTX_use_PrivateKey");
    return ctx;
  }
};

const test_pki& pki() {
  static const test_pki instance;
  return instance;
}

// ---- A loopback HTTP(S) server that records what it receives and answers as told.

struct captured_request {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;  // as received, in order
  std::string body;

  std::string header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (beast::iequals(n, name)) return v;
    }
    return "";
  }
  int count(std::string_view name) const {
    int n = 0;
    for (const auto& h : headers) n += beast::iequals(h.first, name) ? 1 : 0;
    return n;
  }
};

struct reply {
  unsigned status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool hang = false;         // read the request, never answer (until the client goes away)
  bool close_after = false;  // close the connection after the response without saying so
};

using handler = std::function<reply(const captured_request&)>;

struct server_config {
  ssl::context* tls = nullptr;
  bool mute = false;  // accept, then read and ignore bytes: no HTTP, no TLS handshake
};

class test_server {
 public:
  explicit test_server(handler h, server_config cfg = {})
      : handler_(std::move(h)), cfg_(cfg), acceptor_(ioc_), work_(ioc_.get_executor()) {
    asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(ioc_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { ioc_.run(); });
  }

  ~test_server() {
    asio::post(ioc_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
      for (auto* s : live_) s->close();
    });
    work_.reset();
    if (!wait_until([&] { return ioc_.stopped(); }, 5s)) ioc_.stop();
    thread_.join();
  }

  unsigned short port() const { return port_; }
  std::string url(const std::string& target = "/hook") const {
    return std::string(cfg_.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) +
           target;
  }
  int accepted() const { return accepted_; }
  std::vector<captured_request> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::vector<std::string> server_names() const {
    std::lock_guard lock(mu_);
    return server_names_;
  }
  // Requests that were read but, by `hang`, never answered and whose client has since gone.
  int abandoned() const { return abandoned_; }

 private:
  asio::awaitable<void> accept_loop() {
    for (int i = 0; i < 10'000; ++i) {
      auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
      if (ec) co_return;
      ++accepted_;
      asio::co_spawn(ioc_, session(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> session(asio::ip::tcp::socket socket) {
    if (cfg_.mute) {
      beast::tcp_stream stream(std::move(socket));
      live_.insert(&stream);
      co_await drain(stream);
      live_.erase(&stream);
    } else if (cfg_.tls != nullptr) {
      beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *cfg_.tls);
      live_.insert(&beast::get_lowest_layer(stream));
      auto [ec] = co_await stream.async_handshake(ssl::stream_base::server, use_tuple);
      if (!ec) {
        const char* sni = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name);
        {
          std::lock_guard lock(mu_);
          server_names_.push_back(sni != nullptr ? sni : "");
        }
        co_await serve(stream);
      }
      live_.erase(&beast::get_lowest_layer(stream));
    } else {
      beast::tcp_stream stream(std::move(socket));
      live_.insert(&stream);
      co_await serve(stream);
      live_.erase(&stream);
    }
  }

  // Reads until the peer closes (or the server stops).
  template <typename Stream>
  asio::awaitable<void> drain(Stream& stream) {
    std::array<char, 4096> sink{};
    for (int i = 0; i < 100'000; ++i) {
      auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), use_tuple);
      (void)n;
      if (ec) co_return;
    }
  }

  template <typename Stream>
  asio::awaitable<void> serve(Stream& stream) {
    beast::flat_buffer buffer;
    for (int i = 0; i < 1000; ++i) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(16 * 1024 * 1024);
      auto [ec, n] = co_await bhttp::async_read(stream, buffer, parser, use_tuple);
      (void)n;
      if (ec) co_return;
      const auto& req = parser.get();
      captured_request captured;
      captured.method = std::string(req.method_string());
      captured.target = std::string(req.target());
      for (const auto& field : req) {
        captured.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
      }
      captured.body = req.body();
      const bool keep_alive = req.keep_alive();
      {
        std::lock_guard lock(mu_);
        requests_.push_back(captured);
      }
      reply r = handler_(captured);
      if (r.hang) {
        co_await drain(stream);
        ++abandoned_;
        co_return;
      }
      bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), 11};
      for (const auto& [name, value] : r.headers) res.set(name, value);
      res.body() = std::move(r.body);
      res.keep_alive(keep_alive);
      res.prepare_payload();
      auto [write_ec, written] = co_await bhttp::async_write(stream, res, use_tuple);
      (void)written;
      if (write_ec || !keep_alive || r.close_after) {
        beast::get_lowest_layer(stream).close();
        co_return;
      }
    }
  }

  handler handler_;
  server_config cfg_;
  asio::io_context ioc_;
  asio::ip::tcp::acceptor acceptor_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  unsigned short port_ = 0;
  std::set<beast::tcp_stream*> live_;  // touched on the server's thread only
  std::atomic<int> accepted_{0};
  std::atomic<int> abandoned_{0};
  mutable std::mutex mu_;
  std::vector<captured_request> requests_;
  std::vector<std::string> server_names_;
};

reply ok_reply(std::string body = R"({"received":true})") {
  reply r;
  r.body = std::move(body);
  r.headers = {{"Content-Type", "application/json"}};
  return r;
}

// ---- The client side: a multi-threaded io_context the sender runs on.

struct client_loop {
  asio::io_context ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{
      ioc.get_executor()};
  std::vector<std::thread> threads;

  client_loop() {
    for (int i = 0; i < 2; ++i) threads.emplace_back([this] { ioc.run(); });
  }
  ~client_loop() {
    work.reset();
    if (!wait_until([&] { return ioc.stopped(); }, 10s)) ioc.stop();
    for (auto& t : threads) t.join();
  }

  std::future<send_result> start(sender& s, std::string url,
                                 std::vector<std::pair<std::string, std::string>> headers = {},
                                 std::string body = "{}") {
    return asio::co_spawn(
        ioc,
        [&s, url = std::move(url), headers = std::move(headers), body = std::move(body)]()
            -> asio::awaitable<send_result> { co_return co_await s.post(url, headers, body); },
        asio::use_future);
  }

  send_result post(sender& s, std::string url,
                   std::vector<std::pair<std::string, std::string>> headers = {},
                   std::string body = "{}") {
    auto f = start(s, std::move(url), std::move(headers), std::move(body));
    REQUIRE(f.wait_for(30s) == std::future_status::ready);
    return f.get();
  }
};

sender_options loopback_options() {
  sender_options o;
  o.guard = guard_options{{"127.0.0.1"}};
  o.connect_timeout = 5s;
  o.total_timeout = 10s;
  return o;
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// An HTTP-date `offset` from now.
std::string http_date(std::chrono::seconds offset) {
  const std::time_t t =
      std::chrono::system_clock::to_time_t(std::chrono::system_clock::now() + offset);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[64];
  std::strftime(out, sizeof out, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return out;
}

}  // namespace

TEST_CASE("sender: 200 with the body excerpt", "[webhook][sender]") {
  test_server srv([](const captured_request&) { return ok_reply(); });
  client_loop loop;
  sender s(loopback_options());
  auto res = loop.post(s, srv.url(), {}, R"({"id":"p1"})");
  INFO("error: " << res.error);
  CHECK(res.error == "");
  CHECK_FALSE(res.refused);
  CHECK(res.status == 200);
  CHECK(res.ok());
  CHECK(res.excerpt == R"({"received":true})");
  CHECK(res.retry_after == "");
  CHECK(res.latency > 0us);
  CHECK(res.latency < 10s);
}

TEST_CASE("sender: the request arrives as sent", "[webhook][sender]") {
  test_server srv([](const captured_request&) { return ok_reply(); });
  client_loop loop;
  sender s(loopback_options());
  std::string body = R"({"output":"h\u00e9llo ☃","n":[1,2,3]})";
  body += std::string("\x01\x7f\xff", 3);
  auto res = loop.post(s, srv.url("/hooks/in?token=abc&x=1"),
                       {{"webhook-id", "msg_1"},
                        {"webhook-timestamp", "1614265330"},
                        {"webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
                        {"Content-Length", "1"},  // the sender's own headers win
                        {"Host", "evil.example"}},
                       body);
  REQUIRE(res.ok());
  auto reqs = srv.requests();
  REQUIRE(reqs.size() == 1);
  const auto& r = reqs[0];
  CHECK(r.method == "POST");
  CHECK(r.target == "/hooks/in?token=abc&x=1");
  CHECK(r.body == body);
  CHECK(r.header("Host") == "127.0.0.1:" + std::to_string(srv.port()));
  CHECK(r.count("Host") == 1);
  CHECK(r.header("Content-Type") == "application/json");
  CHECK(r.header("Content-Length") == std::to_string(body.size()));
  CHECK(r.count("Content-Length") == 1);
  CHECK(r.header("User-Agent") == "cogwheel");
  CHECK(r.header("webhook-id") == "msg_1");
  CHECK(r.header("webhook-timestamp") == "1614265330");
  CHECK(r.header("webhook-signature") == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  CHECK(r.count("Transfer-Encoding") == 0);
}

TEST_CASE("sender: keep-alive connections are reused per endpoint", "[webhook][sender]") {
  test_server srv([](const captured_request&) { return ok_reply(); });
  client_loop loop;
  sender s(loopback_options());
  CHECK(loop.post(s, srv.url("/a")).ok());
  CHECK(loop.post(s, srv.url("/b")).ok());
  CHECK(loop.post(s, srv.url("/c")).ok());
  CHECK(srv.requests().size() == 3);
  CHECK(srv.accepted() == 1);
}

TEST_CASE("sender: no idle connections kept when max_idle_per_endpoint is 0", "[webhook][sender]") {
  test_server srv([](const captured_request&) { return ok_reply(); });
  client_loop loop;
  auto opts = loopback_options();
  opts.max_idle_per_endpoint = 0;
  sender s(opts);
  CHECK(loop.post(s, srv.url()).ok());
  CHECK(loop.post(s, srv.url()).ok());
  CHECK(srv.accepted() == 2);
}

TEST_CASE("sender: a reused connection the server closed is retried once on a fresh one",
          "[webhook][sender]") {
  test_server srv([](const captured_request&) {
    auto r = ok_reply();
    r.close_after = true;  // closes without Connection: close, so the client keeps it idle
    return r;
  });
  client_loop loop;
  sender s(loopback_options());
  CHECK(loop.post(s, srv.url()).ok());
  // The idle connection is closed by now or about to be; either way the next post succeeds.
  auto second = loop.post(s, srv.url());
  CHECK(second.error == "");
  CHECK(second.status == 200);
  CHECK(srv.requests().size() == 2);
  CHECK(srv.accepted() == 2);
}

TEST_CASE("sender: concurrent posts from several threads", "[webhook][sender]") {
  test_server srv([](const captured_request&) { return ok_reply(); });
  client_loop loop;
  auto opts = loopback_options();
  opts.max_idle_per_endpoint = 4;
  sender s(opts);
  std::vector<std::future<send_result>> futures;
  for (int i = 0; i < 16; ++i) {
    futures.push_back(loop.start(s, srv.url("/n" + std::to_string(i)), {}, "{}"));
  }
  for (auto& f : futures) {
    REQUIRE(f.wait_for(30s) == std::future_status::ready);
    auto res = f.get();
    CHECK(res.error == "");
    CHECK(res.status == 200);
  }
  CHECK(srv.requests().size() == 16);
  const int opened = srv.accepted();
  CHECK(opened >= 1);
  CHECK(opened <= 16);
  // Idle connections were kept: these reuse them.
  for (int i = 0; i < 4; ++i) CHECK(loop.post(s, srv.url()).ok());
  CHECK(srv.accepted() == opened);
}

TEST_CASE("sender: redirects are not followed", "[webhook][sender]") {
  test_server srv([](const captured_request& r) {
    if (r.target != "/hook") return ok_reply();
    reply moved;
    moved.status = 302;
    moved.headers = {{"Location", "/elsewhere"}};
    return moved;
  });
  client_loop loop;
  sender s(loopback_options());
  auto res = loop.post(s, srv.url("/hook"));
  INFO("error: " << res.error);
  CHECK(res.error == "");
  CHECK(res.status == 302);
  CHECK_FALSE(res.ok());
  auto reqs = srv.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].target == "/hook");
}

TEST_CASE("sender: 410 and 429 with Retry-After are surfaced", "[webhook][sender]") {
  test_server srv([](const captured_request& r) {
    reply out;
    if (r.target == "/gone") {
      out.status = 410;
      out.body = "gone";
    } else {
      out.status = 429;
      out.headers = {{"Retry-After", "7"}};
      out.body = "slow down";
    }
    return out;
  });
  client_loop loop;
  sender s(loopback_options());
  auto gone = loop.post(s, srv.url("/gone"));
  CHECK(gone.error == "");
  CHECK(gone.status == 410);
  CHECK(gone.excerpt == "gone");
  CHECK(gone.retry_after == "");
  CHECK_FALSE(gone.ok());
  auto busy = loop.post(s, srv.url("/busy"));
  CHECK(busy.error == "");
  CHECK(busy.status == 429);
  CHECK(busy.retry_after == "7");
  CHECK(busy.excerpt == "slow down");
  CHECK(parse_retry_after(busy.retry_after) == std::chrono::seconds{7});
  CHECK(srv.accepted() == 1);  // error statuses keep the connection
}

TEST_CASE("sender: an oversized response body is capped and the connection dropped",
          "[webhook][sender]") {
  const std::string big(4 * 1024 * 1024, 'z');
  test_server srv([&](const captured_request& r) {
    if (r.target == "/small") return ok_reply("small");
    return ok_reply("START" + big);
  });
  client_loop loop;
  auto opts = loopback_options();
  opts.response_limit = 10'000;
  opts.excerpt_limit = 100;
  sender s(opts);
  auto res = loop.post(s, srv.url("/big"));
  INFO("error: " << res.error);
  CHECK(res.error == "");
  CHECK(res.status == 200);
  CHECK(res.excerpt.size() == 100);
  CHECK(res.excerpt.starts_with("STARTzzz"));
  // The connection with the unread rest is not reused.
  auto next = loop.post(s, srv.url("/small"));
  CHECK(next.ok());
  CHECK(next.excerpt == "small");
  CHECK(srv.accepted() == 2);
}

TEST_CASE("sender: an excerpt shorter than the body, the connection kept", "[webhook][sender]") {
  test_server srv([](const captured_request&) { return ok_reply(std::string(3000, 'a')); });
  client_loop loop;
  auto opts = loopback_options();
  opts.excerpt_limit = 10;
  sender s(opts);
  auto res = loop.post(s, srv.url());
  INFO("error: " << res.error);
  CHECK(res.ok());
  CHECK(res.excerpt == std::string(10, 'a'));
  CHECK(loop.post(s, srv.url()).ok());
  CHECK(srv.accepted() == 1);
}

TEST_CASE("sender: a closed port is an error", "[webhook][sender]") {
  unsigned short port = 0;
  {
    asio::io_context ioc;
    asio::ip::tcp::acceptor a(ioc, {asio::ip::make_address("127.0.0.1"), 0});
    port = a.local_endpoint().port();
  }
  client_loop loop;
  sender s(loopback_options());
  auto res = loop.post(s, "http://127.0.0.1:" + std::to_string(port) + "/hook");
  INFO("error: " << res.error);
  CHECK(res.status == 0);
  CHECK_FALSE(res.refused);
  CHECK_FALSE(res.ok());
  CHECK(contains(res.error, "connect"));
}

TEST_CASE("sender: a server that never answers times out within total_timeout",
          "[webhook][sender]") {
  test_server srv([](const captured_request&) {
    reply r;
    r.hang = true;
    return r;
  });
  client_loop loop;
  auto opts = loopback_options();
  opts.total_timeout = 300ms;
  sender s(opts);
  const auto started = std::chrono::steady_clock::now();
  auto res = loop.post(s, srv.url());
  INFO("error: " << res.error);
  const auto took = std::chrono::steady_clock::now() - started;
  CHECK(res.status == 0);
  CHECK_FALSE(res.refused);
  CHECK(contains(res.error, "timeout"));
  CHECK(took >= 250ms);
  CHECK(took < 5s);
  CHECK(srv.requests().size() == 1);
  // The sender closed its side: the server sees the client go.
  CHECK(wait_until([&] { return srv.abandoned() == 1; }));
}

TEST_CASE("sender: connect_timeout covers the TLS handshake", "[webhook][sender]") {
  server_config cfg;
  cfg.mute = true;  // accepts, never speaks TLS
  test_server srv([](const captured_request&) { return ok_reply(); }, cfg);
  client_loop loop;
  auto opts = loopback_options();
  opts.connect_timeout = 200ms;
  opts.total_timeout = 10s;
  opts.ca_file = pki().ca_file.string();
  sender s(opts);
  const auto started = std::chrono::steady_clock::now();
  auto res = loop.post(s, "https://127.0.0.1:" + std::to_string(srv.port()) + "/hook");
  INFO("error: " << res.error);
  const auto took = std::chrono::steady_clock::now() - started;
  CHECK(res.status == 0);
  CHECK(contains(res.error, "timeout"));
  CHECK(took < 5s);
  CHECK(srv.accepted() == 1);
}

TEST_CASE("sender: HTTPS with a CA from ca_file", "[webhook][sender]") {
  auto ctx = pki().server_context(pki().server.get());
  server_config cfg;
  cfg.tls = ctx.get();
  test_server srv([](const captured_request&) { return ok_reply("tls ok"); }, cfg);
  client_loop loop;
  auto opts = loopback_options();
  opts.ca_file = pki().ca_file.string();
  sender s(opts);
  auto res = loop.post(s, srv.url(), {{"webhook-id", "msg_tls"}}, R"({"secure":true})");
  INFO("error: " << res.error);
  CHECK(res.error == "");
  CHECK(res.status == 200);
  CHECK(res.excerpt == "tls ok");
  auto again = loop.post(s, srv.url());
  CHECK(again.ok());
  CHECK(srv.accepted() == 1);  // the TLS connection is reused too
  auto reqs = srv.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].body == R"({"secure":true})");
  CHECK(reqs[0].header("webhook-id") == "msg_tls");
  CHECK(reqs[0].header("Host") == "127.0.0.1:" + std::to_string(srv.port()));
  // No SNI for an IP literal.
  CHECK(srv.server_names() == std::vector<std::string>{""});
}

TEST_CASE("sender: HTTPS with an untrusted certificate fails verification", "[webhook][sender]") {
  auto ctx = pki().server_context(pki().server.get());
  server_config cfg;
  cfg.tls = ctx.get();
  test_server srv([](const captured_request&) { return ok_reply(); }, cfg);
  client_loop loop;
  sender s(loopback_options());  // system CAs only
  auto res = loop.post(s, srv.url());
  INFO("error: " << res.error);
  CHECK(res.status == 0);
  CHECK_FALSE(res.refused);
  CHECK(contains(res.error, "certificate"));
  CHECK(srv.requests().empty());
}

TEST_CASE("sender: HTTPS with a certificate for another name fails verification",
          "[webhook][sender]") {
  auto ctx = pki().server_context(pki().other.get());
  server_config cfg;
  cfg.tls = ctx.get();
  test_server srv([](const captured_request&) { return ok_reply(); }, cfg);
  client_loop loop;
  auto opts = loopback_options();
  opts.ca_file = pki().ca_file.string();  // trusted CA, but no IP:127.0.0.1 in the certificate
  sender s(opts);
  auto res = loop.post(s, srv.url());
  INFO("error: " << res.error);
  CHECK(res.status == 0);
  CHECK(contains(res.error, "certificate"));
  CHECK(srv.requests().empty());
}

TEST_CASE("sender: a missing CA file is a construction error", "[webhook][sender]") {
  auto opts = loopback_options();
  opts.ca_file = "/nonexistent/cogwheel-ca.pem";
  CHECK_THROWS(sender(opts));
}

TEST_CASE("sender: loopback without the allowlist is refused before connecting",
          "[webhook][sender]") {
  test_server srv([](const captured_request&) { return ok_reply(); });
  client_loop loop;
  sender_options opts;  // no allowlist
  sender s(opts);
  auto res = loop.post(s, srv.url());
  INFO("error: " << res.error);
  CHECK(res.refused);
  CHECK(res.status == 0);
  CHECK_FALSE(res.error.empty());
  CHECK_FALSE(res.ok());
  CHECK(srv.accepted() == 0);
  CHECK(srv.requests().empty());
}

TEST_CASE("sender: an invalid URL is refused", "[webhook][sender]") {
  client_loop loop;
  sender s(loopback_options());
  auto res = loop.post(s, "ftp://127.0.0.1/x");
  INFO("error: " << res.error);
  CHECK(res.refused);
  CHECK_FALSE(res.error.empty());
  CHECK(res.status == 0);
}

TEST_CASE("parse_retry_after: delta-seconds", "[webhook][sender][retry_after]") {
  CHECK(parse_retry_after("0") == 0s);
  CHECK(parse_retry_after("7") == 7s);
  CHECK(parse_retry_after("120") == 120s);
  CHECK(parse_retry_after(" 30 ") == 30s);
  CHECK(parse_retry_after("86400") == 86400s);
}

TEST_CASE("parse_retry_after: HTTP-dates", "[webhook][sender][retry_after]") {
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT") == 0s);  // past: no delay
  auto ahead = parse_retry_after(http_date(120s));
  REQUIRE(ahead.has_value());
  CHECK(*ahead >= 115s);
  CHECK(*ahead <= 121s);
  auto later = parse_retry_after(http_date(3600s));
  REQUIRE(later.has_value());
  CHECK(*later >= 3595s);
  CHECK(*later <= 3601s);
}

TEST_CASE("parse_retry_after: malformed values", "[webhook][sender][retry_after]") {
  CHECK_FALSE(parse_retry_after("").has_value());
  CHECK_FALSE(parse_retry_after("   ").has_value());
  CHECK_FALSE(parse_retry_after("soon").has_value());
  CHECK_FALSE(parse_retry_after("-5").has_value());
  CHECK_FALSE(parse_retry_after("+5").has_value());
  CHECK_FALSE(parse_retry_after("1.5").has_value());
  CHECK_FALSE(parse_retry_after("5s").has_value());
  CHECK_FALSE(parse_retry_after("99999999999999999999999").has_value());
  CHECK_FALSE(parse_retry_after("Sun, 06 Nov 1994 08:49:37 UTC").has_value());
  CHECK_FALSE(parse_retry_after("Sun, 31 Feb 2030 08:49:37 GMT").has_value());
  CHECK_FALSE(parse_retry_after("Sun, 06 Foo 2030 08:49:37 GMT").has_value());
  CHECK_FALSE(parse_retry_after("Xyz, 06 Nov 2030 08:49:37 GMT").has_value());
  CHECK_FALSE(parse_retry_after("Sun, 06 Nov 2030 24:49:37 GMT").has_value());
  CHECK_FALSE(parse_retry_after("Sun, 6 Nov 2030 08:49:37 GMT").has_value());
  CHECK_FALSE(parse_retry_after("Sunday, 06-Nov-30 08:49:37 GMT").has_value());
}
