#!/usr/bin/env bash
# The whole comparison: the machine's limits (pgbench), cogwheel (creates, end to end with fake
# Cog containers and verified webhooks, latencies, webhook deliveries with slow endpoints, memory;
# then all of it again with 1,000,000 predictions queued), and graphile-worker and pg-boss (pinned
# in bench/package.json), one after the other on one durable throwaway PostgreSQL, on loopback, on
# this machine's cores. Prints one table; the full run writes bench/RESULTS.md.
#   bash bench/run.sh            full run (about 12 minutes plus the build on the 2-core machine)
#   bash bench/run.sh --smoke    a few seconds per step and tiny job counts (CI); prints only
# Environment: COGWHEEL_BIN=path uses that cogwheel binary instead of building build-bench/cogwheel
# (COGWHEEL_BIN_NOTE=text says in the report where it came from); FAKE_COG_BIN, LOADGEN_BIN and
# RECEIVER_BIN likewise for fake_cog, cogwheel_loadgen and cogwheel_webhook_receiver (all four
# given: nothing is built, as in the ctest `bench: smoke`);
# BENCH_RESULTS=path writes the report there (default: bench/RESULTS.md for the full run only);
# BENCH_STEPS=limits,cogwheel,cogwheel_queued,graphile_defaults,... runs only those steps.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

mode=full
case "${1:-}" in
  "") ;;
  --smoke) mode=smoke ;;
  *) echo "usage: bash bench/run.sh [--smoke]" >&2; exit 2 ;;
esac

conns=64              # pgbench clients, wrk connections, peer single-enqueue calls in flight
wide=256              # the same creates and INSERT figures again with this many connections
if [ "$mode" = full ]; then
  secs=10             # each pgbench / wrk measurement
  jobs=100000         # no-op jobs each peer enqueues in batches and then works
  single_secs=10; single_max=200000
  drain_defaults=120  # bound on working the jobs with graphile-worker's defaults
  drain_defaults_pgboss=30  # pg-boss's defaults work 1 job per 2 s poll: 30 s shows that
  drain_tuned=150     # bound with the documented high-throughput settings
  drain_secs=120      # bound on waiting for cogwheel's last webhooks after a load phase
  queued=1000000      # predictions queued (for a version without containers) in section 5
  results=${BENCH_RESULTS:-$root/bench/RESULTS.md}
  [ -n "${BENCH_STEPS:-}" ] && results=${BENCH_RESULTS:-}  # a partial run never replaces RESULTS.md
else
  secs=2; jobs=1000; single_secs=2; single_max=5000; drain_defaults=5; drain_defaults_pgboss=3; drain_tuned=15
  drain_secs=30; queued=10000; idle_secs=1
  results=${BENCH_RESULTS:-}
fi
batch=1000

