"""Peer baseline for benches/control.sh: the broker's own produce->consume
latency through Confluent's Python client (its bundled librdkafka), at the
same rate and with the same producer/consumer settings as voxbridge's relay
and the bench consumer. Prints `peer_p50_ms=<..> peer_p99_ms=<..>`.

usage: kafka_peer.py BROKERS RATE SECONDS
"""
import sys
import threading
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main() -> None:
    brokers, rate, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
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
        p.produce(topic, key=str(i % 50), value=repr(start + i / rate).encode())
        p.poll(0)
    p.flush()
    t.join()
    lat.sort()
    print(f"peer_p50_ms={lat[len(lat) // 2] * 1000:.2f} peer_p99_ms={lat[int(len(lat) * 0.99)] * 1000:.2f}")


if __name__ == "__main__":
    main()
