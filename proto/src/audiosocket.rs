//! Asterisk AudioSocket framing: 1 type byte, 2-byte big-endian length, payload.
//!
//! [`AudioSocketCodec`] is a `tokio_util::codec` Decoder/Encoder over
//! `BytesMut`: it never touches a socket, so the media plane wraps it in a
//! `Framed` and fuzzers feed it arbitrary chunkings. Decoded payloads are
//! `Bytes` split off the read buffer (no copy). Incomplete input returns
//! `Ok(None)`; an unknown type or a length over the configured maximum is a
//! typed error. The encoder refuses what Asterisk rejects toward it: anything
//! but hangup (0x00) and audio (0x10-0x18), and zero-length audio.

use crate::error::ProtoError;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Header bytes before every payload.
pub const HEADER_LEN: usize = 3;
/// Default maximum payload: 100 ms of 48 kHz PCM16 is 9,600 bytes; 192 kHz
/// 20 ms frames are 7,680. 16 KiB leaves room without letting a peer make us
/// buffer up to the 64 KiB the length field allows.
pub const DEFAULT_MAX_PAYLOAD: usize = 16 * 1024;

/// Message type bytes.
pub mod kind {
    /// Terminate the connection.
    pub const HANGUP: u8 = 0x00;
    /// 16-byte binary UUID of the stream.
    pub const UUID: u8 = 0x01;
    /// Silence indication.
    pub const SILENCE: u8 = 0x02;
    /// One ASCII DTMF digit.
    pub const DTMF: u8 = 0x03;
    /// Signed linear 16-bit LE mono audio at 8 kHz (0x10) up to 192 kHz (0x18).
    pub const AUDIO_8K: u8 = 0x10;
    /// Last audio type (192 kHz).
    pub const AUDIO_192K: u8 = 0x18;
    /// Error, with an optional application-specific code.
    pub const ERROR: u8 = 0xFF;
}

/// Sample rate of audio type `t` (0x10..=0x18).
pub fn audio_rate(t: u8) -> Option<u32> {
    Some(match t {
        0x10 => 8000,
        0x11 => 12000,
        0x12 => 16000,
        0x13 => 24000,
        0x14 => 32000,
        0x15 => 44100,
        0x16 => 48000,
        0x17 => 96000,
        0x18 => 192000,
        _ => return None,
    })
}

/// Audio type byte for a sample rate.
pub fn audio_kind(rate: u32) -> Option<u8> {
    (kind::AUDIO_8K..=kind::AUDIO_192K).find(|&k| audio_rate(k) == Some(rate))
}

/// One AudioSocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// 0x00: hang up.
    Hangup,
    /// 0x01: the stream's UUID, as its 16 bytes.
    Uuid([u8; 16]),
    /// 0x02: silence; the payload (usually empty) is kept.
    Silence(Bytes),
    /// 0x03: one DTMF digit (ASCII `0-9 * # A-D`).
    Dtmf(u8),
    /// 0x10-0x18: PCM16 LE mono at `rate`.
    Audio {
        /// Sample rate, Hz.
        rate: u32,
        /// The samples, a slice of the received buffer.
        pcm: Bytes,
    },
    /// 0xFF: error, with the code byte(s) if any.
    Error(Bytes),
}

