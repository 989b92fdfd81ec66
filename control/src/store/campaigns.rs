//! Campaigns and their targets: creation, status changes, bulk targets,
//! the scheduler's dialling step and the result of an attempt.
//!
//! Several control instances may share one PostgreSQL: the dialling step
//! locks the campaign row (`FOR UPDATE`; SQLite has one writer), so only
//! one instance at a time picks a campaign's targets, and it moves each
//! from `pending` to `dialing` with the call row in the same transaction.
//! A target is therefore dialled once per attempt, by one instance. The
//! attempt's result is written in the transaction that hangs its call up
//! (`call_ended`, called from `transition_call_with`).

use super::audit::{self, Audit};
use super::{outbox, vals, Row, Store, Tx, Val};
use crate::campaign::pacing::Pacing;
use crate::campaign::targets_in::CheckedTarget;
use crate::campaign::{
    self, window, Campaign, CampaignSpec, CampaignStats, CampaignStatus, DialResult, Next, RetryPolicy,
    Target, TargetStatus, Tries, Window,
};
use crate::error::{ControlError, Result};
use crate::model::{Actor, Call, NewCall, Page, PageReq};
use crate::state::{CallStatus, Direction};
use crate::time::Millis;

const CCOLS: &str = "seq, id, customer_id, name, status, route, source, max_concurrent, cps_milli, \
     window_start, window_end, timezone, retry, dialed, answered, failed, active, remaining, tm_create, \
     tm_start, tm_end, tm_update, recent_starts, machine";

const TCOLS: &str = "seq, id, campaign_id, customer_id, destination, timezone, vars, status, dial_count, \
     busy_count, no_answer_count, failed_count, result, call_id, next_dial_at, last_dial_time, tm_create, tm_update, \
     machine_count";

fn campaign_row(r: &Row) -> Result<(Campaign, Vec<i64>)> {
    let window = match (r.opt_text(9)?, r.opt_text(10)?) {
        (Some(start), Some(end)) => Some(Window { start, end }),
        _ => None,
    };
    let retry: RetryPolicy =
        serde_json::from_value(r.json(12)?).map_err(|e| ControlError::Row(format!("campaign retry: {e}")))?;
    let recent: Vec<i64> = serde_json::from_value(r.json(22)?).unwrap_or_default();
    let c = Campaign {
        id: r.text(1)?,
        customer_id: r.text(2)?,
        name: r.text(3)?,
        status: r.enum_of(4, CampaignStatus::parse)?,
        route: r.text(5)?,
        source: r.text(6)?,
        max_concurrent: u32::try_from(r.int(7)?).unwrap_or(1),
        calls_per_second: r.int(8)? as f64 / 1000.0,
        window,
        timezone: r.text(11)?,
        retry,
        dialed: r.int(13)?,
        answered: r.int(14)?,
        machine: r.int(23)?,
        failed: r.int(15)?,
        active: r.int(16)?,
        remaining: r.int(17)?,
        tm_create: r.millis(18)?,
        tm_start: r.opt_millis(19)?,
        tm_end: r.opt_millis(20)?,
        tm_update: r.millis(21)?,
    };
    Ok((c, recent))
}

fn campaign(r: &Row) -> Result<Campaign> {
    campaign_row(r).map(|(c, _)| c)
}

fn count(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn target(r: &Row) -> Result<Target> {
    Ok(Target {
        id: r.text(1)?,
        campaign_id: r.text(2)?,
        destination: r.text(4)?,
        timezone: r.text(5)?,
        vars: r.json(6)?,
        status: r.enum_of(7, TargetStatus::parse)?,
        dial_count: count(r.int(8)?),
        tries: Tries {
            busy: count(r.int(9)?),
            no_answer: count(r.int(10)?),
            failed: count(r.int(11)?),
            machine: count(r.int(18)?),
        },
        result: r.opt_enum(12, DialResult::parse)?,
        call_id: r.opt_text(13)?,
        next_dial_at: r.millis(14)?,
        last_dial_time: r.opt_millis(15)?,
        tm_create: r.millis(16)?,
        tm_update: r.millis(17)?,
    })
}

/// One call the scheduler placed: what the originator needs.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedCall {
    /// The call as stored (`dialing`).
    pub call: Call,
    /// The target's values.
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The campaign.
    pub campaign_id: String,
}

