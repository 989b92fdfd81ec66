//! voxbridge-control: the control sidecar.
//!
//! Will hold the store (PostgreSQL or embedded), call state machine, outbox
//! relay to Kafka or an in-process bus, REST API and live subscriptions
//! (issues 6-8). It sees the media plane only through its event and command
//! types. Empty until then.
#![forbid(unsafe_code)]
