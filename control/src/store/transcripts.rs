//! Transcribes and their transcript segments. A speech recognizer's
//! transcribe (source `recognizer`) is made by its `transcribe_started`
//! and closed by `transcribe_completed`, each committed with its event;
//! a call has one `bot` transcribe for what its bot reports
//! (TranscriptionFrames/TextFrames), made on the first segment and
//! completed with the call. Each segment commits with its
//! `transcript_created` event.

use super::{outbox, vals, Row, Store};
use crate::error::{ControlError, Result};
use crate::model::{Page, PageReq, Transcribe, Transcript};
use crate::time::Millis;

const TRANSCRIBE_COLS: &str =
    "seq, id, customer_id, call_id, source, status, language, directions, tm_create, tm_end";
const TRANSCRIPT_COLS: &str =
    "seq, id, customer_id, transcribe_id, call_id, direction, message, tm_transcript, tm_create";

fn transcribe(r: &Row) -> Result<Transcribe> {
    Ok(Transcribe {
        id: r.text(1)?,
        customer_id: r.text(2)?,
        call_id: r.text(3)?,
        source: r.text(4)?,
        status: r.text(5)?,
        language: r.opt_text(6)?,
        directions: r.text(7)?,
        tm_create: r.millis(8)?,
        tm_end: r.opt_millis(9)?,
    })
}

fn transcript(r: &Row) -> Result<Transcript> {
    Ok(Transcript {
        id: r.text(1)?,
        customer_id: r.text(2)?,
        transcribe_id: r.text(3)?,
        call_id: r.text(4)?,
        direction: r.text(5)?,
        message: r.text(6)?,
        tm_transcript: r.int(7)?,
        tm_create: r.millis(8)?,
    })
}

/// When a segment's words were said. Stored as `tm_transcript`: ms since
/// the call was answered (since it was created while it is not), never
/// below 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentTime {
    /// When its report arrived (a bot's transcript).
    Arrived(Millis),
    /// Milliseconds since the call was created (a speech recognizer's
    /// segment start, whenever it arrives).
    InCall(i64),
}

impl SegmentTime {
    /// `tm_transcript` for a call created at `created` and answered at
    /// `answered`.
    fn since_answer(self, created: Millis, answered: Option<Millis>) -> i64 {
        let origin = answered.unwrap_or(created);
        let ms = match self {
            SegmentTime::Arrived(at) => at.0.saturating_sub(origin.0),
            SegmentTime::InCall(ms) => ms.saturating_sub(origin.0.saturating_sub(created.0)),
        };
        ms.max(0)
    }
}

impl Store {
    /// Adds a segment to a call's transcribe (made on the first segment).
    /// `direction` is `in` (caller) or `out` (bot).
    pub async fn add_transcript(
        &self,
        call_id: &str,
        direction: &str,
        message: &str,
        at: Millis,
    ) -> Result<Transcript> {
        let (t, _) = self
            .add_transcript_once(
                &super::new_id(),
                call_id,
                direction,
                message,
                SegmentTime::Arrived(at),
            )
            .await?;
        Ok(t)
    }

    /// [`Store::add_transcript`] with the segment's id chosen by the caller:
    /// a second call with the same id changes nothing and returns the stored
    /// segment and `false` (a redelivered media event).
    pub async fn add_transcript_once(
        &self,
        id: &str,
        call_id: &str,
        direction: &str,
        message: &str,
        when: SegmentTime,
    ) -> Result<(Transcript, bool)> {
        self.add_segment_once(id, call_id, None, direction, message, when)
            .await
    }

    /// A speech recognizer's segment of transcribe `transcribe_id`, heard
    /// `offset_ms` after the call was created; once per `id` as
    /// [`Store::add_transcript_once`].
    pub async fn add_recognized_once(
        &self,
        id: &str,
        call_id: &str,
        transcribe_id: &str,
        direction: &str,
        message: &str,
        offset_ms: i64,
    ) -> Result<(Transcript, bool)> {
        let when = SegmentTime::InCall(offset_ms);
        self.add_segment_once(id, call_id, Some(transcribe_id), direction, message, when)
            .await
    }

