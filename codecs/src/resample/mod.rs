//! Streaming resampler: one 20 ms frame in, one 20 ms frame out.
//!
//! Rational polyphase FIR between any two rates from 8 to 48 kHz. Where a
//! 20 ms frame is a whole number of samples at both rates (8, 12, 16, 22.05,
//! 24, 32, 44.1 and 48 kHz) every frame has the same length and the same phase
//! pattern, so there is never a 638-instead-of-640 frame. Where it is not
//! (11,025 Hz: 220.5 samples per 20 ms) frame `k` holds the samples from
//! `floor(k * rate / 50)` up to `floor((k + 1) * rate / 50)`, so frames
//! alternate 220 and 221 samples and the pattern repeats every few frames
//! ([`frame_len_at`]); time stays exact, only the lengths vary.
//! The delay is constant (linear phase) and reported by [`Resampler::delay_seconds`].
//!
//! Why our own instead of rubato or libsoxr (measured in `benches/`): per-stream
//! state is the filter history only (under 1 KiB for every telephony pair; the
//! tables are shared by all streams of a rate pair), integer ratios use
//! dedicated kernels (a half-band/Nyquist branch costs a copy, decimation runs
//! as unit-stride polyphase sub-filters), and nothing allocates per frame.
//! rubato's FFT resampler keeps ~52 KB per stream and libsoxr ~107 KB, which
//! is what makes them slow at 1,000 concurrent calls.

mod design;
mod fir;
#[cfg(target_arch = "x86_64")]
mod simd_x86;

pub use design::{PASS_EDGE, STOPBAND_DB, STOP_EDGE};

use crate::error::CodecError;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The rates audio software uses between 8 and 48 kHz. Their pairs' filter
/// tables are designed once per process and shared; the daemon accepts bot
/// audio at these rates only (a finite set, so a bot cannot make it design
/// and keep tables without end).
pub const STANDARD_RATES: [u32; 9] = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];

/// Lowest rate the resampler accepts, Hz.
pub const MIN_RATE: u32 = 8000;
/// Highest rate the resampler accepts, Hz.
pub const MAX_RATE: u32 = 48000;
/// Most polyphase branches a rate pair may need (`to / gcd(from, to)`); it
/// bounds a pair's table to a few MB. Every pair of [`STANDARD_RATES`] needs
/// at most 640; a pair like 8,001 -> 8,000 Hz would need 8,000.
pub const MAX_PHASES: u32 = 2048;

/// Samples in a 20 ms frame at `rate` when that is a whole number (rounded
/// down otherwise; see [`frame_len_at`] and [`max_frame_len`]).
pub const fn frame_len(rate: u32) -> usize {
    (rate / 50) as usize
}

/// Samples in 20 ms frame number `index` of a stream at `rate`: the samples
/// from `floor(index * rate / 50)` up to `floor((index + 1) * rate / 50)`.
/// The same for every frame where `rate` is a multiple of 50 Hz; 220 and 221
/// in turn at 11,025 Hz.
pub const fn frame_len_at(rate: u32, index: u64) -> usize {
    let r = rate as u64;
    (((index + 1) * r) / 50 - (index * r) / 50) as usize
}

/// The longest 20 ms frame at `rate` (what a buffer for one frame needs).
pub const fn max_frame_len(rate: u32) -> usize {
    rate.div_ceil(50) as usize
}

/// Frames after which the frame lengths at `rate` repeat (1 when `rate` is a
/// multiple of 50 Hz, 2 at 11,025 Hz).
pub const fn frame_period(rate: u32) -> u32 {
    50 / gcd(rate, 50)
}

/// Whether `rate` is one the resampler accepts ([`MIN_RATE`]..=[`MAX_RATE`]).
pub const fn is_supported_rate(rate: u32) -> bool {
    rate >= MIN_RATE && rate <= MAX_RATE
}

fn check_rate(rate: u32) -> Result<(), CodecError> {
    if is_supported_rate(rate) {
        Ok(())
    } else {
        Err(CodecError::UnsupportedRate { rate })
    }
}

const fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

const fn lcm(a: u32, b: u32) -> u32 {
    a / gcd(a, b) * b
}

