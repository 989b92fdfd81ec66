//! The store: one [`Store`] with the business rules (transactions, the call
//! state machine, outbox rows, audit rows, tenant scoping) written once, over
//! a small [`Backend`] that each database implements: PostgreSQL
//! ([`postgres`], production) and SQLite ([`sqlite`], the embedded default).
//!
//! Why not one `Store` trait implemented twice: every rule would then exist
//! twice and drift. Here a backend only runs SQL (`$1` placeholders, `BIGINT`
//! and `TEXT` columns, `RETURNING`, `ON CONFLICT`, all of which both accept);
//! the conformance suite (`tests/store_conformance.rs`) runs the same cases
//! against both.

mod audit;
pub mod billing;
mod call_signals;
mod calls;
pub mod campaigns;
pub mod dead_letters;
mod migrations;
mod outbox;
pub mod postgres;
pub mod recordings;
pub mod sqlite;
mod tenants;
mod transcripts;
mod value;
pub mod webhooks;

pub use call_signals::{CallSignal, Dtmf};
pub use outbox::{OutboxRow, RESOURCE_TYPES};
pub use tenants::{hash_key, NewCustomer};
pub use transcripts::SegmentTime;
pub use value::{Row, Val};

use crate::cache::Cache;
use crate::error::{ControlError, Result};
use async_trait::async_trait;
use std::sync::Arc;

/// The SQL dialect a backend speaks (for the few statements that differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `FOR UPDATE` row locks, identity columns.
    Postgres,
    /// SQLite: one writer at a time (`BEGIN IMMEDIATE`), so no row locks.
    Sqlite,
}

impl Dialect {
    /// The row-lock suffix for a `SELECT` that precedes an update.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }
}

/// A database connection source.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Which SQL it speaks.
    fn dialect(&self) -> Dialect;
    /// Starts a write transaction.
    async fn begin(&self) -> Result<Box<dyn Tx>>;
    /// Runs one read-only statement outside a transaction.
    async fn read(&self, sql: &str, params: &[Val]) -> Result<Vec<Row>>;
    /// Statements sent to a database server so far (0 for the embedded
    /// store, which has none).
    fn statements(&self) -> u64 {
        0
    }
}

/// An open transaction. Dropping it without [`Tx::commit`] rolls back.
#[async_trait]
pub trait Tx: Send {
    /// Runs a statement that returns rows.
    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>>;
    /// Runs a statement; returns the rows it changed.
    async fn execute(&mut self, sql: &str, params: &[Val]) -> Result<u64>;
    /// Runs several statements without parameters (migrations).
    async fn batch(&mut self, sql: &str) -> Result<()>;
    /// Commits; only after this returns `Ok` is the write durable.
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// The control plane's store (cheap to clone).
#[derive(Clone)]
pub struct Store {
    db: Arc<dyn Backend>,
    /// Woken after every commit, so the outbox relay need not poll.
    /// Counts commits; every waiter holds its own receiver, so each one
    /// (the relay, the webhook worker) sees every commit, none is lost.
    committed: Arc<tokio::sync::watch::Sender<u64>>,
    /// This instance's node id, written on the calls it creates (so that
    /// after a restart it can end the calls that died with it).
    node: Arc<str>,
    /// The API's hot reads (crate::cache); off unless [`Store::with_cache`].
    cache: Cache,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dialect", &self.db.dialect())
            .finish()
    }
}

impl Store {
    /// Wraps a backend and applies the migrations it lacks.
    pub async fn open(db: Arc<dyn Backend>) -> Result<Self> {
        migrations::apply(db.as_ref()).await?;
        Ok(Store {
            db,
            committed: Arc::new(tokio::sync::watch::channel(0).0),
            node: Arc::from("local"),
            cache: Cache::off(),
        })
    }

