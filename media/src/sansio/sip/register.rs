//! Registration (RFC 3261 section 10): voxbridge as an extension of a PBX
//! or a trunk that wants to know where to send calls. Each registration
//! sends REGISTER for its address of record with voxbridge's Contact,
//! answers a digest challenge (MD5 or SHA-256) with the gateway's
//! credentials, and refreshes at half the interval the registrar granted
//! (the `expires` of our Contact in the `200`, else its `Expires`, else
//! what was asked). `423 Interval Too Brief` is followed with its
//! `Min-Expires`; a failure or no response is tried again after
//! [`RETRY_AFTER`]. [`SipUas::unregister_all`] sends `Expires: 0` when
//! voxbridge stops. Calls the registrar sends to the Contact arrive as any
//! other INVITE (routed by `[[sip.routes]]`).

use super::uas::{transport_index, Peer, SipUas};
use std::cmp::Reverse;
use std::time::{Duration, Instant};
use voxbridge_proto::sip::auth::Challenge;
use voxbridge_proto::sip::message::{HeaderName, Message, MessageBuilder, Method};
use voxbridge_proto::sip::transaction::TxEvent;
use voxbridge_proto::sip::{NameAddr, BRANCH_COOKIE};

/// A failed registration is tried again after this.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Refreshes are never closer together than this, whatever was granted.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// A registration to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Its name (the gateway's), for logs and timers.
    pub name: String,
    /// The registrar's URI (`sip:pbx.example`), the Request-URI.
    pub registrar: String,
    /// The address of record (`sip:2001@pbx.example`): `From` and `To`.
    pub aor: String,
    /// The user part of our Contact (the extension).
    pub contact_user: String,
    /// Where the REGISTERs go.
    pub peer: Peer,
    /// Digest user name and password.
    pub credentials: Option<(String, String)>,
    /// The interval asked for, seconds.
    pub expires: u32,
}

/// Where a registration is.
#[derive(Debug)]
pub(super) struct Registered {
    reg: Registration,
    sip_call_id: String,
    local_tag: String,
    cseq: u32,
    /// The interval asked for next (raised by a `423`).
    asking: u32,
    /// Challenge answers sent in a row (one per nonce; reset by a `200`).
    auth_tries: u8,
    /// The registrar holds our Contact.
    pub(super) up: bool,
}

impl SipUas {
    /// Starts keeping `reg` (REGISTER goes out now).
    pub fn register(&mut self, now: Instant, reg: Registration) {
        let name = reg.name.clone();
        let mut r = Registered {
            asking: reg.expires,
            reg,
            sip_call_id: format!("{}@voxbridge", self.unique()),
            local_tag: self.unique(),
            cseq: 0,
            auth_tries: 0,
            up: false,
        };
        self.send_register(now, &mut r, None, None);
        self.registrations.insert(name, r);
    }

    /// Registrations the registrar holds now.
    pub fn registered(&self) -> usize {
        self.registrations.values().filter(|r| r.up).count()
    }

    /// voxbridge stops: every registration is removed (`Expires: 0`), once;
    /// no refresh follows.
    pub fn unregister_all(&mut self, now: Instant) {
        let names: Vec<String> = self.registrations.keys().cloned().collect();
        for name in names {
            if let Some(mut r) = self.registrations.remove(&name) {
                if r.up {
                    self.send_register(now, &mut r, None, Some(0));
                }
            }
        }
    }

    /// A registration's refresh or retry came due.
    pub(super) fn registration_due(&mut self, now: Instant, name: &str) {
        if let Some(mut r) = self.registrations.remove(name) {
            self.send_register(now, &mut r, None, None);
            self.registrations.insert(name.to_owned(), r);
        }
    }

    /// An event of a REGISTER transaction of registration `name`.
    pub(super) fn register_event(&mut self, now: Instant, name: &str, event: TxEvent) {
        let Some(mut r) = self.registrations.remove(name) else {
            return;
        };
        let next = match event {
            TxEvent::Response(msg) => self.register_response(now, &mut r, &msg),
            TxEvent::Timeout => {
                tracing::warn!(registration = %name, "SIP REGISTER: no response; trying again in {RETRY_AFTER:?}");
                self.stats.register_failures += 1;
                r.up = false;
                Some(RETRY_AFTER)
            }
            TxEvent::AckTimeout => None,
        };
        if let Some(after) = next {
            self.timers.push(Reverse((now + after, format!("g|{name}"))));
        }
        self.registrations.insert(name.to_owned(), r);
    }

