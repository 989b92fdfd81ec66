//! The Asterisk WebSocket channel leg's I/O, both ways: Asterisk dials us
//! (`chan_websocket` as the client, subprotocol `media`), or we dial
//! Asterisk (ARI `externalMedia` with `connection_type=server`: we connect
//! to `ws(s)://<asterisk>:8088/media/<connection id>`, see [`MediaDialer`]).
//!
//! The listener upgrades each connection (echoing the `media` subprotocol),
//! picks the route from the URL (`?route=<name>`, or a last path segment
//! that names a route; otherwise the listener's), waits for `MEDIA_START`
//! (within `limits.uuid_timeout_ms`) and runs the call. The URL's query
//! parameters (the dial string's `v()` options) and the channel's variables
//! join the route's parameters, so they reach the bot's start message.
//! What the leg decides is the sans-IO [`ChanWsLeg`]; this file reads
//! messages, hands them in and writes what it queues, never waiting on the
//! socket: a caller that stops reading for 2 s is gone, as on AudioSocket.

use super::botlink;
use super::call_task::{drive, start_call, CallContext, Leg};
use super::wsconn::{ReadFailure, WsConn, WsSocket};
use crate::commands::CallRegistry;
use crate::error::MediaError;
use crate::events::{CallInfo, HangupCause};
use crate::metrics::Metrics;
use crate::sansio::call::{Call, Tick};
use crate::sansio::chanws::{ChanWsLeg as LegState, TextOutcome};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use voxbridge_contract::commands::{AsteriskMediaDial, DialDone};
use voxbridge_proto::chanws::{Event, MediaStart};
use voxbridge_proto::websocket::Message;

/// The subprotocol Asterisk's media WebSocket speaks.
pub const SUBPROTOCOL: &str = "media";
/// Frames waiting in our queue (not XOFF) after which the caller is gone:
/// its socket took nothing for 2 s.
const STALLED_FRAMES: usize = 100;

pub(crate) struct ChanWsLeg {
    ws: WsSocket,
    state: LegState,
    metrics: Arc<Metrics>,
    /// A message `ready` read and `input` has not handled yet.
    pending: Option<Message>,
    last_rx: Instant,
    media_timeout: Duration,
    /// A WebSocket ping went out since Asterisk's last message.
    pinged: bool,
    bad_logged: bool,
    folded_xoffs: u64,
}

/// What the handshake learned about the connection.
pub(crate) struct Upgraded {
    ws: WsSocket,
    /// The route the URL picked.
    pub route: String,
    query: BTreeMap<String, String>,
}

/// Upgrades `sock` (Asterisk's connection): the route from the URL among
/// `routes` (else `default_route`), and the query parameters.
pub(crate) async fn upgrade(
    sock: TcpStream,
    routes: &[String],
    default_route: &str,
) -> Result<Upgraded, MediaError> {
    let mut picked: Option<(String, BTreeMap<String, String>)> = None;
    let decide = |up: &voxbridge_proto::websocket::Upgrade| {
        let query = parse_query(up.query());
        let segment = up.path().rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
        let route = match query.get("route") {
            Some(r) if routes.contains(r) => r.clone(),
            Some(r) => return Err((404, format!("no route {r:?}"))),
            None if routes.iter().any(|r| r == segment) => segment.to_string(),
            None => default_route.to_string(),
        };
        let offered = up.protocols.iter().any(|p| p == SUBPROTOCOL);
        picked = Some((route, query));
        Ok(offered.then_some(SUBPROTOCOL))
    };
    let (conn, _) = WsConn::accept(sock, decide)
        .await
        .map_err(|e| MediaError::CallerProtocol(format!("WebSocket upgrade: {e}")))?;
    let (route, query) = picked.ok_or_else(|| MediaError::CallerProtocol("no upgrade request".into()))?;
    Ok(Upgraded {
        ws: WsSocket::Plain(Box::new(conn)),
        route,
        query,
    })
}

