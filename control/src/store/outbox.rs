//! The transactional outbox: every state change inserts its event here in
//! the same transaction as the change; the relay (`relay/`) reads pending
//! rows in commit order per resource, publishes them and marks them sent.
//!
//! Order per resource: a change locks its resource row before it inserts the
//! event, so for one resource a later `seq` always commits later; the relay
//! reads by `seq` and never skips a row it has not published.

use super::{vals, Store, Tx};
use crate::error::{ControlError, Result};
use crate::time::Millis;
use serde::Serialize;
use voxbridge_proto::envelope::{EventEnvelope, Resource};

/// Every resource type an outbox event can be about. Kafka topics are one
/// per type and are created at start from this list (brokers need not
/// create topics on first use), and the bus feed reads them all back.
pub const RESOURCE_TYPES: &[&str] = &[
    "call",
    "customer",
    "transcript",
    "transcribe",
    "recording",
    "billing_record",
    "webhook_endpoint",
    "campaign",
    "access_key",
    "dtmf",
    "bot_link",
    "rtp_stats",
    "call_transfer",
    "call_speech",
    "call_amd",
    "dead_letter",
];

/// A pending event.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// Position (commit order per resource).
    pub seq: i64,
    /// The event as committed.
    pub event: EventEnvelope,
}

/// Builds the envelope for `resource` (its serialised fields, less `id`)
/// and inserts it in `tx`.
pub(crate) async fn push<T: Serialize>(
    tx: &mut dyn Tx,
    event_type: &str,
    customer_id: &str,
    kind: &str,
    id: &str,
    resource: &T,
) -> Result<EventEnvelope> {
    push_as(tx, super::new_id(), event_type, customer_id, kind, id, resource).await
}

/// [`push`] with the event id chosen by the caller (a media event's own id,
/// so that a redelivered one can be recognised).
pub(crate) async fn push_as<T: Serialize>(
    tx: &mut dyn Tx,
    event_id: String,
    event_type: &str,
    customer_id: &str,
    kind: &str,
    id: &str,
    resource: &T,
) -> Result<EventEnvelope> {
    debug_assert!(
        RESOURCE_TYPES.contains(&kind),
        "resource type {kind:?} is not in outbox::RESOURCE_TYPES (its Kafka topic would never be created)"
    );
    let mut fields = match serde_json::to_value(resource) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => {
            return Err(ControlError::Row(format!(
                "{kind} does not serialise to an object"
            )))
        }
    };
    fields.remove("id");
    let now = Millis::now();
    let event = EventEnvelope {
        event_id,
        event_type: event_type.to_owned(),
        timestamp: now.rfc3339(),
        customer_id: customer_id.to_owned(),
        resource: Resource {
            id: id.to_owned(),
            kind: kind.to_owned(),
            fields,
        },
    };
    tx.execute(
        "INSERT INTO outbox (event_id, event_type, customer_id, resource_type, resource_id, payload, tm_create) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vals![&event.event_id, event_type, customer_id, kind, id, event.to_json(), now],
    )
    .await?;
    // One delivery per subscribed, enabled webhook endpoint, in the same
    // transaction, so no committed event can miss its webhooks.
    tx.execute(
        "INSERT INTO webhook_deliveries (id, endpoint_id, customer_id, event_id, event_type, resource_id, payload, \
         status, attempts, next_attempt_at, lease_until, tm_create, tm_update) \
         SELECT e.id || '-' || $1, e.id, e.customer_id, $1, $2, $3, $4, 'pending', 0, $5, 0, $5, $5 \
         FROM webhook_endpoints e WHERE e.customer_id = $6 AND e.enabled = 1 \
         AND (e.event_types = '*' OR e.event_types LIKE $7 ESCAPE '\\')",
        vals![
            &event.event_id,
            event_type,
            id,
            event.to_json(),
            now,
            customer_id,
            crate::webhooks::type_pattern(event_type)
        ],
    )
    .await?;
    Ok(event)
}

fn outbox_row(r: &super::Row) -> Result<OutboxRow> {
    let payload = r.text(1)?;
    Ok(OutboxRow {
        seq: r.int(0)?,
        event: EventEnvelope::parse(&payload)
            .map_err(|e| ControlError::Row(format!("outbox payload: {e}")))?,
    })
}

impl Store {
    /// Up to `limit` unsent events, oldest first.
    pub async fn outbox_pending(&self, limit: u32) -> Result<Vec<OutboxRow>> {
        let rows = self
            .db
            .read(
                "SELECT seq, payload FROM outbox WHERE tm_sent IS NULL ORDER BY seq LIMIT $1",
                vals![i64::from(limit)],
            )
            .await?;
        rows.iter().map(outbox_row).collect()
    }

    /// Every event after position `after`, sent or not, oldest first (for
    /// audits, replays and tests).
    pub async fn outbox_rows(&self, after: i64, limit: u32) -> Result<Vec<OutboxRow>> {
        let rows = self
            .db
            .read(
                "SELECT seq, payload FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
                vals![after, i64::from(limit)],
            )
            .await?;
        rows.iter().map(outbox_row).collect()
    }

    /// Marks events published, in one statement (the relay's hot path).
    pub async fn outbox_mark_sent(&self, seqs: &[i64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        // The positions are integers read from the outbox itself, so they
        // are written into the statement (one unprepared statement instead
        // of a prepared one per batch size, or one round trip per row).
        let list: Vec<String> = seqs.iter().map(i64::to_string).collect();
        let sql = format!(
            "UPDATE outbox SET tm_sent = {} WHERE seq IN ({})",
            Millis::now().0,
            list.join(",")
        );
        let mut tx = self.db.begin().await?;
        tx.batch(&sql).await?;
        tx.commit().await
    }

    /// Number of unsent events (for metrics and tests).
    pub async fn outbox_backlog(&self) -> Result<i64> {
        let rows = self
            .db
            .read("SELECT COUNT(*) FROM outbox WHERE tm_sent IS NULL", &[])
            .await?;
        rows.first().map(|r| r.int(0)).unwrap_or(Ok(0))
    }
}