    /// What a response means; `Some(after)` schedules the next REGISTER.
    fn register_response(&mut self, now: Instant, r: &mut Registered, msg: &Message) -> Option<Duration> {
        let code = msg.status().unwrap_or(0);
        if msg.cseq().map(|c| c.seq).ok() != Some(r.cseq) {
            return None;
        }
        match code {
            100..=199 => None,
            200..=299 => {
                let granted = granted_expires(msg, &r.reg.contact_user).unwrap_or(r.asking);
                r.up = granted > 0;
                r.auth_tries = 0;
                self.stats.registrations += 1;
                tracing::info!(registration = %r.reg.name, granted, "SIP registered");
                Some((Duration::from_secs(u64::from(granted)) / 2).max(MIN_REFRESH))
            }
            401 | 407 if r.auth_tries < 2 => {
                let header = if code == 401 {
                    HeaderName::WwwAuthenticate
                } else {
                    HeaderName::ProxyAuthenticate
                };
                let challenge = msg.header(header).map(Challenge::parse);
                // A second challenge in a row is answered only when it says
                // our nonce went stale (the password was right).
                let retry = match (&r.reg.credentials, challenge) {
                    (Some((user, password)), Some(Ok(c))) if r.auth_tries == 0 || c.stale => {
                        let cnonce = format!("{:016x}", super::uas::mix(u64::from(r.cseq) ^ 0x4e67));
                        let value = c.authorization(user, password, "REGISTER", &r.reg.registrar, &cnonce, 1);
                        Some((
                            if code == 401 {
                                "Authorization"
                            } else {
                                "Proxy-Authorization"
                            },
                            value,
                        ))
                    }
                    _ => None,
                };
                match retry {
                    Some(auth) => {
                        r.auth_tries += 1;
                        self.send_register(now, r, Some(auth), None);
                        None
                    }
                    None => self.register_failed(r, code, "credentials missing or refused"),
                }
            }
            423 => {
                let min = msg
                    .header_named("min-expires")
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .filter(|m| *m > r.asking);
                match min {
                    Some(min) => {
                        r.asking = min;
                        self.send_register(now, r, None, None);
                        None
                    }
                    None => self.register_failed(r, code, "Interval Too Brief without a usable Min-Expires"),
                }
            }
            _ => self.register_failed(r, code, "refused"),
        }
    }

    fn register_failed(&mut self, r: &mut Registered, code: u16, why: &str) -> Option<Duration> {
        tracing::warn!(registration = %r.reg.name, code, why, "SIP REGISTER failed; trying again in {RETRY_AFTER:?}");
        self.stats.register_failures += 1;
        r.up = false;
        r.auth_tries = 0;
        Some(RETRY_AFTER)
    }

    /// Sends REGISTER for `r` (the next CSeq on its Call-ID), with `auth`
    /// when answering a challenge and `expires` when not the one asked for.
    fn send_register(
        &mut self,
        now: Instant,
        r: &mut Registered,
        auth: Option<(&str, String)>,
        expires: Option<u32>,
    ) {
        r.cseq += 1;
        let branch = format!("{BRANCH_COOKIE}{}", self.unique());
        let reg = &r.reg;
        let transport = reg.peer.transport;
        let sent_by = self.cfg.sent_by(transport);
        let contact = match transport_index(transport) {
            0 => format!("<sip:{}@{sent_by}>", reg.contact_user),
            _ => format!(
                "<sip:{}@{sent_by};transport={}>",
                reg.contact_user,
                transport.uri_param()
            ),
        };
        let mut b = MessageBuilder::request(&Method::Register, &reg.registrar)
            .header(
                "Via",
                format_args!("SIP/2.0/{} {sent_by};branch={branch};rport", transport.via_name()),
            )
            .header("Max-Forwards", 70)
            .header("From", format_args!("<{}>;tag={}", reg.aor, r.local_tag))
            .header("To", format_args!("<{}>", reg.aor))
            .header("Call-ID", &r.sip_call_id)
            .header("CSeq", format_args!("{} REGISTER", r.cseq))
            .header("Contact", contact)
            .header("Expires", expires.unwrap_or(r.asking))
            .header("User-Agent", &self.cfg.user_agent);
        if let Some((name, value)) = auth {
            b = b.header(name, value);
        }
        let request = b.build();
        self.stats.registers_sent += 1;
        let owner = Some(reg.name.clone());
        if let Err(e) = self.start_client(now, request, &Method::Register, &branch, reg.peer, owner) {
            tracing::error!(error = %e, "SIP request not sent");
        }
    }
}

