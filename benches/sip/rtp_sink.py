#!/usr/bin/env python3
"""benches/sip.sh's receiver for the RTP the daemon sends to sipp's callers.

sipp plays each call's capture from a port of its own ([auto_media_port]:
the -mp port plus 4 per call number, modulo 10000) but does not listen
there (but for the -mp ports, which the first call uses), so without
this every packet the daemon sends back would hit a
closed port and the kernel would answer each with ICMP port unreachable,
work done on the daemon's send path over loopback that the floor
(io_floor) does not do. This binds those ports and discards what arrives,
counting it; it prints the count when stopped (SIGTERM).

    rtp_sink.py <first port> <calls>
"""
import resource
import selectors
import signal
import socket
import sys

first, calls = int(sys.argv[1]), int(sys.argv[2])
# Each call's RTP port and the next (RTCP); sipp binds the -mp ports
# itself (audio, video): the first call's.
rtp = {first + (4 * n) % 10000 for n in range(calls)}
ports = sorted((rtp | {p + 1 for p in rtp}) - {first, first + 2})
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, len(ports) + 64)), hard))
sel = selectors.DefaultSelector()
for port in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    s.bind(("127.0.0.1", port))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
received = 0
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
print(f"rtp_sink: {len(ports)} ports from {ports[0]}", flush=True)
buf = bytearray(2048)
while running:
    for key, _ in sel.select(timeout=0.5):
        sock = key.fileobj
        while True:
            try:
                sock.recv_into(buf)
            except BlockingIOError:
                break
            received += 1
print(f"rtp_sink: received {received} packets", flush=True)
