//! The sans-IO half of the media engine: everything a call decides, driven by
//! bytes, frames and `Instant`s handed in, answering with what to send and
//! when to wake. Nothing here owns a socket, spawns a task or reads a clock;
//! the tokio drivers that do are in `crate::driver`.
//!
//! [`call::Call`] is the call itself; it is built from the [`pipeline`]
//! (caller <-> bot audio, resampling, [`playout`] with its start cushion),
//! the [`pacer`] (the 20 ms egress clock), the [`botcodec`] (bot dialects)
//! and the bot link's reconnect policy. The RTP leg's protocol halves are
//! [`rtp`] and [`jitter`]; Asterisk's WebSocket channel leg is [`chanws`]; the SIP leg's
//! signalling is [`sip`]. A route's voice activity detection is [`listen`].

pub(crate) mod bot_policy;
pub mod botcodec;
pub mod call;
pub mod chanws;
pub mod jitter;
pub mod listen;
pub mod pacer;
pub mod pipeline;
pub mod playout;
pub mod recording_file;
pub mod rtp;
pub mod sip;
pub mod stereo;
pub mod tap;
pub mod voicemail;
