//! Recording retention: every hour (and at start) the recordings older
//! than `[recording] retention_days` lose their file and become `deleted`
//! (with a `recording_deleted` event). Several control nodes may run it at
//! once: a file already gone and a record already deleted are no error.

use crate::error::Result;
use crate::store::Store;
use crate::time::Millis;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

/// How often the sweep runs.
const EVERY: Duration = Duration::from_secs(3600);
/// Recordings deleted per store round trip.
const BATCH: i64 = 500;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// Deletes the recordings started before `before`; returns how many.
pub async fn sweep(store: &Store, dir: &Path, before: Millis) -> Result<usize> {
    let mut deleted = 0;
    loop {
        let expired = store.expired_recordings(before, BATCH).await?;
        if expired.is_empty() {
            return Ok(deleted);
        }
        for (id, file) in &expired {
            // A name with a path in it was never written by voxbridge.
            if file.contains('/') || file.starts_with('.') {
                tracing::warn!(
                    recording_id = id,
                    file,
                    "recording with a strange file name: record deleted, file left"
                );
            } else {
                match tokio::fs::remove_file(dir.join(file)).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        // Left for the next sweep.
                        tracing::warn!(recording_id = id, file, error = %e, "cannot delete an expired recording");
                        return Ok(deleted);
                    }
                }
            }
            deleted += usize::from(store.recording_deleted(id).await?);
        }
    }
}

/// Sweeps every hour until `stop`; errors are logged and retried next time.
pub async fn run(store: Store, dir: PathBuf, days: u32, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let before = Millis(Millis::now().0.saturating_sub(i64::from(days) * DAY_MS));
        match sweep(&store, &dir, before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, days, "recordings past retention deleted"),
            Err(e) => tracing::warn!(error = %e, "recording retention sweep failed"),
        }
    }
}
