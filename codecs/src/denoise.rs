//! Noise suppression for the caller's audio on its way to the bot: a
//! short-time spectral (Wiener) filter that learns the line's noise and
//! turns each frequency down by how much of it is noise.
//!
//! The stream is cut into 10 ms hops, each analysed with the hop before it
//! (a 20 ms square-root Hann window, 50% overlap, so analysis and synthesis
//! windows add back to exactly the input where nothing is changed). Per
//! frequency bin the noise's power is the minimum of the smoothed power
//! over the last second or so (minimum statistics: speech pauses between
//! words often enough that the minimum is noise), scaled up by the
//! minimum's bias. The gain is Wiener's, `ξ / (1 + ξ)`, with the a-priori
//! SNR `ξ` decision-directed (Ephraim and Malah: mostly last hop's clean
//! estimate, so steady noise does not flicker into "musical" tones), and
//! never below [`GAIN_FLOOR`]: the noise is turned down, never cut out,
//! which keeps the speech natural.
//!
//! `benches/listening.sh` chose it over RNNoise (nnnoiseless): on its set
//! it gains as much SNR as RNNoise at 10 dB, for under a fortieth of its CPU
//! (benches/RESULTS.md, "Listening"). Pure computation: the FFT plans and
//! buffers are made once per stream, nothing is allocated per frame; the
//! output lags the input by one hop (10 ms).

use crate::error::CodecError;
use crate::{frame_len, is_supported_rate};
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// The least a bin's gain gets (-10.5 dB): the noise is lowered, not
/// removed. The constants here are the best of a sweep on the listening
/// set (benches/RESULTS.md, "Listening"): a lower floor, a slower a-priori
/// SNR or a larger bias took more of the speech with the noise.
pub const GAIN_FLOOR: f32 = 0.3;
/// Weight of last hop's clean estimate in the a-priori SNR.
const DECISION_DIRECTED: f32 = 0.9;
/// Smoothing of each bin's power before its minimum is tracked.
const POWER_SMOOTHING: f32 = 0.8;
/// The noise's power over the minimum of the smoothed power. The minimum
/// under-reads the mean (by about 2 for this smoothing and window), and
/// taking it as it is lowers the noise a little less than a Wiener filter
/// would: on the set, less speech went with it.
const MINIMUM_BIAS: f32 = 1.0;
/// Hops per minimum-statistics sub-window (0.5 s); the noise is the lower
/// of this sub-window's minimum and the last one's.
const MINIMUM_WINDOW_HOPS: u32 = 50;
/// Hops taken as noise at the start (the line before anyone speaks).
const LEARN_HOPS: u32 = 10;

/// One stream's noise suppression (see the module docs).
pub struct NoiseSuppressor {
    hop: usize,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    window: Vec<f32>,
    /// The last two hops of input.
    history: Vec<f32>,
    /// FFT input/output and scratch.
    time: Vec<f32>,
    spectrum: Vec<Complex32>,
    scratch: Vec<Complex32>,
    /// The second half of the last hop's synthesis, to add to the next.
    overlap: Vec<f32>,
    /// Per bin: smoothed power, this sub-window's and the last one's
    /// minimum, the noise's power, last hop's clean power.
    smoothed: Vec<f32>,
    minimum: Vec<f32>,
    last_minimum: Vec<f32>,
    noise: Vec<f32>,
    clean: Vec<f32>,
    hops: u32,
    /// The filtered frame handed back.
    out: Vec<i16>,
}

impl std::fmt::Debug for NoiseSuppressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseSuppressor")
            .field("hop", &self.hop)
            .field("hops", &self.hops)
            .finish()
    }
}

