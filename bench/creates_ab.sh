#!/usr/bin/env bash
# Creates/s of two cogwheel setups in alternating runs on one durable PostgreSQL: how a change is
# told apart from this machine's drift (bench/README.md, "Where a create's time goes").
#   A_BIN=/tmp/before/cogwheel bash bench/creates_ab.sh [rounds] [seconds] [connections]
# A_BIN and B_BIN choose the binaries (default: build-bench/cogwheel, built here as Release);
# A_OPTS and B_OPTS are extra `cogwheel serve` options. Each run starts on an empty predictions
# table; the order alternates (A B, B A, ...). Loopback only; every run is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-4}
secs=${2:-8}
conns=${3:-64}

bash scripts/setup.sh
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
if [ -z "${A_BIN:-}" ] || [ -z "${B_BIN:-}" ]; then
  cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCOGWHEEL_TESTS=OFF >/dev/null
  cmake --build build-bench -j"$(nproc)" --target cogwheel >/dev/null
fi
a_bin=${A_BIN:-./build-bench/cogwheel}
b_bin=${B_BIN:-./build-bench/cogwheel}

export THROWAWAY_PG_DURABLE=1
# shellcheck source=scripts/throwaway-postgres.sh
source scripts/throwaway-postgres.sh
work=$(mktemp -d /tmp/cogwheel-ab-XXXXXX)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  throwaway_postgres_stop
  rm -rf "$work"
}
trap cleanup EXIT
db="$COGWHEEL_TEST_DATABASE_URL"
export DATABASE_URL="$db"
cat >"$work/cogwheel.yaml" <<YAML
models:
  - name: acme/echo
    versions:
      - id: 5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa
        runtime: {type: static, urls: ["http://127.0.0.1:9"]}
YAML
COGWHEEL_TOKEN=$("$a_bin" token create --name bench 2>/dev/null)
export COGWHEEL_TOKEN

# run BIN OPTS: one measurement on an empty table; prints creates/s and p50.
run() {
  local bin=$1 opts=$2 port
  psql "$db" -qc "TRUNCATE predictions CASCADE" 2>/dev/null
  port=$((20000 + RANDOM % 20000))
  # shellcheck disable=SC2086  # the options are words
  "$bin" serve --listen "127.0.0.1:$port" --config "$work/cogwheel.yaml" --create-rate-limit 0 \
    $opts >"$work/serve.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null || { echo "serve did not start:" >&2; tail -n 5 "$work/serve.log" >&2; return 1; }
  wrk -t2 -c"$conns" -d"${secs}s" --latency -s bench/create.lua "http://127.0.0.1:$port" >"$work/wrk.txt"
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  awk '/^Requests\/sec:/ {r = int($2)} $1 == "50%" {p = $2} END {printf "%d (p50 %s)", r, p}' "$work/wrk.txt"
}

echo "A: $a_bin ${A_OPTS:-}"
echo "B: $b_bin ${B_OPTS:-}"
printf '| round | A creates/s | B creates/s |\n| --- | --- | --- |\n'
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then
    a=$(run "$a_bin" "${A_OPTS:-}"); b=$(run "$b_bin" "${B_OPTS:-}")
  else
    b=$(run "$b_bin" "${B_OPTS:-}"); a=$(run "$a_bin" "${A_OPTS:-}")
  fi
  printf '| %s | %s | %s |\n' "$r" "$a" "$b"
done
