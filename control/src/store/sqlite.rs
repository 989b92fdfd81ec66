//! The embedded store: SQLite (bundled, no server), one file under the data
//! dir. One connection behind an async mutex; a write transaction is
//! `BEGIN IMMEDIATE`, so writers queue instead of failing with `SQLITE_BUSY`.
//!
//! Statements run on the calling task rather than in `spawn_blocking`: with
//! WAL and `synchronous=NORMAL` a commit does not wait for the disk and the
//! indexed statements here take microseconds, less than a thread hop would
//! cost. Deployments that need more use PostgreSQL.

use super::{Backend, Dialect, Row, Tx, Val};
use crate::error::{ControlError, Result};
use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// SQLite backend.
pub struct SqliteBackend {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database file; `:memory:` for a
    /// private in-memory one.
    pub fn open(path: &str) -> Result<Self> {
        if path != ":memory:" {
            if let Some(dir) = std::path::Path::new(path).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| ControlError::Config(format!("data dir {}: {e}", dir.display())))?;
                }
            }
        }
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(SqliteBackend {
            conn: Arc::new(Mutex::new(conn)),
        })
    }
}

/// `$1` -> `?1`: the SQL is written once with PostgreSQL's placeholders.
fn placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    if sql.contains('$') {
        sql.replace('$', "?").into()
    } else {
        sql.into()
    }
}

fn to_sql(v: &Val) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match v {
        Val::Int(Some(i)) => Value::Integer(*i),
        Val::Text(Some(s)) => Value::Text(s.clone()),
        Val::Int(None) | Val::Text(None) | Val::Null => Value::Null,
    }
}

fn run_query(conn: &Connection, sql: &str, params: &[Val]) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(&placeholders(sql))?;
    let n = stmt.column_count();
    let params: Vec<_> = params.iter().map(to_sql).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut vals = Vec::with_capacity(n);
        for i in 0..n {
            vals.push(match r.get_ref(i)? {
                ValueRef::Null => Val::Null,
                ValueRef::Integer(v) => Val::Int(Some(v)),
                ValueRef::Text(t) => Val::Text(Some(String::from_utf8_lossy(t).into_owned())),
                ValueRef::Real(_) | ValueRef::Blob(_) => {
                    return Err(ControlError::Row(format!("column {i}: unexpected type")))
                }
            });
        }
        out.push(Row(vals));
    }
    Ok(out)
}

fn run_execute(conn: &Connection, sql: &str, params: &[Val]) -> Result<u64> {
    let mut stmt = conn.prepare_cached(&placeholders(sql))?;
    let params: Vec<_> = params.iter().map(to_sql).collect();
    Ok(stmt.execute(rusqlite::params_from_iter(params))? as u64)
}

#[async_trait]
impl Backend for SqliteBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn begin(&self) -> Result<Box<dyn Tx>> {
        let conn = self.conn.clone().lock_owned().await;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Box::new(SqliteTx { conn, done: false }))
    }

    async fn read(&self, sql: &str, params: &[Val]) -> Result<Vec<Row>> {
        let conn = self.conn.lock().await;
        run_query(&conn, sql, params)
    }
}

struct SqliteTx {
    conn: OwnedMutexGuard<Connection>,
    done: bool,
}

#[async_trait]
impl Tx for SqliteTx {
    async fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>> {
        run_query(&self.conn, sql, params)
    }

    async fn execute(&mut self, sql: &str, params: &[Val]) -> Result<u64> {
        run_execute(&self.conn, sql, params)
    }

    async fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.done = true;
        Ok(())
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if !self.done {
            // Nothing to report to: the caller already has the error that
            // made it drop the transaction.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}
