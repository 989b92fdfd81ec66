#!/usr/bin/env bash
# Builds the labelled listening set (issue 28) from espeak-ng and sox, so
# anyone can rebuild it: every sentence of benches/quality/sentences.txt
# spoken by one of eight voices at one of five rates, trimmed to the
# speech (8 kHz mono PCM16 WAV: telephone audio), and three noises of two
# minutes: white, pink (sox's synth) and babble (six other voices, each reading
# the sentences backwards from its own starting point without pauses, mixed). The evaluator
# (`cargo run --release -p voxbridge-codecs --example listening`) lays the
# utterances out with pauses, mixes the noises in at a chosen SNR and
# labels each 10 ms from the clean track. For answering-machine detection
# it also speaks benches/listening/amd_human.txt and amd_machine.txt in two
# voices each (amd/human_*.wav, amd/machine_*.wav).
# Usage: benches/listening/make_set.sh [OUTDIR]   (default target/listening-set)
# Prints OUTDIR. Rebuilds only what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/listening-set}
mkdir -p "$out/speech" "$out/noise"
voices=(en-us en-gb en-gb-scotland en-us+f3 en-gb+f2 en-029 en-us+m4 en-gb-x-rp+f4)
rates=(140 155 165 175 190)
mapfile -t sentences < <(grep -v '^#' benches/quality/sentences.txt | sed '/^\s*$/d')
# Trim leading and trailing silence (below 0.3 % of full scale).
trim=(silence 1 0.005 0.3% reverse silence 1 0.005 0.3% reverse)
i=0
for s in "${sentences[@]}"; do
  f=$(printf '%s/speech/%03d.wav' "$out" "$i")
  if [ ! -s "$f" ]; then
    v=${voices[$(( i % ${#voices[@]} ))]}
    r=${rates[$(( (i + i / ${#voices[@]}) % ${#rates[@]} ))]}
    espeak-ng -v "$v" -s "$r" -w "$out/raw.wav" "$s"
    sox -q -v 0.7 "$out/raw.wav" -r 8000 -c 1 -b 16 -e signed "$f" "${trim[@]}"
  fi
  i=$((i + 1))
done
rm -f "$out/raw.wav"
[ -s "$out/noise/white.wav" ] || sox -q -n -r 8000 -c 1 -b 16 -e signed "$out/noise/white.wav" synth 120 whitenoise vol 0.25
[ -s "$out/noise/pink.wav" ] || sox -q -n -r 8000 -c 1 -b 16 -e signed "$out/noise/pink.wav" synth 120 pinknoise vol 0.25
if [ ! -s "$out/noise/babble.wav" ]; then
  babble_voices=(en-gb-x-gbclan en-us+f5 en-gb-x-gbcwmd en-us+m2 en-gb-scotland+f4 en-029+m6)
  streams=()
  for k in "${!babble_voices[@]}"; do
    # Each talker reads all the sentences backwards, from its own starting
    # point, without pauses (sox drops every gap over 20 ms), so that the
    # babble never falls silent.
    text=$(printf '%s\n' "${sentences[@]}" | tac | awk -v k="$k" '{ l[NR] = $0 } END { for (j = 0; j < NR; j++) print l[(j + k * 9) % NR + 1] }' | tr '\n' ' ')
    espeak-ng -v "${babble_voices[$k]}" -s 170 -w "$out/talker$k.wav" "$text"
    sox -q -v 0.7 "$out/talker$k.wav" -r 8000 -c 1 -b 16 -e signed "$out/talker$k.8k.wav" \
      silence 1 0.02 1% -1 0.02 1% trim 0 120
    streams+=("$out/talker$k.8k.wav")
  done
  sox -q -m "${streams[@]}" "$out/noise/babble.wav" norm -6
  rm -f "$out"/talker*.wav
fi
# Answering-machine detection: what people and voicemails say on answering.
mkdir -p "$out/amd"
for kind in human machine; do
  i=0
  while IFS= read -r line; do
    for v in 0 1; do
      f=$(printf '%s/amd/%s_%02d_%d.wav' "$out" "$kind" "$i" "$v")
      if [ ! -s "$f" ]; then
        voice=${voices[$(( (i * 2 + v) % ${#voices[@]} ))]}
        espeak-ng -v "$voice" -s "${rates[$(( (i + v) % ${#rates[@]} ))]}" -w "$out/raw.wav" "$line"
        sox -q -v 0.7 "$out/raw.wav" -r 8000 -c 1 -b 16 -e signed "$f" "${trim[@]}"
      fi
    done
    i=$((i + 1))
  done < <(grep -v '^#' "benches/listening/amd_$kind.txt" | sed '/^\s*$/d')
done
rm -f "$out/raw.wav"
echo "$out"
