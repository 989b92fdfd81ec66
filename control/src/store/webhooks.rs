//! Webhook endpoints, their deliveries and each delivery's attempts (see
//! [`crate::webhooks`] for the rules). Endpoint changes are audited;
//! delivery rows are written by the outbox (`outbox.rs`) and moved along by
//! the worker through [`Store::claim_deliveries`] and
//! [`Store::finish_attempts`].

use super::audit::{self, Audit};
use super::{outbox, vals, Dialect, Row, Store};
use crate::error::{ControlError, Result};
use crate::model::{Actor, Page, PageReq};
use crate::time::Millis;
use crate::webhooks::{load_types, sign, store_types};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A webhook endpoint (its secret is shown only when made or rotated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    /// Endpoint id.
    pub id: String,
    /// Owner.
    pub customer_id: String,
    /// Where events are POSTed.
    pub url: String,
    /// Event types it takes (`*` for all).
    pub event_types: Vec<String>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Most deliveries in flight at once.
    pub max_concurrency: i64,
    /// Request timeout, ms.
    pub timeout_ms: i64,
    /// Why it was disabled, when the system disabled it.
    pub disabled_reason: Option<String>,
    /// Until when the previous secret still signs too, RFC 3339.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_secret_until: Option<Millis>,
    /// Created, RFC 3339.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
    /// Last change, RFC 3339.
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: Millis,
}

/// An endpoint's settings (create and replace).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// `http` or `https` URL of the shape the pattern gives (lower-case host
    /// name or IPv4 address, optional port, path and query); internal
    /// addresses are refused (403 `forbidden_destination`).
    #[schema(
        max_length = 2048,
        pattern = "^https?://(([a-z0-9-]+\\.)*[a-z][a-z0-9-]*|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[A-Za-z0-9._~/%-]*)?(\\?[A-Za-z0-9._~=&%-]*)?$"
    )]
    pub url: String,
    /// Event types (`*` or e.g. `call_hungup`); all when empty or absent.
    #[serde(default)]
    #[schema(schema_with = event_types_schema)]
    pub event_types: Vec<String>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// 1-16, default 4.
    #[serde(default, deserialize_with = "crate::model::lenient_opt_int")]
    #[schema(minimum = 1, maximum = 16)]
    pub max_concurrency: Option<i64>,
    /// 1000-60000 ms, default 10000.
    #[serde(default, deserialize_with = "crate::model::lenient_opt_int")]
    #[schema(minimum = 1000, maximum = 60000)]
    pub timeout_ms: Option<i64>,
}

/// `event_types` in the OpenAPI document: at most 50 of `*` or lower-case
/// names (what `webhooks::validate_types` accepts).
fn event_types_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^(\\*|[a-z_]{1,64})$")),
        )
        .max_items(Some(50))
        .build()
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WebhookDelivery {
    /// Delivery id.
    pub id: String,
    /// Endpoint.
    pub endpoint_id: String,
    /// The event.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The resource it is about (deliveries of one resource go in order).
    pub resource_id: String,
    /// `pending`, `delivered` or `failed` (gave up).
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// Next attempt (when pending), RFC 3339.
    #[schema(value_type = String, format = DateTime)]
    pub next_attempt_at: Millis,
    /// Last HTTP status.
    pub last_status_code: Option<i64>,
    /// Last error (connection, timeout, refused address).
    pub last_error: Option<String>,
    /// Last attempt's latency, ms.
    pub last_latency_ms: Option<i64>,
    /// Created, RFC 3339.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WebhookAttempt {
    /// Attempt id.
    pub id: String,
    /// Delivery.
    pub delivery_id: String,
    /// 1 for the first.
    pub attempt: i64,
    /// HTTP status, if a response came.
    pub status_code: Option<i64>,
    /// Time to the response or the error, ms.
    pub latency_ms: i64,
    /// What went wrong.
    pub error: Option<String>,
    /// When, RFC 3339.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
}

/// A delivery the worker is to make now.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Delivery id.
    pub id: String,
    /// Endpoint id.
    pub endpoint_id: String,
    /// Owner.
    pub customer_id: String,
    /// The event (Standard Webhooks message id).
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The envelope JSON.
    pub payload: String,
    /// Attempts before this one.
    pub attempts: i64,
    /// First attempt, if any.
    pub first_attempt_at: Option<Millis>,
    /// Endpoint URL.
    pub url: String,
    /// Secrets to sign with (current first).
    pub secrets: Vec<String>,
    /// Endpoint's request timeout, ms.
    pub timeout_ms: i64,
    /// Endpoint's concurrency limit.
    pub max_concurrency: i64,
}