/// The interval a `200` to REGISTER granted our Contact (the one whose user
/// is `contact_user`): its `expires` parameter, else the `Expires` header.
fn granted_expires(ok: &Message, contact_user: &str) -> Option<u32> {
    let ours = ok.header_list(HeaderName::Contact).find_map(|c| {
        let n = NameAddr::parse(c).ok()?;
        let uri = voxbridge_proto::sip::SipUri::parse(n.uri).ok()?;
        (uri.user == Some(contact_user)).then(|| n.param("expires").flatten()?.trim().parse::<u32>().ok())?
    });
    ours.or_else(|| ok.header(HeaderName::Expires)?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sansio::sip::uas::tests::uas;
    use voxbridge_proto::sip::auth::{challenge, Algorithm, Credentials};

    const REGISTRAR: &str = "203.0.113.50:5060";

    fn registration() -> Registration {
        Registration {
            name: "pbx".into(),
            registrar: "sip:pbx.example".into(),
            aor: "sip:2001@pbx.example".into(),
            contact_user: "2001".into(),
            peer: Peer::udp(REGISTRAR.parse().expect("addr")),
            credentials: Some(("2001".into(), "ext-pw".into())),
            expires: 600,
        }
    }

    fn sent(u: &mut SipUas) -> Vec<Message> {
        std::iter::from_fn(|| u.poll_transmit())
            .map(|(_, b)| Message::parse(b).expect("we send what parses"))
            .collect()
    }

    fn reply(u: &mut SipUas, t: Instant, req: &Message, code: u16, extra: &[(&str, &str)]) {
        let mut b = MessageBuilder::response_to(req, code, "Reason", Some("reg-tag"), None);
        for (n, v) in extra {
            b = b.header(n, v);
        }
        u.handle_datagram(t, REGISTRAR.parse().expect("addr"), b.build());
    }

    #[test]
    fn registers_through_a_challenge_and_refreshes_at_half_the_grant() {
        let mut u = uas();
        let t = Instant::now();
        u.register(t, registration());
        let first = sent(&mut u).remove(0);
        assert_eq!(first.method(), Some(&Method::Register));
        assert_eq!(first.request_uri(), Some("sip:pbx.example"));
        assert_eq!(first.header(HeaderName::Expires), Some("600"));
        assert_eq!(
            first.header(HeaderName::Contact),
            Some("<sip:2001@198.51.100.1:5060>")
        );
        let ch = challenge("pbx.example", "nonce-1", Algorithm::Md5, false);
        reply(&mut u, t, &first, 401, &[("WWW-Authenticate", &ch)]);
        let second = sent(&mut u).remove(0);
        assert_eq!(
            (second.cseq().expect("cseq").seq, second.call_id()),
            (2, first.call_id())
        );
        let creds =
            Credentials::parse(second.header(HeaderName::Authorization).expect("answer")).expect("parses");
        assert!(creds.verify("REGISTER", "ext-pw"));
        assert_eq!(u.registered(), 0);
        reply(
            &mut u,
            t,
            &second,
            200,
            &[("Contact", "<sip:2001@198.51.100.1:5060>;expires=120")],
        );
        assert_eq!(u.registered(), 1);
        // The refresh at half of the 120 s granted, same Call-ID, next CSeq.
        let due = t + Duration::from_secs(60);
        assert!(u.poll_timeout().is_some_and(|at| at <= due));
        u.handle_timeout(due);
        let refresh = sent(&mut u).remove(0);
        assert_eq!(
            (refresh.cseq().expect("cseq").seq, refresh.call_id()),
            (3, first.call_id())
        );
        // Stopping removes the binding.
        u.unregister_all(due);
        let bye = sent(&mut u).pop().expect("REGISTER Expires: 0");
        assert_eq!(bye.header(HeaderName::Expires), Some("0"));
        let s = u.stats();
        assert_eq!((s.registrations, s.register_failures), (1, 0));
    }

    #[test]
    fn too_brief_wrong_credentials_and_silence_are_retried_later() {
        let mut u = uas();
        let t = Instant::now();
        u.register(t, registration());
        let first = sent(&mut u).remove(0);
        reply(&mut u, t, &first, 423, &[("Min-Expires", "1800")]);
        let again = sent(&mut u).remove(0);
        assert_eq!(again.header(HeaderName::Expires), Some("1800"));
        // Challenged twice without stale: the password is wrong.
        let ch = challenge("pbx.example", "n", Algorithm::Sha256, false);
        reply(&mut u, t, &again, 401, &[("WWW-Authenticate", &ch)]);
        let answered = sent(&mut u).remove(0);
        reply(&mut u, t, &answered, 401, &[("WWW-Authenticate", &ch)]);
        assert!(sent(&mut u).is_empty(), "not answered twice");
        assert_eq!((u.registered(), u.stats().register_failures), (0, 1));
        // Tried again after RETRY_AFTER; this time nobody answers (Timer F).
        let retry = t + RETRY_AFTER;
        u.handle_timeout(retry);
        assert_eq!(sent(&mut u).len(), 1);
        while let Some(at) = u
            .poll_timeout()
            .filter(|at| *at < retry + Duration::from_secs(33))
        {
            u.handle_timeout(at);
        }
        assert_eq!(u.stats().register_failures, 2);
        assert!(
            u.poll_timeout().is_some_and(|at| at >= retry + RETRY_AFTER),
            "and once more later"
        );
    }
}
