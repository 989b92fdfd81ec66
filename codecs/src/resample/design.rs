//! Filter design for the resampler: Kaiser-windowed sinc prototypes, split into polyphase tables.
//!
//! Runs once per rate pair (the result is shared by every stream of that pair),
//! never per frame. The specification every prototype meets:
//! passband flat to 0.85 x the lower Nyquist, stopband from 1.15 x it, at least
//! [`STOPBAND_DB`] down. The cut-off sits exactly at the lower Nyquist, so for
//! integer ratios the prototype is a Nyquist filter: one polyphase branch is a
//! pure delay and costs a copy instead of a convolution.

/// Stopband attenuation the Kaiser design aims for; 5 dB above the 90 dB
/// requirement so coefficient rounding to f32 and the window formula's
/// approximation never eat the margin (measured by `tests/resampler_quality.rs`).
pub const STOPBAND_DB: f64 = 95.0;
/// Passband edge as a fraction of the lower Nyquist frequency.
pub const PASS_EDGE: f64 = 0.85;
/// Stopband edge as a fraction of the lower Nyquist frequency.
pub const STOP_EDGE: f64 = 1.15;

/// A prototype low-pass filter at the up-sampled rate `l * from`.
#[derive(Debug, Clone)]
pub struct Prototype {
    /// Taps, length `l * taps_per_phase`, zero-padded past the designed length.
    pub taps: Vec<f64>,
    /// Centre of symmetry, in taps (the filter's delay at the up-sampled rate).
    pub centre: usize,
    /// Taps in each polyphase branch.
    pub taps_per_phase: usize,
}

fn bessel_i0(x: f64) -> f64 {
    // Power series; converges fast for the beta values used here (< 15).
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..64 {
        term *= (half / k as f64) * (half / k as f64);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// Designs the prototype for resampling `from` -> `to` Hz with up-sampling
/// factor `l` and down-sampling factor `m`.
///
/// The filter is made just long enough that its delay plus `extra_input`
/// whole input samples (what the framing adds, see the resampler's general
/// kernel) is a whole number of output samples: `(centre + extra_input * l)`
/// is a multiple of `m`. So a stream's output lines up with its input to the
/// sample once the delay is dropped (as `voxbridge transcode` does), with no
/// fractional offset left over; it costs at most `2 (m - 1) / l` taps per phase.
/// An integer up-sampling (`m == 1`) is also delayed by whole input samples.
pub fn prototype(from: u32, to: u32, l: usize, m: usize, extra_input: usize) -> Prototype {
    let fs = from as f64 * l as f64;
    let nyquist_low = from.min(to) as f64 / 2.0;
    let transition = (STOP_EDGE - PASS_EDGE) * nyquist_low;
    let a = STOPBAND_DB;
    let beta = 0.1102 * (a - 8.7);
    let dw = 2.0 * std::f64::consts::PI * transition / fs;
    let n = ((a - 7.95) / (2.285 * dw)).ceil() as usize + 1;
    // Odd length: the centre is a tap, so the delay is a whole number of taps;
    // then the centre moves out to the next whole output sample.
    // An integer up-sampling also delays by whole input samples (at most
    // l - 1 taps more), so a down-and-up round trip lines up too.
    let mut centre = n / 2;
    while (centre + extra_input * l) % m != 0 || (m == 1 && centre % l != 0) {
        centre += 1;
    }
    let n = 2 * centre + 1;
    let taps_per_phase = n.div_ceil(l);
    let mut taps = vec![0.0; l * taps_per_phase];
    // Normalised cut-off (cycles per sample at the up-sampled rate).
    let fc = nyquist_low / fs;
    // Zero crossings of the sinc fall every `zero_step` taps from the centre;
    // taps there are set to exactly 0 so Nyquist branches are recognised.
    let zero_step = 1.0 / (2.0 * fc);
    let i0_beta = bessel_i0(beta);
    for (k, tap) in taps.iter_mut().enumerate().take(n) {
        let m = k as f64 - centre as f64;
        let on_zero = m != 0.0 && {
            let q = m / zero_step;
            (q - q.round()).abs() < 1e-9
        };
        if on_zero {
            continue;
        }
        let sinc = if m == 0.0 {
            2.0 * fc
        } else {
            (2.0 * std::f64::consts::PI * fc * m).sin() / (std::f64::consts::PI * m)
        };
        let r = m / centre as f64;
        let window = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0_beta;
        *tap = sinc * window;
    }
    Prototype {
        taps,
        centre,
        taps_per_phase,
    }
}

/// Coefficients of polyphase branch `p`, reversed for a forward dot product over
/// the input window, scaled so the branch has unity gain at DC.
///
/// Output sample `n` with phase `p = n*m mod l` is `sum_s c_p[s] * w[i + s]`,
/// where `w` is the input preceded by `taps_per_phase - 1` samples of history.
pub fn branch(proto: &Prototype, l: usize, p: usize) -> Vec<f64> {
    let t = proto.taps_per_phase;
    let mut c: Vec<f64> = (0..t).map(|s| proto.taps[p + (t - 1 - s) * l]).collect();
    let sum: f64 = c.iter().sum();
    if sum != 0.0 {
        for v in &mut c {
            *v /= sum;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_band_prototype_has_a_pure_delay_branch() {
        let proto = prototype(8000, 16000, 2, 1, 0);
        let b0 = branch(&proto, 2, 0);
        let b1 = branch(&proto, 2, 1);
        let nonzero = |b: &[f64]| b.iter().filter(|v| **v != 0.0).count();
        assert!(
            nonzero(&b0) == 1 || nonzero(&b1) == 1,
            "one branch must be a delay"
        );
    }

    #[test]
    fn delay_stays_under_three_ms() {
        for &(from, to) in &[(8000, 16000), (24000, 8000), (48000, 8000), (44100, 8000)] {
            let g = gcd(from, to);
            let l = (to / g) as usize;
            let proto = prototype(from, to, l, (from / g) as usize, 0);
            let delay_ms = proto.centre as f64 / (from as f64 * l as f64) * 1000.0;
            assert!(delay_ms <= 3.0, "{from}->{to}: {delay_ms} ms");
        }
    }

    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
}
