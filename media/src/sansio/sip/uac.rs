//! The user agent client: calls voxbridge places on a SIP trunk
//! (`POST /v1/calls` and campaigns with `originator = "sip"`), in the same
//! sans-IO state machine as the UAS, so the dialog a placed call makes is
//! held, ended and answered (BYE, re-INVITE, INFO, OPTIONS) like any other.
//!
//! [`SipUas::dial`] sends the INVITE with voxbridge's SDP offer through a
//! client INVITE transaction (Timer A and B over UDP). What comes back:
//! - `180`/`183`: [`UasAction::DialProgress`] (the call is ringing);
//! - `401`/`407` with a digest challenge and credentials for the gateway:
//!   the INVITE again, once, with `Authorization` or
//!   `Proxy-Authorization` (MD5 or SHA-256, `qop=auth` when offered);
//! - a 2xx: the dialog (its `To` tag, Contact, reversed `Record-Route`),
//!   the ACK (sent again for each retransmitted 2xx), and
//!   [`UasAction::DialAnswered`] with the SDP answer; the driver starts
//!   the RTP call and reports with [`SipUas::dial_started`];
//! - a final failure, Timer B, or no answer within the ring timeout:
//!   [`UasAction::DialFailed`] with the SIP code and reason (the ring
//!   timeout CANCELs, reported as `408`).
//!
//! [`SipUas::cancel_dial`] gives up a call not answered yet: CANCEL once a
//! provisional response came (RFC 3261 section 9.1 forbids it before), and
//! a 2xx that crosses it is ACKed and ended with BYE at once. Everything is
//! reported once: after [`UasAction::DialFailed`], late answers only clean
//! up.

use super::dialog::{Dialog, Ends, Phase};
use super::uas::{client_key, transport_index, Peer, SipUas, UasAction};
use crate::events::SipCause;
use bytes::Bytes;
use std::cmp::Reverse;
use std::time::{Duration, Instant};
use voxbridge_proto::sip::auth::Challenge;
use voxbridge_proto::sip::message::{HeaderName, Message, MessageBuilder, Method};
use voxbridge_proto::sip::transaction::TxEvent;
use voxbridge_proto::sip::BRANCH_COOKIE;

/// A call for the UAC to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundCall {
    /// voxbridge's call id (the stored outbound call's).
    pub call_id: String,
    /// Request-URI and `To` (`sip:+15550100@trunk.example`).
    pub request_uri: String,
    /// `From` URI (`sip:+15550199@trunk.example`).
    pub from_uri: String,
    /// Where the INVITE goes (the gateway).
    pub peer: Peer,
    /// voxbridge's SDP offer.
    pub offer: String,
    /// Digest user name and password for the gateway's challenge.
    pub credentials: Option<(String, String)>,
    /// Given up (CANCEL) when not answered within this.
    pub ring_timeout: Duration,
    /// Extra headers for the INVITE (`X-` headers for the far end).
    pub headers: Vec<(String, String)>,
}

/// Whether voxbridge wants the call given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    /// No.
    No,
    /// Yes, and the CANCEL waits for a provisional response.
    Wanted,
    /// The CANCEL went out.
    Sent,
}

/// A placed call not answered yet.
#[derive(Debug)]
pub(super) struct Dial {
    call: OutboundCall,
    /// SIP Call-ID.
    sip_call_id: String,
    /// Our `From` tag.
    local_tag: String,
    /// CSeq of the current INVITE.
    cseq: u32,
    /// The current INVITE (a CANCEL is built from it) and its branch.
    invite: Bytes,
    branch: String,
    /// A provisional response (> 100) came: CANCEL may go out.
    provisional: bool,
    /// `180` or `183` already told the driver.
    progress_told: bool,
    cancel: Cancel,
    /// INVITEs sent with credentials (one is allowed).
    auth_tries: u8,
    /// The outcome went to the driver; what comes later only cleans up.
    reported: bool,
}

