//! Call recordings: made by the media plane's `recording_started`, paused
//! and resumed, finished by `recording_finished` (each committed with its
//! outbox event, once however often the event arrives), and deleted by
//! retention.

use super::{outbox, vals, Row, Store};
use crate::error::{ControlError, Result};
use crate::model::{Page, PageReq, Recording};
use crate::time::Millis;

const RECORDING_COLS: &str =
    "seq, id, customer_id, call_id, status, end_reason, rate, duration_ms, bytes, tm_create, tm_end, file";

fn recording(r: &Row) -> Result<Recording> {
    Ok(Recording {
        id: r.text(1)?,
        customer_id: r.text(2)?,
        call_id: r.text(3)?,
        status: r.text(4)?,
        end_reason: r.opt_text(5)?,
        rate: r.int(6)?,
        duration_ms: r.opt_int(7)?,
        bytes: r.opt_int(8)?,
        tm_create: r.millis(9)?,
        tm_end: r.opt_millis(10)?,
    })
}

/// How a recording ended, as the media plane reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingEnded<'a> {
    /// Audio in the file, ms.
    pub duration_ms: u64,
    /// Size of the file.
    pub bytes: u64,
    /// `stopped`, `call_ended`, `disk_full` or `failed`.
    pub reason: &'a str,
    /// When.
    pub at: Millis,
}

