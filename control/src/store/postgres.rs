//! The production store: PostgreSQL through tokio-postgres and a deadpool
//! pool. Statements are prepared once per connection (`prepare_cached`).
//!
//! A transaction is `BEGIN` ... `COMMIT` on one pooled connection. If it is
//! dropped before commit (an error, a refused change, a replay), a task
//! sends `ROLLBACK` and only then returns the connection to the pool; if
//! that fails, or there is no runtime to run it, the connection is closed
//! instead (which makes the server roll back). A connection is never handed
//! to another request mid-transaction.

use super::{Backend, Dialect, Row, Tx, Val};
use crate::error::{ControlError, Result};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::NoTls;

/// PostgreSQL backend.
pub struct PgBackend {
    pool: Pool,
    /// Statements sent to the server (`BEGIN` and `COMMIT` included).
    statements: Arc<AtomicU64>,
}

impl PgBackend {
    /// Connects a pool of up to `max` connections and checks one.
    pub async fn connect(url: &str, max: usize) -> Result<Self> {
        let cfg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| ControlError::Config(format!("postgres url: {e}")))?;
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(max)
            .build()
            .map_err(|e| ControlError::Config(format!("postgres pool: {e}")))?;
        // Fail at start, with the server's reason, rather than on first use.
        drop(pool.get().await?);
        Ok(PgBackend {
            pool,
            statements: Arc::default(),
        })
    }
}

fn params(p: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    p.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn convert(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Row>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut vals = Vec::with_capacity(r.len());
        for (i, col) in r.columns().iter().enumerate() {
            let t = col.type_();
            vals.push(if *t == Type::INT8 {
                Val::Int(r.try_get::<_, Option<i64>>(i)?)
            } else if *t == Type::INT4 {
                Val::Int(r.try_get::<_, Option<i32>>(i)?.map(i64::from))
            } else if *t == Type::TEXT || *t == Type::VARCHAR {
                Val::Text(r.try_get::<_, Option<String>>(i)?)
            } else if *t == Type::BOOL {
                Val::Int(r.try_get::<_, Option<bool>>(i)?.map(i64::from))
            } else {
                return Err(ControlError::Row(format!("column {i}: unexpected type {t}")));
            });
        }
        out.push(Row(vals));
    }
    Ok(out)
}

async fn query(c: &Object, statements: &AtomicU64, sql: &str, p: &[Val]) -> Result<Vec<Row>> {
    statements.fetch_add(1, Relaxed);
    let stmt = c.prepare_cached(sql).await?;
    convert(c.query(&stmt, &params(p)).await?)
}

#[async_trait]
impl Backend for PgBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn begin(&self) -> Result<Box<dyn Tx>> {
        let conn = self.pool.get().await?;
        self.statements.fetch_add(1, Relaxed);
        conn.batch_execute("BEGIN").await?;
        Ok(Box::new(PgTx {
            conn: Some(conn),
            statements: self.statements.clone(),
        }))
    }

    async fn read(&self, sql: &str, p: &[Val]) -> Result<Vec<Row>> {
        let conn = self.pool.get().await?;
        query(&conn, &self.statements, sql, p).await
    }

    fn statements(&self) -> u64 {
        self.statements.load(Relaxed)
    }
}

struct PgTx {
    /// `None` once committed.
    conn: Option<Object>,
    statements: Arc<AtomicU64>,
}

impl PgTx {
    fn conn(&self) -> Result<&Object> {
        self.conn
            .as_ref()
            .ok_or_else(|| ControlError::Store("transaction already finished".into()))
    }
}

#[async_trait]
impl Tx for PgTx {
    async fn query(&mut self, sql: &str, p: &[Val]) -> Result<Vec<Row>> {
        query(self.conn()?, &self.statements, sql, p).await
    }

    async fn execute(&mut self, sql: &str, p: &[Val]) -> Result<u64> {
        let c = self.conn()?;
        self.statements.fetch_add(1, Relaxed);
        let stmt = c.prepare_cached(sql).await?;
        Ok(c.execute(&stmt, &params(p)).await?)
    }

    async fn batch(&mut self, sql: &str) -> Result<()> {
        self.statements.fetch_add(1, Relaxed);
        Ok(self.conn()?.batch_execute(sql).await?)
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let conn = self
            .conn
            .take()
            .ok_or_else(|| ControlError::Store("transaction already finished".into()))?;
        self.statements.fetch_add(1, Relaxed);
        match conn.batch_execute("COMMIT").await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Unknown state: do not return this connection to the pool.
                let _ = Object::take(conn);
                Err(e.into())
            }
        }
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if conn.batch_execute("ROLLBACK").await.is_err() {
                        let _ = Object::take(conn);
                    }
                });
            }
            // Closing the connection rolls the transaction back server-side.
            Err(_) => drop(Object::take(conn)),
        }
    }
}
