//! control's implementation of the media plane's event sink: call events
//! become call rows, state changes and transcripts in the store.
//!
//! `emit` runs on a call's task and must not block, so it only queues the
//! event; one worker applies events in arrival order (so a call's events
//! apply in the order the call emitted them). The queue is unbounded on
//! purpose: an event is a few hundred bytes, a call emits a handful, and
//! dropping one would lose a hangup; its depth is exposed in [`SinkStats`].
//! While the database is unreachable the worker retries the same event with
//! backoff instead of dropping it (and readiness reports the pipeline stuck
//! after [`STUCK_AFTER`]). An event the store refuses for what it carries
//! (invalid text, a constraint: [`ControlError::Rejected`]) is parked in
//! the dead-letter table with its error and the worker moves on, so it
//! never blocks the events behind it. Events the state machine refuses (a
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
use voxbridge_contract::commands::CallCommands;
use voxbridge_contract::events::{CallEvent, EventSink, Speaker};

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
    /// Events parked in the dead-letter table.
    pub parked: AtomicU64,
    /// Since when (ms since the epoch) the worker has been retrying one
    /// event; 0 when it is not.
    pub retrying_since_ms: AtomicI64,
}

/// How long the worker may retry one event before readiness says the
/// pipeline is stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(5);

impl SinkStats {
    /// `Some(how long)` when the worker has been retrying one event for
    /// longer than [`STUCK_AFTER`].
    pub fn stuck_for(&self) -> Option<Duration> {
        let since = self.retrying_since_ms.load(Relaxed);
        if since == 0 {
            return None;
        }
        let d = Duration::from_millis(u64::try_from(Millis::now().0 - since).unwrap_or(0));
        (d >= STUCK_AFTER).then_some(d)
    }
}

/// The pre-call check. A new call of a customer that does not exist or was
/// deleted is hung up through media's command interface as soon as it is
/// stored (a deleted tenant's routes take no more calls). With
/// `[control.billing] refuse_without_balance`, so is a call of a customer
/// whose billing account has no balance left (customers without an account
/// are not checked). A store error lets the call through (logged): the
/// check must not take calls down with it.
#[derive(Default)]
pub struct CallGate {
    /// Whether the check runs.
    pub refuse_without_balance: bool,
    commands: std::sync::OnceLock<Arc<dyn CallCommands>>,
    /// Calls refused for want of balance.
    pub refused: AtomicU64,
    /// Calls refused because their customer does not exist or was deleted.
    pub refused_inactive: AtomicU64,
}

impl std::fmt::Debug for CallGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallGate")
            .field("refuse_without_balance", &self.refuse_without_balance)
            .finish()
    }
}

impl CallGate {
    /// A gate; `refuse_without_balance` turns the check on.
    pub fn new(refuse_without_balance: bool) -> Self {
        CallGate {
            refuse_without_balance,
            ..CallGate::default()
        }
    }

    /// Where refusals go (the media server's commands, or the Kafka link);
    /// the first one set stays.
    pub fn set_commands(&self, commands: Arc<dyn CallCommands>) {
        let _ = self.commands.set(commands);
    }

    /// Hangs up a media leg that answered a call already over.
    fn end_late_answer(&self, call_id: &str) {
        tracing::warn!(
            call_id,
            "media answered a call that is already over: hanging the leg up"
        );
        if let Some(c) = self.commands.get() {
            c.hangup(call_id);
        }
    }

    fn refuse(&self, call_id: &str) {
        match self.commands.get() {
            Some(c) => {
                c.hangup(call_id);
            }
            None => tracing::warn!(call_id, "no media command interface: refused call keeps running"),
        }
    }

