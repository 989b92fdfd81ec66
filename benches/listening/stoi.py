"""Intelligibility of the noise suppressors (issue 28): STOI (pystoi) of
the noisy track and of each filter's output against the clean track, at
10 dB SNR per noise, from the WAVs the listening evaluator wrote with
LISTEN_WAVS=<dir>. Usage: stoi.py DIR. Ends with one line
`RESULT ns_stoi_noisy=.. ns_stoi_spectral=.. ns_stoi_rnnoise=..` (means
over the noises)."""

import sys
import wave
from pathlib import Path

import numpy as np
from pystoi import stoi


def read(path):
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64), w.getframerate()


def main():
    d = Path(sys.argv[1])
    clean, rate = read(d / "clean.wav")
    means = {}
    for noise in ("white", "pink", "babble"):
        row = []
        for kind in ("noisy", "spectral", "rnnoise"):
            x, _ = read(d / f"{noise}_{kind}.wav")
            n = min(len(clean), len(x))
            score = stoi(clean[:n], x[:n], rate, extended=False)
            means.setdefault(kind, []).append(score)
            row.append(f"{kind} {score:.3f}")
        print(f"stoi {noise}@10dB: " + ", ".join(row))
    print("RESULT " + " ".join(f"ns_stoi_{k}={np.mean(v):.3f}" for k, v in means.items()))


if __name__ == "__main__":
    main()
