//! The voicemail beep: the one steady tone a machine plays when it starts
//! recording, found so that a message left on it starts after the beep and
//! so that answering-machine detection can take the beep as a machine.
//!
//! A beep is a single sinusoid; speech, noise, ringback and DTMF (two
//! tones each) are not. A second-order linear predictor fitted to a frame
//! by least squares predicts a lone sinusoid almost exactly, so its prediction gain is tens of dB where speech reaches about
//! ten, and its first coefficient is `2 cos ω`, the tone's frequency. A
//! beep is at least [`BEEP_MIN_MS`] of such frames, loud enough, inside
//! the voice band and on one frequency; it is reported when it ends.
//! Pure computation, no allocation: six sums per sample.

/// Shortest tone taken for a beep, ms (voicemail beeps last 0.2-1 s).
pub const BEEP_MIN_MS: u32 = 100;
/// Longest: a tone past this (a fax's answer tone, a line's test tone) is
/// not a beep.
pub const BEEP_MAX_MS: u32 = 2500;
/// Prediction gain a frame needs to be one tone, dB (a tone 30 dB above
/// the line's noise reaches about 24, one 20 dB above it 15; DTMF's two
/// tones about 12).
const MIN_GAIN_DB: f64 = 18.0;
/// Quietest frame taken, dBFS.
const MIN_LEVEL_DBFS: f64 = -40.0;
/// The band beeps are in, Hz.
const BAND_HZ: (f32, f32) = (300.0, 3400.0);
/// How far a frame's frequency may stray from the tone's so far (a beep
/// 30 dB over the noise stays within 0.5%; ringback's two close tones
/// (440 + 480 Hz) wander 449-473 Hz from frame to frame).
const SAME_TONE: f32 = 0.01;

/// A beep that has ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beep {
    /// Its frequency, Hz.
    pub hz: f32,
    /// How long it lasted, ms.
    pub ms: u32,
    /// From the first frame pushed to the end of the beep, ms.
    pub ended_at_ms: u32,
}

/// Finds beeps in one stream of 20 ms frames.
#[derive(Debug, Clone)]
pub struct BeepDetector {
    rate: u32,
    elapsed_ms: u32,
    /// The tone running now: its mean frequency and length.
    run_hz: f32,
    run_ms: u32,
}

impl BeepDetector {
    /// For frames at `rate` Hz.
    pub fn new(rate: u32) -> BeepDetector {
        BeepDetector {
            rate,
            elapsed_ms: 0,
            run_hz: 0.0,
            run_ms: 0,
        }
    }

    /// The next 20 ms frame; the beep when this frame is the first after it.
    pub fn push(&mut self, frame: &[i16]) -> Option<Beep> {
        self.elapsed_ms += 20;
        let tone = tone_hz(frame, self.rate);
        if let Some(hz) = tone {
            let same = self.run_ms > 0 && (hz - self.run_hz).abs() <= SAME_TONE * self.run_hz;
            if same {
                let n = (self.run_ms / 20) as f32;
                self.run_hz = (self.run_hz * n + hz) / (n + 1.0);
                self.run_ms += 20;
                return None;
            }
        }
        let ended = (BEEP_MIN_MS..=BEEP_MAX_MS).contains(&self.run_ms).then(|| Beep {
            hz: self.run_hz,
            ms: self.run_ms,
            ended_at_ms: self.elapsed_ms - 20,
        });
        // This frame may start a new tone.
        (self.run_hz, self.run_ms) = match tone {
            Some(hz) => (hz, 20),
            None => (0.0, 0),
        };
        ended
    }
}

