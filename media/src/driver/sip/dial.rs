//! Calls the SIP endpoint places (`CallCommands::dial_sip`): control's
//! request comes in on a channel, a task of its own resolves the gateway
//! and takes the RTP port ([`RtpSessions::reserve`]), the UAC
//! ([`crate::sansio::sip::SipUas::dial`]) sends the INVITE, and the answer
//! starts the RTP call on that port ([`RtpSessions::start_answered`]).
//! Signalling never waits on either: their results come back on channels.

use super::SipEndpoint;
use crate::config::SipGatewayConfig;
use crate::driver::sessions::{Reservation, RtpSessions, SessionRequest};
use crate::sansio::sip::{uac, OutboundCall};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use voxbridge_contract::commands::{SipDial, SipDialEvent, SipDialEvents};

/// Commands for the SIP task.
pub(crate) enum SipCommand {
    /// Place a call.
    Dial(Box<SipDial>, SipDialEvents),
    /// Give one up.
    Cancel(String),
    /// Transfer a running call (`call id`, `target`); `done` hears whether
    /// the REFER went out.
    Transfer(String, String, Box<dyn FnOnce(Result<(), String>) + Send>),
}

/// Dials queued for the SIP task at most.
pub(crate) const COMMANDS_QUEUED: usize = 1024;

/// What `CallCommands::dial_sip` and `cancel_dial` reach: checks a dial
/// and hands it to the SIP task.
#[derive(Clone)]
pub(crate) struct SipDialer {
    pub commands: mpsc::Sender<SipCommand>,
    pub gateways: Arc<Vec<SipGatewayConfig>>,
    pub routes: Arc<BTreeSet<String>>,
    pub stopping: watch::Receiver<bool>,
}

impl SipDialer {
    /// Checks `dial` (route, gateway, destination, caller) and queues it.
    pub fn dial(&self, dial: SipDial, events: SipDialEvents) -> Result<(), String> {
        if *self.stopping.borrow() {
            return Err("the media plane is shutting down".into());
        }
        if !self.routes.contains(&dial.route) {
            return Err(format!("no media route {:?}", dial.route));
        }
        let gateway = self.gateway(dial.gateway.as_deref())?;
        uac::request_uri(&dial.destination, gateway.domain())?;
        if let Some(caller) = dial.caller.as_deref().filter(|c| !c.is_empty()) {
            uac::from_uri(caller, gateway.domain())?;
        }
        self.commands
            .try_send(SipCommand::Dial(Box::new(dial), events))
            .map_err(|_| "the SIP endpoint is busy or stopped".to_owned())
    }

    /// Asks the SIP task to transfer `call_id`; `done` hears whether the
    /// REFER went out.
    pub fn transfer(&self, call_id: &str, target: &str, done: voxbridge_contract::commands::DialDone) {
        let command = SipCommand::Transfer(call_id.to_owned(), target.to_owned(), done);
        if let Err(e) = self.commands.try_send(command) {
            let (mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c)) = e;
            if let SipCommand::Transfer(_, _, done) = c {
                done(Err("the SIP endpoint is busy or stopped".into()));
            }
        }
    }

    /// Queues a cancel; `false` when the SIP task cannot take it.
    pub fn cancel(&self, call_id: &str) -> bool {
        self.commands
            .try_send(SipCommand::Cancel(call_id.to_owned()))
            .is_ok()
    }

    fn gateway(&self, name: Option<&str>) -> Result<&SipGatewayConfig, String> {
        match name {
            None => self
                .gateways
                .first()
                .ok_or_else(|| "no [[sip.gateways]] configured".to_owned()),
            Some(n) => self
                .gateways
                .iter()
                .find(|g| g.name == n)
                .ok_or_else(|| format!("no SIP gateway {n:?} ([[sip.gateways]])")),
        }
    }
}

/// A dial the SIP task holds until it is answered or fails.
pub(crate) struct PendingDial {
    events: SipDialEvents,
    request: SessionRequest,
    /// Its RTP port, once the preparing task took it.
    reservation: Option<Reservation>,
    cancelled: bool,
    ringing_told: bool,
    /// The gateway's TLS client setup, when it is reached over TLS.
    tls: Option<super::stream::TlsDial>,
}

