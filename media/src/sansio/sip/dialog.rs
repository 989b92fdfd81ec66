//! One INVITE dialog (RFC 3261 section 12), made by an INVITE voxbridge
//! answered or one it placed: who the ends are, the route set, the local
//! CSeq, and where the call is.

use super::uas::Peer;
use crate::sansio::rtp::RtpFormat;
use std::fmt::Write as _;
use voxbridge_proto::sdp::{write_answer, AudioCodec, AudioOffer, LocalMedia};
use voxbridge_proto::sip::message::{HeaderName, Message, MessageBuilder, Method};
use voxbridge_proto::sip::NameAddr;

/// Where the call of a dialog is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The RTP call is being created.
    Starting {
        /// The caller cancelled before the call existed.
        cancelled: bool,
        /// The call ended (its bot was unavailable, say) before its start
        /// was reported: the INVITE gets `480` instead of a `200`.
        ended: bool,
    },
    /// Early media ([`super::UasConfig::early_media`]): the `183` with the
    /// SDP answer went out and media flows; the `200` goes out when the
    /// early-media timer fires.
    Early,
    /// The 200 OK went out.
    Answered {
        /// Its ACK arrived.
        acked: bool,
        /// The call ended before the ACK: send BYE once it comes.
        bye_pending: bool,
    },
}

/// A dialog created by an incoming INVITE (voxbridge the UAS) or by a
/// call voxbridge placed (the UAC: see `super::uac`).
#[derive(Debug)]
pub struct Dialog {
    /// voxbridge's call id for the RTP call.
    pub call_id: String,
    /// Our tag (in `To` of what we send as UAS, `From` of our requests).
    pub local_tag: String,
    /// The INVITE that made it (responses are built from it; for a call
    /// voxbridge placed, its own INVITE).
    pub invite: Message,
    /// Our end for our requests in the dialog: `From`, with our tag.
    pub local: String,
    /// The peer's end for our requests: `To`, with its tag once known.
    pub remote: String,
    /// Where our requests go (the peer's Contact URI, the remote target).
    pub target: String,
    /// `Route` headers of our requests, in order (RFC 3261 section 12.1).
    pub route_set: Vec<String>,
    /// A call voxbridge placed: the ACK of its 2xx, sent again when the 2xx
    /// is retransmitted.
    pub ack: Option<bytes::Bytes>,
    /// Key of the INVITE's server transaction.
    pub invite_tx: String,
    /// Where the INVITE came from (in-dialog requests go back there).
    pub peer: Peer,
    /// Where the call is.
    pub phase: Phase,
    /// Our SDP answer, once made (a refresh re-INVITE gets it again).
    pub answer: Option<String>,
    /// The last CSeq we used in this dialog.
    pub local_cseq: u32,
    /// Delayed offer: our 200 carried the offer, the ACK must bring the answer.
    pub awaiting_answer: bool,
    /// RFC 4028 session interval in seconds, when the caller asked for one
    /// (it refreshes; voxbridge ends a session that is not refreshed).
    pub session_interval: Option<u32>,
    /// When the session expires without a refresh (the peer refreshes).
    pub session_deadline: Option<std::time::Instant>,
    /// voxbridge refreshes the session (the peer asked `refresher=uas`
    /// and takes UPDATE): see `super::refresh`.
    pub we_refresh: bool,
    /// The peer supports `timer`: our responses that set the session
    /// timer carry `Require: timer` (not for a peer that does not).
    pub timer_required: bool,
    /// When voxbridge's next refresh is due.
    pub refresh_at: Option<std::time::Instant>,
    /// The caller holds the call (its last offer was `sendonly` or `inactive`).
    pub held: bool,
    /// A transfer under way: the REFER's target (see `super::transfer`).
    pub transfer: Option<String>,
    /// A transfer asked for before the call was up (the bot may ask at
    /// once): sent when the ACK comes.
    pub queued_transfer: Option<String>,
}

/// The dialog's ends as the UAS sees them from the INVITE it answers with
/// `local_tag` (RFC 3261 section 12.1.1): our `From` is the INVITE's `To`
/// with our tag, the peer's is its `From`, the remote target its Contact
/// (else its `From` URI), the route set its `Record-Route` in order.
pub struct Ends {
    /// See [`Dialog::local`].
    pub local: String,
    /// See [`Dialog::remote`].
    pub remote: String,
    /// See [`Dialog::target`].
    pub target: String,
    /// See [`Dialog::route_set`].
    pub route_set: Vec<String>,
}