/// The frequency of `frame` when it is one steady, loud-enough tone in the
/// voice band.
pub fn tone_hz(frame: &[i16], rate: u32) -> Option<f32> {
    if frame.len() < 3 || rate == 0 {
        return None;
    }
    // Least squares over the frame (the covariance method: no window, so
    // a pure tone is predicted exactly): x[n] ≈ c1·x[n-1] + c2·x[n-2].
    let (mut p00, mut p01, mut p02, mut p11, mut p12, mut p22) = (0i64, 0i64, 0i64, 0i64, 0i64, 0i64);
    for w in frame.windows(3) {
        let (x2, x1, x0) = (i64::from(w[0]), i64::from(w[1]), i64::from(w[2]));
        p00 += x0 * x0;
        p01 += x0 * x1;
        p02 += x0 * x2;
        p11 += x1 * x1;
        p12 += x1 * x2;
        p22 += x2 * x2;
    }
    // Exact in integers (a 48 kHz frame's sums stay far below 2^63).
    let [p00, p01, p02, p11, p12, p22] = [p00, p01, p02, p11, p12, p22].map(|p| p as f64);
    let mean_square = p00 / (frame.len() - 2) as f64;
    if mean_square <= 0.0 || 10.0 * (mean_square / (32768.0 * 32768.0)).log10() < MIN_LEVEL_DBFS {
        return None;
    }
    let det = p11 * p22 - p12 * p12;
    if det <= 0.0 {
        return None;
    }
    let c1 = (p01 * p22 - p02 * p12) / det;
    let c2 = (p02 * p11 - p01 * p12) / det;
    let residual = (p00 - c1 * p01 - c2 * p02).max(0.0);
    let gain_db = 10.0 * (p00 / residual.max(p00 * 1e-9)).log10();
    if gain_db < MIN_GAIN_DB {
        return None;
    }
    // For one sinusoid c1 = 2 cos ω (and c2 = -1).
    let cos_w = (c1 / 2.0).clamp(-1.0, 1.0);
    let hz = (cos_w.acos() * f64::from(rate) / std::f64::consts::TAU) as f32;
    (BAND_HZ.0..=BAND_HZ.1).contains(&hz).then_some(hz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signal::noise;

    fn sine(hz: f32, rate: u32, amp: f32, from: usize, len: usize) -> Vec<i16> {
        let w = std::f32::consts::TAU * hz / rate as f32;
        (from..from + len)
            .map(|i| (amp * (w * i as f32).sin()) as i16)
            .collect()
    }

    #[test]
    fn a_tone_is_found_at_its_frequency_at_any_rate() {
        for rate in [8000, 16_000] {
            for hz in [440.0, 1000.0, 1400.0, 2000.0] {
                let f = sine(hz, rate, 8000.0, 0, rate as usize / 50);
                let got = tone_hz(&f, rate).expect("a tone");
                assert!((got - hz).abs() < hz * 0.01, "{hz} Hz at {rate}: {got}");
            }
        }
    }

    #[test]
    fn noise_two_tones_and_quiet_are_not_a_tone() {
        let mut seed = 7;
        assert_eq!(tone_hz(&noise(&mut seed, 8000.0, 160), 8000), None);
        assert_eq!(tone_hz(&dtmf(697.0, 1209.0, 0), 8000), None, "DTMF is two tones");
        assert_eq!(
            tone_hz(&sine(1000.0, 8000, 50.0, 0, 160), 8000),
            None,
            "too quiet"
        );
        assert_eq!(
            tone_hz(&sine(100.0, 8000, 8000.0, 0, 160), 8000),
            None,
            "below the band"
        );
    }

    #[test]
    fn a_beep_is_reported_when_it_ends_and_only_if_long_enough() {
        let mut d = BeepDetector::new(8000);
        let mut seed = 1;
        let mut found = Vec::new();
        let mut at = 0;
        let feed = |d: &mut BeepDetector, frames: Vec<Vec<i16>>, found: &mut Vec<Beep>| {
            for f in frames {
                found.extend(d.push(&f));
            }
        };
        // Speech-like noise, a 60 ms blip, noise, a 400 ms beep, noise.
        let parts: [(Option<f32>, usize); 5] = [
            (None, 20),
            (Some(1000.0), 3),
            (None, 10),
            (Some(850.0), 20),
            (None, 5),
        ];
        for (tone, frames) in parts {
            let fs = (0..frames)
                .map(|_| {
                    let f = match tone {
                        Some(hz) => sine(hz, 8000, 8000.0, at, 160),
                        None => noise(&mut seed, 3000.0, 160),
                    };
                    at += 160;
                    f
                })
                .collect();
            feed(&mut d, fs, &mut found);
        }
        assert_eq!(found.len(), 1, "{found:?}");
        let b = found[0];
        assert_eq!(b.ms, 400);
        assert_eq!(b.ended_at_ms, (20 + 3 + 10 + 20) * 20);
        assert!((b.hz - 850.0).abs() < 9.0, "{}", b.hz);
    }

    fn dtmf(low: f32, high: f32, from: usize) -> Vec<i16> {
        sine(low, 8000, 4000.0, from, 160)
            .iter()
            .zip(sine(high, 8000, 4000.0, from, 160))
            .map(|(a, b)| a + b)
            .collect()
    }

    #[test]
    fn ringback_is_no_beep() {
        // Its two close tones look like one whose pitch wanders.
        let mut d = BeepDetector::new(8000);
        let mut found = None;
        for k in 0..100 {
            found = found.or(d.push(&dtmf(440.0, 480.0, k * 160)));
        }
        found = found.or(d.push(&[0; 160]));
        assert_eq!(found, None);
    }

    #[test]
    fn a_tone_that_never_stops_is_not_a_beep() {
        let mut d = BeepDetector::new(8000);
        let mut found = None;
        for k in 0..(BEEP_MAX_MS / 20 + 10) as usize {
            found = found.or(d.push(&sine(2100.0, 8000, 8000.0, k * 160, 160)));
        }
        found = found.or(d.push(&[0; 160]));
        assert_eq!(found, None);
    }
}
