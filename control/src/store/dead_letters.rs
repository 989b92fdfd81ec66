//! Parked call events: a media event the store refuses for what it
//! carries (not for an outage) is written here, with the refusal, and the
//! event worker moves on, so one bad event never holds back the ones
//! behind it. Each parking commits with a `call_event_parked` event;
//! admins list, read, retry and drop parked events through the API.
//!
//! The payload is the event's JSON wire form (`voxbridge_contract::event_wire`),
//! in which any control character is escaped, so even the text that made
//! the store refuse the event can be stored here.

use super::{outbox, vals, Row, Store};
use crate::error::{ControlError, Result};
use crate::model::{Page, PageReq};
use crate::time::Millis;
use serde::Serialize;
use utoipa::ToSchema;

/// One parked event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeadLetter {
    /// Id (the event's own id).
    pub id: String,
    /// The call it is about.
    pub call_id: String,
    /// `created`, `answered`, `hungup`, `transcript`, ...
    pub event_type: String,
    /// The event (JSON wire form).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Why the store refused it (last attempt).
    pub error: String,
    /// Attempts so far (1 when parked).
    pub attempts: i64,
    /// When it was parked.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
    /// Last attempt.
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: Millis,
}

const COLS: &str = "seq, id, call_id, event_type, payload, error, attempts, tm_create, tm_update";

fn dead_letter(r: &Row) -> Result<DeadLetter> {
    Ok(DeadLetter {
        id: r.text(1)?,
        call_id: r.text(2)?,
        event_type: r.text(3)?,
        payload: serde_json::from_str(&r.text(4)?).map_err(|e| ControlError::Row(format!("payload: {e}")))?,
        error: r.text(5)?,
        attempts: r.int(6)?,
        tm_create: r.millis(7)?,
        tm_update: r.millis(8)?,
    })
}

/// Text the store can always keep: no NUL, at most 2,000 characters.
fn storable(s: &str) -> String {
    s.chars().filter(|c| *c != '\0').take(2000).collect()
}

impl Store {
    /// Parks an event (or, when `id` is parked already, records one more
    /// failed attempt), with a `call_event_parked` event owned by
    /// `customer_id`.
    pub async fn park_event(
        &self,
        id: &str,
        call_id: &str,
        event_type: &str,
        payload: &str,
        error: &str,
        customer_id: &str,
    ) -> Result<DeadLetter> {
        let now = Millis::now();
        let (call_id, error) = (storable(call_id), storable(error));
        let mut tx = self.db.begin().await?;
        tx.execute(
            "INSERT INTO dead_letters (id, call_id, event_type, payload, error, attempts, tm_create, tm_update) \
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6) \
             ON CONFLICT (id) DO UPDATE SET attempts = dead_letters.attempts + 1, error = excluded.error, \
             tm_update = excluded.tm_update",
            vals![id, &call_id, event_type, payload, &error, now],
        )
        .await?;
        let sql = format!("SELECT {COLS} FROM dead_letters WHERE id = $1");
        let d = tx
            .query(&sql, vals![id])
            .await?
            .first()
            .map(dead_letter)
            .unwrap_or(Err(ControlError::NotFound))?;
        outbox::push(
            tx.as_mut(),
            "call_event_parked",
            customer_id,
            "dead_letter",
            id,
            &d,
        )
        .await?;
        self.commit(tx).await?;
        Ok(d)
    }

    /// Parked events, newest first.
    pub async fn list_dead_letters(&self, page: PageReq) -> Result<Page<DeadLetter>> {
        let sql = format!("SELECT {COLS} FROM dead_letters WHERE seq < $1 ORDER BY seq DESC LIMIT $2");
        self.read_page(&sql, page, dead_letter).await
    }

    /// One parked event.
    pub async fn get_dead_letter(&self, id: &str) -> Result<DeadLetter> {
        let sql = format!("SELECT {COLS} FROM dead_letters WHERE id = $1");
        let rows = self.db.read(&sql, vals![id]).await?;
        rows.first()
            .map(dead_letter)
            .unwrap_or(Err(ControlError::NotFound))
    }

    /// Drops a parked event (after a successful retry, or by an admin).
    pub async fn delete_dead_letter(&self, id: &str) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let n = tx
            .execute("DELETE FROM dead_letters WHERE id = $1", vals![id])
            .await?;
        if n == 0 {
            return Err(ControlError::NotFound);
        }
        self.commit(tx).await
    }

    /// How many events are parked.
    pub async fn count_dead_letters(&self) -> Result<i64> {
        let rows = self.db.read("SELECT COUNT(*) FROM dead_letters", &[]).await?;
        rows.first().map(|r| r.int(0)).unwrap_or(Ok(0))
    }
}
