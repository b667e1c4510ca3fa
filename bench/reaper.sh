#!/usr/bin/env bash
# The reaper's cost with 1,000,000 terminal and 100,000 live predictions: the plan (auto_explain,
# EXPLAIN ANALYZE) and the time (mean, p50, p99 of 200 calls) of every statement the reaper runs
# per round, with nothing due and with more than a batch due, on a durable throwaway PostgreSQL.
# Unix socket only; every loop bounded in count.
#   bash bench/reaper.sh [extra cogwheel_reaper_bench options, e.g. --calls 50]
# Env: COGWHEEL_BUILD_DIR (default build-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${COGWHEEL_BUILD_DIR:-build-bench}
started=$(date +%s)

bash scripts/setup.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCOGWHEEL_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(( $(nproc) < 2 ? $(nproc) : 2 ))" --target cogwheel_reaper_bench >/dev/null

export THROWAWAY_PG_DURABLE=1
# shellcheck source=scripts/throwaway-postgres.sh
source scripts/throwaway-postgres.sh
trap throwaway_postgres_stop EXIT

as_pg=()
[ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)
pg_version=$("$THROWAWAY_PG_BIN/postgres" --version | awk '{print $3}')
settings=$("${as_pg[@]}" psql "$COGWHEEL_TEST_DATABASE_URL" -tAc \
  "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings
   WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers')")
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1024/1024)}' /proc/meminfo) GB;" \
  "PostgreSQL $pg_version durable ($settings; shared_buffers in 8 kB pages), Unix socket," \
  "bench and server sharing the cores; load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%d)"

# The bench connects as the superuser postgres: LOAD 'auto_explain' needs it.
"$build/bench/cogwheel_reaper_bench" "$COGWHEEL_TEST_DATABASE_URL" "$@"
echo "bench/reaper.sh total $(( $(date +%s) - started )) s (build included)"
