// Server-Sent Events of running predictions (PROTOCOLS.md §1, urls.stream).
#include "scheduler/stream_hub.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace cogwheel;
using namespace cogwheel::scheduler;
using nlohmann::json;

namespace {

constexpr std::int64_t created_seconds = 1795310374;

storage::prediction_row row(const std::string& status, const std::string& output_json = "null",
                            const std::string& logs = "") {
  storage::prediction_row p;
  p.id = "0123456789abcdefghjkmnpqrs";
  p.model = "acme/echo";
  p.version_id = std::string(64, 'a');
  p.created_at = created_seconds * 1'000'000 + 765994;
  p.status = status;
  p.output_json = output_json;
  p.logs = logs;
  if (status != "starting") p.started_at = p.created_at + 1;
  return p;
}

storage::prediction_row finished(storage::prediction_row p, const std::string& status) {
  p.status = status;
  p.completed_at = p.created_at + 2;
  if (status == "failed") {
    p.error_code = "E1000";
    p.error = "E1000: boom";
  }
  return p;
}

// (event, data) pairs, for comparisons with readable failures.
using pairs = std::vector<std::pair<std::string, std::string>>;
pairs names(const std::vector<sse_event>& events) {
  pairs out;
  for (const auto& e : events) out.emplace_back(e.event, e.data);
  return out;
}

std::vector<std::uint64_t> seqs(const std::vector<sse_event>& events) {
  std::vector<std::uint64_t> out;
  for (const auto& e : events) out.push_back(e.seq);
  return out;
}

// An EventSource as the WHATWG HTML standard defines its parsing: lines end at CRLF, LF or CR;
// "field: value" with one optional space; data lines joined with LF; a blank line dispatches.
struct parsed_event {
  std::string id, event, data;
};
std::vector<parsed_event> parse_sse(const std::string& stream) {
  std::vector<parsed_event> out;
  std::string id, event, data;
  bool has_data = false;
  std::size_t i = 0;
  while (i < stream.size()) {
    std::size_t end = stream.find_first_of("\r\n", i);
    if (end == std::string::npos) break;  // an unfinished line is not parsed
    const std::string line = stream.substr(i, end - i);
    i = end + ((stream[end] == '\r' && end + 1 < stream.size() && stream[end + 1] == '\n') ? 2 : 1);
    if (line.empty()) {
      if (has_data) {
        if (!data.empty() && data.back() == '\n') data.pop_back();
        out.push_back({id, event.empty() ? "message" : event, data});
      }
      event.clear();
      data.clear();
      has_data = false;
      continue;
    }
    if (line[0] == ':') continue;
    const auto colon = line.find(':');
    const std::string field = line.substr(0, colon);
    std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.erase(0, 1);
    if (field == "data") {
      data += value + "\n";
      has_data = true;
    } else if (field == "event") {
      event = value;
    } else if (field == "id") {
      id = value;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("each new generator item is one output event", "[stream_hub]") {
  CHECK(names(derive_events(nullptr, row("processing", R"(["a","b"])"))) ==
        pairs{{"output", "a"}, {"output", "b"}});
  const auto before = row("processing", R"(["a"])");
  CHECK(names(derive_events(&before, row("processing", R"(["a","b",{"x":1}])"))) ==
        pairs{{"output", "b"}, {"output", R"({"x":1})"}});
  CHECK(derive_events(&before, before).empty());
}

TEST_CASE("a growing text output yields the appended chunk", "[stream_hub]") {
  const auto before = row("processing", R"("Hel")");
  CHECK(names(derive_events(&before, row("processing", R"("Hello, world")"))) ==
        pairs{{"output", "lo, world"}});
  CHECK(names(derive_events(nullptr, before)) == pairs{{"output", "Hel"}});
}

TEST_CASE("growing logs yield the appended text", "[stream_hub]") {
  const auto before = row("processing", "null", "step 1\n");
  CHECK(names(derive_events(&before, row("processing", "null", "step 1\nstep 2\n"))) ==
        pairs{{"logs", "step 2\n"}});
  CHECK(names(derive_events(nullptr, before)) == pairs{{"logs", "step 1\n"}});
  CHECK(derive_events(nullptr, row("processing")).empty());
}

TEST_CASE("the end of a prediction is one done event, after an error event for a failure",
          "[stream_hub]") {
  const auto running = row("processing", R"(["a"])");

  auto ok = derive_events(&running, finished(running, "succeeded"));
  REQUIRE(names(ok).size() == 1);
  CHECK(ok[0].event == "done");
  CHECK(json::parse(ok[0].data) == json::object());

  auto failed = derive_events(&running, finished(running, "failed"));
  REQUIRE(failed.size() == 2);
  CHECK(failed[0].event == "error");
  CHECK(failed[1].event == "done");
  CHECK(json::parse(failed[1].data) == json{{"reason", "error"}});
  // PROTOCOLS.md §1: `error` carries data {"detail": ...}.
  const json detail = json::parse(failed[0].data, nullptr, false);
  CHECK(detail == json{{"detail", "E1000: boom"}});

  auto canceled = derive_events(&running, finished(running, "canceled"));
  REQUIRE(canceled.size() == 1);
  CHECK(canceled[0].event == "done");
  CHECK(json::parse(canceled[0].data) == json{{"reason", "canceled"}});

  // The last output comes before the end; an ended prediction ends only once.
  auto last = finished(row("processing", R"(["a","b"])"), "succeeded");
  CHECK(names(derive_events(&running, last)) == pairs{{"output", "b"}, {"done", "{}"}});
  CHECK(derive_events(&last, last).empty());
}

TEST_CASE("format_event writes one data line per line of data", "[stream_hub]") {
  CHECK(format_event({3, "output", "hello"}, created_seconds) ==
        "id: 1795310374:3\nevent: output\ndata: hello\n\n");
  CHECK(format_event({12, "logs", "one\ntwo"}, created_seconds) ==
        "id: 1795310374:12\nevent: logs\ndata: one\ndata: two\n\n");
  CHECK(format_event({1, "done", "{}"}, 7) == "id: 7:1\nevent: done\ndata: {}\n\n");
}

TEST_CASE("an EventSource reads back exactly the data format_event wrote", "[stream_hub]") {
  const std::string samples[] = {"hello", "one\ntwo", "line\n", "\n\n", "", "a: b", " leading"};
  for (const auto& data : samples) {
    INFO(json(data).dump());
    auto events = parse_sse(format_event({5, "logs", data}, created_seconds));
    REQUIRE(events.size() == 1);
    CHECK(events[0].id == "1795310374:5");
    CHECK(events[0].event == "logs");
    CHECK(events[0].data == data);
  }
}

TEST_CASE("log text with carriage returns (progress bars) survives the stream", "[stream_hub]") {
  // A bare CR ends a line for an EventSource: each piece must be sent as a data line, else the
  // text after the CR is read as a field name and lost.
  const std::string progress = " 10%|#         |\r 20%|##        |\r100%|##########|\n";
  auto events = parse_sse(format_event({9, "logs", progress}, created_seconds));
  REQUIRE(events.size() == 1);
  CHECK(events[0].event == "logs");
  CHECK(events[0].data == " 10%|#         |\n 20%|##        |\n100%|##########|\n");
}

TEST_CASE("parse_last_event_id reads the seq of <seconds>:<seq>", "[stream_hub]") {
  CHECK(parse_last_event_id("1795310374:7") == 7);
  CHECK(parse_last_event_id("1795310374:123456") == 123456);
  CHECK(parse_last_event_id("0:1") == 1);
}

TEST_CASE("a malformed Last-Event-ID is 0", "[stream_hub]") {
  for (const char* id : {"", "7", "1795310374:", "1795310374:x", "1795310374:7x", "1795310374:-7",
                         "1795310374: 7", "1795310374:7:8", "1795310374:99999999999999999999999"}) {
    INFO(id);
    CHECK(parse_last_event_id(id) == 0);
  }
}

TEST_CASE("a Last-Event-ID without numeric seconds is malformed", "[stream_hub]") {
  for (const char* id : {":7", "x:7", "-1:7"}) {
    INFO(id);
    CHECK(parse_last_event_id(id) == 0);
  }
}

TEST_CASE("the hub numbers a tracked prediction's events and resumes after a seq", "[stream_hub]") {
  stream_hub hub;
  const auto first = row("processing", R"(["a"])");
  hub.track(first);
  auto v1 = hub.events_after(first.id, 0);
  REQUIRE(v1);
  CHECK(names(v1->events) == pairs{{"output", "a"}});
  CHECK(seqs(v1->events) == std::vector<std::uint64_t>{1});
  CHECK_FALSE(v1->ended);
  CHECK(v1->seconds == created_seconds);

  hub.feed(row("processing", R"(["a","b"])", "log\n"));
  auto all = hub.events_after(first.id, 0);
  REQUIRE(all);
  CHECK(names(all->events) == pairs{{"output", "a"}, {"output", "b"}, {"logs", "log\n"}});
  CHECK(seqs(all->events) == std::vector<std::uint64_t>{1, 2, 3});
  CHECK(all->version != v1->version);

  auto resumed = hub.events_after(first.id, 1);
  REQUIRE(resumed);
  CHECK(names(resumed->events) == pairs{{"output", "b"}, {"logs", "log\n"}});
  CHECK(seqs(resumed->events) == std::vector<std::uint64_t>{2, 3});
  CHECK(hub.events_after(first.id, 3)->events.empty());

  // The same state again: nothing new, though the state was fed.
  hub.feed(row("processing", R"(["a","b"])", "log\n"));
  auto same = hub.events_after(first.id, 3);
  REQUIRE(same);
  CHECK(same->events.empty());
  CHECK(same->version != all->version);
  CHECK_FALSE(same->ended);
}

TEST_CASE("nothing follows done", "[stream_hub]") {
  stream_hub hub;
  const auto running = row("processing", R"(["a"])");
  hub.track(running);
  hub.feed(finished(row("processing", R"(["a","b"])"), "succeeded"));
  auto v = hub.events_after(running.id, 1);
  REQUIRE(v);
  CHECK(names(v->events) == pairs{{"output", "b"}, {"done", "{}"}});
  CHECK(seqs(v->events) == std::vector<std::uint64_t>{2, 3});
  CHECK(v->ended);

  hub.feed(finished(row("processing", R"(["a","b","c"])", "late\n"), "failed"));
  auto after = hub.events_after(running.id, 3);
  REQUIRE(after);
  CHECK(after->events.empty());
  CHECK(after->ended);
  CHECK(hub.events_after(running.id, 0)->events.size() == 3);
}

TEST_CASE("tracking is from the current state and happens once", "[stream_hub]") {
  stream_hub hub;
  const auto done = finished(row("processing", R"(["a"])"), "canceled");
  hub.track(done);
  auto v = hub.events_after(done.id, 0);
  REQUIRE(v);
  CHECK(names(v->events) == pairs{{"output", "a"}, {"done", R"({"reason":"canceled"})"}});
  CHECK(v->ended);

  hub.track(done);
  CHECK(hub.events_after(done.id, 0)->events.size() == 2);

  // Another prediction tracked later does not purge one that ended moments ago.
  auto other = row("starting");
  other.id = "1123456789abcdefghjkmnpqrs";
  hub.track(other);
  CHECK(hub.events_after(done.id, 0));
  auto o = hub.events_after(other.id, 0);
  REQUIRE(o);
  CHECK(o->events.empty());
  CHECK_FALSE(o->ended);
}

TEST_CASE("an untracked prediction has no view, and feeding it does not track it", "[stream_hub]") {
  stream_hub hub;
  CHECK_FALSE(hub.events_after("0123456789abcdefghjkmnpqrs", 0));
  hub.feed(row("processing", R"(["a"])"));
  CHECK_FALSE(hub.events_after("0123456789abcdefghjkmnpqrs", 0));
}
