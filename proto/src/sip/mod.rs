//! SIP (RFC 3261), sans-IO: messages in and out, the headers a user agent
//! acts on, and the four transaction state machines with their timers.
//!
//! - [`message`]: one message from a UDP datagram or off the front of a TCP
//!   stream ([`Message::parse`], [`decode_stream`]); the head is checked as
//!   UTF-8 once and headers are kept as ranges into it, the body is a `Bytes`
//!   slice of what arrived. [`MessageBuilder`] writes requests and responses.
//! - [`header`]: the typed views a UA needs (`Via`, name-addr for
//!   `From`/`To`/`Contact`, `CSeq`, SIP URIs, parameters), parsed on demand.
//! - [`auth`]: digest authentication's challenge and check (SHA-256 and MD5).
//! - [`transport`]: UDP, TCP and TLS: names and reliability.
//! - [`transaction`]: server INVITE (with RFC 6026's Accepted state), server
//!   non-INVITE, client INVITE and client non-INVITE transactions. Input is
//!   a message or `now`; output is bytes to send, events for the transaction
//!   user, and the next instant to be woken at.
//!
//! Dialogs, SDP and calls live above this, in the media crate.
//!
//! Why not a crate: the candidates on crates.io were measured on this
//! machine against this parser (benches/sip_parse/, results in
//! benches/RESULTS.md): `rsip` 0.4 (last released 2022) and `ezk-sip-types`
//! 0.6. Neither has sans-IO transactions (rsipstack and ezk-sip-core run
//! them on tokio tasks), so the state machines are written here either way;
//! the parser is the small part, and writing it keeps one `Bytes`-based
//! message type across parser, transactions and the leg.

pub mod auth;
pub mod header;
pub mod message;
pub mod transaction;
pub mod transport;

pub use header::{CSeq, NameAddr, SipUri, Via};
pub use message::{bad_request, decode_stream, HeaderName, Message, MessageBuilder, Method, StartLine};
pub use transport::Transport;

/// RFC 3261's magic cookie: every branch that starts with it is unique per transaction.
pub const BRANCH_COOKIE: &str = "z9hG4bK";