t_start=$(date +%s)
work=$(mktemp -d /tmp/cogwheel-peers-XXXXXX)
chmod 0755 "$work"
figures=$work/figures.env peers=$work/peers.jsonl commands=$work/commands.txt
: >"$figures"; : >"$peers"; : >"$commands"
fig() { printf '%s=%s\n' "$1" "$2" >>"$figures"; }
say() { printf '[bench %s +%ss] %s\n' "$(date +%T)" "$(($(date +%s) - t_start))" "$*" >&2; }
# Runs a command after writing it, exactly, to the command log that RESULTS.md quotes.
logged() { printf '%q ' "$@" | sed 's/ $//' >>"$commands"; echo >>"$commands"; "$@"; }
failed_steps=()
# Percent of the machine's CPU time that was busy over one second, taken between steps while the
# benchmark itself is idle: what something outside the benchmark was using as a step began.
cpu_busy() {
  local _c u1 n1 s1 i1 w1 q1 sq1 st1 u2 n2 s2 i2 w2 q2 sq2 st2
  read -r _c u1 n1 s1 i1 w1 q1 sq1 st1 _ </proc/stat
  sleep 1
  read -r _c u2 n2 s2 i2 w2 q2 sq2 st2 _ </proc/stat
  local total=$(( (u2 + n2 + s2 + i2 + w2 + q2 + sq2 + st2) - (u1 + n1 + s1 + i1 + w1 + q1 + sq1 + st1) ))
  local idle=$(( (i2 + w2) - (i1 + w1) ))
  echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
# A step runs in a subshell with `set -e` live, so a failure ends the step, not the run.
# BENCH_STEPS=name,name runs only those steps (and the build); the others are reported as not
# measured, and the report goes to BENCH_RESULTS only (never to bench/RESULTS.md).
step() {
  local name=$1; shift
  if [ -n "${BENCH_STEPS:-}" ] && [ "$name" != build ] && [[ ",$BENCH_STEPS," != *",$name,"* ]]; then
    say "step $name skipped (BENCH_STEPS)"
    return 0
  fi
  local t0; t0=$(date +%s)
  say "step $name"
  fig "step_${name}_busy" "$(cpu_busy)"
  set +e
  ( set -Eeuo pipefail; trap 'echo "bench: step $name: \"$BASH_COMMAND\" failed (exit $?, ${BASH_SOURCE[0]}:$LINENO)" >&2' ERR; "$@" )
  local rc=$?
  set -e
  fig "step_${name}_seconds" "$(($(date +%s) - t0))"
  if [ "$rc" -ne 0 ]; then
    failed_steps+=("$name"); fig "step_${name}_failed" "exit $rc"; say "step $name FAILED (exit $rc)"
  fi
}

# ---- setup ------------------------------------------------------------------------------------
bash scripts/setup.sh
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
say "npm ci (bench/package-lock.json)"
(cd bench && npm ci --no-audit --no-fund --loglevel=error 2> >(grep -v 'Unknown user config' >&2) >/dev/null)

build_cogwheel() {
  local targets=()
  [ -n "${COGWHEEL_BIN:-}" ] || targets+=(cogwheel)
  [ -n "${FAKE_COG_BIN:-}" ] || targets+=(fake_cog)
  [ -n "${LOADGEN_BIN:-}" ] || targets+=(cogwheel_loadgen)
  [ -n "${RECEIVER_BIN:-}" ] || targets+=(cogwheel_webhook_receiver)
  if [ "${#targets[@]}" -gt 0 ]; then
    logged cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCOGWHEEL_TESTS=OFF >"$work/cmake.log"
    logged cmake --build build-bench -j"$(nproc)" --target "${targets[@]}" >>"$work/cmake.log" 2>&1 ||
      { tail -n 30 "$work/cmake.log" >&2; return 1; }
  fi
  if [ -n "${COGWHEEL_BIN:-}" ]; then
    fig cogwheel_build "given: $COGWHEEL_BIN${COGWHEEL_BIN_NOTE:+ ($COGWHEEL_BIN_NOTE)}"
  else
    fig cogwheel_build "build-bench/cogwheel (Release)"
  fi
}
step build build_cogwheel
cogwheel=${COGWHEEL_BIN:-$root/build-bench/cogwheel}
fake_cog=${FAKE_COG_BIN:-$root/build-bench/tests/fake_cog/fake_cog}
loadgen=${LOADGEN_BIN:-$root/build-bench/bench/cogwheel_loadgen}
receiver=${RECEIVER_BIN:-$root/build-bench/bench/cogwheel_webhook_receiver}

export THROWAWAY_PG_DURABLE=1
# shellcheck source=scripts/throwaway-postgres.sh
source scripts/throwaway-postgres.sh
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  throwaway_postgres_stop
  rm -rf "$work"
}
trap cleanup EXIT
as_pg=()
[ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)
pg_host=$THROWAWAY_PG_DIR
url_of() { printf 'postgresql://postgres@/%s?host=%s' "$1" "$pg_host"; }
psql_admin() { PGOPTIONS='-c client_min_messages=warning' "${as_pg[@]}" psql "$(url_of postgres)" -qAt -v ON_ERROR_STOP=1 "$@"; }
psql_db() { local u=$1; shift; PGOPTIONS='-c client_min_messages=warning' "${as_pg[@]}" psql "$u" -qAt -v ON_ERROR_STOP=1 "$@"; }
fresh_db() { psql_admin -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"; }
drop_db() { psql_admin -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)"; }
checkpoint() { psql_admin -c CHECKPOINT; }

# ---- machine ----------------------------------------------------------------------------------
fig mode "$mode"
fig nproc "$(nproc)"
fig mem_gb "$(awk '/MemTotal/ {printf "%.1f", $2 / 1024 / 1024}' /proc/meminfo)"
fig cpu "$(lscpu 2>/dev/null | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2; exit}')"
fig kernel "$(uname -sr)"
fig pg_version "$("$THROWAWAY_PG_BIN/postgres" --version | awk '{print $3}')"
fig pg_settings "$(psql_admin -c "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'shared_buffers', 'max_connections')")"
fig node_version "$(node --version)"
fig pgbench_version "$("$THROWAWAY_PG_BIN/pgbench" --version | awk '{print $3}')"
fig wrk_version "$(wrk --version 2>&1 | awk 'NR == 1 {print $2}')"
fig commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (working tree has uncommitted changes)')"
fig conns "$conns"; fig wide "$wide"; fig secs "$secs"; fig jobs "$jobs"; fig batch "$batch"
fig single_secs "$single_secs"; fig drain_tuned "$drain_tuned"; fig queued "$queued"
fig cpus_postgres "$(awk '/^Cpus_allowed_list/ {print $2}' "/proc/$(head -n 1 "$THROWAWAY_PG_DIR/data/postmaster.pid")/status")"
fig cpus_bench "$(awk '/^Cpus_allowed_list/ {print $2}' /proc/$$/status)"

