//! The audit log: changes and deletions made through the API, with actor,
//! action, resource and before/after state, written in the change's own
//! transaction.

use super::{vals, Store, Tx};
use crate::error::Result;
use crate::model::{Actor, AuditEntry, Page, PageReq};
use crate::time::Millis;
use serde::Serialize;

/// One audit record to write.
pub(crate) struct Audit<'a, B: Serialize, A: Serialize> {
    pub customer_id: &'a str,
    pub actor: &'a Actor,
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub before: Option<&'a B>,
    pub after: Option<&'a A>,
}

fn json<T: Serialize>(v: Option<&T>) -> Option<String> {
    v.and_then(|v| serde_json::to_string(v).ok())
}

pub(crate) async fn write<B: Serialize, A: Serialize>(tx: &mut dyn Tx, a: Audit<'_, B, A>) -> Result<()> {
    tx.execute(
        "INSERT INTO audit_log (id, customer_id, actor, action, resource_type, resource_id, before_state, after_state, tm_create) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        vals![
            super::new_id(),
            a.customer_id,
            &a.actor.id,
            a.action,
            a.resource_type,
            a.resource_id,
            json(a.before),
            json(a.after),
            Millis::now()
        ],
    )
    .await?;
    Ok(())
}

const AUDIT_COLS: &str =
    "seq, id, customer_id, actor, action, resource_type, resource_id, before_state, after_state, tm_create";

impl Store {
    /// Records a request that changes nothing in the store by itself (a
    /// call transfer asked of the media plane) in the audit log.
    pub async fn audit_request(
        &self,
        actor: &Actor,
        customer_id: &str,
        action: &str,
        resource: (&str, &str),
        request: &serde_json::Value,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        write::<(), _>(
            tx.as_mut(),
            Audit {
                customer_id,
                actor,
                action,
                resource_type: resource.0,
                resource_id: resource.1,
                before: None,
                after: Some(request),
            },
        )
        .await?;
        self.commit(tx).await
    }

    /// A tenant's audit log, newest first.
    pub async fn list_audit(&self, customer_id: &str, page: PageReq) -> Result<Page<AuditEntry>> {
        let rows = self
            .tenant_rows(AUDIT_COLS, "audit_log", customer_id, None, page)
            .await?;
        super::page(rows, page, |r| {
            Ok(AuditEntry {
                id: r.text(1)?,
                customer_id: r.text(2)?,
                actor: r.text(3)?,
                action: r.text(4)?,
                resource_type: r.text(5)?,
                resource_id: r.text(6)?,
                before: r.json(7)?,
                after: r.json(8)?,
                tm_create: r.millis(9)?,
            })
        })
    }
}
