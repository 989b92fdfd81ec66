//! ITU-T G.722 at 64 kbit/s: sub-band ADPCM, 16 kHz PCM16 <-> one byte per two samples.
//!
//! Encoder and decoder keep their adaptive state across calls, so a stream can
//! be fed frame by frame. The arithmetic (predictor adaptation, quantiser
//! tables, QMF) follows the ITU fixed-point algorithm as FFmpeg implements it,
//! which makes our output bit-exact with FFmpeg's `adpcm_g722` in both
//! directions (checked by `tests/g722_ffmpeg.rs`). Only the 64 kbit/s mode
//! (6-bit low band) is supported, as in every RTP deployment of G.722.

/// 2^(i/32) in Q11: the inverse-log table used to turn the log scale factor into a linear one.
const INV_LOG2: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834, 2896,
    2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// High-band log scale factor step, indexed by the low bit of the 2-bit code.
const HIGH_LOG_STEP: [i32; 2] = [798, -214];
/// High-band inverse quantiser (2-bit code).
const HIGH_INV_QUANT: [i32; 4] = [-926, -202, 926, 202];
/// Low-band log scale factor step, indexed by the 4-bit truncated code.
const LOW_LOG_STEP: [i32; 16] = [
    -60, 3042, 1198, 538, 334, 172, 58, -30, 3042, 1198, 538, 334, 172, 58, -30, -60,
];
/// Low-band inverse quantiser for the 4-bit code that drives adaptation.
const LOW_INV_QUANT4: [i32; 16] = [
    0, -2557, -1612, -1121, -786, -530, -323, -150, 2557, 1612, 1121, 786, 530, 323, 150, 0,
];
/// Low-band inverse quantiser for the full 6-bit code (64 kbit/s mode).
const LOW_INV_QUANT6: [i32; 64] = [
    -17, -17, -17, -17, -3101, -2738, -2376, -2088, -1873, -1689, -1535, -1399, -1279, -1170, -1072, -982,
    -899, -822, -750, -682, -618, -558, -501, -447, -396, -347, -300, -254, -211, -170, -130, -91, 3101,
    2738, 2376, 2088, 1873, 1689, 1535, 1399, 1279, 1170, 1072, 982, 899, 822, 750, 682, 618, 558, 501, 447,
    396, 347, 300, 254, 211, 170, 130, 91, 54, 17, -54, -17,
];
/// Low-band quantiser decision levels (encoder).
const LOW_QUANT: [i32; 29] = [
    35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940, 1023, 1121, 1219,
    1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919,
];
/// QMF coefficients, ITU-T G.722 table 11 (one half; the filter is symmetric).
const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// QMF delay line: 22 samples of history plus room to append, slid down when full.
const QMF_BUF: usize = 64;
const QMF_HISTORY: usize = 22;

#[inline(always)]
fn clip(v: i32, lo: i32, hi: i32) -> i32 {
    v.clamp(lo, hi)
}

#[inline(always)]
fn clip16(v: i32) -> i32 {
    v.clamp(i16::MIN as i32, i16::MAX as i32)
}

/// Adaptive predictor and quantiser scale of one sub-band.
#[derive(Clone, Debug, Default)]
struct Band {
    s_predictor: i32,
    s_zero: i32,
    /// Signs (true = negative) of the last two partially reconstructed signals.
    part_sign: [bool; 2],
    prev_reconst: i32,
    pole: [i32; 2],
    diff: [i32; 6],
    zero: [i32; 6],
    log_factor: i32,
    scale_factor: i32,
}

impl Band {
    fn new(scale_factor: i32) -> Self {
        Band {
            scale_factor,
            ..Band::default()
        }
    }

