#!/usr/bin/env bash
# Times `voxbridge transcode` against ffmpeg and sox on one hour of speech-like
# audio, in one run, for the two bridge jobs:
#   up:   8 kHz u-law  -> 16 kHz PCM16
#   down: 24 kHz PCM16 -> 8 kHz u-law
#   tts:  22.05 kHz PCM16 -> 8 kHz u-law (what most TTS engines speak, to a phone)
# Peers at their default (high) quality: ffmpeg's default swresample, sox's
# default `rate` without dither (-D). Their fastest low-quality settings are
# printed alongside for honesty (sox `rate -q`, ffmpeg swr filter_size=4).
# Each command runs REPS times (default 3); the best wall time counts.
# Ends with: RESULT up_vs_ffmpeg=.. up_vs_sox=.. down_vs_ffmpeg=.. down_vs_sox=.. tts_vs_ffmpeg=.. tts_vs_sox=..
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-3600}
REPS=${REPS:-3}
work=${WORK:-/dev/shm/voxbridge-compare}
mkdir -p "$work"
cargo build --release --quiet --bin voxbridge
vb=target/release/voxbridge
read -r ul24 sln24 < <(benches/make_speech.sh "$work" "$SECS" | tail -1 | tr ' ' '\n' | paste -sd' ')
ul=$ul24
sln22=$work/speech_${SECS}s_22k.raw
[ -s "$sln22" ] || sox -q -t raw -r 24000 -c 1 -b 16 -e signed "$sln24" -r 22050 -t raw "$sln22"

best() { # best wall seconds of REPS runs of "$@"
  local best=999999 t0 t1 d
  for _ in $(seq "$REPS"); do
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; exit 1; }
    t1=$(date +%s.%N)
    d=$(echo "$t1 - $t0" | bc -l)
    if (( $(echo "$d < $best" | bc -l) )); then best=$d; fi
  done
  printf '%.4f' "$best"
}

o="$work/out"
up_vb=$(best "$vb" transcode --quiet "$ul" "$o.sln16")
up_ff=$(best ffmpeg -nostdin -v error -y -f mulaw -ar 8000 -ac 1 -i "$ul" -ar 16000 -f s16le "$o.ff16")
up_sox=$(best sox -D -t ul -r 8000 -c 1 "$ul" -t raw -e signed -b 16 -r 16000 "$o.sox16" rate)
up_sox_lq=$(best sox -D -t ul -r 8000 -c 1 "$ul" -t raw -e signed -b 16 -r 16000 "$o.soxq16" rate -q)
up_ff_lq=$(best ffmpeg -nostdin -v error -y -f mulaw -ar 8000 -ac 1 -i "$ul" -af aresample=16000:filter_size=4 -f s16le "$o.fflq16")

down_vb=$(best "$vb" transcode --quiet "$sln24" "$o.ul")
down_ff=$(best ffmpeg -nostdin -v error -y -f s16le -ar 24000 -ac 1 -i "$sln24" -ar 8000 -f mulaw "$o.ff.ul")
down_sox=$(best sox -D -t raw -e signed -b 16 -r 24000 -c 1 "$sln24" -t ul -r 8000 "$o.sox.ul" rate)
down_sox_lq=$(best sox -D -t raw -e signed -b 16 -r 24000 -c 1 "$sln24" -t ul -r 8000 "$o.soxq.ul" rate -q)
down_ff_lq=$(best ffmpeg -nostdin -v error -y -f s16le -ar 24000 -ac 1 -i "$sln24" -af aresample=8000:filter_size=4 -f mulaw "$o.fflq.ul")

tts_vb=$(best "$vb" transcode --quiet --from pcm16 --from-rate 22050 "$sln22" "$o.tts.ul")
tts_ff=$(best ffmpeg -nostdin -v error -y -f s16le -ar 22050 -ac 1 -i "$sln22" -ar 8000 -f mulaw "$o.ff.tts.ul")
tts_sox=$(best sox -D -t raw -e signed -b 16 -r 22050 -c 1 "$sln22" -t ul -r 8000 "$o.sox.tts.ul" rate)

ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
rt() { printf '%.0f' "$(echo "$SECS / $1" | bc -l)"; }
echo "audio: $SECS s of speech-like audio (espeak-ng, looped); best of $REPS runs; machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf '%-28s %10s %12s\n' job seconds x_realtime
for row in "up voxbridge:$up_vb" "up ffmpeg (default):$up_ff" "up sox rate (default):$up_sox" "up sox rate -q (LQ):$up_sox_lq" "up ffmpeg filter_size=4 (LQ):$up_ff_lq" \
           "down voxbridge:$down_vb" "down ffmpeg (default):$down_ff" "down sox rate (default):$down_sox" "down sox rate -q (LQ):$down_sox_lq" "down ffmpeg filter_size=4 (LQ):$down_ff_lq" \
           "tts voxbridge:$tts_vb" "tts ffmpeg (default):$tts_ff" "tts sox rate (default):$tts_sox"; do
  printf '%-28s %10s %12s\n' "${row%%:*}" "${row##*:}" "$(rt "${row##*:}")"
done
echo "vs low-quality peers: up_vs_sox_lq=$(ratio "$up_sox_lq" "$up_vb") down_vs_sox_lq=$(ratio "$down_sox_lq" "$down_vb") up_vs_ffmpeg_lq=$(ratio "$up_ff_lq" "$up_vb") down_vs_ffmpeg_lq=$(ratio "$down_ff_lq" "$down_vb")"
echo "RESULT up_vs_ffmpeg=$(ratio "$up_ff" "$up_vb") up_vs_sox=$(ratio "$up_sox" "$up_vb") down_vs_ffmpeg=$(ratio "$down_ff" "$down_vb") down_vs_sox=$(ratio "$down_sox" "$down_vb") tts_vs_ffmpeg=$(ratio "$tts_ff" "$tts_vb") tts_vs_sox=$(ratio "$tts_sox" "$tts_vb")"
