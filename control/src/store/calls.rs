//! Calls: created by the media plane's events, moved along the state machine
//! (`state.rs`) by later events and by the API, each change with its outbox
//! event (and, through the API, its audit record) in the same transaction.
//! Every tenant-facing read and write has `customer_id = $1` in its SQL.

use super::audit::{self, Audit};
use super::{outbox, vals, Row, Store, Tx};
use crate::error::{ControlError, Result};
use crate::model::{Actor, Call, CallChange, CallFilter, NewCall, Page, PageReq};
use crate::state::{self, CallStatus, Direction, HangupBy, HangupReason, Step};
use crate::time::Millis;

const COLS: &str = "seq, id, customer_id, status, direction, source, destination, route, ingress, \
     hangup_by, hangup_reason, hangup_cause, tm_create, tm_ringing, tm_progressing, tm_hangup, \
     duration_ms, tm_update, hangup_sip_code, hangup_sip_reason, answered_by, amd_cause";

fn call(r: &Row) -> Result<Call> {
    Ok(Call {
        id: r.text(1)?,
        customer_id: r.text(2)?,
        status: r.enum_of(3, CallStatus::parse)?,
        direction: r.enum_of(4, Direction::parse)?,
        source: r.text(5)?,
        destination: r.text(6)?,
        route: r.text(7)?,
        ingress: r.text(8)?,
        hangup_by: r.opt_enum(9, HangupBy::parse)?,
        hangup_reason: r.opt_enum(10, HangupReason::parse)?,
        hangup_cause: r.opt_text(11)?,
        tm_create: r.millis(12)?,
        tm_ringing: r.opt_millis(13)?,
        tm_progressing: r.opt_millis(14)?,
        tm_hangup: r.opt_millis(15)?,
        duration_ms: r.opt_int(16)?,
        tm_update: r.millis(17)?,
        hangup_sip_code: r.opt_int(18)?.and_then(|c| u16::try_from(c).ok()),
        hangup_sip_reason: r.opt_text(19)?,
        answered_by: r.opt_text(20)?,
        amd_cause: r.opt_text(21)?,
    })
}

/// The result of asking for a status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The call after the change (or as it was, for a replay).
    pub call: Call,
    /// `false` when the call already had that status (nothing written).
    pub applied: bool,
}

impl Store {
    /// Records a new call and its `call_created` event. A replay of the same
    /// call id changes nothing and returns the stored call with `false`.
    pub async fn create_call(&self, new: &NewCall) -> Result<(Call, bool)> {
        let mut tx = self.db.begin().await?;
        let Some(c) = self.insert_call(tx.as_mut(), new).await? else {
            drop(tx);
            let existing = self.call_by_id(&new.id).await?;
            return Ok((existing, false));
        };
        self.commit(tx).await?;
        Ok((c, true))
    }

