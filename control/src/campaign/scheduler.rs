//! The campaign scheduler: one task per control instance. Every tick it
//! runs the dialling step ([`Store::dial_due_targets`]) of each running
//! campaign and hands the calls placed to the [`Dialer`]; every few ticks
//! it ends outgoing calls whose media never joined (ring timeout).
//!
//! Everything it knows is in the store, so it survives restarts: a target
//! is `dialing` from the transaction that created its call until the one
//! that hung the call up; at start, the calls this node was running when
//! it died are ended (`Store::end_orphaned_calls`, from the service), which
//! settles their targets by the retry policy. Several instances may run it
//! against one PostgreSQL: the dialling step holds the campaign's row lock,
//! so no target is dialled twice for one attempt.

use crate::originate::Dialer;
use crate::store::Store;
use crate::time::Millis;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// `[control.campaigns]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignsConfig {
    /// Run the scheduler in this instance.
    pub enabled: bool,
    /// How often running campaigns are looked at, ms.
    pub tick_ms: u64,
}

impl Default for CampaignsConfig {
    fn default() -> Self {
        CampaignsConfig {
            enabled: true,
            tick_ms: 100,
        }
    }
}

/// The scheduler's counters.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    /// Calls placed for campaigns.
    pub dialed: AtomicU64,
    /// Store errors (retried next tick).
    pub errors: AtomicU64,
}

impl SchedulerStats {
    /// Prometheus text.
    pub fn render(&self) -> String {
        format!(
            "# HELP voxbridge_campaign_dials_total Calls placed by the campaign scheduler.\n\
             # TYPE voxbridge_campaign_dials_total counter\n\
             voxbridge_campaign_dials_total {}\n\
             # HELP voxbridge_campaign_scheduler_errors_total Scheduler passes that failed (retried).\n\
             # TYPE voxbridge_campaign_scheduler_errors_total counter\n\
             voxbridge_campaign_scheduler_errors_total {}\n",
            self.dialed.load(Relaxed),
            self.errors.load(Relaxed)
        )
    }
}

/// Runs until `stop` turns true. With `campaigns = false` only the ring
/// timeout sweep runs (for `POST /v1/calls`).
pub async fn run(
    store: Store,
    dialer: Arc<Dialer>,
    cfg: CampaignsConfig,
    stats: Arc<SchedulerStats>,
    mut stop: watch::Receiver<bool>,
) {
    let tick = Duration::from_millis(cfg.tick_ms.clamp(10, 10_000));
    let sweep_every = (dialer.ring_timeout().as_millis() / 4 / tick.as_millis().max(1)).clamp(1, 50) as u64;
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(tick) => {}
        }
        n += 1;
        if cfg.enabled {
            pass(&store, &dialer, &stats).await;
        }
        if n % sweep_every == 0 {
            if let Err(e) = dialer.expire_unanswered().await {
                stats.errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "ring timeout sweep failed");
            }
        }
    }
}

async fn pass(store: &Store, dialer: &Arc<Dialer>, stats: &SchedulerStats) {
    let ids = match store.running_campaigns().await {
        Ok(ids) => ids,
        Err(e) => {
            stats.errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, "campaign scheduler: store unavailable");
            return;
        }
    };
    for id in ids {
        match store.dial_due_targets(&id, Millis::now(), dialer.ingress()).await {
            Ok(placed) => {
                stats.dialed.fetch_add(placed.len() as u64, Relaxed);
                for p in placed {
                    dialer.start(&p.call, p.vars, p.attempt);
                }
            }
            Err(e) => {
                stats.errors.fetch_add(1, Relaxed);
                tracing::warn!(campaign_id = %id, error = %e, "campaign scheduler: dialling step failed");
            }
        }
    }
}
