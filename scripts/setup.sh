#!/usr/bin/env bash
# Installs what building and testing voxbridge needs, skipping what is already there:
#   Debian: ffmpeg, sox, espeak-ng (real audio peers), cmake + pkg-config (libopus
#   build), libsoxr-dev + libspeexdsp-dev (C peers in benches), bc (scripts),
#   sip-tester (sipp: the SIP peer of tests/sip_trunk.rs), baresip-core
#   (a SIP phone that calls voxbridge with speech in tests/sip/baresip.rs);
#   cargo: cargo-fuzz (fuzz smoke run);
#   Python venv (~/.cache/voxbridge/interop-venv): pipecat-ai and what its
#   serializers import, for tests/pipecat_interop.rs;
#   Python venv (~/.cache/voxbridge/stt-venv): PocketSphinx (its wheel
#   ships an English model) for the speech recognizer of tests/transcribe.rs;
#   Python venv (~/.cache/voxbridge/control-venv): confluent-kafka and
#   schemathesis, independent peers for the control sidecar's tests;
#   tansu 0.6.0 (~/.cache/tansu-0.6.0), the Kafka-protocol broker the Kafka
#   tests start (see ../shared/KAFKA.md; 11-13 min to compile on 2 cores, once).
# Safe to run repeatedly; on a warm machine it finishes in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=(ffmpeg sox libsox-fmt-all espeak-ng cmake pkg-config libsoxr-dev libspeexdsp-dev bc fonts-dejavu-core curl sip-tester baresip-core redis-server)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python peers in venvs of their own, rebuilt when their requirement files change.
cache=${XDG_CACHE_HOME:-$HOME/.cache}/voxbridge
# venv NAME REQUIREMENTS [REQUIREMENTS-INSTALLED-WITHOUT-DEPENDENCIES]
venv() {
  local dir=$cache/$1 req=$2 nodeps=${3:-}
  local stamp
  stamp=$(cat "$req" ${nodeps:+"$nodeps"} | sha256sum | cut -c1-16)
  if [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "setup: building $dir"
    rm -rf "$dir"
    mkdir -p "$cache"
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check -r "$req"
    if [ -n "$nodeps" ]; then
      "$dir/bin/pip" install -q --disable-pip-version-check --no-deps -r "$nodeps"
    fi
    echo "$stamp" > "$dir/.stamp"
  fi
}
# The venvs mostly download and unpack, the cargo installs below mostly
# compile: on a new machine they run side by side.
(
  venv interop-venv tests/interop/requirements.txt tests/interop/requirements-nodeps.txt
  venv stt-venv tests/interop/stt-requirements.txt
  venv control-venv tests/interop/control-requirements.txt
) &
venvs=$!

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2 --quiet
fi

tansu_root=${XDG_CACHE_HOME:-$HOME/.cache}/tansu-0.6.0
if [ ! -x "$tansu_root/bin/tansu" ]; then
  echo "setup: installing tansu 0.6.0 (Kafka-protocol broker for the Kafka tests; long compile, once)"
  cargo install tansu --version 0.6.0 --locked --no-default-features --features libsql \
    --root "$tansu_root" --quiet
fi

wait "$venvs" || { echo "setup: a Python venv failed to build (see above)" >&2; exit 1; }
