//! Rule: a call that was live when its process was killed (`kill -9`) is
//! ended, and billed, at the last moment it is known to have carried media
//! (the node's last heartbeat), never at the restart time, so the downtime
//! is never billed. The real binary runs on each store; the test kills it
//! mid-call and starts it again with the same node id.

use crate::harness;

use std::time::Duration;
use tokio::io::AsyncWriteExt;
use voxbridge_control::model::PageReq;
use voxbridge_control::state::CallStatus;
use voxbridge_control::store::Store;
use voxbridge_control::time::Millis;

/// Polls the store (every 20 ms, at most 20 s) until `done` accepts what
/// `read` returns.
async fn until<T>(what: &str, mut read: impl AsyncFnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = read().await;
        if done(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_killed_call_is_billed_up_to_its_last_heartbeat(store_url: String, tag: &str) {
    let store = Store::connect(&store_url)
        .await
        .expect("store")
        .with_node("crash-node");
    store
        .ensure_customer("default", "Default")
        .await
        .expect("customer");
    harness::billed_default_customer(&store).await;
    let bot_url = harness::echo_bot().await;
    let dir = harness::fresh_dir(&format!("crash-{tag}"));
    let config = dir.join("voxbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nlisten = \"127.0.0.1:0\"\nstore = \"{store_url}\"\nnode_id = \"crash-node\"\nheartbeat_ms = 100\n"
        ),
    )
    .expect("config");

    let (first, addr) = harness::ServeProcess::start(&config, &bot_url);
    let mut caller = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let mut hello = vec![0x01, 0x00, 0x10];
    hello.extend_from_slice(&harness::uuid(77));
    caller.write_all(&hello).await.expect("uuid");
    let call_id = voxbridge_proto::audiosocket::Frame::uuid_string(&harness::uuid(77));
    let frame: Vec<u8> = [0x10u8, 0x01, 0x40].into_iter().chain([0u8; 320]).collect();
    // The call carries media until it is answered and a heartbeat after
    // the answer is stored.
    let call = until(
        "the call to be answered",
        async || {
            let _ = caller.write_all(&frame).await;
            store.call_by_id(&call_id).await.ok()
        },
        |c| c.as_ref().is_some_and(|c| c.status == CallStatus::Progressing),
    )
    .await
    .expect("call");
    let answered = call.tm_progressing.expect("answered at");
    until(
        "a heartbeat after the answer",
        async || {
            let _ = caller.write_all(&frame).await;
            store.last_heartbeat().await.expect("heartbeat")
        },
        |h| h.is_some_and(|h| h > answered),
    )
    .await;
    let killed_at = Millis::now();
    drop(first); // kill -9, mid-call
    drop(caller);

    let (_second, _) = harness::ServeProcess::start(&config, &bot_url);
    let ended = store.call_by_id(&call_id).await.expect("call");
    assert_eq!(ended.status, CallStatus::Hangup, "{ended:?}");
    assert_eq!(ended.hangup_cause.as_deref(), Some("node_restart"));
    let tm_hangup = ended.tm_hangup.expect("ended at");
    assert!(
        tm_hangup <= killed_at && tm_hangup > answered,
        "ended at {tm_hangup:?}: after the answer ({answered:?}), not after the kill ({killed_at:?})"
    );
    let record = until(
        "the call's billing record",
        async || {
            store
                .list_billing_records("default", Some(&call_id), PageReq::new(None, None).expect("page"))
                .await
                .expect("records")
                .items
                .into_iter()
                .find(|r| r.call_id == call_id)
        },
        Option::is_some,
    )
    .await
    .expect("record");
    assert!(
        record.answered_ms <= killed_at.0 - answered.0,
        "billed {} ms of a call that carried media for at most {} ms",
        record.answered_ms,
        killed_at.0 - answered.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_killed_call_is_billed_up_to_its_last_heartbeat() {
    let dir = std::env::temp_dir().join(format!("voxbridge-crash-db-{}", std::process::id()));
    let url = format!("sqlite://{}/control.db", dir.display());
    a_killed_call_is_billed_up_to_its_last_heartbeat(url, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_killed_call_is_billed_up_to_its_last_heartbeat() {
    let url = harness::pg::fresh_pg_url().await;
    a_killed_call_is_billed_up_to_its_last_heartbeat(url, "pg").await;
}
