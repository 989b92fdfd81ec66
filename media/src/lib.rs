//! voxbridge-media: the real-time engine.
//!
//! Sans-IO per-call state driven by frames and `Instant`s, to be wrapped by one
//! tokio driver task per call (issue 4): today the egress [`pacer`] and the
//! bot-audio [`playout`] buffer (burst smoothing, barge-in, marks). AudioSocket
//! and RTP ingress and the bot WebSocket link follow. `control` will see only
//! this crate's event and command types.
#![forbid(unsafe_code)]

pub mod pacer;
pub mod playout;
