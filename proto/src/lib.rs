//! voxbridge-proto: every byte format voxbridge reads or writes, sans-IO.
//!
//! Pure parsers and writers: no sockets, no tokio, no clock. Incomplete input
//! is reported apart from invalid input, lengths are checked once up front,
//! and nothing panics on outside bytes (each parser has a fuzz target).
//! Today: WAV headers. RTP/RTCP, RFC 4733, AudioSocket, pipecat Protobuf and
//! Twilio Media Streams JSON follow (issue 3).
#![forbid(unsafe_code)]

pub mod error;
pub mod wav;

pub use error::ProtoError;