/// A dial's gateway resolved and RTP port taken (or why not).
pub(super) type Prepared = (String, Result<(OutboundCall, Reservation), String>);

/// Resolves the gateway and takes the RTP port of `dial` (on a task).
async fn prepare(
    rtp: RtpSessions,
    gateway: SipGatewayConfig,
    dial: &SipDial,
) -> Result<(OutboundCall, Reservation), String> {
    let domain = gateway.domain();
    let request_uri = uac::request_uri(&dial.destination, domain)?;
    let caller = dial.caller.as_deref().filter(|c| !c.is_empty());
    let from_uri = uac::from_uri(caller.unwrap_or(&gateway.from_user), domain)?;
    let addr = tokio::net::lookup_host(gateway.address.as_str())
        .await
        .map_err(|e| format!("gateway {} address {}: {e}", gateway.name, gateway.address))?
        .next()
        .ok_or_else(|| {
            format!(
                "gateway {} address {} resolves to nothing",
                gateway.name, gateway.address
            )
        })?;
    let reservation = rtp.reserve().await.map_err(|e| e.to_string())?;
    let credentials = match (&gateway.username, &gateway.password) {
        (Some(u), Some(p)) => Some((u.clone(), p.expose().to_owned())),
        _ => None,
    };
    Ok((
        OutboundCall {
            call_id: dial.call_id.clone(),
            request_uri,
            from_uri,
            peer: gateway.peer(addr),
            offer: reservation.offer.clone(),
            credentials,
            ring_timeout: dial.ring_timeout,
            headers: Vec::new(),
        },
        reservation,
    ))
}

impl SipEndpoint {
    /// A command from control.
    pub(super) fn on_command(&mut self, cmd: SipCommand, prepared: &mpsc::UnboundedSender<Prepared>) {
        match cmd {
            SipCommand::Dial(dial, mut events) => {
                let gateway = match dial.gateway.as_deref() {
                    None => self.gateways.first(),
                    Some(n) => self.gateways.iter().find(|g| g.name == n),
                };
                let (Some(gateway), false) = (gateway.cloned(), self.pending.contains_key(&dial.call_id))
                else {
                    events(SipDialEvent::Failed {
                        code: None,
                        reason: "no such gateway, or a call with this id is being placed".into(),
                    });
                    return;
                };
                tracing::info!(call_id = %dial.call_id, gateway = %gateway.name, destination = %dial.destination, "SIP: placing a call");
                // The call's `direction` tells the bot, control and the
                // route's answering-machine detection that voxbridge placed it.
                let mut params = dial.params.clone();
                params.insert("direction".into(), "outgoing".into());
                let request = SessionRequest {
                    call_id: Some(dial.call_id.clone()),
                    route: Some(dial.route.clone()),
                    caller: dial.caller.clone(),
                    callee: Some(dial.destination.clone()),
                    params,
                    ingress: Some("sip"),
                    on_end: None,
                    on_transfer: None,
                    ..SessionRequest::default()
                };
                self.pending.insert(
                    dial.call_id.clone(),
                    PendingDial {
                        events,
                        request,
                        reservation: None,
                        cancelled: false,
                        ringing_told: false,
                        tls: self.tls_dials.get(&gateway.name).cloned(),
                    },
                );
                let rtp = self.rtp.clone();
                let prepared = prepared.clone();
                self.tracker.spawn(async move {
                    let result = prepare(rtp, gateway, &dial).await;
                    let _ = prepared.send((dial.call_id, result));
                });
            }
            SipCommand::Cancel(call_id) => match self.pending.get_mut(&call_id) {
                Some(p) if p.reservation.is_none() => p.cancelled = true,
                _ => self.uas.cancel_dial(Instant::now(), &call_id),
            },
            SipCommand::Transfer(call_id, target, done) => {
                done(self.uas.transfer(Instant::now(), &call_id, &target))
            }
        }
    }

    /// A dial is ready to go out (or failed before it could).
    pub(super) fn on_prepared(&mut self, (call_id, result): Prepared) {
        let Some(pending) = self.pending.get_mut(&call_id) else {
            return;
        };
        match result {
            Ok(_) if pending.cancelled => self.fail(&call_id, None, "cancelled before it was placed".into()),
            Ok((call, reservation)) => {
                pending.reservation = Some(reservation);
                if call.peer.transport.is_reliable() {
                    self.outbound.insert(call.peer, pending.tls.clone());
                }
                self.uas.dial(Instant::now(), call);
            }
            Err(why) => self.fail(&call_id, None, why),
        }
    }