    async fn check(&self, store: &Store, customer_id: &str, call_id: &str) {
        match store.customer_active(customer_id).await {
            Ok(true) => {}
            Ok(false) => {
                self.refused_inactive.fetch_add(1, Relaxed);
                tracing::warn!(
                    call_id,
                    customer_id,
                    "call refused: customer does not exist or was deleted"
                );
                return self.refuse(call_id);
            }
            Err(e) => tracing::warn!(error = %e, call_id, "customer check failed: call let through"),
        }
        if !self.refuse_without_balance {
            return;
        }
        match store.billing_account(customer_id).await {
            Ok(a) if a.balance_micros <= 0 => {
                self.refused.fetch_add(1, Relaxed);
                tracing::warn!(
                    call_id,
                    customer_id,
                    balance_micros = a.balance_micros,
                    "call refused: no balance"
                );
                self.refuse(call_id);
            }
            Ok(_) | Err(ControlError::NotFound) => {}
            Err(e) => tracing::warn!(error = %e, call_id, "balance check failed: call let through"),
        }
    }
}

/// What the API needs of the event pipeline: the context to apply a parked
/// event again, and the counters readiness reads.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    /// As the worker applies events.
    pub ctx: SinkCtx,
    /// The worker's counters.
    pub stats: Arc<SinkStats>,
}

/// What applying an event needs besides the store.
#[derive(Debug, Clone)]
pub struct SinkCtx {
    /// Owner of calls whose route has no `customer_id` parameter.
    pub default_customer: String,
    /// The pre-call check.
    pub gate: Arc<CallGate>,
}

impl Default for SinkCtx {
    fn default() -> Self {
        SinkCtx {
            default_customer: "default".into(),
            gate: Arc::default(),
        }
    }
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
        ctx: SinkCtx,
        stop: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(SinkStats::default());
        let worker = tokio::spawn(run(store, ctx, rx, stats.clone(), stop));
        (ControlSink { tx, stats }, worker)
    }

    /// The worker's counters.
    pub fn stats(&self) -> Arc<SinkStats> {
        self.stats.clone()
    }
}

async fn run(
    store: Store,
    ctx: SinkCtx,
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
        apply_retrying(&store, &ctx, &event, None, &stats).await;
        stats.queued.fetch_sub(1, Relaxed);
    }
}

