//! WAV (RIFF/WAVE) header parsing and writing for mono telephony audio.
//!
//! [`parse_header`] takes the first bytes of a file and returns the format and
//! where the samples start, or `Incomplete` with how many bytes it needs.
//! Accepted: PCM16 (format 1, or WAVE_FORMAT_EXTENSIBLE with the PCM
//! sub-format), A-law (6) and u-law (7) at 8 bits; mono only. Chunks other
//! than `fmt ` and `data` are skipped. A data length of 0 or 0xFFFFFFFF
//! (streaming writers) means "until end of file".

use crate::error::ProtoError;

/// Sample encoding inside a WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavEncoding {
    /// Signed 16-bit little-endian PCM.
    Pcm16,
    /// G.711 A-law, 8 bits.
    Alaw,
    /// G.711 u-law, 8 bits.
    Ulaw,
}

/// What a WAV header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavHeader {
    /// Sample encoding.
    pub encoding: WavEncoding,
    /// Sample rate, Hz.
    pub rate: u32,
    /// Offset of the first sample byte.
    pub data_offset: usize,
    /// Bytes of sample data, when the header states it.
    pub data_len: Option<u32>,
}

/// Refuse headers that claim absurd chunk sizes before the data chunk.
const MAX_HEADER: usize = 1 << 20;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn need(b: &[u8], needed: usize) -> Result<(), ProtoError> {
    if b.len() < needed {
        Err(ProtoError::Incomplete { needed })
    } else {
        Ok(())
    }
}

/// Whether `b` starts like a RIFF/WAVE file (12 bytes suffice).
pub fn looks_like_wav(b: &[u8]) -> bool {
    b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WAVE"
}

/// Parses a WAV header from the start of a file.
pub fn parse_header(b: &[u8]) -> Result<WavHeader, ProtoError> {
    need(b, 12)?;
    if &b[0..4] != b"RIFF" {
        return Err(ProtoError::NotWav("missing RIFF tag"));
    }
    if &b[8..12] != b"WAVE" {
        return Err(ProtoError::NotWav("missing WAVE tag"));
    }
    let mut at = 12;
    let mut format: Option<(WavEncoding, u32)> = None;
    loop {
        if at > MAX_HEADER {
            return Err(ProtoError::BadWav(format!(
                "no data chunk in the first {MAX_HEADER} bytes"
            )));
        }
        need(b, at + 8)?;
        let id = &b[at..at + 4];
        let size = u32_at(b, at + 4);
        let body = at + 8;
        if id == b"data" {
            let (encoding, rate) =
                format.ok_or_else(|| ProtoError::BadWav("data chunk before fmt chunk".into()))?;
            let data_len = match size {
                0 | u32::MAX => None,
                n => Some(n),
            };
            return Ok(WavHeader {
                encoding,
                rate,
                data_offset: body,
                data_len,
            });
        }
        let padded = size as usize + (size as usize & 1);
        if id == b"fmt " {
            if size < 16 {
                return Err(ProtoError::BadWav(format!(
                    "fmt chunk of {size} bytes (needs 16)"
                )));
            }
            need(b, body + size as usize)?;
            format = Some(parse_fmt(&b[body..body + size as usize])?);
        }
        at = body
            .checked_add(padded)
            .ok_or_else(|| ProtoError::BadWav("chunk size overflows".into()))?;
    }
}

