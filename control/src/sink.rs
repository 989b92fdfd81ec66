//! control's implementation of the media plane's event sink: call events
//! become call rows, state changes and transcripts in the store.
//!
//! `emit` runs on a call's task and must not block, so it only queues the
//! event; one worker applies events in arrival order (so a call's events
//! apply in the order the call emitted them). The queue is unbounded on
//! purpose: an event is a few hundred bytes, a call emits a handful, and
//! dropping one would lose a hangup; its depth is exposed in [`SinkStats`].
//! While the database is unreachable the worker retries the same event with
//! backoff instead of dropping it. Events the state machine refuses (a
//! replay out of order, an event for an unknown call) are logged and counted.

use crate::error::ControlError;
use crate::model::{CallChange, NewCall};
use crate::state::{self, CallStatus, Direction};
use crate::store::Store;
use crate::time::Millis;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use voxbridge_media::events::{CallEvent, EventSink, Speaker};

/// Counters of the sink worker.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Events queued and not yet applied.
    pub queued: AtomicI64,
    /// Events that changed the store.
    pub applied: AtomicU64,
    /// Events that changed nothing (replays, events the store does not keep).
    pub ignored: AtomicU64,
    /// Events refused (state machine, unknown call).
    pub refused: AtomicU64,
    /// Store errors retried.
    pub retries: AtomicU64,
}

/// The sink media's calls report to.
#[derive(Debug, Clone)]
pub struct ControlSink {
    tx: mpsc::UnboundedSender<CallEvent>,
    stats: Arc<SinkStats>,
}

impl EventSink for ControlSink {
    fn emit(&self, event: CallEvent) {
        self.stats.queued.fetch_add(1, Relaxed);
        if self.tx.send(event).is_err() {
            // Only after the worker stopped (shutdown).
            self.stats.queued.fetch_sub(1, Relaxed);
            tracing::warn!("control sink stopped: call event not stored");
        }
    }
}

impl ControlSink {
    /// Starts the worker. Calls whose route has no `customer_id` parameter
    /// belong to `default_customer`. The worker ends when every sink clone
    /// is dropped, or when `stop` turns true, after storing what is queued.
    pub fn spawn(
        store: Store,
        default_customer: String,
        stop: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(SinkStats::default());
        let worker = tokio::spawn(run(store, default_customer, rx, stats.clone(), stop));
        (ControlSink { tx, stats }, worker)
    }

    /// The worker's counters.
    pub fn stats(&self) -> Arc<SinkStats> {
        self.stats.clone()
    }
}

async fn run(
    store: Store,
    default_customer: String,
    mut rx: mpsc::UnboundedReceiver<CallEvent>,
    stats: Arc<SinkStats>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            e = rx.recv() => match e {
                Some(e) => e,
                None => return,
            },
            _ = stop.wait_for(|s| *s) => match rx.try_recv() {
                Ok(e) => e,
                Err(_) => return,
            },
        };
        apply_retrying(&store, &default_customer, &event, None, &stats).await;
        stats.queued.fetch_sub(1, Relaxed);
    }
}

/// Applies one event, retrying while the store is unreachable (backoff
/// 50 ms doubling to 5 s), and counts the outcome. `event_id` is the id a
/// media process gave the event when it came over the link (it makes a
/// redelivered transcript segment a no-op); `None` in process.
pub async fn apply_retrying(
    store: &Store,
    default_customer: &str,
    event: &CallEvent,
    event_id: Option<&str>,
    stats: &SinkStats,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match apply(store, default_customer, event, event_id).await {
            Ok(true) => stats.applied.fetch_add(1, Relaxed),
            Ok(false) => stats.ignored.fetch_add(1, Relaxed),
            Err(ControlError::Store(e)) => {
                stats.retries.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, call_id = event.call_id(), ?backoff, "store unavailable: retrying call event");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, call_id = event.call_id(), "call event refused");
                stats.refused.fetch_add(1, Relaxed)
            }
        };
        return;
    }
}

/// Applies one event; `Ok(false)` when it changed nothing.
pub async fn apply(
    store: &Store,
    default_customer: &str,
    event: &CallEvent,
    event_id: Option<&str>,
) -> crate::Result<bool> {
    match event {
        CallEvent::Created { info, at } => {
            let outgoing = info.params.get("direction").is_some_and(|d| d == "outgoing");
            let new = NewCall {
                id: info.call_id.clone(),
                customer_id: info
                    .params
                    .get("customer_id")
                    .cloned()
                    .unwrap_or_else(|| default_customer.to_owned()),
                status: if outgoing {
                    CallStatus::Dialing
                } else {
                    CallStatus::Ringing
                },
                direction: if outgoing {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                },
                source: info.caller.clone().unwrap_or_default(),
                destination: info.callee.clone().unwrap_or_default(),
                route: info.route.clone(),
                ingress: info.ingress.to_owned(),
                at: Millis::from_system(*at),
            };
            Ok(store.create_call(&new).await?.1)
        }
        CallEvent::Answered { call_id, at } => {
            let change = CallChange {
                to: CallStatus::Progressing,
                at: Millis::from_system(*at),
                hangup: None,
            };
            Ok(store.transition_call(None, call_id, &change, None).await?.applied)
        }
        CallEvent::Hungup {
            call_id, cause, at, ..
        } => {
            // Who hung up and why depends on whether the call was answered:
            // decided on the locked row, in the change's own transaction.
            let t = store
                .transition_call_with(None, call_id, None, |current| {
                    let (by, reason) = state::hangup_of(*cause, current.tm_progressing.is_some());
                    Some(CallChange {
                        to: CallStatus::Hangup,
                        at: Millis::from_system(*at),
                        hangup: Some((by, reason, cause.as_str().to_owned())),
                    })
                })
                .await?;
            Ok(t.applied)
        }
        CallEvent::Transcript {
            call_id,
            speaker,
            text,
            ..
        } => {
            let direction = match speaker {
                Speaker::Caller => "in",
                Speaker::Bot => "out",
            };
            let id = event_id.map_or_else(crate::store::new_id, str::to_owned);
            let (_, added) = store
                .add_transcript_once(&id, call_id, direction, text, Millis::now())
                .await?;
            Ok(added)
        }
        _ => Ok(false),
    }
}
