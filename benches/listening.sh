#!/usr/bin/env bash
# Issue 28's listening benchmark: builds the labelled set
# (benches/listening/make_set.sh: espeak-ng speech with pauses; white, pink
# and babble noise from sox and espeak-ng) and scores the voice activity
# detectors on it (codecs/examples/listening.rs): per condition precision,
# recall and F1 per 20 ms frame, onset latency (first labelled 10 ms of an
# utterance to `speech started`), utterances missed, false starts, and CPU
# per second of one stream at 8 kHz on this core.
#
#   benches/listening.sh [SETDIR]      (default target/listening-set)
#
# Ends with one line:
#   RESULT vad_f1=<..> vad_latency_ms=<..> ns_snr_gain_db=<..> false_bargein_pct=<..>
#          missed_bargein_pct=<..> amd_accuracy_pct=<..> amd_p90_ms=<..> cpu_us_per_call_s_all_on=<..>
# vad_f1: the shipped detector's F1 at 10 dB SNR, averaged over the three
# noises; vad_latency_ms: its median onset latency there;
# false_bargein_pct / missed_bargein_pct: with the bot's echo at -10 dB
# (averaged over 30-300 ms of delay), the caller at the bot's level;
# amd_accuracy_pct / amd_p90_ms: answering-machine detection with
# Asterisk's default settings; ns_snr_gain_db: the bridge's noise
# suppressor (codecs/src/denoise.rs) on the caller's audio at 10 dB SNR,
# averaged over the noises (RNNoise's, measured beside it and not shipped,
# is rnnoise_snr_gain_db above); its intelligibility (STOI, pystoi, in the
# venv benches/quality.sh uses) is printed before the last line as
# `RESULT ns_stoi_noisy=.. ns_stoi_spectral=.. ns_stoi_rnnoise=..`;
# cpu_us_per_call_s_all_on: what the bridge has of issue 28, all on for
# one call (noise suppression at the caller's 8 kHz).
set -euo pipefail
cd "$(dirname "$0")/.."
set_dir=$(benches/listening/make_set.sh "${1:-target/listening-set}")
cargo build --release --locked --quiet -p voxbridge-codecs --no-default-features --example listening
wavs=$(mktemp -d)
trap 'rm -rf "$wavs"' EXIT
out=$(LISTEN_WAVS=$wavs target/release/examples/listening "$set_dir")
echo "$out"
line=$(grep '^RESULT ' <<<"$out")
# Intelligibility of the filtered audio: STOI in benches/quality.sh's venv.
venv=${XDG_CACHE_HOME:-$HOME/.cache}/voxbridge/quality-venv
stamp=$(sha256sum benches/quality/requirements.txt | cut -c1-16)
if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r benches/quality/requirements.txt
  echo "$stamp" > "$venv/.stamp"
fi
"$venv/bin/python" benches/listening/stoi.py "$wavs"
get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
# Everything on at once: noise suppression on the caller's 8 kHz audio,
# voice activity on both directions (the caller's at a 16 kHz bot rate
# with its echo gate, the bot's at the caller's 8 kHz) and
# answering-machine detection (with its beep detector) on the caller's side.
all_on=$(awk -v a="$(get vad_cpu_us_per_call_s)" -v b="$(get vad_cpu_16k_us_per_call_s)" -v c="$(get amd_cpu_16k_us_per_call_s)" -v d="$(get ns_cpu_us_per_call_s)" 'BEGIN { printf "%.1f", a + b + c + d }')
echo "RESULT vad_f1=$(get vad_f1) vad_latency_ms=$(get vad_latency_ms) ns_snr_gain_db=$(get ns_snr_gain_db) false_bargein_pct=$(get false_bargein_pct) missed_bargein_pct=$(get missed_bargein_pct) amd_accuracy_pct=$(get amd_accuracy_pct) amd_p90_ms=$(get amd_p90_ms) cpu_us_per_call_s_all_on=$all_on"