fn parse_fmt(f: &[u8]) -> Result<(WavEncoding, u32), ProtoError> {
    let mut tag = u16_at(f, 0);
    let channels = u16_at(f, 2);
    let rate = u32_at(f, 4);
    let bits = u16_at(f, 14);
    if tag == 0xFFFE {
        // WAVE_FORMAT_EXTENSIBLE: the real tag is the first two bytes of the sub-format GUID.
        if f.len() < 40 {
            return Err(ProtoError::BadWav(
                "extensible fmt chunk shorter than 40 bytes".into(),
            ));
        }
        tag = u16_at(f, 24);
    }
    if channels != 1 {
        return Err(ProtoError::UnsupportedWav(format!(
            "{channels} channels (only mono)"
        )));
    }
    if rate == 0 {
        return Err(ProtoError::BadWav("sample rate 0".into()));
    }
    let encoding = match (tag, bits) {
        (1, 16) => WavEncoding::Pcm16,
        (6, 8) => WavEncoding::Alaw,
        (7, 8) => WavEncoding::Ulaw,
        (1, b) => return Err(ProtoError::UnsupportedWav(format!("{b}-bit PCM (only 16-bit)"))),
        (t, b) => {
            return Err(ProtoError::UnsupportedWav(format!(
                "format tag {t:#06x} with {b} bits"
            )))
        }
    };
    Ok((encoding, rate))
}

/// A 44-byte canonical header for `data_len` bytes of mono audio.
pub fn write_header(encoding: WavEncoding, rate: u32, data_len: u32) -> [u8; 44] {
    write_header_channels(encoding, rate, 1, data_len)
}

/// A 44-byte canonical header for `data_len` bytes of `channels`
/// interleaved channels (a call recording is stereo: caller left, what the
/// caller heard right). `data_len` `u32::MAX` says "until end of file", for
/// a file still being written.
pub fn write_header_channels(encoding: WavEncoding, rate: u32, channels: u16, data_len: u32) -> [u8; 44] {
    let (tag, bits): (u16, u16) = match encoding {
        WavEncoding::Pcm16 => (1, 16),
        WavEncoding::Alaw => (6, 8),
        WavEncoding::Ulaw => (7, 8),
    };
    let block = bits / 8 * channels.max(1);
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data_len.saturating_add(36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&tag.to_le_bytes());
    h[22..24].copy_from_slice(&channels.max(1).to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * block as u32).to_le_bytes());
    h[32..34].copy_from_slice(&block.to_le_bytes());
    h[34..36].copy_from_slice(&bits.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_headers_round_trip() {
        for enc in [WavEncoding::Pcm16, WavEncoding::Alaw, WavEncoding::Ulaw] {
            let h = write_header(enc, 16000, 640);
            let p = parse_header(&h).expect("valid");
            assert_eq!(
                p,
                WavHeader {
                    encoding: enc,
                    rate: 16000,
                    data_offset: 44,
                    data_len: Some(640)
                }
            );
        }
    }

    #[test]
    fn every_short_prefix_is_incomplete_not_invalid() {
        let h = write_header(WavEncoding::Pcm16, 8000, 0);
        for n in 0..44 {
            assert!(
                matches!(parse_header(&h[..n]), Err(ProtoError::Incomplete { .. })),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn extra_chunks_are_skipped_and_stereo_refused() {
        let mut f = Vec::new();
        f.extend_from_slice(b"RIFF\0\0\0\0WAVE");
        f.extend_from_slice(b"LIST\x03\0\0\0abc\0"); // odd size, padded
        let h = write_header(WavEncoding::Ulaw, 8000, 8);
        f.extend_from_slice(&h[12..]);
        let p = parse_header(&f).expect("valid");
        assert_eq!(p.encoding, WavEncoding::Ulaw);
        assert_eq!(p.data_offset, 12 + 12 + 32);
        let mut stereo = write_header(WavEncoding::Pcm16, 8000, 0);
        stereo[22] = 2;
        assert!(matches!(
            parse_header(&stereo),
            Err(ProtoError::UnsupportedWav(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_header(&bytes);
        }

        #[test]
        fn header_round_trip(rate in 1u32..200_000, len in 0u32..u32::MAX - 64) {
            let h = write_header(WavEncoding::Pcm16, rate, len);
            let p = parse_header(&h).expect("valid");
            prop_assert_eq!(p.rate, rate);
            prop_assert_eq!(p.data_len, if len == 0 { None } else { Some(len) });
        }
    }
}
