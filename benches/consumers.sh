#!/usr/bin/env bash
# The event stream's consumers (issue: webhook deliveries per second to a
# local receiver with signing, goal >= 2,000/s with PostgreSQL delivery
# records; WebSocket fan-out p99 to 1,000 subscribers, goal <= 20 ms),
# measured by benches/src/bin/consumers_load.rs against a real PostgreSQL
# (scripts/postgres.sh).
#   benches/consumers.sh                                # 5,000 events x 4 endpoints; 1,000 subscribers, 20 events/s for 10 s
#   EVENTS=10000 ENDPOINTS=2 SUBSCRIBERS=2000 WS_RATE=10 SECONDS_EACH=20 benches/consumers.sh
# Ends with: RESULT webhooks_per_s=<..> webhook_lost=<n> ws_fanout_p99_ms=<..> subscribers=<n> ws_lost=<n>
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
pg=$(scripts/postgres.sh)
cargo build --release --locked --quiet --bin consumers_load -p voxbridge-benches
# 1,000 WebSocket clients and the server's ends of their sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
out=${CARGO_TARGET_DIR:-target}/release
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$out/consumers_load" --pg "$pg" \
  --events "${EVENTS:-5000}" --endpoints "${ENDPOINTS:-4}" \
  --subscribers "${SUBSCRIBERS:-1000}" --ws-rate "${WS_RATE:-20}" --seconds "${SECONDS_EACH:-10}" | tee "$tmp"
grep '^LOAD ' "$tmp" | sed 's/^LOAD /RESULT /'