impl NoiseSuppressor {
    /// For 20 ms frames at `rate` Hz.
    pub fn new(rate: u32) -> Result<NoiseSuppressor, CodecError> {
        if !is_supported_rate(rate) {
            return Err(CodecError::UnsupportedRate { rate });
        }
        let hop = frame_len(rate) / 2;
        let n = 2 * hop;
        let mut planner = RealFftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(n);
        let inverse = planner.plan_fft_inverse(n);
        let scratch_len = forward.get_scratch_len().max(inverse.get_scratch_len());
        let bins = n / 2 + 1;
        // Periodic square-root Hann: w[i]² + w[i + hop]² = 1.
        let window = (0..n)
            .map(|i| (std::f32::consts::PI * i as f32 / n as f32).sin())
            .collect();
        Ok(NoiseSuppressor {
            hop,
            forward,
            inverse,
            window,
            history: vec![0.0; n],
            time: vec![0.0; n],
            spectrum: vec![Complex32::default(); bins],
            scratch: vec![Complex32::default(); scratch_len],
            overlap: vec![0.0; hop],
            smoothed: vec![0.0; bins],
            minimum: vec![f32::MAX; bins],
            last_minimum: vec![f32::MAX; bins],
            noise: vec![0.0; bins],
            clean: vec![0.0; bins],
            hops: 0,
            out: vec![0; 2 * hop],
        })
    }

    /// Samples per frame (20 ms).
    pub fn frame_len(&self) -> usize {
        2 * self.hop
    }

    /// The next 20 ms frame; the filtered frame 10 ms behind it. A frame of
    /// another length passes through unchanged.
    pub fn process<'a>(&'a mut self, frame: &'a [i16]) -> &'a [i16] {
        if frame.len() != self.out.len() {
            return frame;
        }
        for h in 0..2 {
            let (from, to) = (h * self.hop, (h + 1) * self.hop);
            self.hop_through(&frame[from..to], from);
        }
        &self.out
    }

    /// One hop of input in, one hop of output at `out[at..]`.
    fn hop_through(&mut self, input: &[i16], at: usize) {
        let hop = self.hop;
        self.history.copy_within(hop.., 0);
        for (h, s) in self.history[hop..].iter_mut().zip(input) {
            *h = f32::from(*s);
        }
        for ((t, h), w) in self.time.iter_mut().zip(&self.history).zip(&self.window) {
            *t = h * w;
        }
        if self
            .forward
            .process_with_scratch(&mut self.time, &mut self.spectrum, &mut self.scratch)
            .is_err()
        {
            // Cannot happen: the buffers were sized by the plan.
            return;
        }
        self.hops = self.hops.saturating_add(1);
        self.filter();
        // The first and last bins of a real signal's spectrum are real.
        let last = self.spectrum.len() - 1;
        self.spectrum[0].im = 0.0;
        self.spectrum[last].im = 0.0;
        if self
            .inverse
            .process_with_scratch(&mut self.spectrum, &mut self.time, &mut self.scratch)
            .is_err()
        {
            return;
        }
        let scale = 1.0 / self.time.len() as f32;
        for (i, o) in self.out[at..at + hop].iter_mut().enumerate() {
            let y = self.overlap[i] + self.time[i] * self.window[i] * scale;
            *o = y.round().clamp(-32768.0, 32767.0) as i16;
        }
        for (i, o) in self.overlap.iter_mut().enumerate() {
            *o = self.time[hop + i] * self.window[hop + i] * scale;
        }
    }

