// cogwheel_webhook_receiver: a local webhook receiver for the benchmarks (bench/webhooks.sh,
// bench/run.sh). HTTP/1.1 keep-alive on 127.0.0.1, on --ports listeners (from --port, or ephemeral
// with --port 0), every --slow-every-th of them slow (answers after --slow-ms, on a timer: other
// connections are not held up). Verifies each request's Standard Webhooks signature with --secret,
// writes a receipt per request and, on exit (SIGTERM/SIGINT, --duration, --max), prints a summary.
//
//   cogwheel_webhook_receiver [--port 0] [--ports 1] [--slow-every 0] [--slow-ms 2000]
//                             [--threads 2] [--secret whsec_...] [--receipts FILE]
//                             [--duration 600] [--max 0] [--cog-receipts FILE] [--ids FILE]
//
// stdout, first line, once every listener is open: `ports=P1,P2,...` (and `slow_ports=...`).
// Receipts: `<unix us> <port> <webhook-id> <prediction id> <status> <event>` per request, where
// the event is inferred from the body (a prediction): starting/processing -> start, a terminal
// status -> completed, else other. `GET /stats` on any port answers the counts so far (not
// counted as a delivery). The last stdout line is the summary, `key=value` pairs:
//   received, seconds (first to last receipt), rate, start, completed, other, duplicates (a
//   webhook-id seen again: a retry), predictions_completed, bad_signatures, bad_timestamps,
//   unsigned, invalid_body, healthy_received, slow_received, healthy_port_min/max, per_port,
//   in_flight_max;
// with --cog-receipts (fake_cog's FAKE_COG_RECEIPTS: `<id> accepted|terminal <unix us>`): the
// container terminal update -> webhook received latency of every `completed` delivery (its first
// receipt), all / healthy ports / slow ports: terminal_to_webhook_{p50,p99,max}_ms and _n, and
// no_terminal (completed deliveries without a terminal receipt);
// with --ids (cogwheel_loadgen's `<id> <sent unix us>`): expected, missing_start,
// missing_completed (of those predictions), e2e_seconds (first create sent -> last completed
// webhook received) and e2e_rate; with both: create_to_container_{p50,p99,max}_ms (create sent ->
// the container accepted it).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "webhook/signature.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::ip::tcp;
using nlohmann::json;

