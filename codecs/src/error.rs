//! The one error type of the codecs crate.

/// What can go wrong in `voxbridge-codecs`.
///
/// Construction errors (a rate or setting we do not support) and runtime
/// errors (a frame of the wrong size, bytes a decoder rejects) are separate
/// variants so callers can tell misconfiguration from bad input.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum CodecError {
    /// The sample rate is not one the component supports.
    #[error("unsupported sample rate {rate} Hz (supported: 8000 to 48000 Hz)")]
    UnsupportedRate {
        /// The rate asked for.
        rate: u32,
    },
    /// Both rates are in range but their ratio needs more filter phases than
    /// the resampler builds (see `resample::MAX_PHASES`).
    #[error("cannot resample {from} Hz to {to} Hz: the ratio needs {phases} filter phases (at most 2048); use a standard rate such as 8000, 11025, 16000, 22050, 24000, 44100 or 48000 Hz")]
    UnsupportedRatio {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
        /// Phases the ratio needs.
        phases: u32,
    },
    /// A buffer did not hold exactly one frame.
    #[error("frame length mismatch: expected {expected} samples, got {got}")]
    FrameLength {
        /// Samples (or bytes) one frame must have.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// An odd number of bytes where 16-bit samples were expected.
    #[error("odd byte count {0}: PCM16 needs whole 2-byte samples")]
    OddByteCount(usize),
    /// The Opus library rejected a packet or a setting.
    #[error("opus: {0}")]
    Opus(String),
    /// A setting out of its range.
    #[error("invalid setting {name}: {detail}")]
    InvalidSetting {
        /// Which setting.
        name: &'static str,
        /// Why it was refused.
        detail: String,
    },
}
