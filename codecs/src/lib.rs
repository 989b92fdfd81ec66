//! voxbridge-codecs: the DSP every call runs 100 times a second.
//!
//! G.711 u/A-law, G.722, Opus (libopus), a streaming 20 ms-exact resampler,
//! packet loss concealment, voice activity detection, noise suppression,
//! and a PCM16 frame type over `bytes::Bytes`.
//! Pure computation: no I/O, no async, no clock, and no allocation per frame
//! once a stream is set up. Wire formats live in `voxbridge-proto`; sockets
//! and pacing in `voxbridge-media`.
#![deny(unsafe_code)]

pub mod chain;
pub mod codec;
pub mod denoise;
pub mod error;
pub mod frame;
pub mod g711;
pub mod g722;
#[cfg(feature = "opus")]
pub mod opus;
pub mod plc;
pub mod resample;
#[cfg(test)]
mod test_signal;
pub mod vad;

pub use chain::Transcoder;
pub use codec::{Codec, FrameDecoder, FrameEncoder};
pub use error::CodecError;
pub use frame::Pcm16Frame;
pub use plc::Concealer;
pub use resample::{
    frame_len, frame_len_at, is_supported_rate, max_frame_len, Resampler, MAX_RATE, MIN_RATE, STANDARD_RATES,
};