impl Frame {
    /// Formats the UUID the way Asterisk prints it (8-4-4-4-12 lowercase hex).
    pub fn uuid_string(id: &[u8; 16]) -> String {
        let mut s = String::with_capacity(36);
        for (i, b) in id.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                s.push('-');
            }
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

/// Well-known error codes Asterisk sends in an 0xFF frame.
pub mod error_code {
    /// No error.
    pub const NONE: u8 = 0x00;
    /// The call was hung up.
    pub const HANGUP: u8 = 0x01;
    /// Frame forwarding failed.
    pub const FRAME_FORWARDING: u8 = 0x02;
    /// Memory allocation failed.
    pub const MEMORY: u8 = 0x04;
}

/// Decoder/encoder for an AudioSocket byte stream.
#[derive(Debug, Clone, Copy)]
pub struct AudioSocketCodec {
    max_payload: usize,
}

impl Default for AudioSocketCodec {
    fn default() -> Self {
        AudioSocketCodec {
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

impl AudioSocketCodec {
    /// A codec refusing payloads longer than `max_payload` bytes (at most 65,535).
    pub fn new(max_payload: usize) -> Self {
        AudioSocketCodec {
            max_payload: max_payload.min(u16::MAX as usize),
        }
    }

    /// Decodes one frame from the front of `src` (sans-IO core of the codec).
    pub fn decode_frame(&self, src: &mut BytesMut) -> Result<Option<Frame>, ProtoError> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let t = src[0];
        let len = u16::from_be_bytes([src[1], src[2]]) as usize;
        // Validate the header before waiting for the payload: a bad type or a
        // huge length fails now, not after buffering it.
        match t {
            kind::HANGUP | kind::UUID | kind::SILENCE | kind::DTMF | kind::ERROR => {}
            t if audio_rate(t).is_some() => {}
            t => return Err(ProtoError::UnknownType(t)),
        }
        if len > self.max_payload {
            return Err(ProtoError::LengthTooLarge {
                len,
                max: self.max_payload,
            });
        }
        match t {
            kind::UUID if len != 16 => {
                return Err(ProtoError::BadLength {
                    kind: t,
                    len,
                    expected: "16",
                })
            }
            kind::DTMF if len != 1 => {
                return Err(ProtoError::BadLength {
                    kind: t,
                    len,
                    expected: "1",
                })
            }
            _ => {}
        }
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len).freeze();
        Ok(Some(match t {
            kind::HANGUP => Frame::Hangup,
            kind::UUID => {
                let mut id = [0u8; 16];
                id.copy_from_slice(&payload);
                Frame::Uuid(id)
            }
            kind::SILENCE => Frame::Silence(payload),
            kind::DTMF => {
                let d = payload[0];
                if !is_dtmf_digit(d) {
                    return Err(ProtoError::BadDtmfDigit(d));
                }
                Frame::Dtmf(d)
            }
            kind::ERROR => Frame::Error(payload),
            t => {
                if len % 2 != 0 {
                    return Err(ProtoError::BadLength {
                        kind: t,
                        len,
                        expected: "an even number",
                    });
                }
                // The match above admitted only audio types here.
                let rate = audio_rate(t).unwrap_or(8000);
                Frame::Audio { rate, pcm: payload }
            }
        }))
    }

    /// Appends a frame to `dst`, refusing what Asterisk would reject.
    pub fn encode_frame(&self, frame: &Frame, dst: &mut BytesMut) -> Result<(), ProtoError> {
        match frame {
            Frame::Hangup => {
                dst.put_slice(&[kind::HANGUP, 0, 0]);
                Ok(())
            }
            Frame::Audio { rate, pcm } => {
                let t = audio_kind(*rate).ok_or(ProtoError::UnsupportedRate(*rate))?;
                if pcm.is_empty() {
                    return Err(ProtoError::EmptyAudio);
                }
                if pcm.len() % 2 != 0 {
                    return Err(ProtoError::BadLength {
                        kind: t,
                        len: pcm.len(),
                        expected: "an even number",
                    });
                }
                if pcm.len() > self.max_payload {
                    return Err(ProtoError::LengthTooLarge {
                        len: pcm.len(),
                        max: self.max_payload,
                    });
                }
                dst.reserve(HEADER_LEN + pcm.len());
                dst.put_u8(t);
                dst.put_u16(pcm.len() as u16);
                dst.put_slice(pcm);
                Ok(())
            }
            other => Err(ProtoError::NotSendable(frame_name(other))),
        }
    }

    /// Appends an audio frame of samples at `rate` (written little-endian),
    /// refusing what Asterisk would reject, as [`AudioSocketCodec::encode_frame`]
    /// does; the hot path's form (no `Bytes` to build per frame).
    pub fn encode_audio(&self, rate: u32, pcm: &[i16], dst: &mut BytesMut) -> Result<(), ProtoError> {
        let t = audio_kind(rate).ok_or(ProtoError::UnsupportedRate(rate))?;
        if pcm.is_empty() {
            return Err(ProtoError::EmptyAudio);
        }
        let len = pcm.len() * 2;
        if len > self.max_payload || len > u16::MAX as usize {
            return Err(ProtoError::LengthTooLarge {
                len,
                max: self.max_payload.min(u16::MAX as usize),
            });
        }
        dst.reserve(HEADER_LEN + len);
        dst.put_u8(t);
        dst.put_u16(len as u16);
        // One resize and a plain loop the compiler vectorises (a
        // `put_i16_le` per sample checks capacity every time).
        let start = dst.len();
        dst.resize(start + len, 0);
        for (d, s) in dst[start..].chunks_exact_mut(2).zip(pcm) {
            d.copy_from_slice(&s.to_le_bytes());
        }
        Ok(())
    }

    /// Appends any frame, including those only Asterisk sends (for test peers and loadgen).
    pub fn encode_any(&self, frame: &Frame, dst: &mut BytesMut) -> Result<(), ProtoError> {
        let (t, payload): (u8, &[u8]) = match frame {
            Frame::Uuid(id) => (kind::UUID, id),
            Frame::Silence(p) => (kind::SILENCE, p),
            Frame::Dtmf(d) => (kind::DTMF, std::slice::from_ref(d)),
            Frame::Error(p) => (kind::ERROR, p),
            other => return self.encode_frame(other, dst),
        };
        if payload.len() > self.max_payload {
            return Err(ProtoError::LengthTooLarge {
                len: payload.len(),
                max: self.max_payload,
            });
        }
        dst.reserve(HEADER_LEN + payload.len());
        dst.put_u8(t);
        dst.put_u16(payload.len() as u16);
        dst.put_slice(payload);
        Ok(())
    }
}

impl Frame {
    /// The message type's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        frame_name(self)
    }
}

fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Hangup => "hangup",
        Frame::Uuid(_) => "uuid",
        Frame::Silence(_) => "silence",
        Frame::Dtmf(_) => "dtmf",
        Frame::Audio { .. } => "audio",
        Frame::Error(_) => "error",
    }
}

