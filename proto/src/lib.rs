//! voxbridge-proto: every byte format voxbridge reads or writes, sans-IO.
//!
//! Pure parsers and writers: no sockets, no runtime, no clock. Incomplete input
//! is reported apart from invalid input, lengths are checked once up front,
//! and nothing panics on outside bytes (each parser has a fuzz target and a
//! property test). Payloads are `bytes::Bytes` slices of what was received.
//!
//! | module | format |
//! |---|---|
//! | [`rtp`], [`rtcp`] | RTP/RTCP (RFC 3550) |
//! | [`dtmf`] | RFC 4733 telephone-events |
//! | [`audiosocket`] | Asterisk AudioSocket framing (`tokio_util` codec) |
//! | [`chanws`] | Asterisk's WebSocket media channel (`chan_websocket`) control messages |
//! | [`pipecat`] | pipecat's Protobuf frames |
//! | [`twilio`] | Twilio-style Media Streams JSON |
//! | [`telephony`] | the providers' Media Streams dialects (Twilio, Telnyx, Plivo, Exotel, Vonage, jambonz, Genesys AudioHook), both directions |
//! | [`envelope`] | the control plane's event envelope (JSON Schema in `schema/`) |
//! | [`sip`] | SIP messages, headers and transactions (RFC 3261) |
//! | [`sdp`] | SDP offer/answer for one audio stream (RFC 4566/3264) |
//! | [`stt`] | speech-to-text providers' live-streaming results (Deepgram's API) |
//! | [`wav`] | WAV headers |
//! | [`ogg_opus`] | Ogg Opus files (RFC 7845) |
//! | [`websocket`] | RFC 6455 handshake and framing |
#![forbid(unsafe_code)]

pub mod audiosocket;
pub mod chanws;
pub mod dtmf;
pub mod envelope;
pub mod error;
pub mod ogg_opus;
pub mod pipecat;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod stt;
pub mod telephony;
pub mod twilio;
pub mod wav;
pub mod websocket;

pub use error::ProtoError;
