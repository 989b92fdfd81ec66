//! AVX2+FMA kernels for the resampler's inner loops (x86_64 only).
//!
//! Hand-written because the portable loop in `fir.rs` is bound by the latency
//! of its two accumulator chains; here eight independent FMA chains cover 64
//! outputs per pass, which measured about 2x faster per frame on this
//! machine's EPYC (`cargo bench --bench codecs -- resample_frame`).
//! Callers reach these only through `fir::Simd::detect()`, which checks the
//! CPU features once; the safe wrappers check every length they rely on.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

/// `out[i] (+)= sum_s coefs[s] * input[i + s]` on AVX2+FMA.
///
/// # Panics
/// If `input` is shorter than `out.len() + coefs.len() - 1` (a bug in the caller, never input-derived).
pub fn fir(coefs: &[f32], input: &[f32], out: &mut [f32], add: bool) {
    if out.is_empty() || coefs.is_empty() {
        return;
    }
    assert!(input.len() + 1 >= out.len() + coefs.len(), "fir window too short");
    assert!(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"));
    // SAFETY: the CPU supports AVX2 and FMA (checked above), and every
    // pointer offset below stays within `input`/`out` by the length check.
    unsafe { fir_avx2(coefs, input, out, add) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn fir_avx2(coefs: &[f32], input: &[f32], out: &mut [f32], add: bool) {
    let n = out.len();
    let t = coefs.len();
    let x = input.as_ptr();
    let c = coefs.as_ptr();
    let o = out.as_mut_ptr();
    let mut i = 0;
    // SAFETY (all blocks): for output i+k (k < block) and tap s < t the input
    // index is i+k+s <= n-1+t-1 < input.len(); stores are at i+k < n.
    while i + 64 <= n {
        let mut acc = if add {
            [
                _mm256_loadu_ps(o.add(i)),
                _mm256_loadu_ps(o.add(i + 8)),
                _mm256_loadu_ps(o.add(i + 16)),
                _mm256_loadu_ps(o.add(i + 24)),
                _mm256_loadu_ps(o.add(i + 32)),
                _mm256_loadu_ps(o.add(i + 40)),
                _mm256_loadu_ps(o.add(i + 48)),
                _mm256_loadu_ps(o.add(i + 56)),
            ]
        } else {
            [_mm256_setzero_ps(); 8]
        };
        for s in 0..t {
            let k = _mm256_set1_ps(*c.add(s));
            let p = x.add(i + s);
            acc[0] = _mm256_fmadd_ps(k, _mm256_loadu_ps(p), acc[0]);
            acc[1] = _mm256_fmadd_ps(k, _mm256_loadu_ps(p.add(8)), acc[1]);
            acc[2] = _mm256_fmadd_ps(k, _mm256_loadu_ps(p.add(16)), acc[2]);
            acc[3] = _mm256_fmadd_ps(k, _mm256_loadu_ps(p.add(24)), acc[3]);
            acc[4] = _mm256_fmadd_ps(k, _mm256_loadu_ps(p.add(32)), acc[4]);
            acc[5] = _mm256_fmadd_ps(k, _mm256_loadu_ps(p.add(40)), acc[5]);
            acc[6] = _mm256_fmadd_ps(k, _mm256_loadu_ps(p.add(48)), acc[6]);
            acc[7] = _mm256_fmadd_ps(k, _mm256_loadu_ps(p.add(56)), acc[7]);
        }
        for (j, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(o.add(i + 8 * j), *a);
        }
        i += 64;
    }
    while i + 16 <= n {
        let (mut a0, mut a1) = if add {
            (_mm256_loadu_ps(o.add(i)), _mm256_loadu_ps(o.add(i + 8)))
        } else {
            (_mm256_setzero_ps(), _mm256_setzero_ps())
        };
        // Two chains per half, summed at the end, to hide FMA latency.
        let (mut b0, mut b1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut s = 0;
        while s + 2 <= t {
            let k0 = _mm256_set1_ps(*c.add(s));
            let k1 = _mm256_set1_ps(*c.add(s + 1));
            let p = x.add(i + s);
            a0 = _mm256_fmadd_ps(k0, _mm256_loadu_ps(p), a0);
            a1 = _mm256_fmadd_ps(k0, _mm256_loadu_ps(p.add(8)), a1);
            b0 = _mm256_fmadd_ps(k1, _mm256_loadu_ps(p.add(1)), b0);
            b1 = _mm256_fmadd_ps(k1, _mm256_loadu_ps(p.add(9)), b1);
            s += 2;
        }
        if s < t {
            let k0 = _mm256_set1_ps(*c.add(s));
            let p = x.add(i + s);
            a0 = _mm256_fmadd_ps(k0, _mm256_loadu_ps(p), a0);
            a1 = _mm256_fmadd_ps(k0, _mm256_loadu_ps(p.add(8)), a1);
        }
        _mm256_storeu_ps(o.add(i), _mm256_add_ps(a0, b0));
        _mm256_storeu_ps(o.add(i + 8), _mm256_add_ps(a1, b1));
        i += 16;
    }
    while i + 8 <= n {
        let mut a0 = if add {
            _mm256_loadu_ps(o.add(i))
        } else {
            _mm256_setzero_ps()
        };
        for s in 0..t {
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(*c.add(s)), _mm256_loadu_ps(x.add(i + s)), a0);
        }
        _mm256_storeu_ps(o.add(i), a0);
        i += 8;
    }
    while i < n {
        let mut acc = if add { *o.add(i) } else { 0.0 };
        for s in 0..t {
            acc += *c.add(s) * *x.add(i + s);
        }
        *o.add(i) = acc;
        i += 1;
    }
}

/// Dot product on AVX2+FMA.
///
/// # Panics
/// If the slices differ in length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot of unequal lengths");
    assert!(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"));
    // SAFETY: features checked above; indices below stay under a.len() == b.len().
    unsafe { dot_avx2(a, b) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
        acc1 = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i + 8)),
            _mm256_loadu_ps(pb.add(i + 8)),
            acc1,
        );
        i += 16;
    }
    if i + 8 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
        i += 8;
    }
    let v = _mm256_add_ps(acc0, acc1);
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s4 = _mm_add_ps(lo, hi);
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    let mut sum = _mm_cvtss_f32(s1);
    while i < n {
        sum += *pa.add(i) * *pb.add(i);
        i += 1;
    }
    sum
}

