#!/usr/bin/env bash
# Prints a PostgreSQL URL the tests and benchmarks can use.
#   - $VOXBRIDGE_TEST_PG, or postgres://postgres@127.0.0.1:5432/test, if it answers;
#   - otherwise starts a private server (initdb in a temp dir, port 55432,
#     trust auth on loopback) from the machine's PostgreSQL binaries, and
#     prints its URL. It keeps running for later runs; stop it with
#     `scripts/postgres.sh stop`.
set -euo pipefail
url=${VOXBRIDGE_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}
dir=${TMPDIR:-/tmp}/voxbridge-pg
port=55432
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
as_pg() {
  # initdb and postgres refuse to run as root.
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ "${1:-}" = stop ]; then
  [ -d "$dir" ] && as_pg "$bindir/pg_ctl" -D "$dir" stop -m fast >/dev/null || true
  exit 0
fi
if [ -n "$bindir" ] && "$bindir/pg_isready" -q -d "$url" 2>/dev/null \
   && psql "$url" -Atc 'select 1' >/dev/null 2>&1; then
  echo "$url"; exit 0
fi
[ -n "$bindir" ] || { echo "postgres.sh: no PostgreSQL binaries (apt install postgresql)" >&2; exit 1; }
private="postgres://postgres@127.0.0.1:$port/test"
if ! "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
  echo "postgres.sh: starting a private PostgreSQL in $dir on port $port" >&2
  if [ ! -f "$dir/PG_VERSION" ]; then
    rm -rf "$dir"; mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    as_pg "$bindir/initdb" -D "$dir" -U postgres --auth=trust >/dev/null
  fi
  as_pg "$bindir/pg_ctl" -D "$dir" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
fi
psql "postgres://postgres@127.0.0.1:$port/postgres" -Atc "select 1 from pg_database where datname='test'" | grep -q 1 \
  || psql "postgres://postgres@127.0.0.1:$port/postgres" -qc "create database test"
echo "$private"
