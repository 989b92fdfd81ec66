//! The delivery worker: leases due deliveries from the store (the head of
//! each resource's queue per endpoint, within each endpoint's concurrency
//! limit) and POSTs each on its own task. A recorder task writes finished
//! attempts (and their retry schedule) in batches, one transaction for all
//! that finished meanwhile; a delivery's concurrency slot, and the next
//! delivery of its resource, free up once its attempt is committed. The
//! worker wakes on every commit (new deliveries), on every recorded batch,
//! and at least every [`POLL`] (retries coming due).
//!
//! A lease outlives the longest request, so a crashed worker's deliveries
//! are picked up again after it expires: delivery is at least once, and
//! receivers de-duplicate on `webhook-id` (the event id).

use super::schedule::{Backoff, Next};
use super::sign;
use super::ssrf::{check_url, Allow, GuardedResolver};
use crate::store::webhooks::{Claimed, Finished, Outcome};
use crate::store::Store;
use crate::time::Millis;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// Longest wait between two looks for due deliveries.
pub const POLL: Duration = Duration::from_millis(500);
/// How long a claimed delivery stays leased (longer than any timeout).
const LEASE: Duration = Duration::from_secs(90);
/// Deliveries claimed per pass.
const CLAIM: u32 = 64;
/// Finished attempts recorded per transaction, at most.
const RECORD_BATCH: usize = 256;
/// Response bodies read at most this far (then dropped).
const MAX_RESPONSE: usize = 64 * 1024;

/// Webhook counters.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Attempts answered with a 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed (status, timeout, connection, refused address).
    pub failed_attempts: AtomicU64,
    /// Deliveries that gave up.
    pub gave_up: AtomicU64,
    /// Endpoints disabled for failing.
    pub endpoints_disabled: AtomicU64,
}

impl WebhookStats {
    /// Prometheus text format.
    pub fn render(&self) -> String {
        format!(
            "# HELP voxbridge_webhook_attempts_total Webhook delivery attempts, by result.\n\
             # TYPE voxbridge_webhook_attempts_total counter\n\
             voxbridge_webhook_attempts_total{{result=\"delivered\"}} {}\n\
             voxbridge_webhook_attempts_total{{result=\"failed\"}} {}\n\
             # HELP voxbridge_webhook_gave_up_total Webhook deliveries that failed for good.\n\
             # TYPE voxbridge_webhook_gave_up_total counter\n\
             voxbridge_webhook_gave_up_total {}\n\
             # HELP voxbridge_webhook_endpoints_disabled_total Webhook endpoints disabled for failing.\n\
             # TYPE voxbridge_webhook_endpoints_disabled_total counter\n\
             voxbridge_webhook_endpoints_disabled_total {}\n",
            self.delivered.load(Relaxed),
            self.failed_attempts.load(Relaxed),
            self.gave_up.load(Relaxed),
            self.endpoints_disabled.load(Relaxed),
        )
    }
}

