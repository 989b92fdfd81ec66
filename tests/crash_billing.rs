//! Rule: a call that was live when its process was killed (`kill -9`) is
//! ended, and billed, at the last moment it is known to have carried media
//! (the node's last heartbeat), never at the restart time, so the downtime
//! is never billed. The real binary runs on each store; the test kills it
//! mid-call and starts it again with the same node id.

mod harness;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use voxbridge::bot::{self, Mode};
use voxbridge_control::model::{Actor, PageReq};
use voxbridge_control::state::CallStatus;
use voxbridge_control::store::Store;
use voxbridge_control::time::Millis;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

/// Starts `voxbridge serve`; returns it and its AudioSocket address.
fn serve(config: &std::path::Path, bot_url: &str) -> (Daemon, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_voxbridge"))
        .args(["serve", "--config"])
        .arg(config)
        .env("VOXBRIDGE_AUDIOSOCKET_LISTEN", "127.0.0.1:0")
        .env("VOXBRIDGE_METRICS_LISTEN", "off")
        .env("VOXBRIDGE_BOT_URL", bot_url)
        .env("VOXBRIDGE_WORKERS", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("voxbridge serve runs");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("serve line");
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("audiosocket="))
        .unwrap_or_else(|| panic!("no audiosocket address in {line:?}"))
        .to_owned();
    (Daemon(child), addr)
}

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
    let admin = Actor { id: "test".into() };
    store
        .ensure_customer("default", "Default")
        .await
        .expect("customer");
    let plan = voxbridge_control::billing::RatePlan {
        price_per_minute_micros: 60_000,
        increment_first_s: 1,
        increment_next_s: 1,
        min_charge_micros: 0,
        low_balance_threshold_micros: 0,
    };
    store.set_rate_plan(&admin, "default", &plan).await.expect("plan");
    store.credit(&admin, "default", 1_000_000).await.expect("credit");
    let bot_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let bot_url = format!("ws://{}", bot_listener.local_addr().expect("addr"));
    tokio::spawn(bot::serve(bot_listener, Mode::Echo, Duration::ZERO, None));
    let dir = std::env::temp_dir().join(format!("voxbridge-crash-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("voxbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nlisten = \"127.0.0.1:0\"\nstore = \"{store_url}\"\nnode_id = \"crash-node\"\nheartbeat_ms = 100\n"
        ),
    )
    .expect("config");

    let (first, addr) = serve(&config, &bot_url);
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

    let (_second, _) = serve(&config, &bot_url);
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