# ---- 1. the machine's limits ------------------------------------------------------------------
pgbench_tps() {  # script file, database[, clients]; prints tx/s, bounded by -T and by timeout
  cp "bench/limits/$1" "$work/$1"; chmod 0644 "$work/$1"
  logged timeout $((secs + 60)) "${as_pg[@]}" "$THROWAWAY_PG_BIN/pgbench" -n -c "${3:-$conns}" -j 2 -T "$secs" \
    -f "$work/$1" "$(url_of "$2")" >"$work/pgbench-$1.txt" 2>&1
  if grep -q 'aborted' "$work/pgbench-$1.txt"; then grep -m3 -i 'abort\|error' "$work/pgbench-$1.txt" >&2; fi
  awk '/^tps = / {print int($3)}' "$work/pgbench-$1.txt"
}
limits() {
  fresh_db bench_limits
  "${as_pg[@]}" psql "$(url_of bench_limits)" -q -v ON_ERROR_STOP=1 \
    -c "CREATE TABLE bench_rows (id bigserial PRIMARY KEY, body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
  checkpoint
  local insert; insert=$(pgbench_tps insert.sql bench_limits)
  fig pgbench_insert "$insert"
  checkpoint
  fig pgbench_insert_wide "$(pgbench_tps insert.sql bench_limits "$wide")"
  # Enough queued rows that neither lifecycle run drains the queue: twice what the inserts managed.
  local rows=$(( insert * secs * 2 )); [ "$rows" -lt 20000 ] && rows=20000
  cp bench/limits/queue-schema.sql "$work/"; chmod 0644 "$work/queue-schema.sql"
  logged timeout 300 "${as_pg[@]}" psql "$(url_of bench_limits)" -q -v ON_ERROR_STOP=1 -v rows="$rows" \
    -f "$work/queue-schema.sql"
  fig queue_rows "$rows"
  checkpoint
  fig pgbench_claim_1tx "$(pgbench_tps claim-complete-1tx.sql bench_limits)"
  checkpoint
  fig pgbench_claim_2tx "$(pgbench_tps claim-then-complete-2tx.sql bench_limits)"
  drop_db bench_limits
}
step limits limits

