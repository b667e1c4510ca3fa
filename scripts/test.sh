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
# -Og -g1 instead of RelWithDebInfo's -O2 -g: with the sanitizers, GCC spends most of its time
# optimizing Asio's and Beast's coroutines and writing their full debug information. Two of the
# heaviest files took 117 s and 239 s at -O2 -g, 45 s and 67 s at -Og -g1; a clean build of
# everything went from about 50 minutes to about 14 on the 2-core machine. -g1 keeps the line
# tables the sanitizers' reports need.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-Og -g1 -DNDEBUG" \
  -DCOGWHEEL_SANITIZE=ON -DCOGWHEEL_WERROR=ON
cmake --build "$build" -j"$(nproc)"

# shellcheck source=scripts/throwaway-postgres.sh
source scripts/throwaway-postgres.sh
trap throwaway_postgres_stop EXIT

ctest --test-dir "$build" --output-on-failure --timeout 600 -j"$(nproc)" "$@"
