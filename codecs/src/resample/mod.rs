//! Streaming resampler: exactly one 20 ms frame in, exactly one 20 ms frame out.
//!
//! Rational polyphase FIR between any two of 8, 12, 16, 24, 32, 44.1 and 48 kHz.
//! Every 20 ms frame is a whole number of samples at each rate, and the phase
//! pattern repeats every frame, so there is never a 638-instead-of-640 frame.
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

/// The rates the resampler (and the rest of voxbridge) accepts.
pub const SUPPORTED_RATES: [u32; 7] = [8000, 12000, 16000, 24000, 32000, 44100, 48000];

/// Samples in one 20 ms frame at `rate`.
pub const fn frame_len(rate: u32) -> usize {
    (rate / 50) as usize
}

fn check_rate(rate: u32) -> Result<(), CodecError> {
    if SUPPORTED_RATES.contains(&rate) {
        Ok(())
    } else {
        Err(CodecError::UnsupportedRate { rate })
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
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
    Rational {
        taps: usize,
        table: Box<[f32]>,
        steps: Box<[(u32, u32)]>,
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
}

impl Kernel {
    fn build(from: u32, to: u32) -> Kernel {
        let in_len = frame_len(from);
        let out_len = frame_len(to);
        if from == to {
            return Kernel {
                from,
                to,
                plan: Plan::Identity,
                history: 0,
                delay: 0.0,
                scratch: 0,
            };
        }
        let g = gcd(from, to);
        let l = (to / g) as usize;
        let m = (from / g) as usize;
        let proto = design::prototype(from, to, l);
        let t = proto.taps_per_phase;
        let history = t - 1;
        let delay = proto.centre as f64 / (from as f64 * l as f64);
        let window = history + in_len;
        let (plan, scratch) = if m == 1 {
            let branches: Box<[Branch]> = (0..l)
                .map(|p| Branch::from_coefs(&design::branch(&proto, l, p)))
                .collect();
            (Plan::Up { branches }, window + out_len + out_len)
        } else if l == 1 {
            let c = design::branch(&proto, 1, 0);
            let subs: Box<[Branch]> = (0..m)
                .map(|j| {
                    let sub: Vec<f64> = c.iter().skip(j).step_by(m).copied().collect();
                    Branch::from_coefs(&sub)
                })
                .collect();
            (Plan::Down { subs }, window + window + m + out_len)
        } else {
            let mut table = Vec::with_capacity(l * t);
            for p in 0..l {
                table.extend(design::branch(&proto, l, p).iter().map(|v| *v as f32));
            }
            let steps = (0..out_len)
                .map(|r| {
                    let pos = r * m;
                    ((pos / l) as u32, (pos % l) as u32)
                })
                .collect();
            (
                Plan::Rational {
                    taps: t,
                    table: table.into(),
                    steps,
                },
                window + out_len,
            )
        };
        Kernel {
            from,
            to,
            plan,
            history,
            delay,
            scratch,
        }
    }

    /// The shared kernel for a pair, designed on first use.
    fn shared(from: u32, to: u32) -> Arc<Kernel> {
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
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz, both in [`SUPPORTED_RATES`].
    pub fn new(from: u32, to: u32) -> Result<Self, CodecError> {
        check_rate(from)?;
        check_rate(to)?;
        let kernel = Kernel::shared(from, to);
        let history = vec![0f32; kernel.history].into_boxed_slice();
        Ok(Resampler { kernel, history })
    }

    /// Input rate, Hz.
    pub fn from_rate(&self) -> u32 {
        self.kernel.from
    }

    /// Output rate, Hz.
    pub fn to_rate(&self) -> u32 {
        self.kernel.to
    }

    /// Input samples per frame.
    pub fn input_len(&self) -> usize {
        frame_len(self.kernel.from)
    }

    /// Output samples per frame.
    pub fn output_len(&self) -> usize {
        frame_len(self.kernel.to)
    }

    /// Group delay from input to output, seconds (constant: the filters are linear-phase).
    pub fn delay_seconds(&self) -> f64 {
        self.kernel.delay
    }

    /// Bytes of state this stream owns (the shared tables are not counted).
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.history.len() * std::mem::size_of::<f32>()
    }

    /// Forgets the signal history (as after a discontinuity), keeping the kernel.
    pub fn reset(&mut self) {
        self.history.fill(0.0);
    }

    /// Resamples exactly one 20 ms frame: `input.len() == input_len()`, `output.len() == output_len()`.
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
        if let Plan::Identity = self.kernel.plan {
            output.copy_from_slice(input);
            return Ok(());
        }
        SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            if guard.len() < self.kernel.scratch {
                guard.resize(self.kernel.scratch, 0.0);
            }
            self.run(input, output, &mut guard);
        });
        Ok(())
    }

    fn run(&mut self, input: &[i16], output: &mut [i16], scratch: &mut [f32]) {
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
            Plan::Rational { taps, table, steps } => {
                let out_f = &mut rest[..out_len];
                for (o, &(start, phase)) in out_f.iter_mut().zip(steps.iter()) {
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
        for &from in &SUPPORTED_RATES {
            for &to in &SUPPORTED_RATES {
                let mut r = Resampler::new(from, to).expect("supported");
                let input = vec![1000i16; frame_len(from)];
                let mut out = vec![0i16; frame_len(to)];
                for _ in 0..60 {
                    r.process(&input, &mut out).expect("exact frame");
                }
                // After the delay has passed, DC passes at unity gain.
                assert!(
                    out.iter().all(|&s| (s - 1000).abs() <= 1),
                    "{from}->{to}: {:?}",
                    &out[..4]
                );
            }
        }
    }

    #[test]
    fn wrong_sizes_and_rates_are_errors() {
        assert_eq!(
            Resampler::new(11025, 8000).err(),
            Some(CodecError::UnsupportedRate { rate: 11025 })
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