/// One polyphase branch or sub-filter, with leading and trailing zero taps trimmed.
#[derive(Debug)]
enum Branch {
    /// A single non-zero tap: the branch is a (scaled) delay.
    Delay { offset: usize, gain: f32 },
    /// A real convolution starting `offset` samples into the window.
    Fir { offset: usize, coefs: Box<[f32]> },
}

impl Branch {
    fn from_coefs(c: &[f64]) -> Branch {
        let first = c.iter().position(|v| *v != 0.0).unwrap_or(0);
        let last = c.iter().rposition(|v| *v != 0.0).unwrap_or(0);
        if first == last {
            Branch::Delay {
                offset: first,
                gain: c.get(first).copied().unwrap_or(0.0) as f32,
            }
        } else {
            Branch::Fir {
                offset: first,
                coefs: c[first..=last].iter().map(|v| *v as f32).collect(),
            }
        }
    }
}

/// How a rate pair is computed; built once per pair and shared by all its streams.
#[derive(Debug)]
enum Plan {
    /// Same rate: copy.
    Identity,
    /// Integer up-sampling by `branches.len()`: each branch produces every L-th output.
    Up { branches: Box<[Branch]> },
    /// Integer down-sampling by `subs.len()`: the input is split into M phases,
    /// each filtered by its sub-filter at the output rate, and summed.
    Down { subs: Box<[Branch]> },
    /// General L/M: a dot product per output with that output's phase.
    /// `steps` holds (window start, phase) for every output of one period of
    /// the framing pattern; frame `k` of the period uses
    /// `steps[frame_steps[k]..frame_steps[k + 1]]`.
    Rational {
        taps: usize,
        table: Box<[f32]>,
        steps: Box<[(u32, u32)]>,
        frame_steps: Box<[u32]>,
    },
}

/// Shared, immutable part of a resampler: the plan and its sizes.
#[derive(Debug)]
struct Kernel {
    from: u32,
    to: u32,
    plan: Plan,
    /// Samples of history kept per stream (`taps_per_phase - 1`).
    history: usize,
    /// Delay from input to output, seconds.
    delay: f64,
    /// Scratch floats one frame needs.
    scratch: usize,
    /// Frames after which both sides' frame lengths repeat.
    period: u32,
}

impl Kernel {
    fn build(from: u32, to: u32) -> Kernel {
        let period = lcm(frame_period(from), frame_period(to));
        if from == to {
            return Kernel {
                from,
                to,
                plan: Plan::Identity,
                history: 0,
                delay: 0.0,
                scratch: 0,
                period,
            };
        }
        let g = gcd(from, to);
        let l = (to / g) as usize;
        let m = (from / g) as usize;
        if period > 1 || (l > 1 && m > 1) {
            // Frame lengths vary, or the ratio is not an integer: the general kernel.
            return Self::rational(from, to, l, m, period);
        }
        let proto = design::prototype(from, to, l, m, 0);
        let t = proto.taps_per_phase;
        let in_len = frame_len(from);
        let out_len = frame_len(to);
        let history = t - 1;
        let delay = proto.centre as f64 / (from as f64 * l as f64);
        let window = history + in_len;
        let (plan, scratch) = if m == 1 {
            let branches: Box<[Branch]> = (0..l)
                .map(|p| Branch::from_coefs(&design::branch(&proto, l, p)))
                .collect();
            (Plan::Up { branches }, window + out_len + out_len)
        } else {
            // l == 1: an integer down-sampling (the other cases left above).
            let c = design::branch(&proto, 1, 0);
            let subs: Box<[Branch]> = (0..m)
                .map(|j| {
                    let sub: Vec<f64> = c.iter().skip(j).step_by(m).copied().collect();
                    Branch::from_coefs(&sub)
                })
                .collect();
            (Plan::Down { subs }, window + window + m + out_len)
        };
        Kernel {
            from,
            to,
            plan,
            history,
            delay,
            scratch,
            period,
        }
    }

