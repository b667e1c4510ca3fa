// fake_cog: the Cog HTTP routes on top of cogwheel's router.
#pragma once

#include <functional>
#include <memory>

#include "http/router.hpp"
#include "tests/fake_cog/runner.hpp"

namespace fake_cog {

// GET /health-check, PUT /predictions/{id}, POST /predictions, POST /predictions/{id}/cancel,
// GET /openapi.json, POST /shutdown. `exit` is called by /shutdown with code 0; the runner must
// outlive the router.
std::shared_ptr<cogwheel::http::router> make_routes(runner& model, std::function<void(int)> exit);

}  // namespace fake_cog
