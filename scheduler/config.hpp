#pragma once
// The config file: models, their versions and deployments, validated at load, kept in memory for
// the API (a create resolves its version here, without a database round trip) and written to the
// database with storage::catalog_sync at start.
//
// Shape (deploy/cogwheel.example.yaml is a commented example):
//
//   models:                              # optional
//     - name: acme/echo                  # owner/name: [A-Za-z0-9][A-Za-z0-9_.-]* each
//       description: Echoes its input    # optional
//       versions:                        # at least one; the last one listed is the latest
//         - id: 5c7d...caa               # 64 lowercase hex, unique across all models
//           start_timeout: 10m           # optional: queue wait + boot (default 10m)
//           run_timeout: 30m             # optional (default 30m)
//           runtime:                     # how containers are obtained, stored as JSON
//             type: process              # process: cogwheel starts a local command per container
//             command: ["./fake_cog"]    #   argv, non-empty; PORT is passed in the environment
//             instances: 2               #   optional, >= 1 (default 1)
//             env: {MODE: echo}          #   optional map of extra environment variables
//             slots: 1                   #   optional, concurrent predictions per container
//           # or: type: static           # static: containers someone else runs
//           #     urls: ["http://10.0.0.5:5000"]   # non-empty list of http(s) URLs
//           #     slots: 1               #   optional (default 1)
//   deployments:                         # optional
//     - name: acme/echo-prod             # owner/name, unique among deployments
//       version: 5c7d...caa              # a version declared above
//       min_instances: 1                 # optional (default 0)
//       max_instances: 4                 # optional (default max(1, min_instances)), >= min
//       require_webhook: false           # optional: refuse creates without a webhook
//       start_timeout: 5m                # optional: overrides the version's
//       run_timeout: 1h                  # optional: overrides the version's
//
// Durations are integers (seconds) or strings of h/m/s/ms parts in that order: 30s, 10m, 1h30m,
// 500ms. Unknown keys are refused, so that a typo never silently falls back to a default.
#include <chrono>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "storage/catalog.hpp"

namespace cogwheel::scheduler {

inline constexpr std::chrono::milliseconds default_start_timeout{10 * 60 * 1000};
inline constexpr std::chrono::milliseconds default_run_timeout{30 * 60 * 1000};

// An invalid or unreadable config file. what() is one line: "file:line:column: where: problem".
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What a prediction create needs, with every default applied.
struct resolved_version {
  std::string model;                      // "owner/name"
  std::string version_id;                 // 64 lowercase hex
  std::optional<std::string> deployment;  // "owner/name" when resolved through a deployment
  bool require_webhook = false;
  std::chrono::milliseconds start_timeout = default_start_timeout;
  std::chrono::milliseconds run_timeout = default_run_timeout;
};

// A validated catalog and its lookups. Immutable once built; the pointers the lookups return stay
// valid as long as the config does.
class config {
 public:
  config() = default;  // no models: every create is a 404/422
  // Builds the lookups of an already validated spec (load_config validates).
  explicit config(storage::catalog_spec spec);

  const storage::catalog_spec& spec() const { return spec_; }
  bool empty() const { return spec_.models.empty() && spec_.deployments.empty(); }

  // A version by id (no deployment); nullptr when unknown.
  const resolved_version* find_version(std::string_view id) const;
  // A model's latest version; nullptr when the model is unknown.
  const resolved_version* find_model_latest(std::string_view owner, std::string_view name) const;
  // A deployment's pinned version, with the deployment's overrides; nullptr when unknown.
  const resolved_version* find_deployment(std::string_view owner, std::string_view name) const;

 private:
  storage::catalog_spec spec_;
  std::map<std::string, resolved_version, std::less<>> versions_;     // by version id
  std::map<std::string, resolved_version, std::less<>> latest_;       // by "owner/name"
  std::map<std::string, resolved_version, std::less<>> deployments_;  // by "owner/name"
};

// Reads and validates the file at `path`; an empty path is an empty config. Throws config_error.
config load_config(const std::string& path);

// Validates YAML text; `name_for_errors` stands for the file name in messages. Throws config_error.
config load_config_string(std::string_view yaml, std::string_view name_for_errors);

// "10m", "1h30m", "500ms", "45" (seconds) as milliseconds; nullopt when malformed, zero or over
// 30 days. Exposed for tests.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

}  // namespace cogwheel::scheduler
