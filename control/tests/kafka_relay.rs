//! The outbox relay against a real Kafka-protocol broker (tansu, see
//! `../shared/KAFKA.md`; installed by `scripts/setup.sh`) and a real
//! PostgreSQL: events arrive keyed by call id and in order per call; the
//! broker is killed mid-run while calls keep changing, then restarted, and
//! no event is lost; an independent consumer group (Python
//! `confluent-kafka`) reads the same events. Duplicates are allowed only as
//! the relay documents them (at-least-once) and are counted.

mod common;

use common::broker::Broker;
use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use voxbridge_control::model::{CallChange, NewCall};
use voxbridge_control::relay::kafka::{KafkaConfig, KafkaPublisher};
use voxbridge_control::relay::{self, RelayStats};
use voxbridge_control::state::{CallStatus, Direction, HangupBy, HangupReason};
use voxbridge_control::store::Store;
use voxbridge_control::time::Millis;

async fn call_events(store: &Store, prefix: &str, n: usize) {
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        store
            .create_call(&NewCall {
                id: id.clone(),
                customer_id: "acme".into(),
                status: CallStatus::Ringing,
                direction: Direction::Incoming,
                source: "100".into(),
                destination: "200".into(),
                route: "default".into(),
                ingress: "rtp".into(),
                at: Millis::now(),
            })
            .await
            .expect("create");
    }
    for (to, hangup) in [
        (CallStatus::Progressing, None),
        (
            CallStatus::Hangup,
            Some((
                HangupBy::Remote,
                HangupReason::Normal,
                "caller_hangup".to_string(),
            )),
        ),
    ] {
        for i in 0..n {
            let change = CallChange {
                to,
                at: Millis::now(),
                hangup: hangup.clone(),
                sip: None,
            };
            store
                .transition_call(None, &format!("{prefix}-{i}"), &change, None)
                .await
                .expect("transition");
        }
    }
}

