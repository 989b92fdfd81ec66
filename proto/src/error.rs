//! The one error type of the proto crate.

/// What can go wrong parsing or writing a voxbridge byte format.
///
/// "Incomplete" (wait for more bytes) is kept apart from every "invalid"
/// variant; each invalid variant names the precise cause so it can be logged
/// and counted.
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
    /// Not an Ogg Opus stream voxbridge reads (a damaged page, another
    /// codec, a surround mapping).
    #[error("Ogg Opus: {0}")]
    BadOgg(String),

    /// AudioSocket: a type byte the protocol does not define.
    #[error("unknown AudioSocket message type {0:#04x}")]
    UnknownType(u8),
    /// A length field over the configured maximum.
    #[error("payload length {len} exceeds the maximum {max}")]
    LengthTooLarge {
        /// Length announced.
        len: usize,
        /// Maximum allowed.
        max: usize,
    },
    /// AudioSocket: a length that does not fit the message type.
    #[error("AudioSocket type {kind:#04x} with length {len} (expected {expected})")]
    BadLength {
        /// Message type.
        kind: u8,
        /// Length announced.
        len: usize,
        /// What the type requires.
        expected: &'static str,
    },
    /// A DTMF digit outside `0-9 * # A-D`.
    #[error("invalid DTMF digit {0:#04x}")]
    BadDtmfDigit(u8),
    /// A sample rate the format cannot carry.
    #[error("unsupported sample rate {0} Hz")]
    UnsupportedRate(u32),
    /// AudioSocket: zero-length audio (Asterisk rejects it).
    #[error("zero-length audio frame (Asterisk rejects it)")]
    EmptyAudio,
    /// AudioSocket: a message type Asterisk does not accept from a server.
    #[error("Asterisk does not accept {0} frames from a server")]
    NotSendable(&'static str),

    /// RTP/RTCP: version field other than 2.
    #[error("RTP/RTCP version {0} (expected 2)")]
    BadVersion(u8),
    /// RTP/RTCP: a packet shorter than its header says.
    #[error("{what}: {len} bytes, needs {needed}")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Bytes available.
        len: usize,
        /// Bytes its header requires.
        needed: usize,
    },
    /// RTP/RTCP: a padding count of zero or larger than the packet body.
    #[error("bad padding length {pad} for a body of {body} bytes")]
    BadPadding {
        /// Padding count from the last byte.
        pad: usize,
        /// Bytes it would be taken from.
        body: usize,
    },
    /// RTCP: a packet type where another was required (e.g. compound must start with SR/RR).
    #[error("RTCP: {0}")]
    BadRtcp(&'static str),
    /// RFC 4733: payload not 4 bytes (or a multiple, for redundancy).
    #[error("telephone-event payload of {0} bytes (expected 4)")]
    BadTelephoneEvent(usize),

    /// Protobuf bytes that do not decode as a pipecat `Frame`.
    #[error("protobuf: {0}")]
    Protobuf(String),
    /// A protobuf `Frame` with no frame set in its oneof.
    #[error("protobuf Frame with no frame set")]
    EmptyFrame,
    /// JSON that does not parse or does not match the message shape.
    #[error("json: {0}")]
    Json(String),
    /// An SDP that cannot be used (the message names the line and the problem).
    #[error("sdp: {0}")]
    Sdp(String),
    /// An Asterisk WebSocket channel text message that cannot be used.
    #[error("chan_websocket: {0}")]
    ChanWs(String),
    /// A WebSocket handshake or frame that breaks RFC 6455.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// A SIP message or header that cannot be used (the message says which part).
    #[error("sip: {0}")]
    Sip(String),
    /// A speech-to-text provider's message that cannot be used.
    #[error("speech-to-text: {0}")]
    Stt(String),
    /// Base64 payload that does not decode.
    #[error("base64: {0}")]
    Base64(String),
    /// The transport under a codec failed (only from `tokio_util` framing).
    #[error("i/o: {0}")]
    Io(String),
}

impl From<std::io::Error> for ProtoError {
    fn from(e: std::io::Error) -> Self {
        ProtoError::Io(e.to_string())
    }
}