impl Store {
    /// Recording `id` of `call_id` started, written to `file` at `rate` Hz:
    /// stored as `recording` with its `recording_started` event. A second
    /// call with the same id changes nothing and returns the stored
    /// record and `false`.
    pub async fn start_recording_once(
        &self,
        id: &str,
        call_id: &str,
        file: &str,
        rate: u32,
        at: Millis,
    ) -> Result<(Recording, bool)> {
        let mut tx = self.db.begin().await?;
        let rows = tx
            .query("SELECT customer_id FROM calls WHERE id = $1", vals![call_id])
            .await?;
        let customer_id = rows
            .first()
            .map(|r| r.text(0))
            .unwrap_or(Err(ControlError::NotFound))?;
        let r = Recording {
            id: id.to_owned(),
            customer_id,
            call_id: call_id.to_owned(),
            status: "recording".into(),
            end_reason: None,
            rate: i64::from(rate),
            duration_ms: None,
            bytes: None,
            tm_create: at,
            tm_end: None,
        };
        let inserted = tx
            .execute(
                "INSERT INTO recordings (id, customer_id, call_id, status, file, rate, tm_create) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                vals![
                    &r.id,
                    &r.customer_id,
                    &r.call_id,
                    &r.status,
                    file,
                    r.rate,
                    r.tm_create
                ],
            )
            .await?;
        if inserted == 0 {
            drop(tx);
            return Ok((self.recording_by_id(id).await?, false));
        }
        outbox::push(
            tx.as_mut(),
            "recording_started",
            &r.customer_id,
            "recording",
            &r.id,
            &r,
        )
        .await?;
        self.commit(tx).await?;
        Ok((r, true))
    }

    /// Recording `id` paused or resumed: its status with a
    /// `recording_paused` or `recording_resumed` event; `false` when it
    /// already was so (or has ended, or is unknown).
    pub async fn pause_recording(&self, id: &str, paused: bool) -> Result<bool> {
        let (from, to, event) = if paused {
            ("recording", "paused", "recording_paused")
        } else {
            ("paused", "recording", "recording_resumed")
        };
        self.change_recording(id, "status = $2", from, vals![id, to], event)
            .await
    }

    /// Recording `id` ended: `completed` (or `failed` after a write error)
    /// with its `recording_finished` event; `false` when it already had.
    pub async fn finish_recording_once(&self, id: &str, end: RecordingEnded<'_>) -> Result<bool> {
        let status = match end.reason {
            "disk_full" | "failed" => "failed",
            _ => "completed",
        };
        let duration = i64::try_from(end.duration_ms).unwrap_or(i64::MAX);
        let bytes = i64::try_from(end.bytes).unwrap_or(i64::MAX);
        self.change_recording(
            id,
            "status = $2, end_reason = $3, duration_ms = $4, bytes = $5, tm_end = $6",
            "recording', 'paused",
            vals![id, status, end.reason, duration, bytes, end.at],
            "recording_finished",
        )
        .await
    }

    /// Updates recording `id` (`set`, `$1` is the id) when its status is
    /// one of `from` (quoted list inside `IN ('...')`), with `event`.
    async fn change_recording(
        &self,
        id: &str,
        set: &str,
        from: &str,
        values: &[super::Val],
        event: &str,
    ) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let sql = format!("UPDATE recordings SET {set} WHERE id = $1 AND status IN ('{from}')");
        if tx.execute(&sql, values).await? == 0 {
            return Ok(false);
        }
        let sql = format!("SELECT {RECORDING_COLS} FROM recordings WHERE id = $1");
        let rows = tx.query(&sql, vals![id]).await?;
        let r = rows
            .first()
            .map(recording)
            .unwrap_or(Err(ControlError::NotFound))?;
        outbox::push(tx.as_mut(), event, &r.customer_id, "recording", &r.id, &r).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    /// The recording running (or paused) on a tenant's call, if any.
    pub async fn running_recording(&self, customer_id: &str, call_id: &str) -> Result<Option<Recording>> {
        let sql = format!(
            "SELECT {RECORDING_COLS} FROM recordings WHERE customer_id = $1 AND call_id = $2 \
             AND status IN ('recording', 'paused') ORDER BY seq DESC LIMIT 1"
        );
        let rows = self.db.read(&sql, vals![customer_id, call_id]).await?;
        rows.first().map(recording).transpose()
    }

    /// Recording `id`, whoever owns it.
    pub async fn recording_by_id(&self, id: &str) -> Result<Recording> {
        let sql = format!("SELECT {RECORDING_COLS} FROM recordings WHERE id = $1");
        let rows = self.db.read(&sql, vals![id]).await?;
        rows.first().map(recording).unwrap_or(Err(ControlError::NotFound))
    }

    /// A tenant's recordings, newest first, optionally of one call.
    pub async fn list_recordings(
        &self,
        customer_id: &str,
        call_id: Option<&str>,
        page: PageReq,
    ) -> Result<Page<Recording>> {
        let filter = call_id.map(|c| ("call_id", c));
        let rows = self
            .tenant_rows(RECORDING_COLS, "recordings", customer_id, filter, page)
            .await?;
        super::page(rows, page, recording)
    }

    /// One of a tenant's recordings and its file's name.
    pub async fn get_recording(&self, customer_id: &str, id: &str) -> Result<(Recording, String)> {
        let sql = format!("SELECT {RECORDING_COLS} FROM recordings WHERE customer_id = $1 AND id = $2");
        let rows = self.db.read(&sql, vals![customer_id, id]).await?;
        let row = rows.first().ok_or(ControlError::NotFound)?;
        Ok((recording(row)?, row.text(11)?))
    }

    /// Ended recordings started before `before` and not deleted yet, oldest
    /// first, at most `limit`: (id, file).
    pub async fn expired_recordings(&self, before: Millis, limit: i64) -> Result<Vec<(String, String)>> {
        let rows = self
            .db
            .read(
                "SELECT id, file FROM recordings WHERE tm_create < $1 AND status IN ('completed', 'failed') \
                 ORDER BY tm_create LIMIT $2",
                vals![before, limit],
            )
            .await?;
        rows.iter().map(|r| Ok((r.text(0)?, r.text(1)?))).collect()
    }

    /// Recording `id`'s file is gone: `deleted` with a `recording_deleted`
    /// event; `false` when it already was.
    pub async fn recording_deleted(&self, id: &str) -> Result<bool> {
        self.change_recording(
            id,
            "status = $2",
            "completed', 'failed",
            vals![id, "deleted"],
            "recording_deleted",
        )
        .await
    }
}
