//! ITU-T G.711 u-law (PCMU) and A-law (PCMA), sample-by-sample.
//!
//! Encoding follows the ITU-T G.191 reference (STL `g711.c`): negative inputs
//! are truncated in one's complement, so the law is symmetric around -0.5.
//! FFmpeg's table-driven encoder rounds 964 of the 65,536 inputs to the
//! neighbouring code instead; `tests/g711_vectors.rs` pins exactly where.
//! Decoding is bit-exact with ITU and FFmpeg for all 256 codes.

/// u-law code -> linear PCM16, built at compile time from the G.711 expansion rule.
static ULAW_DECODE: [i16; 256] = build_ulaw_decode();
/// A-law code -> linear PCM16.
static ALAW_DECODE: [i16; 256] = build_alaw_decode();

const fn ulaw_expand(code: u8) -> i16 {
    let u = !code;
    let mut t = (((u & 0x0F) as i32) << 3) + 0x84;
    t <<= ((u & 0x70) >> 4) as i32;
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

const fn alaw_expand(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn build_ulaw_decode() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_expand(i as u8);
        i += 1;
    }
    table
}

const fn build_alaw_decode() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_expand(i as u8);
        i += 1;
    }
    table
}

/// Decodes one u-law code.
#[inline(always)]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// Decodes one A-law code.
#[inline(always)]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

/// Encodes one linear sample to u-law (14-bit law, G.191 truncation).
///
/// Branch-free arithmetic rather than a 16 KiB table: at 1,000 calls the table
/// would compete with call state for L1, and this form vectorises (the segment
/// comes from the float exponent, so no per-lane leading-zero count is needed).
#[inline(always)]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let x = sample as i32;
    // One's complement for negatives: -1..-4 share magnitude 0 with +0..+3.
    let sign = x >> 31; // 0 or -1
    let abs = (((x ^ sign) >> 2) + 33).min(0x1FFF);
    // Segment 1..=8 = max(floor(log2(abs)) - 4, 1); abs >= 33 so the exponent is exact.
    let exp = ((abs as f32).to_bits() >> 23) as i32 - 127;
    let seg = (exp - 4).max(1);
    let low = 0xF - ((abs >> seg) & 0xF);
    let code = ((8 - seg) << 4) | low;
    (code | (!sign & 0x80)) as u8
}

/// Encodes one linear sample to A-law (13-bit law, G.191 truncation).
#[inline(always)]
pub fn linear_to_alaw(sample: i16) -> u8 {
    let x = sample as i32;
    let sign = x >> 31;
    let ix = (x ^ sign) >> 4; // 0..=2047
                              // Exponent 0 for ix < 32, else floor(log2(ix)) - 3 (1..=7).
    let log2 = ((ix.max(1) as f32).to_bits() >> 23) as i32 - 127;
    let exp = (log2 - 3).max(0);
    let shift = (exp - 1).max(0);
    let mant = (ix >> shift) - if exp > 0 { 16 } else { 0 };
    let code = mant + (exp << 4);
    ((code | (!sign & 0x80)) ^ 0x55) as u8
}

/// Decodes a buffer of u-law codes into `out` (same length).
pub fn decode_ulaw(codes: &[u8], out: &mut [i16]) {
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = ulaw_to_linear(c);
    }
}

/// Decodes a buffer of A-law codes into `out` (same length).
pub fn decode_alaw(codes: &[u8], out: &mut [i16]) {
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = alaw_to_linear(c);
    }
}

/// Encodes PCM16 into u-law codes (same length).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1", "aarch64+neon"))]
pub fn encode_ulaw(pcm: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = linear_to_ulaw(s);
    }
}

/// Encodes PCM16 into A-law codes (same length).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.1", "aarch64+neon"))]
pub fn encode_alaw(pcm: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = linear_to_alaw(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The G.191 loop formulation, kept as the readable reference the fast
    /// bit-twiddling versions are checked against on every input.
    fn ulaw_reference(x: i16) -> u8 {
        let x = x as i32;
        let mut abs = if x < 0 { (!x) >> 2 } else { x >> 2 };
        abs += 33;
        if abs > 0x1FFF {
            abs = 0x1FFF;
        }
        let mut i = abs >> 6;
        let mut seg = 1;
        while i != 0 {
            seg += 1;
            i >>= 1;
        }
        let code = ((8 - seg) << 4) | (0xF - ((abs >> seg) & 0xF));
        (if x >= 0 { code | 0x80 } else { code }) as u8
    }

    fn alaw_reference(x: i16) -> u8 {
        let x = x as i32;
        let mut ix = if x < 0 { (!x) >> 4 } else { x >> 4 };
        if ix > 15 {
            let mut exp = 1;
            while ix > 16 + 15 {
                ix >>= 1;
                exp += 1;
            }
            ix -= 16;
            ix += exp << 4;
        }
        if x >= 0 {
            ix |= 0x80;
        }
        (ix ^ 0x55) as u8
    }

    #[test]
    fn fast_encoders_match_the_g191_loops_on_every_input() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(linear_to_ulaw(x), ulaw_reference(x), "ulaw {x}");
            assert_eq!(linear_to_alaw(x), alaw_reference(x), "alaw {x}");
        }
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for c in 0..=255u8 {
            // u-law has two zeros (0x7F = -0, 0xFF = +0); -0 decodes to 0, which encodes as +0.
            let expect_u = if c == 0x7F { 0xFF } else { c };
            assert_eq!(linear_to_ulaw(ulaw_to_linear(c)), expect_u, "ulaw code {c:#x}");
            assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "alaw code {c:#x}");
        }
    }
}
