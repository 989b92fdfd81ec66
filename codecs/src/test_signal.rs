//! Signals the unit tests share: deterministic noise (a line's hiss, or
//! speech to a level detector without being a tone).

/// `len` samples of white noise of amplitude `amp` from the generator
/// state `seed` (advanced, so consecutive calls continue the stream).
pub(crate) fn noise(seed: &mut u32, amp: f32, len: usize) -> Vec<i16> {
    (0..len)
        .map(|_| {
            *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (amp * ((*seed >> 16) as f32 / 32768.0 - 1.0)) as i16
        })
        .collect()
}
