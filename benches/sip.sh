#!/usr/bin/env bash
# SIP trunk load, first cut (issue 23): sipp on core 1 places CALLS calls at
# RATE new calls a second against the daemon on core 0 (one tokio worker),
# with `voxbridge bot echo` on core 1. Each call: INVITE with a PCMU offer,
# ACK, speech played from sipp's media port for the whole call (a G.711
# capture benches/sip/make_pcap.py makes with ffmpeg from espeak-ng, 50
# packets a second, as capacity.sh's callers send; the bot echoes it, so RTP
# goes both ways), BYE after HOLD_MS. With the defaults (2,000 calls at
# 200/s held 1 s) about 200 calls are up at once.
#
#   CALLS=2000 RATE=200 HOLD_MS=1000 benches/sip.sh
#
# Measures: call setup (INVITE -> 200 at sipp, every call), failed calls
# (sipp's count: any missing or unexpected message), the daemon's CPU over
# the run per call-second held, its resident memory per concurrent call
# (peak minus before, over RATE x HOLD_MS/1000 calls) and the frames it
# lost (skipped ticks, dropped writes: its /metrics). The bot is 16 kHz
# pipecat, as in capacity.sh. The calls' RTP is on the shared port (each
# sipp call plays from a port of its own, [auto_media_port], which is how
# the shared port tells callers apart), where io_floor's rtp mode is the
# same media traffic (SIP's half-dozen datagrams a call are not in it) and
# vs_floor = daemon CPU over io_floor's for the calls up at once, run on
# the daemon's core once it is gone. SHARED_PORT=0 gives every call a port
# pair instead (vs_floor=na).
# Ends with: RESULT calls=<n> seconds=<s> cpu_us_per_call_s=<..> vs_floor=<..>
#   rss_kib_per_call=<..> setup_cps=<..> setup_p99_ms=<..> failed=<n> frames_lost=<n>
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-2000}
RATE=${RATE:-200}
HOLD_MS=${HOLD_MS:-1000}
SHARED=0; [ "${SHARED_PORT:-1}" = 1 ] && SHARED=40000
command -v sipp >/dev/null || { echo "sipp missing: run scripts/setup.sh"; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "sip.sh needs 2 cores (daemon and load on separate cores)"; exit 1; }
cargo build --release --locked --quiet
cargo build --release --locked --quiet -p voxbridge-benches --bin io_floor
bin=$PWD/target/release/voxbridge
tmp=$(mktemp -d)
trap 'kill "${pid:-}" "${bot:-}" "${sampler:-}" "${sink:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
python3 benches/sip/make_pcap.py "$tmp/caller.pcap" $(( (HOLD_MS + 999) / 1000 ))
scenario=$tmp/uac_rtp.xml
sed "s|@PCAP@|$tmp/caller.pcap|" benches/sip/uac_rtp.xml >"$scenario"
cat >"$tmp/voxbridge.toml" <<TOML
workers = 1
metrics_listen = "127.0.0.1:19110"
audiosocket = []
[limits]
max_calls = 100000
[rtp]
port_min = 30000
port_max = 39999
shared_port = $SHARED
[sip]
listen = "127.0.0.1:15060"
invite_rate = 0
[routes.default]
url = "ws://127.0.0.1:18766"
sample_rate = 16000
TOML
taskset -c 1 "$bin" bot echo --listen 127.0.0.1:18766 >"$tmp/bot.out" 2>&1 &
bot=$!
# The callers' media ports take what the daemon sends them (sipp does not
# listen there; see benches/sip/rtp_sink.py).
taskset -c 1 python3 benches/sip/rtp_sink.py 26000 "$CALLS" >"$tmp/sink.out" 2>&1 &
sink=$!
for _ in $(seq 100); do grep -q "rtp_sink:" "$tmp/sink.out" 2>/dev/null && break; sleep 0.1; done
no_ports() { awk '/^Udp:/ && !h { h = 1; for (i = 1; i <= NF; i++) if ($i == "NoPorts") c = i; next } /^Udp:/ { print $c }' /proc/net/snmp; }
no_ports0=$(no_ports)
RUST_LOG=warn VOXBRIDGE_CONTROL_LISTEN=127.0.0.1:0 VOXBRIDGE_DATA_DIR="$tmp/data" \
  taskset -c 0 "$bin" serve --config "$tmp/voxbridge.toml" >"$tmp/serve.out" 2>"$tmp/serve.err" &