/// An attempt to record: the delivery, when the attempt started, and how
/// it ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The delivery as claimed.
    pub claimed: Claimed,
    /// When the attempt started.
    pub started: Millis,
    /// How it ended.
    pub outcome: Outcome,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// HTTP status, if a response came.
    pub status_code: Option<u16>,
    /// Time taken, ms.
    pub latency_ms: i64,
    /// Error text (no response, or a non-2xx status).
    pub error: Option<String>,
    /// Retry in this many ms, or give up (`None`) — for failures.
    pub retry_in_ms: Option<i64>,
}

const ENDPOINT_COLS: &str = "seq, id, customer_id, url, event_types, enabled, max_concurrency, timeout_ms, \
     disabled_reason, previous_secret_until, tm_create, tm_update";
const DELIVERY_COLS: &str = "seq, id, endpoint_id, event_id, event_type, resource_id, status, attempts, \
     next_attempt_at, last_status_code, last_error, last_latency_ms, tm_create";
const ATTEMPT_COLS: &str = "seq, id, delivery_id, attempt, status_code, latency_ms, error, tm_create";

fn endpoint(r: &Row) -> Result<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: r.text(1)?,
        customer_id: r.text(2)?,
        url: r.text(3)?,
        event_types: load_types(&r.text(4)?),
        enabled: r.int(5)? != 0,
        max_concurrency: r.int(6)?,
        timeout_ms: r.int(7)?,
        disabled_reason: r.opt_text(8)?,
        previous_secret_until: r.opt_millis(9)?,
        tm_create: r.millis(10)?,
        tm_update: r.millis(11)?,
    })
}

fn delivery(r: &Row) -> Result<WebhookDelivery> {
    Ok(WebhookDelivery {
        id: r.text(1)?,
        endpoint_id: r.text(2)?,
        event_id: r.text(3)?,
        event_type: r.text(4)?,
        resource_id: r.text(5)?,
        status: r.text(6)?,
        attempts: r.int(7)?,
        next_attempt_at: r.millis(8)?,
        last_status_code: r.opt_int(9)?,
        last_error: r.opt_text(10)?,
        last_latency_ms: r.opt_int(11)?,
        tm_create: r.millis(12)?,
    })
}

fn attempt(r: &Row) -> Result<WebhookAttempt> {
    Ok(WebhookAttempt {
        id: r.text(1)?,
        delivery_id: r.text(2)?,
        attempt: r.int(3)?,
        status_code: r.opt_int(4)?,
        latency_ms: r.int(5)?,
        error: r.opt_text(6)?,
        tm_create: r.millis(7)?,
    })
}

/// The `webhook_endpoint_disabled` event's resource.
#[derive(Serialize)]
struct Disabled<'a> {
    url: &'a str,
    reason: &'a str,
    delivery_id: &'a str,
}

impl Store {
    async fn endpoint_locked(
        &self,
        tx: &mut dyn super::Tx,
        customer_id: &str,
        id: &str,
    ) -> Result<WebhookEndpoint> {
        let sql = format!(
            "SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE customer_id = $1 AND id = $2{}",
            self.dialect().for_update()
        );
        tx.query(&sql, vals![customer_id, id])
            .await?
            .first()
            .map(endpoint)
            .unwrap_or(Err(ControlError::NotFound))
    }

