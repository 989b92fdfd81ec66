#!/usr/bin/env bash
# Audio quality end to end (issue 26): a fixed set of espeak-ng sentences
# (benches/quality/sentences.txt) goes through `voxbridge serve` as callers
# send it (AudioSocket slin; RTP PCMU, PCMA, G.722, Opus encoded by ffmpeg;
# RTP PCMU with 5 % loss and with 40 ms of jitter) and is taken at a bot;
# each is scored against the clean original with ITU-T P.862 PESQ
# (narrowband for the 8 kHz paths, wideband for the 16 kHz ones) and STOI,
# beside ffmpeg's own round trip of each codec (benches/quality/quality.py
# says how).
#
#   benches/quality.sh              # all sentences (~3 min on a 2-core VM once built)
#   LIMIT=5 benches/quality.sh      # the first five
#   KEEP=/tmp/q benches/quality.sh  # also keep what the bot got (raw s16le per path and sentence)
#   BIN=/path/to/voxbridge benches/quality.sh   # score another build of the daemon
#
# Needs ffmpeg, sox and espeak-ng (scripts/setup.sh installs them); builds
# its own Python venv with pesq and pystoi under ~/.cache/voxbridge. Ends with
# RESULT sentences=<n> pesq_audiosocket=.. pesq_pcmu=.. pesq_pcma=..
#   pesq_g722=.. pesq_opus=.. pesq_loss5=.. pesq_loss5_silence=..
#   pesq_jitter40=.. ffmpeg_pcmu=.. ffmpeg_pcma=.. ffmpeg_g722=..
#   ffmpeg_opus=.. stoi_min=..
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in ffmpeg sox espeak-ng; do
  command -v "$tool" >/dev/null || { echo "quality.sh needs $tool: run scripts/setup.sh"; exit 1; }
done
cache=${XDG_CACHE_HOME:-$HOME/.cache}/voxbridge
venv=$cache/quality-venv
stamp=$(sha256sum benches/quality/requirements.txt | cut -c1-16)
if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "quality: building $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r benches/quality/requirements.txt
  echo "$stamp" > "$venv/.stamp"
fi
if [ -n "${BIN:-}" ]; then
  bin=$BIN   # another build of the daemon, for before/after comparisons
else
  cargo build --release --locked --quiet --bin voxbridge
  bin=target/release/voxbridge
fi
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api=127.0.0.1:$(free_port)
audiosocket=127.0.0.1:$(free_port)
bot=127.0.0.1:$(free_port)
tmp=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
VOXBRIDGE_MEDIA_API_TOKEN=quality-bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
export VOXBRIDGE_MEDIA_API_TOKEN
# Two routes to the same bot: 8 kHz for the narrowband paths (scored as
# such, no resampling on the way), 16 kHz for G.722 and Opus.
cat >"$tmp/voxbridge.toml" <<EOF
metrics_listen = "$api"
[[audiosocket]]
listen = "$audiosocket"
route = "nb"
[routes.nb]
url = "ws://$bot"
sample_rate = 8000
[routes.wb]
url = "ws://$bot"
sample_rate = 16000
[rtp]
route = "nb"
[control]
enabled = false
EOF
RUST_LOG=warn "$bin" serve --config "$tmp/voxbridge.toml" >"$tmp/serve.out" 2>"$tmp/serve.err" &
pid=$!
for _ in $(seq 100); do grep -q "voxbridge serve:" "$tmp/serve.out" 2>/dev/null && break; sleep 0.1; done
grep -q "voxbridge serve:" "$tmp/serve.out" || { cat "$tmp/serve.err"; exit 1; }
"$venv/bin/python" benches/quality/quality.py --sentences benches/quality/sentences.txt \
  --work "$cache/quality-corpus-$(cat benches/quality/sentences.txt benches/quality/quality.py | sha256sum | cut -c1-12)" --api "$api" --audiosocket "$audiosocket" --bot "$bot" \
  --limit "${LIMIT:-0}" ${KEEP:+--keep "$KEEP"}
if grep -qiE 'panic|error' "$tmp/serve.err"; then
  echo "quality: the daemon logged errors:"; grep -iE 'panic|error' "$tmp/serve.err" | head -5
fi
