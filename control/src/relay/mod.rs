//! The outbox relay: reads committed, unsent events in order, hands them to
//! a [`Publisher`] (Kafka, or the in-process [`bus::Bus`]) and marks what
//! was published as sent.
//!
//! Delivery is at least once: a crash or a failed mark after publishing
//! republishes those rows on the next pass, so consumers de-duplicate on
//! `event_id`. Nothing is lost: a row leaves the pending set only after its
//! publisher confirmed it. While the publisher is down the relay retries
//! with backoff (100 ms doubling to 5 s); the API and the sink keep writing,
//! and rows wait in the outbox.
//!
//! Run one relay per database: on PostgreSQL several control instances would
//! each publish every row (duplicates, never loss or reordering per key).

pub mod bus;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kafka")]
pub mod kafka_feed;

use crate::error::Result;
use crate::store::{OutboxRow, Store};
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where the relay sends events.
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// Publishes `rows` in order. Returns how many rows, from the start,
    /// are confirmed published (all of them on success); an error means
    /// none are.
    async fn publish(&self, rows: &[OutboxRow]) -> Result<usize>;
}

/// Relay counters.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Events published and marked sent.
    pub published: AtomicU64,
    /// Failed publish or mark attempts.
    pub failures: AtomicU64,
}

/// Rows per pass.
const BATCH: u32 = 256;
/// A pass also runs this often without a wake-up (rows committed by other
/// processes sharing the database).
const POLL: Duration = Duration::from_millis(250);

/// Relays until `stop` turns true, then publishes what is pending once more
/// and returns.
pub async fn run(
    store: Store,
    publisher: Arc<dyn Publisher>,
    stats: Arc<RelayStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut commits = store.commits();
    loop {
        let stopping = *stop.borrow();
        // Commits from here on wake the next wait: the pass reads after this.
        commits.borrow_and_update();
        match pass(&store, publisher.as_ref(), &stats).await {
            Ok(n) if n as u32 == BATCH => {
                backoff = Duration::from_millis(100);
                continue;
            }
            Ok(_) => backoff = Duration::from_millis(100),
            Err(e) => {
                stats.failures.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, ?backoff, "outbox relay: publish failed; rows stay pending");
                if stopping {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = commits.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
}

/// One pass: returns the number of rows published.
async fn pass(store: &Store, publisher: &dyn Publisher, stats: &RelayStats) -> Result<usize> {
    let rows = store.outbox_pending(BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let done = publisher.publish(&rows).await?.min(rows.len());
    let seqs: Vec<i64> = rows[..done].iter().map(|r| r.seq).collect();
    store.outbox_mark_sent(&seqs).await?;
    stats.published.fetch_add(done as u64, Relaxed);
    if done < rows.len() {
        return Err(crate::ControlError::Kafka(format!(
            "{} of {} events not confirmed",
            rows.len() - done,
            rows.len()
        )));
    }
    Ok(done)
}