# ---- 3. cogwheel, and 5. the same with 1,000,000 predictions queued -------------------------
# shellcheck source=bench/e2e.sh
source bench/e2e.sh
cogwheel_e2e() {
  e2e_detect_webhooks
  e2e_write_config
  e2e_suite "$(url_of cogwheel_test)" ""
}
# A database of its own with $queued predictions queued for the version without containers
# (created by SQL after a first start of cogwheel migrated it and loaded the config), then the
# same suite.
cogwheel_queued() {
  e2e_detect_webhooks
  e2e_write_config
  fresh_db bench_queued
  local db; db=$(url_of bench_queued)
  DATABASE_URL=$db "$cogwheel" token create --name filler >/dev/null 2>&1
  cw_pid=""
  trap 'cw_stop' EXIT
  cw_start "$db" "$work/queued-first.log"
  cw_stop
  local t0; t0=$(date +%s)
  logged psql_db "$db" -c "INSERT INTO predictions (id, token_id, model, version_id, input, created_at, updated_at)
    SELECT 'q' || lpad(to_hex(g), 25, '0'), (SELECT min(id) FROM api_tokens), 'acme/echo', '$PARKED_VERSION',
           jsonb_build_object('prompt', 'queued ' || g), now() - interval '2 hours' + g * interval '1 ms', now()
    FROM generate_series(1, $queued) g" >/dev/null
  logged psql_db "$db" -c "VACUUM ANALYZE predictions" >/dev/null
  fig queued_fill_seconds "$(($(date +%s) - t0))"
  fig queued_rows "$(psql_db "$db" -c "SELECT count(*) FROM predictions WHERE status = 'starting' AND dispatched_at IS NULL")"
  e2e_suite "$db" q_
  fig queued_rows_end "$(psql_db "$db" -c "SELECT count(*) FROM predictions WHERE status = 'starting' AND dispatched_at IS NULL AND version_id = '$PARKED_VERSION' AND id LIKE 'q%'")"
  drop_db bench_queued
}
# A stale binary left by an earlier build would measure old code: no cogwheel rows when the build failed.
if grep -q '^step_build_failed=' "$figures"; then
  failed_steps+=(cogwheel); fig step_cogwheel_failed "the Release build failed"
else
  missing=""
  for b in "$cogwheel" "$fake_cog" "$loadgen" "$receiver"; do [ -x "$b" ] || missing+=" $b"; done
  if [ -n "$missing" ]; then
    failed_steps+=(cogwheel); fig step_cogwheel_failed "no binary at$missing"
  else
    step cogwheel cogwheel_e2e
    step cogwheel_queued cogwheel_queued
  fi
fi

# ---- 2. peers ---------------------------------------------------------------------------------
peer() {  # peer script name, mode
  local db="bench_${1}_$2" drain=$drain_defaults
  [ "$1" = pgboss ] && drain=$drain_defaults_pgboss
  [ "$2" = tuned ] && drain=$drain_tuned
  fresh_db "$db"
  checkpoint
  logged timeout $((single_secs + drain + 180)) node "bench/peers/$1.mjs" --url "$(url_of "$db")" --mode "$2" \
    --jobs "$jobs" --batch "$batch" --callers "$conns" --single-secs "$single_secs" \
    --single-max "$single_max" --drain-secs "$drain" >"$work/peer.json" 2>"$work/peer.err" ||
    { cat "$work/peer.err" >&2; return 1; }
  tail -n 1 "$work/peer.json" >>"$peers"
  drop_db "$db"
}
for p in graphile pgboss; do
  for m in defaults tuned; do step "${p}_$m" peer "$p" "$m"; done
done

# ---- report -----------------------------------------------------------------------------------
fig total_seconds "$(($(date +%s) - t_start))"
fig failed_steps "${failed_steps[*]:-}"
say "done in $(($(date +%s) - t_start)) s"
node bench/report.mjs "$work" ${results:+"$results"}
[ -n "$results" ] && say "wrote ${results#"$root"/}"
[ "${#failed_steps[@]}" -eq 0 ] || { say "failed steps: ${failed_steps[*]}"; exit 1; }