    /// The general L/M kernel over one period of the framing pattern.
    ///
    /// Output `r` of the period (counted from its start) is the dot product of
    /// its phase `(r * m) % l` with the input ending at sample `(r * m) / l`
    /// (counted likewise). A frame's window is the kept history followed by
    /// the frame's input; where frame lengths vary, an output near a frame
    /// edge can reach a sample or two before the history the integer-length
    /// design keeps, or past the frame's end, so the history grows by what
    /// the worst frame needs and the delay by whole input samples to match.
    fn rational(from: u32, to: u32, l: usize, m: usize, period: u32) -> Kernel {
        let frames = period as u64;
        let in_offset = |k: u64| (k * from as u64 / 50) as i64;
        let out_offset = |k: u64| (k * to as u64 / 50) as i64;
        // Over every output: how far its input lies before its frame's first
        // sample (`lead`) and past its frame's last one (`lag`).
        let (mut lead, mut lag) = (0i64, i64::MIN);
        for k in 0..frames {
            for r in out_offset(k)..out_offset(k + 1) {
                let newest = r * m as i64 / l as i64;
                lead = lead.max(in_offset(k) - newest);
                lag = lag.max(newest - (in_offset(k + 1) - 1));
            }
        }
        let shift = lead.max(0) as usize;
        let extra = lag.max(0) as usize;
        let proto = &design::prototype(from, to, l, m, extra);
        let t = proto.taps_per_phase;
        let history = t - 1 + shift + extra;
        let mut steps = Vec::with_capacity(out_offset(frames) as usize);
        let mut frame_steps = Vec::with_capacity(period as usize + 1);
        for k in 0..frames {
            frame_steps.push(steps.len() as u32);
            for r in out_offset(k)..out_offset(k + 1) {
                let pos = r * m as i64;
                // Window index of the output's oldest tap.
                let start = pos / l as i64 - in_offset(k) + shift as i64;
                steps.push((start as u32, (pos % l as i64) as u32));
            }
        }
        frame_steps.push(steps.len() as u32);
        let mut table = Vec::with_capacity(l * t);
        for p in 0..l {
            table.extend(design::branch(proto, l, p).iter().map(|v| *v as f32));
        }
        // The newest sample an output uses lies `extra` input samples further
        // back than in the integer-length design.
        let delay = proto.centre as f64 / (from as f64 * l as f64) + extra as f64 / from as f64;
        let scratch = history + max_frame_len(from) + max_frame_len(to);
        Kernel {
            from,
            to,
            plan: Plan::Rational {
                taps: t,
                table: table.into(),
                steps: steps.into(),
                frame_steps: frame_steps.into(),
            },
            history,
            delay,
            scratch,
            period,
        }
    }

    /// The kernel for a pair: designed on first use and shared when both
    /// rates are standard ones, designed for this stream alone otherwise (so
    /// that unusual rates cannot fill the cache).
    fn shared(from: u32, to: u32) -> Arc<Kernel> {
        if !(STANDARD_RATES.contains(&from) && STANDARD_RATES.contains(&to)) {
            return Arc::new(Kernel::build(from, to));
        }
        type Cache = Mutex<HashMap<(u32, u32), Arc<Kernel>>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        // A poisoned lock only means another thread panicked mid-insert of an
        // immutable value; the map is still valid.
        let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((from, to))
            .or_insert_with(|| Arc::new(Kernel::build(from, to)))
            .clone()
    }
}