    /// Opens the store a URL names: `postgres://...` or `sqlite://<path>`
    /// (`sqlite::memory:` for a throwaway one).
    pub async fn connect(url: &str) -> Result<Self> {
        let db: Arc<dyn Backend> = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Arc::new(postgres::PgBackend::connect(url, 16).await?)
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            Arc::new(sqlite::SqliteBackend::open(path)?)
        } else if url == "sqlite::memory:" {
            Arc::new(sqlite::SqliteBackend::open(":memory:")?)
        } else {
            return Err(ControlError::Config(format!(
                "store url must start with postgres:// or sqlite:// (got {})",
                crate::secret::SecretUrl::new(url)
            )));
        };
        Self::open(db).await
    }

    /// The same store, writing `node` as the owner of the calls it creates.
    pub fn with_node(mut self, node: &str) -> Self {
        self.node = Arc::from(node);
        self
    }

    /// This instance's node id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The same store, reading access keys, customers and calls through
    /// `cache` and invalidating it on their writes.
    pub fn with_cache(mut self, cache: Cache) -> Self {
        self.cache = cache;
        self
    }

    /// The cache the store reads through.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Statements sent to the database server so far (PostgreSQL; 0 for
    /// the embedded store).
    pub fn statements(&self) -> u64 {
        self.db.statements()
    }

    /// A row through the cache, mapped by `map`: the cached one under
    /// `key`, else `read`'s, which fills the cache. A cached row this
    /// version cannot map (another version's columns during a rolling
    /// upgrade, or a damaged value) is dropped and the database read
    /// instead.
    pub(crate) async fn cached_row<T, F>(
        &self,
        key: &str,
        read: F,
        map: impl Fn(&Row) -> Result<T>,
    ) -> Result<Option<T>>
    where
        F: std::future::Future<Output = Result<Option<Row>>>,
    {
        if let Some(bytes) = self.cache.get(key).await {
            let cached = serde_json::from_slice::<Row>(&bytes)
                .map_err(|e| ControlError::Row(e.to_string()))
                .and_then(|row| map(&row));
            match cached {
                Ok(value) => return Ok(Some(value)),
                Err(e) => {
                    tracing::warn!(key, error = %e, "a cached row does not fit; reading the database");
                    self.cache.invalidate(&[key.to_owned()]).await;
                }
            }
        }
        let Some(row) = read.await? else {
            return Ok(None);
        };
        let value = map(&row)?;
        if let Ok(bytes) = serde_json::to_vec(&row) {
            self.cache.fill(key, bytes).await;
        }
        Ok(Some(value))
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// Commits and wakes the outbox relay.
    pub(crate) async fn commit(&self, tx: Box<dyn Tx>) -> Result<()> {
        self.commit_invalidating(tx, &[]).await
    }

    /// Commits, invalidates the cache's `keys`, then wakes the outbox
    /// relay: the database first, then the cache, then the event.
    pub(crate) async fn commit_invalidating(&self, tx: Box<dyn Tx>, keys: &[String]) -> Result<()> {
        tx.commit().await?;
        self.cache.invalidate(keys).await;
        self.committed.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Commits of this process, as a counter to wait on: `changed()`
    /// resolves once a commit happened since the receiver last looked (the
    /// relay's and the webhook worker's wake-up).
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// One page of a tenant's rows of `table` (newest first), optionally
    /// where `column = value`; `limit + 1` rows, for [`page`].
    pub(crate) async fn tenant_rows(
        &self,
        cols: &str,
        table: &str,
        customer_id: &str,
        filter: Option<(&str, &str)>,
        page: crate::model::PageReq,
    ) -> Result<Vec<Row>> {
        let before = Val::from(page.before.unwrap_or(i64::MAX));
        let limit = Val::from(i64::from(page.limit) + 1);
        match filter {
            Some((column, value)) => {
                let sql = format!(
                    "SELECT {cols} FROM {table} WHERE customer_id = $1 AND seq < $2 AND {column} = $3 ORDER BY seq DESC LIMIT $4"
                );
                self.db
                    .read(&sql, &[customer_id.into(), before, value.into(), limit])
                    .await
            }
            None => {
                let sql = format!(
                    "SELECT {cols} FROM {table} WHERE customer_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
                );
                self.db.read(&sql, &[customer_id.into(), before, limit]).await
            }
        }
    }

    /// One row of a tenant's (`customer_id = $1 AND id = $2`), mapped by
    /// `map`; `NotFound` when there is none, whoever else owns that id.
    pub(crate) async fn tenant_row<T>(
        &self,
        cols: &str,
        table: &str,
        customer_id: &str,
        id: &str,
        map: fn(&Row) -> Result<T>,
    ) -> Result<T> {
        let sql = format!("SELECT {cols} FROM {table} WHERE customer_id = $1 AND id = $2");
        let rows = self.db.read(&sql, &[customer_id.into(), id.into()]).await?;
        rows.first().map(map).unwrap_or(Err(ControlError::NotFound))
    }

    /// Checks that the database answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        self.db.read("SELECT 1", &[]).await.map(|_| ())
    }
}

/// A new random id (UUID v4).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `Val`s from a list of expressions.
macro_rules! vals {
    ($($v:expr),* $(,)?) => { &[$($crate::store::Val::from($v)),*] };
}
pub(crate) use vals;

impl Store {
    /// One page of a listing not scoped to a tenant: `sql` takes `$1` =
    /// the cursor (`seq <`) and `$2` = `limit + 1`.
    pub(crate) async fn read_page<T>(
        &self,
        sql: &str,
        req: crate::model::PageReq,
        map: impl Fn(&Row) -> Result<T>,
    ) -> Result<crate::model::Page<T>> {
        let rows = self
            .db
            .read(
                sql,
                vals![req.before.unwrap_or(i64::MAX), i64::from(req.limit) + 1],
            )
            .await?;
        page(rows, req, map)
    }
}

/// Turns `limit + 1` rows (column 0 = `seq`) into a page and its cursor.
pub(crate) fn page<T>(
    mut rows: Vec<Row>,
    req: crate::model::PageReq,
    map: impl Fn(&Row) -> Result<T>,
) -> Result<crate::model::Page<T>> {
    let more = rows.len() > req.limit as usize;
    rows.truncate(req.limit as usize);
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => Some(last.int(0)?.to_string()),
        _ => None,
    };
    let items = rows.iter().map(map).collect::<Result<Vec<_>>>()?;
    Ok(crate::model::Page { items, next_cursor })
}
