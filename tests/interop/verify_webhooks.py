"""Verifies captured webhook requests with independent code: the Standard
Webhooks headers with PyPI `standardwebhooks`, and X-Voxbridge-Signature
with Python's own hmac. Input: a JSON file of [{"secret", "headers", "body"}].
Prints `VERIFIED <n>`; exits 1 on the first bad signature."""

import hashlib
import hmac
import json
import sys

from standardwebhooks.webhooks import Webhook


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        captured = json.load(f)
    for i, req in enumerate(captured):
        headers = {k.lower(): v for k, v in req["headers"].items()}
        body = req["body"]
        secret = req["secret"]
        # Raises on a bad signature or a stale timestamp.
        Webhook(secret).verify(body, headers)
        ts = headers["x-voxbridge-timestamp"]
        want = "sha256=" + hmac.new(secret.encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
        got = headers["x-voxbridge-signature"].split(",")
        if want not in got:
            print(f"request {i}: X-Voxbridge-Signature {got} != {want}", file=sys.stderr)
            sys.exit(1)
        if headers["webhook-id"] != json.loads(body)["event_id"]:
            print(f"request {i}: webhook-id is not the event id", file=sys.stderr)
            sys.exit(1)
    print(f"VERIFIED {len(captured)}")


if __name__ == "__main__":
    main()