/// `a=1&b=two%20words` as pairs (percent-decoded; `+` is a space).
fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(v)) => {
                out.push(v);
                i += 2;
            }
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits for `MEDIA_START` (the first text message); binary before it is
/// ignored, anything else refused.
pub(crate) async fn media_start(
    ws: &mut WsSocket,
    timeout: Duration,
) -> Result<(MediaStart, voxbridge_proto::chanws::ControlFormat), MediaError> {
    let wait = async {
        loop {
            match ws.next().await {
                Ok(m @ Message::Text(_)) => {
                    return match Event::parse(m.text().unwrap_or_default()) {
                        Ok((Event::MediaStart(m), f)) => Ok((m, f)),
                        Ok((other, _)) => Err(MediaError::CallerProtocol(format!(
                            "expected MEDIA_START first, got {other:?}"
                        ))),
                        Err(e) => Err(MediaError::CallerProtocol(format!("first text message: {e}"))),
                    };
                }
                Ok(Message::Close(_)) => {
                    return Err(MediaError::CallerProtocol("closed before MEDIA_START".into()))
                }
                Ok(_) => {
                    // A pong to answer an early ping.
                    ws.flush()
                        .map_err(|e| MediaError::CallerProtocol(format!("before MEDIA_START: {e}")))?;
                }
                Err(e) => return Err(MediaError::CallerProtocol(format!("before MEDIA_START: {e}"))),
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| MediaError::CallerProtocol(format!("no MEDIA_START within {timeout:?}")))?
}

/// A call id for a chan_websocket call.
fn new_call_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("ws-{:016x}", h.finish())
}

/// Runs one call Asterisk dialled to us, from the upgraded connection, on
/// the route's context `ctx`.
pub(crate) async fn run(
    up: Upgraded,
    ctx: CallContext,
    calls: CallRegistry,
    timeout: Duration,
    peer: SocketAddr,
) {
    let Upgraded { mut ws, query, .. } = up;
    let started = media_start(&mut ws, timeout).await.and_then(|(start, control)| {
        LegState::new(&start, control).map(|state| (start, state.with_pacing(ctx.route.chanws_pacing)))
    });
    let (start, state) = match started {
        Ok(s) => s,
        Err(e) => {
            ctx.metrics.rejected_connections.fetch_add(1, Relaxed);
            ctx.metrics.caller_protocol_errors.fetch_add(1, Relaxed);
            tracing::warn!(%peer, error = %e, "chan_websocket connection refused");
            let _ = tokio::time::timeout(timeout, ws.close(None)).await;
            return;
        }
    };
    // `?call_id=` names the call (the dial string's `v(call_id=${UUID()})`,
    // so Asterisk's side knows it); otherwise it is made here. A name that
    // a live call has is refused, as for AudioSocket UUIDs.
    let call_id = match query.get("call_id") {
        Some(id) if !id.is_empty() && id.len() <= 128 => id.clone(),
        _ => new_call_id(),
    };
    let Some((stop, _registered)) = calls.claim(&call_id) else {
        ctx.metrics.rejected_connections.fetch_add(1, Relaxed);
        ctx.metrics.duplicate_call_ids.fetch_add(1, Relaxed);
        tracing::warn!(%peer, %call_id, "chan_websocket connection refused: call id in use");
        let _ = tokio::time::timeout(timeout, ws.close(None)).await;
        return;
    };
    let params = query
        .into_iter()
        .filter(|(k, _)| k != "call_id" && k != "route")
        .collect();
    // Built outside the await point (see `start_call`).
    // When the call cannot be built (reported by `start_call`), the
    // connection is dropped, which Asterisk takes as a hangup.
    if let Some((call, leg)) = prepare(ws, &start, state, params, call_id, &ctx) {
        drive(call, leg, ctx, Some(stop)).await;
    }
}

/// Dials Asterisk's media WebSocket for calls ARI set up with
/// `connection_type=server` (the [`CallCommands`](voxbridge_contract::commands::CallCommands)
/// `dial_asterisk_media` of this media server).
#[derive(Clone)]
pub(crate) struct MediaDialer {
    pub contexts: Arc<BTreeMap<String, CallContext>>,
    pub tracker: TaskTracker,
    pub calls: CallRegistry,
    pub max_calls: usize,
    /// Connect, upgrade and `MEDIA_START` must each come within this.
    pub timeout: Duration,
    pub stopping: watch::Receiver<bool>,
}

impl MediaDialer {
    /// Checks the request, claims the call id and starts the connection in
    /// the background; `done` hears how it went.
    pub fn dial(&self, dial: AsteriskMediaDial, done: DialDone) -> Result<(), String> {
        if *self.stopping.borrow() {
            return Err("the media plane is shutting down".into());
        }
        let ctx = self
            .contexts
            .get(&dial.route)
            .cloned()
            .ok_or_else(|| format!("no media route {:?}", dial.route))?;
        if !(dial.url.starts_with("ws://") || dial.url.starts_with("wss://")) {
            return Err(format!("{:?} is not a ws:// or wss:// URL", dial.url));
        }
        if super::server::over_limit(&ctx.metrics, self.max_calls, &dial.url) {
            return Err(format!("call limit reached ({})", self.max_calls));
        }
        let (stop, registered) = self.calls.claim(&dial.call_id).ok_or_else(|| {
            ctx.metrics.duplicate_call_ids.fetch_add(1, Relaxed);
            format!("call id {:?} is in use", dial.call_id)
        })?;
        let timeout = self.timeout;
        self.tracker.spawn(async move {
            let _registered = registered;
            let started = async {
                let mut ws = connect(&dial.url, timeout).await?;
                let (start, control) = media_start(&mut ws, timeout).await?;
                let state = LegState::new(&start, control)?.with_pacing(ctx.route.chanws_pacing);
                Ok::<_, MediaError>((ws, start, state))
            };
            match started.await {
                Ok((ws, start, state)) => {
                    done(Ok(()));
                    let AsteriskMediaDial {
                        call_id, mut params, ..
                    } = dial;
                    params.insert("direction".into(), "outgoing".into());
                    if let Some((call, leg)) = prepare(ws, &start, state, params, call_id, &ctx) {
                        drive(call, leg, ctx, Some(stop)).await;
                    }
                }
                Err(e) => {
                    ctx.metrics.rejected_connections.fetch_add(1, Relaxed);
                    ctx.metrics.caller_protocol_errors.fetch_add(1, Relaxed);
                    tracing::warn!(call_id = %dial.call_id, url = %dial.url, error = %e, "Asterisk media WebSocket dial failed");
                    done(Err(e.to_string()));
                }
            }
        });
        Ok(())
    }
}

/// Connects to Asterisk's `/media/<connection id>` offering the `media`
/// subprotocol.
async fn connect(url: &str, timeout: Duration) -> Result<WsSocket, MediaError> {
    tokio::time::timeout(timeout, WsSocket::connect(url, Some(SUBPROTOCOL)))
        .await
        .map_err(|_| MediaError::CallerProtocol(format!("no media WebSocket from {url} within {timeout:?}")))?
        .map_err(|e| MediaError::CallerProtocol(format!("media WebSocket {url}: {e}")))
}

fn prepare(
    ws: WsSocket,
    start: &MediaStart,
    state: LegState,
    extra: BTreeMap<String, String>,
    call_id: String,
    ctx: &CallContext,
) -> Option<(Box<Call>, Leg)> {
    let mut params = ctx.route.params.clone();
    params.extend(start.channel_variables.clone());
    params.extend(extra);
    params.insert("asterisk_channel".into(), start.channel.clone());
    params.insert("asterisk_channel_id".into(), start.channel_id.clone());
    params.insert("asterisk_connection_id".into(), start.connection_id.clone());
    let info = CallInfo {
        call_id,
        route: ctx.route_name.clone(),
        caller: params.get("caller").cloned(),
        callee: params.get("callee").cloned(),
        ingress: "chanws",
        params,
    };
    let mut call = start_call(info, ctx, state.rate())?;
    call.enable_leg_requests();
    let leg = ChanWsLeg {
        ws,
        state,
        metrics: ctx.metrics.clone(),
        pending: None,
        last_rx: Instant::now(),
        media_timeout: ctx.media_timeout,
        pinged: false,
        bad_logged: false,
        folded_xoffs: 0,
    };
    Some((call, Leg::ChanWs(Box::new(leg))))
}

impl ChanWsLeg {
    /// Waits for Asterisk's next message (cancel-safe: a message read is
    /// kept until `input` takes it).
    pub(super) async fn ready(&mut self) -> Result<(), HangupCause> {
        if self.pending.is_none() {
            match self.ws.next().await {
                Ok(m) => self.pending = Some(m),
                Err(ReadFailure::Protocol(why)) => {
                    // Bad input from Asterisk's side: counted and said.
                    self.metrics.caller_protocol_errors.fetch_add(1, Relaxed);
                    tracing::warn!(channel_id = self.state.channel_id(), error = %why, "chan_websocket peer broke the WebSocket protocol: hanging up");
                    return Err(HangupCause::CallerGone);
                }
                Err(_) => return Err(HangupCause::CallerGone),
            }
        }
        Ok(())
    }

    pub(super) fn input(&mut self, call: &mut Call, now: Instant) -> Result<(), HangupCause> {
        let Some(m) = self.pending.take() else {
            return Ok(());
        };
        self.last_rx = now;
        self.pinged = false;
        match m {
            Message::Binary(b) => self.state.binary(call, &b, now),
            m @ Message::Text(_) => {
                let outcome = self.state.text(call, m.text().unwrap_or_default(), now);
                self.note(call, outcome);
            }
            // Asterisk closes the WebSocket when the channel hangs up.
            Message::Close(_) => return Err(HangupCause::CallerHangup),
            Message::Ping(_) | Message::Pong(_) => {}
        }
        self.service(call)?;
        match call.ended() {
            Some(cause) => Err(cause),
            None => Ok(()),
        }
    }

    fn note(&mut self, call: &Call, outcome: TextOutcome) {
        match outcome {
            TextOutcome::Ok => {}
            TextOutcome::AsteriskError(text) => {
                self.metrics.chanws_errors.fetch_add(1, Relaxed);
                tracing::warn!(call_id = call.call_id(), error = %text, "Asterisk reported an error");
            }
            TextOutcome::Unknown(name) => {
                tracing::debug!(call_id = call.call_id(), event = %name, "unknown chan_websocket event ignored");
            }
            TextOutcome::Bad(e) => {
                self.metrics.caller_protocol_errors.fetch_add(1, Relaxed);
                if !self.bad_logged {
                    self.bad_logged = true;
                    tracing::warn!(call_id = call.call_id(), error = %e, "unusable chan_websocket text message (further ones on this call are only counted)");
                }
            }
        }
    }

    /// After any wake-up: what the call asked of the leg (a barge-in's
    /// flush, marks), then what is queued for Asterisk.
    pub(super) fn service(&mut self, call: &mut Call) -> Result<(), HangupCause> {
        self.state.pump(call);
        self.write_out()
    }

    /// Writes what may go now into the socket's buffer and flushes once.
    fn write_out(&mut self) -> Result<(), HangupCause> {
        let mut wrote = false;
        while let Some(o) = self.state.next_out() {
            match self.ws.queue(o) {
                Ok(botlink::Queued::Taken) => {
                    self.state.sent_out();
                    wrote = true;
                }
                Ok(botlink::Queued::Full) => break,
                Err(_) => return Err(HangupCause::CallerGone),
            }
        }
        if wrote || self.state.held_frames() > 0 || self.ws.has_unsent() {
            self.ws.flush().map_err(|_| HangupCause::CallerGone)?;
        }
        Ok(())
    }

    pub(super) fn tick(&mut self, call: &mut Call, tick: Tick, now: Instant) -> Result<(), HangupCause> {
        // Asterisk sends no frames while the caller's side makes none (a
        // `Wait()`, a silence-suppressing phone): a quiet channel is asked
        // for a pong halfway through the timeout, and only one that does
        // not even answer that is gone.
        let quiet = now.saturating_duration_since(self.last_rx);
        if quiet >= self.media_timeout {
            tracing::warn!(call_id = call.call_id(), timeout = ?self.media_timeout, "Asterisk sent nothing, not even a pong: hanging up");
            return Err(HangupCause::MediaTimeout);
        }
        if quiet >= self.media_timeout / 2 && !self.pinged {
            self.pinged = true;
            self.ws.ping();
            self.ws.flush().map_err(|_| HangupCause::CallerGone)?;
        }
        self.state.tick(call, tick);
        self.write_out()?;
        if !self.state.xoff() && self.state.held_frames() >= STALLED_FRAMES {
            tracing::warn!(call_id = call.call_id(), "Asterisk stopped reading for 2 s");
            return Err(HangupCause::CallerGone);
        }
        if tick.fold {
            let x = self.state.counters().xoffs;
            self.metrics
                .chanws_xoffs
                .fetch_add(x - self.folded_xoffs, Relaxed);
            self.folded_xoffs = x;
        }
        Ok(())
    }

    pub(super) fn finish(&mut self, cause: HangupCause) {
        let x = self.state.counters().xoffs;
        self.metrics
            .chanws_xoffs
            .fetch_add(x - self.folded_xoffs, Relaxed);
        self.folded_xoffs = x;
        if !matches!(cause, HangupCause::CallerHangup | HangupCause::CallerGone) {
            // Ask Asterisk to hang the channel up; the close follows.
            self.state.hang_up();
            let _ = self.write_out();
        }
        // A close frame, best effort and without waiting: Asterisk hangs the
        // channel up on it (the TCP connection closes when the leg is dropped).
        self.ws.close_now();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_query;

    #[test]
    fn query_parameters_are_percent_decoded() {
        let q = parse_query("caller=%2B15550100&name=Ann+Lee&bad=%zz%+1&empty&=x&lang=en%2dUS");
        assert_eq!(q["caller"], "+15550100");
        assert_eq!(q["name"], "Ann Lee");
        assert_eq!(q["bad"], "%zz% 1", "not hex: kept as it is (and + is a space)");
        assert_eq!(q["empty"], "");
        assert_eq!(q[""], "x");
        assert_eq!(q["lang"], "en-US");
        assert!(parse_query("").is_empty());
    }
}