thread_local! {
    /// Per-thread working buffer: hot in L1 whichever of 1,000 streams runs next,
    /// unlike a per-stream buffer that would be cold every frame.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A streaming resampler for one direction of one call.
///
/// Per-stream state is the filter history (f32) and a handle on the shared
/// kernel: 4 x (taps_per_phase - 1) bytes, e.g. 164 B for 8k->16k, 480 B for 24k->8k.
#[derive(Debug, Clone)]
pub struct Resampler {
    kernel: Arc<Kernel>,
    history: Box<[f32]>,
    /// Index of the next frame within the framing period.
    frame: u32,
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz, both from [`MIN_RATE`] to
    /// [`MAX_RATE`], whose ratio needs at most [`MAX_PHASES`] filter phases.
    pub fn new(from: u32, to: u32) -> Result<Self, CodecError> {
        check_rate(from)?;
        check_rate(to)?;
        let phases = to / gcd(from, to);
        if phases > MAX_PHASES {
            return Err(CodecError::UnsupportedRatio { from, to, phases });
        }
        let kernel = Kernel::shared(from, to);
        let history = vec![0f32; kernel.history].into_boxed_slice();
        Ok(Resampler {
            kernel,
            history,
            frame: 0,
        })
    }

    /// Input rate, Hz.
    pub fn from_rate(&self) -> u32 {
        self.kernel.from
    }

    /// Output rate, Hz.
    pub fn to_rate(&self) -> u32 {
        self.kernel.to
    }

    /// Input samples the next frame takes (the same every frame unless the
    /// input rate is not a multiple of 50 Hz; see [`frame_len_at`]).
    pub fn input_len(&self) -> usize {
        frame_len_at(self.kernel.from, self.frame as u64)
    }

    /// Output samples the next frame gives.
    pub fn output_len(&self) -> usize {
        frame_len_at(self.kernel.to, self.frame as u64)
    }

    /// The longest input frame ([`max_frame_len`] of the input rate).
    pub fn max_input_len(&self) -> usize {
        max_frame_len(self.kernel.from)
    }

    /// The longest output frame.
    pub fn max_output_len(&self) -> usize {
        max_frame_len(self.kernel.to)
    }

    /// Group delay from input to output, seconds (constant: the filters are linear-phase).
    pub fn delay_seconds(&self) -> f64 {
        self.kernel.delay
    }

    /// Bytes of state this stream owns (the shared tables are not counted).
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.history.len() * std::mem::size_of::<f32>()
    }

    /// Forgets the signal history (as after a discontinuity), keeping the
    /// kernel; the next frame is frame 0 of the framing pattern.
    pub fn reset(&mut self) {
        self.history.fill(0.0);
        self.frame = 0;
    }

    /// Resamples exactly one 20 ms frame: `input.len() == input_len()`,
    /// `output.len() == output_len()`, both taken before the call.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<(), CodecError> {
        if input.len() != self.input_len() {
            return Err(CodecError::FrameLength {
                expected: self.input_len(),
                got: input.len(),
            });
        }
        if output.len() != self.output_len() {
            return Err(CodecError::FrameLength {
                expected: self.output_len(),
                got: output.len(),
            });
        }
        let frame = self.frame;
        self.frame = (frame + 1) % self.kernel.period;
        if let Plan::Identity = self.kernel.plan {
            output.copy_from_slice(input);
            return Ok(());
        }
        SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            if guard.len() < self.kernel.scratch {
                guard.resize(self.kernel.scratch, 0.0);
            }
            self.run(input, output, frame as usize, &mut guard);
        });
        Ok(())
    }

    fn run(&mut self, input: &[i16], output: &mut [i16], frame: usize, scratch: &mut [f32]) {
        let k = &*self.kernel;
        let h = k.history;
        let in_len = input.len();
        let out_len = output.len();
        let (window, rest) = scratch.split_at_mut(h + in_len);
        window[..h].copy_from_slice(&self.history);
        fir::i16_to_f32(input, &mut window[h..]);
        match &k.plan {
            Plan::Identity => {}
            Plan::Up { branches } => {
                let l = branches.len();
                let phase_len = in_len;
                let (per_phase, rest) = rest.split_at_mut(out_len);
                for (p, b) in branches.iter().enumerate() {
                    let dst = &mut per_phase[p * phase_len..(p + 1) * phase_len];
                    apply_branch(b, window, dst, false);
                }
                let _ = rest;
                fir::interleave_to_i16(per_phase, l, output);
            }
            Plan::Down { subs } => {
                let m = subs.len();
                let stride = window.len().div_ceil(m);
                let (split, rest) = rest.split_at_mut(stride * m);
                fir::deinterleave(window, m, stride, split);
                let out_f = &mut rest[..out_len];
                for (j, sub) in subs.iter().enumerate() {
                    apply_branch(sub, &split[j * stride..(j + 1) * stride], out_f, j > 0);
                }
                fir::f32_to_i16(out_f, output);
            }
            Plan::Rational {
                taps,
                table,
                steps,
                frame_steps,
            } => {
                let out_f = &mut rest[..out_len];
                let first = frame_steps[frame] as usize;
                let steps = &steps[first..first + out_len];
                for (o, &(start, phase)) in out_f.iter_mut().zip(steps) {
                    let c = &table[phase as usize * taps..(phase as usize + 1) * taps];
                    let w = &window[start as usize..start as usize + taps];
                    *o = fir::dot(c, w);
                }
                fir::f32_to_i16(out_f, output);
            }
        }
        self.history.copy_from_slice(&window[in_len..]);
    }
}

