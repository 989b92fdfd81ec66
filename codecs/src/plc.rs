//! Packet loss concealment for waveform codecs (G.711, G.722, PCM): a missing
//! 20 ms frame becomes a faded pitch repetition, not a click or a hole.
//!
//! In the spirit of ITU-T G.711 Appendix I without its 3.75 ms look-ahead
//! delay: the last pitch period is repeated with a decaying offset correction
//! that makes the onset and every period wrap continuous, held at full level
//! for 10 ms, then faded linearly to silence at 60 ms. The first good frame
//! after a loss is cross-faded from the concealment. Works on decoded PCM at
//! the codec's rate; Opus has its own concealment in [`crate::opus`].

/// How long concealment stays at full level.
const HOLD_MS: u32 = 10;
/// When concealment has faded to silence.
const FADE_END_MS: u32 = 60;
/// Pitch search range (2.5 ms .. 15 ms: 66-400 Hz voices).
const MIN_PITCH_MS: f32 = 2.5;
const MAX_PITCH_MS: f32 = 15.0;

/// Concealment state for one stream.
#[derive(Debug, Clone)]
pub struct Concealer {
    rate: u32,
    /// Recent good (or concealed) output, newest last; 2 x max pitch + a margin.
    history: Vec<i16>,
    /// The cyclic excitation for the current loss (one pitch period, smoothed).
    cycle: Vec<f32>,
    /// Read position in `cycle`.
    pos: usize,
    /// Samples concealed in the current loss.
    lost_samples: u32,
}

impl Concealer {
    /// Concealment for a stream at `rate` Hz.
    pub fn new(rate: u32) -> Self {
        let max_pitch = (rate as f32 * MAX_PITCH_MS / 1000.0) as usize;
        Concealer {
            rate,
            history: vec![0; 2 * max_pitch + 8],
            cycle: Vec::with_capacity(max_pitch),
            pos: 0,
            lost_samples: 0,
        }
    }

    /// Whether the last frame handed out was concealment.
    pub fn in_loss(&self) -> bool {
        self.lost_samples > 0
    }

    /// Passes a good frame through; after a loss it is cross-faded in place from the concealment.
    pub fn good(&mut self, frame: &mut [i16]) {
        if self.lost_samples > 0 {
            // A good frame may be shorter than 1 ms (a tiny RTP payload): fade over what there is.
            let fade = (self.cycle.len() / 4)
                .max(self.rate as usize / 1000)
                .min(frame.len());
            for (i, s) in frame.iter_mut().take(fade).enumerate() {
                let w = (i + 1) as f32 / (fade + 1) as f32;
                let synth = self.next_synth();
                *s = (w * *s as f32 + (1.0 - w) * synth)
                    .round()
                    .clamp(-32768.0, 32767.0) as i16;
            }
            self.lost_samples = 0;
        }
        self.push_history(frame);
    }

    /// Fills `out` with concealment for a missing frame.
    pub fn conceal(&mut self, out: &mut [i16]) {
        if self.lost_samples == 0 {
            self.start_loss();
        }
        for s in out.iter_mut() {
            *s = self.next_synth().round().clamp(-32768.0, 32767.0) as i16;
        }
        self.push_history(out);
    }

    fn gain_at(&self, lost: u32) -> f32 {
        let hold = self.rate * HOLD_MS / 1000;
        let end = self.rate * FADE_END_MS / 1000;
        if lost < hold {
            1.0
        } else if lost >= end {
            0.0
        } else {
            1.0 - (lost - hold) as f32 / (end - hold) as f32
        }
    }

    fn next_synth(&mut self) -> f32 {
        if self.cycle.is_empty() {
            return 0.0;
        }
        let v = self.cycle[self.pos] * self.gain_at(self.lost_samples);
        self.pos = (self.pos + 1) % self.cycle.len();
        self.lost_samples = self.lost_samples.saturating_add(1);
        v
    }

    fn push_history(&mut self, frame: &[i16]) {
        let n = self.history.len();
        if frame.len() >= n {
            self.history.copy_from_slice(&frame[frame.len() - n..]);
        } else {
            self.history.copy_within(frame.len().., 0);
            self.history[n - frame.len()..].copy_from_slice(frame);
        }
    }

