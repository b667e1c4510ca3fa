// cogwheel_loadgen: creates predictions over keep-alive HTTP connections, as fast as the server
// answers (closed loop) or at a fixed total rate (each connection on its own schedule), and
// reports what it measured. One thread per connection; loopback only; bounded in time and count.
//
//   cogwheel_loadgen --url http://127.0.0.1:5080 --token T --version V [--input JSON]
//                    [--webhook URL | --webhooks URL1,URL2,...] [--events start,completed]
//                    [--connections 64]
//                    [--duration 10] [--rate 0] [--max 0] [--ids FILE]
//
// Prints one line of `key=value` pairs: created, seconds, rate, p50_ms, p99_ms, max_ms, failed.
// With --ids, writes "<prediction id> <unix microseconds when its create was sent>" per line.
// --webhooks gives the creates their webhook URLs round-robin (one counter across connections).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using clock_type = std::chrono::steady_clock;
using nlohmann::json;

namespace {

struct options {
  std::string url = "http://127.0.0.1:5080";
  std::string token;
  std::string version;
  std::string input = R"({"prompt":"bench"})";
  std::string webhook;
  std::string webhooks;
  std::string events;
  int connections = 64;
  double duration_s = 10;
  double rate = 0;  // total creates per second; 0: as fast as answered
  long max = 0;     // stop after this many creates in all; 0: no count bound
  std::string ids_file;
};

struct sample {
  std::string id;
  std::int64_t sent_unix_us = 0;
};

struct results {
  std::mutex mu;
  std::vector<double> latencies_ms;
  std::vector<sample> samples;
  std::atomic<long> failed{0};
  std::atomic<long> sent{0};
  std::atomic<unsigned long> next_body{0};
};

std::int64_t unix_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void run_connection(const options& o, const std::string& host, const std::string& port,
                    const std::vector<std::string>& bodies, clock_type::time_point start,
                    clock_type::time_point end, double interval_s, double offset_s, results& out) {
  asio::io_context ioc;
  asio::ip::tcp::resolver resolver(ioc);
  beast::tcp_stream stream(ioc);
  beast::flat_buffer buffer;
  std::vector<double> latencies;
  std::vector<sample> samples;
  bool connected = false;
  bhttp::request<bhttp::string_body> req{bhttp::verb::post, "/v1/predictions", 11};
  req.set(bhttp::field::host, host + ":" + port);
  req.set(bhttp::field::authorization, "Bearer " + o.token);
  req.set(bhttp::field::content_type, "application/json");
  req.keep_alive(true);
  if (bodies.size() == 1) {
    req.body() = bodies[0];
    req.prepare_payload();
  }
  for (long k = 0;; ++k) {
    if (o.max > 0 && out.sent.fetch_add(1) >= o.max) break;
    auto due = start;
    if (interval_s > 0) {
      due += std::chrono::duration_cast<clock_type::duration>(
          std::chrono::duration<double>(offset_s + static_cast<double>(k) * interval_s));
      if (due >= end) break;
      std::this_thread::sleep_until(due);
    } else if (clock_type::now() >= end) {
      break;
    }
    if (bodies.size() > 1) {
      req.body() = bodies[out.next_body.fetch_add(1) % bodies.size()];
      req.prepare_payload();
    }
    try {
      if (!connected) {
        stream.expires_after(std::chrono::seconds(5));
        stream.connect(resolver.resolve(host, port));
        connected = true;
      }
      const auto sent_at = clock_type::now();
      const auto sent_unix = unix_us();
      stream.expires_after(std::chrono::seconds(30));
      bhttp::write(stream, req);
      bhttp::response<bhttp::string_body> res;
      bhttp::read(stream, buffer, res);
      // Latency from when it was due (open loop: includes waiting behind a slow answer).
      const auto from = interval_s > 0 ? due : sent_at;
      latencies.push_back(
          std::chrono::duration<double, std::milli>(clock_type::now() - from).count());
      if (res.result_int() != 201) {
        ++out.failed;
      } else if (!o.ids_file.empty()) {
        const json p = json::parse(res.body(), nullptr, false);
        if (p.is_object() && p.contains("id")) samples.push_back({p["id"], sent_unix});
      }
      if (!res.keep_alive()) {
        beast::error_code ignored;
        stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
        stream.close();
        connected = false;
      }
    } catch (const std::exception&) {
      ++out.failed;
      beast::error_code ignored;
      stream.socket().close(ignored);
      connected = false;
    }
  }
  std::lock_guard lock(out.mu);
  out.latencies_ms.insert(out.latencies_ms.end(), latencies.begin(), latencies.end());
  out.samples.insert(out.samples.end(), samples.begin(), samples.end());
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= s.size()) {
    auto comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) parts.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return parts;
}

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"cogwheel_loadgen: creates predictions over keep-alive HTTP and measures it"};
  app.add_option("--url", o.url, "Base URL of cogwheel (loopback)")->capture_default_str();
  app.add_option("--token", o.token, "API token")->required();
  app.add_option("--version", o.version, "Version id to create predictions on")->required();
  app.add_option("--input", o.input, "Input JSON of every prediction")->capture_default_str();
  auto* one_webhook = app.add_option("--webhook", o.webhook, "Webhook URL of every prediction");
  app.add_option("--webhooks", o.webhooks, "Comma-separated webhook URLs, round-robin over creates")
      ->excludes(one_webhook);
  app.add_option("--events", o.events, "webhook_events_filter, comma-separated");
  app.add_option("--connections", o.connections, "Keep-alive connections (one thread each)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--duration", o.duration_s, "Seconds to run")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();
  app.add_option("--rate", o.rate, "Total creates per second (0: as fast as answered)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  app.add_option("--max", o.max, "Stop after this many creates (0: no bound)")
      ->check(CLI::Range(0L, 100'000'000L));
  app.add_option("--ids", o.ids_file, "Write '<id> <sent unix us>' lines here");
  CLI11_PARSE(app, argc, argv);

  auto parsed = boost::urls::parse_uri(o.url);
  if (!parsed || parsed->scheme() != "http") {
    std::fprintf(stderr, "cogwheel_loadgen: --url must be an http:// URL\n");
    return 2;
  }
  const std::string host(parsed->host());
  const std::string port = parsed->has_port() ? std::string(parsed->port()) : "80";
  const json input = json::parse(o.input, nullptr, false);
  if (!input.is_object()) {
    std::fprintf(stderr, "cogwheel_loadgen: --input must be a JSON object\n");
    return 2;
  }
  json body = {{"version", o.version}, {"input", input}};
  if (!o.webhook.empty()) body["webhook"] = o.webhook;
  if (!o.events.empty()) {
    json events = json::array();
    for (auto& e : split_commas(o.events)) events.push_back(e);
    body["webhook_events_filter"] = events;
  }
  std::vector<std::string> bodies;
  if (o.webhooks.empty()) {
    bodies.push_back(body.dump());
  } else {
    for (auto& url : split_commas(o.webhooks)) {
      body["webhook"] = url;
      bodies.push_back(body.dump());
    }
    if (bodies.empty()) {
      std::fprintf(stderr, "cogwheel_loadgen: --webhooks names no URL\n");
      return 2;
    }
  }

  results out;
  const auto start = clock_type::now() + std::chrono::milliseconds(50);
  const auto end = start + std::chrono::duration_cast<clock_type::duration>(
                               std::chrono::duration<double>(o.duration_s));
  const double interval = o.rate > 0 ? o.connections / o.rate : 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < o.connections; ++i) {
    const double offset = interval * i / o.connections;
    threads.emplace_back(
        [&, offset] { run_connection(o, host, port, bodies, start, end, interval, offset, out); });
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();

  const auto created = static_cast<long>(out.latencies_ms.size()) - out.failed.load();
  std::printf("created=%ld seconds=%.2f rate=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f failed=%ld\n",
              created, seconds, static_cast<double>(created) / seconds,
              percentile(out.latencies_ms, 0.50), percentile(out.latencies_ms, 0.99),
              out.latencies_ms.empty()
                  ? 0.0
                  : *std::max_element(out.latencies_ms.begin(), out.latencies_ms.end()),
              out.failed.load());
  if (!o.ids_file.empty()) {
    std::ofstream ids(o.ids_file);
    for (const auto& s : out.samples) ids << s.id << ' ' << s.sent_unix_us << '\n';
  }
  return 0;
}
