#!/usr/bin/env python3
"""Writes the caller audio benches/sip.sh plays: G.711 u-law made with
ffmpeg from espeak-ng speech, packetized as RTP (PT 0, 20 ms, 160 bytes a
packet) into a pcap that sipp's play_pcap_audio replays at 50 packets a
second. Usage: make_pcap.py OUT.pcap SECONDS"""
import struct
import subprocess
import sys
import tempfile
import os

out, seconds = sys.argv[1], int(sys.argv[2])
with tempfile.TemporaryDirectory() as tmp:
    wav = os.path.join(tmp, "speech.wav")
    subprocess.run(
        ["espeak-ng", "-w", wav, "Thank you for calling. Please tell me how I can help you today, "
         "and I will connect you with the right person in a moment."],
        check=True, stdout=subprocess.DEVNULL)
    ulaw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", wav, "-ar", "8000", "-ac", "1", "-f", "mulaw", "-"],
        check=True, stdout=subprocess.PIPE).stdout
need = seconds * 8000
audio = (ulaw * (need // len(ulaw) + 1))[:need]

def checksum(header):
    s = sum(struct.unpack("!10H", header))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF

with open(out, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i in range(need // 160):
        payload = audio[i * 160:(i + 1) * 160]
        rtp = struct.pack("!BBHII", 0x80, 0x80 if i == 0 else 0x00, i & 0xFFFF, (i * 160) & 0xFFFFFFFF, 0x5EED) + payload
        udp = struct.pack("!HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        ts = i * 0.02
        f.write(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(frame), len(frame)))
        f.write(frame)
