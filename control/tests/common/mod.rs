//! Shared test helpers: a fresh store of each kind.
//!
//! PostgreSQL is real and each store gets its own schema (`pg`).
#![allow(dead_code)]

pub mod broker;
mod pg;

pub use pg::fresh_pg_url;

use voxbridge_control::store::Store;

/// A store on a new, empty PostgreSQL schema.
pub async fn pg_store() -> Store {
    Store::connect(&fresh_pg_url().await)
        .await
        .expect("open PostgreSQL store")
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
