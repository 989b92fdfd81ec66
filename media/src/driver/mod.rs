//! The tokio half of the media engine: sockets, tasks and the clock. Each
//! call runs as one task ([`call_task`]) that owns its caller leg's I/O
//! ([`audiosocket`], [`rtp`], [`chanws`] on [`wsconn`]), its bot WebSocket ([`botlink`]) and the
//! sans-IO `Call` they feed. [`server`] accepts AudioSocket and chan_websocket connections and
//! drains calls on shutdown, [`sessions`] creates RTP calls, [`sip`] answers a SIP trunk
//! (each call an RTP session), [`net`] batches
//! the shared UDP port's I/O. A new ingress is one more leg here (its I/O)
//! plus its wire format in `voxbridge-proto`; see ARCHITECTURE.md.

pub(crate) mod audiosocket;
pub mod botlink;
pub(crate) mod call_task;
pub(crate) mod chanws;
pub mod net;
pub(crate) mod recorder;
pub(crate) mod rtp;
pub mod server;
pub mod sessions;
pub(crate) mod sip;
pub(crate) mod stt;
pub(crate) mod wsconn;
