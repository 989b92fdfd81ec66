"""Checks voxbridge's wire formats against pipecat's own serializers.

Run by tests/pipecat_interop.rs as `python pipecat_check.py DIR`:
  1. decodes the frames voxbridge wrote into DIR (vb_*.bin, vb_twilio_*.json)
     with pipecat's ProtobufFrameSerializer / TwilioFrameSerializer and its
     generated frames_pb2, asserting every field;
  2. writes frames pipecat serializes into DIR (pc_*.bin, pc_twilio_*.json)
     for the Rust side to decode and assert.
Exits non-zero with a message on the first mismatch.
"""

import asyncio
import json
import os
import sys

import pipecat.frames.protobufs.frames_pb2 as pb
from pipecat.audio.utils import pcm_to_wav
from pipecat.frames.frames import (
    InputAudioRawFrame,
    InputDTMFFrame,
    InputTransportMessageFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    TextFrame,
    TranscriptionFrame,
)
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.serializers.twilio import TwilioFrameSerializer


def check(cond, what):
    if not cond:
        print(f"MISMATCH: {what}", file=sys.stderr)
        sys.exit(1)


def read(d, name, mode="rb"):
    with open(os.path.join(d, name), mode) as f:
        return f.read()


def write(d, name, data):
    with open(os.path.join(d, name), "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


async def main(d):
    ser = ProtobufFrameSerializer()
    expect = json.loads(read(d, "vb_expect.json", "r"))

    # 1. voxbridge -> pipecat (protobuf)
    f = await ser.deserialize(read(d, "vb_text.bin"))
    check(isinstance(f, TextFrame) and f.text == expect["text"], f"text frame {f!r}")
    f = await ser.deserialize(read(d, "vb_audio.bin"))
    check(isinstance(f, InputAudioRawFrame), f"audio frame type {type(f)}")
    check(f.sample_rate == 16000 and f.num_channels == 1, f"audio rate/channels {f.sample_rate}/{f.num_channels}")
    check(f.audio == bytes.fromhex(expect["audio_hex"]), "audio bytes")
    f = await ser.deserialize(read(d, "vb_transcription.bin"))
    check(isinstance(f, TranscriptionFrame) and f.text == expect["transcript"] and f.user_id == "caller", f"transcription {f!r}")
    f = await ser.deserialize(read(d, "vb_message.bin"))
    check(isinstance(f, InputTransportMessageFrame) and f.message == expect["message"], f"message {f!r}")
    f = await ser.deserialize(read(d, "vb_interruption.bin"))
    check(isinstance(f, InterruptionFrame), f"interruption {f!r}")
    raw = pb.Frame.FromString(read(d, "vb_interruption.bin"))
    check(raw.WhichOneof("frame") == "interruption", "oneof field 5 is interruption")

    # 2. pipecat -> voxbridge (protobuf)
    pcm = bytes.fromhex(expect["audio_hex"])
    write(d, "pc_audio.bin", await ser.serialize(OutputAudioRawFrame(audio=pcm, sample_rate=16000, num_channels=1)))
    # pipecat's websocket transport with add_wav_header=True wraps audio like this.
    wav = pcm_to_wav(pcm, 24000, 1)
    write(d, "pc_audio_wav.bin", await ser.serialize(OutputAudioRawFrame(audio=wav, sample_rate=24000, num_channels=1)))
    write(d, "pc_text.bin", await ser.serialize(TextFrame(text="hello from pipecat")))
    write(d, "pc_transcription.bin", await ser.serialize(TranscriptionFrame(text="I need help", user_id="u1", timestamp="2026-11-24T09:00:00Z")))
    write(d, "pc_interruption.bin", await ser.serialize(InterruptionFrame()))
    write(d, "pc_message.bin", await ser.serialize(OutputTransportMessageFrame(message={"type": "bot-tts-text", "data": {"text": "hi"}})))

    # 3. Twilio Media Streams JSON, both ways.
    tw = TwilioFrameSerializer(stream_sid="MZ1", params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
    tw._sample_rate = 8000  # normally set by the pipeline's setup(); 8 kHz keeps u-law exact
    f = await tw.deserialize(read(d, "vb_twilio_media.json", "r"))
    check(isinstance(f, InputAudioRawFrame), f"twilio media -> {type(f)}")
    check(f.audio == bytes.fromhex(expect["ulaw_pcm_hex"]), "twilio media decodes to the same PCM as voxbridge's G.711")
    f = await tw.deserialize(read(d, "vb_twilio_dtmf.json", "r"))
    check(isinstance(f, InputDTMFFrame) and f.button.value == "5", f"twilio dtmf -> {f!r}")
    out = await tw.serialize(OutputAudioRawFrame(audio=bytes.fromhex(expect["ulaw_pcm_hex"]), sample_rate=8000, num_channels=1))
    write(d, "pc_twilio_media.json", out)
    write(d, "pc_twilio_clear.json", await tw.serialize(InterruptionFrame()))
    print("pipecat interop: all checks passed")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