/// f32 -> PCM16 with round-to-nearest-even and saturation (cvtps2dq + packssdw).
///
/// # Panics
/// If the slices differ in length.
pub fn to_i16(src: &[f32], out: &mut [i16]) {
    assert_eq!(src.len(), out.len(), "conversion of unequal lengths");
    assert!(std::arch::is_x86_feature_detected!("avx2"));
    // SAFETY: AVX2 checked; indices stay below the common length.
    unsafe { to_i16_avx2(src, out) }
}

#[target_feature(enable = "avx2")]
unsafe fn to_i16_avx2(src: &[f32], out: &mut [i16]) {
    let n = src.len();
    let (s, o) = (src.as_ptr(), out.as_mut_ptr());
    let mut i = 0;
    while i + 16 <= n {
        let a = _mm256_cvtps_epi32(_mm256_loadu_ps(s.add(i)));
        let b = _mm256_cvtps_epi32(_mm256_loadu_ps(s.add(i + 8)));
        // packs works per 128-bit lane: [a0 b0 a1 b1] -> reorder to [a0 a1 b0 b1].
        let packed = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0b11_01_10_00);
        _mm256_storeu_si256(o.add(i).cast(), packed);
        i += 16;
    }
    while i < n {
        *o.add(i) = (*s.add(i)).round_ties_even().clamp(-32768.0, 32767.0) as i16;
        i += 1;
    }
}

/// Interleaves two phases (`out[2q] = a[q]`, `out[2q+1] = b[q]`) and converts to PCM16.
///
/// # Panics
/// If `out.len() != 2 * a.len()` or `a.len() != b.len()`.
pub fn interleave2_to_i16(a: &[f32], b: &[f32], out: &mut [i16]) {
    assert!(
        a.len() == b.len() && out.len() == 2 * a.len(),
        "interleave lengths"
    );
    assert!(std::arch::is_x86_feature_detected!("avx2"));
    // SAFETY: AVX2 checked; reads below a.len(), writes below out.len().
    unsafe { interleave2_avx2(a, b, out) }
}

#[target_feature(enable = "avx2")]
unsafe fn interleave2_avx2(a: &[f32], b: &[f32], out: &mut [i16]) {
    let n = a.len();
    let (pa, pb, o) = (a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
    let mut q = 0;
    while q + 8 <= n {
        let x = _mm256_cvtps_epi32(_mm256_loadu_ps(pa.add(q)));
        let y = _mm256_cvtps_epi32(_mm256_loadu_ps(pb.add(q)));
        // Saturate both to i16 in one pack: per lane [x0..3 y0..3 | x4..7 y4..7].
        let p = _mm256_packs_epi32(x, y);
        // Interleave x and y 16-bit words within each lane: [x0 y0 x1 y1 ..].
        let lane = _mm256_shuffle_epi8(
            p,
            _mm256_setr_epi8(
                0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15, 0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13,
                6, 7, 14, 15,
            ),
        );
        _mm256_storeu_si256(o.add(2 * q).cast(), lane);
        q += 8;
    }
    while q < n {
        *o.add(2 * q) = (*pa.add(q)).round_ties_even().clamp(-32768.0, 32767.0) as i16;
        *o.add(2 * q + 1) = (*pb.add(q)).round_ties_even().clamp(-32768.0, 32767.0) as i16;
        q += 1;
    }
}
