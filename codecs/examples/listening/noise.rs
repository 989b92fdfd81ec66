//! The noise suppression part of the listening benchmark: the bridge's
//! spectral filter (`voxbridge_codecs::denoise`, at the stream's 8 kHz)
//! and RNNoise through nnnoiseless (pure Rust; 48 kHz, 10 ms frames; the
//! caller's 8 kHz audio resampled up to 48 kHz and back, inside the
//! timing) in each noise at 20, 10 and 5 dB SNR. The SNR before and after is taken
//! over the labelled speech frames against the clean track (the output
//! aligned to it first: the lag of best correlation within 100 ms), so the
//! gain counts both the noise removed and any speech damaged; CPU is per
//! second of one 8 kHz stream. With `LISTEN_WAVS=<dir>` the clean track
//! and, at 10 dB, the noisy and both filtered tracks (aligned) are written
//! there for an intelligibility score (STOI, `benches/listening/stoi.py`).

use super::{Track, FRAME, LABEL, RATE};
use std::time::Instant;
use voxbridge_codecs::denoise::NoiseSuppressor;
use voxbridge_codecs::Resampler;

/// The two filters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Filter {
    /// The bridge's: `NoiseSuppressor` at 8 kHz.
    Spectral,
    /// RNNoise via nnnoiseless at 48 kHz.
    Rnnoise,
}

impl Filter {
    fn name(self) -> &'static str {
        match self {
            Filter::Spectral => "spectral",
            Filter::Rnnoise => "rnnoise",
        }
    }

    fn run(self, audio: &[i16]) -> (Vec<i16>, u128) {
        match self {
            Filter::Spectral => spectral(audio),
            Filter::Rnnoise => rnnoise(audio),
        }
    }
}

/// The bridge's filter on an 8 kHz signal: the output and the CPU, ns.
fn spectral(audio: &[i16]) -> (Vec<i16>, u128) {
    let mut ns = NoiseSuppressor::new(RATE as u32).expect("8 kHz");
    let mut out = Vec::with_capacity(audio.len());
    let t0 = Instant::now();
    for frame in audio.chunks_exact(FRAME) {
        out.extend_from_slice(ns.process(frame));
    }
    (out, t0.elapsed().as_nanos())
}

/// RNNoise on an 8 kHz signal: the output (same length, delayed by the
/// resamplers and the denoiser) and the CPU it took, ns.
fn rnnoise(audio: &[i16]) -> (Vec<i16>, u128) {
    let mut up = Resampler::new(8000, 48_000).expect("8k -> 48k");
    let mut down = Resampler::new(48_000, 8000).expect("48k -> 8k");
    let mut state = nnnoiseless::DenoiseState::new();
    let mut wide = vec![0i16; 6 * FRAME];
    let (mut fin, mut fout) = (vec![0f32; 480], vec![0f32; 480]);
    let mut back = vec![0i16; 6 * FRAME];
    let mut out = Vec::with_capacity(audio.len());
    let t0 = Instant::now();
    for frame in audio.chunks_exact(FRAME) {
        if up.process(frame, &mut wide).is_err() {
            break;
        }
        // A 20 ms frame at 48 kHz is two of RNNoise's 10 ms frames.
        for (half, res) in wide.chunks_exact(480).zip(back.chunks_exact_mut(480)) {
            for (f, s) in fin.iter_mut().zip(half) {
                *f = *s as f32;
            }
            state.process_frame(&mut fout, &fin);
            for (r, f) in res.iter_mut().zip(&fout) {
                *r = f.round().clamp(-32768.0, 32767.0) as i16;
            }
        }
        let mut narrow = [0i16; FRAME];
        if down.process(&back, &mut narrow).is_err() {
            break;
        }
        out.extend_from_slice(&narrow);
    }
    (out, t0.elapsed().as_nanos())
}

/// SNR (dB) of `x` against `clean` over the labelled speech, `x` taken
/// `lag` samples later.
fn snr(track: &Track, x: &[i16], lag: usize) -> f64 {
    let (mut signal, mut error) = (0f64, 0f64);
    for (k, is_speech) in track.labels.iter().enumerate() {
        if !is_speech {
            continue;
        }
        for i in k * LABEL..(k + 1) * LABEL {
            let Some(y) = x.get(i + lag) else { break };
            let c = track.clean[i] as f64;
            signal += c * c;
            error += (*y as f64 - c) * (*y as f64 - c);
        }
    }
    10.0 * (signal / error.max(1.0)).log10()
}

/// The lag (0 to 100 ms) at which `x` best matches the clean track.
fn best_lag(clean: &[i16], x: &[i16]) -> usize {
    let n = clean.len().min(x.len()).min(40 * RATE);
    (0..RATE / 10)
        .max_by_key(|lag| {
            let c: f64 = (0..n.saturating_sub(*lag))
                .step_by(2)
                .map(|i| clean[i] as f64 * x[i + lag] as f64)
                .sum();
            c as i64
        })
        .unwrap_or(0)
}

/// What one filter did: SNR gain at 10 dB (mean of the noises) and CPU
/// per second of one stream (us).
pub struct Outcome {
    pub gain_db: f64,
    pub cpu_us: f64,
}

/// Prints the tables; returns the bridge's filter's outcome and RNNoise's.
pub fn report(track: &Track, conditions: &[(String, Vec<i16>)]) -> (Outcome, Outcome) {
    let wavs = std::env::var_os("LISTEN_WAVS").map(std::path::PathBuf::from);
    if let Some(dir) = &wavs {
        let _ = std::fs::create_dir_all(dir);
        super::write_wav(&dir.join("clean.wav"), &track.clean);
    }
    let mut outcomes = [Filter::Spectral, Filter::Rnnoise].map(|filter| {
        println!(
            "noise suppression ({}): SNR over the speech before -> after, dB",
            filter.name()
        );
        let (mut gains_at_10, mut cpu_ns, mut seconds) = (Vec::new(), 0u128, 0f64);
        for (name, audio) in conditions.iter().filter(|(n, _)| n != "clean") {
            let (out, ns) = filter.run(audio);
            cpu_ns += ns;
            seconds += audio.len() as f64 / RATE as f64;
            let lag = best_lag(&track.clean, &out);
            let (before, after) = (snr(track, audio, 0), snr(track, &out, lag));
            println!(
                "  {name:<14} {before:>6.1} -> {after:>6.1} ({:+.1}; output {:.1} ms late)",
                after - before,
                lag as f64 * 1000.0 / RATE as f64
            );
            if name.ends_with("@10dB") {
                gains_at_10.push(after - before);
                if let Some(dir) = &wavs {
                    let noise = name.trim_end_matches("@10dB");
                    super::write_wav(&dir.join(format!("{noise}_noisy.wav")), audio);
                    super::write_wav(&dir.join(format!("{noise}_{}.wav", filter.name())), &out[lag.min(out.len())..]);
                }
            }
        }
        let gain_db = gains_at_10.iter().sum::<f64>() / gains_at_10.len().max(1) as f64;
        let cpu_us = cpu_ns as f64 / 1000.0 / seconds;
        println!(
            "noise suppression ({}): SNR gain at 10 dB {gain_db:+.1} dB (mean of the three noises), CPU {cpu_us:.0} us per call-second",
            filter.name()
        );
        Some(Outcome { gain_db, cpu_us })
    });
    let none = || Outcome {
        gain_db: 0.0,
        cpu_us: 0.0,
    };
    (
        outcomes[0].take().unwrap_or_else(none),
        outcomes[1].take().unwrap_or_else(none),
    )
}