    fn start_loss(&mut self) {
        let p = self.find_pitch();
        let h = &self.history;
        let n = h.len();
        self.cycle.clear();
        self.cycle.extend(h[n - p..].iter().map(|&s| s as f32));
        // Continuity: the repetition starts at h[n-p], whose true predecessor is
        // h[n-p-1]; what precedes it now is h[n-1]. Add the difference, decaying
        // over a quarter period, so onset and every wrap are smooth.
        let d = h[n - 1] as f32 - h[n - p - 1] as f32;
        let ramp = (p / 4).max(1);
        for (j, v) in self.cycle.iter_mut().take(ramp).enumerate() {
            *v += d * (1.0 - (j + 1) as f32 / (ramp + 1) as f32);
        }
        self.pos = 0;
    }

    /// Period (samples) maximising normalised autocorrelation of the recent history.
    fn find_pitch(&self) -> usize {
        let min_p = (self.rate as f32 * MIN_PITCH_MS / 1000.0) as usize;
        let max_p = (self.rate as f32 * MAX_PITCH_MS / 1000.0) as usize;
        let h = &self.history;
        let n = h.len();
        let win = max_p;
        let tail = &h[n - win..];
        let mut best = (f64::MIN, max_p);
        for p in min_p..=max_p {
            let past = &h[n - win - p..n - p];
            let (mut xy, mut yy) = (0f64, 0f64);
            for (&a, &b) in tail.iter().zip(past) {
                xy += a as f64 * b as f64;
                yy += b as f64 * b as f64;
            }
            let score = if yy > 0.0 { xy / yy.sqrt() } else { 0.0 };
            if score > best.0 {
                best = (score, p);
            }
        }
        best.1
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_good_frame_shorter_than_the_fade_after_a_loss_is_fine() {
        let mut c = super::Concealer::new(8000);
        c.good(&mut [1000; 160]);
        c.conceal(&mut [0; 160]);
        let mut tiny = [500i16; 3];
        c.good(&mut tiny);
        assert!(!c.in_loss());
    }

    use super::*;

    fn voiced(n: usize, rate: u32, f0: f32) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                let v = (2.0 * std::f32::consts::PI * f0 * t).sin() * 6000.0
                    + (2.0 * std::f32::consts::PI * 2.0 * f0 * t).sin() * 3000.0
                    + (2.0 * std::f32::consts::PI * 3.0 * f0 * t).sin() * 1500.0;
                v as i16
            })
            .collect()
    }

    fn max_step(x: &[i16]) -> i32 {
        x.windows(2)
            .map(|w| (w[1] as i32 - w[0] as i32).abs())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn a_lost_frame_continues_the_waveform_without_a_click() {
        let rate = 8000;
        let sig = voiced(1600, rate, 125.0);
        let mut plc = Concealer::new(rate);
        let mut out = Vec::new();
        for (i, f) in sig.chunks(160).enumerate() {
            let mut frame = f.to_vec();
            if i == 5 {
                plc.conceal(&mut frame);
            } else {
                plc.good(&mut frame);
            }
            out.extend_from_slice(&frame);
        }
        let natural = max_step(&sig);
        let stitched = max_step(&out[700..1000]);
        assert!(
            stitched <= natural * 3 / 2,
            "step {stitched} vs natural {natural}"
        );
        // A periodic signal is concealed closely: SNR over the lost frame.
        let (mut s, mut e) = (0f64, 0f64);
        for i in 800..960 {
            s += (sig[i] as f64).powi(2);
            e += (sig[i] as f64 - out[i] as f64).powi(2);
        }
        assert!(10.0 * (s / e).log10() > 10.0, "concealment SNR too low");
    }

    #[test]
    fn a_long_loss_fades_to_silence() {
        let rate = 16000;
        let sig = voiced(3200, rate, 200.0);
        let mut plc = Concealer::new(rate);
        for f in sig.chunks(320) {
            plc.good(&mut f.to_vec());
        }
        let mut frame = vec![0i16; 320];
        let mut peaks = Vec::new();
        for _ in 0..4 {
            plc.conceal(&mut frame);
            peaks.push(frame.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0));
        }
        assert!(peaks[0] > 5000, "first frame keeps level: {peaks:?}");
        assert!(peaks[1] < peaks[0] && peaks[2] < peaks[1], "fading: {peaks:?}");
        assert_eq!(peaks[3], 0, "silent after 60 ms: {peaks:?}");
    }
}
