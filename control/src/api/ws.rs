//! `GET /v1/ws`: live event subscriptions over WebSocket, authenticated like
//! the REST API (browsers, which cannot set headers, use `?accesskey=`).
//! The protocol and the topic rules are in [`crate::live`]; this is the I/O.
//!
//! Each connection reads the in-process bus (every event the outbox relay
//! publishes) and forwards what its subscriptions match. Memory per client
//! is bounded: at most [`SEND_QUEUE`] messages wait for a slow socket; one
//! more, or the bus lapping the client, closes the connection with code
//! 1008 and a reason that says so. The client then resubscribes and reads
//! what it missed from the REST API.
//!
//! Revocation: a connection ends with code [`CLOSE_REVOKED`] (4401) when the
//! credential it was opened with stops being valid: its customer or its
//! access key is deleted (seen as the `customer_deleted` /
//! `access_key_deleted` event on the bus, so within the outbox relay's
//! delay of the commit, on every instance), or its JWT `exp` (plus the
//! leeway) or key expiry passes.

use super::auth::Principal;
use super::AppState;
use crate::live::{LiveSession, ServerMsg};
use crate::time::Millis;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use voxbridge_proto::envelope::EventEnvelope;

/// Messages that may wait for one client's socket.
pub const SEND_QUEUE: usize = 256;
/// Close code for a client that cannot keep up (policy violation).
pub const CLOSE_SLOW: u16 = 1008;
/// Close code for a connection whose credential was revoked or expired.
pub const CLOSE_REVOKED: u16 = 4401;
/// Largest client message, bytes.
const MAX_MESSAGE: usize = 64 * 1024;
/// Read buffer per connection. tungstenite zero-fills the whole buffer
/// before every read (128 KiB by default: a quarter of the CPU of a 1,000
/// subscriber fan-out went to that memset); clients send small subscribe
/// messages, and a larger one takes several reads.
const READ_BUFFER: usize = 4 * 1024;

/// Counters of the live subscriptions.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Open connections.
    pub connections: AtomicI64,
    /// Events sent to clients.
    pub events_sent: AtomicU64,
    /// Connections closed because the client fell behind.
    pub closed_slow: AtomicU64,
    /// Connections closed because their credential was revoked or expired.
    pub closed_revoked: AtomicU64,
}

impl LiveStats {
    /// Prometheus text format.
    pub fn render(&self) -> String {
        format!(
            "# HELP voxbridge_ws_connections Open /v1/ws connections.\n\
             # TYPE voxbridge_ws_connections gauge\n\
             voxbridge_ws_connections {}\n\
             # HELP voxbridge_ws_events_sent_total Events pushed to /v1/ws clients.\n\
             # TYPE voxbridge_ws_events_sent_total counter\n\
             voxbridge_ws_events_sent_total {}\n\
             # HELP voxbridge_ws_closed_slow_total /v1/ws connections closed because the client fell behind.\n\
             # TYPE voxbridge_ws_closed_slow_total counter\n\
             voxbridge_ws_closed_slow_total {}\n\
             # HELP voxbridge_ws_closed_revoked_total /v1/ws connections closed because their credential was revoked or expired.\n\
             # TYPE voxbridge_ws_closed_revoked_total counter\n\
             voxbridge_ws_closed_revoked_total {}\n",
            self.connections.load(Relaxed),
            self.events_sent.load(Relaxed),
            self.closed_slow.load(Relaxed),
            self.closed_revoked.load(Relaxed),
        )
    }
}

/// The upgrade: authentication first (a JSON 401 without it); a request
/// that is not a WebSocket upgrade gets a JSON error too.
pub async fn ws(
    State(s): State<AppState>,
    p: Principal,
    up: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    use axum::response::IntoResponse;
    let up = match up {
        Ok(up) => up,
        Err(r) => {
            return super::error::ApiError::new(r.status(), "not_websocket", r.body_text()).into_response()
        }
    };
    let session = LiveSession::new(p.customer_id.clone(), p.admin).with_key(p.key_id.clone());
    let events = s.bus.subscribe();
    let stats = s.live.clone();
    let valid_for = p
        .expires
        .map(|e| Duration::from_millis(u64::try_from(e.0 - Millis::now().0).unwrap_or(0)));
    up.max_message_size(MAX_MESSAGE)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| serve(socket, session, events, stats, valid_for))
}

