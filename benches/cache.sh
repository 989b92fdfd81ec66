#!/usr/bin/env bash
# The API's read cache (issue 27): p99 and PostgreSQL statements per
# request with and without the cache, in one run, at RATE requests/s (default
# 2,000) of mixed reads (GET a call by access key or JWT, list calls) shared
# by NODES daemons (default 2) on one PostgreSQL, measured open-loop by
# benches/src/bin/cache_load.rs. The cache settings run one after another
# on the same data: off, redis (scripts/redis.sh: the machine's Redis or a
# private one), memory.
#   benches/cache.sh
#   RATE=1000 SECONDS_EACH=10 NODES=2 ROUNDS=1 benches/cache.sh   (ROUNDS: alternations, default 3, medians kept)
# Ends with: RESULT api_p99_ms_nocache=<..> api_p99_ms_cache=<..> p99_ratio=<..>
#   pg_queries_per_cached_read=<..> (the cache: redis; the memory figures
#   and the rest are in the LOAD line above it)
set -euo pipefail
cd "$(dirname "$0")/.."
pg=$(scripts/postgres.sh)
redis=$(scripts/redis.sh)
cargo build --release --locked --quiet --bin voxbridge -p voxbridge
cargo build --release --locked --quiet --bin cache_load -p voxbridge-benches
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
out=${CARGO_TARGET_DIR:-target}/release
load=$("$out/cache_load" --pg "$pg" --redis "$redis" --bin "$out/voxbridge" \
  --rate "${RATE:-2000}" --seconds "${SECONDS_EACH:-20}" --nodes "${NODES:-2}" --rounds "${ROUNDS:-3}" | tee /dev/stderr | grep '^LOAD ')
get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" ${load#LOAD }"; }
echo "RESULT api_p99_ms_nocache=$(get api_p99_ms_off) api_p99_ms_cache=$(get api_p99_ms_redis) p99_ratio=$(get p99_ratio_redis) pg_queries_per_cached_read=$(get pg_per_cached_read_redis)"
