#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for the tests on a Unix socket in a fresh folder, as the postgres
# user when run as root (PostgreSQL refuses root). Source it: it exports COGWHEEL_TEST_DATABASE_URL
# and defines throwaway_postgres_stop.
set -euo pipefail

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
  echo "throwaway-postgres: PostgreSQL server binaries not found; run scripts/setup.sh" >&2
  return 1 2>/dev/null || exit 1
fi

THROWAWAY_PG_DIR=$(mktemp -d /tmp/cogwheel-pg-XXXXXX)
chmod 0755 "$THROWAWAY_PG_DIR"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres:postgres "$THROWAWAY_PG_DIR"
  as_pg=(runuser -u postgres --)
fi

"${as_pg[@]}" "$pg_bin/initdb" -D "$THROWAWAY_PG_DIR/data" -U postgres --auth=trust -E UTF8 \
  --locale=C.UTF-8 >"$THROWAWAY_PG_DIR/initdb.log" 2>&1 ||
  { cat "$THROWAWAY_PG_DIR/initdb.log" >&2; return 1 2>/dev/null || exit 1; }
# A throwaway server: durability off for speed (THROWAWAY_PG_DURABLE=1 keeps it on, for
# benchmarks), many connections for parallel tests.
durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
[ "${THROWAWAY_PG_DURABLE:-0}" = 1 ] && durability=""
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$THROWAWAY_PG_DIR/data" -l "$THROWAWAY_PG_DIR/server.log" -w -t 60 \
  -o "-c listen_addresses='' -k $THROWAWAY_PG_DIR $durability -c max_connections=300" \
  start >/dev/null ||
  { cat "$THROWAWAY_PG_DIR/server.log" >&2; return 1 2>/dev/null || exit 1; }

"${as_pg[@]}" psql -h "$THROWAWAY_PG_DIR" -U postgres -d postgres -q -c "CREATE DATABASE cogwheel_test"

export COGWHEEL_TEST_DATABASE_URL="postgresql://postgres@/cogwheel_test?host=$THROWAWAY_PG_DIR"
export THROWAWAY_PG_DIR THROWAWAY_PG_BIN="$pg_bin"

throwaway_postgres_stop() {
  if [ -n "${THROWAWAY_PG_DIR:-}" ] && [ -d "$THROWAWAY_PG_DIR/data" ]; then
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$THROWAWAY_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$THROWAWAY_PG_DIR"
  fi
}
