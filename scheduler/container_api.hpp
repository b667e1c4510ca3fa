#pragma once
// The routes model containers call, and the files they upload:
//   POST /internal/cog/webhook                     a container's prediction update (Cog webhook),
//                                                  Authorization: Bearer <container token>
//   PUT  /internal/cog/uploads/{key}/{filename}    an output file (raw bytes, X-Prediction-ID);
//                                                  answers 201 with the file's signed URL in
//                                                  Location, which becomes the output value
//   GET  /files/{prediction_id}/{expires}/{signature}/{name}   serves an uploaded file until its
//                                                  signed URL expires (410 after; the signature
//                                                  is in the path because Cog drops the query)
#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>

#include "http/router.hpp"
#include "scheduler/dispatcher.hpp"

namespace cogwheel::scheduler {

struct file_store_options {
  std::filesystem::path dir;           // where uploads are kept
  std::string signing_key;             // HMAC key of the signed URLs
  std::chrono::seconds url_ttl{3600};  // how long a signed URL works
};

struct container_api {
  dispatcher& dispatch;
  std::string token;       // the bearer token containers present
  std::string upload_key;  // the {key} path segment of upload URLs
  std::string public_url;  // without trailing slash
  file_store_options files;
};

// Registers the routes; until `slot` is set they answer 503. `slot` must outlive the router.
void add_container_routes(http::router& routes, std::atomic<container_api*>& slot);

// The signature of a file URL: hex HMAC-SHA256(key, "<prediction_id>/<name>\n<expires>").
std::string file_signature(const std::string& key, const std::string& prediction_id,
                           const std::string& name, std::int64_t expires);

// A file name made safe for a path segment and the disk: [A-Za-z0-9._-], others become '_', no
// leading dot, at most 100 characters; "file" when nothing is left.
std::string safe_file_name(std::string_view name);

}  // namespace cogwheel::scheduler