async fn lock_campaign(
    tx: &mut dyn Tx,
    lock: &str,
    customer_id: Option<&str>,
    id: &str,
) -> Result<(Campaign, Vec<i64>)> {
    let rows = match customer_id {
        Some(c) => {
            let sql = format!("SELECT {CCOLS} FROM campaigns WHERE customer_id = $1 AND id = $2{lock}");
            tx.query(&sql, vals![c, id]).await?
        }
        None => {
            let sql = format!("SELECT {CCOLS} FROM campaigns WHERE id = $1{lock}");
            tx.query(&sql, vals![id]).await?
        }
    };
    rows.first()
        .map(campaign_row)
        .unwrap_or(Err(ControlError::NotFound))
}

impl Store {
    /// Creates a campaign (`pending`) with its `campaign_created` event.
    pub async fn create_campaign(
        &self,
        actor: &Actor,
        customer_id: &str,
        spec: &CampaignSpec,
    ) -> Result<Campaign> {
        campaign::validate(spec).map_err(ControlError::Invalid)?;
        let now = Millis::now();
        let cps_milli = (spec.calls_per_second.unwrap_or(1.0) * 1000.0).round() as i64;
        let retry = serde_json::to_string(&spec.retry.unwrap_or_default())
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        let mut tx = self.db.begin().await?;
        let sql = format!(
            "INSERT INTO campaigns (id, customer_id, name, status, route, source, max_concurrent, cps_milli, \
             window_start, window_end, timezone, retry, dialed, answered, failed, active, remaining, tm_create, \
             tm_update, recent_starts) VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $9, $10, $11, 0, 0, 0, 0, 0, \
             $12, $12, '[]') RETURNING {CCOLS}"
        );
        let rows = tx
            .query(
                &sql,
                vals![
                    super::new_id(),
                    customer_id,
                    spec.name.trim(),
                    spec.route.clone().unwrap_or_else(|| "default".into()),
                    spec.source.clone().unwrap_or_default(),
                    i64::from(spec.max_concurrent.unwrap_or(10)),
                    cps_milli,
                    spec.window.as_ref().map(|w| w.start.clone()),
                    spec.window.as_ref().map(|w| w.end.clone()),
                    spec.timezone.clone().unwrap_or_else(|| "UTC".into()),
                    retry,
                    now
                ],
            )
            .await?;
        let c = rows
            .first()
            .map(campaign)
            .unwrap_or(Err(ControlError::NotFound))?;
        self.finish_change(tx, actor, "campaign_created", "campaign.create", None, c)
            .await
    }

