//! RTP ingress, sans-IO: the leg's protocol state ([`leg`]: latching, media
//! timeout, RTCP) over its receive and send halves ([`receiver`],
//! [`sender`]). The UDP sockets and the clock live in the call driver
//! (`crate::driver::rtp`); sessions are created by `crate::driver::sessions`.

pub mod leg;
pub mod receiver;
pub mod sender;
