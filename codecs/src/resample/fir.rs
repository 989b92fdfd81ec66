//! The inner loops: FIR filtering vectorised across output samples, and sample conversion.
//!
//! `fir` computes `out[i] = sum_s coefs[s] * input[i + s]` for a block of
//! outputs at once, so every multiply-add is element-wise and vectorises
//! without reassociating a reduction. On x86_64 with AVX2+FMA the hand-written
//! kernels in `simd_x86.rs` run; elsewhere the portable loops below, which
//! `multiversion` compiles for SSE4.1/NEON and the baseline and picks at run time.

use multiversion::multiversion;

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// `out[i] = sum_s coefs[s] * input[i + s]`; `input.len() >= out.len() + coefs.len() - 1`.
pub fn fir(coefs: &[f32], input: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        return super::simd_x86::fir(coefs, input, out, false);
    }
    fir_portable(coefs, input, out, false)
}

/// Like [`fir`] but adds into `out` (used to sum polyphase sub-filters).
pub fn fir_add(coefs: &[f32], input: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        return super::simd_x86::fir(coefs, input, out, true);
    }
    fir_portable(coefs, input, out, true)
}

/// Dot product of equal-length slices.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        return super::simd_x86::dot(a, b);
    }
    dot_portable(a, b)
}

/// Outputs computed per block; 16 f32 = two AVX registers of accumulators.
const BLOCK: usize = 16;

/// Portable [`fir`] / [`fir_add`] (`add`: accumulate into `out` instead of overwriting).
#[multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1", "aarch64+neon"))]
pub fn fir_portable(coefs: &[f32], input: &[f32], out: &mut [f32], add: bool) {
    let n = out.len();
    debug_assert!(input.len() + 1 >= n + coefs.len());
    let mut i = 0;
    while i + BLOCK <= n {
        let mut acc = [0f32; BLOCK];
        if add {
            acc.copy_from_slice(&out[i..i + BLOCK]);
        }
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
        let mut acc = if add { *o } else { 0.0 };
        for (s, &c) in coefs.iter().enumerate() {
            acc += c * input[j + s];
        }
        *o = acc;
    }
}

/// Portable [`dot`]: eight independent lanes.
#[multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1", "aarch64+neon"))]
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        let x = &a[c * 8..c * 8 + 8];
        let y = &b[c * 8..c * 8 + 8];
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    let mut sum =
        ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
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

/// f32 -> PCM16, rounded to nearest (ties to even) and saturated.
pub fn f32_to_i16(input: &[f32], out: &mut [i16]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        return super::simd_x86::to_i16(input, out);
    }
    f32_to_i16_portable(input, out)
}

/// Portable [`f32_to_i16`].
#[multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1", "aarch64+neon"))]
pub fn f32_to_i16_portable(input: &[f32], out: &mut [i16]) {
    for (o, &s) in out.iter_mut().zip(input) {
        *o = s.round_ties_even().clamp(-32768.0, 32767.0) as i16;
    }
}

/// `out[q * l + p] = round(phases[p * (out.len() / l) + q])`: interleaves
/// polyphase outputs and converts to PCM16 in one pass.
pub fn interleave_to_i16(phases: &[f32], l: usize, out: &mut [i16]) {
    let len = out.len() / l;
    #[cfg(target_arch = "x86_64")]
    if l == 2 && has_avx2_fma() {
        let (a, b) = phases[..2 * len].split_at(len);
        return super::simd_x86::interleave2_to_i16(a, b, out);
    }
    interleave_portable(phases, l, out)
}

/// Portable [`interleave_to_i16`].
#[multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1", "aarch64+neon"))]
pub fn interleave_portable(phases: &[f32], l: usize, out: &mut [i16]) {
    let len = out.len() / l;
    for (q, o) in out.chunks_exact_mut(l).enumerate() {
        for (p, v) in o.iter_mut().enumerate() {
            *v = phases[p * len + q].round_ties_even().clamp(-32768.0, 32767.0) as i16;
        }
    }
}

/// Splits `src` into `m` phases: `dst[j * stride + q] = src[q * m + j]`.
///
/// `dst.len() >= m * stride` and `stride >= src.len().div_ceil(m)`; entries past
/// a phase's end are left as they were (the sub-filters never read them).
pub fn deinterleave(src: &[f32], m: usize, stride: usize, dst: &mut [f32]) {
    match m {
        2 => deinterleave_fixed::<2>(src, stride, dst),
        3 => deinterleave_fixed::<3>(src, stride, dst),
        4 => deinterleave_fixed::<4>(src, stride, dst),
        6 => deinterleave_fixed::<6>(src, stride, dst),
        _ => {
            for (i, &v) in src.iter().enumerate() {
                dst[(i % m) * stride + i / m] = v;
            }
        }
    }
}