    /// Pole and zero predictor adaptation for one quantised difference.
    fn adapt(&mut self, cur_diff: i32) {
        let cur_sign = self.s_zero + cur_diff < 0;
        let sg0 = if cur_sign != self.part_sign[0] { 1 } else { -1 };
        let sg1 = if cur_sign == self.part_sign[1] { 1 } else { -1 };
        self.part_sign[1] = self.part_sign[0];
        self.part_sign[0] = cur_sign;

        self.pole[1] = clip(
            ((sg0 * clip(self.pole[0], -8191, 8191)) >> 5) + (sg1 << 7) + ((self.pole[1] * 127) >> 7),
            -12288,
            12288,
        );
        let limit = 15360 - self.pole[1];
        self.pole[0] = clip(-192 * sg0 + ((self.pole[0] * 255) >> 8), -limit, limit);

        if cur_diff != 0 {
            for (z, d) in self.zero.iter_mut().zip(&self.diff) {
                *z = ((*z * 255) >> 8) + if (d ^ cur_diff) < 0 { -128 } else { 128 };
            }
        } else {
            for z in &mut self.zero {
                *z = (*z * 255) >> 8;
            }
        }
        self.diff.copy_within(0..5, 1);
        self.diff[0] = clip16(cur_diff << 1);

        self.s_zero = self
            .zero
            .iter()
            .zip(&self.diff)
            .rev()
            .map(|(z, d)| (z * d) >> 15)
            .sum();

        let cur_reconst = clip16((self.s_predictor + cur_diff) << 1);
        self.s_predictor = clip16(
            self.s_zero + ((self.pole[0] * cur_reconst) >> 15) + ((self.pole[1] * self.prev_reconst) >> 15),
        );
        self.prev_reconst = cur_reconst;
    }

    fn linear_scale(log_factor: i32) -> i32 {
        let wd1 = INV_LOG2[((log_factor >> 6) & 31) as usize];
        let shift = log_factor >> 11;
        if shift < 0 {
            wd1 >> -shift
        } else {
            wd1 << shift
        }
    }

    fn update_low(&mut self, code4: usize) {
        self.adapt((self.scale_factor * LOW_INV_QUANT4[code4]) >> 10);
        self.log_factor = clip(((self.log_factor * 127) >> 7) + LOW_LOG_STEP[code4], 0, 18432);
        self.scale_factor = Self::linear_scale(self.log_factor - (8 << 11));
    }

    fn update_high(&mut self, dhigh: i32, code2: usize) {
        self.adapt(dhigh);
        self.log_factor = clip(
            ((self.log_factor * 127) >> 7) + HIGH_LOG_STEP[code2 & 1],
            0,
            22528,
        );
        self.scale_factor = Self::linear_scale(self.log_factor - (10 << 11));
    }
}

/// The 24-tap QMF delay line shared by analysis (encoder) and synthesis (decoder).
#[derive(Clone, Debug)]
struct Qmf {
    buf: [i32; QMF_BUF],
    pos: usize,
}

impl Qmf {
    fn new() -> Self {
        Qmf {
            buf: [0; QMF_BUF],
            pos: QMF_HISTORY,
        }
    }

    /// Appends two samples and returns the (odd, even) filter sums over the last 24.
    #[inline(always)]
    fn push(&mut self, a: i32, b: i32) -> (i32, i32) {
        if self.pos + 2 > QMF_BUF {
            self.buf.copy_within(self.pos - QMF_HISTORY..self.pos, 0);
            self.pos = QMF_HISTORY;
        }
        self.buf[self.pos] = a;
        self.buf[self.pos + 1] = b;
        self.pos += 2;
        let w = &self.buf[self.pos - 24..self.pos];
        let mut odd = 0;
        let mut even = 0;
        for i in 0..12 {
            even += w[2 * i] * QMF[i];
            odd += w[2 * i + 1] * QMF[11 - i];
        }
        (odd, even)
    }
}

/// Stateful G.722 decoder: each input byte yields two 16 kHz samples.
#[derive(Clone, Debug)]
pub struct G722Decoder {
    low: Band,
    high: Band,
    qmf: Qmf,
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    /// A decoder in the reset state of the standard.
    pub fn new() -> Self {
        G722Decoder {
            low: Band::new(8),
            high: Band::new(2),
            qmf: Qmf::new(),
        }
    }

