#!/usr/bin/env bash
# Prints a Redis URL the tests and benchmarks can use (the API cache's
# Redis backend, issue 27).
#   - $VOXBRIDGE_TEST_REDIS, or redis://127.0.0.1:6379, if it answers PING;
#   - otherwise starts a private redis-server on port 56379 (nothing kept
#     on disk) and prints its URL. It keeps running for later runs; stop it
#     with `scripts/redis.sh stop`.
set -euo pipefail
url=${VOXBRIDGE_TEST_REDIS:-redis://127.0.0.1:6379}
port=56379
pidfile=${TMPDIR:-/tmp}/voxbridge-redis.pid
answers() {
  # PING over bash's /dev/tcp: "+PONG" back means a Redis is there.
  local hostport=${1#redis://}
  hostport=${hostport%%/*}
  local host=${hostport%:*} p=${hostport##*:}
  { exec 3<>"/dev/tcp/$host/$p"; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  local reply=""
  read -r -t 2 reply <&3 || true
  exec 3<&- 3>&-
  [[ $reply == +PONG* ]]
}
if [ "${1:-}" = stop ]; then
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  exit 0
fi
if answers "$url"; then echo "$url"; exit 0; fi
private="redis://127.0.0.1:$port"
if ! answers "$private"; then
  command -v redis-server >/dev/null || { echo "redis.sh: no redis-server (apt install redis-server)" >&2; exit 1; }
  echo "redis.sh: starting a private Redis on port $port" >&2
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$pidfile" --logfile "${TMPDIR:-/tmp}/voxbridge-redis.log" >/dev/null
  for _ in $(seq 100); do answers "$private" && break; sleep 0.05; done
fi
echo "$private"
