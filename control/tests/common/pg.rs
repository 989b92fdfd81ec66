//! A private PostgreSQL schema per test, so tests run in parallel without
//! seeing each other's rows. Also compiled into the workspace's own tests
//! (`tests/harness`, through `#[path]`), so both suites create schemas one way.
//!
//! PostgreSQL is real: `VOXBRIDGE_TEST_PG` (set by `scripts/test.sh`, which
//! starts a server when none answers) or `postgres://postgres@127.0.0.1:5432/test`.

/// The PostgreSQL URL tests use.
pub fn pg_url() -> String {
    std::env::var("VOXBRIDGE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The URL of a new, empty schema on the test server (`search_path` set in the URL).
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
