#!/usr/bin/env bash
# Runs schemathesis (PyPI, in the control venv) against the REST API of a
# fresh `voxbridge serve` on the embedded defaults, authenticated as an admin
# who also acts for a customer (JWT HS256), with every check on: no 5xx, no
# response that breaks the OpenAPI document.
#   scripts/schemathesis.sh            # 25 examples per operation
#   EXAMPLES=200 scripts/schemathesis.sh
# Ends with "RESULT schemathesis=pass|fail".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
venv=${XDG_CACHE_HOME:-$HOME/.cache}/voxbridge/control-venv
# The test profile: the same artifacts `cargo test` built, no second build.
cargo build --locked --quiet --profile test --bin voxbridge
tmp=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
secret=schemathesis-secret-0123456789
VOXBRIDGE_CONTROL_LISTEN=127.0.0.1:0 VOXBRIDGE_DATA_DIR="$tmp/data" VOXBRIDGE_JWT_HS256_SECRET=$secret \
VOXBRIDGE_AUDIOSOCKET_LISTEN=127.0.0.1:0 VOXBRIDGE_METRICS_LISTEN=127.0.0.1:0 RUST_LOG=warn \
  "${CARGO_TARGET_DIR:-target}/debug/voxbridge" serve >"$tmp/serve.out" 2>"$tmp/serve.err" &
pid=$!
for _ in $(seq 100); do grep -q "voxbridge serve:" "$tmp/serve.out" 2>/dev/null && break; sleep 0.1; done
api=$(grep -oE 'control=[0-9.:]+' "$tmp/serve.out" | cut -d= -f2 || true)
[ -n "$api" ] || { echo "schemathesis.sh: voxbridge serve did not start"; cat "$tmp/serve.err"; exit 1; }
token=$("$venv/bin/python" - "$secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"customer_id": "default", "role": "admin", "exp": int(time.time()) + 3600}).encode())
sig = b64(hmac.new(sys.argv[1].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
)
status=pass
"$venv/bin/schemathesis" run "http://$api/v1/openapi.json" \
  -H "Authorization: Bearer $token" --checks all --max-examples "${EXAMPLES:-25}" \
  --generation-deterministic --report-dir "$tmp/report" || status=fail
if grep -qi "panicked" "$tmp/serve.err"; then status=fail; grep -i -A3 panicked "$tmp/serve.err"; fi
echo "RESULT schemathesis=$status"
[ "$status" = pass ]
