//! Shared test helpers: a fresh store of each kind.
//!
//! PostgreSQL is real: `VOXBRIDGE_TEST_PG` (set by `scripts/test.sh`, which
//! starts a server when none answers) or `postgres://postgres@127.0.0.1:5432/test`.
//! Each store gets its own schema, so tests run in parallel without seeing
//! each other's rows.
#![allow(dead_code)]

pub mod broker;

use voxbridge_control::store::Store;

/// The PostgreSQL URL tests use.
pub fn pg_url() -> String {
    std::env::var("VOXBRIDGE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A store on a new, empty PostgreSQL schema.
pub async fn pg_store() -> Store {
    Store::connect(&fresh_pg_url().await)
        .await
        .expect("open PostgreSQL store")
}

/// The URL of a new, empty PostgreSQL schema (to open it more than once).
pub async fn fresh_pg_url() -> String {
    let url = pg_url();
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} (run scripts/test.sh, which starts one): {e}"));
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A store on a new SQLite file in a temp dir (kept until the process ends).
pub async fn sqlite_store() -> Store {
    Store::connect(&fresh_sqlite_url())
        .await
        .expect("open SQLite store")
}

/// The URL of a new SQLite file in a temp dir.
pub fn fresh_sqlite_url() -> String {
    let dir = std::env::temp_dir().join(format!("voxbridge-test-{}", uuid::Uuid::new_v4().simple()));
    format!("sqlite://{}/control.db", dir.display())
}

/// Runs one async test body against both stores.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::sqlite_store().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::pg_store().await).await
                }
            )*
        }
    };
}

/// The Python of the control tests' venv (`scripts/setup.sh` makes it).
pub fn python() -> std::path::PathBuf {
    let cache = std::env::var("XDG_CACHE_HOME").unwrap_or_else(|_| {
        format!(
            "{}/.cache",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into())
        )
    });
    std::path::PathBuf::from(cache).join("voxbridge/control-venv/bin/python")
}