type Close = (u16, String);

async fn serve(
    socket: WebSocket,
    mut session: LiveSession,
    mut events: broadcast::Receiver<Arc<EventEnvelope>>,
    stats: Arc<LiveStats>,
    valid_for: Option<Duration>,
) {
    stats.connections.fetch_add(1, Relaxed);
    // A credential without an end never fires (a year is "never" here).
    let expiry = tokio::time::sleep(valid_for.unwrap_or(Duration::from_secs(365 * 86_400)));
    tokio::pin!(expiry);
    let (sink, mut stream) = socket.split();
    let (out, out_rx) = mpsc::channel::<Message>(SEND_QUEUE);
    let (close, close_rx) = oneshot::channel::<Close>();
    let writer = tokio::spawn(write(sink, out_rx, close_rx));
    let slow = |why: String| -> Close {
        stats.closed_slow.fetch_add(1, Relaxed);
        (CLOSE_SLOW, why)
    };
    let revoked = |why: &str| -> Close {
        stats.closed_revoked.fetch_add(1, Relaxed);
        (CLOSE_REVOKED, why.to_owned())
    };
    let ending: Option<Close> = loop {
        tokio::select! {
            m = stream.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let reply = session.on_text(t.as_str()).to_json();
                    if out.try_send(Message::Text(reply.into())).is_err() {
                        break Some(slow(format!("slow consumer: {SEND_QUEUE} messages waiting")));
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let reply = ServerMsg::Error { code: "invalid_message", message: "send JSON text frames".into() };
                    if out.try_send(Message::Text(reply.to_json().into())).is_err() {
                        break Some(slow(format!("slow consumer: {SEND_QUEUE} messages waiting")));
                    }
                }
                // Pings are answered by the socket itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break None,
            },
            () = &mut expiry => break Some(revoked("credential expired")),
            e = events.recv() => match e {
                Ok(e) => {
                    if let Some(why) = session.revoked_by(&e) {
                        break Some(revoked(why));
                    }
                    if session.wants(&e) {
                        if out.try_send(Message::Text(e.to_json().into())).is_err() {
                            break Some(slow(format!("slow consumer: {SEND_QUEUE} messages waiting")));
                        }
                        stats.events_sent.fetch_add(1, Relaxed);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    break Some(slow(format!("slow consumer: {n} events missed")));
                }
                Err(broadcast::error::RecvError::Closed) => break Some((1001, "server shutting down".into())),
            },
        }
    };
    match ending {
        Some(c) => {
            let _ = close.send(c);
        }
        None => drop(out),
    }
    let _ = writer.await;
    stats.connections.fetch_sub(1, Relaxed);
}

/// Writes queued messages; on a close request, drops what is queued and
/// sends the close frame (giving up after 10 s on a stuck socket).
async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Message>,
    mut close: oneshot::Receiver<Close>,
) {
    loop {
        let next = tokio::select! {
            c = &mut close => Err(c.ok()),
            m = queue.recv() => Ok(m),
        };
        let m = match next {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(c) => return send_close(&mut sink, c).await,
        };
        let closing = tokio::select! {
            c = &mut close => Some(c.ok()),
            r = sink.send(m) => match r {
                Ok(()) => None,
                Err(_) => return,
            },
        };
        if let Some(c) = closing {
            return send_close(&mut sink, c).await;
        }
    }
}

async fn send_close(sink: &mut futures_util::stream::SplitSink<WebSocket, Message>, c: Option<Close>) {
    let Some((code, reason)) = c else { return };
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), sink.send(Message::Close(Some(frame)))).await;
}
