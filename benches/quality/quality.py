#!/usr/bin/env python3
"""Scores the audio voxbridge hands to bots, end to end (issue 26).

Run by benches/quality.sh, which starts the daemon and this script's venv.

Every sentence of sentences.txt is spoken by espeak-ng, padded with
silence, and sent through a running `voxbridge serve` as a caller would send
it: AudioSocket signed linear, and RTP in PCMU, PCMA, G.722 and Opus, each
payload encoded by ffmpeg (the peer's encoder, not ours); PCMU once more
with 5 % random loss and once with up to 40 ms of random delay per packet
(so packets arrive reordered). Each path's sentences are concurrent calls.
A bot in this process (pipecat's Protobuf frames over WebSocket) keeps what
each call delivered. That audio is aligned to the clean original by
cross-correlation and scored with ITU-T P.862 PESQ (narrowband at 8 kHz,
wideband at 16 kHz; MOS-LQO) and STOI.

The peer: the same encoded bytes decoded by ffmpeg (ffmpeg's round trip of
the codec), scored the same way; and for the loss path the same packets
lost with silence in their place (what a bridge without concealment gives).

Ends with one line:
RESULT sentences=<n> pesq_audiosocket=.. pesq_pcmu=.. pesq_pcma=..
pesq_g722=.. pesq_opus=.. pesq_loss5=.. pesq_loss5_silence=..
pesq_jitter40=.. ffmpeg_pcmu=.. ffmpeg_pcma=.. ffmpeg_g722=.. ffmpeg_opus=..
stoi_min=..
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import uuid

import numpy as np
from pesq import pesq
from pystoi import stoi
from websockets.asyncio.server import serve

FRAME_S = 0.020
LEAD_S = 0.3  # silence before each sentence
TAIL_S = 0.6  # and after: the jitter buffer's delay drains inside it
VOICES = ["en-us", "en-us+f3", "en", "en+m3", "en-us+f2", "en+f4"]
OPUS_KBPS = 32


def sh(*cmd):
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit(f"quality: {' '.join(cmd)} failed: {r.stderr.decode(errors='replace')[-400:]}")


def read_s16(path):
    return np.fromfile(path, dtype="<i2")


def ffmpeg(*args):
    sh("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args)


# ---------------------------------------------------------------- corpus


def ogg_packets(data):
    """The packets of an Ogg stream (RFC 3533), header packets included."""
    packets, cur, pos = [], b"", 0
    while pos + 27 <= len(data):
        if data[pos : pos + 4] != b"OggS":
            sys.exit("quality: ffmpeg's Ogg output is not Ogg")
        nseg = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + nseg]
        body = pos + 27 + nseg
        for lace in lacing:
            cur += data[body : body + lace]
            body += lace
            if lace < 255:
                packets.append(cur)
                cur = b""
        pos = body
    return packets


def build_corpus(sentences, work):
    """Per sentence: the clean references at 8 and 16 kHz, ffmpeg's encodings
    of them and ffmpeg's decodings of those encodings."""
    os.makedirs(work, exist_ok=True)
    corpus = []
    for i, text in enumerate(sentences):
        base = os.path.join(work, f"s{i:02d}")
        if not os.path.exists(base + ".done"):
            ffmpeg_jobs(base, text, VOICES[i % len(VOICES)])
            open(base + ".done", "w").close()
        with open(base + ".opus.ogg", "rb") as f:
            opus = ogg_packets(f.read())[2:]  # after OpusHead and OpusTags
        corpus.append(
            {
                "nb": read_s16(base + ".nb.s16"),
                "wb": read_s16(base + ".wb.s16"),
                "pcmu": open(base + ".ul", "rb").read(),
                "pcma": open(base + ".al", "rb").read(),
                "g722": open(base + ".g722", "rb").read(),
                "opus": opus,
                "ffmpeg_pcmu": read_s16(base + ".ul.s16"),
                "ffmpeg_pcma": read_s16(base + ".al.s16"),
                "ffmpeg_g722": read_s16(base + ".g722.s16"),
                "ffmpeg_opus": read_s16(base + ".opus.s16"),
            }
        )
    return corpus


