#!/usr/bin/env python3
"""Records what Asterisk's WebSocket channel (chan_websocket) says on the
wire, for the fixtures under tests/fixtures/asterisk/ that the Rust tests
replay. Run by hand against an Asterisk built from its source (see
tests/fixtures/asterisk/README.md); not part of the test command.

It plays the application's side of one call, in either direction:

  --listen PORT      Asterisk dials us (websocket_client.conf, Dial(WebSocket/...))
  --ari URL          we dial Asterisk: ARI originates the callee into the
                     Stasis app, bridges it with an externalMedia channel in
                     WebSocket server mode, and the probe connects to
                     /media/<MEDIA_WEBSOCKET_CONNECTION_ID>

and runs one script: listen to the caller, send a 20 s burst (Asterisk's
XOFF/XON), GET_STATUS, MARK_MEDIA, FLUSH_MEDIA, bulk media inside
START/STOP_MEDIA_BUFFERING with REPORT_QUEUE_DRAINED, a bad command, and
HANGUP. Every message each way is written as one JSON line: time in ms,
direction, text or binary length.
"""

import argparse
import asyncio
import base64
import json
import math
import sys
import time
import urllib.parse
import urllib.request

import websockets

T0 = time.monotonic()


def now_ms():
    return round((time.monotonic() - T0) * 1000, 1)


class Recorder:
    def __init__(self, path):
        self.out = open(path, "w")
        self.texts = asyncio.Queue()

    def note(self, **kv):
        kv = {"t_ms": now_ms(), **kv}
        self.out.write(json.dumps(kv) + "\n")
        self.out.flush()


def tone(frames, frame_bytes, rate):
    """frames of a 440 Hz tone at `rate`, signed linear 16 LE."""
    samples = frame_bytes // 2
    out = []
    n = 0
    for _ in range(frames):
        b = bytearray()
        for _ in range(samples):
            v = int(6000 * math.sin(2 * math.pi * 440 * n / rate))
            b += v.to_bytes(2, "little", signed=True)
            n += 1
        out.append(bytes(b))
    return out


async def reader(ws, rec):
    try:
        async for m in ws:
            if isinstance(m, bytes):
                rec.note(dir="in", kind="binary", len=len(m))
            else:
                rec.note(dir="in", kind="text", text=m)
                await rec.texts.put(m)
    except websockets.ConnectionClosed:
        pass
    rec.note(dir="in", kind="close", code=ws.close_code, reason=ws.close_reason)
    await rec.texts.put(None)


async def wait_text(rec, pred, timeout):
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return None
        try:
            t = await asyncio.wait_for(rec.texts.get(), left)
        except asyncio.TimeoutError:
            return None
        if t is None or pred(t):
            return t


def is_json(t):
    return t.startswith("{")


def cmd(json_mode, name, **args):
    if json_mode:
        return json.dumps({"command": name, **args})
    if args:
        return name + " " + " ".join(f"{k}:{v}" for k, v in args.items())
    return name


async def script(ws, rec):
    start = await wait_text(rec, lambda t: "MEDIA_START" in t, 5)
    if start is None:
        rec.note(note="no MEDIA_START")
        return
    json_mode = is_json(start)
    if json_mode:
        s = json.loads(start)
        fmt, size = s["format"], int(s["optimal_frame_size"])
    else:
        kv = dict(p.split(":", 1) for p in start.split()[1:] if ":" in p)
        fmt, size = kv["format"], int(kv["optimal_frame_size"])
    rate = {"slin16": 16000, "slin": 8000, "slin24": 24000, "slin48": 48000}.get(fmt, 8000)

    async def send_text(t):
        rec.note(dir="out", kind="text", text=t)
        await ws.send(t)

    async def send_bin(b):
        rec.note(dir="out", kind="binary", len=len(b))
        await ws.send(b)

    # 1. The caller speaks (the dialplan plays a prompt, then DTMF).
    await asyncio.sleep(3.0)
    # 2. A 20 s burst at once: Asterisk's queue fills, XOFF, then XON.
    for f in tone(1000, size, rate):
        await send_bin(f)
    await send_text(cmd(json_mode, "GET_STATUS"))
    await wait_text(rec, lambda t: "MEDIA_XON" in t, 25)
    # 3. A mark after 1 s of audio: processed when played.
    for f in tone(50, size, rate):
        await send_bin(f)
    await send_text(cmd(json_mode, "MARK_MEDIA", correlation_id="probe1"))
    await wait_text(rec, lambda t: "MEDIA_MARK_PROCESSED" in t, 25)
    # 4. Barge-in: 5 s queued, then flushed.
    for f in tone(250, size, rate):
        await send_bin(f)
    await send_text(cmd(json_mode, "MARK_MEDIA", correlation_id="probe2"))
    await asyncio.sleep(0.5)
    await send_text(cmd(json_mode, "FLUSH_MEDIA"))
    await send_text(cmd(json_mode, "GET_STATUS"))
    await wait_text(rec, lambda t: "STATUS" in t, 5)
    # 5. Bulk: odd-sized pieces inside media buffering, Asterisk re-frames.
    await send_text(cmd(json_mode, "START_MEDIA_BUFFERING"))
    blob = b"".join(tone(100, size, rate))
    for i in range(0, len(blob), 1000):
        await send_bin(blob[i : i + 1000])
    await send_text(cmd(json_mode, "STOP_MEDIA_BUFFERING", correlation_id="bulk1"))
    await send_text(cmd(json_mode, "REPORT_QUEUE_DRAINED"))
    await wait_text(rec, lambda t: "QUEUE_DRAINED" in t, 10)
    # 6. Pause/continue, an unknown command, then hang up.
    await send_text(cmd(json_mode, "PAUSE_MEDIA"))
    await send_text(cmd(json_mode, "CONTINUE_MEDIA"))
    await send_text(cmd(json_mode, "NOT_A_COMMAND"))
    await asyncio.sleep(0.5)
    await send_text(cmd(json_mode, "HANGUP"))
    await wait_text(rec, lambda t: False, 3)


