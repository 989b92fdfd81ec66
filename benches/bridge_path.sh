#!/usr/bin/env bash
# Runs the criterion "bridge path" bench (per frame pair: 20 ms 8 kHz u-law ->
# 16 kHz PCM16 plus 20 ms 24 kHz PCM16 -> 8 kHz u-law, over 1,000 call states
# round-robin and over one hot state) for voxbridge, libsoxr MQ/HQ and
# speexdsp q3 in one run, then prints a table and the RESULT line:
#   RESULT ours_ns=.. soxr_mq_ns=.. soxr_hq_ns=.. speex_q3_ns=.. vs_soxr=..
# Needs libsoxr-dev and libspeexdsp-dev (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
cargo bench -p voxbridge-benches --bench bridge_path -- --noplot >"$log" 2>&1 || { cat "$log"; exit 1; }
rm -f "$log"
python3 - <<'PY'
import json, os
base = "target/criterion/bridge_path"
def ns(name):
    with open(os.path.join(base, name, "new", "estimates.json")) as f:
        return json.load(f)["median"]["point_estimate"]
rows = {}
for eng in ["ours", "soxr_mq", "soxr_hq", "speex_q3"]:
    rows[eng] = (ns(f"{eng}_1000_states"), ns(f"{eng}_1_state"))
print(f"{'engine':<10} {'1000 states ns':>15} {'1 hot state ns':>15}")
for eng, (cold, hot) in rows.items():
    print(f"{eng:<10} {cold:>15.0f} {hot:>15.0f}")
ours = rows["ours"][0]
best_soxr = min(rows["soxr_mq"][0], rows["soxr_hq"][0])
print(f"RESULT ours_ns={ours:.0f} soxr_mq_ns={rows['soxr_mq'][0]:.0f} soxr_hq_ns={rows['soxr_hq'][0]:.0f} "
      f"speex_q3_ns={rows['speex_q3'][0]:.0f} vs_soxr={best_soxr / ours:.2f}")
PY