def ffmpeg_jobs(base, text, voice):
    sh("espeak-ng", "-v", voice, "-s", "150", "-w", base + ".wav", text)
    for rate, tag in ((8000, "nb"), (16000, "wb")):
        sh(
            "sox", "-q", base + ".wav", "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed",
            "-t", "raw", f"{base}.{tag}.s16", "norm", "-6", "pad", str(LEAD_S), str(TAIL_S),
        )
    nb = ["-f", "s16le", "-ar", "8000", "-ac", "1", "-i", base + ".nb.s16"]
    wb = ["-f", "s16le", "-ar", "16000", "-ac", "1", "-i", base + ".wb.s16"]
    ffmpeg(*nb, "-c:a", "pcm_mulaw", "-f", "mulaw", base + ".ul")
    ffmpeg(*nb, "-c:a", "pcm_alaw", "-f", "alaw", base + ".al")
    ffmpeg(*wb, "-c:a", "g722", "-f", "g722", base + ".g722")
    ffmpeg(
        *wb, "-c:a", "libopus", "-b:a", f"{OPUS_KBPS}k", "-frame_duration", "20",
        "-application", "voip", "-f", "ogg", base + ".opus.ogg",
    )
    out = ["-f", "s16le", "-ac", "1"]
    ffmpeg("-f", "mulaw", "-ar", "8000", "-ac", "1", "-i", base + ".ul", *out, base + ".ul.s16")
    ffmpeg("-f", "alaw", "-ar", "8000", "-ac", "1", "-i", base + ".al", *out, base + ".al.s16")
    ffmpeg("-f", "g722", "-i", base + ".g722", *out, "-ar", "16000", base + ".g722.s16")
    ffmpeg("-i", base + ".opus.ogg", *out, "-ar", "16000", base + ".opus.s16")


# ---------------------------------------------------------------- the bot


def varint(b, i):
    v, shift = 0, 0
    while True:
        if i >= len(b):
            raise ValueError("truncated varint")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return v, i
        shift += 7


