"""A speech recognizer speaking Deepgram's live-streaming protocol, offline.

For tests/transcribe.rs: PocketSphinx (PyPI `pocketsphinx`, whose wheel ships
an English model) behind a WebSocket server that speaks the protocol
voxbridge's transcription client speaks: the query names `encoding`
(linear16), `sample_rate`, `channels` and `language`; binary messages are
audio; `{"type":"CloseStream"}` ends the stream. The server cuts the audio
into utterances by energy (speech above a floor, ended by 300 ms of quiet),
decodes each with a sentence grammar (the sentences given on the command
line: PocketSphinx's open vocabulary gets most espeak-ng words wrong), and
answers a final `Results` message per utterance with its `start` and
`duration` in seconds of the stream, then `Metadata` and a close on
`CloseStream`.

    python stt_server.py --key KEY --sentence "..." [--sentence "..."]

prints `PORT <n>` once it listens on 127.0.0.1; a request without
`Authorization: Token KEY` is refused with 401. Each stream's outcome is
printed as one JSON line (`{"stream": ..., "rate": ..., "results": [...]}`)
when it closes.
"""

import argparse
import asyncio
import audioop  # deprecated, still in 3.11: a resampler with no dependency
import json
import math
import os
import struct
import sys
import tempfile
from http import HTTPStatus
from urllib.parse import parse_qs, urlparse

from pocketsphinx import Decoder
from websockets.asyncio.server import serve

FRAME_MS = 20
QUIET_MS = 300  # quiet that ends an utterance
MIN_SPEECH_MS = 200
FLOOR = 300.0  # RMS of speech, int16 units


def rms(pcm):
    n = len(pcm) // 2
    if n == 0:
        return 0.0
    total = sum(v * v for v in struct.unpack(f"<{n}h", pcm[: n * 2]))
    return math.sqrt(total / n)


class Utterances:
    """Energy endpointing over 20 ms frames of 16 kHz PCM."""

    def __init__(self):
        self.buf = b""
        self.frames = 0
        self.speech = None  # (start frame, pcm so far)
        self.quiet = 0

    def push(self, pcm16k):
        """Yields (start s, duration s, pcm) for each utterance that ended."""
        self.buf += pcm16k
        size = 16000 * FRAME_MS // 1000 * 2
        while len(self.buf) >= size:
            frame, self.buf = self.buf[:size], self.buf[size:]
            loud = rms(frame) > FLOOR
            if self.speech is None:
                if loud:
                    self.speech = (self.frames, frame)
                    self.quiet = 0
            else:
                start, pcm = self.speech
                self.speech = (start, pcm + frame)
                self.quiet = 0 if loud else self.quiet + 1
                if self.quiet * FRAME_MS >= QUIET_MS:
                    done = self.finish()
                    if done:
                        yield done
            self.frames += 1

    def finish(self):
        if self.speech is None:
            return None
        start, pcm = self.speech
        self.speech = None
        length = len(pcm) // 2 * 1000 // 16000
        if length - self.quiet * FRAME_MS < MIN_SPEECH_MS:
            return None
        return start * FRAME_MS / 1000, length / 1000, pcm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", required=True)
    ap.add_argument("--sentence", action="append", required=True)
    args = ap.parse_args()
    words = [" ".join(s.lower().replace(",", " ").replace(".", " ").replace("?", " ").split()) for s in args.sentence]
    gram = tempfile.NamedTemporaryFile("w", suffix=".gram", delete=False)
    gram.write("#JSGF V1.0;\ngrammar sentences;\npublic <s> = " + " | ".join(words) + ";\n")
    gram.close()
    decoder = Decoder(samprate=16000, lm=None, jsgf=gram.name, loglevel="FATAL")

    def recognize(pcm):
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def refuse(connection, request):
        if request.headers.get("Authorization") != f"Token {args.key}":
            return connection.respond(HTTPStatus.UNAUTHORIZED, "bad key\n")
        q = parse_qs(urlparse(request.path).query)
        if q.get("encoding") != ["linear16"] or q.get("channels") != ["1"]:
            return connection.respond(HTTPStatus.BAD_REQUEST, "linear16 mono only\n")
        return None

    async def stream(ws):
        q = parse_qs(urlparse(ws.request.path).query)
        rate = int(q["sample_rate"][0])
        cut, state, results = Utterances(), None, []

        async def answer(u):
            start, duration, pcm = u
            text = recognize(pcm)
            results.append({"start": start, "duration": duration, "transcript": text})
            await ws.send(json.dumps({
                "type": "Results", "channel_index": [0, 1], "start": start, "duration": duration,
                "is_final": True, "speech_final": True,
                "channel": {"alternatives": [{"transcript": text, "confidence": 0.9}]},
            }))

        got = []
        async for msg in ws:
            if isinstance(msg, bytes):
                got.append(msg)
                pcm = msg if rate == 16000 else audioop.ratecv(msg, 2, 1, rate, 16000, state)
                if rate != 16000:
                    pcm, state = pcm
                for u in cut.push(pcm):
                    await answer(u)
            elif json.loads(msg).get("type") == "CloseStream":
                last = cut.finish()
                if last:
                    await answer(last)
                await ws.send(json.dumps({"type": "Metadata", "request_id": "offline", "duration": cut.frames * FRAME_MS / 1000, "channels": 1}))
                break
        if os.environ.get("STT_SAVE"):
            with open(os.path.join(os.environ["STT_SAVE"], f"{rate}-{id(ws)}.raw"), "wb") as f:
                f.write(b"".join(got))
        print(json.dumps({"stream": ws.request.path, "rate": rate, "results": results}), flush=True)
        await ws.close()

    async def run():
        async with serve(stream, "127.0.0.1", 0, process_request=refuse) as server:
            port = server.sockets[0].getsockname()[1]
            print(f"PORT {port}", flush=True)
            await asyncio.Future()

    try:
        asyncio.run(run())
    finally:
        os.unlink(gram.name)


if __name__ == "__main__":
    sys.exit(main())
