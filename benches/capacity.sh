#!/usr/bin/env bash
# Capacity of the bridge: the daemon pinned to core 0 (one tokio worker),
# loadgen and its built-in echo bot pinned to core 1; CALLS calls (default
# 500) for SECS seconds (default 60) after a 5 s ramp. SHARED_PORT=1 runs
# the RTP modes on one shared port (batched recvmmsg/sendmmsg) instead of a
# port pair per call; the RESULT line then says io=shared (else io=per-call).
# LOADGEN_ARGS adds loadgen options: LOADGEN_ARGS=--quiet makes every caller
# send one frame a second (calls in which nobody speaks), for the daemon's
# memory at many calls (rss_kib_per_call; the CPU and floor figures then
# do not compare like for like). VAD=on turns on voice
# activity detection, both directions, on the calls' route.
#
#   benches/capacity.sh [--mode audiosocket|chanws|rtp-pcmu|rtp-opus]
#
# chanws: loadgen plays Asterisk's WebSocket media channel (chan_websocket)
# dialling the daemon, with the AudioSocket mode's 8 kHz slin frames; its
# floor is io_floor's AudioSocket one (the same TCP reads and writes of the
# same frames; a WebSocket adds a 2-8 byte header per message).
#
# Prints loadgen's report, the daemon's own counters from /metrics, and ends
# with: RESULT mode=<mode> calls=<n> seconds=<s> cpu_us_per_call_s=<..> p99_added_ms=<..> frames_lost=<n>
#   io=<shared|per-call> floor_us_per_call_s=<..> floor_sleeping_peer_us_per_call_s=<..> vs_floor=<..>
#   rss_kib_per_call=<..> loadgen_cpu_us_per_call_s=<..>
#   p99_up_ms=<..> p99_down_ms=<..> floor_p99_up_ms=<..> floor_p99_down_ms=<..> p99_over_floor_ms=<..>
# The floor is io_floor (benches/src/bin/io_floor.rs), run on the daemon's
# core right after it: the same calls' datagrams and bot messages with
# nothing but the system calls; floor_us_per_call_s with its peer spinning
# (the server's own calls and wake-ups only), the other with its peer
# sleeping between frames as loadgen does. vs_floor = daemon / floor.
# loadgen_cpu_us_per_call_s: loadgen's own CPU (its callers and the echo
# bot) per call-second, on its own core; it must stay at or below the
# daemon's, or the load generator is what is measured.
# rss_kib_per_call: the daemon's resident memory at its peak during the run
# minus what it held before the first call, over the calls (sampled from
# /proc every 200 ms).
# floor_p99_up_ms / floor_p99_down_ms: the same two figures for io_floor's
# paced window (its server sends each caller its frame on the call's own
# 20 ms grid, waking with a millisecond timeout as tokio does; its sleeping
# peer measures as loadgen does): what this machine's scheduling alone puts
# on the traffic. p99_over_floor_ms is the worse direction's daemon p99 less
# the floor's p99 in that direction: the part the daemon adds.
# p99_added_ms is the worse of the two directions (caller->bot forwarding,
# bot->caller lateness against the 20 ms tick); nothing is taken off: the
# RTP jitter buffer forwards in-order packets as they arrive, so on this
# clean loopback network it adds no deliberate delay. frames_lost adds loadgen's count (both
# directions) and the daemon's (skipped ticks, dropped writes).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=audiosocket
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) MODE=$2; shift 2 ;;
    *) echo "usage: $0 [--mode audiosocket|chanws|rtp-pcmu|rtp-opus]"; exit 2 ;;
  esac
done
case "$MODE" in audiosocket|chanws|rtp-pcmu|rtp-opus) ;; *) echo "unknown mode $MODE"; exit 2 ;; esac
CALLS=${CALLS:-500}
SECS=${SECS:-60}
PNG=${PNG:-benches/capacity_latency_$MODE.png}
[ "$(nproc)" -ge 2 ] || { echo "capacity.sh needs 2 cores (daemon and load on separate cores)"; exit 1; }
cargo build --release --locked --quiet
cargo build --release --locked --quiet -p voxbridge-benches --bin io_floor
bin=target/release/voxbridge
tmp=$(mktemp -d)
trap 'kill "${pid:-}" "${sampler:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
# The media API's credential, read by the daemon and by loadgen alike.
VOXBRIDGE_MEDIA_API_TOKEN=capacity-bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
export VOXBRIDGE_MEDIA_API_TOKEN