/// The HTTP client webhooks use: no redirects (a redirect could lead
/// inside), and the guarded resolver.
pub fn client(allow: Arc<Allow>) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver(allow)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("voxbridge-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

struct Ctx {
    store: Store,
    client: reqwest::Client,
    allow: Arc<Allow>,
    backoff: Backoff,
    stats: Arc<WebhookStats>,
}

/// Delivers until `stop` turns true, then lets attempts in flight finish.
pub async fn run(
    store: Store,
    allow: Allow,
    backoff: Backoff,
    stats: Arc<WebhookStats>,
    mut stop: watch::Receiver<bool>,
) {
    let allow = Arc::new(allow);
    let client = match client(allow.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: no HTTP client; deliveries wait");
            return;
        }
    };
    let ctx = Arc::new(Ctx {
        store: store.clone(),
        client,
        allow,
        backoff,
        stats,
    });
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let (record_tx, record_rx) = mpsc::unbounded_channel::<Finished>();
    let recorder = tokio::spawn(record(ctx.clone(), record_rx, done_tx));
    let mut in_flight: HashMap<String, i64> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut commits = store.commits();
    loop {
        commits.borrow_and_update();
        let now = Millis::now();
        let mut tentative = in_flight.clone();
        let claimed = store
            .claim_deliveries(now, Millis(now.0 + LEASE.as_millis() as i64), CLAIM, |c| {
                let n = tentative.entry(c.endpoint_id.clone()).or_insert(0);
                if *n < c.max_concurrency.max(1) {
                    *n += 1;
                    true
                } else {
                    false
                }
            })
            .await;
        match claimed {
            Ok(claimed) => {
                for c in claimed {
                    *in_flight.entry(c.endpoint_id.clone()).or_insert(0) += 1;
                    tasks.spawn(deliver(ctx.clone(), c, record_tx.clone()));
                }
            }
            Err(e) => tracing::warn!(error = %e, "webhooks: could not claim deliveries; retrying"),
        }
        tokio::select! {
            Some(ep) = done_rx.recv() => {
                release(&mut in_flight, &ep);
                while let Ok(ep) = done_rx.try_recv() {
                    release(&mut in_flight, &ep);
                }
            }
            _ = commits.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    // Every attempt is handed over; the recorder writes them and ends.
    drop(record_tx);
    let _ = recorder.await;
}

fn release(in_flight: &mut HashMap<String, i64>, endpoint: &str) {
    if let Some(n) = in_flight.get_mut(endpoint) {
        *n -= 1;
        if *n <= 0 {
            in_flight.remove(endpoint);
        }
    }
}

async fn deliver(ctx: Arc<Ctx>, c: Claimed, record: mpsc::UnboundedSender<Finished>) {
    let started = Millis::now();
    let t0 = Instant::now();
    let (status_code, error) = attempt(&ctx, &c).await;
    let latency_ms = t0.elapsed().as_millis() as i64;
    let retry_in_ms = match error {
        None => None,
        Some(_) => {
            let first = c.first_attempt_at.unwrap_or(started);
            let age = Duration::from_millis((started.0 - first.0).max(0) as u64);
            let failures = u32::try_from(c.attempts + 1).unwrap_or(u32::MAX);
            match ctx.backoff.next(failures, age, rand::random::<f64>()) {
                Next::RetryIn(d) => Some(d.as_millis() as i64),
                Next::GiveUp => None,
            }
        }
    };
    match &error {
        None => ctx.stats.delivered.fetch_add(1, Relaxed),
        Some(e) => {
            tracing::info!(delivery = c.id, url = c.url, error = e, "webhook attempt failed");
            ctx.stats.failed_attempts.fetch_add(1, Relaxed)
        }
    };
    if error.is_some() && retry_in_ms.is_none() {
        ctx.stats.gave_up.fetch_add(1, Relaxed);
    }
    let outcome = Outcome {
        status_code,
        latency_ms,
        error,
        retry_in_ms,
    };
    // The recorder lives until every sender is gone.
    let _ = record.send(Finished {
        claimed: c,
        started,
        outcome,
    });
}

/// Writes finished attempts, a batch per transaction, then frees their
/// endpoints' slots. A short store outage is waited out; if the store stays
/// away the leases expire and those deliveries are made again (at least
/// once).
async fn record(
    ctx: Arc<Ctx>,
    mut rx: mpsc::UnboundedReceiver<Finished>,
    done: mpsc::UnboundedSender<String>,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while rx.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let mut backoff = Duration::from_millis(50);
        for _ in 0..8 {
            match ctx.store.finish_attempts(&batch).await {
                Ok(disabled) => {
                    for endpoint in disabled {
                        ctx.stats.endpoints_disabled.fetch_add(1, Relaxed);
                        tracing::warn!(endpoint, "webhook endpoint disabled after a delivery gave up");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempts = batch.len(), "webhooks: could not record attempts; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
        for f in batch.drain(..) {
            let _ = done.send(f.claimed.endpoint_id);
        }
    }
}

/// One POST: the status code and, for anything but a 2xx, what went wrong.
async fn attempt(ctx: &Ctx, c: &Claimed) -> (Option<u16>, Option<String>) {
    let url = match reqwest::Url::parse(&c.url) {
        Ok(u) => u,
        Err(e) => return (None, Some(format!("bad url: {e}"))),
    };
    if let Err(e) = check_url(&url, &ctx.allow) {
        return (None, Some(format!("refused: {e}")));
    }
    let ts = Millis::now().0 / 1000;
    let secrets: Vec<&str> = c.secrets.iter().map(String::as_str).collect();
    let mut req = ctx
        .client
        .post(url)
        .timeout(Duration::from_millis(c.timeout_ms.clamp(100, 60_000) as u64))
        .header("content-type", "application/json");
    for (k, v) in sign::headers(&secrets, &c.event_id, &c.event_type, ts, c.payload.as_bytes()) {
        req = req.header(k, v);
    }
    match req.body(c.payload.clone()).send().await {
        Ok(mut resp) => {
            let code = resp.status().as_u16();
            // Read (a bounded part of) the body so the connection can be reused.
            let mut read = 0;
            while let Ok(Some(chunk)) = resp.chunk().await {
                read += chunk.len();
                if read > MAX_RESPONSE {
                    break;
                }
            }
            match resp.status().is_success() {
                true => (Some(code), None),
                false => (Some(code), Some(format!("HTTP {code}"))),
            }
        }
        Err(e) => {
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "request failed"
            };
            (None, Some(format!("{what}: {}", root_cause(&e))))
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
