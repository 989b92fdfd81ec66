#!/usr/bin/env bash
# Makes speech-like test audio: espeak-ng speaks a paragraph, sox loops it to
# the requested length and writes an 8 kHz u-law and a 24 kHz PCM16 copy.
# Usage: benches/make_speech.sh OUTDIR SECONDS
set -euo pipefail
out=$1
secs=${2:-3600}
mkdir -p "$out"
text="Thank you for calling. Your call is important to us. Please say the reason for your call \
after the tone, or press one for billing, two for technical support, and three for anything else. \
I can help you reset your password, check the status of an order, or connect you to an agent."
if [ ! -s "$out/speech_base.wav" ]; then
  espeak-ng -s 160 -w "$out/speech_base.wav" "$text"
fi
base_secs=$(soxi -D "$out/speech_base.wav")
repeats=$(python3 -c "import math; print(max(0, math.ceil($secs / $base_secs) - 1))")
if [ ! -s "$out/speech_${secs}s_8k.ul" ] || [ ! -s "$out/speech_${secs}s_24k.sln24" ]; then
  sox -q "$out/speech_base.wav" -r 24000 -c 1 -b 16 -e signed -t raw "$out/speech_${secs}s_24k.sln24" repeat "$repeats" trim 0 "$secs"
  sox -q -t raw -r 24000 -c 1 -b 16 -e signed "$out/speech_${secs}s_24k.sln24" -r 8000 -t ul "$out/speech_${secs}s_8k.ul"
fi
echo "$out/speech_${secs}s_8k.ul $out/speech_${secs}s_24k.sln24"
