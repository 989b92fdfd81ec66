"""Independent check of what voxbridge's outbox relay put on Kafka.

Reads a topic from the beginning as a consumer group member with Confluent's
Python client (its own bundled librdkafka, not the one voxbridge links),
commits its offsets, and prints one JSON line per message:
{"key", "partition", "offset", "event_id", "event_type", "resource_id",
"headers"} (headers as an object of name -> UTF-8 value).

usage: kafka_consume.py BROKERS TOPIC GROUP EXPECTED_DISTINCT TIMEOUT_S
Stops once EXPECTED_DISTINCT distinct event ids were seen and the topic is
drained, or after TIMEOUT_S; exits 1 if fewer were seen.
"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError


def main() -> int:
    brokers, topic, group, expected, timeout = sys.argv[1:6]
    expected, deadline = int(expected), time.monotonic() + float(timeout)
    c = Consumer({
        "bootstrap.servers": brokers,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([topic])
    seen = set()
    idle_since = None
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            if len(seen) >= expected:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 1.0:
                    break
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                print(f"consumer error: {m.error()}", file=sys.stderr)
            continue
        idle_since = None
        e = json.loads(m.value())
        seen.add(e["event_id"])
        print(json.dumps({
            "key": m.key().decode(),
            "partition": m.partition(),
            "offset": m.offset(),
            "event_id": e["event_id"],
            "event_type": e["event_type"],
            "resource_id": e["resource"]["id"],
            "headers": {k: v.decode() for k, v in (m.headers() or [])},
        }), flush=True)
    if seen:
        c.commit(asynchronous=False)
    c.close()
    if len(seen) < expected:
        print(f"saw {len(seen)} distinct events, expected {expected}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
