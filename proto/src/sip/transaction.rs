//! The four SIP transaction state machines of RFC 3261 section 17, sans-IO,
//! with RFC 6026's Accepted states.
//!
//! A [`Transaction`] is fed messages ([`Transaction::on_request`],
//! [`Transaction::on_response`]), the transaction user's answers
//! ([`Transaction::respond`]) and time ([`Transaction::handle_timeout`]);
//! it hands out bytes to send ([`Transaction::poll_transmit`]), events for
//! the transaction user ([`Transaction::poll_event`]) and the instant it
//! next needs waking ([`Transaction::poll_timeout`]). Retransmission
//! timers (A, E, G) run only over unreliable transports; the wait timers
//! (B, D, F, H, I, J, K, L, M) follow the RFC's table, zero where it says
//! so for reliable ones. The transaction never reads a clock.
//!
//! One choice beyond the RFC text: a UAS's 2xx to an INVITE is
//! retransmitted by the server transaction in its Accepted state (RFC 3261
//! puts that in the UAS core, section 13.3.1.4) until the transaction user
//! reports the ACK with [`Transaction::ack_received`], because the
//! transaction already holds the response and its timer; the user still
//! matches that ACK, which arrives as its own transaction, to the dialog.

use super::message::{HeaderName, Message, MessageBuilder, Method};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// RFC 3261's timer constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip estimate (500 ms).
    pub t1: Duration,
    /// Largest retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// Longest time a message stays in the network (5 s).
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// Which of the four machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Answers an INVITE.
    ServerInvite,
    /// Answers any other request (ACK never gets a transaction of its own).
    ServerNonInvite,
    /// Sends an INVITE.
    ClientInvite,
    /// Sends any other request.
    ClientNonInvite,
}

/// Where a transaction is (RFC 3261 figures 5-8, with RFC 6026's Accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Client INVITE sent, nothing heard.
    Calling,
    /// Client non-INVITE sent / server non-INVITE not yet answered.
    Trying,
    /// A provisional response was sent or received.
    Proceeding,
    /// A final non-2xx (or any non-INVITE final) was sent or received.
    Completed,
    /// Server INVITE: the ACK for a non-2xx arrived.
    Confirmed,
    /// A 2xx to an INVITE was sent or received (RFC 6026).
    Accepted,
    /// Done: drop the transaction.
    Terminated,
}

/// What a transaction tells its user.
#[derive(Debug, Clone)]
pub enum TxEvent {
    /// Client: a response to pass up (retransmitted 2xx to an INVITE included,
    /// so the user can ACK each of them).
    Response(Message),
    /// Client: no final response in time (Timer B or F): treat as 408.
    Timeout,
    /// Server INVITE: the final response was never acknowledged (Timer H,
    /// or no ACK for a 2xx within 64*T1): the user should end the dialog.
    AckTimeout,
}

/// One transaction.
#[derive(Debug)]
pub struct Transaction {
    kind: Kind,
    state: State,
    reliable: bool,
    timers: Timers,
    /// Client: the request (retransmitted); server: unused.
    request: Option<Bytes>,
    /// Client INVITE: the request, parsed, to build the ACK for a non-2xx.
    invite: Option<Message>,
    /// Server: the last response sent; client INVITE: the ACK sent.
    last_sent: Option<Bytes>,
    retransmit_at: Option<Instant>,
    retransmit_every: Duration,
    /// The timer that ends the current state (B, D, F, H, I, J, K, L, M).
    end_at: Option<Instant>,
    ack_pending: bool,
    transmits: VecDeque<Bytes>,
    events: VecDeque<TxEvent>,
}

impl Transaction {
    fn new(kind: Kind, state: State, reliable: bool, timers: Timers) -> Transaction {
        Transaction {
            kind,
            state,
            reliable,
            timers,
            request: None,
            invite: None,
            last_sent: None,
            retransmit_at: None,
            retransmit_every: timers.t1,
            end_at: None,
            ack_pending: false,
            transmits: VecDeque::with_capacity(2),
            events: VecDeque::with_capacity(2),
        }
    }

