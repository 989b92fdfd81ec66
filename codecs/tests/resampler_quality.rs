//! Resampler quality, measured with sine sweeps for every pair of supported rates:
//! passband flat within +-0.1 dB up to 0.85 x the lower Nyquist, every image or
//! alias landing in that passband >= 90 dB down, the reported delay equal to the
//! measured one, and an 8k -> 16k -> 8k round trip of band-limited speech-like
//! audio at >= 60 dB SNR.

use std::f64::consts::PI;
use voxbridge_codecs::resample::{Resampler, PASS_EDGE, STANDARD_RATES, STOP_EDGE};

const AMP: f64 = 16000.0;
const SECONDS: usize = 1;

/// Runs every whole frame of `input` (frame lengths as the resampler asks:
/// they vary at 11,025 Hz).
fn run(r: &mut Resampler, input: &[i16]) -> Vec<i16> {
    let mut out = Vec::new();
    let mut frame = vec![0i16; r.max_output_len()];
    let mut rest = input;
    while rest.len() >= r.input_len() {
        let (i, o) = (r.input_len(), r.output_len());
        r.process(&rest[..i], &mut frame[..o]).expect("exact frames");
        out.extend_from_slice(&frame[..o]);
        rest = &rest[i..];
    }
    out
}

/// Samples in `frames` 20 ms frames at `rate`.
fn frames_len(rate: u32, frames: usize) -> usize {
    frames * rate as usize / 50
}

fn tone(rate: u32, f: f64, frames: usize) -> Vec<i16> {
    let n = frames_len(rate, frames);
    (0..n)
        .map(|i| (AMP * (2.0 * PI * f * i as f64 / rate as f64).sin()).round() as i16)
        .collect()
}

/// Amplitude and phase of the component at `f` (Blackman-Harris window; far sidelobes < -92 dB).
fn measure(x: &[i16], rate: u32, f: f64) -> (f64, f64) {
    let n = x.len();
    let (mut re, mut im, mut wsum) = (0.0, 0.0, 0.0);
    for (i, &s) in x.iter().enumerate() {
        let t = 2.0 * PI * i as f64 / (n - 1) as f64;
        let w = 0.35875 - 0.48829 * t.cos() + 0.14128 * (2.0 * t).cos() - 0.01168 * (3.0 * t).cos();
        let ph = 2.0 * PI * f * i as f64 / rate as f64;
        re += w * s as f64 * ph.cos();
        im += w * s as f64 * ph.sin();
        wsum += w;
    }
    (2.0 * (re * re + im * im).sqrt() / wsum, im.atan2(re))
}

/// Folds a frequency into 0..=rate/2 (where it appears after sampling at `rate`).
fn fold(f: f64, rate: f64) -> f64 {
    let m = f.rem_euclid(rate);
    if m > rate / 2.0 {
        rate - m
    } else {
        m
    }
}

fn pairs() -> impl Iterator<Item = (u32, u32)> {
    STANDARD_RATES
        .iter()
        .flat_map(|&a| STANDARD_RATES.iter().map(move |&b| (a, b)))
        .filter(|(a, b)| a != b)
}

#[test]
fn passband_is_flat_and_delay_is_as_reported() {
    let mut worst = 0f64;
    let mut longest = 0f64;
    for (from, to) in pairs() {
        let nyq = from.min(to) as f64 / 2.0;
        let r0 = Resampler::new(from, to).expect("pair");
        let delay = r0.delay_seconds();
        longest = longest.max(delay);
        assert!(delay > 0.0 && delay <= 0.003, "{from}->{to}: delay {delay}");
        for k in 1..=12 {
            let f = PASS_EDGE * nyq * k as f64 / 12.0;
            let mut r = Resampler::new(from, to).expect("pair");
            let out = run(&mut r, &tone(from, f, 50 * SECONDS));
            let settled = &out[out.len() / 4..];
            let (amp, phase) = measure(settled, to, f);
            let gain_db = 20.0 * (amp / AMP).log10();
            worst = worst.max(gain_db.abs());
            assert!(
                gain_db.abs() <= 0.1,
                "{from}->{to} at {f:.0} Hz: gain {gain_db:.4} dB"
            );
            // The output is A*sin(w*i + phi0) with phi0 = 2*pi*f*(i0/to - delay);
            // `measure` returns atan2(im, re) = pi/2 - phi0 for such a sine.
            let i0 = (out.len() / 4) as f64;
            let expect = PI / 2.0 - 2.0 * PI * f * (i0 / to as f64 - delay);
            let err = (phase - expect + PI).rem_euclid(2.0 * PI) - PI;
            let err_us = err.abs() / (2.0 * PI * f) * 1e6;
            assert!(
                err_us < 2.0,
                "{from}->{to} at {f:.0} Hz: delay off by {err_us:.2} us"
            );
        }
    }
    println!(
        "worst passband deviation {worst:.4} dB; longest delay {:.3} ms",
        longest * 1e3
    );
}

