#!/usr/bin/env bash
# Times voxbridge's SIP parser against rsip and ezk-sip-types on the same
# INVITE and 200 OK (parse plus the reads a UA makes), in one run.
# Usage: benches/sip_parse.sh
# Ends with: RESULT voxbridge_ns=.. rsip_ns=.. ezk_ns=.. rsip_vs_voxbridge=.. ezk_vs_voxbridge=..
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/benches/sip_parse"
export CARGO_TARGET_DIR="$root/target/sip_parse"
cargo run --release --quiet
