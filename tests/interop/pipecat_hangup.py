"""A pipecat bot ends its call through voxbridge's provider-compatible API.

Run by tests/control_e2e.rs as `python pipecat_hangup.py API_URL ACCOUNT KEY N`.
Listens on a free loopback port (prints `LISTEN <port>`) and, for each of N
bot links voxbridge opens:
  1. reads voxbridge's opening with pipecat's runner
     (`parse_telephony_websocket`), which tells the provider;
  2. builds that provider's pipecat serializer as pipecat's runner does,
     with `auto_hang_up` on and the tenant's account id and access key as
     the provider credentials;
  3. waits for caller audio, then ends the call as a pipecat pipeline does
     when it ends: it serializes an EndFrame, on which the serializer makes
     its own hang-up request.
Twilio's serializer is pointed at voxbridge with `base_url`. Telnyx's and
Plivo's hard-code their provider's host, so those requests are redirected to
voxbridge by host only: method, path, headers and body are pipecat's.
A Genesys AudioHook link (which pipecat's runner does not know) is told by
its `open`: pipecat's GenesysAudioHookSerializer answers it `opened` and, on
the EndFrame, writes AudioHook's `disconnect`, sent over the link (Genesys
has no REST hang-up). Prints `HUNG <provider> <method> <path> <status>` per
request (`HUNG genesys disconnect - -` for that one), and exits non-zero
when a link does not close after the hang-up.
"""

import asyncio
import json
import sys

import aiohttp
import websockets
from pipecat.frames.frames import EndFrame
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.genesys import GenesysAudioHookSerializer
from pipecat.serializers.plivo import PlivoFrameSerializer
from pipecat.serializers.telnyx import TelnyxFrameSerializer
from pipecat.serializers.twilio import TwilioFrameSerializer

API, ACCOUNT, KEY, CALLS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
PROVIDER_HOSTS = ("https://api.telnyx.com", "https://api.plivo.com")
requests = []

_request = aiohttp.ClientSession._request


async def _to_voxbridge(self, method, url, *args, **kwargs):
    url = str(url)
    for host in PROVIDER_HOSTS:
        if url.startswith(host):
            url = API + url[len(host):]
    resp = await _request(self, method, url, *args, **kwargs)
    requests.append((method, url[len(API):], resp.status))
    return resp


aiohttp.ClientSession._request = _to_voxbridge


class Texts:
    """What parse_telephony_websocket reads: a FastAPI WebSocket's iter_text()."""

    def __init__(self, conn, first):
        self._conn = conn
        self._first = first

    async def iter_text(self):
        yield self._first
        while True:
            yield await self._conn.recv()


def serializer(kind, call):
    if kind == "twilio":
        return TwilioFrameSerializer(
            stream_sid=call["stream_id"], call_sid=call["call_id"],
            account_sid=ACCOUNT, auth_token=KEY, base_url=API,
        )
    if kind == "telnyx":
        return TelnyxFrameSerializer(
            stream_id=call["stream_id"], call_control_id=call["call_id"],
            outbound_encoding=call["outbound_encoding"], inbound_encoding="PCMU", api_key=KEY,
        )
    if kind == "plivo":
        return PlivoFrameSerializer(
            stream_id=call["stream_id"], call_id=call["call_id"], auth_id=ACCOUNT, auth_token=KEY,
        )
    raise ValueError(f"no hang-up for {kind}")


async def main():
    done = asyncio.Queue()

    async def genesys(conn, first):
        ser = GenesysAudioHookSerializer()
        opened = await ser.deserialize(first)
        await conn.send(json.dumps(opened.message))
        # Caller audio flows (binary PCMU), then the pipeline ends.
        while not isinstance(await conn.recv(), bytes):
            pass
        await conn.send(await ser.serialize(EndFrame()))
        print("HUNG genesys disconnect - -", flush=True)

    async def link(conn):
        first = await conn.recv()
        if json.loads(first).get("version") == "2":
            await genesys(conn, first)
        else:
            kind, call = await parse_telephony_websocket(Texts(conn, first))
            ser = serializer(kind, call)
            # Caller audio flows (pipecat read a media message as the opening's
            # second message where the provider sends only one).
            while '"media"' not in await conn.recv():
                pass
            before = len(requests)
            await ser.serialize(EndFrame())
            method, path, status = requests[before] if len(requests) > before else ("-", "-", 0)
            print(f"HUNG {kind} {method} {path} {status}", flush=True)
        # The call ends: voxbridge closes the link.
        try:
            await asyncio.wait_for(conn.wait_closed(), 10)
            await done.put(True)
        except asyncio.TimeoutError:
            print(f"LINK OPEN {kind}: the call did not end", flush=True)
            await done.put(False)

    async with websockets.serve(link, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"LISTEN {port}", flush=True)
        ok = [await done.get() for _ in range(CALLS)]
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    asyncio.run(main())
