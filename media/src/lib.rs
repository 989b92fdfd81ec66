//! voxbridge-media: the real-time engine.
//!
//! Two halves. [`sansio`]: everything a call decides (the [`sansio::call::Call`]
//! state machine, its pipeline, pacer, playout, bot dialects, the RTP
//! receiver and sender), driven by bytes, frames and `Instant`s, with no
//! socket, task or clock. `driver`: the tokio side, one task per call that
//! owns the call's sockets (or, in shared-port mode, a slot on the hub that
//! batches one UDP port's I/O) and feeds the `Call`; [`server`] accepts
//! AudioSocket connections and drains calls on shutdown; [`sessions`]
//! creates RTP calls from SDP offers or plain parameters. What control/ sees of a call (events, commands, their wire
//! form) is the `voxbridge-contract` crate, re-exported here; [`metrics`]
//! is what `/metrics` shows.
#![forbid(unsafe_code)]

pub mod commands;
pub mod config;
mod driver;
pub mod error;
pub mod metrics;
pub mod sansio;

// The contract with control/ lives in its own crate; media re-exports it.
pub use voxbridge_contract::{event_wire, events, secret, text};

pub use commands::{CallCommands, MediaCommands};
pub use config::Config;
pub use driver::botlink::ws_config;
pub use driver::{net, server, sessions};
pub use error::{BotLinkError, ConfigError, MediaError};
pub use events::{CallEvent, EventSink, HangupCause};
pub use sansio::call::Call;
pub use server::{MediaServer, ShutdownHandle};
pub use sessions::RtpSessions;
