"""pipecat bots end their calls through voxbridge's provider-compatible API.

Run by tests/control_e2e.rs as `python pipecat_hangup.py API_URL ACCOUNT KEY N`.
A pipecat telephony bot as pipecat's runner serves one: a FastAPI app
(uvicorn) whose WebSocket endpoint reads the provider's opening with
`parse_telephony_websocket`, builds that provider's serializer with
`auto_hang_up` on and the tenant's account id and access key as the
provider credentials, and runs a pipeline over pipecat's
FastAPIWebsocketTransport. The pipeline ends the call the way a bot's
"end call" tool does: on the first caller audio it pushes an
EndWorkerFrame upstream, the pipeline ends, the EndFrame reaches the output
transport, whose serializer makes its own hang-up request.

Twilio's serializer is pointed at voxbridge with `base_url`. Telnyx's and
Plivo's hard-code their provider's host, so those requests are redirected to
voxbridge by host only: method, path, headers and body are pipecat's.
Genesys AudioHook links (which pipecat's runner does not know) come to
`/genesys`: GenesysAudioHookSerializer answers `open` with `opened` and, on
the EndFrame, writes AudioHook's `disconnect` over the link (Genesys has no
REST hang-up).

Prints `LISTEN <port>` once it listens, then `HUNG <provider> <method> <path>
<status>` per hang-up request (`HUNG genesys disconnect - -` for AudioHook)
and `ENDED <provider>` when a pipeline has finished. Serves N links, then
exits: non-zero when a pipeline failed to end.
"""

import asyncio
import socket
import sys

import aiohttp
import uvicorn
from fastapi import FastAPI, WebSocket
from pipecat.frames.frames import EndFrame, EndWorkerFrame, InputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.genesys import GenesysAudioHookSerializer
from pipecat.serializers.plivo import PlivoFrameSerializer
from pipecat.serializers.telnyx import TelnyxFrameSerializer
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.workers.runner import WorkerRunner

API, ACCOUNT, KEY, CALLS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
PROVIDER_HOSTS = {"https://api.telnyx.com": "telnyx", "https://api.plivo.com": "plivo"}

_request = aiohttp.ClientSession._request


async def _to_voxbridge(self, method, url, *args, **kwargs):
    url = str(url)
    provider = "twilio"
    for host, name in PROVIDER_HOSTS.items():
        if url.startswith(host):
            url, provider = API + url[len(host):], name
    resp = await _request(self, method, url, *args, **kwargs)
    print(f"HUNG {provider} {method} {url[len(API):]} {resp.status}", flush=True)
    return resp


aiohttp.ClientSession._request = _to_voxbridge


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


class EndCallOnCallerAudio(FrameProcessor):
    """What a bot's "end call" tool does, on the first caller audio."""

    def __init__(self):
        super().__init__()
        self._ending = False

    async def process_frame(self, frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            if not self._ending:
                self._ending = True
                await self.push_frame(EndWorkerFrame(), FrameDirection.UPSTREAM)
        else:
            await self.push_frame(frame, direction)


app = FastAPI()
finished = asyncio.Queue()


async def run_bot(kind, websocket, ser):
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(
            serializer=ser, audio_in_enabled=True, audio_out_enabled=True, add_wav_header=False,
        ),
    )
    worker = PipelineWorker(
        Pipeline([transport.input(), EndCallOnCallerAudio(), transport.output()]),
        params=PipelineParams(audio_in_sample_rate=8000, audio_out_sample_rate=8000),
    )
    ended = []

    @worker.event_handler("on_pipeline_finished")
    async def on_finished(worker, frame):
        ended.append(isinstance(frame, EndFrame))

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
    ok = ended == [True]
    if kind == "genesys":
        print("HUNG genesys disconnect - -", flush=True)
    print(f"ENDED {kind}" if ok else f"NOT ENDED {kind}: {ended}", flush=True)
    await finished.put(ok)


@app.websocket("/ws")
async def telephony(websocket: WebSocket):
    await websocket.accept()
    kind, call = await parse_telephony_websocket(websocket)
    await run_bot(kind, websocket, serializer(kind, call))


@app.websocket("/genesys")
async def genesys(websocket: WebSocket):
    await websocket.accept()
    ser = GenesysAudioHookSerializer()
    await run_bot("genesys", websocket, ser)


async def main():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))

    async def announce_then_count():
        while not server.started:
            await asyncio.sleep(0.02)
        print(f"LISTEN {port}", flush=True)
        ok = [await finished.get() for _ in range(CALLS)]
        server.should_exit = True
        return all(ok)

    _, ok = await asyncio.gather(server.serve(), announce_then_count())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    asyncio.run(main())
