//! The SIP leg's signalling, sans-IO: a user agent that answers calls
//! from a SIP trunk and places calls on one ([`uac`]), each an RTP call,
//! and registers with PBXs and trunks that want it ([`register`]); a call
//! is handed on to a person by REFER ([`transfer`]).
//!
//! [`uas::SipUas`] takes datagrams (UDP), framed messages (TCP, TLS) and `now`, keeps the transactions
//! (`voxbridge_proto::sip::transaction`) and dialogs, and hands out
//! datagrams to send, actions for the driver (start an RTP call from an
//! SDP offer, end one) and the instant it next needs waking. The driver
//! (`crate::driver::sip`) owns the socket and the clock and creates the RTP
//! calls through the same session registry as `/v1/rtp/sessions`, so the
//! media half (jitter buffer, PLC, RFC 4733, RTCP) is the RTP leg's.

pub mod dialog;
pub mod policy;
pub mod refresh;
pub mod register;
pub mod transfer;
pub mod uac;
pub mod uas;

pub use policy::{Cidr, RouteRule};
pub use register::Registration;
pub use uac::OutboundCall;
pub use uas::{DigestAuth, Peer, Refusal, SipUas, UasAction, UasConfig, UasStats};
