#!/usr/bin/env bash
# Webhook delivery: deliveries/s to a local receiver with 10% slow endpoints and the healthy
# endpoints' p99, and container terminal update -> webhook received p50/p99 at half of the peak
# end-to-end rate, through cogwheel and fake Cog containers (0-ms model) on a durable PostgreSQL.
# Loopback only; every phase bounded in time (and the fixed-rate one in count).
#   bash bench/webhooks.sh [seconds per measurement, default 10]
# Env: SLOW_PORTS (default 20), SLOW_EVERY (default 10: every 10th port slow), SLOW_MS (default
# 2000), CONNECTIONS (peak load, default 64), E2E_CONTAINERS (4), E2E_SLOTS (32); COGWHEEL_BIN,
# FAKE_COG_BIN, LOADGEN_BIN, RECEIVER_BIN use those binaries instead of building build-bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-10}
conns=${CONNECTIONS:-64}
drain_secs=120

bash scripts/setup.sh
targets=()
[ -n "${COGWHEEL_BIN:-}" ] || targets+=(cogwheel)
[ -n "${FAKE_COG_BIN:-}" ] || targets+=(fake_cog)
[ -n "${LOADGEN_BIN:-}" ] || targets+=(cogwheel_loadgen)
[ -n "${RECEIVER_BIN:-}" ] || targets+=(cogwheel_webhook_receiver)
if [ "${#targets[@]}" -gt 0 ]; then
  cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCOGWHEEL_TESTS=OFF >/dev/null
  cmake --build build-bench -j"$(nproc)" --target "${targets[@]}" >/dev/null
fi
cogwheel=${COGWHEEL_BIN:-$root/build-bench/cogwheel}
fake_cog=${FAKE_COG_BIN:-$root/build-bench/tests/fake_cog/fake_cog}
loadgen=${LOADGEN_BIN:-$root/build-bench/bench/cogwheel_loadgen}
receiver=${RECEIVER_BIN:-$root/build-bench/bench/cogwheel_webhook_receiver}

export THROWAWAY_PG_DURABLE=1
# shellcheck source=scripts/throwaway-postgres.sh
source scripts/throwaway-postgres.sh
work=$(mktemp -d /tmp/cogwheel-webhooks-XXXXXX)
chmod 0755 "$work"
figures=$work/figures.env commands=$work/commands.txt
: >"$figures"; : >"$commands"
cw_pid="" rx_pid=""
# shellcheck source=bench/e2e.sh
source bench/e2e.sh
cleanup() {
  cw_stop
  if [ -n "$rx_pid" ]; then kill "$rx_pid" 2>/dev/null || true; fi
  throwaway_postgres_stop
  rm -rf "$work"
}
trap cleanup EXIT
fig() { printf '%s=%s\n' "$1" "$2" >>"$figures"; }
get() { grep "^$1=" "$figures" | tail -n 1 | cut -d= -f2; }
say() { printf '[webhooks %s] %s\n' "$(date +%T)" "$*" >&2; }
logged() { printf '%q ' "$@" | sed 's/ $//' >>"$commands"; echo >>"$commands"; "$@"; }
as_pg=()
[ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)
psql_db() { local u=$1; shift; PGOPTIONS='-c client_min_messages=warning' "${as_pg[@]}" psql "$u" -qAt -v ON_ERROR_STOP=1 "$@"; }
db=$COGWHEEL_TEST_DATABASE_URL
checkpoint() { psql_db "$db" -c CHECKPOINT; }

e2e_detect_webhooks
[ "$e2e_webhooks" = 1 ] || { echo "webhooks: this cogwheel has no webhook delivery (no --webhook-allow)" >&2; exit 1; }
e2e_write_config
e2e_db=$db
: >"$work/cog.receipts"
e2e_token=$(DATABASE_URL=$db "$cogwheel" token create --name bench 2>/dev/null)
cw_start "$db" "$work/serve.log"
e2e_secret=$(curl -sf -H "Authorization: Bearer $e2e_token" "$cw_url/v1/webhooks/default/secret" |
  sed -n 's/.*"key" *: *"\([^"]*\)".*/\1/p')

say "peak: $conns connections, closed loop, $secs s, webhooks to 4 healthy ports"
rx_start peak 4 0 0
checkpoint
n=$(e2e_load peak "$conns" 0)
e2e_drain peak "$n"
rx_stop peak
peak=$(field_of "$work/peak.summary" e2e_rate)
half=$((peak / 2)); [ "$half" -ge 1 ] || half=1

say "half: $half/s, 16 connections"
rx_start half 4 0 0
checkpoint
n=$(e2e_load half 16 "$half")
e2e_drain half "$n"
rx_stop half

say "slow: ${SLOW_PORTS:-20} ports, every ${SLOW_EVERY:-10}th answers after ${SLOW_MS:-2000} ms"
e2e_slow slow slow_ "$conns" 0
cw_stop
e2e_check ""

pf() { field_of "$work/$1.summary" "$2"; }
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1024/1024)}' /proc/meminfo) GB; PostgreSQL $("$THROWAWAY_PG_BIN/postgres" --version | awk '{print $3}') durable; cogwheel, $e2e_containers fake Cog containers ($e2e_slots slots each, 0-ms model), loadgen, receiver and PostgreSQL on loopback, sharing the cores (none pinned)"
printf '| measurement (%ss each) | figure | target (DESIGN.md) |\n| --- | --- | --- |\n' "$secs"
printf '| end to end, start + completed webhooks verified (%s connections) | %s predictions/s (%s bad signatures, %s completed missing) | >= 2,000/s |\n' \
  "$conns" "$peak" "$(pf peak bad_signatures)" "$(pf peak missing_completed)"
printf '| webhook deliveries/s at peak, 4 healthy ports | %s/s (%s in %s s) | |\n' "$(pf peak rate)" "$(pf peak received)" "$(pf peak seconds)"
printf '| terminal update -> webhook received at %s/s (half of peak) | p50 %s ms, p99 %s ms (%s deliveries) | p99 < 10 ms |\n' \
  "$(field_of "$work/half.load" rate)" "$(pf half terminal_to_webhook_p50_ms)" "$(pf half terminal_to_webhook_p99_ms)" "$(pf half terminal_to_webhook_n)"
printf '| deliveries/s with 10%% slow endpoints (ports %s after %s ms) | %s/s (%s healthy, %s slow, in %s s) | |\n' \
  "$(pf slow slow_ports)" "${SLOW_MS:-2000}" "$(pf slow rate)" "$(pf slow healthy_received)" "$(pf slow slow_received)" "$(pf slow seconds)"
printf '| healthy endpoints: terminal update -> webhook received | p50 %s ms, p99 %s ms (%s deliveries) | p99 < 10 ms |\n' \
  "$(pf slow healthy_terminal_to_webhook_p50_ms)" "$(pf slow healthy_terminal_to_webhook_p99_ms)" "$(pf slow healthy_terminal_to_webhook_n)"
