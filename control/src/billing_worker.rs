//! The billing consumer: charges each `call_hungup` event as the outbox
//! relay publishes it on the bus ([`Store::bill_call`], once per call and
//! event however often it runs), and sweeps the store for hung-up calls
//! that have no billing record yet: at start (calls that ended while no
//! worker ran), every [`SWEEP_EVERY`], and whenever the bus lapped it. So a
//! lost bus message, a crash or a second control instance never loses or
//! doubles a charge; the sweep looks back [`SWEEP_WINDOW`].
//!
//! With several control instances on one PostgreSQL, each runs a worker;
//! the account row lock and the unique keys make whichever comes first
//! charge. With Kafka, `call_hungup` comes from the billing consumer group
//! instead of the bus (`relay/kafka_feed.rs`) and this worker only sweeps.

use crate::error::ControlError;
use crate::store::billing::Billed;
use crate::store::Store;
use crate::time::Millis;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use voxbridge_proto::envelope::EventEnvelope;

/// How often the sweep runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How far back the sweep looks.
pub const SWEEP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Calls per sweep query.
const SWEEP_BATCH: u32 = 500;

/// Billing counters.
#[derive(Debug, Default)]
pub struct BillingStats {
    /// Calls charged.
    pub billed: AtomicU64,
    /// Events already charged (redelivery, another instance).
    pub duplicates: AtomicU64,
    /// Calls of customers without a billing account.
    pub no_account: AtomicU64,
    /// Events that could not be charged (unknown call, not hung up).
    pub refused: AtomicU64,
    /// Calls charged by the sweep rather than from the bus.
    pub swept: AtomicU64,
}

impl BillingStats {
    /// Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP voxbridge_billing_events_total call_hungup events taken by billing, by result.\n\
             # TYPE voxbridge_billing_events_total counter\n",
        );
        for (result, v) in [
            ("billed", &self.billed),
            ("duplicate", &self.duplicates),
            ("no_account", &self.no_account),
            ("refused", &self.refused),
        ] {
            out.push_str(&format!(
                "voxbridge_billing_events_total{{result=\"{result}\"}} {}\n",
                v.load(Relaxed)
            ));
        }
        out.push_str(&format!(
            "# HELP voxbridge_billing_swept_total Calls charged by the sweep.\n\
             # TYPE voxbridge_billing_swept_total counter\n\
             voxbridge_billing_swept_total {}\n",
            self.swept.load(Relaxed)
        ));
        out
    }
}

/// Runs until `stop` turns true. `events` must be subscribed before the
/// caller starts anything that publishes, so nothing slips past; `None`
/// when another consumer takes `call_hungup` (the Kafka billing group) and
/// this worker only sweeps.
pub async fn run(
    store: Store,
    events: Option<broadcast::Receiver<Arc<EventEnvelope>>>,
    stats: Arc<BillingStats>,
    mut stop: watch::Receiver<bool>,
) {
    enum Next {
        Bill(Arc<EventEnvelope>),
        Sweep,
        Stop,
    }
    let mut sweep_at = tokio::time::interval(SWEEP_EVERY);
    let (_never_tx, never) = broadcast::channel(1);
    let mut events = events.unwrap_or(never);
    loop {
        let next = tokio::select! {
            e = events.recv() => match e {
                Ok(e) if e.event_type == "call_hungup" => Next::Bill(e),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "billing fell behind the bus: sweeping");
                    Next::Sweep
                }
                Err(broadcast::error::RecvError::Closed) => Next::Stop,
            },
            // The first tick is immediate: the start-up sweep.
            _ = sweep_at.tick() => Next::Sweep,
            _ = stop.wait_for(|s| *s) => Next::Stop,
        };
        let go_on = match next {
            Next::Bill(e) => bill(&store, &e.event_id, &e.resource.id, &stats, &mut stop).await,
            Next::Sweep => sweep(&store, &stats, &mut stop).await,
            Next::Stop => false,
        };
        if !go_on {
            return;
        }
    }
}

/// Bills one call, retrying while the store is unreachable; `false` when
/// stopped meanwhile.
pub async fn bill_one(
    store: &Store,
    event_id: &str,
    call_id: &str,
    stats: &BillingStats,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    bill(store, event_id, call_id, stats, stop).await
}

async fn bill(
    store: &Store,
    event_id: &str,
    call_id: &str,
    stats: &BillingStats,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut backoff = Duration::from_millis(50);
    loop {
        match store.bill_call(event_id, call_id).await {
            Ok(Billed::New(r)) => {
                stats.billed.fetch_add(1, Relaxed);
                tracing::debug!(call_id, cost_micros = r.cost_micros, "call billed");
            }
            Ok(Billed::Already) => {
                stats.duplicates.fetch_add(1, Relaxed);
            }
            Ok(Billed::NoAccount) => {
                stats.no_account.fetch_add(1, Relaxed);
            }
            Err(ControlError::Store(e)) => {
                tracing::warn!(error = %e, call_id, ?backoff, "store unavailable: retrying billing");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return false,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(e) => {
                stats.refused.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, call_id, "call not billed");
            }
        }
        return true;
    }
}

/// Runs one sweep now (tests, tools): bills every unbilled hung-up call in
/// [`SWEEP_WINDOW`], waiting out a store outage.
pub async fn sweep_now(store: &Store, stats: &BillingStats) {
    let (_keep, mut never) = watch::channel(false);
    sweep(store, stats, &mut never).await;
}

async fn sweep(store: &Store, stats: &BillingStats, stop: &mut watch::Receiver<bool>) -> bool {
    let since = Millis(Millis::now().0 - SWEEP_WINDOW.as_millis() as i64);
    loop {
        let due = match store.unbilled_calls(since, SWEEP_BATCH).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "billing sweep failed; next one in a minute");
                return true;
            }
        };
        for (call_id, event_id) in &due {
            let before = stats.billed.load(Relaxed);
            if !bill(store, event_id, call_id, stats, stop).await {
                return false;
            }
            if stats.billed.load(Relaxed) > before {
                stats.swept.fetch_add(1, Relaxed);
            }
        }
        if (due.len() as u32) < SWEEP_BATCH {
            return true;
        }
    }
}
