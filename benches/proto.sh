#!/usr/bin/env bash
# Wire-format costs per frame (criterion) and heap allocations on the hot paths
# (counting-allocator test), in one run. Ends with:
#   RESULT rtp_parse_ns=.. audiosocket_decode_ns=.. pb_audio_encode_ns=.. hot_path_allocs=..
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo bench -p voxbridge-benches --bench proto -- --noplot >"$log" 2>&1 || { cat "$log"; exit 1; }
allocs=$(cargo test -q -p voxbridge-proto --test hot_path_allocs -- --nocapture 2>&1 | grep -oE 'hot_path_allocs .*')
total=$(echo "$allocs" | grep -oE '=[0-9]+' | tr -d '=' | awk '{s+=$1} END {print s+0}')
echo "$allocs (per 1,000 frames each)"
python3 - "$total" <<'PY'
import json, sys
def ns(name):
    with open(f"target/criterion/proto/{name}/new/estimates.json") as f:
        return json.load(f)["median"]["point_estimate"]
r, a, p = ns("rtp_parse_payload"), ns("audiosocket_decode"), ns("pb_audio_encode")
print(f"rtp parse + payload slice {r:.1f} ns, audiosocket decode {a:.1f} ns, pipecat audio encode {p:.1f} ns (20 ms 16 kHz)")
print(f"RESULT rtp_parse_ns={r:.1f} audiosocket_decode_ns={a:.1f} pb_audio_encode_ns={p:.1f} hot_path_allocs={sys.argv[1]}")
PY