impl SipUas {
    /// Places `call`: the INVITE goes out now (see the module docs).
    pub fn dial(&mut self, now: Instant, call: OutboundCall) {
        self.stats.dials += 1;
        if self.dials.contains_key(&call.call_id) || self.dialogs.contains_key(&call.call_id) {
            self.actions.push_back(UasAction::DialFailed {
                call_id: call.call_id.clone(),
                sip: SipCause::new(None, "a call with this id is already placed"),
            });
            return;
        }
        let local_tag = self.unique();
        let sip_call_id = format!("{}@voxbridge", self.unique());
        let deadline = now + call.ring_timeout;
        let call_id = call.call_id.clone();
        let mut dial = Dial {
            call,
            sip_call_id,
            local_tag,
            cseq: 0,
            invite: Bytes::new(),
            branch: String::new(),
            provisional: false,
            progress_told: false,
            cancel: Cancel::No,
            auth_tries: 0,
            reported: false,
        };
        self.send_invite(now, &mut dial, None);
        self.dials.insert(call_id.clone(), dial);
        self.timers.push(Reverse((deadline, format!("r|{call_id}"))));
    }

    /// Gives up a placed call that is not answered yet (see the module
    /// docs); one already answered is ended with BYE. The outcome is still
    /// reported (`487` when the CANCEL took).
    pub fn cancel_dial(&mut self, now: Instant, call_id: &str) {
        let Some(dial) = self.dials.get_mut(call_id) else {
            self.call_ended(now, call_id);
            return;
        };
        if dial.cancel == Cancel::No {
            dial.cancel = Cancel::Wanted;
            if dial.provisional {
                self.send_cancel(now, call_id);
            }
        }
    }

    /// The driver's answer to [`UasAction::DialAnswered`]: the SDP that
    /// describes the call's media as set up (a refresh re-INVITE gets it),
    /// or why the call could not start (it is ended with BYE).
    pub fn dial_started(&mut self, now: Instant, call_id: &str, result: Result<String, String>) {
        match result {
            Ok(sdp) => match self.dialogs.get_mut(call_id) {
                Some(d) => d.answer = Some(sdp),
                // The callee's BYE came while the call was being started:
                // end the call that now runs.
                None => self.actions.push_back(UasAction::EndCall {
                    call_id: call_id.to_owned(),
                    sip: SipCause::new(None, "BYE before the call started"),
                    cause: crate::events::HangupCause::CallerHangup,
                }),
            },
            Err(why) => {
                tracing::info!(%call_id, error = %why, "SIP: the placed call could not start; BYE");
                self.send_bye(now, call_id);
            }
        }
    }

    /// The ring timeout of `call_id` came due.
    pub(super) fn ring_timeout(&mut self, now: Instant, call_id: &str) {
        let Some(dial) = self.dials.get_mut(call_id) else {
            return;
        };
        if !dial.reported {
            dial.reported = true;
            self.stats.dials_failed += 1;
            self.actions.push_back(UasAction::DialFailed {
                call_id: call_id.to_owned(),
                sip: SipCause::new(Some(408), "no answer within the ring timeout"),
            });
        }
        self.cancel_dial(now, call_id);
    }

    /// An event of the INVITE transaction of a placed call.
    pub(super) fn dial_event(&mut self, now: Instant, call_id: &str, event: TxEvent) {
        match event {
            TxEvent::Response(msg) => self.dial_response(now, call_id, msg),
            TxEvent::Timeout => {
                if self.dials.get(call_id).is_some_and(|d| !d.provisional) {
                    self.dial_over(call_id, SipCause::new(Some(408), "Request Timeout (no response)"));
                }
            }
            TxEvent::AckTimeout => {}
        }
    }