/// Runs one branch over `input` into `out` (overwriting, or adding when `add`).
fn apply_branch(b: &Branch, input: &[f32], out: &mut [f32], add: bool) {
    match b {
        Branch::Delay { offset, gain } => {
            let src = &input[*offset..*offset + out.len()];
            if add {
                for (o, s) in out.iter_mut().zip(src) {
                    *o += gain * s;
                }
            } else if *gain == 1.0 {
                out.copy_from_slice(src);
            } else {
                for (o, s) in out.iter_mut().zip(src) {
                    *o = gain * s;
                }
            }
        }
        Branch::Fir { offset, coefs } => {
            let src = &input[*offset..];
            if add {
                fir::fir_add(coefs, src, out);
            } else {
                fir::fir(coefs, src, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_gives_exact_frames_forever() {
        for &from in &STANDARD_RATES {
            for &to in &STANDARD_RATES {
                let mut r = Resampler::new(from, to).expect("supported");
                let input = vec![1000i16; max_frame_len(from)];
                let mut out = vec![0i16; max_frame_len(to)];
                let (mut took, mut gave) = (0usize, 0usize);
                for k in 0..60u64 {
                    let (i, o) = (r.input_len(), r.output_len());
                    assert_eq!((i, o), (frame_len_at(from, k), frame_len_at(to, k)));
                    r.process(&input[..i], &mut out[..o]).expect("exact frame");
                    // After the delay has passed, DC passes at unity gain.
                    if k >= 50 {
                        assert!(
                            out[..o].iter().all(|&s| (s - 1000).abs() <= 1),
                            "{from}->{to} frame {k}: {:?}",
                            &out[..4]
                        );
                    }
                    took += i;
                    gave += o;
                }
                // 60 frames are 1.2 s at both rates, to the sample.
                assert_eq!((took, gave), (from as usize * 6 / 5, to as usize * 6 / 5));
            }
        }
    }

    #[test]
    fn frames_at_11025_alternate_and_keep_exact_time() {
        assert_eq!(frame_period(11025), 2);
        assert_eq!(frame_period(22050), 1);
        assert_eq!((frame_len_at(11025, 0), frame_len_at(11025, 1)), (220, 221));
        assert_eq!(max_frame_len(11025), 221);
        let total: usize = (0..50).map(|k| frame_len_at(11025, k)).sum();
        assert_eq!(total, 11025);
        let odd: usize = (0..50).map(|k| frame_len_at(8001, k)).sum();
        assert_eq!(odd, 8001, "any rate: 50 frames are one second");
    }

    #[test]
    fn wrong_sizes_and_rates_are_errors() {
        assert_eq!(
            Resampler::new(7999, 8000).err(),
            Some(CodecError::UnsupportedRate { rate: 7999 })
        );
        assert_eq!(
            Resampler::new(8000, 48001).err(),
            Some(CodecError::UnsupportedRate { rate: 48001 })
        );
        assert_eq!(
            Resampler::new(8001, 8000).err(),
            Some(CodecError::UnsupportedRatio {
                from: 8001,
                to: 8000,
                phases: 8000
            })
        );
        let mut r = Resampler::new(8000, 16000).expect("supported");
        let mut out = [0i16; 320];
        assert!(matches!(
            r.process(&[0; 159], &mut out),
            Err(CodecError::FrameLength { .. })
        ));
    }

    #[test]
    fn per_stream_state_is_small() {
        for &(a, b) in &[
            (8000, 16000),
            (16000, 8000),
            (24000, 8000),
            (48000, 16000),
            (16000, 48000),
        ] {
            let r = Resampler::new(a, b).expect("supported");
            assert!(r.state_bytes() < 1024, "{a}->{b}: {} bytes", r.state_bytes());
        }
    }
}