namespace {

struct options {
  std::string host = "127.0.0.1";
  int port = 0;
  int ports = 1;
  int slow_every = 0;
  int slow_ms = 2000;
  int threads = 2;
  std::vector<std::string> secrets;
  int tolerance_s = 300;
  std::string receipts_file;
  double duration_s = 600;
  long max = 0;
  std::string cog_receipts_file;
  std::string ids_file;
};

enum class event : unsigned char { start, completed, other };
const char* event_name(event e) {
  switch (e) {
    case event::start:
      return "start";
    case event::completed:
      return "completed";
    case event::other:
      break;
  }
  return "other";
}

struct record {
  std::int64_t us = 0;
  int port_index = 0;
  std::string webhook_id;
  std::string prediction_id;
  event ev = event::other;
};

std::int64_t unix_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct state {
  const options& o;
  std::vector<unsigned short> ports;
  std::vector<bool> slow;
  std::mutex mu;
  std::vector<record> records;
  std::vector<long> per_port;
  std::unordered_set<std::string> completed_ids;          // predictions with a completed delivery
  std::unordered_set<std::string> started_ids;            // ... with a start delivery
  std::unordered_set<std::string> healthy_completed_ids;  // completed on a healthy port
  long start = 0, completed = 0, other = 0;
  std::FILE* receipts = nullptr;
  std::atomic<long> received{0};
  std::atomic<long> bad_signatures{0};
  std::atomic<long> bad_timestamps{0};
  std::atomic<long> unsigned_requests{0};
  std::atomic<long> invalid_body{0};
  std::atomic<long> in_flight{0};
  std::atomic<long> in_flight_max{0};
  std::atomic<bool> stopping{false};
  std::function<void()> stop;

  explicit state(const options& opts) : o(opts) {}
};

bool event_status_terminal(const std::string& s) {
  return s == "succeeded" || s == "failed" || s == "canceled" || s == "aborted";
}

// The Standard Webhooks check: webhook-id, webhook-timestamp, and one of the space-separated
// "v1,<base64>" entries of webhook-signature equal to HMAC-SHA256(id.timestamp.body).
void verify(state& st, const bhttp::request<bhttp::string_body>& req) {
  const auto id = req["webhook-id"];
  const auto ts = req["webhook-timestamp"];
  const auto sig = req["webhook-signature"];
  if (id.empty() || ts.empty() || sig.empty()) {
    ++st.unsigned_requests;
    return;
  }
  std::int64_t timestamp = 0;
  try {
    std::size_t used = 0;
    timestamp = std::stoll(std::string(ts), &used);
    if (used != ts.size()) throw std::invalid_argument("trailing characters");
  } catch (const std::exception&) {
    ++st.bad_timestamps;
    return;
  }
  const auto now_s = unix_us() / 1'000'000;
  if (timestamp < now_s - st.o.tolerance_s || timestamp > now_s + st.o.tolerance_s) {
    ++st.bad_timestamps;
  }
  if (st.o.secrets.empty()) return;
  bool ok = false;
  for (const auto& secret : st.o.secrets) {
    const std::string expected = cogwheel::webhook::sign(secret, id, timestamp, req.body());
    std::string_view rest = sig;
    while (!rest.empty() && !ok) {
      const auto space = rest.find(' ');
      const auto entry = rest.substr(0, space);
      ok = entry == expected;
      rest = space == std::string_view::npos ? std::string_view{} : rest.substr(space + 1);
    }
    if (ok) break;
  }
  if (!ok) ++st.bad_signatures;
}

std::string stats_text(state& st) {
  std::lock_guard lock(st.mu);
  std::ostringstream s;
  s << "received=" << st.received.load() << " start=" << st.start << " completed=" << st.completed
    << " other=" << st.other << " predictions_completed=" << st.completed_ids.size()
    << " predictions_started=" << st.started_ids.size()
    << " healthy_completed=" << st.healthy_completed_ids.size()
    << " bad_signatures=" << st.bad_signatures.load() << " unsigned=" << st.unsigned_requests.load()
    << " in_flight=" << st.in_flight.load() << "\n";
  return s.str();
}

void take(state& st, int port_index, const bhttp::request<bhttp::string_body>& req) {
  const auto us = unix_us();
  verify(st, req);
  record r;
  r.us = us;
  r.port_index = port_index;
  r.webhook_id = std::string(req["webhook-id"]);
  std::string status;
  const json body = json::parse(req.body(), nullptr, false);
  if (body.is_object() && body.contains("id") && body["id"].is_string()) {
    r.prediction_id = body["id"].get<std::string>();
    if (body.contains("status") && body["status"].is_string()) status = body["status"];
  } else {
    ++st.invalid_body;
  }
  if (status == "starting" || status == "processing") {
    r.ev = event::start;
  } else if (event_status_terminal(status)) {
    r.ev = event::completed;
  }
  std::lock_guard lock(st.mu);
  if (st.receipts) {
    std::fprintf(st.receipts, "%lld %u %s %s %s %s\n", static_cast<long long>(us),
                 static_cast<unsigned>(st.ports[static_cast<std::size_t>(port_index)]),
                 r.webhook_id.empty() ? "-" : r.webhook_id.c_str(),
                 r.prediction_id.empty() ? "-" : r.prediction_id.c_str(),
                 status.empty() ? "-" : status.c_str(), event_name(r.ev));
  }
  ++st.per_port[static_cast<std::size_t>(port_index)];
  switch (r.ev) {
    case event::start:
      ++st.start;
      st.started_ids.insert(r.prediction_id);
      break;
    case event::completed:
      ++st.completed;
      st.completed_ids.insert(r.prediction_id);
      if (!st.slow[static_cast<std::size_t>(port_index)]) {
        st.healthy_completed_ids.insert(r.prediction_id);
      }
      break;
    case event::other:
      ++st.other;
      break;
  }
  st.records.push_back(std::move(r));
}

asio::awaitable<void> session(state& st, int port_index, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  asio::steady_timer slow_timer(stream.get_executor());
  const bool slow = st.slow[static_cast<std::size_t>(port_index)];
  try {
    for (;;) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(4 * 1024 * 1024);
      stream.expires_after(std::chrono::seconds(120));
      co_await bhttp::async_read(stream, buffer, parser, asio::use_awaitable);
      auto req = parser.release();
      bhttp::response<bhttp::string_body> res{bhttp::status::ok, req.version()};
      res.keep_alive(req.keep_alive());
      res.set(bhttp::field::content_type, "text/plain");
      bool counted = false;
      if (req.method() == bhttp::verb::get && req.target() == "/stats") {
        res.body() = stats_text(st);
      } else if (req.method() != bhttp::verb::post) {
        res.result(bhttp::status::method_not_allowed);
      } else {
        const long now_in = ++st.in_flight;
        long seen = st.in_flight_max.load();
        while (now_in > seen && !st.in_flight_max.compare_exchange_weak(seen, now_in)) {
        }
        take(st, port_index, req);
        counted = true;
        if (slow) {
          slow_timer.expires_after(std::chrono::milliseconds(st.o.slow_ms));
          co_await slow_timer.async_wait(asio::use_awaitable);
        }
        res.body() = "ok\n";
      }
      res.prepare_payload();
      stream.expires_after(std::chrono::seconds(30));
      co_await bhttp::async_write(stream, res, asio::use_awaitable);
      if (counted) {
        --st.in_flight;
        const long n = ++st.received;
        if (st.o.max > 0 && n >= st.o.max) st.stop();
      }
      if (!res.keep_alive()) break;
    }
  } catch (const std::exception&) {
    // The peer closed, a timeout, or the receiver is stopping: the connection ends.
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

asio::awaitable<void> accept_loop(state& st, int port_index, tcp::acceptor& acceptor) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(acceptor.get_executor()),
                                                       asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (st.stopping || ec == asio::error::operation_aborted) co_return;
      continue;
    }
    socket.set_option(tcp::no_delay(true));
    auto ex = socket.get_executor();
    asio::co_spawn(ex, session(st, port_index, std::move(socket)), asio::detached);
  }
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