    fn dial_response(&mut self, now: Instant, call_id: &str, msg: Message) {
        let code = msg.status().unwrap_or(0);
        if (200..300).contains(&code) {
            return self.dial_answered(now, call_id, &msg);
        }
        let Some(dial) = self.dials.get_mut(call_id) else {
            return;
        };
        // A response to an INVITE we replaced (the one before the credentials).
        if msg.cseq().map(|c| c.seq).ok() != Some(dial.cseq) {
            return;
        }
        match code {
            100 => {}
            101..=199 => {
                dial.provisional = true;
                let tell = matches!(code, 180 | 183) && !dial.progress_told && !dial.reported;
                dial.progress_told |= tell;
                if dial.cancel == Cancel::Wanted {
                    self.send_cancel(now, call_id);
                }
                if tell {
                    self.actions.push_back(UasAction::DialProgress {
                        call_id: call_id.to_owned(),
                        code,
                    });
                }
            }
            401 | 407 if dial.auth_tries == 0 && dial.cancel == Cancel::No => {
                let header = if code == 401 {
                    HeaderName::WwwAuthenticate
                } else {
                    HeaderName::ProxyAuthenticate
                };
                let answered = match (&dial.call.credentials, msg.header(header).map(Challenge::parse)) {
                    (Some((user, password)), Some(Ok(challenge))) => {
                        let cnonce =
                            format!("{:016x}", crate::sansio::sip::uas::mix(dial.cseq as u64 ^ 0x5eed));
                        let value = challenge.authorization(
                            user,
                            password,
                            "INVITE",
                            &dial.call.request_uri,
                            &cnonce,
                            1,
                        );
                        let name = if code == 401 {
                            "Authorization"
                        } else {
                            "Proxy-Authorization"
                        };
                        Ok((name, value))
                    }
                    (None, _) => Err("the gateway asks for credentials and none are configured"),
                    (_, Some(Err(_)) | None) => Err("the gateway's challenge cannot be read"),
                };
                match answered {
                    Ok(auth) => {
                        let mut dial = match self.dials.remove(call_id) {
                            Some(d) => d,
                            None => return,
                        };
                        dial.auth_tries += 1;
                        self.stats.dial_auth += 1;
                        self.send_invite(now, &mut dial, Some(auth));
                        self.dials.insert(call_id.to_owned(), dial);
                    }
                    Err(why) => {
                        let reason = format!("{} {} ({why})", code, reason_phrase(&msg));
                        self.dial_over(call_id, SipCause::new(Some(code), &reason));
                    }
                }
            }
            _ => {
                let reason = reason_phrase(&msg).to_owned();
                self.dial_over(call_id, SipCause::new(Some(code), &reason));
            }
        }
    }

    /// A final failure: reported (unless it was already) and forgotten.
    pub(super) fn dial_over(&mut self, call_id: &str, sip: SipCause) {
        if let Some(dial) = self.dials.remove(call_id) {
            if !dial.reported {
                self.stats.dials_failed += 1;
                self.actions.push_back(UasAction::DialFailed {
                    call_id: call_id.to_owned(),
                    sip,
                });
            }
        }
    }