SHARED=0
IO=per-call
if [ "${SHARED_PORT:-0}" = 1 ] && [ "${MODE#rtp}" != "$MODE" ]; then SHARED=40000; IO=shared; fi
TARGET=127.0.0.1:19092; [ "$MODE" = chanws ] && TARGET=127.0.0.1:19094
VOXBRIDGE_RTP_SHARED_PORT=$SHARED VOXBRIDGE_WORKERS=1 VOXBRIDGE_MAX_CALLS=100000 VOXBRIDGE_OPUS_COMPLEXITY=${OPUS_COMPLEXITY:-1} VOXBRIDGE_OPUS_FEC=${OPUS_FEC:-1} \
VOXBRIDGE_AUDIOSOCKET_LISTEN=127.0.0.1:19092 VOXBRIDGE_CHANWS_LISTEN=127.0.0.1:19094 VOXBRIDGE_METRICS_LISTEN=127.0.0.1:19100 \
VOXBRIDGE_BOT_URL=ws://127.0.0.1:18765 VOXBRIDGE_VAD=${VAD:-off} RUST_LOG=warn \
VOXBRIDGE_CONTROL_LISTEN=127.0.0.1:0 VOXBRIDGE_DATA_DIR="$tmp/data" \
  taskset -c 0 "$bin" serve >"$tmp/serve.out" 2>"$tmp/serve.err" &
pid=$!
for _ in $(seq 100); do grep -q "voxbridge serve:" "$tmp/serve.out" 2>/dev/null && break; sleep 0.1; done
grep -q "voxbridge serve:" "$tmp/serve.out" || { cat "$tmp/serve.err"; exit 1; }
ulimit -n 65536 2>/dev/null || true
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
rss_base=$(rss_kib "$pid")
( peak=0; while kill -0 "$pid" 2>/dev/null; do r=$(rss_kib "$pid"); [ "${r:-0}" -gt "$peak" ] && peak=$r && echo "$peak" >"$tmp/rss_peak"; sleep 0.2; done ) &
sampler=$!

RUST_LOG=warn taskset -c 1 "$bin" loadgen --target "$TARGET" --bot-listen 127.0.0.1:18765 \
  --mode "$MODE" --api 127.0.0.1:19100 \
  --calls "$CALLS" --seconds "$SECS" --ramp-ms 5000 --daemon-pid "$pid" --png "$PNG" ${LOADGEN_ARGS:-} | tee "$tmp/lg.out"
curl -s 127.0.0.1:19100/metrics >"$tmp/metrics" || true
rss_peak=$(cat "$tmp/rss_peak" 2>/dev/null || echo "$rss_base")
rss_per_call=$(awk -v p="$rss_peak" -v b="$rss_base" -v n="$CALLS" 'BEGIN { printf "%.1f", (p - b) / n }')
echo "daemon RSS: ${rss_base} KiB before the calls, ${rss_peak} KiB at peak: ${rss_per_call} KiB per call"
echo "daemon counters:"
grep -E '^voxbridge_(frames_total|rtp_packets_total|rtp_shared_syscalls_total|calls_total\{cause="(caller_hangup|bot_dropped|bot_unavailable|malformed|media_timeout)"|bot_connect_failures_total|rejected_connections_total)' "$tmp/metrics" | sed 's/^/  /'

line=$(grep '^LOADGEN ' "$tmp/lg.out")
get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
p99=$(awk -v a="$(get p99_up_ms)" -v b="$(get p99_down_ms)" 'BEGIN { printf "%.3f", (a > b ? a : b) }')
daemon_lost=$(sed -n 's/^voxbridge_frames_total{kind="lost"} //p' "$tmp/metrics")
lost=$(( $(get frames_lost) + ${daemon_lost:-0} ))
cpu=$(get cpu_us_per_call_s)

# The peer in the same run: the same traffic with nothing but the system
# calls (benches/src/bin/io_floor.rs), on the daemon's core once it is gone.
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
floor_mode=rtp; [ "${MODE#rtp}" = "$MODE" ] && floor_mode=audiosocket
floor=$(target/release/io_floor --mode "$floor_mode" --calls "$CALLS" --seconds "$(( SECS < 10 ? SECS : 10 ))" | grep '^FLOOR ')
echo "$floor"
fget() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$floor"; }
busy=$(fget busy_peer_cpu_us_per_call_s)
ratio=$(awk -v d="$cpu" -v f="$busy" 'BEGIN { if (f > 0) printf "%.2f", d / f; else print "nan" }')
over=$(awk -v u="$(get p99_up_ms)" -v d="$(get p99_down_ms)" -v fu="$(fget paced_p99_up_ms)" -v fd="$(fget paced_p99_down_ms)" \
  'BEGIN { a = u - fu; b = d - fd; printf "%.3f", (a > b ? a : b) }')
echo "RESULT mode=$MODE calls=$(get calls) seconds=$(get seconds) cpu_us_per_call_s=$cpu p99_added_ms=$p99 frames_lost=$lost io=$IO floor_us_per_call_s=$busy floor_sleeping_peer_us_per_call_s=$(fget cpu_us_per_call_s) vs_floor=$ratio rss_kib_per_call=$rss_per_call loadgen_cpu_us_per_call_s=$(get loadgen_cpu_us_per_call_s) p99_up_ms=$(get p99_up_ms) p99_down_ms=$(get p99_down_ms) floor_p99_up_ms=$(fget paced_p99_up_ms) floor_p99_down_ms=$(fget paced_p99_down_ms) p99_over_floor_ms=$over"