async fn drained(store: &Store, what: &str) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while store.outbox_backlog().await.expect("backlog") > 0 {
            // Polling the store's own state: there is no event for "Kafka acknowledged".
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("outbox not drained: {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_survives_a_broker_outage_and_keeps_order_per_call() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("voxbridge_control=warn")
        .with_test_writer()
        .try_init();
    let mut broker = Broker::new();
    let store = common::pg_store().await;
    let config = KafkaConfig {
        brokers: broker.addr(),
        message_timeout_ms: 1_500,
        ..KafkaConfig::default()
    };
    let publisher = KafkaPublisher::new(config.clone()).expect("producer");
    publisher.ensure_topics().await.expect("topics");
    let stats = Arc::new(RelayStats::default());
    let (stop, stop_rx) = watch::channel(false);
    let relay = tokio::spawn(relay::run(
        store.clone(),
        Arc::new(publisher),
        stats.clone(),
        stop_rx,
    ));

    call_events(&store, "before", 20).await;
    drained(&store, "broker up").await;

    broker.kill();
    call_events(&store, "during", 20).await;
    assert!(
        store.outbox_backlog().await.expect("backlog") > 0,
        "events wait while Kafka is down"
    );
    // The API side keeps working: reads and writes commit with the broker gone.
    assert_eq!(
        store.get_call("acme", "during-0").await.expect("get").status,
        CallStatus::Hangup
    );
    // Stay down until the relay has given up on a batch at least once (its
    // delivery timeout ran out), so the restart exercises the retry from the outbox.
    tokio::time::timeout(Duration::from_secs(30), async {
        while stats.failures.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the relay noticed the outage");
    assert!(
        store.outbox_backlog().await.expect("backlog") > 0,
        "failed rows stay pending"
    );
    broker.start();
    call_events(&store, "after", 20).await;
    drained(&store, "broker back").await;
    stop.send_replace(true);
    relay.await.expect("relay");

    // Expected: every committed call event, in commit order per call.
    let all = store_events(&store).await;
    assert_eq!(all.len(), 180);
    let got = python_consume(&broker.addr(), &config.topic("call"), "voxbridge-test", 180);
    let ids: HashSet<&str> = got.iter().filter_map(|m| m["event_id"].as_str()).collect();
    let missing: Vec<_> = all.iter().filter(|e| !ids.contains(e.0.as_str())).collect();
    assert!(missing.is_empty(), "lost events: {missing:?}");
    for m in &got {
        assert_eq!(m["key"], m["resource_id"], "key is the call id");
        assert_eq!(
            m["headers"],
            serde_json::json!({}),
            "no record headers by default"
        );
    }
    // Per call: first sightings in Kafka order equal the commit order.
    let mut by_call: HashMap<String, Vec<String>> = HashMap::new();
    let mut first: HashSet<String> = HashSet::new();
    let mut by_partition: Vec<&serde_json::Value> = got.iter().collect();
    by_partition.sort_by_key(|m| (m["partition"].as_i64(), m["offset"].as_i64()));
    for m in by_partition {
        let id = m["event_id"].as_str().unwrap_or_default().to_owned();
        if first.insert(id.clone()) {
            by_call
                .entry(m["key"].as_str().unwrap_or_default().into())
                .or_default()
                .push(id);
        }
    }
    let mut want: HashMap<String, Vec<String>> = HashMap::new();
    for (event_id, call) in &all {
        want.entry(call.clone()).or_default().push(event_id.clone());
    }
    assert_eq!(by_call, want, "order per call");
    let duplicates = got.len() - ids.len();
    println!(
        "kafka: {} events, {} duplicates after the outage, {} publish failures",
        ids.len(),
        duplicates,
        stats.failures.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// With `record_headers`, every message carries `event_type` and
/// `event_id` headers equal to its envelope's, as an independent client
/// (Python `confluent-kafka`) reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_headers_carry_the_event_type_and_id_when_enabled() {
    let broker = Broker::new();
    let store = common::pg_store().await;
    let config = KafkaConfig {
        brokers: broker.addr(),
        record_headers: true,
        ..KafkaConfig::default()
    };
    let publisher = KafkaPublisher::new(config.clone()).expect("producer");
    publisher.ensure_topics().await.expect("topics");
    let (stop, stop_rx) = watch::channel(false);
    let relay = tokio::spawn(relay::run(
        store.clone(),
        Arc::new(publisher),
        Arc::new(RelayStats::default()),
        stop_rx,
    ));
    call_events(&store, "hdr", 3).await;
    drained(&store, "headers").await;
    stop.send_replace(true);
    relay.await.expect("relay");
    let got = python_consume(&broker.addr(), &config.topic("call"), "voxbridge-hdr", 9);
    assert_eq!(got.len(), 9, "3 calls x 3 events: {got:?}");
    for m in &got {
        assert_eq!(m["headers"]["event_type"], m["event_type"], "{m}");
        assert_eq!(m["headers"]["event_id"], m["event_id"], "{m}");
    }
}

/// Reads `topic` from the start as a member of `group` with Python
/// `confluent-kafka` (tests/interop/kafka_consume.py) until `expected`
/// distinct events were seen; one JSON object per message.
fn python_consume(brokers: &str, topic: &str, group: &str, expected: usize) -> Vec<serde_json::Value> {
    let out = Command::new(common::python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/interop/kafka_consume.py"
        ))
        .args([brokers, topic, group, &expected.to_string(), "60"])
        .output()
        .expect("run the Python consumer (scripts/setup.sh builds its venv)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "consumer failed: {stderr}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("consumer JSON line"))
        .collect()
}

/// Every call event the store committed, (event_id, call id) in commit order.
async fn store_events(store: &Store) -> Vec<(String, String)> {
    store
        .outbox_rows(0, 10_000)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|r| r.event.resource.kind == "call")
        .map(|r| (r.event.event_id, r.event.resource.id))
        .collect()
}
