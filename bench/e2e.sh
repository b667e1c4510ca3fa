# shellcheck shell=bash
# bench/e2e.sh: cogwheel end to end, sourced by bench/run.sh and bench/webhooks.sh (not run alone).
#
# One `cogwheel serve` with fake Cog containers (a 0-ms model) and a version without containers,
# a local webhook receiver (cogwheel_webhook_receiver) that verifies every Standard Webhooks
# signature, and cogwheel_loadgen creating predictions with `start` + `completed` webhooks.
#
# The caller defines: cogwheel fake_cog loadgen receiver (binaries), work (a scratch folder),
# commands (the command log), secs (seconds per measurement), conns (peak connections),
# drain_secs (bound on waiting for the last webhooks), and the functions fig NAME VALUE,
# say TEXT..., logged CMD... (runs CMD after writing it to the command log) and psql_db URL ARGS...
# Every phase is bounded in time (loadgen --duration, receiver --duration, the drain bound) and
# the fixed-rate one also in count.

E2E_VERSION=2e2e000000000000000000000000000000000000000000000000000000000000
PARKED_VERSION=5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa  # bench/create.lua's
e2e_containers=${E2E_CONTAINERS:-4}
e2e_slots=${E2E_SLOTS:-32}
idle_secs=${idle_secs:-2}

# Whether this cogwheel delivers webhooks: the delivery service brings --webhook-allow, without
# which a loopback receiver is refused (SSRF guard).
e2e_detect_webhooks() {
  if "$cogwheel" serve --help 2>&1 | grep -q -- '--webhook-allow'; then e2e_webhooks=1; else e2e_webhooks=0; fi
  fig webhooks_delivered "$e2e_webhooks"
  fig e2e_containers "$e2e_containers"; fig e2e_slots "$e2e_slots"
}

# Cpus_allowed_list of a process: where it may run (no pinning: every core).
cpus_of() { awk '/^Cpus_allowed_list/ {print $2}' "/proc/$1/status" 2>/dev/null || echo '?'; }
rss_kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status" 2>/dev/null; }

e2e_write_config() {
  cat >"$work/cogwheel.yaml" <<YAML
models:
  - name: acme/echo
    versions:
      - id: $PARKED_VERSION
        runtime: {type: static, urls: ["http://127.0.0.1:9"]}
  - name: bench/zero
    versions:
      - id: $E2E_VERSION
        runtime:
          type: process
          command: ["$fake_cog"]
          instances: $e2e_containers
          slots: $e2e_slots
          env: {FAKE_COG_CONCURRENCY: "$e2e_slots", FAKE_COG_QUIET: "1", FAKE_COG_RECEIPTS: "$work/cog.receipts"}
YAML
}

# cw_start DATABASE_URL LOG: `cogwheel serve` on an ephemeral port; sets cw_pid, cw_port, cw_url;
# returns once /ready answers and every container is READY (bounded).
cw_start() {
  local db=$1 log=$2
  cw_port="" cw_url=""
  local args=(serve --listen 127.0.0.1:0 --database-url "$db" --config "$work/cogwheel.yaml"
    --data-dir "$work/var" --create-rate-limit 0 --rate-limit 0 --log-level info)
  [ "$e2e_webhooks" = 1 ] && args+=(--webhook-allow 127.0.0.1)
  { printf '%q ' "$cogwheel" "${args[@]}"; echo '&'; } >>"$commands"
  "$cogwheel" "${args[@]}" >"$log" 2>&1 &
  cw_pid=$!
  for _ in $(seq 1 600); do  # 60 s: a first start migrates, slowly under sanitizers
    cw_port=$(sed -n 's|.*cogwheel listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$log" | head -n 1)
    [ -n "$cw_port" ] && break
    kill -0 "$cw_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$cw_port" ] || { echo "cogwheel did not start:" >&2; tail -n 20 "$log" >&2; return 1; }
  cw_url=http://127.0.0.1:$cw_port
  curl -sf "$cw_url/ready" >/dev/null || { tail -n 20 "$log" >&2; return 1; }
  local ready=0
  for _ in $(seq 1 300); do
    ready=$(grep -c -- '-> READY' "$log" || true)
    [ "$ready" -ge "$e2e_containers" ] && return 0
    sleep 0.1
  done
  echo "only $ready of $e2e_containers containers READY after 30 s" >&2
  tail -n 20 "$log" >&2
  return 1
}
cw_stop() {
  [ -n "${cw_pid:-}" ] || return 0
  kill "$cw_pid" 2>/dev/null || true
  # Bounded: serve waits --shutdown-grace-ms (10 s) for running predictions at most.
  for _ in $(seq 1 200); do kill -0 "$cw_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$cw_pid" 2>/dev/null || true
  wait "$cw_pid" 2>/dev/null || true
  cw_pid=""
}

