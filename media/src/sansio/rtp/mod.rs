//! RTP ingress, sans-IO: the leg's protocol state ([`leg`]: latching, media
//! timeout, RTCP) over its receive and send halves ([`receiver`],
//! [`sender`]). The UDP sockets and the clock live in the call driver
//! (`crate::driver::rtp`); sessions are created by `crate::driver::sessions`.

pub mod leg;
pub mod receiver;
pub mod sender;

use voxbridge_proto::sdp::{AudioCodec, Negotiated};

/// The media format of an RTP call as SDP agreed it: the codec, its payload
/// type and the telephone-event one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpFormat {
    /// The audio codec.
    pub codec: AudioCodec,
    /// Its payload type.
    pub pt: u8,
    /// The telephone-event payload type, if any.
    pub dtmf_pt: Option<u8>,
}

impl From<&Negotiated> for RtpFormat {
    fn from(n: &Negotiated) -> Self {
        RtpFormat {
            codec: n.codec,
            pt: n.pt,
            dtmf_pt: n.dtmf_pt,
        }
    }
}