    fn dial_answered(&mut self, now: Instant, call_id: &str, ok: &Message) {
        // A retransmitted 2xx: the same ACK again.
        if let Some(d) = self.dialogs.get(call_id) {
            if let Some(ack) = d.ack.clone() {
                self.out.push_back((d.peer, ack));
            }
            return;
        }
        let Some(dial) = self.dials.remove(call_id) else {
            return;
        };
        let invite = match Message::parse(dial.invite.clone()) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(%call_id, error = %e, "SIP: our own INVITE does not parse");
                return;
            }
        };
        let peer = dial.call.peer;
        let ends = Ends::of_2xx(&invite, ok, peer);
        let mut dialog = Dialog {
            call_id: call_id.to_owned(),
            local_tag: dial.local_tag.clone(),
            invite,
            local: ends.local,
            remote: ends.remote,
            target: ends.target,
            route_set: ends.route_set,
            ack: None,
            invite_tx: client_key(&dial.branch, &Method::Invite),
            peer,
            phase: Phase::Answered {
                acked: true,
                bye_pending: false,
            },
            answer: None,
            local_cseq: dial.cseq,
            awaiting_answer: false,
            session_interval: None,
            session_deadline: None,
            we_refresh: false,
            timer_required: false,
            refresh_at: None,
            held: false,
            transfer: None,
            queued_transfer: None,
        };
        let branch = format!("{BRANCH_COOKIE}{}", self.unique());
        let ack = dialog
            .request(
                &Method::Ack,
                self.cfg.sent_by(peer.transport),
                &branch,
                &self.contacts[transport_index(peer.transport)],
            )
            .header("User-Agent", &self.cfg.user_agent)
            .build();
        dialog.ack = Some(ack.clone());
        self.out.push_back((peer, ack));
        self.by_sip.insert(
            (dial.sip_call_id.clone(), dial.local_tag.clone()),
            call_id.to_owned(),
        );
        self.dialogs.insert(call_id.to_owned(), dialog);
        let is_sdp = ok
            .header(HeaderName::ContentType)
            .is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("application/sdp"));
        let answer = std::str::from_utf8(ok.body())
            .ok()
            .filter(|b| is_sdp && !b.trim().is_empty());
        let failure = if dial.reported || dial.cancel != Cancel::No {
            Some(SipCause::new(None, "answered after voxbridge gave the call up"))
        } else if answer.is_none() {
            Some(SipCause::new(None, "the 2xx carries no SDP answer"))
        } else {
            None
        };
        match (failure, answer) {
            (None, Some(answer)) => {
                self.stats.dials_answered += 1;
                self.actions.push_back(UasAction::DialAnswered {
                    call_id: call_id.to_owned(),
                    answer: answer.to_owned(),
                });
            }
            (failure, _) => {
                if !dial.reported {
                    self.stats.dials_failed += 1;
                    self.actions.push_back(UasAction::DialFailed {
                        call_id: call_id.to_owned(),
                        sip: failure.unwrap_or_else(|| SipCause::new(None, "no SDP answer")),
                    });
                }
                self.send_bye(now, call_id);
            }
        }
    }

    /// Sends `dial`'s INVITE (the next CSeq, a new branch), with `auth`
    /// (`(header, value)`) when answering a challenge.
    fn send_invite(&mut self, now: Instant, dial: &mut Dial, auth: Option<(&str, String)>) {
        dial.cseq += 1;
        dial.branch = format!("{BRANCH_COOKIE}{}", self.unique());
        let call = &dial.call;
        let transport = call.peer.transport;
        let mut b = MessageBuilder::request(&Method::Invite, &call.request_uri)
            .header(
                "Via",
                format_args!(
                    "SIP/2.0/{} {};branch={};rport",
                    transport.via_name(),
                    self.cfg.sent_by(transport),
                    dial.branch
                ),
            )
            .header("Max-Forwards", 70)
            .header("From", format_args!("<{}>;tag={}", call.from_uri, dial.local_tag))
            .header("To", format_args!("<{}>", call.request_uri))
            .header("Call-ID", &dial.sip_call_id)
            .header("CSeq", format_args!("{} INVITE", dial.cseq))
            .header("Contact", &self.contacts[transport_index(transport)])
            .header("Allow", super::uas::ALLOW)
            .header("User-Agent", &self.cfg.user_agent);
        if let Some((name, value)) = auth {
            b = b.header(name, value);
        }
        for (name, value) in &call.headers {
            b = b.header(name, value);
        }
        let invite = b.body("application/sdp", call.offer.clone()).build();
        dial.invite = invite.clone();
        dial.provisional = false;
        let (branch, owner) = (dial.branch.clone(), Some(call.call_id.clone()));
        if let Err(e) = self.start_client(now, invite, &Method::Invite, &branch, call.peer, owner) {
            tracing::error!(error = %e, "SIP request not sent");
        }
    }

    /// CANCEL for the current INVITE of `call_id` (RFC 3261 section 9.1:
    /// its Request-URI, top Via, From, To, Call-ID and CSeq number).
    fn send_cancel(&mut self, now: Instant, call_id: &str) {
        let Some(dial) = self.dials.get_mut(call_id) else {
            return;
        };
        dial.cancel = Cancel::Sent;
        let Ok(invite) = Message::parse(dial.invite.clone()) else {
            return;
        };
        let cancel = MessageBuilder::request(&Method::Cancel, &dial.call.request_uri)
            .header(
                "Via",
                invite.header_list(HeaderName::Via).next().unwrap_or_default(),
            )
            .header("Max-Forwards", 70)
            .header("From", invite.header(HeaderName::From).unwrap_or_default())
            .header("To", invite.header(HeaderName::To).unwrap_or_default())
            .header("Call-ID", invite.call_id())
            .header("CSeq", format_args!("{} CANCEL", dial.cseq))
            .header("User-Agent", &self.cfg.user_agent)
            .build();
        let peer = dial.call.peer;
        let branch = dial.branch.clone();
        self.stats.dials_cancelled += 1;
        if let Err(e) = self.start_client(now, cancel, &Method::Cancel, &branch, peer, None) {
            tracing::error!(error = %e, "SIP request not sent");
        }
    }
}