    /// A server transaction for a request just received (not an ACK: an ACK
    /// for a non-2xx goes to the INVITE's transaction, one for a 2xx to the
    /// dialog).
    pub fn server(request: &Message, reliable: bool, timers: Timers) -> Transaction {
        let (kind, state) = match request.method() {
            Some(Method::Invite) => (Kind::ServerInvite, State::Proceeding),
            _ => (Kind::ServerNonInvite, State::Trying),
        };
        Transaction::new(kind, state, reliable, timers)
    }

    /// A client transaction that sends `request` (a message from
    /// [`MessageBuilder`]) now.
    pub fn client(
        now: Instant,
        request: Bytes,
        reliable: bool,
        timers: Timers,
    ) -> Result<Transaction, crate::ProtoError> {
        let parsed = Message::parse(request.clone())?;
        let Some(method) = parsed.method() else {
            return Err(super::message::bad("a client transaction needs a request"));
        };
        let mut tx = if *method == Method::Invite {
            let mut tx = Transaction::new(Kind::ClientInvite, State::Calling, reliable, timers);
            tx.invite = Some(parsed);
            tx
        } else {
            Transaction::new(Kind::ClientNonInvite, State::Trying, reliable, timers)
        };
        tx.end_at = Some(now + timers.t1 * 64); // Timer B or F
        if !reliable {
            tx.retransmit_at = Some(now + timers.t1); // Timer A or E
        }
        tx.transmits.push_back(request.clone());
        tx.request = Some(request);
        Ok(tx)
    }

    /// Which machine this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Where it is.
    pub fn state(&self) -> State {
        self.state
    }

    /// True once it can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// Server: the user's response (`bytes` from
    /// [`MessageBuilder::response_to`], `code` its status). Returns false,
    /// sending nothing, when a final response was already sent.
    #[must_use]
    pub fn respond(&mut self, now: Instant, code: u16, bytes: Bytes) -> bool {
        let open = matches!(
            (self.kind, self.state),
            (Kind::ServerInvite, State::Proceeding)
                | (Kind::ServerNonInvite, State::Trying | State::Proceeding)
        );
        if !open {
            return false;
        }
        self.transmits.push_back(bytes.clone());
        self.last_sent = Some(bytes);
        let t1 = self.timers.t1;
        match (self.kind, code) {
            (_, 100..=199) => {
                if self.kind == Kind::ServerNonInvite {
                    self.state = State::Proceeding;
                }
            }
            (Kind::ServerInvite, 200..=299) => {
                self.state = State::Accepted;
                self.ack_pending = true;
                self.end_at = Some(now + t1 * 64); // Timer L, and the 2xx's ACK wait
                self.retransmit_every = t1;
                self.retransmit_at = (!self.reliable).then(|| now + t1);
            }
            (Kind::ServerInvite, _) => {
                self.state = State::Completed;
                self.end_at = Some(now + t1 * 64); // Timer H
                self.retransmit_every = t1;
                self.retransmit_at = (!self.reliable).then(|| now + t1); // Timer G
            }
            _ => {
                self.state = State::Completed;
                self.end_at = Some(now + if self.reliable { Duration::ZERO } else { t1 * 64 });
                // Timer J
            }
        }
        true
    }

    /// Server: a request matched to this transaction (a retransmission, or
    /// the ACK of a non-2xx final response).
    pub fn on_request(&mut self, now: Instant, request: &Message) {
        let is_ack = request.method() == Some(&Method::Ack);
        match (self.kind, self.state, is_ack) {
            (Kind::ServerInvite, State::Completed, true) => {
                self.state = State::Confirmed;
                self.retransmit_at = None;
                self.end_at = Some(
                    now + if self.reliable {
                        Duration::ZERO
                    } else {
                        self.timers.t4
                    },
                ); // Timer I
            }
            (_, State::Proceeding | State::Completed | State::Accepted, false) => {
                if let Some(last) = &self.last_sent {
                    self.transmits.push_back(last.clone());
                }
            }
            _ => {}
        }
    }

    /// Server INVITE in Accepted: the user matched an ACK to the 2xx, so
    /// the 2xx is no longer retransmitted.
    pub fn ack_received(&mut self) {
        if self.state == State::Accepted {
            self.ack_pending = false;
            self.retransmit_at = None;
        }
    }

