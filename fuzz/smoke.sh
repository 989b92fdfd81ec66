#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 5: the CI smoke run; pass
# more for a real campaign, e.g. `fuzz/smoke.sh 600`). Uses the nightly
# toolchain when installed, else stable with RUSTC_BOOTSTRAP (cargo-fuzz
# needs unstable flags) and no sanitizer.
# Ends with: RESULT targets=<n> seconds_each=<s> crashes=<n>
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-5}
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked --version 0.13.2 >/dev/null
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
  run=(rustup run nightly cargo fuzz)
  san=()
else
  export RUSTC_BOOTSTRAP=1
  run=(cargo fuzz)
  san=(-s none)
fi
targets=$("${run[@]}" list)
n=0; crashes=0
for t in $targets; do
  n=$((n + 1))
  mkdir -p "corpus/$t"
  log=$(mktemp)
  if "${run[@]}" run "${san[@]}" "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 >"$log" 2>&1; then
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
    [ -n "$execs" ] || execs=$(grep -oE '#[0-9]+' "$log" | tail -1 | tr -d '#')
    echo "$t: ok, ${execs:-?} executions in ${secs}s"
  else
    crashes=$((crashes + 1))
    echo "$t: FAILED"; tail -30 "$log"
  fi
  rm -f "$log"
done
echo "RESULT targets=$n seconds_each=$secs crashes=$crashes"
[ "$crashes" -eq 0 ]