def fields(b):
    """(field number, wire type, value) of one protobuf message."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 2:
            n, i = varint(b, i)
            v, i = b[i : i + n], i + n
        elif wt == 1:
            v, i = b[i : i + 8], i + 8
        elif wt == 5:
            v, i = b[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        yield num, wt, v


class Bot:
    """pipecat's Protobuf frames (frames.proto: Frame.audio = 2 with
    AudioRawFrame.audio = 3 and sample_rate = 4; Frame.message = 4 with
    MessageFrame.data = 1); keeps each call's audio by its call id."""

    def __init__(self):
        self.calls = {}
        self.rates = {}
        self.changed = asyncio.Event()

    async def handler(self, ws):
        call_id, chunks = None, []
        try:
            async for msg in ws:
                if not isinstance(msg, bytes):
                    continue
                for num, _, body in fields(msg):
                    if num == 2:
                        audio, rate = b"", 0
                        for n, _, v in fields(body):
                            if n == 3:
                                audio = v
                            elif n == 4:
                                rate = v
                        chunks.append(audio)
                        if call_id is not None:
                            self.rates[call_id] = rate
                    elif num == 4:
                        for n, _, v in fields(body):
                            if n == 1:
                                m = json.loads(v)
                                if m.get("type") == "voxbridge.start":
                                    call_id = m["call_id"]
        finally:
            if call_id is not None:
                self.calls[call_id] = np.frombuffer(b"".join(chunks), dtype="<i2")
                self.changed.set()

    async def wait_for(self, ids, timeout):
        deadline = time.monotonic() + timeout
        while not all(i in self.calls for i in ids):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [i for i in ids if i not in self.calls]
                sys.exit(f"quality: {len(missing)} calls never ended at the bot: {missing[:3]}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass


# ---------------------------------------------------------------- callers


def rtp_packets(codec, item):
    """(payload type, timestamp step, payloads) for one sentence."""
    if codec == "opus":
        return 96, 960, item["opus"]
    data = item[codec]
    pt = {"pcmu": 0, "pcma": 8, "g722": 9}[codec]
    return pt, 160, [data[i : i + 160] for i in range(0, len(data) - 159, 160)]


def api(args, method, path, body=None):
    req = urllib.request.Request(
        f"http://{args.api}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def send_schedule(events):
    """Sends (time offset, fn) events in time order against the monotonic
    clock; returns how late each went out, in seconds."""
    events.sort(key=lambda e: e[0])
    start = time.monotonic() + 0.05
    late = []
    for at, fn in events:
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        fn()
        late.append(time.monotonic() - start - at)
    return late


def rtp_caller(args, name, codec, route, corpus, loss, jitter_s):
    """One path's calls (the sessions made, the packets sent, hung up);
    returns (call ids, lost packet indexes per call, lateness)."""
    rng = random.Random(f"{name}-26")
    calls, events, dropped = [], [], {}
    for i, item in enumerate(corpus):
        call_id = f"q-{name}-{i:02d}-{uuid.uuid4().hex[:8]}"
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        created = api(
            args, "POST", "/v1/rtp/sessions",
            {"remote": f"127.0.0.1:{sock.getsockname()[1]}", "codec": codec,
             "call_id": call_id, "route": route},
        )
        host, port = created["local"].rsplit(":", 1)
        dest = (host, int(port))
        pt, step, payloads = rtp_packets(codec, item)
        ssrc, seq0, ts0 = rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(32)
        lost = []
        for k, payload in enumerate(payloads):
            if loss and rng.random() < loss:
                lost.append(k)
                continue
            hdr = struct.pack(
                "!BBHII", 0x80, pt | (0x80 if k == 0 else 0), (seq0 + k) & 0xFFFF,
                (ts0 + k * step) & 0xFFFFFFFF, ssrc,
            )
            at = k * FRAME_S + (rng.uniform(0, jitter_s) if jitter_s else 0.0)
            events.append((at, lambda s=sock, d=dest, p=hdr + payload: s.sendto(p, d)))
        dropped[call_id] = lost
        calls.append((call_id, sock))
    late = send_schedule(events)
    # Everything sent: give the last packets the jitter buffer's delay, then hang up.
    time.sleep(0.3)
    for call_id, sock in calls:
        api(args, "DELETE", f"/v1/rtp/sessions/{call_id}")
        sock.close()
    return [c for c, _ in calls], dropped, late


def audiosocket_caller(args, corpus):
    """AudioSocket calls: UUID, 20 ms signed linear frames, hangup."""
    calls, events = [], []
    for item in corpus:
        u = uuid.uuid4()
        sock = socket.create_connection(args.audiosocket)
        sock.sendall(struct.pack("!BH", 0x01, 16) + u.bytes)
        pcm = item["nb"].astype("<i2").tobytes()
        for k in range(len(pcm) // 320):
            frame = struct.pack("!BH", 0x10, 320) + pcm[k * 320 : (k + 1) * 320]
            events.append((k * FRAME_S, lambda s=sock, f=frame: s.sendall(f)))
        calls.append((str(u), sock))
    late = send_schedule(events)
    time.sleep(0.1)
    for _, sock in calls:
        sock.sendall(struct.pack("!BH", 0x00, 0))
        sock.close()
    return [c for c, _ in calls], {}, late


def in_own_process(fn, *a):
    """Runs a caller in a forked process of its own, so that the bot (in
    this process) never delays a packet; returns its result."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def run():
        child.send(fn(*a))
        child.close()

    proc = ctx.Process(target=run)
    proc.start()
    return proc, parent


async def run_path(bot, fn, *a):
    proc, conn = in_own_process(fn, *a)
    loop = asyncio.get_running_loop()
    ids, dropped, late = await loop.run_in_executor(None, conn.recv)
    await loop.run_in_executor(None, proc.join)
    await bot.wait_for(ids, 15)
    return ids, dropped, late


# ---------------------------------------------------------------- scoring


def align(ref, deg):
    """`deg` cut to `ref`'s length at the lag of best cross-correlation (a
    negative lag when the bot's audio starts after the original's, e.g.
    when the first packets were lost or overtaken)."""
    ref = ref.astype(np.float64)
    deg = deg.astype(np.float64)
    n = 1
    while n < len(ref) + len(deg):
        n *= 2
    xc = np.fft.irfft(np.fft.rfft(deg, n) * np.conj(np.fft.rfft(ref, n)), n)
    lag = int(np.argmax(xc))  # deg[lag + t] ~ ref[t]
    if lag >= len(deg):
        lag -= n
    out = np.zeros(len(ref))
    src = max(lag, 0)
    dst = max(-lag, 0)
    piece = deg[src : src + len(ref) - dst]
    out[dst : dst + len(piece)] = piece
    return out, lag


def score(job):
    ref, deg, fs = job
    aligned, lag = align(ref, deg)
    refd = ref.astype(np.float64)
    mode = "nb" if fs == 8000 else "wb"
    return pesq(fs, refd, aligned, mode), stoi(refd, aligned, fs, extended=False), lag


def silence_lost(decoded, lost):
    out = decoded.copy()
    for k in lost:
        out[k * 160 : (k + 1) * 160] = 0
    return out


# ---------------------------------------------------------------- main


async def bridge_runs(args, corpus):
    bot = Bot()
    host, port = args.bot.rsplit(":", 1)
    runs, dropped, lateness = {}, {}, {}
    async with serve(bot.handler, host, int(port), max_size=None):
        t0 = time.monotonic()
        ids, _, late = await run_path(bot, audiosocket_caller, args, corpus)
        runs["audiosocket"] = ("nb", ids)
        lateness["audiosocket"] = late
        for name, codec, route, loss, jit in (
            ("pcmu", "pcmu", "nb", 0.0, 0.0),
            ("pcma", "pcma", "nb", 0.0, 0.0),
            ("g722", "g722", "wb", 0.0, 0.0),
            ("opus", "opus", "wb", 0.0, 0.0),
            ("loss5", "pcmu", "nb", 0.05, 0.0),
            ("jitter40", "pcmu", "nb", 0.0, 0.040),
        ):
            ids, lost, late = await run_path(bot, rtp_caller, args, name, codec, route, corpus, loss, jit)
            runs[name] = (route, ids)
            dropped.update(lost)
            lateness[name] = late
        print(f"quality: {len(runs)} paths x {len(corpus)} calls in {time.monotonic() - t0:.1f} s", flush=True)
    return bot, runs, dropped, lateness


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--api", required=True)
    ap.add_argument("--audiosocket", required=True)
    ap.add_argument("--bot", required=True)
    ap.add_argument("--limit", type=int, default=0, help="only the first N sentences")
    ap.add_argument("--keep", help="write what the bot got per path and sentence here (raw s16le)")
    args = ap.parse_args()
    args.token = os.environ["VOXBRIDGE_MEDIA_API_TOKEN"]
    host, port = args.audiosocket.rsplit(":", 1)
    args.audiosocket = (host, int(port))

    with open(args.sentences) as f:
        sentences = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    if args.limit:
        sentences = sentences[: args.limit]
    t0 = time.monotonic()
    corpus = build_corpus(sentences, args.work)
    print(f"quality: {len(corpus)} sentences encoded by ffmpeg in {time.monotonic() - t0:.1f} s", flush=True)

    bot, runs, dropped, lateness = asyncio.run(bridge_runs(args, corpus))
    worst = 0.0
    for name, late in lateness.items():
        late = np.array(late) * 1000
        worst = max(worst, float(late.max()))
        print(f"quality: {name}: the callers sent {len(late)} packets, late by p99 {np.percentile(late, 99):.1f} ms, max {late.max():.1f} ms")
    if worst > 10:
        print(f"quality: WARNING a caller sent a packet {worst:.0f} ms late: the machine was busy, the figures are not this bridge's alone")

    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        for name, (route, ids) in runs.items():
            for i, call_id in enumerate(ids):
                bot.calls[call_id].tofile(os.path.join(args.keep, f"{name}-{i:02d}.{route}.s16"))
    jobs, keys = [], []
    for name, (route, ids) in runs.items():
        fs = 8000 if route == "nb" else 16000
        for i, call_id in enumerate(ids):
            if bot.rates.get(call_id, fs) != fs:
                sys.exit(f"quality: {call_id} reached the bot at {bot.rates[call_id]} Hz, not {fs}")
            jobs.append((corpus[i][route], bot.calls[call_id], fs))
            keys.append((name, i))
    for codec, route in (("pcmu", "nb"), ("pcma", "nb"), ("g722", "wb"), ("opus", "wb")):
        fs = 8000 if route == "nb" else 16000
        for i, item in enumerate(corpus):
            jobs.append((item[route], item["ffmpeg_" + codec], fs))
            keys.append(("ffmpeg_" + codec, i))
    for i, call_id in enumerate(runs["loss5"][1]):
        item = corpus[i]
        jobs.append((item["nb"], silence_lost(item["ffmpeg_pcmu"], dropped[call_id]), 8000))
        keys.append(("loss5_silence", i))
    t0 = time.monotonic()
    with multiprocessing.Pool(os.cpu_count()) as pool:
        scores = pool.map(score, jobs)
    print(f"quality: {len(jobs)} PESQ and STOI scores in {time.monotonic() - t0:.1f} s", flush=True)

    table = {}
    for (name, _), (p, s, lag) in zip(keys, scores):
        table.setdefault(name, []).append((p, s, lag))
    lost_total = sum(len(v) for k, v in dropped.items() if "-loss5-" in k)
    sent_total = sum(len(rtp_packets("pcmu", c)[2]) for c in corpus)
    print()
    print("| path | PESQ MOS-LQO mean | min | STOI mean | min | start offset ms (median) |")
    print("|---|---|---|---|---|---|")
    order = [
        "audiosocket", "pcmu", "ffmpeg_pcmu", "pcma", "ffmpeg_pcma", "g722", "ffmpeg_g722",
        "opus", "ffmpeg_opus", "loss5", "loss5_silence", "jitter40",
    ]
    means = {}
    for name in order:
        rows = table[name]
        p = [r[0] for r in rows]
        s = [r[1] for r in rows]
        fs = 16000 if name in ("g722", "ffmpeg_g722", "opus", "ffmpeg_opus") else 8000
        delay = float(np.median([r[2] for r in rows])) * 1000 / fs
        means[name] = (float(np.mean(p)), float(np.mean(s)))
        print(
            f"| {name} | {np.mean(p):.3f} | {np.min(p):.3f} | {np.mean(s):.4f} | {np.min(s):.4f} | {delay:.0f} |"
        )
    print(f"\nloss5: {lost_total} of {sent_total} packets dropped ({100 * lost_total / max(1, sent_total):.1f} %)")
    goals = []
    for c in ("pcmu", "pcma", "g722", "opus"):
        d = means[c][0] - means["ffmpeg_" + c][0]
        goals.append((f"{c} within 0.05 MOS of ffmpeg's round trip", d >= -0.05, f"{d:+.3f}"))
    d = means["loss5"][0] - means["loss5_silence"][0]
    goals.append(("loss5 at least 0.3 MOS above silence", d >= 0.3, f"{d:+.3f}"))
    d = means["jitter40"][0] - means["pcmu"][0]
    goals.append(("jitter40 equal to clean PCMU (within 0.05)", abs(d) <= 0.05, f"{d:+.3f}"))
    for what, ok, fig in goals:
        print(f"goal: {what}: {fig} {'met' if ok else 'NOT MET'}")
    bridge = ["audiosocket", "pcmu", "pcma", "g722", "opus", "loss5", "jitter40"]
    stoi_min = min(means[n][1] for n in bridge)
    print(
        f"RESULT sentences={len(corpus)}"
        + "".join(f" pesq_{n}={means[n][0]:.3f}" for n in bridge[:5])
        + f" pesq_loss5={means['loss5'][0]:.3f} pesq_loss5_silence={means['loss5_silence'][0]:.3f}"
        + f" pesq_jitter40={means['jitter40'][0]:.3f}"
        + "".join(f" ffmpeg_{c}={means['ffmpeg_' + c][0]:.3f}" for c in ("pcmu", "pcma", "g722", "opus"))
        + f" stoi_min={stoi_min:.4f}"
    )


if __name__ == "__main__":
    main()
