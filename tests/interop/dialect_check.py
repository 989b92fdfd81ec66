"""Checks voxbridge's provider dialects against pipecat's own code.

Run by tests/pipecat_interop.rs as `python dialect_check.py DIR`. DIR holds
dialects.json: per case, what voxbridge's bot codec wrote (the opening
messages, one media message, one DTMF message) and what the bot must hear.
For each case (Vonage's audio is binary: its media arrives as hex and its
opening is checked by the serializer, pipecat's runner does not know it):
  1. pipecat's runner (`parse_telephony_websocket`, as a pipecat bot reads
     its first messages) must detect the dialect and read the call and
     stream ids from voxbridge's opening;
  2. the dialect's pipecat serializer, built from that parse as pipecat's
     runner builds it (with the encoding and rate voxbridge announced),
     must decode the media message to exactly the PCM expected and the
     DTMF message to the key sent;
  3. that serializer's own audio and interruption messages are written to
     DIR/pipecat.json for the Rust side to decode.
Exits non-zero with a message on the first mismatch.
"""

import asyncio
import json
import os
import sys
from types import SimpleNamespace

from pipecat.frames.frames import (
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputTransportMessageUrgentFrame,
)
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.exotel import ExotelFrameSerializer
from pipecat.serializers.genesys import GenesysAudioHookSerializer
from pipecat.serializers.plivo import PlivoFrameSerializer
from pipecat.serializers.telnyx import TelnyxFrameSerializer
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.serializers.vonage import VonageFrameSerializer


def check(cond, what):
    if not cond:
        print(f"MISMATCH: {what}", file=sys.stderr)
        sys.exit(1)


class Socket:
    """What parse_telephony_websocket reads: a FastAPI WebSocket's iter_text()."""

    def __init__(self, texts):
        self._texts = texts

    async def iter_text(self):
        for t in self._texts:
            yield t


def serializer(dialect, call, encoding, rate):
    if dialect == "twilio":
        return TwilioFrameSerializer(
            stream_sid=call["stream_id"],
            call_sid=call["call_id"],
            params=TwilioFrameSerializer.InputParams(twilio_sample_rate=rate, sample_rate=rate, auto_hang_up=False),
        )
    if dialect == "telnyx":
        wire = call["outbound_encoding"]
        return TelnyxFrameSerializer(
            stream_id=call["stream_id"],
            call_control_id=call["call_id"],
            outbound_encoding=wire,
            # pipecat's runner sends PCMU; a bot on an L16 or PCMA stream
            # sends what it receives.
            inbound_encoding=wire,
            params=TelnyxFrameSerializer.InputParams(telnyx_sample_rate=rate, sample_rate=rate, auto_hang_up=False),
        )
    if dialect == "plivo":
        return PlivoFrameSerializer(
            stream_id=call["stream_id"],
            call_id=call["call_id"],
            params=PlivoFrameSerializer.InputParams(plivo_sample_rate=rate, sample_rate=rate, auto_hang_up=False),
        )
    if dialect == "exotel":
        return ExotelFrameSerializer(
            stream_sid=call["stream_id"],
            call_sid=call["call_id"],
            params=ExotelFrameSerializer.InputParams(exotel_sample_rate=rate, sample_rate=rate),
        )
    if dialect == "vonage":
        return VonageFrameSerializer(VonageFrameSerializer.InputParams(vonage_sample_rate=rate, sample_rate=rate))
    if dialect == "genesys":
        return GenesysAudioHookSerializer(GenesysAudioHookSerializer.InputParams(genesys_sample_rate=rate, sample_rate=rate))
    raise ValueError(dialect)


async def vonage_opening(name, case, ser):
    check(len(case["opening"]) == 1, f"{name}: one websocket:connected")
    opening = json.loads(case["opening"][0])
    check(opening.get("event") == "websocket:connected", f"{name}: {opening!r}")
    check(opening.get("content-type") == f"audio/l16;rate={case['rate']}", f"{name}: {opening!r}")
    check(opening.get("call_id") == case["call_id"], f"{name}: call id in {opening!r}")
    check(await ser.deserialize(case["opening"][0]) is None, f"{name}: the serializer takes the opening")


async def one(name, case):
    dialect, rate = case["dialect"], case["rate"]
    binary = "media_hex" in case
    media_in = bytes.fromhex(case["media_hex"]) if binary else case["media"]
    extra = {}
    if dialect == "vonage":
        ser = serializer(dialect, None, case["encoding"], rate)
        await ser.setup(SimpleNamespace(audio_in_sample_rate=rate))
        await vonage_opening(name, case, ser)
    elif dialect == "genesys":
        ser = serializer(dialect, None, case["encoding"], rate)
        await ser.setup(SimpleNamespace(audio_in_sample_rate=rate))
        check(len(case["opening"]) == 1, f"{name}: one open")
        f = await ser.deserialize(case["opening"][0])
        check(isinstance(f, OutputTransportMessageUrgentFrame), f"{name}: open -> {f!r}")
        check(f.message.get("type") == "opened", f"{name}: pipecat answered {f.message!r}")
        check(ser.conversation_id == case["call_id"], f"{name}: conversation {ser.conversation_id!r}")
        check(ser.participant.get("ani") == "+15550100", f"{name}: participant {ser.participant!r}")
        check(ser.is_open, f"{name}: the session is open")
        extra["opened"] = json.dumps(f.message)
    else:
        # The media message goes last: pipecat reads two messages, and Plivo
        # opens with only one.
        kind, call = await parse_telephony_websocket(Socket(case["opening"] + [case["media"]]))
        check(kind == dialect, f"{name}: pipecat's runner took voxbridge's opening for {kind!r}")
        check(call["call_id"] == case["call_id"], f"{name}: call id {call['call_id']!r}")
        check(call["stream_id"] == case["stream_id"], f"{name}: stream id {call['stream_id']!r}")
        if dialect in ("telnyx", "exotel"):
            check(call["from"] == "+15550100" and call["to"] == "+15550199", f"{name}: from/to {call!r}")
        ser = serializer(dialect, call, case["encoding"], rate)
        await ser.setup(SimpleNamespace(audio_in_sample_rate=rate))

    f = await ser.deserialize(media_in)
    check(isinstance(f, InputAudioRawFrame), f"{name}: media -> {type(f)}")
    check(f.sample_rate == rate, f"{name}: media at {f.sample_rate} Hz")
    check(f.audio == bytes.fromhex(case["pcm_hex"]), f"{name}: media decodes to the PCM voxbridge sent")
    f = await ser.deserialize(case["dtmf"])
    check(isinstance(f, InputDTMFFrame) and f.button.value == "7", f"{name}: dtmf -> {f!r}")

    pcm = bytes.fromhex(case["pcm_hex"])
    media = await ser.serialize(OutputAudioRawFrame(audio=pcm, sample_rate=rate, num_channels=1))
    clear = await ser.serialize(InterruptionFrame())
    check(isinstance(media, bytes if binary else str), f"{name}: pipecat wrote audio as {type(media)}")
    check(isinstance(clear, str), f"{name}: pipecat wrote {clear!r}")
    if binary:
        return {"media_hex": media.hex(), "clear": clear, **extra}
    return {"media": media, "clear": clear, **extra}


async def main(d):
    with open(os.path.join(d, "dialects.json")) as f:
        cases = json.load(f)
    answers = {name: await one(name, case) for name, case in cases.items()}
    with open(os.path.join(d, "pipecat.json"), "w") as f:
        json.dump(answers, f)
    print(f"pipecat dialects: {len(answers)} cases passed")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