pid=$!
for _ in $(seq 100); do grep -q "voxbridge serve:" "$tmp/serve.out" 2>/dev/null && break; sleep 0.1; done
grep -q "voxbridge serve:" "$tmp/serve.out" || { cat "$tmp/serve.err"; exit 1; }
ulimit -n 65536 2>/dev/null || true
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_base=$(rss_kib "$pid")
( peak=0; while kill -0 "$pid" 2>/dev/null; do r=$(rss_kib "$pid"); [ "${r:-0}" -gt "$peak" ] && peak=$r && echo "$peak" >"$tmp/rss_peak"; sleep 0.2; done ) &
sampler=$!
cpu0=$(cpu_ticks "$pid")
t0=$(date +%s.%N)
status=0
(cd "$tmp" && taskset -c 1 sipp -sf "$scenario" -s bot -i 127.0.0.1 -p 15070 -mp 26000 \
  -r "$RATE" -m "$CALLS" -d "$HOLD_MS" -l $((RATE * (HOLD_MS / 1000 + 10))) \
  -trace_rtt -rtt_freq 1 -trace_stat -fd 1 -timeout 600s -nostdin 127.0.0.1:15060 >/dev/null 2>"$tmp/sipp.err") || status=$?
t1=$(date +%s.%N)
cpu1=$(cpu_ticks "$pid")
no_ports1=$(no_ports)
kill -TERM "$sink" 2>/dev/null || true
wait "$sink" 2>/dev/null || true
curl -s 127.0.0.1:19110/metrics >"$tmp/metrics" || true
hz=$(getconf CLK_TCK)
stat=$(ls "$tmp"/*_.csv 2>/dev/null | head -1 || true)
[ -n "$stat" ] || stat=$(ls "$tmp"/*.csv | grep -v rtt | head -1)
rtt=$(ls "$tmp"/*_rtt.csv | head -1)
col() { awk -F';' -v name="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next } { v = $c } END { print v + 0 }' "$stat"; }
ok=$(col "SuccessfulCall(C)")
failed=$(col "FailedCall(C)")
elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
p99=$(awk -F';' 'NR > 1 && $2 != "" { print $2 }' "$rtt" | sort -n | awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.2f", v[i] }')
p50=$(awk -F';' 'NR > 1 && $2 != "" { print $2 }' "$rtt" | sort -n | awk '{ v[NR] = $1 } END { i = int(NR * 0.5); if (i < 1) i = 1; printf "%.2f", v[i] }')
call_s=$(awk -v n="$ok" -v h="$HOLD_MS" 'BEGIN { printf "%.1f", n * h / 1000 }')
cpu=$(awk -v c="$((cpu1 - cpu0))" -v hz="$hz" -v s="$call_s" 'BEGIN { if (s > 0) printf "%.0f", c / hz * 1e6 / s; else print "nan" }')
concurrent=$(( RATE * HOLD_MS / 1000 ))
[ "$concurrent" -gt "$CALLS" ] && concurrent=$CALLS
rss_peak=$(cat "$tmp/rss_peak" 2>/dev/null || echo "$rss_base")
rss_per_call=$(awk -v p="$rss_peak" -v b="$rss_base" -v n="$concurrent" 'BEGIN { printf "%.1f", (p - b) / n }')
echo "sipp: exit $status, $ok calls completed, $failed failed, in ${elapsed} s; INVITE->200 p50 ${p50} ms, p99 ${p99} ms"
echo "callers: $(tail -1 "$tmp/sink.out"); $((no_ports1 - no_ports0)) datagrams to closed ports during the run (should be 0)"
echo "daemon: $(( (cpu1 - cpu0) * 1000 / hz )) ms CPU for ${call_s} call-seconds; RSS ${rss_base} KiB before, ${rss_peak} KiB at peak (~${concurrent} calls up)"
grep -E '^voxbridge_sip_total|^voxbridge_calls_total\{cause="(caller_hangup|bot_unavailable|media_timeout)"|^voxbridge_rtp_packets_total' "$tmp/metrics" | sed 's/^/  /' || true
setup_cps=$RATE
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ] || setup_cps=0
lost=$(sed -n 's/^voxbridge_frames_total{kind="lost"} //p' "$tmp/metrics")
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
ratio=na
if [ "$SHARED" != 0 ]; then
  floor=$(target/release/io_floor --mode rtp --calls "$concurrent" --seconds 10 | grep '^FLOOR ')
  echo "$floor"
  busy=$(sed -n 's/.* busy_peer_cpu_us_per_call_s=\([^ ]*\).*/\1/p' <<<"$floor")
  ratio=$(awk -v d="$cpu" -v f="$busy" 'BEGIN { if (f > 0) printf "%.2f", d / f; else print "na" }')
fi
echo "RESULT calls=$ok seconds=$elapsed cpu_us_per_call_s=$cpu vs_floor=$ratio rss_kib_per_call=$rss_per_call setup_cps=$setup_cps setup_p99_ms=$p99 failed=$failed frames_lost=${lost:-0}"
