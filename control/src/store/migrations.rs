//! Versioned schema migrations, applied in order at start inside one
//! transaction each and recorded in `schema_migrations`. The SQL is written
//! once; `{SEQ}` becomes each dialect's auto-increment key. On PostgreSQL an
//! advisory lock keeps two instances starting together from racing.
//!
//! Never edit a released migration: add a new one.

use super::{Backend, Dialect};
use crate::error::Result;

/// (version, SQL). Append only.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "
CREATE TABLE customers (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    email TEXT,
    tm_create BIGINT NOT NULL
);
CREATE TABLE access_keys (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    tm_create BIGINT NOT NULL,
    tm_expire BIGINT
);
CREATE INDEX access_keys_customer ON access_keys (customer_id, seq);
CREATE TABLE calls (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    direction TEXT NOT NULL,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    route TEXT NOT NULL,
    ingress TEXT NOT NULL,
    hangup_by TEXT,
    hangup_reason TEXT,
    hangup_cause TEXT,
    tm_create BIGINT NOT NULL,
    tm_ringing BIGINT,
    tm_progressing BIGINT,
    tm_hangup BIGINT,
    duration_ms BIGINT,
    tm_update BIGINT NOT NULL
);
CREATE INDEX calls_customer ON calls (customer_id, seq);
CREATE TABLE transcribes (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    call_id TEXT NOT NULL UNIQUE,
    tm_create BIGINT NOT NULL
);
CREATE INDEX transcribes_customer ON transcribes (customer_id, seq);
CREATE TABLE transcripts (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    transcribe_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    message TEXT NOT NULL,
    tm_transcript BIGINT NOT NULL,
    tm_create BIGINT NOT NULL
);
CREATE INDEX transcripts_customer ON transcripts (customer_id, seq);
CREATE TABLE audit_log (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    before_state TEXT,
    after_state TEXT,
    tm_create BIGINT NOT NULL
);
CREATE INDEX audit_log_customer ON audit_log (customer_id, seq);
CREATE TABLE outbox (
    {SEQ},
    event_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    tm_create BIGINT NOT NULL,
    tm_sent BIGINT
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE tm_sent IS NULL;
",
    ),
    (
        2,
        "
CREATE TABLE billing_accounts (
    customer_id TEXT PRIMARY KEY,
    balance_micros BIGINT NOT NULL,
    price_per_minute_micros BIGINT NOT NULL,
    increment_first_s BIGINT NOT NULL,
    increment_next_s BIGINT NOT NULL,
    min_charge_micros BIGINT NOT NULL,
    low_balance_threshold_micros BIGINT NOT NULL,
    tm_update BIGINT NOT NULL
);
CREATE TABLE billing_records (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    call_id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL UNIQUE,
    answered_ms BIGINT NOT NULL,
    billable_s BIGINT NOT NULL,
    cost_micros BIGINT NOT NULL,
    balance_after_micros BIGINT NOT NULL,
    tm_create BIGINT NOT NULL
);
CREATE INDEX billing_records_customer ON billing_records (customer_id, seq);
CREATE INDEX calls_hangup ON calls (tm_hangup);
CREATE INDEX outbox_resource ON outbox (resource_id, event_type);
",
    ),
    (
        3,
        "
CREATE TABLE webhook_endpoints (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    url TEXT NOT NULL,
    event_types TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until BIGINT,
    max_concurrency BIGINT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    disabled_reason TEXT,
    tm_create BIGINT NOT NULL,
    tm_update BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_customer ON webhook_endpoints (customer_id, seq);
CREATE TABLE webhook_deliveries (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    endpoint_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    first_attempt_at BIGINT,
    last_status_code BIGINT,
    last_error TEXT,
    last_latency_ms BIGINT,
    tm_create BIGINT NOT NULL,
    tm_update BIGINT NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, resource_id, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_customer ON webhook_deliveries (customer_id, seq);
CREATE TABLE webhook_attempts (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    delivery_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    status_code BIGINT,
    latency_ms BIGINT NOT NULL,
    error TEXT,
    tm_create BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, seq);
CREATE INDEX webhook_attempts_customer ON webhook_attempts (customer_id, seq);
",
    ),
    (
        4,
        "
CREATE INDEX webhook_deliveries_endpoint_due ON webhook_deliveries (endpoint_id, next_attempt_at, seq)
    WHERE status = 'pending';
",
    ),
    (
        5,
        "
ALTER TABLE calls ADD COLUMN node TEXT;
CREATE INDEX calls_outgoing_unanswered ON calls (tm_create)
    WHERE direction = 'outgoing' AND status IN ('dialing', 'ringing');
CREATE INDEX calls_node_open ON calls (node) WHERE status <> 'hangup';
CREATE TABLE campaigns (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    route TEXT NOT NULL,
    source TEXT NOT NULL,
    max_concurrent BIGINT NOT NULL,
    cps_milli BIGINT NOT NULL,
    window_start TEXT,
    window_end TEXT,
    timezone TEXT NOT NULL,
    retry TEXT NOT NULL,
    dialed BIGINT NOT NULL,
    answered BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    active BIGINT NOT NULL,
    remaining BIGINT NOT NULL,
    tm_create BIGINT NOT NULL,
    tm_start BIGINT,
    tm_end BIGINT,
    tm_update BIGINT NOT NULL,
    recent_starts TEXT NOT NULL
);
CREATE INDEX campaigns_customer ON campaigns (customer_id, seq);
CREATE INDEX campaigns_running ON campaigns (seq) WHERE status = 'running';
CREATE TABLE campaign_targets (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    campaign_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    timezone TEXT NOT NULL,
    vars TEXT NOT NULL,
    status TEXT NOT NULL,
    dial_count BIGINT NOT NULL,
    busy_count BIGINT NOT NULL,
    no_answer_count BIGINT NOT NULL,
    failed_count BIGINT NOT NULL,
    result TEXT,
    call_id TEXT,
    next_dial_at BIGINT NOT NULL,
    last_dial_time BIGINT,
    tm_create BIGINT NOT NULL,
    tm_update BIGINT NOT NULL
);
CREATE INDEX campaign_targets_due ON campaign_targets (campaign_id, next_dial_at, seq) WHERE status = 'pending';
CREATE INDEX campaign_targets_campaign ON campaign_targets (campaign_id, seq);
CREATE INDEX campaign_targets_call ON campaign_targets (call_id);
",
    ),
    (
        6,
        "
ALTER TABLE customers ADD COLUMN tm_delete BIGINT;
CREATE INDEX calls_customer_open ON calls (customer_id) WHERE status <> 'hangup';
CREATE TABLE call_dtmfs (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    digit TEXT NOT NULL,
    tm_create BIGINT NOT NULL
);
CREATE INDEX call_dtmfs_call ON call_dtmfs (call_id, seq);
CREATE TABLE dead_letters (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    call_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    tm_create BIGINT NOT NULL,
    tm_update BIGINT NOT NULL
);
CREATE TABLE node_heartbeats (
    node TEXT PRIMARY KEY,
    tm_heartbeat BIGINT NOT NULL
);
",
    ),
    (
        7,
        "
ALTER TABLE calls ADD COLUMN hangup_sip_code BIGINT;
ALTER TABLE calls ADD COLUMN hangup_sip_reason TEXT;
",
    ),
    (
        // A call may have several transcribes (a speech recognizer's,
        // started and stopped on command, beside the one a bot reports):
        // the table is rebuilt without `UNIQUE (call_id)`, the bot's kept
        // one per call by a partial index.
        8,
        "
CREATE TABLE transcribes_v8 (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    language TEXT,
    directions TEXT NOT NULL,
    tm_create BIGINT NOT NULL,
    tm_end BIGINT
);
INSERT INTO transcribes_v8 (id, customer_id, call_id, source, status, language, directions, tm_create, tm_end)
    SELECT t.id, t.customer_id, t.call_id, 'bot',
        CASE WHEN EXISTS (SELECT 1 FROM calls c WHERE c.id = t.call_id AND c.status <> 'hangup')
            THEN 'running' ELSE 'completed' END,
        NULL, 'both', t.tm_create, NULL
    FROM transcribes t ORDER BY t.seq;
DROP TABLE transcribes;
ALTER TABLE transcribes_v8 RENAME TO transcribes;
CREATE INDEX transcribes_customer ON transcribes (customer_id, seq);
CREATE INDEX transcribes_call ON transcribes (call_id, seq);
CREATE UNIQUE INDEX transcribes_bot_call ON transcribes (call_id) WHERE source = 'bot';
",
    ),
    (
        9,
        "
CREATE TABLE recordings (
    {SEQ},
    id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    status TEXT NOT NULL,
    end_reason TEXT,
    file TEXT NOT NULL,
    rate BIGINT NOT NULL,
    duration_ms BIGINT,
    bytes BIGINT,
    tm_create BIGINT NOT NULL,
    tm_end BIGINT
);
CREATE INDEX recordings_customer ON recordings (customer_id, seq);
CREATE INDEX recordings_call ON recordings (call_id, seq);
CREATE INDEX recordings_created ON recordings (tm_create);
",
    ),
    (
        // Who answered a call voxbridge placed (answering-machine detection).
        10,
        "
ALTER TABLE calls ADD COLUMN answered_by TEXT;
ALTER TABLE calls ADD COLUMN amd_cause TEXT;
",
    ),
    (
        // Campaign attempts an answering machine answered: their own
        // result, count and retry rule.
        11,
        "
ALTER TABLE campaign_targets ADD COLUMN machine_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN machine BIGINT NOT NULL DEFAULT 0;
",
    ),
];

fn render(sql: &str, d: Dialect) -> String {
    let seq = match d {
        Dialect::Postgres => "seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        Dialect::Sqlite => "seq INTEGER PRIMARY KEY AUTOINCREMENT",
    };
    sql.replace("{SEQ}", seq)
}

/// Applies what the database lacks.
pub(crate) async fn apply(db: &dyn Backend) -> Result<()> {
    let mut tx = db.begin().await?;
    if db.dialect() == Dialect::Postgres {
        // Any fixed number: serialises concurrent starts until commit.
        tx.query("SELECT pg_advisory_xact_lock(7450012)::TEXT", &[])
            .await?;
    }
    tx.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, tm_applied BIGINT NOT NULL)",
    )
    .await?;
    let done = tx
        .query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
        .await?;
    let current = done.first().map(|r| r.int(0)).transpose()?.unwrap_or(0);
    for &(version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tracing::info!(version, "applying store migration");
        tx.batch(&render(sql, db.dialect())).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, tm_applied) VALUES ($1, $2)",
            super::vals![version, crate::time::Millis::now()],
        )
        .await?;
    }
    tx.commit().await
}
