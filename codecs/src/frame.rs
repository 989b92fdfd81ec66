//! `Pcm16Frame`: one 20 ms frame of mono PCM16 (little-endian) over `bytes::Bytes`.
//!
//! Cloning or slicing a frame bumps a reference count; the samples are never
//! copied between pipeline stages. Reading samples out goes into a
//! caller-owned `[i16]` buffer (no allocation).

use crate::error::CodecError;
use bytes::Bytes;

/// One frame of mono PCM16 little-endian audio at a known rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm16Frame {
    data: Bytes,
    rate: u32,
}

impl Pcm16Frame {
    /// Wraps little-endian PCM16 bytes; the byte count must be even.
    pub fn new(data: Bytes, rate: u32) -> Result<Self, CodecError> {
        if data.len() % 2 != 0 {
            return Err(CodecError::OddByteCount(data.len()));
        }
        Ok(Pcm16Frame { data, rate })
    }

    /// Sample rate, Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.data.len() / 2
    }

    /// Whether the frame holds no samples.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Duration in microseconds.
    pub fn duration_us(&self) -> u64 {
        self.len() as u64 * 1_000_000 / self.rate.max(1) as u64
    }

    /// The raw little-endian bytes (shared, not copied).
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// Decodes the samples into `out`; returns how many were written.
    pub fn read_into(&self, out: &mut [i16]) -> usize {
        let mut n = 0;
        for (o, b) in out.iter_mut().zip(self.data.chunks_exact(2)) {
            *o = i16::from_le_bytes([b[0], b[1]]);
            n += 1;
        }
        n
    }

    /// Sample `i`, if present.
    pub fn sample(&self, i: usize) -> Option<i16> {
        let b = self.data.get(2 * i..2 * i + 2)?;
        Some(i16::from_le_bytes([b[0], b[1]]))
    }
}

/// Writes samples as little-endian PCM16 into `out` (`out.len() >= 2 * pcm.len()`); returns bytes written.
pub fn write_le(pcm: &[i16], out: &mut [u8]) -> usize {
    let mut n = 0;
    for (s, o) in pcm.iter().zip(out.chunks_exact_mut(2)) {
        o.copy_from_slice(&s.to_le_bytes());
        n += 2;
    }
    n
}

/// Reads little-endian PCM16 bytes into `out`; returns samples written. A trailing odd byte is ignored.
pub fn read_le(bytes: &[u8], out: &mut [i16]) -> usize {
    let mut n = 0;
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = i16::from_le_bytes([b[0], b[1]]);
        n += 1;
    }
    n
}

/// Writes samples as big-endian (network order) PCM16 into `out`
/// (`out.len() >= 2 * pcm.len()`), as RFC 3551's L16 and Telnyx's `L16`
/// carry them; returns bytes written.
pub fn write_be(pcm: &[i16], out: &mut [u8]) -> usize {
    let mut n = 0;
    for (s, o) in pcm.iter().zip(out.chunks_exact_mut(2)) {
        o.copy_from_slice(&s.to_be_bytes());
        n += 2;
    }
    n
}

/// Reads big-endian PCM16 bytes into `out`; returns samples written. A trailing odd byte is ignored.
pub fn read_be(bytes: &[u8], out: &mut [i16]) -> usize {
    let mut n = 0;
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = i16::from_be_bytes([b[0], b[1]]);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_endian_round_trips_and_differs_from_little() {
        let pcm = [0x0102i16, -2, i16::MIN];
        let mut be = [0u8; 6];
        assert_eq!(write_be(&pcm, &mut be), 6);
        assert_eq!(be[..2], [0x01, 0x02]);
        let mut le = [0u8; 6];
        write_le(&pcm, &mut le);
        assert_ne!(be, le);
        let mut back = [0i16; 3];
        assert_eq!(read_be(&be, &mut back), 3);
        assert_eq!(back, pcm);
    }

    #[test]
    fn clones_share_the_buffer() {
        let bytes = Bytes::from(vec![1u8, 0, 2, 0, 0xFF, 0xFF]);
        let f = Pcm16Frame::new(bytes.clone(), 8000).expect("even");
        let g = f.clone();
        assert_eq!(f.bytes().as_ptr(), g.bytes().as_ptr());
        let mut out = [0i16; 3];
        assert_eq!(g.read_into(&mut out), 3);
        assert_eq!(out, [1, 2, -1]);
        assert_eq!(f.sample(2), Some(-1));
        assert_eq!(f.sample(3), None);
    }

    #[test]
    fn odd_bytes_are_refused() {
        assert_eq!(
            Pcm16Frame::new(Bytes::from_static(&[1, 2, 3]), 8000),
            Err(CodecError::OddByteCount(3))
        );
    }
}
