//! Rule: on SIGTERM the process is gone within its grace periods whatever
//! the store does. The real binary runs on PostgreSQL; the test locks the
//! calls table from another session, so the daemon's call events wait on
//! the lock forever, then sends SIGTERM and waits for the process to end.

use crate::harness;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_process_even_while_the_store_blocks() {
    let url = harness::pg::fresh_pg_url().await;
    // Migrations first (the daemon's own start would also make them).
    drop(
        voxbridge_control::store::Store::connect(&url)
            .await
            .expect("store"),
    );
    let bot_url = harness::echo_bot().await;
    let dir = harness::fresh_dir("shutdown");
    let config = dir.join("voxbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\nshutdown_grace_ms = 300\n[control]\nlisten = \"127.0.0.1:0\"\nstore = \"{url}\"\n"
        ),
    )
    .expect("config");
    let (mut daemon, addr) = harness::ServeProcess::start(&config, &bot_url);

    // Another session holds the calls table: every call write waits.
    let (locker, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    locker
        .batch_execute("BEGIN; LOCK TABLE calls IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let mut caller = harness::Caller::connect(addr.parse().expect("addr"), harness::uuid(90)).await;
    caller.send_audio(&[0; 160]).await;

    // Media grace (300 ms) + pipeline grace (300 ms): well inside the guard.
    let ended = daemon.sigterm(Duration::from_secs(20)).await;
    assert!(
        ended.is_some(),
        "the process was still running 20 s after SIGTERM"
    );
    drop(locker);
    let _ = std::fs::remove_dir_all(&dir);
}
