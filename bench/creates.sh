#!/usr/bin/env bash
# Creates/s over keep-alive connections, beside pgbench single-row inserts on the same durable
# PostgreSQL in the same run, and their ratio. Loopback only; every load step is bounded in time.
#   bash bench/creates.sh [seconds per measurement, default 10] [connections, default 64]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}

bash scripts/setup.sh
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCOGWHEEL_TESTS=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" --target cogwheel >/dev/null

export THROWAWAY_PG_DURABLE=1
# shellcheck source=scripts/throwaway-postgres.sh
source scripts/throwaway-postgres.sh
work=$(mktemp -d /tmp/cogwheel-bench-XXXXXX)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  throwaway_postgres_stop
  rm -rf "$work"
}
trap cleanup EXIT
db="$COGWHEEL_TEST_DATABASE_URL"
as_pg=()
[ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)

# 1. The machine's limit: one durable single-row INSERT per transaction, 64 clients.
"${as_pg[@]}" psql "$db" -qc "CREATE TABLE bench_rows (id bigserial PRIMARY KEY, body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
echo "INSERT INTO bench_rows (body) VALUES ('{\"prompt\": \"bench\"}');" >"$work/insert.sql"
chmod 0755 "$work"; chmod 0644 "$work/insert.sql"
pgbench_tps=$("${as_pg[@]}" "$THROWAWAY_PG_BIN/pgbench" -n -c "$conns" -j 2 -T "$secs" -f "$work/insert.sql" "$db" 2>/dev/null |
  awk '/^tps = / {print int($3)}')

# 2. cogwheel creates over keep-alive connections.
cat >"$work/cogwheel.yaml" <<YAML
models:
  - name: acme/echo
    versions:
      - id: 5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa
        runtime: {type: static, urls: ["http://127.0.0.1:9"]}
YAML
export DATABASE_URL="$db"
COGWHEEL_TOKEN=$(./build-bench/cogwheel token create --name bench 2>/dev/null)
export COGWHEEL_TOKEN
port=$((20000 + RANDOM % 20000))
./build-bench/cogwheel serve --listen "127.0.0.1:$port" --config "$work/cogwheel.yaml" \
  --create-rate-limit 0 --log-level warn >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
wrk -t2 -c"$conns" -d"${secs}s" --latency -s bench/create.lua "http://127.0.0.1:$port" >"$work/wrk.txt"
creates=$(awk '/^Requests\/sec:/ {print int($2)}' "$work/wrk.txt")
not_created=$(awk '/^NOT_CREATED/ {print $2}' "$work/wrk.txt")
p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")
p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
rows=$("${as_pg[@]}" psql "$db" -tAc "SELECT count(*) FROM predictions")
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1024/1024)}' /proc/meminfo) GB; PostgreSQL $("$THROWAWAY_PG_BIN/postgres" --version | awk '{print $3}') durable (fsync on, synchronous_commit on); all on loopback, sharing the cores"
printf '| measurement (%ss, %s connections) | figure |\n| --- | --- |\n' "$secs" "$conns"
printf '| pgbench single-row INSERT, one commit each | %s tx/s |\n' "$pgbench_tps"
printf '| cogwheel POST /v1/predictions (201s) | %s creates/s (p50 %s, p99 %s) |\n' "$creates" "$p50" "$p99"
printf '| answers other than 201 | %s |\n' "$not_created"
printf '| predictions in the database afterwards | %s |\n' "$rows"
printf '| cogwheel peak resident memory | %s MB |\n' "$((rss_kb / 1024))"
awk -v c="$creates" -v p="$pgbench_tps" 'BEGIN {printf "| ratio cogwheel / pgbench | %.2f (target >= 0.7; DESIGN.md target >= 10,000 creates/s) |\n", c / p}'
