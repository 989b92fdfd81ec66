//! The SIP leg's driver: one UDP socket, the TCP and TLS listeners
//! ([`stream`]), the sans-IO UAS ([`crate::sansio::sip::SipUas`]) and the
//! clock, in one task. Each call
//! the UAS starts becomes an RTP session ([`RtpSessions::offer`]) on the
//! route its `[[sip.routes]]` rules chose; the session reports its end back
//! here so the UAS can send BYE. Signalling never waits on media: a session
//! is created on a task of its own and its result comes back on a channel
//! (the ends on another; the UAS takes the two in either order). Calls
//! voxbridge places go the other way ([`dial`]).

pub(crate) mod dial;
pub(crate) mod stream;

use super::sessions::{PlainSession, RtpSessions, SessionRequest};
use crate::error::MediaError;
use crate::metrics::Metrics;
use crate::sansio::sip::{Peer, Refusal, SipUas, UasAction};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use stream::{StreamEvent, StreamListener};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;
use voxbridge_proto::sip::Transport;

/// Events from the connections queued at most before they wait.
const STREAM_EVENTS: usize = 1024;

/// The open TCP and TLS connections: each peer's write queue and the id
/// of its connection (a late close of an old connection from the same
/// address must not remove a new one).
type Connections = HashMap<Peer, (u64, mpsc::Sender<Bytes>)>;

/// A started call's id and its SDP answer, or why it did not start.
type Started = (String, Result<String, Refusal>);

/// Everything the SIP task needs.
pub(crate) struct SipEndpoint {
    pub socket: UdpSocket,
    /// TCP and TLS listeners (none, one or both).
    pub streams: Vec<StreamListener>,
    /// TCP and TLS connections open at most; more are closed at accept.
    pub max_connections: usize,
    pub uas: SipUas,
    pub rtp: RtpSessions,
    pub retry_after_s: u32,
    pub metrics: Arc<Metrics>,
    pub tracker: TaskTracker,
    /// The longest the endpoint drains after stop (the server's grace
    /// period plus time for the BYEs), so a dialog that never ends cannot
    /// hold the shutdown up.
    pub drain_limit: std::time::Duration,
    /// `[[sip.gateways]]`, for calls voxbridge places.
    pub gateways: Arc<Vec<crate::config::SipGatewayConfig>>,
    /// Dials and cancels from control ([`dial::SipDialer`]).
    pub commands: Option<mpsc::Receiver<dial::SipCommand>>,
    /// Placed calls not answered yet.
    pub pending: HashMap<String, dial::PendingDial>,
    /// Gateways reached over TCP or TLS (with its client setup): a message
    /// for one without a connection opens it ([`stream::connect`]) instead
    /// of failing.
    pub outbound: HashMap<Peer, Option<stream::TlsDial>>,
    /// The TLS client setups of the gateways reached over TLS, by name.
    pub tls_dials: HashMap<String, stream::TlsDial>,
    /// Callers' Contacts in `outbound` (their own connection closed while
    /// their call went on); dropped once no dialog uses them.
    pub contact_hops: std::collections::HashSet<Peer>,
    /// Messages waiting for a connection being opened, by gateway.
    pub connecting: HashMap<Peer, Vec<Bytes>>,
}

fn refusal(e: &MediaError, retry_after_s: u32) -> Refusal {
    match e {
        MediaError::Unavailable(_) => Refusal::Unavailable { retry_after_s },
        MediaError::Session(why) => Refusal::NotAcceptable(why.clone()),
        MediaError::Proto(p) => Refusal::NotAcceptable(p.to_string()),
        other => Refusal::Failed(other.to_string()),
    }
}

impl SipEndpoint {
    /// Runs until `stop` turns true and its last dialog is gone: while the
    /// server drains, new INVITEs get `503` and the calls up still get
    /// their BYEs (sent when the grace period hangs them up, or answered).
    pub async fn run(mut self, stop: watch::Receiver<bool>) {
        let (events_tx, events) = mpsc::channel(STREAM_EVENTS);
        let accepts: Vec<_> = std::mem::take(&mut self.streams)
            .into_iter()
            .map(|l| tokio::spawn(stream::accept_loop(l, events_tx.clone())))
            .collect();
        self.serve(stop, events_tx, events).await;
        for a in accepts {
            a.abort();
        }
        // Dropping the connections' write queues closes them.
    }

