//! A crash between commit and publish loses nothing: events committed while
//! no relay runs (the process died right after its commits) are published,
//! in order, by the relay of the next process that opens the same database.
//! Runs on SQLite and on PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use voxbridge_control::model::NewCall;
use voxbridge_control::relay::{self, bus::Bus, RelayStats};
use voxbridge_control::state::{CallStatus, Direction};
use voxbridge_control::store::Store;
use voxbridge_control::time::Millis;

async fn committed_then_crashed(url: &str) -> Vec<String> {
    let store = Store::connect(url).await.expect("open");
    let mut ids = Vec::new();
    for i in 0..50 {
        let (c, _) = store
            .create_call(&NewCall {
                id: format!("call-{i}"),
                customer_id: "a".into(),
                status: CallStatus::Ringing,
                direction: Direction::Incoming,
                source: String::new(),
                destination: String::new(),
                route: "default".into(),
                ingress: "rtp".into(),
                at: Millis::now(),
            })
            .await
            .expect("create");
        ids.push(c.id);
    }
    // No relay ran; the store is dropped as a crashed process would leave it.
    ids
}

async fn next_process_publishes_everything(url: String) {
    let ids = committed_then_crashed(&url).await;
    let store = Store::connect(&url).await.expect("reopen");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 50);
    let bus = Bus::default();
    let mut sub = bus.subscribe();
    let (stop, stop_rx) = watch::channel(false);
    let relay = tokio::spawn(relay::run(
        store.clone(),
        Arc::new(bus),
        Arc::new(RelayStats::default()),
        stop_rx,
    ));
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .expect("events within 10 s")
            .expect("bus open");
        got.push(e.resource.id.clone());
    }
    assert_eq!(got, ids, "every committed event, in commit order");
    stop.send_replace(true);
    relay.await.expect("relay");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_outbox_survives_a_crash() {
    next_process_publishes_everything(common::fresh_sqlite_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outbox_survives_a_crash() {
    next_process_publishes_everything(common::fresh_pg_url().await).await;
}
