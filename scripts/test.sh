#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what it needs, builds with
# AddressSanitizer and UndefinedBehaviorSanitizer (warnings are errors), starts a throwaway
# PostgreSQL and runs every test with ctest. Extra arguments go to ctest (e.g. -R pg:).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
# The official replicate and standardwebhooks clients, pinned by tests/js/package-lock.json.
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

build=${COGWHEEL_TEST_BUILD_DIR:-build-test}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOGWHEEL_SANITIZE=ON -DCOGWHEEL_WERROR=ON
cmake --build "$build" -j"$(nproc)"

# shellcheck source=scripts/throwaway-postgres.sh
source scripts/throwaway-postgres.sh
trap throwaway_postgres_stop EXIT

ctest --test-dir "$build" --output-on-failure --timeout 600 -j"$(nproc)" "$@"