    async fn serve(
        &mut self,
        mut stop: watch::Receiver<bool>,
        events_tx: mpsc::Sender<StreamEvent>,
        mut events: mpsc::Receiver<StreamEvent>,
    ) {
        let mut connections = Connections::new();
        let mut next_connection = 0u64;
        // Unbounded: one start and one end report per call, and calls are
        // bounded by `limits.max_calls`; a lost report would leave a dialog
        // stuck. The two may arrive in either order (the UAS handles both).
        let (report_tx, mut starts) = mpsc::unbounded_channel::<Started>();
        let (end_tx, mut ends) = mpsc::unbounded_channel::<String>();
        // Bots' transfer requests, `(call id, target)`.
        let (transfer_tx, mut transfers) = mpsc::unbounded_channel::<(String, String)>();
        // Placed calls: gateway resolved and port taken; RTP call started.
        let (prepared_tx, mut prepared) = mpsc::unbounded_channel::<dial::Prepared>();
        let (dial_started_tx, mut dials_started) =
            mpsc::unbounded_channel::<(String, Result<String, String>)>();
        let mut commands = self.commands.take().unwrap_or_else(|| mpsc::channel(1).1);
        // Registrations: each gateway's address resolved on a task.
        let (registration_tx, mut registrations) = mpsc::unbounded_channel();
        for gateway in self.gateways.iter().filter(|g| g.register).cloned() {
            let tx = registration_tx.clone();
            let stop = stop.clone();
            self.tracker.spawn(async move {
                if let Some(r) = dial::registration(gateway, stop).await {
                    let _ = tx.send(r);
                }
            });
        }
        let mut buf = vec![0u8; 65_536];
        let mut stopping = false;
        let mut drain_until = None;
        loop {
            // Counted before sent: what a peer saw is in the metrics.
            *self.metrics.sip.lock().unwrap_or_else(|e| e.into_inner()) = self.uas.stats();
            self.flush(&mut connections, &events_tx).await;
            while let Some(action) = self.uas.poll_action() {
                self.act(action, &report_tx, &end_tx, &transfer_tx, &dial_started_tx);
            }
            self.flush(&mut connections, &events_tx).await;
            if stopping && self.uas.dialogs() == 0 {
                tracing::info!("SIP endpoint stopped");
                return;
            }
            if drain_until.is_some_and(|d| Instant::now() >= d) {
                tracing::warn!(
                    dialogs = self.uas.dialogs(),
                    "SIP endpoint stopped with dialogs left"
                );
                return;
            }
            let wake = match (self.uas.poll_timeout(), drain_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        self.uas.handle_datagram(Instant::now(), from, Bytes::copy_from_slice(&buf[..n]));
                    }
                    // ICMP port unreachable from an earlier send shows up here on Linux.
                    Err(e) => tracing::debug!(error = %e, "SIP socket receive"),
                },
                Some(event) = events.recv() => match event {
                    StreamEvent::Accepted { stream, peer, tls } => {
                        // Dropping the stream closes a connection not admitted.
                        if !self.uas.admits(peer.addr) {
                            tracing::debug!(%peer, "SIP connection from outside sip.allow: closed");
                        } else if connections.len() >= self.max_connections {
                            self.uas.connection_refused();
                            tracing::warn!(%peer, max = self.max_connections, "SIP connection refused: at the connection cap");
                        } else {
                            next_connection += 1;
                            let writes = stream::spawn_connection(&self.tracker, stream, peer, next_connection, tls, stream::FIRST_MESSAGE_TIMEOUT, events_tx.clone());
                            connections.insert(peer, (next_connection, writes));
                        }
                    }
                    StreamEvent::Message(peer, msg) => self.uas.handle_message(Instant::now(), peer, msg),
                    StreamEvent::Malformed(peer) => self.uas.stream_malformed(peer),
                    StreamEvent::Closed { peer, id } => {
                        if connections.get(&peer).is_some_and(|(open, _)| *open == id) {
                            connections.remove(&peer);
                            self.stream_closed(peer, &connections);
                        }
                    }
                    StreamEvent::Connected { stream, peer } => {
                        next_connection += 1;
                        let writes = stream::spawn_outbound(&self.tracker, stream, peer, next_connection, events_tx.clone());
                        for bytes in self.connecting.remove(&peer).unwrap_or_default() {
                            if writes.try_send(bytes).is_err() {
                                self.uas.send_failed(peer);
                            }
                        }
                        connections.insert(peer, (next_connection, writes));
                    }
                    StreamEvent::ConnectFailed(peer) => {
                        self.connecting.remove(&peer);
                        self.uas.transport_failed(Instant::now(), peer);
                    }
                },
                Some((call_id, result)) = starts.recv() => self.uas.call_started(Instant::now(), &call_id, result),
                Some(call_id) = ends.recv() => self.uas.call_ended(Instant::now(), &call_id),
                Some((call_id, target)) = transfers.recv() => {
                    if let Err(why) = self.uas.transfer(Instant::now(), &call_id, &target) {
                        tracing::warn!(%call_id, %target, error = %why, "the bot's transfer cannot be made");
                    }
                }
                Some(cmd) = commands.recv(), if !stopping => self.on_command(cmd, &prepared_tx),
                Some(p) = prepared.recv() => self.on_prepared(p),
                Some(r) = registrations.recv(), if !stopping => {
                    if r.peer.transport.is_reliable() {
                        self.outbound.insert(r.peer, self.tls_dials.get(&r.name).cloned());
                    }
                    self.uas.register(Instant::now(), r);
                }
                Some((call_id, result)) = dials_started.recv() => self.uas.dial_started(Instant::now(), &call_id, result),
                _ = sleep_until(wake) => self.uas.handle_timeout(Instant::now()),
                r = stop.wait_for(|s| *s), if !stopping => {
                    let _ = r;
                    stopping = true;
                    drain_until = Some(Instant::now() + self.drain_limit);
                    self.uas.drain();
                    self.cancel_all_dials();
                    self.uas.unregister_all(Instant::now());
                    tracing::info!(dialogs = self.uas.dialogs(), "SIP endpoint draining: new INVITEs get 503");
                }
            }
        }
    }

    /// `peer`'s connection closed. A caller's: its dialogs' requests go to
    /// their Contact on a new connection ([`SipUas::connection_closed`]);
    /// returns those Contacts. Contacts no dialog uses any more are
    /// forgotten.
    fn stream_closed(&mut self, peer: Peer, connections: &Connections) -> Vec<Peer> {
        if self.outbound.contains_key(&peer) && !self.contact_hops.contains(&peer) {
            return Vec::new(); // a gateway: reopened on demand
        }
        let next = self.uas.connection_closed(peer);
        for hop in &next {
            if let std::collections::hash_map::Entry::Vacant(e) = self.outbound.entry(*hop) {
                e.insert(None);
                self.contact_hops.insert(*hop);
            }
        }
        if self.contact_hops.is_empty() {
            return next;
        }
        let in_use = self.uas.dialog_peers();
        let (outbound, connecting) = (&mut self.outbound, &self.connecting);
        self.contact_hops.retain(|p| {
            let keep = in_use.contains(p) || connections.contains_key(p) || connecting.contains_key(p);
            if !keep {
                outbound.remove(p);
            }
            keep
        });
        next
    }

    /// Sends `bytes` on the connection to `to`, opening one when `to` is a
    /// gateway or a caller's Contact.
    fn send_on_stream(
        &mut self,
        to: Peer,
        bytes: Bytes,
        connections: &mut Connections,
        events: &mpsc::Sender<StreamEvent>,
    ) {
        match connections.get(&to) {
            Some((_, writes)) => match writes.try_send(bytes) {
                Ok(()) => {}
                // The connection closed and the endpoint has not heard yet:
                // as when it hears, then the message follows its dialog.
                Err(mpsc::error::TrySendError::Closed(bytes)) => {
                    connections.remove(&to);
                    match self.stream_closed(to, connections).as_slice() {
                        [hop] => self.send_on_stream(*hop, bytes, connections, events),
                        _ => self.uas.send_failed(to),
                    }
                }
                Err(mpsc::error::TrySendError::Full(_)) => self.uas.send_failed(to),
            },
            // A gateway or a Contact: open the connection, the message waits.
            None if self.outbound.contains_key(&to) => match self.connecting.get_mut(&to) {
                Some(waiting) => waiting.push(bytes),
                None => {
                    self.connecting.insert(to, vec![bytes]);
                    let tls = self.outbound.get(&to).cloned().flatten();
                    stream::connect(&self.tracker, to, tls, events.clone());
                }
            },
            None => self.uas.send_failed(to),
        }
    }

    async fn flush(&mut self, connections: &mut Connections, events: &mpsc::Sender<StreamEvent>) {
        while let Some((to, bytes)) = self.uas.poll_transmit() {
            match to.transport {
                Transport::Udp => {
                    if let Err(e) = self.socket.send_to(&bytes, to.addr).await {
                        tracing::warn!(%to, error = %e, "SIP send failed");
                    }
                }
                // A connection that is gone or not reading cannot take it;
                // the UAS counts that (its transaction times out).
                _ => self.send_on_stream(to, bytes, connections, events),
            }
        }
    }

    fn act(
        &mut self,
        action: UasAction,
        reports: &mpsc::UnboundedSender<Started>,
        ends: &mpsc::UnboundedSender<String>,
        transfers: &mpsc::UnboundedSender<(String, String)>,
        dials_started: &mpsc::UnboundedSender<(String, Result<String, String>)>,
    ) {
        match action {
            UasAction::Transferred { call_id, target } => {
                self.rtp.emit(crate::events::CallEvent::Transferred {
                    call_id,
                    target,
                    at: std::time::SystemTime::now(),
                });
            }
            UasAction::TransferFailed { call_id, target, sip } => {
                tracing::warn!(%call_id, %target, sip_code = ?sip.code, sip_reason = %sip.reason, "SIP transfer failed; the call goes on");
                self.rtp.emit(crate::events::CallEvent::TransferFailed {
                    call_id: call_id.clone(),
                    target: target.clone(),
                    sip: sip.clone(),
                    at: std::time::SystemTime::now(),
                });
                if !self.rtp.transfer_failed(&call_id, target, sip) {
                    tracing::debug!(%call_id, "SIP transfer failure for no running call (or its queue is full)");
                }
            }
            UasAction::DialProgress { call_id, .. } => self.dial_progress(&call_id),
            UasAction::DialAnswered { call_id, answer } => {
                self.dial_answered(call_id, answer, ends, transfers, dials_started)
            }
            UasAction::DialFailed { call_id, sip } => self.fail(&call_id, sip.code, sip.reason),
            UasAction::StartCall {
                call_id,
                route,
                offer,
                caller,
                callee,
                source,
                headers,
            } => {
                tracing::info!(%call_id, %source, %route, "SIP INVITE: starting the call");
                let rtp = self.rtp.clone();
                let req = SessionRequest {
                    call_id: Some(call_id.clone()),
                    route: Some(route),
                    caller,
                    callee,
                    params: headers.into_iter().collect(),
                    ingress: Some("sip"),
                    on_end: Some(ends.clone()),
                    on_transfer: Some(transfers.clone()),
                    ..SessionRequest::default()
                };
                let reports = reports.clone();
                let retry_after_s = self.retry_after_s;
                self.tracker.spawn(async move {
                    let created = match offer {
                        Some(offer) => rtp.offer(&offer, req).await,
                        // Delayed offer: voxbridge offers PCMU (every trunk
                        // takes it) with telephone-event, and latches onto
                        // the caller's RTP; the UAS checks the ACK's answer.
                        None => {
                            let session = PlainSession {
                                remote: None,
                                codec: voxbridge_proto::sdp::AudioCodec::Pcmu,
                                pt: None,
                                dtmf_pt: Some(101),
                                symmetric: Some(true),
                            };
                            rtp.plain(session, req).await
                        }
                    };
                    let result = created.map(|c| c.sdp).map_err(|e| refusal(&e, retry_after_s));
                    let _ = reports.send((call_id, result));
                });
            }
            UasAction::Digit { call_id, digit } => {
                if !self.rtp.send_digit(&call_id, digit) {
                    tracing::debug!(%call_id, %digit, "SIP INFO digit for no running call (or its queue is full)");
                }
            }
            UasAction::Format { call_id, format } => {
                tracing::info!(%call_id, codec = format.codec.encoding_name(), pt = format.pt, "SIP: the call changes codec");
                if !self.rtp.set_format(&call_id, format) {
                    tracing::warn!(%call_id, "SIP codec change for no running call (or its queue is full)");
                }
            }
            UasAction::Hold { call_id, held } => {
                tracing::info!(%call_id, held, "SIP: the caller {} the call", if held { "holds" } else { "resumes" });
                if !self.rtp.set_hold(&call_id, held) {
                    tracing::debug!(%call_id, "SIP hold for no running call (or its queue is full)");
                }
            }
            UasAction::EndCall { call_id, sip, cause } => {
                tracing::info!(%call_id, sip_code = sip.code, sip_reason = %sip.reason, cause = cause.as_str(), "SIP: ending the call");
                // A call still being created is ended by the UAS when its
                // start result comes (it remembers the CANCEL).
                self.rtp.hangup_with_sip(&call_id, cause, sip);
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
