"""Checks messages against voxbridge's published JSON Schemas.

Run by tests/pipecat_interop.rs as `python schema_check.py CORPUS` with the
control venv's Python (jsonschema_rs, which schemathesis brings). CORPUS is
a JSON list of {"schema": <file under proto/schema>, "message": <text>,
"valid": <what voxbridge's own parser says>}; every schema verdict must
equal voxbridge's. Exits non-zero naming the first disagreement.
"""

import json
import os
import sys

import jsonschema_rs

root = os.path.join(os.path.dirname(__file__), "..", "..", "proto", "schema")
with open(sys.argv[1]) as f:
    corpus = json.load(f)
validators = {}
for case in corpus:
    name = case["schema"]
    if name not in validators:
        with open(os.path.join(root, name)) as f:
            validators[name] = jsonschema_rs.validator_for(json.load(f))
    verdict = validators[name].is_valid(json.loads(case["message"]))
    if verdict != case["valid"]:
        print(f"MISMATCH {name}: schema says {verdict}, voxbridge says {case['valid']}: {case['message']}", file=sys.stderr)
        sys.exit(1)
print(f"schemas: {len(corpus)} messages, {len(validators)} schemas agree with voxbridge")
