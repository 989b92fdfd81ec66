//! The codecs a call leg can use, behind two frame-level enums (`FrameDecoder`,
//! `FrameEncoder`) so pipelines hold one concrete type and never box per frame.

use crate::error::CodecError;
use crate::g711;
use crate::g722::{G722Decoder, G722Encoder};
use crate::plc::Concealer;
use crate::resample::{is_supported_rate, max_frame_len};

/// A telephony payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// G.711 u-law, 8 kHz.
    Pcmu,
    /// G.711 A-law, 8 kHz.
    Pcma,
    /// G.722, 16 kHz audio (RTP clock 8 kHz), 64 kbit/s.
    G722,
    /// Linear PCM16 little-endian at the given rate.
    L16 {
        /// Sample rate, Hz.
        rate: u32,
    },
    /// Opus, mono, decoded/encoded at the given rate.
    #[cfg(feature = "opus")]
    Opus {
        /// PCM rate, Hz.
        rate: u32,
    },
}

impl Codec {
    /// The PCM sample rate this codec carries.
    pub fn pcm_rate(&self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::G722 => 16000,
            Codec::L16 { rate } => *rate,
            #[cfg(feature = "opus")]
            Codec::Opus { rate } => *rate,
        }
    }

    /// PCM samples in the longest 20 ms frame: the length of every frame,
    /// except for L16 at a rate that is not a multiple of 50 Hz, whose frames
    /// vary by one sample (see [`crate::frame_len_at`]).
    pub fn frame_samples(&self) -> usize {
        max_frame_len(self.pcm_rate())
    }

    /// Encoded bytes in one 20 ms frame, for fixed-rate codecs (`None` for
    /// Opus); the longest frame's where lengths vary (as [`Codec::frame_samples`]).
    pub fn frame_bytes(&self) -> Option<usize> {
        match self {
            Codec::Pcmu | Codec::Pcma => Some(160),
            Codec::G722 => Some(160),
            Codec::L16 { rate } => Some(max_frame_len(*rate) * 2),
            #[cfg(feature = "opus")]
            Codec::Opus { .. } => None,
        }
    }

    /// Checks the codec's own parameters.
    pub fn validate(&self) -> Result<(), CodecError> {
        match self {
            Codec::L16 { rate } if !is_supported_rate(*rate) => {
                Err(CodecError::UnsupportedRate { rate: *rate })
            }
            #[cfg(feature = "opus")]
            Codec::Opus { rate } if ![8000, 12000, 16000, 24000, 48000].contains(rate) => {
                Err(CodecError::UnsupportedRate { rate: *rate })
            }
            _ => Ok(()),
        }
    }
}

/// The decoding state proper of one codec.
///
/// The G.722/Opus variants are larger than the stateless ones; they are kept
/// inline (not boxed) because a decoder is built once per call and read every
/// frame, where a box would add a pointer chase.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum DecoderKind {
    Pcmu,
    Pcma,
    G722(G722Decoder),
    L16,
    #[cfg(feature = "opus")]
    Opus(crate::opus::OpusDecoder),
}

/// Decoder for one stream of one codec, with its loss concealment.
///
/// Waveform codecs (G.711, G.722, PCM) carry a [`Concealer`] that every
/// decoded frame passes through, so a lost frame repeats the last pitch
/// period and the next good frame is cross-faded in; Opus conceals inside
/// libopus and carries none.
#[derive(Debug)]
pub struct FrameDecoder {
    kind: DecoderKind,
    plc: Option<Concealer>,
}

impl FrameDecoder {
    /// A decoder for `codec`.
    pub fn new(codec: Codec) -> Result<Self, CodecError> {
        codec.validate()?;
        let kind = match codec {
            Codec::Pcmu => DecoderKind::Pcmu,
            Codec::Pcma => DecoderKind::Pcma,
            Codec::G722 => DecoderKind::G722(G722Decoder::new()),
            Codec::L16 { .. } => DecoderKind::L16,
            #[cfg(feature = "opus")]
            Codec::Opus { rate } => DecoderKind::Opus(crate::opus::OpusDecoder::new(rate)?),
        };
        let plc = match kind {
            #[cfg(feature = "opus")]
            DecoderKind::Opus(_) => None,
            _ => Some(Concealer::new(codec.pcm_rate())),
        };
        Ok(FrameDecoder { kind, plc })
    }

