//! voxbridge-media: the real-time engine.
//!
//! Sans-IO per-call state ([`pipeline`], [`pacer`], [`playout`], [`botcodec`],
//! [`jitter`], [`rtp`]) driven by frames and `Instant`s, wrapped by one tokio
//! task per call ([`call`]) that owns the call's sockets (or, in shared-port
//! mode, a slot on the [`net`] hub that batches one UDP port's I/O). [`server`] accepts
//! AudioSocket connections and drains calls on shutdown; [`sessions`] creates
//! RTP calls from SDP offers or plain parameters; [`events`] and [`metrics`] are
//! what the rest of voxbridge (`control/`, `/metrics`) sees of a call.
#![forbid(unsafe_code)]

pub mod botcodec;
pub mod botlink;
pub mod call;
pub mod commands;
pub mod config;
pub mod error;
pub mod event_wire;
pub mod events;
pub mod jitter;
pub mod metrics;
pub mod net;
pub mod pacer;
pub mod pipeline;
pub mod playout;
pub mod rtp;
pub mod secret;
pub mod server;
pub mod sessions;
pub mod text;

pub use commands::{CallCommands, MediaCommands};
pub use config::Config;
pub use error::{BotLinkError, MediaError};
pub use events::{CallEvent, EventSink, HangupCause};
pub use server::{MediaServer, ShutdownHandle};
pub use sessions::RtpSessions;
