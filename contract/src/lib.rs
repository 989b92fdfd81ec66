//! voxbridge-contract: what the media plane and the control sidecar say to
//! each other, and nothing else, so that each depends on it and neither on
//! the other.
//!
//! [`events`]: what happened to a call ([`events::CallEvent`]) and the sink
//! it goes through; [`commands`]: what control may ask of running calls;
//! [`event_wire`]: both as JSON between a media and a control process (over
//! Kafka); [`text`]: the rule for text that enters a call (ids, parameters,
//! transcripts); [`secret`]: values kept out of logs.
#![forbid(unsafe_code)]

pub mod commands;
pub mod error;
pub mod event_wire;
pub mod events;
pub mod secret;
pub mod text;

pub use error::ContractError;
