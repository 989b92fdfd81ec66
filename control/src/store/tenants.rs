//! Customers (tenants) and their access keys. Keys are random 32-byte
//! secrets shown once; the store keeps their SHA-256, so a leaked database
//! does not leak working keys.
//!
//! A deleted customer stays as a tombstone (`tm_delete` set): its id is
//! never handed out again, so a new customer can never inherit the old
//! one's calls, webhooks, campaigns, audit entries or transcripts. Deleting
//! disables everything the customer owns in the same transaction (see
//! [`Store::delete_customer`]); authentication accepts only active
//! customers ([`Store::customer_active`], [`Store::authenticate_key`]).

use super::audit::{self, Audit};
use super::{outbox, vals, Store};
use crate::error::{ControlError, Result};
use crate::model::{AccessKey, Actor, Customer, Page, PageReq};
use crate::time::Millis;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// A customer to create.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    /// Id to use (1-64 of `A-Za-z0-9_-`); a UUID when absent.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: Option<String>,
    /// Display name: 1-200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
    /// Contact address: at most 254 characters (RFC 5321), one `@`, no
    /// spaces, control, bidirectional or invisible characters.
    #[schema(
        max_length = 254,
        pattern = "^[^@\\s\\u0000-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]+@[^@\\s\\u0000-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]+$"
    )]
    pub email: Option<String>,
}

const CUSTOMER_COLS: &str = "seq, id, name, email, tm_create";
const KEY_COLS: &str = "seq, id, customer_id, name, prefix, tm_create, tm_expire";

fn customer(r: &super::Row) -> Result<Customer> {
    Ok(Customer {
        id: r.text(1)?,
        name: r.text(2)?,
        email: r.opt_text(3)?,
        tm_create: r.millis(4)?,
    })
}

fn access_key(r: &super::Row) -> Result<AccessKey> {
    Ok(AccessKey {
        id: r.text(1)?,
        customer_id: r.text(2)?,
        name: r.text(3)?,
        prefix: r.text(4)?,
        tm_create: r.millis(5)?,
        tm_expire: r.opt_millis(6)?,
    })
}

