"""Peer baseline for benches/control.sh: the broker's own produce->consume
latency through Confluent's Python client (its bundled librdkafka), at the
same rate and with the same producer/consumer settings as voxbridge's relay
and the bench consumer. Prints `peer_p50_ms=<..> peer_p99_ms=<..>`.

With PAYLOAD_BYTES each message is that long (the timestamp padded with
spaces); with HEADERS=1 it also carries the relay's two record headers
(event_type, and event_id as a 36-character id). So the broker stores what
it stores for voxbridge's events; without them the messages are bare
timestamps.

usage: kafka_peer.py BROKERS RATE SECONDS [PAYLOAD_BYTES [HEADERS]]
"""
import sys
import threading
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main() -> None:
    brokers, rate, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    with_headers = len(sys.argv) > 5 and sys.argv[5] == "1"
    topic = f"peer.{int(time.time())}"
    admin = AdminClient({"bootstrap.servers": brokers})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result()
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"g-{topic}", "auto.offset.reset": "earliest",
                  "fetch.wait.max.ms": 5, "fetch.min.bytes": 1})
    c.subscribe([topic])
    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all", "linger.ms": 2})
    p.produce(topic, key="warmup", value=repr(time.monotonic()).encode())
    p.flush()
    while True:  # until the consumer has its partitions and the warm-up message
        m = c.poll(1)
        if m is not None and not m.error():
            break
    total, lat = rate * secs, []

    def consume() -> None:
        deadline = time.monotonic() + secs + 30
        while len(lat) < total and time.monotonic() < deadline:
            m = c.poll(1)
            if m is not None and not m.error():
                lat.append(time.monotonic() - float(m.value()))

    t = threading.Thread(target=consume)
    t.start()
    start = time.monotonic()
    for i in range(total):
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        # Timestamp = scheduled time, as voxbridge's bench counts from commit.
        value = repr(start + i / rate).ljust(size).encode()
        if with_headers:
            headers = [("event_type", b"call_created"), ("event_id", f"{i:036d}".encode())]
            p.produce(topic, key=str(i % 50), value=value, headers=headers)
        else:
            p.produce(topic, key=str(i % 50), value=value)
        p.poll(0)
    p.flush()
    t.join()
    lat.sort()
    print(f"peer_p50_ms={lat[len(lat) // 2] * 1000:.2f} peer_p99_ms={lat[int(len(lat) * 0.99)] * 1000:.2f}")


if __name__ == "__main__":
    main()