    /// Client: a response matched to this transaction.
    pub fn on_response(&mut self, now: Instant, response: Message) {
        let Some(code) = response.status() else {
            return;
        };
        let t4 = self.timers.t4;
        match (self.kind, self.state) {
            (Kind::ClientNonInvite, State::Trying | State::Proceeding) => {
                if code < 200 {
                    self.state = State::Proceeding;
                    if !self.reliable {
                        self.retransmit_every = self.timers.t2;
                    }
                } else {
                    self.state = State::Completed;
                    self.retransmit_at = None;
                    self.end_at = Some(now + if self.reliable { Duration::ZERO } else { t4 });
                    // Timer K
                }
                self.events.push_back(TxEvent::Response(response));
            }
            (Kind::ClientInvite, State::Calling | State::Proceeding) => {
                self.retransmit_at = None;
                match code {
                    100..=199 => {
                        self.state = State::Proceeding;
                        self.end_at = None;
                    }
                    200..=299 => {
                        self.state = State::Accepted;
                        self.end_at = Some(now + self.timers.t1 * 64); // Timer M
                    }
                    _ => {
                        self.state = State::Completed;
                        self.send_ack_for(&response);
                        let timer_d = if self.reliable {
                            Duration::ZERO
                        } else {
                            Duration::from_secs(32)
                        };
                        self.end_at = Some(now + timer_d);
                    }
                }
                self.events.push_back(TxEvent::Response(response));
            }
            (Kind::ClientInvite, State::Accepted) if (200..300).contains(&code) => {
                self.events.push_back(TxEvent::Response(response));
            }
            (Kind::ClientInvite, State::Completed) if code >= 300 => {
                if let Some(ack) = &self.last_sent {
                    self.transmits.push_back(ack.clone());
                }
            }
            _ => {}
        }
    }

    /// The ACK for a non-2xx final response (RFC 3261 section 17.1.1.3):
    /// the INVITE's Request-URI, top Via, From, Call-ID, CSeq number and
    /// Route, with the response's To.
    fn send_ack_for(&mut self, response: &Message) {
        let Some(invite) = &self.invite else {
            return;
        };
        let uri = invite.request_uri().unwrap_or_default();
        let mut b = MessageBuilder::request(&Method::Ack, uri)
            .header(
                "Via",
                invite.header_list(HeaderName::Via).next().unwrap_or_default(),
            )
            .header("Max-Forwards", 70)
            .header("From", invite.header(HeaderName::From).unwrap_or_default())
            .header("To", response.header(HeaderName::To).unwrap_or_default())
            .header("Call-ID", invite.call_id());
        let seq = invite.cseq().map(|c| c.seq).unwrap_or_default();
        b = b.header("CSeq", format_args!("{seq} ACK"));
        for route in invite.headers(HeaderName::Route) {
            b = b.header("Route", route);
        }
        let ack = b.build();
        self.transmits.push_back(ack.clone());
        self.last_sent = Some(ack);
    }

