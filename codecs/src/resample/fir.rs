//! The inner loops: FIR filtering vectorised across output samples, and sample conversion.
//!
//! `fir` computes `out[i] = sum_s coefs[s] * input[i + s]` for a block of
//! outputs at once, so every multiply-add is element-wise and the compiler
//! vectorises it without reassociating a reduction. `multiversion` compiles
//! each kernel for AVX2+FMA, SSE4.1 and the baseline, and picks one at run time
//! (safe code: the crate does the CPU-feature check).

use multiversion::multiversion;

/// Outputs computed per block; 16 f32 = two AVX registers of accumulators.
const BLOCK: usize = 16;

/// `out[i] = sum_s coefs[s] * input[i + s]`; `input.len() >= out.len() + coefs.len() - 1`.
#[multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1", "aarch64+neon"))]
pub fn fir(coefs: &[f32], input: &[f32], out: &mut [f32]) {
    let n = out.len();
    debug_assert!(input.len() + 1 >= n + coefs.len());
    let mut i = 0;
    while i + BLOCK <= n {
        let mut acc = [0f32; BLOCK];
        for (s, &c) in coefs.iter().enumerate() {
            let x = &input[i + s..i + s + BLOCK];
            for k in 0..BLOCK {
                acc[k] += c * x[k];
            }
        }
        out[i..i + BLOCK].copy_from_slice(&acc);
        i += BLOCK;
    }
    for (j, o) in out.iter_mut().enumerate().skip(i) {
        let mut acc = 0f32;
        for (s, &c) in coefs.iter().enumerate() {
            acc += c * input[j + s];
        }
        *o = acc;
    }
}

/// Like [`fir`] but adds into `out` (used to sum polyphase sub-filters).
#[multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1", "aarch64+neon"))]
pub fn fir_add(coefs: &[f32], input: &[f32], out: &mut [f32]) {
    let n = out.len();
    let mut i = 0;
    while i + BLOCK <= n {
        let mut acc = [0f32; BLOCK];
        acc.copy_from_slice(&out[i..i + BLOCK]);
        for (s, &c) in coefs.iter().enumerate() {
            let x = &input[i + s..i + s + BLOCK];
            for k in 0..BLOCK {
                acc[k] += c * x[k];
            }
        }
        out[i..i + BLOCK].copy_from_slice(&acc);
        i += BLOCK;
    }
    for (j, o) in out.iter_mut().enumerate().skip(i) {
        let mut acc = *o;
        for (s, &c) in coefs.iter().enumerate() {
            acc += c * input[j + s];
        }
        *o = acc;
    }
}

/// Dot product with eight independent lanes (rational ratios, one phase per output).
#[multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1", "aarch64+neon"))]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        let x = &a[c * 8..c * 8 + 8];
        let y = &b[c * 8..c * 8 + 8];
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    let mut sum = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    for k in chunks * 8..a.len() {
        sum += a[k] * b[k];
    }
    sum
}

/// PCM16 -> f32 (same scale: the filters have unity gain, no normalisation needed).
#[multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1", "aarch64+neon"))]
pub fn i16_to_f32(input: &[i16], out: &mut [f32]) {
    for (o, &s) in out.iter_mut().zip(input) {
        *o = s as f32;
    }
}

/// f32 -> PCM16, rounded to nearest and saturated.
#[multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1", "aarch64+neon"))]
pub fn f32_to_i16(input: &[f32], out: &mut [i16]) {
    for (o, &s) in out.iter_mut().zip(input) {
        // `as` saturates; adding the rounding offset then truncating toward
        // -inf via floor keeps it one vector instruction on SSE4.1/AVX2.
        *o = (s + 0.5).floor().clamp(-32768.0, 32767.0) as i16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fir_matches_naive_for_every_tail_length() {
        let coefs: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let input: Vec<f32> = (0..200).map(|i| (i as f32 * 0.11).cos() * 1000.0).collect();
        for n in [0, 1, 15, 16, 17, 33, 160] {
            let mut out = vec![0f32; n];
            fir(&coefs, &input, &mut out);
            for (i, o) in out.iter().enumerate() {
                let naive: f32 = coefs.iter().enumerate().map(|(s, c)| c * input[i + s]).sum();
                assert!((o - naive).abs() < 1e-2, "n={n} i={i}");
            }
        }
    }

    #[test]
    fn conversion_rounds_and_saturates() {
        let mut out = [0i16; 5];
        f32_to_i16(&[1.5, -1.5, 40000.0, -40000.0, 0.49], &mut out);
        assert_eq!(out, [2, -1, 32767, -32768, 0]);
    }
}
