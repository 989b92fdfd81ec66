"""A real pipecat bot for `voxbridge bot check`: pipecat's single-client
WebSocket server transport with the dialect's own serializer, and a
pipeline that plays back what it hears (InputAudioRawFrame in,
OutputAudioRawFrame out, paced by pipecat's output transport).

Run by tests/pipecat_interop.rs as `python pipecat_echo_bot.py DIALECT RATE`
(DIALECT: pipecat, twilio, telnyx, plivo, exotel, vonage or genesys; RATE: the pipeline's
audio rate). Prints `LISTEN <port>` once it listens; serves one call, then
exits.
"""

import asyncio
import socket
import sys

from pipecat.frames.frames import InputAudioRawFrame, OutputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.exotel import ExotelFrameSerializer
from pipecat.serializers.genesys import GenesysAudioHookSerializer
from pipecat.serializers.plivo import PlivoFrameSerializer
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.serializers.telnyx import TelnyxFrameSerializer
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.serializers.vonage import VonageFrameSerializer
from pipecat.transports.websocket.server import (
    SingleClientWebsocketServerParams,
    SingleClientWebsocketServerTransport,
)


class Echo(FrameProcessor):
    async def process_frame(self, frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(
                OutputAudioRawFrame(audio=frame.audio, sample_rate=frame.sample_rate, num_channels=1)
            )
        else:
            await self.push_frame(frame, direction)


def serializer(dialect, rate):
    # The stream and call ids are only written back, never checked by voxbridge.
    if dialect == "pipecat":
        return ProtobufFrameSerializer()
    if dialect == "twilio":
        return TwilioFrameSerializer("S", params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
    if dialect == "telnyx":
        return TelnyxFrameSerializer(
            "S", outbound_encoding="PCMU", inbound_encoding="PCMU",
            params=TelnyxFrameSerializer.InputParams(auto_hang_up=False),
        )
    if dialect == "plivo":
        return PlivoFrameSerializer("S", params=PlivoFrameSerializer.InputParams(auto_hang_up=False))
    if dialect == "exotel":
        return ExotelFrameSerializer("S", params=ExotelFrameSerializer.InputParams(exotel_sample_rate=rate))
    if dialect == "vonage":
        return VonageFrameSerializer(VonageFrameSerializer.InputParams(vonage_sample_rate=rate))
    if dialect == "genesys":
        return GenesysAudioHookSerializer()
    raise ValueError(dialect)


async def main(dialect, rate):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    transport = SingleClientWebsocketServerTransport(
        params=SingleClientWebsocketServerParams(
            serializer=serializer(dialect, rate),
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
        ),
        host="127.0.0.1",
        port=port,
    )
    task = PipelineTask(
        Pipeline([transport.input(), Echo(), transport.output()]),
        params=PipelineParams(audio_in_sample_rate=rate, audio_out_sample_rate=rate),
    )

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):
        await task.cancel()

    async def announce():
        # The server listens once the pipeline has started.
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                await asyncio.sleep(0.02)
        print(f"LISTEN {port}", flush=True)

    await asyncio.gather(PipelineRunner(handle_sigint=False).run(task), announce())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