    /// Records an outbound call asked for through the API (`dialing`),
    /// with its event and an audit record.
    pub async fn originate_call(&self, actor: &Actor, new: &NewCall) -> Result<Call> {
        let mut tx = self.db.begin().await?;
        let c = self
            .insert_call(tx.as_mut(), new)
            .await?
            .ok_or_else(|| ControlError::Conflict(format!("call {} exists", new.id)))?;
        audit::write(
            tx.as_mut(),
            Audit {
                customer_id: &c.customer_id,
                actor,
                action: "call.originate",
                resource_type: "call",
                resource_id: &c.id,
                before: None::<&Call>,
                after: Some(&c),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(c)
    }

    /// Inserts a call (owned by this instance's node) and its
    /// `call_created` event in `tx`; `None` if the id exists.
    pub(crate) async fn insert_call(&self, tx: &mut dyn Tx, new: &NewCall) -> Result<Option<Call>> {
        let tm_ringing = (new.status == CallStatus::Ringing).then_some(new.at);
        let sql = format!(
            "INSERT INTO calls (id, customer_id, status, direction, source, destination, route, ingress, \
             tm_create, tm_ringing, tm_update, node) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $9, $11) \
             ON CONFLICT (id) DO NOTHING RETURNING {COLS}"
        );
        let rows = tx
            .query(
                &sql,
                vals![
                    &new.id,
                    &new.customer_id,
                    new.status.as_str(),
                    new.direction.as_str(),
                    &new.source,
                    &new.destination,
                    &new.route,
                    &new.ingress,
                    new.at,
                    tm_ringing,
                    &*self.node
                ],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let c = call(row)?;
        outbox::push(tx, "call_created", &c.customer_id, "call", &c.id, &c).await?;
        Ok(Some(c))
    }

    /// Hangs up (`noanswer`, cause `ring_timeout`) the outgoing calls still
    /// dialing or ringing that were created before `before`: calls whose
    /// media never joined. Returns how many it ended.
    pub async fn expire_unanswered(&self, before: Millis) -> Result<usize> {
        let rows = self
            .db
            .read(
                "SELECT id FROM calls WHERE direction = 'outgoing' AND status IN ('dialing', 'ringing') \
                 AND tm_create < $1 ORDER BY tm_create LIMIT 500",
                vals![before],
            )
            .await?;
        let unanswered = |s| matches!(s, CallStatus::Dialing | CallStatus::Ringing);
        self.hang_up_each(&rows, unanswered, HangupReason::Noanswer, "ring_timeout")
            .await
    }

    /// Records that this node is alive now (its media plane carries its
    /// calls). The heartbeat task calls it every `heartbeat_ms`.
    pub async fn heartbeat(&self) -> Result<()> {
        let mut tx = self.db.begin().await?;
        tx.execute(
            "INSERT INTO node_heartbeats (node, tm_heartbeat) VALUES ($1, $2) \
             ON CONFLICT (node) DO UPDATE SET tm_heartbeat = excluded.tm_heartbeat",
            vals![&*self.node, Millis::now()],
        )
        .await?;
        self.commit(tx).await
    }

    /// This node's last heartbeat, if it ever had one.
    pub async fn last_heartbeat(&self) -> Result<Option<Millis>> {
        let rows = self
            .db
            .read(
                "SELECT tm_heartbeat FROM node_heartbeats WHERE node = $1",
                vals![&*self.node],
            )
            .await?;
        rows.first().map(|r| r.millis(0)).transpose()
    }

    /// Hangs up (`failed`, cause `node_restart`) every call of this node
    /// that is not over: at start, when this process's media plane ran
    /// them and they died with it. Each ends, and is billed, at the last
    /// moment it is known to have carried media: the node's last
    /// heartbeat (never before the call started or was answered), not the
    /// restart time, so downtime is never billed. Without any heartbeat
    /// (a store from before heartbeats) the call ends at its last update.
    /// Call before this run's first heartbeat. Returns how many it ended.
    pub async fn end_orphaned_calls(&self) -> Result<usize> {
        let last_alive = self.last_heartbeat().await?;
        let rows = self
            .db
            .read(
                "SELECT id FROM calls WHERE node = $1 AND status <> 'hangup'",
                vals![&*self.node],
            )
            .await?;
        let mut n = 0;
        for r in &rows {
            let id = r.text(0)?;
            let t = self
                .transition_call_with(None, &id, None, |c| {
                    (c.status != CallStatus::Hangup).then(|| {
                        let started = c.tm_progressing.unwrap_or(c.tm_create);
                        let at = last_alive.unwrap_or(c.tm_update).max(started);
                        CallChange {
                            to: CallStatus::Hangup,
                            at,
                            hangup: Some((HangupBy::Local, HangupReason::Failed, "node_restart".into())),
                            sip: None,
                        }
                    })
                })
                .await?;
            n += usize::from(t.applied);
        }
        Ok(n)
    }

    /// Hangs up (by `local`) each call of `rows` (column 0: id) whose status,
    /// read under its row lock, `still` accepts. Returns how many it ended.
    async fn hang_up_each(
        &self,
        rows: &[Row],
        still: fn(CallStatus) -> bool,
        reason: HangupReason,
        cause: &str,
    ) -> Result<usize> {
        let mut n = 0;
        for r in rows {
            let id = r.text(0)?;
            let t = self
                .transition_call_with(None, &id, None, |c| {
                    still(c.status).then(|| CallChange {
                        to: CallStatus::Hangup,
                        at: Millis::now(),
                        hangup: Some((HangupBy::Local, reason, cause.to_owned())),
                        sip: None,
                    })
                })
                .await?;
            n += usize::from(t.applied);
        }
        Ok(n)
    }

    /// A call by id, whoever owns it (for the media plane's events, never
    /// for the API).
    pub async fn call_by_id(&self, id: &str) -> Result<Call> {
        let sql = format!("SELECT {COLS} FROM calls WHERE id = $1");
        let rows = self.db.read(&sql, vals![id]).await?;
        rows.first().map(call).unwrap_or(Err(ControlError::NotFound))
    }

    /// One of a tenant's calls (through the cache).
    pub async fn get_call(&self, customer_id: &str, id: &str) -> Result<Call> {
        let read = async {
            let sql = format!("SELECT {COLS} FROM calls WHERE id = $1");
            Ok(self.db.read(&sql, vals![id]).await?.into_iter().next())
        };
        match self.cached_row(&self.cache.call_key(id), read, call).await? {
            Some(c) if c.customer_id == customer_id => Ok(c),
            _ => Err(ControlError::NotFound),
        }
    }

    /// A tenant's calls, newest first.
    pub async fn list_calls(
        &self,
        customer_id: &str,
        filter: &CallFilter,
        page: PageReq,
    ) -> Result<Page<Call>> {
        let mut sql = format!("SELECT {COLS} FROM calls WHERE customer_id = $1 AND seq < $2");
        let mut params = vec![
            customer_id.into(),
            super::Val::from(page.before.unwrap_or(i64::MAX)),
        ];
        let mut add = |cond: &str, v: super::Val| {
            params.push(v);
            sql.push_str(&format!(" AND {cond} ${}", params.len()));
        };
        if let Some(s) = filter.status {
            add("status =", s.as_str().into());
        }
        if let Some(d) = filter.direction {
            add("direction =", d.as_str().into());
        }
        if let Some(t) = filter.since {
            add("tm_create >=", t.into());
        }
        if let Some(t) = filter.until {
            add("tm_create <", t.into());
        }
        params.push(super::Val::from(i64::from(page.limit) + 1));
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", params.len()));
        let rows = self.db.read(&sql, &params).await?;
        super::page(rows, page, call)
    }

    /// Moves a call to `change.to` if the state machine allows it, with its
    /// `call_<status>` event, and an audit record when `actor` is given.
    /// `customer_id` scopes the call (the API always passes one).
    pub async fn transition_call(
        &self,
        customer_id: Option<&str>,
        id: &str,
        change: &CallChange,
        actor: Option<&Actor>,
    ) -> Result<Transition> {
        self.transition_call_with(customer_id, id, actor, |_| Some(change.clone()))
            .await
    }

    /// As [`Store::transition_call`], with the change decided from the call
    /// as it is inside the transaction (row locked), so a decision that
    /// depends on the current state (was it answered? is it already ending?)
    /// cannot race another writer. `decide` returning `None` changes nothing.
    pub async fn transition_call_with(
        &self,
        customer_id: Option<&str>,
        id: &str,
        actor: Option<&Actor>,
        decide: impl FnOnce(&Call) -> Option<CallChange> + Send,
    ) -> Result<Transition> {
        let lock = self.dialect().for_update();
        let mut tx = self.db.begin().await?;
        let rows = match customer_id {
            Some(c) => {
                let sql = format!("SELECT {COLS} FROM calls WHERE customer_id = $1 AND id = $2{lock}");
                tx.query(&sql, vals![c, id]).await?
            }
            None => {
                let sql = format!("SELECT {COLS} FROM calls WHERE id = $1{lock}");
                tx.query(&sql, vals![id]).await?
            }
        };
        let before = rows.first().map(call).unwrap_or(Err(ControlError::NotFound))?;
        let Some(change) = decide(&before) else {
            // Nothing written: dropping `tx` rolls it back.
            return Ok(Transition {
                call: before,
                applied: false,
            });
        };
        match state::step(before.status, change.to) {
            Step::Replay => {
                return Ok(Transition {
                    call: before,
                    applied: false,
                })
            }
            Step::Refuse => {
                tracing::warn!(call_id = id, from = %before.status, to = %change.to, "call transition refused");
                return Err(ControlError::Transition {
                    call_id: id.to_owned(),
                    from: before.status.as_str(),
                    to: change.to.as_str(),
                });
            }
            Step::Apply => {}
        }
        let mut after = before.clone();
        after.status = change.to;
        after.tm_update = change.at;
        match change.to {
            CallStatus::Ringing => after.tm_ringing = Some(change.at),
            CallStatus::Progressing => after.tm_progressing = Some(change.at),
            CallStatus::Hangup => {
                after.tm_hangup = Some(change.at);
                after.duration_ms = Some((change.at.0 - before.tm_create.0).max(0));
                let (by, reason, cause) =
                    change
                        .hangup
                        .clone()
                        .unwrap_or((HangupBy::Local, HangupReason::Normal, String::new()));
                after.hangup_by = Some(by);
                after.hangup_reason = Some(reason);
                after.hangup_cause = Some(cause);
                after.hangup_sip_code = change.sip.as_ref().and_then(|s| s.code);
                after.hangup_sip_reason = change.sip.as_ref().map(|s| s.reason.clone());
            }
            _ => {}
        }
        tx.execute(
            "UPDATE calls SET status = $1, tm_update = $2, tm_ringing = $3, tm_progressing = $4, tm_hangup = $5, \
             duration_ms = $6, hangup_by = $7, hangup_reason = $8, hangup_cause = $9, hangup_sip_code = $10, \
             hangup_sip_reason = $11 WHERE id = $12",
            vals![
                after.status.as_str(),
                after.tm_update,
                after.tm_ringing,
                after.tm_progressing,
                after.tm_hangup,
                after.duration_ms,
                after.hangup_by.map(|b| b.as_str()),
                after.hangup_reason.map(|r| r.as_str()),
                after.hangup_cause.clone(),
                after.hangup_sip_code.map(i64::from),
                after.hangup_sip_reason.clone(),
                id
            ],
        )
        .await?;
        let event = format!(
            "call_{}",
            if change.to == CallStatus::Hangup {
                "hungup"
            } else {
                change.to.as_str()
            }
        );
        outbox::push(tx.as_mut(), &event, &after.customer_id, "call", id, &after).await?;
        if after.status == CallStatus::Hangup && after.direction == Direction::Outgoing {
            super::campaigns::call_ended(tx.as_mut(), lock, &after).await?;
        }
        if let Some(actor) = actor {
            audit::write(
                tx.as_mut(),
                Audit {
                    customer_id: &after.customer_id,
                    actor,
                    action: &format!("call.{}", change.to),
                    resource_type: "call",
                    resource_id: id,
                    before: Some(&before),
                    after: Some(&after),
                },
            )
            .await?;
        }
        self.commit_invalidating(tx, &[self.cache.call_key(id)]).await?;
        Ok(Transition {
            call: after,
            applied: true,
        })
    }
}