    /// Writes `after`'s event and audit record in `tx` and commits.
    async fn finish_change(
        &self,
        mut tx: Box<dyn Tx>,
        actor: &Actor,
        event: &str,
        action: &str,
        before: Option<&Campaign>,
        after: Campaign,
    ) -> Result<Campaign> {
        announce(tx.as_mut(), event, &after).await?;
        let (customer_id, id) = (after.customer_id.as_str(), after.id.as_str());
        audit::write(
            tx.as_mut(),
            Audit {
                customer_id,
                actor,
                action,
                resource_type: "campaign",
                resource_id: id,
                before,
                after: Some(&after),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(after)
    }

    /// One of a tenant's campaigns.
    pub async fn get_campaign(&self, customer_id: &str, id: &str) -> Result<Campaign> {
        self.tenant_row(CCOLS, "campaigns", customer_id, id, campaign)
            .await
    }

    /// A tenant's campaigns, newest first.
    pub async fn list_campaigns(&self, customer_id: &str, page: PageReq) -> Result<Page<Campaign>> {
        let rows = self
            .tenant_rows(CCOLS, "campaigns", customer_id, None, page)
            .await?;
        super::page(rows, page, campaign)
    }

    /// Starts, resumes, pauses or stops a campaign (see
    /// [`CampaignStatus::may_become`]); asking for the status it has
    /// changes nothing.
    pub async fn set_campaign_status(
        &self,
        actor: &Actor,
        customer_id: &str,
        id: &str,
        to: CampaignStatus,
    ) -> Result<Campaign> {
        let lock = self.dialect().for_update();
        let mut tx = self.db.begin().await?;
        let (before, _) = lock_campaign(tx.as_mut(), lock, Some(customer_id), id).await?;
        if before.status == to {
            return Ok(before);
        }
        if !before.status.may_become(to) {
            return Err(ControlError::Conflict(format!(
                "campaign is {}: it cannot become {to}",
                before.status
            )));
        }
        let now = Millis::now();
        let sql = format!(
            "UPDATE campaigns SET status = $1, tm_update = $2, \
             tm_start = CASE WHEN $1 = 'running' AND tm_start IS NULL THEN $2 ELSE tm_start END, \
             tm_end = CASE WHEN $1 = 'stopped' THEN $2 ELSE tm_end END WHERE id = $3 RETURNING {CCOLS}"
        );
        let after = updated(tx.as_mut(), &sql, vals![to.as_str(), now, id]).await?;
        let event = format!(
            "campaign_{}",
            if to == CampaignStatus::Running {
                "started"
            } else {
                to.as_str()
            }
        );
        let action = format!("campaign.{to}");
        self.finish_change(tx, actor, &event, &action, Some(&before), after)
            .await
    }

    /// Adds targets in one transaction (all or none); refused once the
    /// campaign is completed or stopped. Returns the campaign after.
    pub async fn add_targets(
        &self,
        actor: &Actor,
        customer_id: &str,
        campaign_id: &str,
        targets: &[CheckedTarget],
    ) -> Result<Campaign> {
        let lock = self.dialect().for_update();
        let mut tx = self.db.begin().await?;
        let (c, _) = lock_campaign(tx.as_mut(), lock, Some(customer_id), campaign_id).await?;
        if matches!(c.status, CampaignStatus::Completed | CampaignStatus::Stopped) {
            return Err(ControlError::Conflict(format!(
                "campaign is {}: no targets can be added",
                c.status
            )));
        }
        let now = Millis::now();
        // Multi-row inserts: 100 rows of 7 parameters per statement.
        for chunk in targets.chunks(100) {
            let mut sql = String::from(
                "INSERT INTO campaign_targets (id, campaign_id, customer_id, destination, timezone, vars, status, \
                 dial_count, busy_count, no_answer_count, failed_count, next_dial_at, tm_create, tm_update) VALUES ",
            );
            let mut params: Vec<Val> = Vec::with_capacity(chunk.len() * 7);
            for (i, t) in chunk.iter().enumerate() {
                let b = i * 7;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, 'pending', 0, 0, 0, 0, ${}, ${b7}, ${b7})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b7 = b + 7
                ));
                params.extend([
                    Val::from(super::new_id()),
                    Val::from(campaign_id),
                    Val::from(customer_id),
                    Val::from(&t.destination),
                    Val::from(&t.timezone),
                    Val::from(serde_json::Value::Object(t.vars.clone()).to_string()),
                    Val::from(now),
                ]);
            }
            tx.execute(&sql, &params).await?;
        }
        let n = i64::try_from(targets.len()).unwrap_or(i64::MAX);
        let sql = format!(
            "UPDATE campaigns SET remaining = remaining + $1, tm_update = $2 WHERE id = $3 RETURNING {CCOLS}"
        );
        let after = updated(tx.as_mut(), &sql, vals![n, now, campaign_id]).await?;
        self.finish_change(
            tx,
            actor,
            "campaign_progress",
            "campaign.add_targets",
            Some(&c),
            after,
        )
        .await
    }

    /// A campaign's targets, newest first, optionally only those in `status`.
    pub async fn list_targets(
        &self,
        customer_id: &str,
        campaign_id: &str,
        status: Option<TargetStatus>,
        page: PageReq,
    ) -> Result<Page<Target>> {
        // The campaign must be the tenant's (404 otherwise).
        self.get_campaign(customer_id, campaign_id).await?;
        let before = Val::from(page.before.unwrap_or(i64::MAX));
        let limit = Val::from(i64::from(page.limit) + 1);
        let rows = match status {
            Some(s) => {
                let sql = format!(
                    "SELECT {TCOLS} FROM campaign_targets WHERE campaign_id = $1 AND seq < $2 AND status = $3 \
                     ORDER BY seq DESC LIMIT $4"
                );
                self.db
                    .read(&sql, &[campaign_id.into(), before, s.as_str().into(), limit])
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {TCOLS} FROM campaign_targets WHERE campaign_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
                );
                self.db.read(&sql, &[campaign_id.into(), before, limit]).await?
            }
        };
        super::page(rows, page, target)
    }

    /// The campaign with its targets counted by status and final result.
    pub async fn campaign_stats(&self, customer_id: &str, id: &str) -> Result<CampaignStats> {
        let c = self.get_campaign(customer_id, id).await?;
        let rows = self
            .db
            .read(
                "SELECT status, COALESCE(result, ''), COUNT(*) FROM campaign_targets WHERE campaign_id = $1 \
                 GROUP BY status, result",
                vals![id],
            )
            .await?;
        let mut targets = std::collections::BTreeMap::new();
        let mut results = std::collections::BTreeMap::new();
        for r in rows {
            let (status, result, n) = (r.text(0)?, r.text(1)?, r.int(2)?);
            if status == TargetStatus::Completed.as_str() && !result.is_empty() {
                *results.entry(result).or_insert(0) += n;
            }
            *targets.entry(status).or_insert(0) += n;
        }
        for s in TargetStatus::ALL {
            targets.entry(s.as_str().to_owned()).or_insert(0);
        }
        Ok(CampaignStats {
            campaign: c,
            targets,
            results,
        })
    }

    /// Ids of running campaigns (the scheduler's work list).
    pub async fn running_campaigns(&self) -> Result<Vec<String>> {
        let rows = self
            .db
            .read(
                "SELECT id FROM campaigns WHERE status = 'running' ORDER BY seq",
                &[],
            )
            .await?;
        rows.iter().map(|r| r.text(0)).collect()
    }

    /// The scheduler's step for one campaign at `now`: with the campaign
    /// row locked, dials as many due targets as its concurrency and pacing
    /// allow (targets outside their window are moved to its next opening),
    /// each as a new `dialing` call in the same transaction, and completes
    /// a running campaign that has no target left. Returns the calls to
    /// originate; `ingress` is how their media will arrive (the
    /// originator's [`crate::originate::Originator::ingress`]).
    pub async fn dial_due_targets(
        &self,
        campaign_id: &str,
        now: Millis,
        ingress: &str,
    ) -> Result<Vec<PlacedCall>> {
        let lock = self.dialect().for_update();
        let mut tx = self.db.begin().await?;
        let (c, mut recent) = lock_campaign(tx.as_mut(), lock, None, campaign_id).await?;
        if c.status != CampaignStatus::Running {
            return Ok(Vec::new());
        }
        if c.remaining <= 0 && c.active <= 0 {
            let sql = format!(
                "UPDATE campaigns SET status = 'completed', tm_end = $1, tm_update = $1 WHERE id = $2 RETURNING {CCOLS}"
            );
            let after = updated(tx.as_mut(), &sql, vals![now, campaign_id]).await?;
            announce(tx.as_mut(), "campaign_completed", &after).await?;
            self.commit(tx).await?;
            return Ok(Vec::new());
        }
        // Read the clock under the lock, so a slot freed by a hangup that
        // committed while this step waited is never used before that
        // hangup's time; and start times never go backwards.
        let now = Millis(
            now.0
                .max(Millis::now().0)
                .max(recent.last().copied().unwrap_or(0)),
        );
        let pacing = Pacing::from_cps_milli((c.calls_per_second * 1000.0).round() as i64);
        let free = usize::try_from(i64::from(c.max_concurrent) - c.active).unwrap_or(0);
        let room = free.min(pacing.room(&recent, now.0));
        if room == 0 {
            return Ok(Vec::new());
        }
        let window = c
            .window
            .as_ref()
            .map(window::parse)
            .transpose()
            .map_err(ControlError::Row)?;
        // A few more than needed: some may be outside their window.
        let sql = format!(
            "SELECT {TCOLS} FROM campaign_targets WHERE campaign_id = $1 AND status = 'pending' AND next_dial_at <= $2 \
             ORDER BY next_dial_at, seq LIMIT $3"
        );
        let limit = i64::try_from(room + 64).unwrap_or(i64::MAX);
        let candidates = tx.query(&sql, vals![campaign_id, now, limit]).await?;
        let mut placed = Vec::new();
        for row in &candidates {
            if placed.len() == room {
                break;
            }
            let t = target(row)?;
            if let Some(w) = window {
                match window::next_open(w, &t.timezone, now.0) {
                    Ok(None) => {}
                    Ok(Some(open)) => {
                        tx.execute(
                            "UPDATE campaign_targets SET next_dial_at = $1, tm_update = $2 WHERE id = $3",
                            vals![Millis(open), now, &t.id],
                        )
                        .await?;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(target_id = %t.id, error = %e, "campaign target: window not computable; dialling");
                    }
                }
            }
            let new = NewCall {
                id: super::new_id(),
                customer_id: c.customer_id.clone(),
                status: CallStatus::Dialing,
                direction: Direction::Outgoing,
                source: c.source.clone(),
                destination: t.destination.clone(),
                route: c.route.clone(),
                ingress: ingress.to_owned(),
                at: now,
            };
            let Some(call) = self.insert_call(tx.as_mut(), &new).await? else {
                continue;
            };
            tx.execute(
                "UPDATE campaign_targets SET status = 'dialing', dial_count = dial_count + 1, last_dial_time = $1, \
                 call_id = $2, tm_update = $1 WHERE id = $3",
                vals![now, &call.id, &t.id],
            )
            .await?;
            pacing.record(&mut recent, now.0);
            let vars = match t.vars {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            placed.push(PlacedCall {
                call,
                vars,
                attempt: t.dial_count + 1,
                campaign_id: c.id.clone(),
            });
        }
        if placed.is_empty() {
            self.commit(tx).await?;
            return Ok(placed);
        }
        let k = i64::try_from(placed.len()).unwrap_or(i64::MAX);
        let recent = serde_json::to_string(&recent).unwrap_or_else(|_| "[]".into());
        let sql = format!(
            "UPDATE campaigns SET active = active + $1, dialed = dialed + $1, recent_starts = $2, tm_update = $3 \
             WHERE id = $4 RETURNING {CCOLS}"
        );
        let after = updated(tx.as_mut(), &sql, vals![k, recent, now, campaign_id]).await?;
        announce(tx.as_mut(), "campaign_progress", &after).await?;
        self.commit(tx).await?;
        Ok(placed)
    }
}