#[test]
fn aliases_and_images_landing_in_the_passband_are_90_db_down() {
    let mut worst = f64::MAX;
    for (from, to) in pairs() {
        let nyq = from.min(to) as f64 / 2.0;
        let pass_edge = PASS_EDGE * nyq;
        // Input tones: the passband (their images) and, when decimating, the
        // input's stopband (their aliases), on a 97-point grid.
        let mut tones: Vec<f64> = (1..=24).map(|k| pass_edge * k as f64 / 24.0).collect();
        if from > to {
            let lo = STOP_EDGE * nyq;
            let hi = from as f64 / 2.0 * 0.995;
            tones.extend((0..=72).map(|k| lo + (hi - lo) * k as f64 / 72.0));
        }
        for &f in &tones {
            let mut r = Resampler::new(from, to).expect("pair");
            let out = run(&mut r, &tone(from, f, 25));
            let settled = &out[out.len() / 4..];
            // Every spectral copy of the tone: k*from +- f, seen at the output rate.
            for k in 0..=(to as i64 * 2 / from as i64 + 2) {
                for sign in [-1.0, 1.0] {
                    let image = k as f64 * from as f64 + sign * f;
                    if image <= 0.0 || (k == 0 && sign > 0.0) && f < nyq {
                        continue; // the tone itself, when it is in the passband
                    }
                    let seen = fold(image, to as f64);
                    if seen > pass_edge || seen < 20.0 {
                        continue; // only what lands in the passband counts
                    }
                    if (seen - f).abs() < 50.0 && f < nyq {
                        continue; // coincides with the wanted tone
                    }
                    let (amp, _) = measure(settled, to, seen);
                    let atten = -20.0 * (amp / AMP).log10();
                    worst = worst.min(atten);
                    assert!(
                        atten >= 90.0,
                        "{from}->{to}: tone {f:.0} Hz leaves {atten:.1} dB copy at {seen:.0} Hz"
                    );
                }
            }
        }
    }
    println!("worst image/alias attenuation {worst:.1} dB");
}

/// Speech-like: a 110 Hz voice with harmonics up to 3.4 kHz under a formant envelope, gliding pitch.
fn speechlike(rate: u32, frames: usize) -> Vec<i16> {
    let n = frames_len(rate, frames);
    let mut phase = vec![0f64; 40];
    let mut raw = Vec::with_capacity(n);
    for i in 0..n {
        let t = i as f64 / rate as f64;
        let f0 = 110.0 + 30.0 * (2.0 * PI * 0.7 * t).sin();
        let mut v = 0.0;
        for (h, ph) in phase.iter_mut().enumerate() {
            let f = f0 * (h + 1) as f64;
            if f > 3400.0 {
                break;
            }
            *ph += 2.0 * PI * f / rate as f64;
            let env =
                (-((f - 700.0) / 400.0).powi(2)).exp() + 0.6 * (-((f - 1800.0) / 500.0).powi(2)).exp() + 0.05;
            v += env * ph.sin();
        }
        let syllable = 0.55 + 0.45 * (2.0 * PI * 4.0 * t).sin();
        raw.push(v * syllable);
    }
    // Scale to a 0.6 full-scale peak: no clipping (which would add content above 3.4 kHz).
    let peak = raw.iter().fold(0f64, |m, v| m.max(v.abs()));
    raw.iter()
        .map(|v| (v / peak * 0.6 * 32767.0).round() as i16)
        .collect()
}

#[test]
fn round_trip_8k_16k_8k_keeps_60_db_snr() {
    let input = speechlike(8000, 150);
    let mut up = Resampler::new(8000, 16000).expect("pair");
    let mut down = Resampler::new(16000, 8000).expect("pair");
    let wide = run(&mut up, &input);
    let back = run(&mut down, &wide);
    let delay = (up.delay_seconds() + down.delay_seconds()) * 8000.0;
    assert!(
        (delay - delay.round()).abs() < 1e-9,
        "round-trip delay {delay} is not whole samples"
    );
    let d = delay.round() as usize;
    let (mut s, mut e) = (0f64, 0f64);
    for i in 400..input.len() - d {
        s += (input[i] as f64).powi(2);
        e += (input[i] as f64 - back[i + d] as f64).powi(2);
    }
    let snr = 10.0 * (s / e).log10();
    println!("8k->16k->8k round-trip SNR {snr:.1} dB");
    assert!(snr >= 60.0, "round-trip SNR {snr:.1} dB");
}
