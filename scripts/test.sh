#!/usr/bin/env bash
# The one command that runs every test, after setting up what the tests need.
#   scripts/test.sh                  # unit, property, interop (ffmpeg/espeak-ng, PostgreSQL,
#                                    # Kafka via tansu, confluent-kafka), fuzz smoke
#   FUZZ_SECONDS=0 scripts/test.sh   # skip the fuzz smoke run
#   SCHEMATHESIS=0 scripts/test.sh   # skip the schemathesis run of the REST API
# Ends with one line "tests: N passed, M failed" totalling every cargo test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Real PostgreSQL for the store tests: the machine's, or a private one.
VOXBRIDGE_TEST_PG=$(scripts/postgres.sh)
export VOXBRIDGE_TEST_PG
# Real Redis for the API cache's tests: the machine's, or a private one.
VOXBRIDGE_TEST_REDIS=$(scripts/redis.sh)
export VOXBRIDGE_TEST_REDIS
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked 2>&1 | tee "$log" || status=$?
echo "test.sh: cargo test took ${SECONDS}s since the start"
# The REST API against its own OpenAPI document (schemathesis, every check).
if [ "${SCHEMATHESIS:-1}" != "0" ] && [ "$status" -eq 0 ]; then
  scripts/schemathesis.sh 2>&1 | tail -25 || status=$?
fi
secs=${FUZZ_SECONDS:-3}
if [ "$secs" != "0" ] && [ "$status" -eq 0 ]; then
  echo "test.sh: fuzz smoke starts at ${SECONDS}s"
  fuzz/smoke.sh "$secs" || status=$?
fi
passed=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "tests: $passed passed, $failed failed"
exit "$status"