/// In the transaction that hangs `call` up: if it was a campaign attempt,
/// records the attempt's result on its target (retry later, or done) and in
/// the campaign's totals, with a `campaign_progress` event.
pub(crate) async fn call_ended(tx: &mut dyn Tx, lock: &str, call: &Call) -> Result<()> {
    let sql = format!("SELECT {TCOLS} FROM campaign_targets WHERE call_id = $1 AND status = 'dialing'{lock}");
    let rows = tx.query(&sql, vals![&call.id]).await?;
    let Some(row) = rows.first() else {
        return Ok(());
    };
    let t = target(row)?;
    let policy_rows = tx
        .query("SELECT retry FROM campaigns WHERE id = $1", vals![&t.campaign_id])
        .await?;
    let policy: RetryPolicy = match policy_rows.first() {
        Some(r) => serde_json::from_value(r.json(0)?)
            .map_err(|e| ControlError::Row(format!("campaign retry: {e}")))?,
        None => RetryPolicy::default(),
    };
    let now = call.tm_hangup.unwrap_or_else(Millis::now);
    let result = campaign::result_of(call);
    let mut tries = t.tries;
    tries.add(result);
    let (status, next_dial_at) = match campaign::after_attempt(result, &tries, &policy, now) {
        Next::Done => (TargetStatus::Completed, t.next_dial_at),
        Next::RetryAt(at) => (TargetStatus::Pending, at),
    };
    tx.execute(
        "UPDATE campaign_targets SET status = $1, result = $2, busy_count = $3, no_answer_count = $4, \
         failed_count = $5, machine_count = $6, next_dial_at = $7, tm_update = $8 WHERE id = $9",
        vals![
            status.as_str(),
            result.as_str(),
            i64::from(tries.busy),
            i64::from(tries.no_answer),
            i64::from(tries.failed),
            i64::from(tries.machine),
            next_dial_at,
            now,
            &t.id
        ],
    )
    .await?;
    let answered = i64::from(result == DialResult::Answered);
    let machine = i64::from(result == DialResult::Machine);
    let done = i64::from(status == TargetStatus::Completed);
    let sql = format!(
        "UPDATE campaigns SET active = active - 1, answered = answered + $1, machine = machine + $2, \
         failed = failed + $3, remaining = remaining - $4, tm_update = $5 WHERE id = $6 RETURNING {CCOLS}"
    );
    let values = vals![
        answered,
        machine,
        1 - answered - machine,
        done,
        now,
        &t.campaign_id
    ];
    let c = updated(tx, &sql, values).await?;
    announce(tx, "campaign_progress", &c).await
}

/// Runs an `UPDATE campaigns ... RETURNING {CCOLS}` and reads the campaign
/// after it.
async fn updated(tx: &mut dyn Tx, sql: &str, params: &[Val]) -> Result<Campaign> {
    let rows = tx.query(sql, params).await?;
    rows.first().map(campaign).unwrap_or(Err(ControlError::NotFound))
}

/// Writes `c` as `event` to the outbox in `tx`.
async fn announce(tx: &mut dyn Tx, event: &str, c: &Campaign) -> Result<()> {
    outbox::push(tx, event, &c.customer_id, "campaign", &c.id, c).await?;
    Ok(())
}