    /// Learns the noise from this hop's spectrum and applies the gains.
    fn filter(&mut self) {
        let learning = self.hops <= LEARN_HOPS;
        let new_window = self.hops % MINIMUM_WINDOW_HOPS == 0;
        for (k, x) in self.spectrum.iter_mut().enumerate() {
            let power = x.norm_sqr();
            let smoothed = if self.hops == 1 {
                power
            } else {
                POWER_SMOOTHING * self.smoothed[k] + (1.0 - POWER_SMOOTHING) * power
            };
            self.smoothed[k] = smoothed;
            self.minimum[k] = self.minimum[k].min(smoothed);
            if learning {
                // The start of the line is taken as noise: its mean.
                let n = self.hops as f32;
                self.noise[k] += (power - self.noise[k]) / n;
            } else {
                let floor = self.minimum[k].min(self.last_minimum[k]) * MINIMUM_BIAS;
                self.noise[k] = floor;
            }
            if new_window {
                self.last_minimum[k] = self.minimum[k];
                self.minimum[k] = smoothed;
            }
            let noise = self.noise[k].max(1e-3);
            let posterior = power / noise;
            let prior = DECISION_DIRECTED * self.clean[k] / noise
                + (1.0 - DECISION_DIRECTED) * (posterior - 1.0).max(0.0);
            let gain = (prior / (1.0 + prior)).max(GAIN_FLOOR);
            self.clean[k] = gain * gain * power;
            *x *= gain;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signal::noise;

    fn power(x: &[i16]) -> f64 {
        x.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / x.len().max(1) as f64
    }

    #[test]
    fn steady_noise_is_turned_down_and_a_tone_in_it_is_kept() {
        let mut ns = NoiseSuppressor::new(8000).expect("8 kHz");
        let mut seed = 9;
        // Two seconds of noise alone: by the end it is down by most of
        // the floor's 10.5 dB.
        let mut last = Vec::new();
        for _ in 0..100 {
            let f = noise(&mut seed, 2000.0, 160);
            last = ns.process(&f).to_vec();
        }
        let before = power(&noise(&mut seed, 2000.0, 160));
        let after = power(&last);
        let down_db = 10.0 * (before / after).log10();
        assert!(down_db > 7.0, "noise down {down_db:.1} dB");
        // A loud 500 Hz tone over the same noise comes through nearly whole.
        let mut tone_in = 0.0;
        let mut tone_out = 0.0;
        for k in 0..50 {
            let n = noise(&mut seed, 2000.0, 160);
            let f: Vec<i16> = (0..160)
                .map(|i| {
                    let t = (k * 160 + i) as f32 * std::f32::consts::TAU * 500.0 / 8000.0;
                    (n[i] as f32 + 8000.0 * t.sin()) as i16
                })
                .collect();
            let out = ns.process(&f).to_vec();
            if k >= 10 {
                tone_in += power(&f);
                tone_out += power(&out);
            }
        }
        let kept_db = 10.0 * (tone_out / tone_in).log10();
        assert!(kept_db > -1.5, "tone kept at {kept_db:.1} dB");
    }

    #[test]
    fn where_nothing_is_noise_the_output_is_the_input_a_hop_later() {
        let mut ns = NoiseSuppressor::new(16_000).expect("16 kHz");
        assert_eq!(ns.frame_len(), 320);
        // A loud chirp after a silent start: every bin's SNR is huge, the
        // gain is ~1, and the windows add back to the input.
        let mut input = vec![0i16; 320 * 20];
        input.extend((0..320 * 30).map(|i| {
            let t = i as f32 / 16_000.0;
            (10_000.0 * (std::f32::consts::TAU * (300.0 + 2000.0 * t) * t).sin()) as i16
        }));
        let mut output = Vec::new();
        for f in input.chunks_exact(320) {
            output.extend_from_slice(ns.process(f));
        }
        let hop = 160;
        let (mut err, mut sig) = (0f64, 0f64);
        for i in 320 * 25..input.len() {
            let d = f64::from(output[i]) - f64::from(input[i - hop]);
            err += d * d;
            sig += f64::from(input[i - hop]).powi(2);
        }
        let snr = 10.0 * (sig / err.max(1.0)).log10();
        assert!(snr > 25.0, "reconstruction SNR {snr:.1} dB");
    }

    #[test]
    fn an_odd_frame_passes_through_and_bad_rates_are_refused() {
        let mut ns = NoiseSuppressor::new(8000).expect("8 kHz");
        assert_eq!(ns.process(&[1, 2, 3]), &[1, 2, 3]);
        assert!(matches!(
            NoiseSuppressor::new(100),
            Err(CodecError::UnsupportedRate { rate: 100 })
        ));
    }
}
