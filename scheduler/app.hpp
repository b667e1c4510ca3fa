#pragma once
// The composition root: wires storage, the HTTP server and the service loops together.
#include "scheduler/settings.hpp"

namespace cogwheel::scheduler {

// Each returns the process exit code; each throws std::exception with a one-line message on
// failure.
int run_serve(const settings& s);
int run_migrate(const settings& s);

}  // namespace cogwheel::scheduler
