//! pipecat's Protobuf frames (`ProtobufFrameSerializer`), the binary bot link.
//!
//! The message types are generated at build time from `protos/frames.proto`
//! (prost + protox, no protoc). Decoding from `Bytes` keeps audio as a slice of
//! the WebSocket message. pipecat's client transport prepends a WAV header to
//! audio by default; [`audio_pcm`] detects and strips it.

use crate::error::ProtoError;
use crate::wav;
use bytes::{Bytes, BytesMut};
use prost::Message;

/// Generated from `protos/frames.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/pipecat.rs"));
}

pub use pb::frame::Frame as Kind;
pub use pb::{AudioRawFrame, Frame, InterruptionFrame, MessageFrame, TextFrame, TranscriptionFrame};

/// Decodes one WebSocket binary message into a frame with its oneof set.
pub fn decode(msg: Bytes) -> Result<Kind, ProtoError> {
    let f = Frame::decode(msg).map_err(|e| ProtoError::Protobuf(e.to_string()))?;
    f.frame.ok_or(ProtoError::EmptyFrame)
}

/// Encodes a frame into `dst` (caller-owned, reused across frames).
pub fn encode(kind: Kind, dst: &mut BytesMut) {
    let f = Frame { frame: Some(kind) };
    dst.reserve(f.encoded_len());
    // Encoding into a BytesMut with enough capacity reserved cannot fail.
    let _ = f.encode(dst);
}

/// Encodes 20 ms (or any amount) of PCM16 audio as an `AudioRawFrame` into `dst`.
pub fn encode_audio(pcm: Bytes, sample_rate: u32, dst: &mut BytesMut) {
    encode(
        Kind::Audio(AudioRawFrame {
            id: 0,
            name: String::new(),
            audio: pcm,
            sample_rate,
            num_channels: 1,
            pts: None,
        }),
        dst,
    )
}

/// The PCM of an audio frame and its rate: a leading WAV header, if present,
/// is stripped and its rate wins (it describes the bytes that follow).
pub fn audio_pcm(frame: &AudioRawFrame) -> Result<(Bytes, u32), ProtoError> {
    if wav::looks_like_wav(&frame.audio) {
        let h = wav::parse_header(&frame.audio)?;
        let end = match h.data_len {
            Some(n) => (h.data_offset + n as usize).min(frame.audio.len()),
            None => frame.audio.len(),
        };
        if h.encoding != wav::WavEncoding::Pcm16 {
            return Err(ProtoError::UnsupportedWav("pipecat audio must be PCM16".into()));
        }
        return Ok((frame.audio.slice(h.data_offset..end), h.rate));
    }
    Ok((frame.audio.clone(), frame.sample_rate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn interruption_frame_bytes_known_answer() {
        // Field 5 (interruption), length-delimited, containing id=1 and name="i".
        let mut buf = BytesMut::new();
        encode(
            Kind::Interruption(InterruptionFrame {
                id: 1,
                name: "i".into(),
            }),
            &mut buf,
        );
        assert_eq!(&buf[..], &[0x2A, 0x05, 0x08, 0x01, 0x12, 0x01, b'i']);
        assert_eq!(
            decode(buf.freeze()).expect("valid"),
            Kind::Interruption(InterruptionFrame {
                id: 1,
                name: "i".into()
            })
        );
    }

    #[test]
    fn audio_slices_the_message_and_strips_a_wav_header() {
        let pcm = vec![1u8, 0, 2, 0, 3, 0, 4, 0];
        let mut with_header = wav::write_header(wav::WavEncoding::Pcm16, 24000, pcm.len() as u32).to_vec();
        with_header.extend_from_slice(&pcm);
        let mut buf = BytesMut::new();
        encode(
            Kind::Audio(AudioRawFrame {
                audio: with_header.into(),
                sample_rate: 16000,
                num_channels: 1,
                ..Default::default()
            }),
            &mut buf,
        );
        let msg = buf.freeze();
        let Kind::Audio(a) = decode(msg.clone()).expect("valid") else {
            panic!("not audio")
        };
        let (samples, rate) = audio_pcm(&a).expect("pcm");
        assert_eq!(&samples[..], &pcm[..]);
        assert_eq!(rate, 24000, "the WAV header's rate describes the bytes");
        // Zero-copy: the samples point into the received message.
        let inside = msg.as_ptr() as usize..msg.as_ptr() as usize + msg.len();
        assert!(inside.contains(&(samples.as_ptr() as usize)));
    }

    #[test]
    fn garbage_and_empty_frames_are_errors() {
        assert_eq!(decode(Bytes::new()), Err(ProtoError::EmptyFrame));
        assert!(matches!(
            decode(Bytes::from_static(&[0x12, 0xFF])),
            Err(ProtoError::Protobuf(_))
        ));
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            (any::<u64>(), ".*", ".*").prop_map(|(id, name, text)| Kind::Text(TextFrame { id, name, text })),
            (
                any::<u64>(),
                prop::collection::vec(any::<u8>(), 0..64),
                any::<u32>(),
                any::<u32>(),
                any::<Option<u64>>()
            )
                .prop_map(|(id, a, sr, ch, pts)| Kind::Audio(AudioRawFrame {
                    id,
                    name: String::new(),
                    audio: a.into(),
                    sample_rate: sr,
                    num_channels: ch,
                    pts
                })),
            (any::<u64>(), ".*", ".*", ".*", ".*").prop_map(|(id, name, text, user_id, timestamp)| {
                Kind::Transcription(TranscriptionFrame {
                    id,
                    name,
                    text,
                    user_id,
                    timestamp,
                })
            }),
            ".*".prop_map(|data| Kind::Message(MessageFrame { data })),
            (any::<u64>(), ".*").prop_map(|(id, name)| Kind::Interruption(InterruptionFrame { id, name })),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(k in kind()) {
            let mut buf = BytesMut::new();
            encode(k.clone(), &mut buf);
            prop_assert_eq!(decode(buf.freeze()).expect("valid"), k);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Kind::Audio(a)) = decode(Bytes::from(bytes)) {
                let _ = audio_pcm(&a);
            }
        }
    }
}