/// The reason phrase of a response (empty when it has none).
pub(super) fn reason_phrase(msg: &Message) -> &str {
    match msg.start_line() {
        voxbridge_proto::sip::StartLine::Response { reason, .. } => reason,
        _ => "",
    }
}

/// The user part of a URI voxbridge writes: a number or name of
/// `A-Z a-z 0-9 + * . - _` and `#` (escaped, RFC 3261's `user` has no
/// room for it raw).
fn sip_user(user: &str) -> Result<String, String> {
    if user.is_empty() || user.len() > 64 {
        return Err(format!("{user:.70?}: 1-64 characters"));
    }
    let mut out = String::with_capacity(user.len() + 4);
    for c in user.chars() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '+' | '*' | '.' | '-' | '_' => out.push(c),
            '#' => out.push_str("%23"),
            _ => return Err(format!("{user:.70?}: only letters, digits and + * . - _ #")),
        }
    }
    Ok(out)
}

/// The Request-URI for `destination` through a gateway of `domain`: a
/// `sip:`/`sips:` URI as given (checked), or a number at the domain.
pub fn request_uri(destination: &str, domain: &str) -> Result<String, String> {
    let d = destination.trim();
    let is_uri = d.get(..4).is_some_and(|s| {
        s.eq_ignore_ascii_case("sip:") || d.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:"))
    });
    if is_uri {
        if d.len() > 256 || d.contains(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | ',')) {
            return Err(format!("destination {d:.70?} is not a plain SIP URI"));
        }
        voxbridge_proto::sip::SipUri::parse(d).map_err(|e| format!("destination: {e}"))?;
        return Ok(d.to_owned());
    }
    Ok(format!(
        "sip:{}@{domain}",
        sip_user(d).map_err(|e| format!("destination {e}"))?
    ))
}

