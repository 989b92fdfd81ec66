#!/usr/bin/env bash
# The one command that runs every test, after setting up what the tests need.
#   scripts/test.sh                  # unit, property, interop (ffmpeg/espeak-ng), fuzz smoke
#   FUZZ_SECONDS=0 scripts/test.sh   # skip the fuzz smoke run
# Ends with one line "tests: N passed, M failed" totalling every cargo test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked 2>&1 | tee "$log" || status=$?
secs=${FUZZ_SECONDS:-3}
if [ "$secs" != "0" ] && [ "$status" -eq 0 ]; then
  fuzz/smoke.sh "$secs" || status=$?
fi
passed=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "tests: $passed passed, $failed failed"
exit "$status"
