#!/usr/bin/env bash
# The one command that runs every test, after setting up what the tests need.
#   scripts/test.sh          # everything: unit, property, interop (ffmpeg/espeak-ng), fuzz smoke
#   FUZZ_SECONDS=0 scripts/test.sh   # skip the fuzz smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --locked
secs=${FUZZ_SECONDS:-3}
if [ "$secs" != "0" ]; then
  fuzz/smoke.sh "$secs"
fi