impl Ends {
    /// The ends of a dialog the UAS makes from `invite` (from `peer`).
    pub fn of_invite(invite: &Message, local_tag: &str, peer: Peer) -> Ends {
        let to = invite.header(HeaderName::To).unwrap_or_default();
        let local = match NameAddr::parse(to).map(|n| n.tag().is_some()) {
            Ok(true) => to.to_owned(),
            _ => format!("{to};tag={local_tag}"),
        };
        Ends {
            local,
            remote: invite.header(HeaderName::From).unwrap_or_default().to_owned(),
            target: remote_target(
                invite
                    .header_list(HeaderName::Contact)
                    .next()
                    .or(invite.header(HeaderName::From)),
                peer,
            ),
            route_set: invite
                .header_list(HeaderName::RecordRoute)
                .map(str::to_owned)
                .collect(),
        }
    }

    /// The ends of a dialog the UAC makes from the 2xx to its INVITE: the
    /// peer's `To` (with its tag) and Contact, the route set the 2xx's
    /// `Record-Route` reversed (RFC 3261 section 12.1.2).
    pub fn of_2xx(invite: &Message, ok: &Message, peer: Peer) -> Ends {
        let mut route_set: Vec<String> = ok
            .header_list(HeaderName::RecordRoute)
            .map(str::to_owned)
            .collect();
        route_set.reverse();
        Ends {
            local: invite.header(HeaderName::From).unwrap_or_default().to_owned(),
            remote: ok.header(HeaderName::To).unwrap_or_default().to_owned(),
            target: remote_target(ok.header_list(HeaderName::Contact).next(), peer),
            route_set,
        }
    }
}

/// The URI of a Contact (or From) value, or the peer's address.
fn remote_target(value: Option<&str>, peer: Peer) -> String {
    value
        .and_then(|v| NameAddr::parse(v).ok())
        .map(|n| n.uri.to_owned())
        .unwrap_or_else(|| format!("sip:{}", peer.addr))
}

impl Dialog {
    /// Where the dialog's requests go when they must reach it anew (the
    /// connection it came on closed): the host and port of its first route
    /// or, without routes, of its remote target, when that host is an IP
    /// address (5060 when no port is written; no DNS here).
    pub fn next_hop(&self) -> Option<std::net::SocketAddr> {
        let uri = match self.route_set.first() {
            Some(route) => NameAddr::parse(route).ok()?.uri,
            None => self.target.as_str(),
        };
        let uri = voxbridge_proto::sip::SipUri::parse(uri).ok()?;
        let ip: std::net::IpAddr = uri
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        Some(std::net::SocketAddr::new(ip, uri.port.unwrap_or(5060)))
    }

    /// Arms the session timer from `now` (RFC 4028): the refresh voxbridge
    /// sends at half the interval when it refreshes, else the expiry when
    /// the peer does not. Returns the UAS timer entry to push (its stale
    /// entries are ignored: the dialog holds the time that counts).
    pub fn arm_session_timer(&mut self, now: std::time::Instant) -> (std::time::Instant, String) {
        let interval = self.session_interval.unwrap_or(super::uas::MIN_SE);
        if self.we_refresh {
            let at = super::uas::refresh_time(now, interval);
            self.refresh_at = Some(at);
            self.session_deadline = None;
            (at, format!("f|{}", self.call_id))
        } else {
            let at = super::uas::session_deadline(now, interval);
            self.session_deadline = Some(at);
            self.refresh_at = None;
            (at, format!("d|{}", self.call_id))
        }
    }

    /// A request inside the dialog from our side (BYE, INFO, REFER, the
    /// ACK of a 2xx): our `From`, the peer's `To`, to the remote target
    /// through the route set.
    pub fn request(&mut self, method: &Method, sent_by: &str, branch: &str, contact: &str) -> MessageBuilder {
        if *method != Method::Ack {
            self.local_cseq += 1;
        }
        let mut b = MessageBuilder::request(method, &self.target)
            .header(
                "Via",
                format_args!(
                    "SIP/2.0/{} {sent_by};branch={branch};rport",
                    self.peer.transport.via_name()
                ),
            )
            .header("Max-Forwards", 70);
        for route in &self.route_set {
            b = b.header("Route", route);
        }
        b.header("From", &self.local)
            .header("To", &self.remote)
            .header("Call-ID", self.invite.call_id())
            .header("CSeq", format_args!("{} {method}", self.local_cseq))
            .header("Contact", contact)
    }