    /// `180`/`183` for a placed call: `Ringing` on the call's event path
    /// (ahead of its `Created`), and to the dial's caller.
    pub(super) fn dial_progress(&mut self, call_id: &str) {
        if let Some(p) = self.pending.get_mut(call_id).filter(|p| !p.ringing_told) {
            p.ringing_told = true;
            self.rtp.emit(crate::events::CallEvent::Ringing {
                call_id: call_id.to_owned(),
                at: std::time::SystemTime::now(),
            });
            (p.events)(SipDialEvent::Ringing);
        }
    }

    /// A placed call failed: tell control, free its port.
    pub(super) fn fail(&mut self, call_id: &str, code: Option<u16>, reason: String) {
        if let Some(mut p) = self.pending.remove(call_id) {
            tracing::info!(%call_id, ?code, %reason, "SIP: the placed call was not answered");
            (p.events)(SipDialEvent::Failed { code, reason });
        }
    }

    /// A placed call was answered: its RTP call starts on a task; the UAS
    /// hears the result on `started`, control through the dial's events.
    pub(super) fn dial_answered(
        &mut self,
        call_id: String,
        answer: String,
        ends: &mpsc::UnboundedSender<String>,
        transfers: &mpsc::UnboundedSender<(String, String)>,
        started: &mpsc::UnboundedSender<(String, Result<String, String>)>,
    ) {
        let Some(p) = self.pending.remove(&call_id) else {
            return;
        };
        let PendingDial {
            mut events,
            mut request,
            reservation,
            ..
        } = p;
        let Some(reservation) = reservation else {
            return;
        };
        request.on_end = Some(ends.clone());
        request.on_transfer = Some(transfers.clone());
        let rtp = self.rtp.clone();
        let started = started.clone();
        self.tracker.spawn(async move {
            let result = rtp
                .start_answered(reservation, &answer, request)
                .await
                .map(|c| c.sdp)
                .map_err(|e| e.to_string());
            match &result {
                Ok(_) => events(SipDialEvent::Answered),
                Err(why) => events(SipDialEvent::Failed {
                    code: None,
                    reason: format!("answered, but the call could not start: {why}"),
                }),
            }
            let _ = started.send((call_id, result));
        });
    }

    /// Shutting down: every call not answered yet is given up.
    pub(super) fn cancel_all_dials(&mut self) {
        let ids: Vec<String> = self.pending.keys().cloned().collect();
        for id in ids {
            self.on_command(SipCommand::Cancel(id), &mpsc::unbounded_channel().0);
        }
    }
}

/// The registration `gateway` asks for, its address resolved; tried again
/// every [`crate::sansio::sip::register::RETRY_AFTER`] until the name
/// resolves; `None` once `stop` turns true first.
pub(super) async fn registration(
    gateway: SipGatewayConfig,
    mut stop: watch::Receiver<bool>,
) -> Option<crate::sansio::sip::Registration> {
    let domain = gateway.domain().to_owned();
    let user = gateway.register_user().to_owned();
    loop {
        match tokio::net::lookup_host(gateway.address.as_str())
            .await
            .map(|mut a| a.next())
        {
            Ok(Some(addr)) => {
                return Some(crate::sansio::sip::Registration {
                    name: gateway.name.clone(),
                    registrar: format!("sip:{domain}"),
                    aor: format!("sip:{user}@{domain}"),
                    contact_user: user,
                    peer: gateway.peer(addr),
                    credentials: match (&gateway.username, &gateway.password) {
                        (Some(u), Some(p)) => Some((u.clone(), p.expose().to_owned())),
                        _ => None,
                    },
                    expires: gateway.register_expires_s,
                });
            }
            Ok(None) | Err(_) => {
                tracing::warn!(gateway = %gateway.name, address = %gateway.address, "SIP registration: the address does not resolve; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(crate::sansio::sip::register::RETRY_AFTER) => {}
                    _ = stop.wait_for(|s| *s) => return None,
                }
            }
        }
    }
}