/// SHA-256 of a key secret, hex.
pub fn hash_key(secret: &str) -> String {
    let d = Sha256::digest(secret.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Store {
    /// Creates a customer.
    pub async fn create_customer(&self, actor: &Actor, new: NewCustomer) -> Result<Customer> {
        let id = new.id.unwrap_or_else(super::new_id);
        if !valid_id(&id) {
            return Err(ControlError::Invalid(
                "id must be 1-64 characters of A-Z a-z 0-9 _ -".into(),
            ));
        }
        if new.name.trim().is_empty() || new.name.chars().count() > 200 {
            return Err(ControlError::Invalid("name must be 1-200 characters".into()));
        }
        if let Some(e) = &new.email {
            let parts: Vec<&str> = e.split('@').collect();
            if e.chars().count() > 254
                || parts.len() != 2
                || parts
                    .iter()
                    .any(|p| p.is_empty() || p.chars().any(char::is_whitespace))
            {
                return Err(ControlError::Invalid(
                    "email must be at most 254 characters: one '@' between a non-empty local part and domain, no spaces"
                        .into(),
                ));
            }
        }
        let c = Customer {
            id,
            name: new.name,
            email: new.email,
            tm_create: Millis::now(),
        };
        let mut tx = self.db.begin().await?;
        let inserted = tx
            .execute(
                "INSERT INTO customers (id, name, email, tm_create) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                vals![&c.id, &c.name, c.email.clone(), c.tm_create],
            )
            .await?;
        if inserted == 0 {
            return Err(ControlError::Conflict(format!(
                "customer {} exists or existed (ids of deleted customers are never reused)",
                c.id
            )));
        }
        audit::write::<(), _>(
            tx.as_mut(),
            Audit {
                customer_id: &c.id,
                actor,
                action: "customer.create",
                resource_type: "customer",
                resource_id: &c.id,
                before: None,
                after: Some(&c),
            },
        )
        .await?;
        outbox::push(tx.as_mut(), "customer_created", &c.id, "customer", &c.id, &c).await?;
        self.commit(tx).await?;
        Ok(c)
    }

    /// Creates the customer if it does not exist (the embedded default
    /// tenant at start); no audit, no event when it already exists.
    pub async fn ensure_customer(&self, id: &str, name: &str) -> Result<()> {
        let mut tx = self.db.begin().await?;
        tx.execute(
            "INSERT INTO customers (id, name, tm_create) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
            vals![id, name, Millis::now()],
        )
        .await?;
        self.commit(tx).await
    }

    /// One customer (not a deleted one).
    pub async fn get_customer(&self, id: &str) -> Result<Customer> {
        let sql = format!("SELECT {CUSTOMER_COLS} FROM customers WHERE id = $1 AND tm_delete IS NULL");
        let rows = self.db.read(&sql, vals![id]).await?;
        rows.first().map(customer).unwrap_or(Err(ControlError::NotFound))
    }

    /// Whether `id` names an existing customer that was not deleted
    /// (through the cache, which keeps only "active": a customer is not
    /// undeleted, and one created later is never found stale).
    pub async fn customer_active(&self, id: &str) -> Result<bool> {
        let read = async {
            let rows = self
                .db
                .read(
                    "SELECT 1 FROM customers WHERE id = $1 AND tm_delete IS NULL",
                    vals![id],
                )
                .await?;
            Ok(rows.into_iter().next())
        };
        let found = self
            .cached_row(&self.cache.customer_key(id), read, |_| Ok(()))
            .await?;
        Ok(found.is_some())
    }

    /// All customers (not the deleted ones), newest first.
    pub async fn list_customers(&self, page: PageReq) -> Result<Page<Customer>> {
        let sql = format!(
            "SELECT {CUSTOMER_COLS} FROM customers WHERE seq < $1 AND tm_delete IS NULL ORDER BY seq DESC LIMIT $2"
        );
        self.read_page(&sql, page, customer).await
    }

    /// Deletes a customer, in one transaction with its audit entry and its
    /// `customer_deleted` event: the row stays as a tombstone (its id is
    /// never reused), its access keys and billing account are removed, its
    /// webhook endpoints are disabled (`disabled_reason` "customer
    /// deleted") and their pending deliveries dropped, its campaigns not
    /// yet over are stopped. Its calls, billing records, transcripts and
    /// audit entries stay as history. Returns the ids of its calls not yet
    /// over, for the caller to hang up on the media plane.
    pub async fn delete_customer(&self, actor: &Actor, id: &str) -> Result<Vec<String>> {
        let mut tx = self.db.begin().await?;
        let sql = format!(
            "SELECT {CUSTOMER_COLS} FROM customers WHERE id = $1 AND tm_delete IS NULL{}",
            self.dialect().for_update()
        );
        let rows = tx.query(&sql, vals![id]).await?;
        let before = rows
            .first()
            .map(customer)
            .unwrap_or(Err(ControlError::NotFound))?;
        let now = Millis::now();
        let mut stale = vec![self.cache.customer_key(id)];
        for r in tx
            .query(
                "SELECT key_hash FROM access_keys WHERE customer_id = $1",
                vals![id],
            )
            .await?
        {
            stale.push(self.cache.access_key_key(&r.text(0)?));
        }
        tx.execute("DELETE FROM access_keys WHERE customer_id = $1", vals![id])
            .await?;
        tx.execute("DELETE FROM billing_accounts WHERE customer_id = $1", vals![id])
            .await?;
        tx.execute(
            "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = 'customer deleted', tm_update = $1 \
             WHERE customer_id = $2",
            vals![now, id],
        )
        .await?;
        tx.execute(
            "DELETE FROM webhook_deliveries WHERE customer_id = $1 AND status = 'pending'",
            vals![id],
        )
        .await?;
        tx.execute(
            "UPDATE campaigns SET status = 'stopped', tm_end = $1, tm_update = $1 \
             WHERE customer_id = $2 AND status NOT IN ('completed', 'stopped')",
            vals![now, id],
        )
        .await?;
        tx.execute(
            "UPDATE customers SET tm_delete = $1 WHERE id = $2",
            vals![now, id],
        )
        .await?;
        let open = tx
            .query(
                "SELECT id FROM calls WHERE customer_id = $1 AND status <> 'hangup'",
                vals![id],
            )
            .await?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<Vec<_>>>()?;
        audit::write::<_, ()>(
            tx.as_mut(),
            Audit {
                customer_id: id,
                actor,
                action: "customer.delete",
                resource_type: "customer",
                resource_id: id,
                before: Some(&before),
                after: None,
            },
        )
        .await?;
        outbox::push(tx.as_mut(), "customer_deleted", id, "customer", id, &before).await?;
        self.commit_invalidating(tx, &stale).await?;
        Ok(open)
    }

    /// Makes a key for a customer; returns it and its secret (shown once).
    pub async fn create_access_key(
        &self,
        actor: &Actor,
        customer_id: &str,
        name: &str,
        tm_expire: Option<Millis>,
    ) -> Result<(AccessKey, String)> {
        if name.chars().count() > 200 {
            return Err(ControlError::Invalid(
                "name must be at most 200 characters".into(),
            ));
        }
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let secret = format!(
            "vbk_{}",
            raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let key = AccessKey {
            id: super::new_id(),
            customer_id: customer_id.to_owned(),
            name: name.to_owned(),
            prefix: secret.chars().take(12).collect(),
            tm_create: Millis::now(),
            tm_expire,
        };
        let mut tx = self.db.begin().await?;
        let sql = format!(
            "SELECT id FROM customers WHERE id = $1 AND tm_delete IS NULL{}",
            self.dialect().for_update()
        );
        if tx.query(&sql, vals![customer_id]).await?.is_empty() {
            return Err(ControlError::NotFound);
        }
        tx.execute(
            "INSERT INTO access_keys (id, customer_id, name, key_hash, prefix, tm_create, tm_expire) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vals![
                &key.id,
                customer_id,
                name,
                hash_key(&secret),
                &key.prefix,
                key.tm_create,
                key.tm_expire
            ],
        )
        .await?;
        audit::write::<(), _>(
            tx.as_mut(),
            Audit {
                customer_id,
                actor,
                action: "access_key.create",
                resource_type: "access_key",
                resource_id: &key.id,
                before: None,
                after: Some(&key),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok((key, secret))
    }

    /// A customer's keys.
    pub async fn list_access_keys(&self, customer_id: &str) -> Result<Vec<AccessKey>> {
        let sql = format!("SELECT {KEY_COLS} FROM access_keys WHERE customer_id = $1 ORDER BY seq DESC");
        let rows = self.db.read(&sql, vals![customer_id]).await?;
        rows.iter().map(access_key).collect()
    }

    /// Deletes one of a customer's keys.
    pub async fn delete_access_key(&self, actor: &Actor, customer_id: &str, id: &str) -> Result<()> {
        let mut tx = self.db.begin().await?;
        // The key's columns, then its hash (column 7), for the cache.
        let sql = format!(
            "SELECT {KEY_COLS}, key_hash FROM access_keys WHERE customer_id = $1 AND id = $2{}",
            self.dialect().for_update()
        );
        let rows = tx.query(&sql, vals![customer_id, id]).await?;
        let row = rows.first().ok_or(ControlError::NotFound)?;
        let before = access_key(row)?;
        let stale = [self.cache.access_key_key(&row.text(7)?)];
        tx.execute(
            "DELETE FROM access_keys WHERE customer_id = $1 AND id = $2",
            vals![customer_id, id],
        )
        .await?;
        audit::write::<_, ()>(
            tx.as_mut(),
            Audit {
                customer_id,
                actor,
                action: "access_key.delete",
                resource_type: "access_key",
                resource_id: id,
                before: Some(&before),
                after: None,
            },
        )
        .await?;
        outbox::push(
            tx.as_mut(),
            "access_key_deleted",
            customer_id,
            "access_key",
            id,
            &before,
        )
        .await?;
        self.commit_invalidating(tx, &stale).await
    }

    /// The key a secret belongs to, if it exists, has not expired and its
    /// customer is active.
    pub async fn authenticate_key(&self, secret: &str) -> Result<Option<AccessKey>> {
        let sql = format!(
            "SELECT {} FROM access_keys k JOIN customers c ON c.id = k.customer_id \
             WHERE k.key_hash = $1 AND c.tm_delete IS NULL",
            KEY_COLS
                .split(", ")
                .map(|c| format!("k.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let hash = hash_key(secret);
        let read = async { Ok(self.db.read(&sql, vals![&hash]).await?.into_iter().next()) };
        let found = self
            .cached_row(&self.cache.access_key_key(&hash), read, access_key)
            .await?;
        let Some(key) = found else {
            return Ok(None);
        };
        if key.tm_expire.is_some_and(|e| e <= Millis::now()) {
            return Ok(None);
        }
        Ok(Some(key))
    }
}