    /// A response to the dialog's INVITE.
    pub fn invite_response(&self, code: u16, reason: &str) -> MessageBuilder {
        let tag = (code > 100).then_some(self.local_tag.as_str());
        MessageBuilder::response_to(&self.invite, code, reason, tag, Some(self.peer.addr))
    }
}

/// The `X-` headers of a request, for the bot's start parameters.
pub fn x_headers(msg: &Message) -> Vec<(String, String)> {
    msg.all_headers()
        .filter(|(name, _)| name.len() > 2 && name[..2].eq_ignore_ascii_case("x-"))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// The user part of a name-addr header's URI (a phone number, usually).
pub fn user_of(value: Option<&str>) -> Option<String> {
    let n = NameAddr::parse(value?).ok()?;
    let uri = voxbridge_proto::sip::SipUri::parse(n.uri).ok()?;
    uri.user.map(str::to_owned)
}

/// `sdp` with its direction attribute set to `direction` (`sendrecv`,
/// `recvonly`, `inactive`, ...) and, when that changes it, the `o=`
/// version raised by one (RFC 3264 section 8: a changed description gets
/// a new version; an unchanged one keeps it).
pub fn with_direction(sdp: &str, direction: &str) -> String {
    const DIRECTIONS: [&str; 4] = ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"];
    let wanted = format!("a={direction}");
    let current = sdp
        .lines()
        .map(str::trim_end)
        .find(|l| DIRECTIONS.contains(l))
        .unwrap_or("a=sendrecv");
    if current == wanted {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len() + 16);
    let mut written = false;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(rest) = line.strip_prefix("o=") {
            let mut fields: Vec<&str> = rest.split(' ').collect();
            let bumped = fields
                .get(2)
                .and_then(|v| v.parse::<u64>().ok())
                .map(|v| v.wrapping_add(1).to_string());
            if let Some(v) = &bumped {
                fields[2] = v;
            }
            out.push_str("o=");
            out.push_str(&fields.join(" "));
        } else if DIRECTIONS.contains(&line) {
            out.push_str(&wanted);
            written = true;
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    if !written {
        out.push_str(&wanted);
        out.push_str("\r\n");
    }
    out
}

/// The answer to an `offer` in the dialog that drops the call's codec:
/// the best codec of `codecs` (voxbridge's order) the offer has, on the
/// media of our `previous` answer (its address, port and rtcp-mux), with
/// its `o=` version raised by one. `None` when nothing is in common or
/// either SDP does not parse.
pub fn reanswer(offer: &str, previous: &str, codecs: &[AudioCodec]) -> Option<(String, RtpFormat)> {
    let ours = AudioOffer::parse(previous).ok()?;
    let mut n = AudioOffer::parse(offer).ok()?.negotiate(codecs).ok()?;
    // rtcp-mux is agreed once, for the session (RFC 5761 section 5.1.3).
    n.rtcp_mux = ours.rtcp_mux;
    let (id, version) = previous.lines().find_map(|l| {
        let mut f = l.trim_end().strip_prefix("o=")?.split(' ').skip(1);
        Some((f.next()?.parse::<u64>().ok()?, f.next()?.parse::<u64>().ok()?))
    })?;
    let local = LocalMedia {
        addr: ours.remote,
        session_id: id,
    };
    let written = write_answer(&local, &n);
    // `write_answer` gives version = id: put ours, raised, in its place.
    let mut sdp = String::with_capacity(written.len() + 8);
    for line in written.lines() {
        match line.strip_prefix(&format!("o=voxbridge {id} {id} ")) {
            Some(rest) => {
                let _ = write!(sdp, "o=voxbridge {id} {} {rest}", version.wrapping_add(1));
            }
            None => sdp.push_str(line),
        }
        sdp.push_str("\r\n");
    }
    Some((sdp, RtpFormat::from(&n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_changes_raise_the_version_once() {
        let sdp =
            "v=0\r\no=voxbridge 7 7 IN IP4 192.0.2.1\r\ns=x\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";
        let held = with_direction(sdp, "recvonly");
        assert!(held.contains("o=voxbridge 7 8 IN IP4"), "{held}");
        assert!(held.contains("a=recvonly\r\n") && !held.contains("sendrecv"));
        assert_eq!(with_direction(&held, "recvonly"), held, "unchanged: same version");
        let resumed = with_direction(&held, "sendrecv");
        assert!(resumed.contains("o=voxbridge 7 9 IN IP4") && resumed.contains("a=sendrecv"));
        let bare = with_direction("v=0\r\no=- 1 1 IN IP4 h\r\n", "inactive");
        assert!(bare.ends_with("a=inactive\r\n") && bare.contains("o=- 1 2 "));
    }
}
