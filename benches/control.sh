#!/usr/bin/env bash
# The control sidecar's latency goals (issue: API p99 <= 10 ms for call
# list/get at 1,000 requests/s on PostgreSQL; outbox commit-to-Kafka p99 <=
# 50 ms at 1,000 events/s), measured open-loop by benches/src/bin/control_load.rs
# against a real PostgreSQL (scripts/postgres.sh) and a tansu broker started
# here (see ../shared/KAFKA.md; scripts/setup.sh installs it).
#   benches/control.sh                    # 1,000/s for 10 s each
#   RATE=2000 SECONDS_EACH=20 benches/control.sh
#   RECORD_HEADERS=1 benches/control.sh   # the relay also sends record headers
# Also measures the broker alone (benches/kafka_peer.py: Confluent's client,
# produce->consume at the same rate, messages of the same size and headers)
# in the same run, for the ratio.
# Ends with: RESULT api_p99_ms=<..> api_rps=<..> outbox_p99_ms=<..> events_per_s=<..>
#   payload_bytes=<..> record_headers=<0|1> peer_p99_ms=<..> outbox_vs_peer_p99=<..>
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
pg=$(scripts/postgres.sh)
cargo build --release --locked --quiet --bin voxbridge -p voxbridge
cargo build --release --locked --quiet --bin control_load -p voxbridge-benches
tansu=${XDG_CACHE_HOME:-$HOME/.cache}/tansu-0.6.0/bin/tansu
tmp=$(mktemp -d)
trap 'kill "${bpid:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
# A fresh broker for each side, so neither pays for the other's stored data
# (tansu's SQLite storage slows as it grows).
start_broker() {
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$tmp/$1"
  (cd "$tmp/$1" && RUST_LOG=warn exec "$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
     --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine sqlite://tansu.db >broker.log 2>&1) &
  bpid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
}
start_broker voxbridge
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
out=${CARGO_TARGET_DIR:-target}/release
"$out/control_load" --pg "$pg" --kafka "127.0.0.1:$port" --bin "$out/voxbridge" \
  --rate "${RATE:-1000}" --seconds "${SECONDS_EACH:-10}" --record-headers "${RECORD_HEADERS:-0}" | tee "$tmp/load.out"
kill "$bpid"; wait "$bpid" 2>/dev/null || true
start_broker peer
venv=${XDG_CACHE_HOME:-$HOME/.cache}/voxbridge/control-venv
# The same number, size and headers of messages as voxbridge's events
# (LOAD payload_bytes, record_headers).
size=$(grep -oE 'payload_bytes=[0-9]+' "$tmp/load.out" | cut -d= -f2)
peer=$("$venv/bin/python" benches/kafka_peer.py "127.0.0.1:$port" "${RATE:-1000}" "${SECONDS_EACH:-10}" "${size:-0}" "${RECORD_HEADERS:-0}")
echo "peer (broker alone, confluent-kafka): $peer"
result=$(grep '^LOAD ' "$tmp/load.out" | sed 's/^LOAD /RESULT /')
p99=$(echo "$result" | grep -oE 'outbox_p99_ms=[0-9.]+' | cut -d= -f2)
peer99=$(echo "$peer" | grep -oE 'peer_p99_ms=[0-9.]+' | cut -d= -f2)
echo "$result peer_p99_ms=$peer99 outbox_vs_peer_p99=$(echo "scale=2; $p99 / $peer99" | bc)"