    /// Samples `payload` decodes to, so a caller can make room before
    /// [`FrameDecoder::decode`]; `None` when that cannot be told (a malformed
    /// Opus packet, which then fails to decode).
    pub fn samples_in(&self, payload: &[u8]) -> Option<usize> {
        match &self.kind {
            DecoderKind::Pcmu | DecoderKind::Pcma => Some(payload.len()),
            DecoderKind::G722(_) => Some(payload.len() * 2),
            DecoderKind::L16 => Some(payload.len() / 2),
            #[cfg(feature = "opus")]
            DecoderKind::Opus(d) => d.samples_in(payload),
        }
    }

    /// Decodes one payload into `out`; returns samples written.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let n = match &mut self.kind {
            DecoderKind::Pcmu => {
                let n = payload.len().min(out.len());
                g711::decode_ulaw(&payload[..n], &mut out[..n]);
                n
            }
            DecoderKind::Pcma => {
                let n = payload.len().min(out.len());
                g711::decode_alaw(&payload[..n], &mut out[..n]);
                n
            }
            DecoderKind::G722(d) => d.decode(payload, out),
            DecoderKind::L16 => {
                if payload.len() % 2 != 0 {
                    return Err(CodecError::OddByteCount(payload.len()));
                }
                crate::frame::read_le(payload, out)
            }
            #[cfg(feature = "opus")]
            DecoderKind::Opus(d) => d.decode(payload, out)?,
        };
        if let Some(plc) = &mut self.plc {
            plc.good(&mut out[..n]);
        }
        Ok(n)
    }

    /// Rebuilds a lost frame from the in-band FEC of the packet after it
    /// (Opus); other codecs conceal as [`FrameDecoder::conceal`] does.
    pub fn recover(&mut self, next_payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        #[cfg(feature = "opus")]
        if let DecoderKind::Opus(d) = &mut self.kind {
            return d.recover(next_payload, out);
        }
        let _ = next_payload;
        self.conceal(out)
    }

    /// Produces a frame for a lost payload: codec PLC for Opus, pitch repetition otherwise.
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError> {
        #[cfg(feature = "opus")]
        if let DecoderKind::Opus(d) = &mut self.kind {
            return d.conceal(out);
        }
        if let Some(plc) = &mut self.plc {
            plc.conceal(out);
        }
        Ok(out.len())
    }
}

/// Encoder for one stream of one codec (inline variants, as for [`FrameDecoder`]).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum FrameEncoder {
    /// u-law.
    Pcmu,
    /// A-law.
    Pcma,
    /// G.722 with its state.
    G722(G722Encoder),
    /// PCM16 LE.
    L16,
    /// Opus.
    #[cfg(feature = "opus")]
    Opus(crate::opus::OpusEncoder),
}

impl FrameEncoder {
    /// An encoder for `codec` (Opus with default settings at its rate).
    pub fn new(codec: Codec) -> Result<Self, CodecError> {
        codec.validate()?;
        Ok(match codec {
            Codec::Pcmu => FrameEncoder::Pcmu,
            Codec::Pcma => FrameEncoder::Pcma,
            Codec::G722 => FrameEncoder::G722(G722Encoder::new()),
            Codec::L16 { .. } => FrameEncoder::L16,
            #[cfg(feature = "opus")]
            Codec::Opus { rate } => {
                FrameEncoder::Opus(crate::opus::OpusEncoder::new(crate::opus::OpusSettings {
                    rate,
                    ..Default::default()
                })?)
            }
        })
    }

    /// The packet loss the encoder plans for, percent: tunes Opus in-band
    /// FEC ([`crate::opus::OpusEncoder::set_expected_loss`]); other codecs
    /// carry no FEC and ignore it.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), CodecError> {
        match self {
            #[cfg(feature = "opus")]
            FrameEncoder::Opus(e) => e.set_expected_loss(percent),
            _ => {
                let _ = percent;
                Ok(())
            }
        }
    }

    /// Encodes one frame of PCM into `out`; returns bytes written.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        Ok(match self {
            FrameEncoder::Pcmu => {
                let n = pcm.len().min(out.len());
                g711::encode_ulaw(&pcm[..n], &mut out[..n]);
                n
            }
            FrameEncoder::Pcma => {
                let n = pcm.len().min(out.len());
                g711::encode_alaw(&pcm[..n], &mut out[..n]);
                n
            }
            FrameEncoder::G722(e) => e.encode(pcm, out),
            FrameEncoder::L16 => crate::frame::write_le(pcm, out),
            #[cfg(feature = "opus")]
            FrameEncoder::Opus(e) => e.encode(pcm, out)?,
        })
    }
}
