#pragma once
// Model containers and their state. Containers come from runtimes (DESIGN.md):
// - static: Cog base URLs listed per version in the config file (containers someone else runs);
// - process: cogwheel starts `instances` local processes per version from the configured command,
//   passing PORT and WEBHOOK_AUTH_TOKEN in the environment and `--upload-url URL` as arguments
//   (also COG_UPLOAD_URL in the environment), restarts one that
//   exits (with backoff) and stops them all on shutdown.
// Each container's state comes from polling GET /health-check; only READY containers with a free
// slot get work. Slots are counted here: a slot is taken when a prediction is claimed for the
// container and given back when the prediction ends there or goes back to the queue.
#include <sys/types.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "http/client.hpp"
#include "storage/catalog.hpp"

namespace cogwheel::scheduler {

enum class container_health { unknown, starting, ready, busy, setup_failed, defunct, unreachable };
const char* to_string(container_health h);
// The Cog /health-check status text (STARTING, READY, ...); unknown text is `unknown`.
container_health parse_health(std::string_view cog_status);

struct container_pool_options {
  std::string callback_token;        // WEBHOOK_AUTH_TOKEN of process containers
  std::string upload_url;            // --upload-url of process containers ("" none)
  std::filesystem::path config_dir;  // relative commands with a '/' resolve from here
  std::chrono::milliseconds health_interval{1'000};
  std::chrono::milliseconds health_timeout{2'000};
  std::chrono::milliseconds stop_grace{5'000};  // SIGTERM, then SIGKILL
};

struct container_snapshot {
  std::string id;  // its base URL: unique at any moment, and what the database records
  std::string version_id;
  std::string runtime;  // static | process
  container_health health = container_health::unknown;
  int slots = 1;
  int in_use = 0;
  int restarts = 0;
  pid_t pid = 0;
};

class container_pool {
 public:
  container_pool(boost::asio::io_context& ioc, http::client& client,
                 const storage::catalog_spec& spec, container_pool_options opts);
  ~container_pool();
  container_pool(const container_pool&) = delete;
  container_pool& operator=(const container_pool&) = delete;

  void start();  // spawns the process containers and starts health checks
  void stop();   // stops health checks and the process containers (blocking, bounded)

  // Called (from any thread) when capacity may have appeared: a container became ready or a slot
  // was given back. Set before start().
  std::function<void()> on_capacity;
  // Called when a process container exited, with the predictions it held. Set before start().
  std::function<void(const std::string& container_id, std::vector<std::string> predictions)>
      on_lost;

  // Called when a health check finds a container SETUP_FAILED, DEFUNCT or unreachable after it was
  // in another state, with the predictions it holds. Set before start().
  std::function<void(const std::string& container_id, container_health h,
                     std::vector<std::string> predictions)>
      on_unhealthy;

  // Reserves the free slots of ready containers, grouped by version (only `versions`, when given;
  // at most `max_per_version` each): one container id per reserved slot. A reserved slot is not
  // free for anyone else until confirm() or unreserve() settles it.
  std::map<std::string, std::vector<std::string>> reserve(const std::vector<std::string>& versions,
                                                          std::size_t max_per_version);
  // Whether reserve(versions, ...) would find a free slot now.
  bool has_free_slot(const std::vector<std::string>& versions);
  // Whether a ready container of one of `versions` has a slot not running a prediction, reserved
  // or not (a reservation may end unused: its claim can miss rows committed while it ran).
  bool has_room(const std::vector<std::string>& versions);
  // A reserved slot now holds a prediction; false when the container is gone (restarted).
  bool confirm(const std::string& container_id, const std::string& prediction_id);
  // A reserved slot that was not used. (No on_capacity: it was free before the reservation; the
  // caller wakes whoever might want it.)
  void unreserve(const std::string& container_id);
  // Takes a slot of `container_id` for a prediction without a reservation (work taken over);
  // false when the container is gone.
  bool acquire(const std::string& container_id, const std::string& prediction_id);
  // Gives back the slot a prediction held, if any; returns its container id.
  std::optional<std::string> release(const std::string& prediction_id);
  // Marks a container's state until its next health check (409: busy; unreachable).
  void mark(const std::string& container_id, container_health h);
  // The container a prediction holds a slot of, if any.
  std::optional<std::string> holder(const std::string& prediction_id);
  bool is_process(const std::string& container_id);
  std::optional<container_snapshot> find(const std::string& container_id);
  std::optional<std::string> version_of(const std::string& container_id);
  // Whether a container of `version` other than `except` is ready, busy or still starting.
  bool has_alternative(const std::string& version, const std::string& except);
  // The predictions held here, with their containers (only process containers', if asked).
  std::vector<std::pair<std::string, std::string>> held(bool process_only);

  std::vector<container_snapshot> snapshot();

 private:
  struct container;
  void spawn(container& c);
  boost::asio::awaitable<void> watch(std::shared_ptr<container> c);
  boost::asio::awaitable<void> check_health(container& c);
  void notify_capacity();

  boost::asio::io_context& ioc_;
  http::client& client_;
  container_pool_options opts_;
  std::mutex mu_;
  std::vector<std::shared_ptr<container>> containers_;
  std::map<std::string, std::string> holders_;  // prediction id -> container id
  std::atomic<bool> stopping_{false};
  std::atomic<int> watchers_{0};
};

}  // namespace cogwheel::scheduler
