//! One INVITE dialog as the UAS holds it (RFC 3261 section 12): who the
//! ends are, the route set, the local CSeq, and where the call is.

use super::uas::Peer;
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
    /// The 200 OK went out.
    Answered {
        /// Its ACK arrived.
        acked: bool,
        /// The call ended before the ACK: send BYE once it comes.
        bye_pending: bool,
    },
}

/// A dialog created by an incoming INVITE.
#[derive(Debug)]
pub struct Dialog {
    /// voxbridge's call id for the RTP call.
    pub call_id: String,
    /// Our tag (in `To` of what we send as UAS, `From` of our requests).
    pub local_tag: String,
    /// The INVITE that made it (responses are built from it).
    pub invite: Message,
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
    /// When the session expires without a refresh.
    pub session_deadline: Option<std::time::Instant>,
    /// The caller holds the call (its last offer was `sendonly` or `inactive`).
    pub held: bool,
}

impl Dialog {
    /// The peer's Contact URI (the remote target), or its From URI.
    pub fn remote_target(&self) -> String {
        let contact = self.invite.header_list(HeaderName::Contact).next();
        contact
            .or(self.invite.header(HeaderName::From))
            .and_then(|v| NameAddr::parse(v).ok())
            .map(|n| n.uri.to_owned())
            .unwrap_or_else(|| format!("sip:{}", self.peer.addr))
    }

    /// A request inside the dialog from our side (BYE, INFO, REFER):
    /// `From` is the INVITE's `To` with our tag, `To` the INVITE's `From`,
    /// the route set is the INVITE's `Record-Route` in order (RFC 3261
    /// section 12.1.1).
    pub fn request(&mut self, method: &Method, sent_by: &str, branch: &str, contact: &str) -> MessageBuilder {
        self.local_cseq += 1;
        let to = self.invite.header(HeaderName::To).unwrap_or_default();
        let from = match NameAddr::parse(to).map(|n| n.tag().is_some()) {
            Ok(true) => to.to_owned(),
            _ => format!("{to};tag={}", self.local_tag),
        };
        let mut b = MessageBuilder::request(method, &self.remote_target())
            .header(
                "Via",
                format_args!(
                    "SIP/2.0/{} {sent_by};branch={branch};rport",
                    self.peer.transport.via_name()
                ),
            )
            .header("Max-Forwards", 70);
        for route in self.invite.header_list(HeaderName::RecordRoute) {
            b = b.header("Route", route);
        }
        b.header("From", from)
            .header("To", self.invite.header(HeaderName::From).unwrap_or_default())
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