async def run_listen(port, rec):
    done = asyncio.Event()

    async def handler(ws):
        req = ws.request
        rec.note(
            dir="in",
            kind="upgrade",
            path=req.path,
            subprotocol=ws.subprotocol,
            headers={k: v for k, v in req.headers.raw_items() if k.lower() != "sec-websocket-key"},
        )
        r = asyncio.create_task(reader(ws, rec))
        await script(ws, rec)
        await asyncio.wait_for(r, 10)
        done.set()

    async with websockets.serve(handler, "127.0.0.1", port, subprotocols=["media"], max_size=None):
        print(f"probe listening on {port}", file=sys.stderr)
        await done.wait()


def ari(base, auth, method, path, query=None, body=None):
    url = f"{base}/ari/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    if data:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        txt = r.read().decode()
        return json.loads(txt) if txt else None


async def run_ari(base, auth, endpoint, fmt, rec):
    app = "probe"
    wsbase = base.replace("http://", "ws://")
    events_url = f"{wsbase}/ari/events?" + urllib.parse.urlencode({"app": app, "api_key": auth})
    async with websockets.connect(events_url) as ev:
        ari(base, auth, "POST", "channels", {"endpoint": endpoint, "app": app, "channelId": "probe-callee"})
        while True:
            e = json.loads(await ev.recv())
            rec.note(dir="ari", kind="event", type=e.get("type"), channel=e.get("channel", {}).get("id"))
            if e.get("type") == "StasisStart" and e["channel"]["id"] == "probe-callee":
                break
        ari(base, auth, "POST", "bridges", {"type": "mixing", "bridgeId": "probe-bridge"})
        ch = ari(
            base,
            auth,
            "POST",
            "channels/externalMedia",
            {
                "app": app,
                "channelId": "probe-media",
                "external_host": "INCOMING",
                "transport": "websocket",
                "encapsulation": "none",
                "connection_type": "server",
                "format": fmt,
            },
        )
        conn = ch["channelvars"]["MEDIA_WEBSOCKET_CONNECTION_ID"]
        rec.note(dir="ari", kind="externalMedia", channelvars=ch.get("channelvars"), name=ch.get("name"))
        async with websockets.connect(f"{wsbase}/media/{conn}", subprotocols=["media"], max_size=None) as ws:
            rec.note(dir="out", kind="connect", path=f"/media/{conn}", subprotocol=ws.subprotocol)
            r = asyncio.create_task(reader(ws, rec))
            # The media channel answers (and enters the app) once connected;
            # only then can it join the bridge.
            while True:
                e = json.loads(await ev.recv())
                rec.note(dir="ari", kind="event", type=e.get("type"), channel=e.get("channel", {}).get("id"))
                if e.get("type") == "StasisStart" and e["channel"]["id"] == "probe-media":
                    break
            ari(base, auth, "POST", "bridges/probe-bridge/addChannel", {"channel": "probe-callee,probe-media"})
            rec.note(dir="ari", kind="bridged")
            await script(ws, rec)
            await asyncio.wait_for(r, 10)
        try:
            ari(base, auth, "DELETE", "bridges/probe-bridge")
        except Exception:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int)
    ap.add_argument("--ari")
    ap.add_argument("--auth", default="voxbridge:voxbridge")
    ap.add_argument("--endpoint", default="Local/caller@probe")
    ap.add_argument("--format", default="slin16")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rec = Recorder(a.out)
    if a.listen:
        asyncio.run(run_listen(a.listen, rec))
    else:
        asyncio.run(run_ari(a.ari, a.auth, a.endpoint, a.format, rec))


if __name__ == "__main__":
    main()
