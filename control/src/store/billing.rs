//! Billing accounts (a customer's rate plan and balance) and billing
//! records (one per hung-up call of a customer with an account).
//!
//! [`Store::bill_call`] is the one place a call is charged: one transaction
//! locks the customer's account row, inserts the record (unique by call and
//! by event id, so a redelivered `call_hungup` or a second billing worker
//! charges nothing), deducts the cost, and writes `billing_record_created`
//! and, when the balance crosses below the plan's threshold,
//! `customer_balance_low` to the outbox.

use super::audit::{self, Audit};
use super::{outbox, vals, Row, Store};
use crate::billing::RatePlan;
use crate::error::{ControlError, Result};
use crate::model::{Actor, Page, PageReq};
use crate::state::CallStatus;
use crate::time::Millis;
use serde::Serialize;
use utoipa::ToSchema;

/// A customer's billing account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BillingAccount {
    /// Customer.
    pub customer_id: String,
    /// Balance, micro-units (may go negative: calls in progress are billed
    /// when they end).
    pub balance_micros: i64,
    /// The rate plan.
    pub plan: RatePlan,
    /// Last change, RFC 3339.
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: Millis,
}

/// What one call cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BillingRecord {
    /// Record id.
    pub id: String,
    /// Customer.
    pub customer_id: String,
    /// The call.
    pub call_id: String,
    /// The `call_hungup` event it was made from.
    pub event_id: String,
    /// Answered time, ms.
    pub answered_ms: i64,
    /// Seconds billed after the plan's increments.
    pub billable_s: i64,
    /// Cost, micro-units.
    pub cost_micros: i64,
    /// Balance after this charge, micro-units.
    pub balance_after_micros: i64,
    /// When it was billed, RFC 3339.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
}

/// Whether [`Store::bill_call`] charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Billed {
    /// Charged now.
    New(BillingRecord),
    /// Charged before (same call or event).
    Already,
    /// The customer has no billing account: nothing to charge.
    NoAccount,
}

const ACCOUNT_COLS: &str = "customer_id, balance_micros, price_per_minute_micros, increment_first_s, \
     increment_next_s, min_charge_micros, low_balance_threshold_micros, tm_update";
const RECORD_COLS: &str = "seq, id, customer_id, call_id, event_id, answered_ms, billable_s, cost_micros, \
     balance_after_micros, tm_create";

fn account(r: &Row) -> Result<BillingAccount> {
    Ok(BillingAccount {
        customer_id: r.text(0)?,
        balance_micros: r.int(1)?,
        plan: RatePlan {
            price_per_minute_micros: r.int(2)?,
            increment_first_s: r.int(3)?,
            increment_next_s: r.int(4)?,
            min_charge_micros: r.int(5)?,
            low_balance_threshold_micros: r.int(6)?,
        },
        tm_update: r.millis(7)?,
    })
}

fn record(r: &Row) -> Result<BillingRecord> {
    Ok(BillingRecord {
        id: r.text(1)?,
        customer_id: r.text(2)?,
        call_id: r.text(3)?,
        event_id: r.text(4)?,
        answered_ms: r.int(5)?,
        billable_s: r.int(6)?,
        cost_micros: r.int(7)?,
        balance_after_micros: r.int(8)?,
        tm_create: r.millis(9)?,
    })
}

/// The `customer_balance_low` event's resource.
#[derive(Serialize)]
struct BalanceLow {
    balance_micros: i64,
    low_balance_threshold_micros: i64,
    call_id: String,
}

impl Store {
    async fn account_locked(
        &self,
        tx: &mut dyn super::Tx,
        customer_id: &str,
    ) -> Result<Option<BillingAccount>> {
        let sql = format!(
            "SELECT {ACCOUNT_COLS} FROM billing_accounts WHERE customer_id = $1{}",
            self.dialect().for_update()
        );
        tx.query(&sql, vals![customer_id])
            .await?
            .first()
            .map(account)
            .transpose()
    }