# rx_start NAME PORTS SLOW_EVERY SLOW_MS: a receiver on PORTS ephemeral ports; sets rx_pid,
# rx_stats (its /stats URL) and rx_urls (the webhook URLs, comma-separated, in port order).
rx_start() {
  local name=$1 ports=$2 every=$3 ms=$4
  local args=(--ports "$ports" --slow-every "$every" --slow-ms "$ms" --threads 2
    --receipts "$work/$name.receipts" --duration $((secs + drain_secs + 60))
    --cog-receipts "$work/cog.receipts" --ids "$work/$name.ids")
  [ -n "${e2e_secret:-}" ] && args+=(--secret "$e2e_secret")
  logged_bg "$receiver" "${args[@]}" >"$work/$name.rx" 2>"$work/$name.rx.err"
  rx_pid=$!
  local line=""
  for _ in $(seq 1 100); do
    line=$(head -n 1 "$work/$name.rx")
    [ -n "$line" ] && break
    sleep 0.05
  done
  [ -n "$line" ] || { cat "$work/$name.rx.err" >&2; return 1; }
  local list; list=$(printf '%s\n' "$line" | sed -n 's/^ports=\([0-9,]*\).*/\1/p')
  rx_stats="http://127.0.0.1:${list%%,*}/stats"
  rx_urls=$(printf '%s\n' "$list" | tr ',' '\n' | sed "s|.*|http://127.0.0.1:&/hooks/$name|" | paste -sd, -)
}
rx_stop() {  # NAME: stops the receiver and keeps its summary line in $work/NAME.summary
  kill -TERM "$rx_pid" 2>/dev/null || true
  wait "$rx_pid" 2>/dev/null || true
  tail -n 1 "$work/$1.rx" >"$work/$1.summary"
}
stat_of() { printf '%s\n' "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }
field_of() { tr ' ' '\n' <"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }
logged_bg() { printf '%q ' "$@" >>"$commands"; echo '&' >>"$commands"; "$@" & }

# e2e_load NAME CONNECTIONS RATE: cogwheel_loadgen for $secs on the e2e version, webhooks
# round-robin over the receiver's URLs; prints the number created.
e2e_load() {
  local hooks=()
  [ "$e2e_webhooks" = 1 ] && hooks=(--webhooks "$rx_urls" --events start,completed)
  local max=()
  [ "$3" != 0 ] && max=(--max "$(awk -v r="$3" -v s="$secs" 'BEGIN {print int(r * s) + 1}')")
  logged timeout $((secs + 60)) "$loadgen" --url "$cw_url" --token "$e2e_token" --version "$E2E_VERSION" \
    --input '{"prompt":"bench"}' --connections "$2" --duration "$secs" --rate "$3" "${max[@]}" \
    "${hooks[@]}" --ids "$work/$1.ids" >"$work/$1.load"
  field_of "$work/$1.load" created
}

# e2e_drain NAME CREATED EXPECTED_HEALTHY: waits (at most drain_secs) until the receiver holds the
# `completed` webhook of every prediction (EXPECTED_HEALTHY: of those on healthy ports); without
# webhooks, until the database has no live e2e prediction. Missing ones are reported, not waited
# for longer. Not for the `start` ones: a start still pending when its prediction completed may be
# superseded by the completed one (the outbox's `superseded` state), so it never comes.
e2e_drain() {
  local name=$1 created=$2 healthy=${3:-}
  local i s
  for ((i = 0; i < drain_secs * 10; i++)); do
    if [ "$e2e_webhooks" = 1 ]; then
      s=$(curl -sf "$rx_stats" || true)
      if [ -n "$healthy" ]; then
        [ "$(stat_of "$s" healthy_completed)" -ge "$healthy" ] 2>/dev/null && return 0
      else
        [ "$(stat_of "$s" predictions_completed)" -ge "$created" ] 2>/dev/null && return 0
      fi
    else
      [ "$(psql_db "$e2e_db" -c "SELECT count(*) FROM predictions WHERE version_id = '$E2E_VERSION' AND completed_at IS NULL")" = 0 ] && return 0
    fi
    sleep 0.1
  done
  say "$name: not everything arrived within ${drain_secs} s (reported as missing)"
}

# Figures from the database for the predictions of one phase (by their ids).
e2e_db_figures() {  # NAME PREFIX: succeeded count, and predictions/s from first create to last completion
  cut -d ' ' -f 1,2 "$work/$1.ids" >"$work/$1.ids2"
  psql_db "$e2e_db" -q -c "CREATE TEMP TABLE ids (id text, sent_us bigint)" \
    -c "\\copy ids FROM '$work/$1.ids2' WITH (DELIMITER ' ')" \
    -c "SELECT count(*) FILTER (WHERE p.status = 'succeeded') || ' ' || count(*) || ' ' ||
               coalesce(round(count(*) / nullif(extract(epoch FROM max(p.completed_at) - min(p.created_at)), 0)), 0)
        FROM ids JOIN predictions p USING (id)" >"$work/$1.db"
  read -r succeeded total rate <"$work/$1.db"
  fig "${2}succeeded" "$succeeded"; fig "${2}db_total" "$total"; fig "${2}db_rate" "$rate"
}

# Records a receiver summary's figures under PREFIX.
e2e_rx_figures() {  # NAME PREFIX KEY...
  local name=$1 prefix=$2 k
  shift 2
  for k in "$@"; do fig "${prefix}$k" "$(field_of "$work/$name.summary" "$k")"; done
}

# e2e_creates CONNECTIONS PREFIX: wrk posting creates over that many keep-alive connections.
e2e_creates() {
  local c=$1 p=$2
  logged timeout $((secs + 30)) wrk -t2 -c"$c" -d"${secs}s" --latency \
    -s bench/create.lua "$cw_url" >"$work/${p}wrk.txt"
  fig "${p}creates" "$(awk '/^Requests\/sec:/ {print int($2)}' "$work/${p}wrk.txt")"
  fig "${p}not_created" "$(awk '/^NOT_CREATED/ {print $2}' "$work/${p}wrk.txt")"
  fig "${p}creates_p50" "$(awk '$1 == "50%" {print $2}' "$work/${p}wrk.txt")"
  fig "${p}creates_p99" "$(awk '$1 == "99%" {print $2}' "$work/${p}wrk.txt")"
}

# e2e_suite DATABASE_URL PREFIX: in one `cogwheel serve`, one after the other:
#   creates  wrk -c$conns posting predictions for the version without containers (bench/create.lua),
#            then the same with -c$wide;
#   peak     loadgen, $conns connections, closed loop, webhooks on 4 healthy receiver ports;
#   half     loadgen at half the peak end-to-end rate (16 connections, fixed rate);
#   slowhalf loadgen at the half rate with webhooks round-robin over 20 ports, every 10th
#            answering after 2000 ms (10% slow endpoints);
#   slow     the same closed loop at peak.
# Memory: VmRSS 2 s after the containers are READY (idle), VmHWM at the end (peak).
e2e_suite() {
  e2e_db=$1
  local p=$2 out
  cw_pid=""
  trap 'cw_stop; if [ -n "${rx_pid:-}" ]; then kill "$rx_pid" 2>/dev/null || true; fi' EXIT
  : >"$work/cog.receipts"
  e2e_token=$(DATABASE_URL=$e2e_db "$cogwheel" token create --name bench 2>/dev/null)
  cw_start "$e2e_db" "$work/${p}serve.log"
  fig "${p}cpus_cogwheel" "$(cpus_of "$cw_pid")"
  e2e_secret=""
  if [ "$e2e_webhooks" = 1 ]; then
    e2e_secret=$(curl -sf -H "Authorization: Bearer $e2e_token" "$cw_url/v1/webhooks/default/secret" |
      sed -n 's/.*"key" *: *"\([^"]*\)".*/\1/p')
    [ -n "$e2e_secret" ] || { echo "no webhook secret from GET /v1/webhooks/default/secret" >&2; return 1; }
  fi
  sleep "$idle_secs"
  fig "${p}rss_idle_kb" "$(rss_kb "$cw_pid" VmRSS)"

  # creates
  checkpoint
  export COGWHEEL_TOKEN=$e2e_token
  e2e_creates "$conns" "$p"
  checkpoint
  e2e_creates "$wide" "${p}wide_"
  fig "${p}rss_after_creates_kb" "$(rss_kb "$cw_pid" VmRSS)"

  # peak
  rx_start "${p}peak" 4 0 0
  fig "${p}cpus_receiver" "$(cpus_of "$rx_pid")"
  checkpoint
  out=$(e2e_load "${p}peak" "$conns" 0)
  fig "${p}peak_created" "$out"
  e2e_drain "${p}peak" "$out"
  rx_stop "${p}peak"
  e2e_rx_figures "${p}peak" "${p}peak_" e2e_rate e2e_seconds missing_start missing_completed \
    bad_signatures bad_timestamps unsigned duplicates received rate seconds terminal_to_webhook_p50_ms \
    terminal_to_webhook_p99_ms create_to_container_p50_ms create_to_container_p99_ms
  fig "${p}peak_create_rate" "$(field_of "$work/${p}peak.load" rate)"
  fig "${p}peak_failed" "$(field_of "$work/${p}peak.load" failed)"
  e2e_db_figures "${p}peak" "${p}peak_"
  local peak_rate
  peak_rate=$(grep "^${p}peak_db_rate=" "$figures" | tail -n 1 | cut -d= -f2)
  [ "$e2e_webhooks" = 1 ] && peak_rate=$(field_of "$work/${p}peak.summary" e2e_rate)

  # half of the peak, at a fixed rate
  local half=$(( ${peak_rate:-0} / 2 ))
  [ "$half" -ge 1 ] || half=1
  fig "${p}half_target" "$half"
  rx_start "${p}half" 4 0 0
  checkpoint
  out=$(e2e_load "${p}half" 16 "$half")
  fig "${p}half_created" "$out"
  e2e_drain "${p}half" "$out"
  rx_stop "${p}half"
  e2e_rx_figures "${p}half" "${p}half_" missing_start missing_completed bad_signatures \
    terminal_to_webhook_p50_ms terminal_to_webhook_p99_ms terminal_to_webhook_max_ms terminal_to_webhook_n \
    create_to_container_p50_ms create_to_container_p99_ms create_to_container_max_ms create_to_container_n
  fig "${p}half_rate" "$(field_of "$work/${p}half.load" rate)"
  e2e_db_figures "${p}half" "${p}half_"

  # 10% slow endpoints, at half load and then at peak (the last phases: their slow deliveries are
  # still queued when they end; the peak one inherits the half one's backlog)
  if [ "$e2e_webhooks" = 1 ]; then
    e2e_slow "${p}slowhalf" "${p}slowhalf_" 16 "$half"
    e2e_slow "${p}slow" "${p}slow_" "$conns" 0
  fi
  fig "${p}hwm_kb" "$(rss_kb "$cw_pid" VmHWM)"
  fig "${p}rss_end_kb" "$(rss_kb "$cw_pid" VmRSS)"
  local child; child=$(awk -v p="$cw_pid" '$4 == p {print $1; exit}' /proc/[0-9]*/stat 2>/dev/null || true)
  fig "${p}cpus_containers" "$([ -n "$child" ] && cpus_of "$child")"
  cw_stop
  e2e_check "$p"
}

# e2e_slow NAME PREFIX CONNECTIONS RATE: webhooks round-robin over 20 receiver ports, every 10th
# slow (2000 ms); deliveries/s, and the healthy ports' terminal -> webhook latency.
e2e_slow() {
  local name=$1 pre=$2 out healthy
  rx_start "$name" "${SLOW_PORTS:-20}" "${SLOW_EVERY:-10}" "${SLOW_MS:-2000}"
  checkpoint
  out=$(e2e_load "$name" "$3" "$4")
  fig "${pre}created" "$out"
  # Creates go round-robin in port order over one counter: the ones on slow ports are every
  # SLOW_EVERY-th; failed creates shift the count a little, so wait for 99% of the healthy ones.
  healthy=$(awk -v n="$out" -v k="${SLOW_EVERY:-10}" 'BEGIN {print int((n - int(n / k)) * 0.99)}')
  e2e_drain "$name" "$out" "$healthy"
  rx_stop "$name"
  e2e_rx_figures "$name" "$pre" received seconds rate healthy_received slow_received bad_signatures \
    healthy_terminal_to_webhook_p50_ms healthy_terminal_to_webhook_p99_ms healthy_terminal_to_webhook_n \
    slow_terminal_to_webhook_p50_ms slow_terminal_to_webhook_n healthy_port_min healthy_port_max \
    slow_ports in_flight_max
  fig "${pre}create_rate" "$(field_of "$work/$name.load" rate)"
}

# Fails the step when webhooks were delivered but some were missing or badly signed.
e2e_check() {
  local p=$1 bad=0 k v
  [ "$e2e_webhooks" = 1 ] || return 0
  for k in peak_missing_completed peak_bad_signatures peak_unsigned \
    half_missing_completed half_bad_signatures slowhalf_bad_signatures slow_bad_signatures; do
    v=$({ grep "^${p}$k=" "$figures" || true; } | tail -n 1 | cut -d= -f2)  # absent: not measured
    if [ -n "$v" ] && [ "$v" != 0 ]; then echo "${p}$k = $v" >&2; bad=1; fi
  done
  return "$bad"
}