/// Applies one event, retrying while the store is unreachable (backoff
/// 50 ms doubling to 5 s), and counts the outcome. `event_id` is the id a
/// media process gave the event when it came over the link (it makes a
/// redelivered transcript segment a no-op); `None` in process.
pub async fn apply_retrying(
    store: &Store,
    ctx: &SinkCtx,
    event: &CallEvent,
    event_id: Option<&str>,
    stats: &SinkStats,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let outage = match apply(store, ctx, event, event_id).await {
            Ok(true) => counted(&stats.applied),
            Ok(false) => counted(&stats.ignored),
            Err(ControlError::Store(e)) => Some(e),
            Err(e @ (ControlError::Rejected(_) | ControlError::Row(_))) => {
                match park(store, ctx, event, event_id, &e.to_string()).await {
                    Ok(()) => counted(&stats.parked),
                    // The park itself hit an outage: retry the whole event.
                    Err(ControlError::Store(pe)) => Some(pe),
                    Err(pe) => {
                        tracing::error!(error = %pe, call_id = event.call_id(), "call event could not be parked: dropped");
                        counted(&stats.refused)
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, call_id = event.call_id(), "call event refused");
                counted(&stats.refused)
            }
        };
        let Some(e) = outage else {
            stats.retrying_since_ms.store(0, Relaxed);
            return;
        };
        stats.retries.fetch_add(1, Relaxed);
        let _ = stats
            .retrying_since_ms
            .compare_exchange(0, Millis::now().0, Relaxed, Relaxed);
        tracing::warn!(error = %e, call_id = event.call_id(), ?backoff, "store unavailable: retrying call event");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Counts one outcome; no outage to wait out.
fn counted(counter: &AtomicU64) -> Option<String> {
    counter.fetch_add(1, Relaxed);
    None
}

/// Applies a parked event again. Applied, it is no longer parked; refused
/// again (`Rejected`), it stays parked with one more attempt and the new
/// reason, and the refusal is returned.
pub async fn retry_parked(
    store: &Store,
    ctx: &SinkCtx,
    parked: &crate::store::dead_letters::DeadLetter,
) -> crate::Result<bool> {
    let wire = voxbridge_contract::event_wire::WireEvent::decode(parked.payload.to_string().as_bytes())
        .map_err(|e| ControlError::Rejected(format!("parked event unreadable: {e}")))?;
    match apply(store, ctx, &wire.event, Some(&parked.id)).await {
        Ok(applied) => {
            store.delete_dead_letter(&parked.id).await?;
            Ok(applied)
        }
        Err(e @ (ControlError::Rejected(_) | ControlError::Row(_))) => {
            park(store, ctx, &wire.event, Some(&parked.id), &e.to_string()).await?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Parks `event` in the dead-letter table (see the module docs).
async fn park(
    store: &Store,
    ctx: &SinkCtx,
    event: &CallEvent,
    event_id: Option<&str>,
    error: &str,
) -> crate::Result<()> {
    let id = event_id.map_or_else(crate::store::new_id, str::to_owned);
    let wire = voxbridge_contract::event_wire::WireEvent {
        event_id: id.clone(),
        event: event.clone(),
    }
    .encode();
    let payload = String::from_utf8_lossy(&wire).into_owned();
    let kind = serde_json::from_slice::<serde_json::Value>(&wire)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    let customer = match store.call_by_id(event.call_id()).await {
        Ok(c) => c.customer_id,
        Err(_) => ctx.default_customer.clone(),
    };
    tracing::error!(call_id = event.call_id(), event_id = %id, error, "call event refused by the store: parked");
    store
        .park_event(&id, event.call_id(), &kind, &payload, error, &customer)
        .await
        .map(|_| ())
}

/// Applies one event; `Ok(false)` when it changed nothing.
pub async fn apply(
    store: &Store,
    ctx: &SinkCtx,
    event: &CallEvent,
    event_id: Option<&str>,
) -> crate::Result<bool> {
    match event {
        CallEvent::Created { info, at } => {
            // Text from the media plane is checked where it enters control
            // (the same on every store): refused here, the event is parked.
            for (what, v) in [("caller", &info.caller), ("callee", &info.callee)] {
                if let Some(v) = v {
                    voxbridge_contract::text::check(what, v).map_err(ControlError::Rejected)?;
                }
            }
            let outgoing = info.params.get("direction").is_some_and(|d| d == "outgoing");
            let new = NewCall {
                id: info.call_id.clone(),
                customer_id: info
                    .params
                    .get("customer_id")
                    .cloned()
                    .unwrap_or_else(|| ctx.default_customer.clone()),
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
            let (_, created) = store.create_call(&new).await?;
            if created {
                ctx.gate.check(store, &new.customer_id, &new.id).await;
            }
            Ok(created)
        }
        CallEvent::Answered { call_id, at } => {
            let change = CallChange {
                to: CallStatus::Progressing,
                at: Millis::from_system(*at),
                hangup: None,
                sip: None,
            };
            match store.transition_call(None, call_id, &change, None).await {
                Ok(t) => Ok(t.applied),
                // Answered after the call was given up (an outbound call
                // past its ring timeout, or cancelled): end the media leg.
                Err(ControlError::Transition { from: "hangup", .. }) => {
                    ctx.gate.end_late_answer(call_id);
                    Ok(false)
                }
                Err(e) => Err(e),
            }
        }
        CallEvent::Hungup {
            call_id,
            cause,
            at,
            sip,
            ..
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
                        sip: sip.clone(),
                    })
                })
                .await?;
            store
                .complete_bot_transcribe(call_id, Millis::from_system(*at))
                .await?;
            Ok(t.applied)
        }
        CallEvent::Transcript {
            call_id,
            speaker,
            text,
            offset_ms,
            transcribe_id,
            ..
        } => {
            voxbridge_contract::text::check("transcript", text).map_err(ControlError::Rejected)?;
            let direction = match speaker {
                Speaker::Caller => "in",
                Speaker::Bot => "out",
            };
            let id = event_id.map_or_else(crate::store::new_id, str::to_owned);
            let (_, added) = match (transcribe_id, offset_ms) {
                (Some(transcribe_id), Some(offset)) => {
                    let offset = i64::try_from(*offset).unwrap_or(i64::MAX);
                    store
                        .add_recognized_once(&id, call_id, transcribe_id, direction, text, offset)
                        .await?
                }
                _ => {
                    store
                        .add_transcript_once(&id, call_id, direction, text, segment_time(*offset_ms))
                        .await?
                }
            };
            Ok(added)
        }
        CallEvent::TranscribeStarted {
            call_id,
            transcribe_id,
            language,
            directions,
            at,
        } => {
            let (_, added) = store
                .start_transcribe_once(
                    transcribe_id,
                    call_id,
                    language,
                    directions.as_str(),
                    Millis::from_system(*at),
                )
                .await?;
            Ok(added)
        }
        CallEvent::TranscribeCompleted {
            transcribe_id, at, ..
        } => {
            let (_, changed) = store
                .complete_transcribe_once(transcribe_id, Millis::from_system(*at))
                .await?;
            Ok(changed)
        }
        CallEvent::Dtmf { call_id, digit } => {
            let id = event_id.map_or_else(crate::store::new_id, str::to_owned);
            store.add_dtmf_once(&id, call_id, *digit).await
        }
        CallEvent::BotConnected {
            call_id,
            connect_time,
            attempt,
        } => {
            let fields = json_map([
                ("attempt", (*attempt).into()),
                ("connect_time_ms", duration_ms(*connect_time).into()),
            ]);
            signal(store, event_id, call_id, "bot_connected", "bot_link", fields).await
        }
        CallEvent::BotFailed {
            call_id,
            reason,
            will_retry,
        } => {
            let fields = json_map([
                ("reason", reason.as_str().into()),
                ("will_retry", (*will_retry).into()),
            ]);
            signal(store, event_id, call_id, "bot_failed", "bot_link", fields).await
        }
        CallEvent::RtpStats { call_id, stats } => {
            let fields = json_map([
                ("packets_received", stats.packets_received.into()),
                ("packets_sent", stats.packets_sent.into()),
                ("packets_lost", stats.packets_lost.into()),
                ("jitter_ms", stats.jitter_ms.into()),
                ("jitter_buffer_ms", stats.jitter_buffer_ms.into()),
                ("late", stats.late.into()),
                ("duplicates", stats.duplicates.into()),
                ("concealed_frames", stats.concealed_frames.into()),
                ("malformed", stats.malformed.into()),
                ("rtt_ms", stats.rtt_ms.into()),
                ("remote_fraction_lost", stats.remote_fraction_lost.into()),
            ]);
            signal(store, event_id, call_id, "rtp_stats", "rtp_stats", fields).await
        }
        // Also marked by the dialer when its originator reports the 18x;
        // this is the ordered path (before the answer), and a second mark
        // changes nothing.
        CallEvent::Ringing { call_id, at } => {
            let at = Millis::from_system(*at);
            let t = store
                .transition_call_with(None, call_id, None, |c| {
                    (c.status == CallStatus::Dialing).then_some(CallChange {
                        to: CallStatus::Ringing,
                        at,
                        hangup: None,
                        sip: None,
                    })
                })
                .await;
            match t {
                Ok(t) => Ok(t.applied),
                // A call control did not place: nothing to mark.
                Err(ControlError::NotFound) => Ok(false),
                Err(e) => Err(e),
            }
        }
        CallEvent::Transferred { call_id, target, at } => {
            voxbridge_contract::text::check("target", target).map_err(ControlError::Rejected)?;
            let fields = json_map([
                ("target", target.as_str().into()),
                ("tm_transferred", Millis::from_system(*at).rfc3339().into()),
            ]);
            signal(
                store,
                event_id,
                call_id,
                "call_transferred",
                "call_transfer",
                fields,
            )
            .await
        }
        CallEvent::TransferFailed {
            call_id,
            target,
            sip,
            at,
        } => {
            voxbridge_contract::text::check("target", target).map_err(ControlError::Rejected)?;
            let fields = json_map([
                ("target", target.as_str().into()),
                ("sip_code", sip.code.into()),
                ("sip_reason", sip.reason.as_str().into()),
                ("tm_failed", Millis::from_system(*at).rfc3339().into()),
            ]);
            signal(
                store,
                event_id,
                call_id,
                "call_transfer_failed",
                "call_transfer",
                fields,
            )
            .await
        }
        CallEvent::Speech {
            call_id,
            speaker,
            started,
            offset_ms,
            at,
        } => {
            let direction = match speaker {
                Speaker::Caller => "in",
                Speaker::Bot => "out",
            };
            let fields = json_map([
                ("direction", direction.into()),
                ("offset_ms", (*offset_ms).into()),
                ("tm_event", Millis::from_system(*at).rfc3339().into()),
            ]);
            let event_type = if *started {
                "speech_started"
            } else {
                "speech_ended"
            };
            signal(store, event_id, call_id, event_type, "call_speech", fields).await
        }
        CallEvent::AnsweredBy {
            call_id,
            answered_by,
            cause,
            after_ms,
            at,
        } => {
            if !matches!(answered_by.as_str(), "human" | "machine" | "not_sure") {
                return Err(ControlError::Rejected(format!(
                    "answered_by {answered_by:?} is not human, machine or not_sure"
                )));
            }
            voxbridge_contract::text::check("amd cause", cause).map_err(ControlError::Rejected)?;
            let fields = json_map([
                ("answered_by", answered_by.as_str().into()),
                ("cause", cause.as_str().into()),
                ("after_ms", (*after_ms).into()),
                ("tm_decided", Millis::from_system(*at).rfc3339().into()),
            ]);
            let id = event_id.map_or_else(crate::store::new_id, str::to_owned);
            let signal = crate::store::CallSignal {
                event_type: "call_answered_by",
                resource_type: "call_amd",
                fields,
            };
            store
                .record_answered_by(&id, call_id, answered_by, cause, signal)
                .await
        }
        CallEvent::RecordingStarted {
            call_id,
            recording_id,
            file,
            rate,
            at,
        } => {
            let (_, added) = store
                .start_recording_once(recording_id, call_id, file, *rate, Millis::from_system(*at))
                .await?;
            Ok(added)
        }
        CallEvent::RecordingPaused {
            recording_id, paused, ..
        } => store.pause_recording(recording_id, *paused).await,
        CallEvent::RecordingFinished {
            recording_id,
            duration_ms,
            bytes,
            end,
            at,
            ..
        } => {
            let ended = crate::store::recordings::RecordingEnded {
                duration_ms: *duration_ms,
                bytes: *bytes,
                reason: end.as_str(),
                at: Millis::from_system(*at),
            };
            store.finish_recording_once(recording_id, ended).await
        }
        // A kind a newer media plane emits: counted as ignored.
        _ => Ok(false),
    }
}

fn json_map<const N: usize>(
    pairs: [(&str, serde_json::Value); N],
) -> serde_json::Map<String, serde_json::Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn signal(
    store: &Store,
    event_id: Option<&str>,
    call_id: &str,
    event_type: &'static str,
    resource_type: &'static str,
    fields: serde_json::Map<String, serde_json::Value>,
) -> crate::Result<bool> {
    let id = event_id.map_or_else(crate::store::new_id, str::to_owned);
    let signal = crate::store::CallSignal {
        event_type,
        resource_type,
        fields,
    };
    store.publish_call_signal(&id, call_id, signal).await
}

/// A transcript segment's time: where a recognizer put it in the call, else
/// when it arrived.
fn segment_time(offset_ms: Option<u64>) -> crate::store::SegmentTime {
    match offset_ms {
        Some(ms) => crate::store::SegmentTime::InCall(i64::try_from(ms).unwrap_or(i64::MAX)),
        None => crate::store::SegmentTime::Arrived(Millis::now()),
    }
}