    /// The instant the transaction next needs [`Transaction::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.retransmit_at, self.end_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.end_at.is_some_and(|t| t <= now) {
            self.end_at = None;
            self.retransmit_at = None;
            match (self.kind, self.state) {
                (Kind::ClientInvite, State::Calling)
                | (Kind::ClientNonInvite, State::Trying | State::Proceeding) => {
                    self.events.push_back(TxEvent::Timeout);
                }
                (Kind::ServerInvite, State::Completed) => self.events.push_back(TxEvent::AckTimeout),
                (Kind::ServerInvite, State::Accepted) if self.ack_pending => {
                    self.events.push_back(TxEvent::AckTimeout);
                }
                _ => {}
            }
            self.state = State::Terminated;
            return;
        }
        let Some(at) = self.retransmit_at.filter(|t| *t <= now) else {
            return;
        };
        let resend = match self.kind {
            Kind::ClientInvite | Kind::ClientNonInvite => self.request.clone(),
            Kind::ServerInvite | Kind::ServerNonInvite => self.last_sent.clone(),
        };
        if let Some(bytes) = resend {
            self.transmits.push_back(bytes);
        }
        // Timer A doubles without a cap; E and G (and the 2xx) cap at T2;
        // E in Proceeding stays at T2.
        let doubled = self.retransmit_every * 2;
        self.retransmit_every = match (self.kind, self.state) {
            (Kind::ClientInvite, _) => doubled,
            (Kind::ClientNonInvite, State::Proceeding) => self.timers.t2,
            _ => doubled.min(self.timers.t2),
        };
        self.retransmit_at = Some(at.max(now) + self.retransmit_every);
    }

    /// Bytes to send to the peer, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    /// Events for the transaction user, oldest first.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bot@vb SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:bot@vb>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nRoute: <sip:p1;lr>\r\nContent-Length: 0\r\n\r\n";

    fn invite() -> Message {
        Message::parse(Bytes::from_static(INVITE.as_bytes())).expect("valid in this test")
    }

    fn drain(tx: &mut Transaction) -> Vec<Bytes> {
        std::iter::from_fn(|| tx.poll_transmit()).collect()
    }

    /// Runs every timer until `until`, returning how many bytes went out and when.
    fn run(tx: &mut Transaction, start: Instant, until: Duration) -> Vec<Duration> {
        let mut sent = Vec::new();
        while let Some(at) = tx.poll_timeout() {
            if at > start + until {
                break;
            }
            tx.handle_timeout(at);
            for _ in drain(tx) {
                sent.push(at - start);
            }
        }
        sent
    }

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn server_invite_rejected_retransmits_until_ack() {
        let t0 = Instant::now();
        let req = invite();
        let mut tx = Transaction::server(&req, false, Timers::default());
        let resp = MessageBuilder::response_to(&req, 486, "Busy Here", Some("t"), None).build();
        assert!(tx.respond(t0, 486, resp));
        assert_eq!(drain(&mut tx).len(), 1);
        // Timer G: 0.5, 1.5, 3.5, 7.5 (cap 4 s), 11.5, ...
        let sent = run(&mut tx, t0, Duration::from_millis(11_600));
        assert_eq!(sent, ms(&[500, 1500, 3500, 7500, 11500]));
        let ack = Message::parse(Bytes::from(
            INVITE
                .replace("INVITE sip", "ACK sip")
                .replace("1 INVITE", "1 ACK"),
        ))
        .expect("valid in this test");
        tx.on_request(t0 + Duration::from_secs(12), &ack);
        assert_eq!(tx.state(), State::Confirmed);
        assert_eq!(run(&mut tx, t0, Duration::from_secs(60)), Vec::<Duration>::new());
        assert!(tx.is_terminated());
        assert!(tx.poll_event().is_none());
    }

    #[test]
    fn server_invite_2xx_without_ack_times_out_and_absorbs_retransmissions() {
        let t0 = Instant::now();
        let req = invite();
        let mut tx = Transaction::server(&req, false, Timers::default());
        let trying = MessageBuilder::response_to(&req, 100, "Trying", None, None).build();
        assert!(tx.respond(t0, 100, trying));
        tx.on_request(t0, &req);
        assert_eq!(
            drain(&mut tx).len(),
            2,
            "the 100 is resent for a retransmitted INVITE"
        );
        let ok = MessageBuilder::response_to(&req, 200, "OK", Some("t"), None).build();
        assert!(tx.respond(t0, 200, ok));
        assert!(!tx.respond(t0, 486, Bytes::new()), "no second final response");
        drain(&mut tx);
        let sent = run(&mut tx, t0, Duration::from_secs(40));
        assert_eq!(sent.len(), 10, "{sent:?}");
        assert!(tx.is_terminated());
        assert!(matches!(tx.poll_event(), Some(TxEvent::AckTimeout)));
    }

    #[test]
    fn server_invite_2xx_acked_stops_retransmitting() {
        let t0 = Instant::now();
        let req = invite();
        let mut tx = Transaction::server(&req, false, Timers::default());
        assert!(tx.respond(t0, 200, Bytes::from_static(b"ok")));
        drain(&mut tx);
        assert_eq!(run(&mut tx, t0, Duration::from_millis(600)).len(), 1);
        tx.ack_received();
        assert_eq!(run(&mut tx, t0, Duration::from_secs(60)).len(), 0);
        assert!(tx.is_terminated());
        assert!(tx.poll_event().is_none());
    }

    #[test]
    fn server_non_invite_over_reliable_ends_at_once() {
        let t0 = Instant::now();
        let bye = Message::parse(Bytes::from(INVITE.replace("INVITE", "BYE"))).expect("valid in this test");
        let mut tx = Transaction::server(&bye, true, Timers::default());
        assert_eq!(tx.kind(), Kind::ServerNonInvite);
        tx.on_request(t0, &bye);
        assert!(drain(&mut tx).is_empty(), "nothing to resend before an answer");
        assert!(tx.respond(t0, 200, Bytes::from_static(b"ok")));
        assert_eq!(drain(&mut tx).len(), 1);
        tx.handle_timeout(t0);
        assert!(tx.is_terminated());
    }

    #[test]
    fn client_non_invite_timer_e_and_f() {
        let t0 = Instant::now();
        let bye = Bytes::from(INVITE.replace("INVITE", "BYE"));
        let mut tx = Transaction::client(t0, bye, false, Timers::default()).expect("valid in this test");
        assert_eq!(drain(&mut tx).len(), 1);
        let sent = run(&mut tx, t0, Duration::from_secs(40));
        assert_eq!(sent[..5], ms(&[500, 1500, 3500, 7500, 11500])[..]);
        assert_eq!(sent.len(), 10, "{sent:?}"); // 0.5 1.5 3.5 7.5, then every 4 s to 31.5; F at 32
        assert!(matches!(tx.poll_event(), Some(TxEvent::Timeout)));
        assert!(tx.is_terminated());
    }

    #[test]
    fn client_invite_rejected_sends_ack_with_the_routes() {
        let t0 = Instant::now();
        let mut tx = Transaction::client(
            t0,
            Bytes::from_static(INVITE.as_bytes()),
            false,
            Timers::default(),
        )
        .expect("valid in this test");
        drain(&mut tx);
        let req = invite();
        let ringing = MessageBuilder::response_to(&req, 180, "Ringing", Some("u"), None).build();
        tx.on_response(t0, Message::parse(ringing).expect("valid in this test"));
        assert_eq!(tx.state(), State::Proceeding);
        assert!(tx.poll_timeout().is_none(), "no timer while ringing");
        let busy = MessageBuilder::response_to(&req, 486, "Busy Here", Some("u"), None).build();
        tx.on_response(t0, Message::parse(busy.clone()).expect("valid in this test"));
        let ack =
            Message::parse(drain(&mut tx).pop().expect("valid in this test")).expect("valid in this test");
        assert_eq!(ack.method(), Some(&Method::Ack));
        assert_eq!(ack.cseq().expect("valid in this test").seq, 1);
        assert_eq!(
            ack.top_via().expect("valid in this test").branch(),
            Some("z9hG4bKa")
        );
        assert!(ack
            .header(HeaderName::To)
            .expect("valid in this test")
            .contains("tag=u"));
        assert_eq!(ack.header(HeaderName::Route), Some("<sip:p1;lr>"));
        tx.on_response(t0, Message::parse(busy).expect("valid in this test"));
        assert_eq!(drain(&mut tx).len(), 1, "a retransmitted 486 gets the ACK again");
        let events: Vec<_> = std::iter::from_fn(|| tx.poll_event()).collect();
        assert_eq!(events.len(), 2);
        run(&mut tx, t0, Duration::from_secs(33));
        assert!(tx.is_terminated());
    }

    #[test]
    fn client_invite_timer_a_doubles_without_cap() {
        let t0 = Instant::now();
        let mut tx = Transaction::client(
            t0,
            Bytes::from_static(INVITE.as_bytes()),
            false,
            Timers::default(),
        )
        .expect("valid in this test");
        drain(&mut tx);
        let sent = run(&mut tx, t0, Duration::from_secs(40));
        assert_eq!(sent, ms(&[500, 1500, 3500, 7500, 15500, 31500]));
        assert!(matches!(tx.poll_event(), Some(TxEvent::Timeout)));
    }
}