#[inline(always)]
fn deinterleave_fixed<const M: usize>(src: &[f32], stride: usize, dst: &mut [f32]) {
    let full = src.len() / M;
    let (phases, _) = dst.split_at_mut(M * stride);
    let cols: [&mut [f32]; M] = {
        let mut rest = phases;
        std::array::from_fn(|_| {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(stride);
            rest = tail;
            head
        })
    };
    for (q, chunk) in src.chunks_exact(M).enumerate().take(full) {
        for j in 0..M {
            cols[j][q] = chunk[j];
        }
    }
    for (j, &v) in src[full * M..].iter().enumerate() {
        cols[j][full] = v;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn deinterleave_matches_the_definition() {
        for m in 2..=7 {
            for len in [0usize, 1, 5, 12, 13, 600, 601] {
                let src: Vec<f32> = (0..len).map(|i| i as f32).collect();
                let stride = len.div_ceil(m);
                let mut dst = vec![-1f32; m * stride];
                super::deinterleave(&src, m, stride, &mut dst);
                for (i, v) in src.iter().enumerate() {
                    assert_eq!(dst[(i % m) * stride + i / m], *v, "m={m} len={len} i={i}");
                }
            }
        }
    }

    use super::*;

    #[test]
    fn every_kernel_matches_naive_for_every_tail_length() {
        for taps in [1usize, 2, 7, 37, 41] {
            let coefs: Vec<f32> = (0..taps).map(|i| (i as f32 * 0.37).sin()).collect();
            let input: Vec<f32> = (0..400).map(|i| (i as f32 * 0.11).cos() * 1000.0).collect();
            for n in [0, 1, 7, 8, 9, 15, 16, 17, 33, 63, 64, 65, 97, 160, 320] {
                let naive: Vec<f32> = (0..n)
                    .map(|i| coefs.iter().enumerate().map(|(s, c)| c * input[i + s]).sum())
                    .collect();
                let mut a = vec![0f32; n];
                fir(&coefs, &input, &mut a);
                let mut b = vec![0f32; n];
                fir_portable(&coefs, &input, &mut b, false);
                let mut c = vec![1f32; n];
                fir_add(&coefs, &input, &mut c);
                for i in 0..n {
                    assert!((a[i] - naive[i]).abs() < 1e-2, "fir taps={taps} n={n} i={i}");
                    assert!((b[i] - naive[i]).abs() < 1e-2, "portable taps={taps} n={n} i={i}");
                    assert!(
                        (c[i] - 1.0 - naive[i]).abs() < 1e-2,
                        "add taps={taps} n={n} i={i}"
                    );
                }
            }
            let d = dot(&coefs, &input[..taps]);
            let e = dot_portable(&coefs, &input[..taps]);
            let naive: f32 = coefs.iter().zip(&input).map(|(a, b)| a * b).sum();
            assert!(
                (d - naive).abs() < 1e-2 && (e - naive).abs() < 1e-2,
                "dot taps={taps}"
            );
        }
    }

    #[test]
    fn conversion_rounds_and_saturates_on_every_path() {
        let src: Vec<f32> = [1.5, -1.5, 40000.0, -40000.0, 0.49, 2.5, -0.51, 7.0]
            .iter()
            .cycle()
            .take(37)
            .copied()
            .collect();
        let expect: Vec<i16> = [2, -2, 32767, -32768, 0, 2, -1, 7]
            .iter()
            .cycle()
            .take(37)
            .copied()
            .collect();
        let mut a = vec![0i16; 37];
        f32_to_i16(&src, &mut a);
        let mut b = vec![0i16; 37];
        f32_to_i16_portable(&src, &mut b);
        assert_eq!(a, expect);
        assert_eq!(b, expect);
        // Interleave: phases [src[..18], src[18..36]].
        let mut c = vec![0i16; 36];
        interleave_to_i16(&src[..36], 2, &mut c);
        let mut d = vec![0i16; 36];
        interleave_portable(&src[..36], 2, &mut d);
        assert_eq!(c, d);
        assert_eq!(c[0], expect[0]);
        assert_eq!(c[1], expect[18]);
    }
}
