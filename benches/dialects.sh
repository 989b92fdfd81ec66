#!/usr/bin/env bash
# The conformance kit over every bot dialect (issue 25): `voxbridge bot
# check` plays voxbridge's side of a call (2 s of speech, a DTMF key, a
# barge-in over the bot's answer, the hangup) against `voxbridge bot echo`
# in each dialect, checking every message the bot sends as a call decodes
# it, and reports the time from the end of the caller's speech to the
# bot's first audio.
#
#   benches/dialects.sh
#
# Each check prints its own `RESULT protocol=<p> messages=<n>
# violations=<n> first_audio_ms=<..> bot_audio_ms=<..>`; the script ends with
# RESULT dialects=<n> violations=<n>
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet --bin voxbridge
bin=target/release/voxbridge
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" bot echo --listen "127.0.0.1:$port" >/dev/null 2>&1 &
bot=$!
trap 'kill $bot 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
dialects=0; violations=0
for p in pipecat twilio telnyx plivo exotel vonage jambonz genesys; do
  out=$("$bin" bot check "ws://127.0.0.1:$port" --protocol "$p" 2>&1 || true)
  grep -E '^(violation|RESULT)|^voxbridge:' <<<"$out" || true
  line=$(grep '^RESULT' <<<"$out" || true)
  dialects=$((dialects + 1))
  v=$(sed -n 's/.* violations=\([0-9]*\).*/\1/p' <<<"$line")
  violations=$((violations + ${v:-1}))
done
echo "RESULT dialects=$dialects violations=$violations"
