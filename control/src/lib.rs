//! voxbridge-control: the control sidecar.
//!
//! It keeps the truth about calls in a [`store::Store`] (PostgreSQL, or the
//! embedded SQLite default), moves calls along the state machine in
//! [`state`] as the media plane reports events ([`sink`]), writes every
//! change's event to an outbox in the same transaction and relays it to
//! Kafka or an in-process bus ([`relay`]), and serves the REST API ([`api`]).
//! When media runs in another process, [`link`] carries its events and the
//! API's commands over Kafka. It sees the media plane only through media's
//! event and command types.
#![forbid(unsafe_code)]

pub mod api;
pub mod billing;
pub mod billing_worker;
pub mod cache;
pub mod campaign;
pub mod config;
pub mod error;
#[cfg(feature = "kafka")]
pub mod link;
pub mod live;
pub mod model;
pub mod originate;
pub mod relay;
pub mod retention;
pub mod secret;
pub mod service;
pub mod sink;
pub mod state;
pub mod store;
pub mod time;
pub mod webhooks;

pub use error::{ControlError, Result};