    /// Sets a customer's rate plan, opening its account (balance 0) if it
    /// has none. Audited.
    pub async fn set_rate_plan(
        &self,
        actor: &Actor,
        customer_id: &str,
        plan: &RatePlan,
    ) -> Result<BillingAccount> {
        plan.validate().map_err(ControlError::Invalid)?;
        let mut tx = self.db.begin().await?;
        let exists = tx
            .query("SELECT id FROM customers WHERE id = $1", vals![customer_id])
            .await?;
        if exists.is_empty() {
            return Err(ControlError::NotFound);
        }
        let before = self.account_locked(tx.as_mut(), customer_id).await?;
        let now = Millis::now();
        tx.execute(
            "INSERT INTO billing_accounts (customer_id, balance_micros, price_per_minute_micros, increment_first_s, \
             increment_next_s, min_charge_micros, low_balance_threshold_micros, tm_update) \
             VALUES ($1, 0, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (customer_id) DO UPDATE SET price_per_minute_micros = $2, increment_first_s = $3, \
             increment_next_s = $4, min_charge_micros = $5, low_balance_threshold_micros = $6, tm_update = $7",
            vals![
                customer_id,
                plan.price_per_minute_micros,
                plan.increment_first_s,
                plan.increment_next_s,
                plan.min_charge_micros,
                plan.low_balance_threshold_micros,
                now
            ],
        )
        .await?;
        let after = self
            .account_locked(tx.as_mut(), customer_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        audit::write(
            tx.as_mut(),
            Audit {
                customer_id,
                actor,
                action: "billing.plan",
                resource_type: "billing_account",
                resource_id: customer_id,
                before: before.as_ref(),
                after: Some(&after),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(after)
    }

    /// Adds `amount_micros` (negative to correct) to a customer's balance.
    /// Audited.
    pub async fn credit(
        &self,
        actor: &Actor,
        customer_id: &str,
        amount_micros: i64,
    ) -> Result<BillingAccount> {
        let mut tx = self.db.begin().await?;
        let before = self
            .account_locked(tx.as_mut(), customer_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        let balance = before
            .balance_micros
            .checked_add(amount_micros)
            .ok_or_else(|| ControlError::Invalid("balance would overflow".into()))?;
        let now = Millis::now();
        tx.execute(
            "UPDATE billing_accounts SET balance_micros = $1, tm_update = $2 WHERE customer_id = $3",
            vals![balance, now, customer_id],
        )
        .await?;
        let after = BillingAccount {
            balance_micros: balance,
            tm_update: now,
            ..before.clone()
        };
        audit::write(
            tx.as_mut(),
            Audit {
                customer_id,
                actor,
                action: "billing.credit",
                resource_type: "billing_account",
                resource_id: customer_id,
                before: Some(&before),
                after: Some(&after),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(after)
    }

    /// A customer's account.
    pub async fn billing_account(&self, customer_id: &str) -> Result<BillingAccount> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM billing_accounts WHERE customer_id = $1");
        let rows = self.db.read(&sql, vals![customer_id]).await?;
        rows.first().map(account).unwrap_or(Err(ControlError::NotFound))
    }

    /// Charges a hung-up call once (module docs). `event_id` is its
    /// `call_hungup` event. A call that is not hung up yet is refused
    /// (`Conflict`); an unknown call is `NotFound`.
    pub async fn bill_call(&self, event_id: &str, call_id: &str) -> Result<Billed> {
        let mut tx = self.db.begin().await?;
        let rows = tx
            .query(
                "SELECT customer_id, status, tm_progressing, tm_hangup FROM calls WHERE id = $1",
                vals![call_id],
            )
            .await?;
        let Some(call) = rows.first() else {
            return Err(ControlError::NotFound);
        };
        let customer_id = call.text(0)?;
        if call.text(1)? != CallStatus::Hangup.as_str() {
            return Err(ControlError::Conflict(format!("call {call_id} is not hung up")));
        }
        let answered_ms = match (call.opt_int(2)?, call.opt_int(3)?) {
            (Some(answer), Some(hangup)) => (hangup - answer).max(0),
            _ => 0,
        };
        // The lock serialises charges of one customer: the balance stays exact.
        let Some(acct) = self.account_locked(tx.as_mut(), &customer_id).await? else {
            return Ok(Billed::NoAccount);
        };
        let done = tx
            .query(
                "SELECT id FROM billing_records WHERE call_id = $1 OR event_id = $2",
                vals![call_id, event_id],
            )
            .await?;
        if !done.is_empty() {
            return Ok(Billed::Already);
        }
        let billable_s = acct.plan.billable_seconds(answered_ms);
        let cost = acct.plan.cost(billable_s);
        let balance = acct.balance_micros.saturating_sub(cost);
        let now = Millis::now();
        let rec = BillingRecord {
            id: super::new_id(),
            customer_id: customer_id.clone(),
            call_id: call_id.to_owned(),
            event_id: event_id.to_owned(),
            answered_ms,
            billable_s,
            cost_micros: cost,
            balance_after_micros: balance,
            tm_create: now,
        };
        tx.execute(
            "INSERT INTO billing_records (id, customer_id, call_id, event_id, answered_ms, billable_s, cost_micros, \
             balance_after_micros, tm_create) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vals![
                &rec.id,
                &customer_id,
                call_id,
                event_id,
                answered_ms,
                billable_s,
                cost,
                balance,
                now
            ],
        )
        .await?;
        tx.execute(
            "UPDATE billing_accounts SET balance_micros = $1, tm_update = $2 WHERE customer_id = $3",
            vals![balance, now, &customer_id],
        )
        .await?;
        outbox::push(
            tx.as_mut(),
            "billing_record_created",
            &customer_id,
            "billing_record",
            &rec.id,
            &rec,
        )
        .await?;
        let threshold = acct.plan.low_balance_threshold_micros;
        if acct.balance_micros >= threshold && balance < threshold {
            let low = BalanceLow {
                balance_micros: balance,
                low_balance_threshold_micros: threshold,
                call_id: call_id.to_owned(),
            };
            outbox::push(
                tx.as_mut(),
                "customer_balance_low",
                &customer_id,
                "customer",
                &customer_id,
                &low,
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok(Billed::New(rec))
    }

    /// Hung-up calls of customers with an account, hung up at or after
    /// `since`, that have no billing record, with their `call_hungup` event
    /// ids (for the billing worker's sweep).
    pub async fn unbilled_calls(&self, since: Millis, limit: u32) -> Result<Vec<(String, String)>> {
        let rows = self
            .db
            .read(
                "SELECT c.id, o.event_id FROM calls c \
                 JOIN billing_accounts a ON a.customer_id = c.customer_id \
                 JOIN outbox o ON o.resource_id = c.id AND o.event_type = 'call_hungup' \
                 WHERE c.tm_hangup >= $1 AND c.status = 'hangup' \
                 AND NOT EXISTS (SELECT 1 FROM billing_records b WHERE b.call_id = c.id) \
                 ORDER BY c.tm_hangup LIMIT $2",
                vals![since, i64::from(limit)],
            )
            .await?;
        rows.iter().map(|r| Ok((r.text(0)?, r.text(1)?))).collect()
    }

    /// A tenant's billing records, newest first, optionally of one call.
    pub async fn list_billing_records(
        &self,
        customer_id: &str,
        call_id: Option<&str>,
        page: PageReq,
    ) -> Result<Page<BillingRecord>> {
        let filter = call_id.map(|c| ("call_id", c));
        let rows = self
            .tenant_rows(RECORD_COLS, "billing_records", customer_id, filter, page)
            .await?;
        super::page(rows, page, record)
    }

    /// One of a tenant's billing records.
    pub async fn get_billing_record(&self, customer_id: &str, id: &str) -> Result<BillingRecord> {
        self.tenant_row(RECORD_COLS, "billing_records", customer_id, id, record)
            .await
    }
}
