//! Rule: on SIGTERM the process is gone within its grace periods whatever
//! the store does. The real binary runs on PostgreSQL; the test locks the
//! calls table from another session, so the daemon's call events wait on
//! the lock forever, then sends SIGTERM and waits for the process to end.

use crate::harness;

use std::process::Command;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

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
    let dir = std::env::temp_dir().join(format!("voxbridge-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("voxbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\nshutdown_grace_ms = 300\n[control]\nlisten = \"127.0.0.1:0\"\nstore = \"{url}\"\n"
        ),
    )
    .expect("config");
    let (mut daemon, addr) = harness::ServeProcess::start(&config, &bot_url);
    let child = &mut daemon.0;

    // Another session holds the calls table: every call write waits.
    let (locker, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    locker
        .batch_execute("BEGIN; LOCK TABLE calls IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let mut caller = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let mut hello = vec![0x01, 0x00, 0x10];
    hello.extend_from_slice(&harness::uuid(90));
    caller.write_all(&hello).await.expect("uuid");
    caller.write_all(&[0x10, 0x01, 0x40]).await.expect("frame header");
    caller.write_all(&[0u8; 320]).await.expect("frame");

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    // Media grace (300 ms) + pipeline grace (300 ms): well inside the guard.
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(ended.is_ok(), "the process was still running 20 s after SIGTERM");
    drop(locker);
    let _ = std::fs::remove_dir_all(&dir);
}