    /// Registers an endpoint (`spec` already checked by the caller); returns
    /// it and its secret, shown this once.
    pub async fn create_webhook(
        &self,
        actor: &Actor,
        customer_id: &str,
        spec: &EndpointSpec,
    ) -> Result<(WebhookEndpoint, String)> {
        let id = super::new_id();
        let secret = sign::new_secret();
        let now = Millis::now();
        let mut tx = self.db.begin().await?;
        tx.execute(
            "INSERT INTO webhook_endpoints (id, customer_id, url, event_types, enabled, secret, max_concurrency, \
             timeout_ms, tm_create, tm_update) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            vals![
                &id,
                customer_id,
                &spec.url,
                store_types(&spec.event_types),
                i64::from(spec.enabled.unwrap_or(true)),
                &secret,
                spec.max_concurrency.unwrap_or(4),
                spec.timeout_ms.unwrap_or(10_000),
                now
            ],
        )
        .await?;
        let ep = self.endpoint_locked(tx.as_mut(), customer_id, &id).await?;
        audit::write::<(), _>(
            tx.as_mut(),
            Audit {
                customer_id,
                actor,
                action: "webhook.create",
                resource_type: "webhook_endpoint",
                resource_id: &id,
                before: None,
                after: Some(&ep),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok((ep, secret))
    }

    /// Replaces an endpoint's settings. Enabling it clears the reason the
    /// system disabled it and lets its pending deliveries go.
    pub async fn update_webhook(
        &self,
        actor: &Actor,
        customer_id: &str,
        id: &str,
        spec: &EndpointSpec,
    ) -> Result<WebhookEndpoint> {
        let mut tx = self.db.begin().await?;
        let before = self.endpoint_locked(tx.as_mut(), customer_id, id).await?;
        let enabled = spec.enabled.unwrap_or(true);
        tx.execute(
            "UPDATE webhook_endpoints SET url = $1, event_types = $2, enabled = $3, max_concurrency = $4, \
             timeout_ms = $5, disabled_reason = $6, tm_update = $7 WHERE customer_id = $8 AND id = $9",
            vals![
                &spec.url,
                store_types(&spec.event_types),
                i64::from(enabled),
                spec.max_concurrency.unwrap_or(4),
                spec.timeout_ms.unwrap_or(10_000),
                if enabled {
                    None
                } else {
                    before.disabled_reason.clone()
                },
                Millis::now(),
                customer_id,
                id
            ],
        )
        .await?;
        let after = self.endpoint_locked(tx.as_mut(), customer_id, id).await?;
        audit::write(
            tx.as_mut(),
            Audit {
                customer_id,
                actor,
                action: "webhook.update",
                resource_type: "webhook_endpoint",
                resource_id: id,
                before: Some(&before),
                after: Some(&after),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(after)
    }

    /// Deletes an endpoint and its pending deliveries (delivered and failed
    /// ones stay, as history).
    pub async fn delete_webhook(&self, actor: &Actor, customer_id: &str, id: &str) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let before = self.endpoint_locked(tx.as_mut(), customer_id, id).await?;
        tx.execute(
            "DELETE FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'",
            vals![id],
        )
        .await?;
        tx.execute(
            "DELETE FROM webhook_endpoints WHERE customer_id = $1 AND id = $2",
            vals![customer_id, id],
        )
        .await?;
        audit::write::<_, ()>(
            tx.as_mut(),
            Audit {
                customer_id,
                actor,
                action: "webhook.delete",
                resource_type: "webhook_endpoint",
                resource_id: id,
                before: Some(&before),
                after: None,
            },
        )
        .await?;
        self.commit(tx).await
    }

    /// A new secret; the old one keeps signing (alongside) for `overlap_ms`.
    pub async fn rotate_webhook_secret(
        &self,
        actor: &Actor,
        customer_id: &str,
        id: &str,
        overlap_ms: i64,
    ) -> Result<(WebhookEndpoint, String)> {
        let mut tx = self.db.begin().await?;
        let before = self.endpoint_locked(tx.as_mut(), customer_id, id).await?;
        let secret = sign::new_secret();
        let now = Millis::now();
        tx.execute(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = $1, secret = $2, \
             tm_update = $3 WHERE customer_id = $4 AND id = $5",
            vals![Millis(now.0 + overlap_ms.max(0)), &secret, now, customer_id, id],
        )
        .await?;
        let after = self.endpoint_locked(tx.as_mut(), customer_id, id).await?;
        audit::write(
            tx.as_mut(),
            Audit {
                customer_id,
                actor,
                action: "webhook.rotate_secret",
                resource_type: "webhook_endpoint",
                resource_id: id,
                before: Some(&before),
                after: Some(&after),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok((after, secret))
    }

    /// A tenant's endpoints, newest first.
    pub async fn list_webhooks(&self, customer_id: &str, page: PageReq) -> Result<Page<WebhookEndpoint>> {
        let rows = self
            .tenant_rows(ENDPOINT_COLS, "webhook_endpoints", customer_id, None, page)
            .await?;
        super::page(rows, page, endpoint)
    }

    /// One of a tenant's endpoints.
    pub async fn get_webhook(&self, customer_id: &str, id: &str) -> Result<WebhookEndpoint> {
        self.tenant_row(ENDPOINT_COLS, "webhook_endpoints", customer_id, id, endpoint)
            .await
    }

    /// A tenant's deliveries to one endpoint, newest first.
    pub async fn list_deliveries(
        &self,
        customer_id: &str,
        endpoint_id: &str,
        page: PageReq,
    ) -> Result<Page<WebhookDelivery>> {
        let rows = self
            .tenant_rows(
                DELIVERY_COLS,
                "webhook_deliveries",
                customer_id,
                Some(("endpoint_id", endpoint_id)),
                page,
            )
            .await?;
        super::page(rows, page, delivery)
    }

    /// One of a tenant's deliveries.
    pub async fn get_delivery(&self, customer_id: &str, id: &str) -> Result<WebhookDelivery> {
        self.tenant_row(DELIVERY_COLS, "webhook_deliveries", customer_id, id, delivery)
            .await
    }

    /// A tenant's attempts of one delivery, newest first.
    pub async fn list_attempts(
        &self,
        customer_id: &str,
        delivery_id: &str,
        page: PageReq,
    ) -> Result<Page<WebhookAttempt>> {
        let rows = self
            .tenant_rows(
                ATTEMPT_COLS,
                "webhook_attempts",
                customer_id,
                Some(("delivery_id", delivery_id)),
                page,
            )
            .await?;
        super::page(rows, page, attempt)
    }

    /// Sends a delivery again now (whatever its status), with a fresh 25 h
    /// retry window. Audited.
    pub async fn redeliver(&self, actor: &Actor, customer_id: &str, id: &str) -> Result<WebhookDelivery> {
        let mut tx = self.db.begin().await?;
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE customer_id = $1 AND id = $2{}",
            self.dialect().for_update()
        );
        let before = tx
            .query(&sql, vals![customer_id, id])
            .await?
            .first()
            .map(delivery)
            .unwrap_or(Err(ControlError::NotFound))?;
        let now = Millis::now();
        tx.execute(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, lease_until = 0, \
             first_attempt_at = NULL, tm_update = $1 WHERE id = $2",
            vals![now, id],
        )
        .await?;
        let after = WebhookDelivery {
            status: "pending".into(),
            next_attempt_at: now,
            ..before.clone()
        };
        audit::write(
            tx.as_mut(),
            Audit {
                customer_id,
                actor,
                action: "webhook.redeliver",
                resource_type: "webhook_delivery",
                resource_id: id,
                before: Some(&before),
                after: Some(&after),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(after)
    }

    /// Leases up to `limit` due deliveries until `lease_until`: pending,
    /// of enabled endpoints, the oldest pending one of their resource for
    /// their endpoint, and accepted by `take` (the worker's concurrency
    /// limits). On PostgreSQL rows another worker holds are skipped.
    pub async fn claim_deliveries(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
        mut take: impl FnMut(&Claimed) -> bool + Send,
    ) -> Result<Vec<Claimed>> {
        // The worker wakes on every commit; most find nothing due. One
        // read on the partial index answers that without a write
        // transaction (SQLite's would take the one write lock).
        let due = self
            .db
            .read(
                "SELECT seq FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
                 AND lease_until <= $1 LIMIT 1",
                vals![now],
            )
            .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let lock = match self.dialect() {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        // Endpoint by endpoint, each an ordered walk of its own due rows on
        // `webhook_deliveries_endpoint_due` that stops after its
        // concurrency limit: a claim costs the same with 20 or 20,000
        // deliveries waiting (one query over all pending rows sorted every
        // one of them, about 50 ms per claim at 20,000). The head-of-its-
        // resource test is a correlated MIN on `webhook_deliveries_order`:
        // as NOT EXISTS, PostgreSQL planned it as a scan of the endpoint's
        // whole queue per row whenever the table's statistics were stale,
        // as they are after a burst.
        let mut tx = self.db.begin().await?;
        let endpoints = tx
            .query(
                "SELECT e.id, e.url, e.secret, e.previous_secret, e.previous_secret_until, e.timeout_ms, \
                 e.max_concurrency FROM webhook_endpoints e WHERE e.enabled = 1 AND EXISTS (SELECT 1 \
                 FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending' \
                 AND d.next_attempt_at <= $1 AND d.lease_until <= $1) ORDER BY e.seq",
                vals![now],
            )
            .await?;
        let sql = format!(
            "SELECT d.seq, d.id, d.customer_id, d.event_id, d.event_type, d.payload, d.attempts, \
             d.first_attempt_at FROM webhook_deliveries d WHERE d.endpoint_id = $1 AND d.status = 'pending' \
             AND d.next_attempt_at <= $2 AND d.lease_until <= $2 \
             AND d.seq = (SELECT MIN(p.seq) FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id \
             AND p.resource_id = d.resource_id AND p.status = 'pending') \
             ORDER BY d.next_attempt_at, d.seq LIMIT $3{lock}"
        );
        let mut out = Vec::new();
        let mut leased = Vec::new();
        for e in &endpoints {
            if out.len() >= limit as usize {
                break;
            }
            let endpoint_id = e.text(0)?;
            let mut secrets = vec![e.text(2)?];
            if let (Some(prev), Some(until)) = (e.opt_text(3)?, e.opt_millis(4)?) {
                if until.0 > now.0 {
                    secrets.push(prev);
                }
            }
            let max_concurrency = e.int(6)?;
            let room = (limit as usize - out.len()).min(max_concurrency.max(1) as usize);
            let rows = tx.query(&sql, vals![&endpoint_id, now, room as i64]).await?;
            for r in &rows {
                let c = Claimed {
                    id: r.text(1)?,
                    endpoint_id: endpoint_id.clone(),
                    customer_id: r.text(2)?,
                    event_id: r.text(3)?,
                    event_type: r.text(4)?,
                    payload: r.text(5)?,
                    attempts: r.int(6)?,
                    first_attempt_at: r.opt_millis(7)?,
                    url: e.text(1)?,
                    secrets: secrets.clone(),
                    timeout_ms: e.int(5)?,
                    max_concurrency,
                };
                if !take(&c) {
                    // This endpoint is full; the rest of its rows wait.
                    break;
                }
                leased.push(r.int(0)?.to_string());
                out.push(c);
            }
        }
        if !leased.is_empty() {
            // Positions read from the table itself, written into the
            // statement: one round trip for the whole claim.
            tx.execute(
                &format!(
                    "UPDATE webhook_deliveries SET lease_until = $1 WHERE seq IN ({})",
                    leased.join(",")
                ),
                vals![lease_until],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records finished attempts, all in one transaction, and moves each
    /// delivery on: delivered on a 2xx; otherwise pending again after
    /// `outcome.retry_in_ms`, or failed for good, which disables the
    /// endpoint with a `webhook_endpoint_disabled` event. Returns the
    /// endpoints this disabled.
    ///
    /// One commit for many attempts is what lets the worker deliver
    /// thousands per second: a commit per attempt costs a WAL flush each.
    pub async fn finish_attempts(&self, done: &[Finished]) -> Result<Vec<String>> {
        let mut tx = self.db.begin().await?;
        let mut disabled = Vec::new();
        for f in done {
            if self
                .finish_in(tx.as_mut(), &f.claimed, f.started, &f.outcome)
                .await?
            {
                disabled.push(f.claimed.endpoint_id.clone());
            }
        }
        self.commit(tx).await?;
        Ok(disabled)
    }

    async fn finish_in(
        &self,
        tx: &mut dyn super::Tx,
        c: &Claimed,
        started: Millis,
        outcome: &Outcome,
    ) -> Result<bool> {
        let now = Millis::now();
        let number = c.attempts + 1;
        tx.execute(
            "INSERT INTO webhook_attempts (id, delivery_id, customer_id, attempt, status_code, latency_ms, error, tm_create) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vals![
                super::new_id(),
                &c.id,
                &c.customer_id,
                number,
                outcome.status_code.map(i64::from),
                outcome.latency_ms,
                outcome.error.clone(),
                now
            ],
        )
        .await?;
        let first = c.first_attempt_at.unwrap_or(started);
        let ok = outcome.error.is_none();
        let (status, next) = match (ok, outcome.retry_in_ms) {
            (true, _) => ("delivered", now),
            (false, Some(ms)) => ("pending", Millis(now.0 + ms)),
            (false, None) => ("failed", now),
        };
        tx.execute(
            "UPDATE webhook_deliveries SET status = $1, attempts = $2, next_attempt_at = $3, lease_until = 0, \
             first_attempt_at = $4, last_status_code = $5, last_error = $6, last_latency_ms = $7, tm_update = $8 \
             WHERE id = $9",
            vals![
                status,
                number,
                next,
                first,
                outcome.status_code.map(i64::from),
                outcome.error.clone(),
                outcome.latency_ms,
                now,
                &c.id
            ],
        )
        .await?;
        let mut disabled = false;
        if status == "failed" {
            let reason = format!(
                "delivery {} failed for good after {number} attempts: {}",
                c.id,
                outcome.error.as_deref().unwrap_or("error")
            );
            let changed = tx
                .execute(
                    "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $1, tm_update = $2 \
                     WHERE id = $3 AND enabled = 1",
                    vals![&reason, now, &c.endpoint_id],
                )
                .await?;
            if changed > 0 {
                disabled = true;
                let ev = Disabled {
                    url: &c.url,
                    reason: &reason,
                    delivery_id: &c.id,
                };
                outbox::push(
                    tx,
                    "webhook_endpoint_disabled",
                    &c.customer_id,
                    "webhook_endpoint",
                    &c.endpoint_id,
                    &ev,
                )
                .await?;
            }
        }
        Ok(disabled)
    }
}
