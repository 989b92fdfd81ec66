//! What a call's media reports besides its state: DTMF digits (stored, and
//! published as `dtmf_received`), the bot link's connects and failures
//! (`bot_connected`, `bot_failed`), RTP quality reports (`rtp_stats`) and
//! who answered a call voxbridge placed (`call_answered_by`, kept on the
//! call too).
//! Each is one transaction with its outbox event, so it reaches Kafka,
//! webhooks and `/v1/ws` like every other event; none is dropped on the
//! way (the sink counts each as applied, never as ignored).
//!
//! Every write takes an id chosen by the caller (the media event's id over
//! the Kafka link): a redelivered event changes nothing.

use super::{outbox, vals, Store};
use crate::error::{ControlError, Result};
use crate::time::Millis;
use serde::Serialize;
use utoipa::ToSchema;

/// One DTMF digit the caller pressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Dtmf {
    /// Id.
    pub id: String,
    /// Owner.
    pub customer_id: String,
    /// The call.
    pub call_id: String,
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: String,
    /// When it was stored.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
}

/// A report about a call's bot link or RTP, published as it is.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSignal {
    /// `bot_connected`, `bot_failed` or `rtp_stats`.
    pub event_type: &'static str,
    /// The envelope's resource type (`bot_link`, `rtp_stats`).
    pub resource_type: &'static str,
    /// The report's fields (the call id is added).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Store {
    /// The owner of a call, in `tx`.
    async fn call_owner(tx: &mut dyn super::Tx, call_id: &str) -> Result<String> {
        let rows = tx
            .query("SELECT customer_id FROM calls WHERE id = $1", vals![call_id])
            .await?;
        rows.first()
            .map(|r| r.text(0))
            .unwrap_or(Err(ControlError::NotFound))
    }

    /// Stores a digit of `call_id` with its `dtmf_received` event; `false`
    /// (nothing written) when `id` was stored before. `NotFound` for a call
    /// the store does not know.
    pub async fn add_dtmf_once(&self, id: &str, call_id: &str, digit: char) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let customer_id = Self::call_owner(tx.as_mut(), call_id).await?;
        let d = Dtmf {
            id: id.to_owned(),
            customer_id,
            call_id: call_id.to_owned(),
            digit: digit.to_string(),
            tm_create: Millis::now(),
        };
        let inserted = tx
            .execute(
                "INSERT INTO call_dtmfs (id, customer_id, call_id, digit, tm_create) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO NOTHING",
                vals![&d.id, &d.customer_id, &d.call_id, &d.digit, d.tm_create],
            )
            .await?;
        if inserted == 0 {
            return Ok(false);
        }
        outbox::push(tx.as_mut(), "dtmf_received", &d.customer_id, "dtmf", &d.id, &d).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    /// The digits of a call, oldest first.
    pub async fn list_dtmfs(&self, customer_id: &str, call_id: &str) -> Result<Vec<Dtmf>> {
        let rows = self
            .db
            .read(
                "SELECT id, customer_id, call_id, digit, tm_create FROM call_dtmfs \
                 WHERE customer_id = $1 AND call_id = $2 ORDER BY seq",
                vals![customer_id, call_id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Dtmf {
                    id: r.text(0)?,
                    customer_id: r.text(1)?,
                    call_id: r.text(2)?,
                    digit: r.text(3)?,
                    tm_create: r.millis(4)?,
                })
            })
            .collect()
    }

    /// Publishes a report about `call_id` under event id `event_id`;
    /// `false` when that event id was published before.
    pub async fn publish_call_signal(
        &self,
        event_id: &str,
        call_id: &str,
        signal: CallSignal,
    ) -> Result<bool> {
        self.publish_call_signal_with(event_id, call_id, signal, None)
            .await
    }

    /// Keeps who answered a call voxbridge placed (answering-machine
    /// detection: `human`, `machine`, `not_sure`, and the rule that
    /// decided) on its record, and publishes `signal` (`call_answered_by`)
    /// under `event_id`, in one transaction; `false` when that event id was
    /// published before.
    pub async fn record_answered_by(
        &self,
        event_id: &str,
        call_id: &str,
        answered_by: &str,
        cause: &str,
        signal: CallSignal,
    ) -> Result<bool> {
        let update = (
            "UPDATE calls SET answered_by = $1, amd_cause = $2, tm_update = $3 WHERE id = $4",
            [answered_by, cause],
        );
        self.publish_call_signal_with(event_id, call_id, signal, Some(update))
            .await
    }

    /// [`Store::publish_call_signal`], with the call's own record changed in
    /// the same transaction by `update` (SQL taking the two texts, the time
    /// and the call id as `$1`-`$4`).
    async fn publish_call_signal_with(
        &self,
        event_id: &str,
        call_id: &str,
        signal: CallSignal,
        update: Option<(&str, [&str; 2])>,
    ) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let customer_id = Self::call_owner(tx.as_mut(), call_id).await?;
        let seen = tx
            .query("SELECT 1 FROM outbox WHERE event_id = $1", vals![event_id])
            .await?;
        if !seen.is_empty() {
            return Ok(false);
        }
        if let Some((sql, [first, second])) = update {
            tx.execute(sql, vals![first, second, Millis::now(), call_id])
                .await?;
        }
        let mut fields = signal.fields;
        fields.insert("call_id".into(), call_id.into());
        outbox::push_as(
            tx.as_mut(),
            event_id.to_owned(),
            signal.event_type,
            &customer_id,
            signal.resource_type,
            call_id,
            &fields,
        )
        .await?;
        // The call's own record changed with the signal: its cached row goes.
        let stale = update.map(|_| self.cache.call_key(call_id));
        self.commit_invalidating(tx, stale.as_slice()).await?;
        Ok(true)
    }
}
