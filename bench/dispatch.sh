#!/usr/bin/env bash
# End-to-end dispatch: predictions/s through cogwheel and fake Cog containers with a 0-ms model
# and many container slots, then create -> container-received latency at half of that rate, on a
# durable PostgreSQL; printed with the targets of DESIGN.md. Loopback only; every step bounded.
#   bash bench/dispatch.sh [seconds per measurement, default 10]
# Env: COGWHEEL_BUILD_DIR (default build-bench), CONTAINERS (default 4), SLOTS (per container,
# default 32), CONNECTIONS (peak load, default 64).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
containers=${CONTAINERS:-4}
slots=${SLOTS:-32}
conns=${CONNECTIONS:-64}
build=${COGWHEEL_BUILD_DIR:-build-bench}

bash scripts/setup.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCOGWHEEL_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target cogwheel fake_cog cogwheel_loadgen >/dev/null

export THROWAWAY_PG_DURABLE=1
# shellcheck source=scripts/throwaway-postgres.sh
source scripts/throwaway-postgres.sh
work=$(mktemp -d /tmp/cogwheel-dispatch-XXXXXX)
chmod 0755 "$work"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  throwaway_postgres_stop
  rm -rf "$work"
}
trap cleanup EXIT
db="$COGWHEEL_TEST_DATABASE_URL"
export DATABASE_URL="$db"
version=5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa
cat >"$work/cogwheel.yaml" <<YAML
models:
  - name: bench/zero
    versions:
      - id: $version
        runtime:
          type: process
          command: ["$PWD/$build/tests/fake_cog/fake_cog"]
          instances: $containers
          slots: $slots
          env: {FAKE_COG_CONCURRENCY: "$slots", FAKE_COG_QUIET: "1", FAKE_COG_RECEIPTS: "$work/receipts"}
YAML
token=$("$build/cogwheel" token create --name bench 2>/dev/null)
port=$((20000 + RANDOM % 20000))
"$build/cogwheel" serve --listen "127.0.0.1:$port" --config "$work/cogwheel.yaml" \
  --create-rate-limit 0 --rate-limit 0 --log-level warn >"$work/serve.log" 2>&1 &
server_pid=$!
ready=0
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$port/ready" >/dev/null; then ready=1; break; fi
  sleep 0.1
done
[ "$ready" = 1 ] || { cat "$work/serve.log" >&2; exit 1; }
# Until every container is READY (health checks), bounded.
for _ in $(seq 1 100); do
  [ "$(grep -c -- '-> READY' "$work/serve.log" || true)" -ge "$containers" ] && break
  sleep 0.1
done

sql() { psql "$db" -tAq -c "$1"; }
drain() {  # waits (at most 120 s) until no prediction is live
  for _ in $(seq 1 600); do
    [ "$(sql "SELECT count(*) FROM predictions WHERE completed_at IS NULL")" = 0 ] && return 0
    sleep 0.2
  done
  echo "dispatch: predictions still live after 120 s" >&2
  return 1
}
load() {  # load <name> <connections> <rate>
  "$build/bench/cogwheel_loadgen" --url "http://127.0.0.1:$port" --token "$token" --version "$version" \
    --input '{"prompt":"bench"}' --connections "$2" --duration "$secs" --rate "$3" \
    --ids "$work/$1.ids" >"$work/$1.out"
  cat "$work/$1.out"
}
field() { tr ' ' '\n' <"$work/$1.out" | awk -F= -v k="$2" '$1 == k {print $2}'; }

# 1. Peak: as fast as the creates are answered; end to end is what the containers finish.
sql "CHECKPOINT" >/dev/null
t0=$(sql "SELECT now()")
echo "peak load:"
load peak "$conns" 0
drain
peak_rate=$(sql "SELECT round(count(*) / extract(epoch FROM max(completed_at) - min(created_at)))
                 FROM predictions WHERE created_at >= '$t0'")
peak_ok=$(sql "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' of ' || count(*)
               FROM predictions WHERE created_at >= '$t0'")

# 2. Half of the peak, at a fixed rate: create sent -> container received.
half=$((peak_rate / 2))
[ "$half" -ge 1 ] || half=1
sql "CHECKPOINT" >/dev/null
echo "half load ($half/s):"
load half 16 "$half"
drain
psql "$db" -q <<SQL >/dev/null
CREATE TABLE bench_sent (id text PRIMARY KEY, sent_us bigint);
CREATE TABLE bench_receipts (id text, what text, us bigint);
\copy bench_sent FROM '$work/half.ids' WITH (DELIMITER ' ')
\copy bench_receipts FROM '$work/receipts' WITH (DELIMITER ' ')
CREATE TABLE bench_received AS SELECT id, us AS received_us FROM bench_receipts WHERE what = 'accepted';
SQL
read -r p50 p99 n <<<"$(sql "SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY d))::numeric, 2),
                               round((percentile_cont(0.99) WITHIN GROUP (ORDER BY d))::numeric, 2), count(*)
                        FROM (SELECT (r.received_us - s.sent_us) / 1000.0 AS d
                              FROM bench_sent s JOIN bench_received r USING (id)) x" | tr '|' ' ')"
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1024/1024)}' /proc/meminfo) GB; PostgreSQL $("$THROWAWAY_PG_BIN/postgres" --version | awk '{print $3}') durable; cogwheel, $containers fake Cog containers ($slots slots each, 0-ms model), loadgen and PostgreSQL all on loopback, sharing the cores"
printf '| measurement (%ss each) | figure | target (DESIGN.md) |\n| --- | --- | --- |\n' "$secs"
printf '| creates under peak load (%s connections) | %s/s (p50 %s ms, p99 %s ms, %s failed) | |\n' \
  "$conns" "$(field peak rate)" "$(field peak p50_ms)" "$(field peak p99_ms)" "$(field peak failed)"
printf '| end to end, 0-ms model (first create to last completion) | %s predictions/s (%s succeeded) | >= 2,000/s |\n' \
  "$peak_rate" "$peak_ok"
printf '| create sent -> container received, at %s/s (half of peak) | p50 %s ms, p99 %s ms (%s predictions) | p50 < 2 ms, p99 < 10 ms |\n' \
  "$half" "$p50" "$p99" "$n"
printf '| cogwheel peak resident memory | %s MB | < 256 MB |\n' "$((rss_kb / 1024))"