/// The `From` URI: `user` (the caller id) at `domain`.
pub fn from_uri(user: &str, domain: &str) -> Result<String, String> {
    Ok(format!(
        "sip:{}@{domain}",
        sip_user(user).map_err(|e| format!("caller {e}"))?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sansio::sip::uas::tests::uas;
    use voxbridge_proto::sip::auth::{challenge, Algorithm, Credentials};
    use voxbridge_proto::sip::NameAddr;

    const GATEWAY: &str = "203.0.113.9:5060";
    const ANSWER: &str = "v=0\r\no=- 5 5 IN IP4 203.0.113.20\r\ns=-\r\nc=IN IP4 203.0.113.20\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

    fn call(credentials: bool) -> OutboundCall {
        OutboundCall {
            call_id: "out-1".into(),
            request_uri: request_uri("+15550100", "trunk.example").expect("number"),
            from_uri: from_uri("+15550199", "trunk.example").expect("number"),
            peer: Peer::udp(GATEWAY.parse().expect("addr")),
            offer: "v=0\r\nm=audio 20000 RTP/AVP 0 8 101\r\n".into(),
            credentials: credentials.then(|| ("acme".to_owned(), "pw".to_owned())),
            ring_timeout: Duration::from_secs(30),
            headers: vec![("X-Campaign".into(), "spring".into())],
        }
    }

    fn sent(u: &mut SipUas) -> Vec<Message> {
        std::iter::from_fn(|| u.poll_transmit())
            .map(|(peer, b)| {
                assert_eq!(
                    peer.addr,
                    GATEWAY.parse().expect("addr"),
                    "everything goes to the gateway"
                );
                Message::parse(b).expect("we send what parses")
            })
            .collect()
    }

    fn actions(u: &mut SipUas) -> Vec<UasAction> {
        std::iter::from_fn(|| u.poll_action()).collect()
    }

    /// The gateway's response to `invite`.
    fn reply(
        u: &mut SipUas,
        t: Instant,
        invite: &Message,
        code: u16,
        extra: &[(&str, &str)],
        body: Option<&str>,
    ) {
        let tag = (code > 100).then_some("gw-tag");
        let mut b = MessageBuilder::response_to(invite, code, "Reason", tag, None);
        for (n, v) in extra {
            b = b.header(n, v);
        }
        if let Some(body) = body {
            b = b.body("application/sdp", body.to_owned());
        }
        u.handle_datagram(t, GATEWAY.parse().expect("addr"), b.build());
    }

    fn method(m: &Message) -> Method {
        m.method().cloned().expect("a request")
    }

    #[test]
    fn a_placed_call_rings_is_answered_acked_and_ended_with_bye() {
        let mut u = uas();
        let t = Instant::now();
        u.dial(t, call(false));
        let out = sent(&mut u);
        assert_eq!(out.len(), 1);
        let invite = &out[0];
        assert_eq!(invite.request_uri(), Some("sip:+15550100@trunk.example"));
        assert!(invite
            .header(HeaderName::From)
            .is_some_and(|f| f.starts_with("<sip:+15550199@trunk.example>;tag=")));
        assert_eq!(
            invite.header(HeaderName::To),
            Some("<sip:+15550100@trunk.example>")
        );
        assert_eq!(invite.header_named("X-Campaign"), Some("spring"));
        assert!(invite.body().starts_with(b"v=0"));
        reply(&mut u, t, invite, 100, &[], None);
        reply(&mut u, t, invite, 180, &[], None);
        reply(&mut u, t, invite, 183, &[], None);
        assert_eq!(
            actions(&mut u),
            vec![UasAction::DialProgress {
                call_id: "out-1".into(),
                code: 180
            }],
            "ringing is told once"
        );
        let t = t + Duration::from_secs(3);
        let ok_headers = [
            ("Contact", "<sip:callee@203.0.113.20:5070>"),
            ("Record-Route", "<sip:p2.example;lr>, <sip:p1.example;lr>"),
        ];
        reply(&mut u, t, invite, 200, &ok_headers, Some(ANSWER));
        assert_eq!(
            actions(&mut u),
            vec![UasAction::DialAnswered {
                call_id: "out-1".into(),
                answer: ANSWER.into()
            }]
        );
        let ack = sent(&mut u).pop().expect("the ACK");
        assert_eq!(method(&ack), Method::Ack);
        assert_eq!(
            ack.request_uri(),
            Some("sip:callee@203.0.113.20:5070"),
            "to the Contact"
        );
        assert_eq!(ack.cseq().expect("cseq").seq, 1, "the INVITE's CSeq");
        let routes: Vec<&str> = ack.header_list(HeaderName::Route).collect();
        assert_eq!(
            routes,
            vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"],
            "route set reversed"
        );
        assert_eq!(
            NameAddr::parse(ack.header(HeaderName::To).expect("to"))
                .expect("to")
                .tag(),
            Some("gw-tag")
        );
        // The 2xx again (our ACK was lost): the same ACK again.
        reply(&mut u, t, invite, 200, &ok_headers, Some(ANSWER));
        let again: Vec<Bytes> = std::iter::from_fn(|| u.poll_transmit()).map(|(_, b)| b).collect();
        assert_eq!(again.len(), 1);
        assert_eq!(
            Message::parse(again[0].clone())
                .expect("ack")
                .header(HeaderName::Via),
            ack.header(HeaderName::Via)
        );
        assert!(actions(&mut u).is_empty(), "told once");
        u.dial_started(t, "out-1", Ok("v=0\r\n".into()));
        u.call_ended(t, "out-1");
        let bye = sent(&mut u).pop().expect("BYE");
        assert_eq!(method(&bye), Method::Bye);
        assert_eq!(bye.cseq().expect("cseq").seq, 2);
        assert_eq!(bye.call_id(), invite.call_id());
        assert_eq!(bye.header(HeaderName::From), invite.header(HeaderName::From));
        assert_eq!(u.dialogs(), 0);
        let s = u.stats();
        assert_eq!(
            (s.dials, s.dials_answered, s.dials_failed, s.byes_sent),
            (1, 1, 0, 1)
        );
    }

    #[test]
    fn the_callee_hangs_up_with_bye() {
        let mut u = uas();
        let t = Instant::now();
        u.dial(t, call(false));
        let invite = sent(&mut u).remove(0);
        reply(
            &mut u,
            t,
            &invite,
            200,
            &[("Contact", "<sip:callee@203.0.113.20>")],
            Some(ANSWER),
        );
        let _ = (sent(&mut u), actions(&mut u));
        // The callee's BYE: our From is its To, its tag our From's.
        let from = invite.header(HeaderName::From).expect("from");
        let bye = format!(
            "BYE sip:voxbridge@198.51.100.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bKbye1\r\n\
             From: <sip:+15550100@trunk.example>;tag=gw-tag\r\nTo: {from}\r\nCall-ID: {}\r\nCSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n",
            invite.call_id()
        );
        u.handle_datagram(t, GATEWAY.parse().expect("addr"), Bytes::from(bye));
        assert_eq!(sent(&mut u)[0].status(), Some(200));
        assert!(matches!(&actions(&mut u)[..], [UasAction::EndCall { call_id, .. }] if call_id == "out-1"));
        assert_eq!(u.dialogs(), 0);
        // The BYE came before the driver's call was up: it is ended once up.
        u.dial_started(t, "out-1", Ok("v=0\r\n".into()));
        assert!(matches!(&actions(&mut u)[..], [UasAction::EndCall { call_id, .. }] if call_id == "out-1"));
    }

    #[test]
    fn a_challenge_is_answered_once_and_busy_is_reported() {
        for (code, header, auth) in [
            (401, "WWW-Authenticate", HeaderName::Authorization),
            (407, "Proxy-Authenticate", HeaderName::ProxyAuthorization),
        ] {
            let mut u = uas();
            let t = Instant::now();
            u.dial(t, call(true));
            let invite = sent(&mut u).remove(0);
            let ch = challenge("trunk.example", "n1", Algorithm::Sha256, false);
            reply(&mut u, t, &invite, code, &[(header, &ch)], None);
            let out = sent(&mut u);
            assert_eq!(
                out.iter().map(method).collect::<Vec<_>>(),
                vec![Method::Ack, Method::Invite]
            );
            let again = &out[1];
            assert_eq!(again.cseq().expect("cseq").seq, 2);
            assert_eq!(again.call_id(), invite.call_id());
            let creds = Credentials::parse(again.header(auth).expect("credentials")).expect("parses");
            assert!(creds.verify("INVITE", "pw") && creds.uri == "sip:+15550100@trunk.example");
            // Challenged again: not answered twice.
            reply(&mut u, t, again, code, &[(header, &ch)], None);
            let failed = actions(&mut u);
            assert!(
                matches!(&failed[..], [UasAction::DialFailed { sip, .. }] if sip.code == Some(code)),
                "{failed:?}"
            );
            assert_eq!(u.dialogs(), 0);
        }
        // Without credentials, and busy.
        let mut u = uas();
        let t = Instant::now();
        u.dial(t, call(false));
        let invite = sent(&mut u).remove(0);
        reply(
            &mut u,
            t,
            &invite,
            407,
            &[("Proxy-Authenticate", "Digest realm=\"r\", nonce=\"n\"")],
            None,
        );
        assert!(
            matches!(&actions(&mut u)[..], [UasAction::DialFailed { sip, .. }] if sip.code == Some(407) && sip.reason.contains("none are configured"))
        );
        assert_eq!(
            sent(&mut u).iter().map(method).collect::<Vec<_>>(),
            vec![Method::Ack]
        );
        u.dial(t, call(false));
        let invite = sent(&mut u).remove(0);
        reply(&mut u, t, &invite, 486, &[], None);
        assert_eq!(
            sent(&mut u).iter().map(method).collect::<Vec<_>>(),
            vec![Method::Ack]
        );
        assert!(matches!(&actions(&mut u)[..], [UasAction::DialFailed { sip, .. }] if sip.code == Some(486)));
        assert_eq!(u.stats().dials_failed, 2);
    }

    #[test]
    fn the_ring_timeout_cancels_and_a_crossing_answer_is_acked_and_ended() {
        let mut u = uas();
        let t = Instant::now();
        let mut c = call(false);
        c.ring_timeout = Duration::from_secs(20);
        u.dial(t, c);
        let invite = sent(&mut u).remove(0);
        reply(&mut u, t, &invite, 180, &[], None);
        let _ = actions(&mut u);
        let later = t + Duration::from_secs(20);
        assert!(u.poll_timeout().is_some_and(|at| at <= later));
        u.handle_timeout(later);
        let failed = actions(&mut u);
        assert!(
            matches!(&failed[..], [UasAction::DialFailed { sip, .. }] if sip.code == Some(408)),
            "{failed:?}"
        );
        let cancel = sent(&mut u)
            .into_iter()
            .find(|m| method(m) == Method::Cancel)
            .expect("CANCEL");
        assert_eq!(
            cancel.top_via().expect("via").branch(),
            invite.top_via().expect("via").branch()
        );
        assert_eq!(cancel.cseq().expect("cseq").seq, 1);
        // The answer crossed the CANCEL: ACK, then BYE, nothing reported again.
        reply(
            &mut u,
            later,
            &invite,
            200,
            &[("Contact", "<sip:c@203.0.113.20>")],
            Some(ANSWER),
        );
        let out: Vec<Method> = sent(&mut u).iter().map(method).collect();
        assert_eq!(out, vec![Method::Ack, Method::Bye]);
        assert!(actions(&mut u).is_empty());
        assert_eq!(u.dialogs(), 0);
    }

    #[test]
    fn cancel_waits_for_a_provisional_and_no_response_is_a_408() {
        let mut u = uas();
        let t = Instant::now();
        u.dial(t, call(false));
        let invite = sent(&mut u).remove(0);
        u.cancel_dial(t, "out-1");
        assert!(sent(&mut u).is_empty(), "no CANCEL before a provisional response");
        reply(&mut u, t, &invite, 183, &[], None);
        let out: Vec<Method> = sent(&mut u).iter().map(method).collect();
        assert_eq!(out, vec![Method::Cancel]);
        reply(&mut u, t, &invite, 487, &[], None);
        let got = actions(&mut u);
        assert!(
            matches!(got.last(), Some(UasAction::DialFailed { sip, .. }) if sip.code == Some(487)),
            "{got:?}"
        );
        // Timer B: no response at all.
        let mut u = uas();
        u.dial(t, call(false));
        while let Some(at) = u.poll_timeout().filter(|at| *at < t + Duration::from_secs(33)) {
            u.handle_timeout(at);
        }
        let retransmits = sent(&mut u).len();
        assert!(retransmits >= 7, "Timer A retransmits ({retransmits})");
        let got = actions(&mut u);
        assert!(
            matches!(&got[..], [UasAction::DialFailed { sip, .. }] if sip.code == Some(408)),
            "{got:?}"
        );
        assert_eq!(u.dialogs(), 0);
    }

    #[test]
    fn a_gateway_that_cannot_be_reached_fails_the_call_at_once() {
        let mut u = uas();
        let t = Instant::now();
        let mut c = call(false);
        c.peer.transport = voxbridge_proto::sip::Transport::Tcp;
        u.dial(t, c.clone());
        assert_eq!(sent(&mut u).len(), 1, "the INVITE, for the driver to send");
        u.transport_failed(t, c.peer);
        let got = actions(&mut u);
        assert!(
            matches!(&got[..], [UasAction::DialFailed { sip, .. }] if sip.code == Some(503)),
            "{got:?}"
        );
        assert_eq!((u.dialogs(), u.transactions()), (0, 0));
    }

    #[test]
    fn destinations_and_callers_become_uris_or_clear_errors() {
        assert_eq!(
            request_uri("+49 30", "t").expect_err("a space"),
            "destination \"+49 30\": only letters, digits and + * . - _ #"
        );
        assert_eq!(request_uri("*77#", "t").expect("ok"), "sip:*77%23@t");
        assert_eq!(
            request_uri("sip:alice@pbx.example:5080", "t").expect("uri"),
            "sip:alice@pbx.example:5080"
        );
        assert!(request_uri("sip:<x>", "t").is_err() && request_uri("tel:+1555", "t").is_err());
        assert!(from_uri("", "t").is_err() && from_uri("a@b", "t").is_err());
    }
}