void print_latency(std::ostream& out, const std::string& key, const std::vector<double>& v) {
  char buf[200];
  std::snprintf(buf, sizeof buf, " %s_p50_ms=%.2f %s_p99_ms=%.2f %s_max_ms=%.2f %s_n=%zu",
                key.c_str(), percentile(v, 0.50), key.c_str(), percentile(v, 0.99), key.c_str(),
                v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()), key.c_str(), v.size());
  out << buf;
}

std::string join_ports(const state& st, bool only_slow) {
  std::string s;
  for (std::size_t i = 0; i < st.ports.size(); ++i) {
    if (only_slow && !st.slow[i]) continue;
    if (!s.empty()) s += ',';
    s += std::to_string(st.ports[i]);
  }
  return s.empty() ? "-" : s;
}

void summary(state& st) {
  std::lock_guard lock(st.mu);
  std::ostringstream out;
  const auto& recs = st.records;
  std::int64_t first = 0, last = 0;
  for (const auto& r : recs) {
    if (first == 0 || r.us < first) first = r.us;
    last = std::max(last, r.us);
  }
  const double seconds = recs.size() > 1 ? static_cast<double>(last - first) / 1e6 : 0.0;
  long healthy = 0, slow = 0, port_min = -1, port_max = 0;
  std::string per_port;
  for (std::size_t i = 0; i < st.ports.size(); ++i) {
    const long n = st.per_port[i];
    (st.slow[i] ? slow : healthy) += n;
    if (!st.slow[i]) {
      port_min = port_min < 0 ? n : std::min(port_min, n);
      port_max = std::max(port_max, n);
    }
    if (!per_port.empty()) per_port += ',';
    per_port += std::to_string(st.ports[i]) + ":" + std::to_string(n);
  }
  // First receipt of each webhook-id: a later one is a retry of the same message.
  std::unordered_set<std::string> seen_ids;
  std::vector<const record*> firsts;
  long duplicates = 0;
  for (const auto& r : recs) {
    if (!r.webhook_id.empty() && !seen_ids.insert(r.webhook_id).second) {
      ++duplicates;
      continue;
    }
    firsts.push_back(&r);
  }
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "received=%zu seconds=%.3f rate=%.0f start=%ld completed=%ld other=%ld "
                "duplicates=%ld predictions_completed=%zu bad_signatures=%ld bad_timestamps=%ld "
                "unsigned=%ld invalid_body=%ld healthy_received=%ld slow_received=%ld "
                "healthy_port_min=%ld healthy_port_max=%ld in_flight_max=%ld",
                recs.size(), seconds,
                seconds > 0 ? static_cast<double>(recs.size()) / seconds : 0.0, st.start,
                st.completed, st.other, duplicates, st.completed_ids.size(),
                st.bad_signatures.load(), st.bad_timestamps.load(), st.unsigned_requests.load(),
                st.invalid_body.load(), healthy, slow, std::max(port_min, 0L), port_max,
                st.in_flight_max.load());
  out << buf << " ports=" << st.ports.size() << " slow_ports=" << join_ports(st, true)
      << " per_port=" << per_port;

  std::unordered_map<std::string, std::int64_t> terminal_us, accepted_us;
  if (!st.o.cog_receipts_file.empty()) {
    std::ifstream in(st.o.cog_receipts_file);
    std::string id, what;
    long long us = 0;
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      if (!(fields >> id >> what >> us)) continue;
      auto& m = what == "terminal" ? terminal_us : accepted_us;
      m.emplace(id, us);  // the first one: a retried prediction keeps its first
    }
    std::vector<double> all, healthy_ms, slow_ms;
    long no_terminal = 0;
    std::unordered_set<std::string> done;
    for (const auto* r : firsts) {
      if (r->ev != event::completed || !done.insert(r->prediction_id).second) continue;
      const auto t = terminal_us.find(r->prediction_id);
      if (t == terminal_us.end()) {
        ++no_terminal;
        continue;
      }
      const double ms = static_cast<double>(r->us - t->second) / 1000.0;
      all.push_back(ms);
      (st.slow[static_cast<std::size_t>(r->port_index)] ? slow_ms : healthy_ms).push_back(ms);
    }
    print_latency(out, "terminal_to_webhook", all);
    print_latency(out, "healthy_terminal_to_webhook", healthy_ms);
    print_latency(out, "slow_terminal_to_webhook", slow_ms);
    out << " no_terminal=" << no_terminal;
  }
  if (!st.o.ids_file.empty()) {
    std::ifstream in(st.o.ids_file);
    std::string id;
    long long sent = 0;
    std::unordered_map<std::string, std::int64_t> first_start, first_completed;
    for (const auto* r : firsts) {
      auto& m = r->ev == event::start ? first_start : first_completed;
      if (r->ev != event::other) m.emplace(r->prediction_id, r->us);
    }
    long expected = 0, missing_start = 0, missing_completed = 0;
    std::int64_t first_sent = 0, last_completed = 0;
    std::vector<double> to_container;
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      if (!(fields >> id >> sent)) continue;
      ++expected;
      if (first_sent == 0 || sent < first_sent) first_sent = sent;
      if (!first_start.contains(id)) ++missing_start;
      if (const auto c = first_completed.find(id); c == first_completed.end()) {
        ++missing_completed;
      } else {
        last_completed = std::max(last_completed, c->second);
      }
      if (const auto a = accepted_us.find(id); a != accepted_us.end()) {
        to_container.push_back(static_cast<double>(a->second - sent) / 1000.0);
      }
    }
    const double e2e_s =
        last_completed > first_sent ? static_cast<double>(last_completed - first_sent) / 1e6 : 0.0;
    std::snprintf(buf, sizeof buf,
                  " expected=%ld missing_start=%ld missing_completed=%ld e2e_seconds=%.3f "
                  "e2e_rate=%.0f",
                  expected, missing_start, missing_completed, e2e_s,
                  e2e_s > 0 ? static_cast<double>(expected - missing_completed) / e2e_s : 0.0);
    out << buf;
    if (!st.o.cog_receipts_file.empty()) print_latency(out, "create_to_container", to_container);
  }
  std::printf("%s\n", out.str().c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"cogwheel_webhook_receiver: a local Standard Webhooks receiver for the benchmarks"};
  app.add_option("--host", o.host, "Address to listen on (loopback)")->capture_default_str();
  app.add_option("--port", o.port, "First port (0: ephemeral ports)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--ports", o.ports, "Number of listeners (ports P, P+1, ...)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--slow-every", o.slow_every, "Every K-th port is slow (0: none)")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  app.add_option("--slow-ms", o.slow_ms, "Slow ports answer 200 after this many ms")
      ->check(CLI::Range(0, 600'000))
      ->capture_default_str();
  app.add_option("--threads", o.threads, "io_context threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--secret", o.secrets, "whsec_ secret to verify signatures with (repeatable)");
  app.add_option("--tolerance", o.tolerance_s, "Accepted webhook-timestamp skew, seconds")
      ->capture_default_str();
  app.add_option("--receipts", o.receipts_file, "Append one line per request here");
  app.add_option("--duration", o.duration_s, "Exit after this many seconds")
      ->check(CLI::Range(0.1, 7200.0))
      ->capture_default_str();
  app.add_option("--max", o.max, "Exit after this many deliveries (0: no bound)")
      ->check(CLI::Range(0L, 100'000'000L));
  app.add_option("--cog-receipts", o.cog_receipts_file,
                 "fake_cog receipts (FAKE_COG_RECEIPTS), read on exit for latencies");
  app.add_option("--ids", o.ids_file, "cogwheel_loadgen --ids file, read on exit");
  CLI11_PARSE(app, argc, argv);
  for (const auto& s : o.secrets) {
    try {
      (void)cogwheel::webhook::secret_key(s);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cogwheel_webhook_receiver: --secret: %s\n", e.what());
      return 2;
    }
  }

  state st(o);
  if (!o.receipts_file.empty()) {
    st.receipts = std::fopen(o.receipts_file.c_str(), "a");
    if (!st.receipts) {
      std::fprintf(stderr, "cogwheel_webhook_receiver: cannot open %s\n", o.receipts_file.c_str());
      return 2;
    }
  }
  asio::io_context ioc(o.threads);
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  try {
    const auto address = asio::ip::make_address(o.host);
    for (int i = 0; i < o.ports; ++i) {
      const auto port = static_cast<unsigned short>(o.port == 0 ? 0 : o.port + i);
      auto a = std::make_unique<tcp::acceptor>(asio::make_strand(ioc));
      const tcp::endpoint ep(address, port);
      a->open(ep.protocol());
      a->set_option(tcp::acceptor::reuse_address(true));
      a->bind(ep);
      a->listen(asio::socket_base::max_listen_connections);
      st.ports.push_back(a->local_endpoint().port());
      st.slow.push_back(o.slow_every > 0 && (i + 1) % o.slow_every == 0);
      acceptors.push_back(std::move(a));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cogwheel_webhook_receiver: cannot listen: %s\n", e.what());
    return 1;
  }
  st.per_port.assign(st.ports.size(), 0);
  std::printf("ports=%s slow_ports=%s\n", join_ports(st, false).c_str(),
              join_ports(st, true).c_str());
  std::fflush(stdout);

  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  asio::steady_timer bound(ioc), flusher(ioc);
  std::once_flag once;
  st.stop = [&] {
    std::call_once(once, [&] {
      st.stopping = true;
      asio::post(ioc, [&] { ioc.stop(); });
    });
  };
  signals.async_wait([&](const beast::error_code& ec, int) {
    if (!ec) st.stop();
  });
  bound.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(o.duration_s)));
  bound.async_wait([&](const beast::error_code& ec) {
    if (!ec) st.stop();
  });
  // Receipts reach the file within 100 ms (scripts read it while the receiver runs).
  std::function<void()> flush = [&] {
    flusher.expires_after(std::chrono::milliseconds(100));
    flusher.async_wait([&](const beast::error_code& ec) {
      if (ec) return;
      {
        std::lock_guard lock(st.mu);
        if (st.receipts) std::fflush(st.receipts);
      }
      flush();
    });
  };
  flush();
  for (std::size_t i = 0; i < acceptors.size(); ++i) {
    auto& a = *acceptors[i];
    asio::co_spawn(a.get_executor(), accept_loop(st, static_cast<int>(i), a), asio::detached);
  }
  std::vector<std::thread> threads;
  for (int i = 1; i < o.threads; ++i) threads.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  {
    std::lock_guard lock(st.mu);
    if (st.receipts) std::fclose(st.receipts);
    st.receipts = nullptr;
  }
  summary(st);
  return 0;
}