    /// Decodes `codes` into `out`; writes `2 * codes.len()` samples (`out` must hold them).
    ///
    /// Returns the number of samples written (the shorter of the two buffers rules).
    pub fn decode(&mut self, codes: &[u8], out: &mut [i16]) -> usize {
        let n = codes.len().min(out.len() / 2);
        for (&code, pair) in codes[..n].iter().zip(out.chunks_exact_mut(2)) {
            let ihigh = (code >> 6) as usize;
            let ilow = (code & 0x3F) as usize;
            let rlow = clip(
                ((self.low.scale_factor * LOW_INV_QUANT6[ilow]) >> 10) + self.low.s_predictor,
                -16384,
                16383,
            );
            self.low.update_low(ilow >> 2);
            let dhigh = (self.high.scale_factor * HIGH_INV_QUANT[ihigh]) >> 10;
            let rhigh = clip(dhigh + self.high.s_predictor, -16384, 16383);
            self.high.update_high(dhigh, ihigh);
            let (odd, even) = self.qmf.push(rlow + rhigh, rlow - rhigh);
            pair[0] = clip16(odd >> 11) as i16;
            pair[1] = clip16(even >> 11) as i16;
        }
        2 * n
    }
}

/// Stateful G.722 encoder: every two 16 kHz samples yield one byte.
#[derive(Clone, Debug)]
pub struct G722Encoder {
    low: Band,
    high: Band,
    qmf: Qmf,
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Encoder {
    /// An encoder in the reset state of the standard.
    pub fn new() -> Self {
        G722Encoder {
            low: Band::new(8),
            high: Band::new(2),
            qmf: Qmf::new(),
        }
    }

    /// Encodes sample pairs from `pcm` into `out`; returns the number of bytes written.
    ///
    /// An odd trailing sample is ignored: streams are fed in 20 ms frames (320 samples).
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        let n = (pcm.len() / 2).min(out.len());
        for (pair, o) in pcm.chunks_exact(2).zip(out[..n].iter_mut()) {
            let (odd, even) = self.qmf.push(pair[0] as i32, pair[1] as i32);
            let xlow = (odd + even) >> 14;
            let xhigh = (odd - even) >> 14;
            let ihigh = encode_high(&self.high, xhigh);
            let ilow = encode_low(&self.low, xlow);
            let dhigh = (self.high.scale_factor * HIGH_INV_QUANT[ihigh]) >> 10;
            self.high.update_high(dhigh, ihigh);
            self.low.update_low(ilow >> 2);
            *o = ((ihigh << 6) | ilow) as u8;
        }
        n
    }
}

fn encode_high(band: &Band, xhigh: i32) -> usize {
    let diff = clip16(xhigh - band.s_predictor);
    let pred = (141 * band.scale_factor) >> 8;
    let magnitude = diff ^ (diff >> 31);
    (magnitude < pred) as usize + 2 * (diff >= 0) as usize
}

fn encode_low(band: &Band, xlow: i32) -> usize {
    let diff = clip16(xlow - band.s_predictor);
    let magnitude = diff ^ (diff >> 31);
    let limit = (magnitude + 1) << 10;
    let mut i = if limit > LOW_QUANT[8] * band.scale_factor {
        9
    } else {
        0
    };
    while i < 29 && limit > LOW_QUANT[i] * band.scale_factor {
        i += 1;
    }
    let base = if diff < 0 {
        if i < 2 {
            63
        } else {
            33
        }
    } else {
        61
    };
    base - i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, freq: f64, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 16000.0).sin()) as i16)
            .collect()
    }

    #[test]
    fn frame_by_frame_equals_one_shot() {
        let pcm = tone(3200, 440.0, 8000.0);
        let mut whole = vec![0u8; 1600];
        G722Encoder::new().encode(&pcm, &mut whole);
        let mut enc = G722Encoder::new();
        let mut framed = vec![0u8; 1600];
        for (i, frame) in pcm.chunks(320).enumerate() {
            enc.encode(frame, &mut framed[i * 160..(i + 1) * 160]);
        }
        assert_eq!(whole, framed);
    }

    #[test]
    fn round_trip_of_a_tone_is_clean() {
        let pcm = tone(16000, 1000.0, 10000.0);
        let mut codes = vec![0u8; 8000];
        G722Encoder::new().encode(&pcm, &mut codes);
        let mut out = vec![0i16; 16000];
        G722Decoder::new().decode(&codes, &mut out);
        // The codec delays by 22 samples (two 24-tap QMFs); compare after it settles.
        let delay = 22;
        let (mut sig, mut err) = (0f64, 0f64);
        for i in 2000..15000 {
            let s = pcm[i] as f64;
            let e = out[i + delay] as f64 - s;
            sig += s * s;
            err += e * e;
        }
        let snr = 10.0 * (sig / err).log10();
        assert!(snr > 30.0, "snr {snr:.1} dB");
    }
}