    async fn add_segment_once(
        &self,
        id: &str,
        call_id: &str,
        recognizer: Option<&str>,
        direction: &str,
        message: &str,
        when: SegmentTime,
    ) -> Result<(Transcript, bool)> {
        let mut tx = self.db.begin().await?;
        let rows = tx
            .query(
                "SELECT customer_id, tm_create, tm_progressing FROM calls WHERE id = $1",
                vals![call_id],
            )
            .await?;
        let (customer_id, created, answered) = match rows.first() {
            Some(r) => (r.text(0)?, r.millis(1)?, r.opt_millis(2)?),
            None => return Err(ControlError::NotFound),
        };
        let now = Millis::now();
        let rows = match recognizer {
            // Made by its `transcribe_started`, which comes first; made here
            // only if that was lost.
            Some(transcribe_id) => {
                tx.execute(
                    "INSERT INTO transcribes (id, customer_id, call_id, source, status, directions, tm_create) \
                     VALUES ($1, $2, $3, 'recognizer', 'running', $4, $5) ON CONFLICT (id) DO NOTHING",
                    vals![transcribe_id, &customer_id, call_id, direction, now],
                )
                .await?;
                tx.query(
                    "SELECT id FROM transcribes WHERE id = $1 AND call_id = $2",
                    vals![transcribe_id, call_id],
                )
                .await?
            }
            None => {
                tx.execute(
                    "INSERT INTO transcribes (id, customer_id, call_id, source, status, directions, tm_create) \
                     VALUES ($1, $2, $3, 'bot', 'running', 'both', $4) \
                     ON CONFLICT (call_id) WHERE source = 'bot' DO NOTHING",
                    vals![super::new_id(), &customer_id, call_id, now],
                )
                .await?;
                tx.query(
                    "SELECT id FROM transcribes WHERE call_id = $1 AND source = 'bot'",
                    vals![call_id],
                )
                .await?
            }
        };
        let transcribe_id = rows
            .first()
            .map(|r| r.text(0))
            .unwrap_or(Err(ControlError::NotFound))?;
        let t = Transcript {
            id: id.to_owned(),
            customer_id,
            transcribe_id,
            call_id: call_id.to_owned(),
            direction: direction.to_owned(),
            message: message.to_owned(),
            tm_transcript: when.since_answer(created, answered),
            tm_create: now,
        };
        let inserted = tx.execute(
            "INSERT INTO transcripts (id, customer_id, transcribe_id, call_id, direction, message, tm_transcript, tm_create) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
            vals![&t.id, &t.customer_id, &t.transcribe_id, &t.call_id, &t.direction, &t.message, t.tm_transcript, t.tm_create],
        )
        .await?;
        if inserted == 0 {
            drop(tx);
            let sql = format!("SELECT {TRANSCRIPT_COLS} FROM transcripts WHERE id = $1");
            let rows = self.db.read(&sql, vals![id]).await?;
            let stored = rows
                .first()
                .map(transcript)
                .unwrap_or(Err(ControlError::NotFound))?;
            return Ok((stored, false));
        }
        outbox::push(
            tx.as_mut(),
            "transcript_created",
            &t.customer_id,
            "transcript",
            &t.id,
            &t,
        )
        .await?;
        self.commit(tx).await?;
        Ok((t, true))
    }

    /// A speech recognizer's transcribe `id` of `call_id` started: stored as
    /// `running` with its `transcribe_started` event. A second call with
    /// the same id (the API and the media plane both report a start, or an
    /// event came twice) changes nothing and returns the stored record and
    /// `false`.
    pub async fn start_transcribe_once(
        &self,
        id: &str,
        call_id: &str,
        language: &str,
        directions: &str,
        at: Millis,
    ) -> Result<(Transcribe, bool)> {
        let mut tx = self.db.begin().await?;
        let rows = tx
            .query("SELECT customer_id FROM calls WHERE id = $1", vals![call_id])
            .await?;
        let customer_id = rows
            .first()
            .map(|r| r.text(0))
            .unwrap_or(Err(ControlError::NotFound))?;
        let t = Transcribe {
            id: id.to_owned(),
            customer_id,
            call_id: call_id.to_owned(),
            source: "recognizer".into(),
            status: "running".into(),
            language: Some(language.to_owned()),
            directions: directions.to_owned(),
            tm_create: at,
            tm_end: None,
        };
        let inserted = tx
            .execute(
                "INSERT INTO transcribes (id, customer_id, call_id, source, status, language, directions, tm_create) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                vals![&t.id, &t.customer_id, &t.call_id, &t.source, &t.status, language, &t.directions, t.tm_create],
            )
            .await?;
        if inserted == 0 {
            drop(tx);
            return Ok((self.transcribe_by_id(id).await?, false));
        }
        outbox::push(
            tx.as_mut(),
            "transcribe_started",
            &t.customer_id,
            "transcribe",
            &t.id,
            &t,
        )
        .await?;
        self.commit(tx).await?;
        Ok((t, true))
    }

