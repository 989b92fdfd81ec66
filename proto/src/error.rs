//! The one error type of the proto crate.

/// What can go wrong parsing or writing a voxbridge byte format.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum ProtoError {
    /// More bytes are needed before anything can be decided (not an error in a stream).
    #[error("incomplete: need at least {needed} bytes")]
    Incomplete {
        /// Total bytes needed from the start of the buffer.
        needed: usize,
    },
    /// The bytes are not a RIFF/WAVE file.
    #[error("not a WAV file: {0}")]
    NotWav(&'static str),
    /// A WAV chunk is malformed.
    #[error("malformed WAV: {0}")]
    BadWav(String),
    /// A valid WAV we do not support (multi-channel, float, odd bit depths).
    #[error("unsupported WAV: {0}")]
    UnsupportedWav(String),
}