/// Whether `d` is a DTMF digit as Asterisk sends them.
pub fn is_dtmf_digit(d: u8) -> bool {
    matches!(d, b'0'..=b'9' | b'*' | b'#' | b'A'..=b'D' | b'a'..=b'd')
}

impl tokio_util::codec::Decoder for AudioSocketCodec {
    type Item = Frame;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtoError> {
        self.decode_frame(src)
    }
}

impl tokio_util::codec::Encoder<Frame> for AudioSocketCodec {
    type Error = ProtoError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.encode_frame(&item, dst)
    }
}

impl tokio_util::codec::Encoder<&Frame> for AudioSocketCodec {
    type Error = ProtoError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.encode_frame(item, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(codec: &AudioSocketCodec, bytes: &[u8]) -> Result<Vec<Frame>, ProtoError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = codec.decode_frame(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn known_answers_from_the_asterisk_protocol_description() {
        let c = AudioSocketCodec::default();
        // Hangup is 0x00 0x00 0x00 (Asterisk docs).
        assert_eq!(decode_all(&c, &[0, 0, 0]).expect("valid"), vec![Frame::Hangup]);
        // UUID as Asterisk's ast_audiosocket_init writes it: 0x01 0x00 0x10 + 16 bytes.
        let mut uuid = vec![0x01, 0x00, 0x10];
        uuid.extend_from_slice(&[
            0x40, 0x32, 0x5b, 0x2c, 0x1e, 0x0d, 0x4a, 0x4f, 0x8a, 0x1c, 0x6d, 0x1b, 0x7e, 0x9b, 0x32, 0x01,
        ]);
        let f = decode_all(&c, &uuid).expect("valid");
        let Frame::Uuid(id) = f[0] else {
            panic!("not a uuid: {f:?}")
        };
        assert_eq!(Frame::uuid_string(&id), "40325b2c-1e0d-4a4f-8a1c-6d1b7e9b3201");
        // 20 ms of 8 kHz slin is 320 bytes: 0x10 0x01 0x40.
        let mut audio = vec![0x10, 0x01, 0x40];
        audio.extend_from_slice(&[0u8; 320]);
        assert_eq!(
            decode_all(&c, &audio).expect("valid"),
            vec![Frame::Audio {
                rate: 8000,
                pcm: Bytes::from(vec![0u8; 320])
            }]
        );
        assert_eq!(
            decode_all(&c, &[0x03, 0, 1, b'5']).expect("valid"),
            vec![Frame::Dtmf(b'5')]
        );
        assert_eq!(
            decode_all(&c, &[0xFF, 0, 1, 0x02]).expect("valid"),
            vec![Frame::Error(Bytes::from_static(&[2]))]
        );
    }

    #[test]
    fn every_audio_type_maps_to_its_rate_and_back() {
        for t in 0x10..=0x18u8 {
            let rate = audio_rate(t).expect("audio type");
            assert_eq!(audio_kind(rate), Some(t));
        }
        assert_eq!(audio_rate(0x19), None);
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        let c = AudioSocketCodec::new(1000);
        assert_eq!(decode_all(&c, &[0x42, 0, 0]), Err(ProtoError::UnknownType(0x42)));
        assert_eq!(
            decode_all(&c, &[0x10, 0xFF, 0xFF]),
            Err(ProtoError::LengthTooLarge {
                len: 65535,
                max: 1000
            })
        );
        assert!(matches!(
            decode_all(&c, &[0x01, 0, 3, 1, 2, 3]),
            Err(ProtoError::BadLength { .. })
        ));
        assert!(matches!(
            decode_all(&c, &[0x10, 0, 3, 1, 2, 3]),
            Err(ProtoError::BadLength { .. })
        ));
        assert_eq!(
            decode_all(&c, &[0x03, 0, 1, b'x']),
            Err(ProtoError::BadDtmfDigit(b'x'))
        );
    }

    #[test]
    fn encoder_refuses_what_asterisk_rejects() {
        let c = AudioSocketCodec::default();
        let mut buf = BytesMut::new();
        assert_eq!(
            c.encode_frame(&Frame::Dtmf(b'1'), &mut buf),
            Err(ProtoError::NotSendable("dtmf"))
        );
        assert_eq!(
            c.encode_frame(&Frame::Uuid([0; 16]), &mut buf),
            Err(ProtoError::NotSendable("uuid"))
        );
        assert_eq!(
            c.encode_frame(
                &Frame::Audio {
                    rate: 8000,
                    pcm: Bytes::new()
                },
                &mut buf
            ),
            Err(ProtoError::EmptyAudio)
        );
        assert_eq!(
            c.encode_frame(
                &Frame::Audio {
                    rate: 11025,
                    pcm: Bytes::from_static(&[0, 0])
                },
                &mut buf
            ),
            Err(ProtoError::UnsupportedRate(11025))
        );
        assert!(buf.is_empty());
        c.encode_frame(&Frame::Hangup, &mut buf).expect("hangup");
        assert_eq!(&buf[..], &[0, 0, 0]);
    }

    #[test]
    fn audio_samples_encode_as_the_frame_of_their_bytes() {
        let c = AudioSocketCodec::default();
        let pcm = [1i16, -2, 300, i16::MIN];
        let mut a = BytesMut::new();
        c.encode_audio(16000, &pcm, &mut a).expect("16 kHz");
        let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut b = BytesMut::new();
        c.encode_frame(
            &Frame::Audio {
                rate: 16000,
                pcm: bytes.into(),
            },
            &mut b,
        )
        .expect("16 kHz");
        assert_eq!(a, b);
        assert_eq!(
            c.encode_audio(11025, &pcm, &mut a),
            Err(ProtoError::UnsupportedRate(11025)),
            "no silent fallback to 8 kHz"
        );
        assert_eq!(c.encode_audio(8000, &[], &mut a), Err(ProtoError::EmptyAudio));
    }

    fn frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            Just(Frame::Hangup),
            any::<[u8; 16]>().prop_map(Frame::Uuid),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(|v| Frame::Silence(v.into())),
            prop::sample::select(b"0123456789*#ABCD".to_vec()).prop_map(Frame::Dtmf),
            (0x10u8..=0x18, prop::collection::vec(any::<u8>(), 1..200)).prop_map(|(t, mut v)| {
                if v.len() % 2 == 1 {
                    v.pop();
                }
                if v.is_empty() {
                    v = vec![0, 0];
                }
                Frame::Audio {
                    rate: audio_rate(t).unwrap_or(8000),
                    pcm: v.into(),
                }
            }),
            prop::collection::vec(any::<u8>(), 0..4).prop_map(|v| Frame::Error(v.into())),
        ]
    }

    proptest! {
        #[test]
        fn round_trip_under_any_chunking(frames in prop::collection::vec(frame(), 0..20), cut in 1usize..64) {
            let c = AudioSocketCodec::default();
            let mut wire = BytesMut::new();
            for f in &frames {
                c.encode_any(f, &mut wire).expect("encodable");
            }
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in wire.chunks(cut) {
                buf.extend_from_slice(chunk);
                while let Some(f) = c.decode_frame(&mut buf).expect("valid stream") {
                    got.push(f);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_all(&AudioSocketCodec::default(), &bytes);
        }
    }
}