    /// Transcribe `id` ended: `completed` with its `transcribe_completed`
    /// event; one already completed is returned as it is with `false`.
    pub async fn complete_transcribe_once(&self, id: &str, at: Millis) -> Result<(Transcribe, bool)> {
        let mut tx = self.db.begin().await?;
        let changed = tx
            .execute(
                "UPDATE transcribes SET status = 'completed', tm_end = $2 WHERE id = $1 AND status = 'running'",
                vals![id, at],
            )
            .await?;
        if changed == 0 {
            drop(tx);
            return Ok((self.transcribe_by_id(id).await?, false));
        }
        let sql = format!("SELECT {TRANSCRIBE_COLS} FROM transcribes WHERE id = $1");
        let rows = tx.query(&sql, vals![id]).await?;
        let t = rows
            .first()
            .map(transcribe)
            .unwrap_or(Err(ControlError::NotFound))?;
        outbox::push(
            tx.as_mut(),
            "transcribe_completed",
            &t.customer_id,
            "transcribe",
            &t.id,
            &t,
        )
        .await?;
        self.commit(tx).await?;
        Ok((t, true))
    }

    /// The call ended: its bot transcribe (if any) is `completed` (no
    /// event: a bot's transcribe has no lifecycle events).
    pub async fn complete_bot_transcribe(&self, call_id: &str, at: Millis) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let changed = tx
            .execute(
                "UPDATE transcribes SET status = 'completed', tm_end = $2 \
                 WHERE call_id = $1 AND source = 'bot' AND status = 'running'",
                vals![call_id, at],
            )
            .await?;
        if changed > 0 {
            self.commit(tx).await?;
        }
        Ok(())
    }

    /// The speech recognizer's transcribe running on a tenant's call, if any.
    pub async fn running_transcribe(&self, customer_id: &str, call_id: &str) -> Result<Option<Transcribe>> {
        let sql = format!(
            "SELECT {TRANSCRIBE_COLS} FROM transcribes WHERE customer_id = $1 AND call_id = $2 \
             AND source = 'recognizer' AND status = 'running' ORDER BY seq DESC LIMIT 1"
        );
        let rows = self.db.read(&sql, vals![customer_id, call_id]).await?;
        rows.first().map(transcribe).transpose()
    }

    async fn transcribe_by_id(&self, id: &str) -> Result<Transcribe> {
        let sql = format!("SELECT {TRANSCRIBE_COLS} FROM transcribes WHERE id = $1");
        let rows = self.db.read(&sql, vals![id]).await?;
        rows.first()
            .map(transcribe)
            .unwrap_or(Err(ControlError::NotFound))
    }

    /// A tenant's transcribes, newest first, optionally of one call.
    pub async fn list_transcribes(
        &self,
        customer_id: &str,
        call_id: Option<&str>,
        page: PageReq,
    ) -> Result<Page<Transcribe>> {
        let filter = call_id.map(|c| ("call_id", c));
        let rows = self
            .tenant_rows(TRANSCRIBE_COLS, "transcribes", customer_id, filter, page)
            .await?;
        super::page(rows, page, transcribe)
    }

    /// One of a tenant's transcribes.
    pub async fn get_transcribe(&self, customer_id: &str, id: &str) -> Result<Transcribe> {
        self.tenant_row(TRANSCRIBE_COLS, "transcribes", customer_id, id, transcribe)
            .await
    }

    /// A tenant's transcript segments, newest first, optionally of one
    /// transcribe.
    pub async fn list_transcripts(
        &self,
        customer_id: &str,
        transcribe_id: Option<&str>,
        page: PageReq,
    ) -> Result<Page<Transcript>> {
        let filter = transcribe_id.map(|t| ("transcribe_id", t));
        let rows = self
            .tenant_rows(TRANSCRIPT_COLS, "transcripts", customer_id, filter, page)
            .await?;
        super::page(rows, page, transcript)
    }

    /// One of a tenant's transcript segments.
    pub async fn get_transcript(&self, customer_id: &str, id: &str) -> Result<Transcript> {
        self.tenant_row(TRANSCRIPT_COLS, "transcripts", customer_id, id, transcript)
            .await
    }
}
