//! RTP ingress, sans-IO: the receive and send halves of a leg ([`receiver`],
//! [`sender`]). The UDP sockets and the tick live in the call driver
//! (`crate::call::rtp`); sessions are created by `crate::sessions`.

pub mod receiver;
pub mod sender;
