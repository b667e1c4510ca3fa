// fake_cog: the process' settings, filled by main.cpp from flags and environment variables.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace fake_cog {

struct config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 5000;  // 0: any free port (printed on the "listening" line)
  std::chrono::milliseconds setup_time{0};
  bool setup_fail = false;
  std::size_t concurrency = 1;
  std::string upload_url;          // Cog's --upload-url; "" = none
  std::string webhook_auth_token;  // WEBHOOK_AUTH_TOKEN; "" = no Authorization header
  std::chrono::milliseconds throttle{500};
  int terminal_retries = 12;
  std::chrono::milliseconds retry_backoff{100};  // urllib3 backoff_factor 0.1 s
  bool exit_on_defunct = true;
  std::chrono::milliseconds connect_timeout{5'000};  // of webhooks and uploads
  std::chrono::milliseconds total_timeout{10'000};
  // FAKE_COG_RECEIPTS: a file to append "<prediction id> accepted|terminal <unix microseconds>"
  // to when a prediction is accepted and when its terminal webhook goes out (benchmarks measure
  // latencies with it); "" = none.
  std::string receipts_file;
};

}  // namespace fake_cog
