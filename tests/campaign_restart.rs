//! A campaign survives `kill -9` of the daemon. The real binary runs the
//! campaign on PostgreSQL with the HTTP-hook originator pointed at this
//! test, which plays the telephony edge: it records every originate
//! request (the independent witness of what was dialled) and answers busy
//! or no-answer, or connects an AudioSocket leg with the call id as an
//! answering callee would. After some dials the daemon is killed and
//! started again with the same node id; the campaign must complete with
//! no target dialled beyond its retry policy and none forgotten.

mod harness;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use voxbridge_control::campaign::targets_in;
use voxbridge_control::campaign::{CampaignSpec, CampaignStatus, Retry, RetryPolicy, TargetStatus};
use voxbridge_control::model::{Actor, PageReq};
use voxbridge_control::store::Store;
use voxbridge_proto::audiosocket::{AudioSocketCodec, Frame};

const SCRIPTS: [&str; 4] = ["answer", "busy,answer", "no_answer,answer", "busy,busy,busy"];

/// One originate request as the edge saw it.
#[derive(Debug, Clone)]
struct Dial {
    call_id: String,
    destination: String,
}

#[derive(Clone)]
struct Edge {
    seen: Arc<Mutex<Vec<Dial>>>,
    tick: mpsc::UnboundedSender<()>,
}

async fn originate(State(edge): State<Edge>, Json(req): Json<serde_json::Value>) -> Json<serde_json::Value> {
    let call_id = req["call_id"].as_str().unwrap_or_default().to_owned();
    let attempt = req["attempt"].as_u64().unwrap_or(1) as usize;
    let sim = req["vars"]["sim"].as_str().unwrap_or("answer");
    let steps: Vec<&str> = sim.split(',').collect();
    let step = steps[(attempt - 1).min(steps.len() - 1)];
    edge.seen.lock().expect("lock").push(Dial {
        call_id: call_id.clone(),
        destination: req["destination"].as_str().unwrap_or_default().to_owned(),
    });
    let _ = edge.tick.send(());
    match step {
        "busy" => Json(serde_json::json!({"result": "busy"})),
        "no_answer" => Json(serde_json::json!({"result": "no_answer"})),
        _ => {
            let addr = req["audiosocket"].as_str().unwrap_or_default().to_owned();
            tokio::spawn(answer(addr, call_id));
            Json(serde_json::json!({}))
        }
    }
}

/// An answered leg: UUID, 300 ms of audio, hangup.
async fn answer(addr: String, call_id: String) {
    let Ok(mut sock) = tokio::net::TcpStream::connect(&addr).await else {
        return; // the daemon was killed
    };
    let hex: String = call_id.chars().filter(|c| *c != '-').collect();
    let mut uuid = [0u8; 16];
    for (i, b) in uuid.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).expect("uuid");
    }
    let codec = AudioSocketCodec::new(4096);
    let mut out = BytesMut::new();
    codec
        .encode_any(&Frame::Uuid(uuid), &mut out)
        .expect("uuid frame");
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..15 {
        tick.tick().await;
        let pcm = Bytes::from(vec![0u8; 320]);
        codec
            .encode_any(&Frame::Audio { rate: 8000, pcm }, &mut out)
            .expect("audio");
        if sock.write_all(&out.split()).await.is_err() {
            return;
        }
    }
    codec.encode_any(&Frame::Hangup, &mut out).expect("hangup");
    let _ = sock.write_all(&out.split()).await;
    let mut sink = [0u8; 4096];
    while matches!(sock.read(&mut sink).await, Ok(n) if n > 0) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_resumes_its_campaign_without_double_dials() {
    let url = harness::pg::fresh_pg_url().await;
    let store = Store::connect(&url).await.expect("store");
    let bot_url = harness::echo_bot().await;
    let (tick, mut ticks) = mpsc::unbounded_channel();
    let edge = Edge {
        seen: Arc::default(),
        tick,
    };
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook_url = format!("http://{}/originate", hook.local_addr().expect("addr"));
    let app = Router::new()
        .route("/originate", post(originate))
        .with_state(edge.clone());
    tokio::spawn(async move { axum::serve(hook, app).await });

    let dir = harness::fresh_dir("restart");
    let config = dir.join("voxbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nlisten = \"127.0.0.1:0\"\nstore = \"{url}\"\nnode_id = \"node-a\"\n\
             [control.originate]\nkind = \"http\"\nring_timeout_ms = 3000\n\
             [control.originate.http]\nurl = \"{hook_url}\"\n\
             [control.campaigns]\ntick_ms = 20\n"
        ),
    )
    .expect("config");

    let admin = Actor { id: "test".into() };
    let policy = RetryPolicy {
        busy: Retry {
            max_tries: 3,
            interval_s: 0,
        },
        no_answer: Retry {
            max_tries: 2,
            interval_s: 0,
        },
        failed: Retry {
            max_tries: 3,
            interval_s: 0,
        },
        ..RetryPolicy::default()
    };
    let spec = CampaignSpec {
        name: "restart".into(),
        route: None,
        source: None,
        max_concurrent: Some(4),
        calls_per_second: Some(20.0),
        window: None,
        timezone: None,
        retry: Some(policy),
    };
    let c = store
        .create_campaign(&admin, "default", &spec)
        .await
        .expect("campaign");
    let mut csv = String::from("destination,sim\n");
    for i in 0..40 {
        csv.push_str(&format!("+1666{i:07},\"{}\"\n", SCRIPTS[i % SCRIPTS.len()]));
    }
    let targets = targets_in::from_csv(csv.as_bytes(), "UTC").expect("csv");
    store
        .add_targets(&admin, "default", &c.id, &targets)
        .await
        .expect("targets");

    let (first, _) = harness::ServeProcess::start(&config, &bot_url);
    store
        .set_campaign_status(&admin, "default", &c.id, CampaignStatus::Running)
        .await
        .expect("start");
    // Kill it once the edge has seen 20 dials.
    for _ in 0..20 {
        harness::within("20 dials before the kill", ticks.recv()).await;
    }
    drop(first); // SIGKILL
    let dials_before = edge.seen.lock().expect("lock").len();
    let _second = harness::ServeProcess::start(&config, &bot_url);

    // Wait for the campaign to complete (the store is the only place that knows).
    let done = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let now = store.get_campaign("default", &c.id).await.expect("campaign");
            if now.status == CampaignStatus::Completed {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the campaign completes after the restart");
    assert_eq!((done.active, done.remaining), (0, 0));

    let mut per_dest: HashMap<String, u32> = HashMap::new();
    let seen = edge.seen.lock().expect("lock").clone();
    let mut ids = HashSet::new();
    for d in &seen {
        assert!(
            ids.insert(d.call_id.clone()),
            "call {} originated twice",
            d.call_id
        );
        *per_dest.entry(d.destination.clone()).or_default() += 1;
    }
    let page = store
        .list_targets(
            "default",
            &c.id,
            None,
            PageReq::new(Some(100), None).expect("page"),
        )
        .await
        .expect("targets");
    assert_eq!(page.items.len(), 40);
    let calls = harness::all_calls(&store).await;
    let mut calls_per_dest: HashMap<String, u32> = HashMap::new();
    let mut restarted = 0;
    for call in &calls {
        assert_eq!(
            call.status.as_str(),
            "hangup",
            "call {} left {}",
            call.id,
            call.status
        );
        *calls_per_dest.entry(call.destination.clone()).or_default() += 1;
        restarted += usize::from(call.hangup_cause.as_deref() == Some("node_restart"));
    }
    for t in &page.items {
        assert_eq!(
            t.status,
            TargetStatus::Completed,
            "target {} forgotten",
            t.destination
        );
        let tries = t.tries;
        assert!(
            tries.busy <= 3 && tries.no_answer <= 2 && tries.failed <= 3,
            "{} beyond policy: {tries:?}",
            t.destination
        );
        let answered = u32::from(t.result.map(|r| r.as_str()) == Some("answered"));
        assert_eq!(
            t.dial_count,
            tries.busy + tries.no_answer + tries.failed + answered,
            "{}",
            t.destination
        );
        // Every dial is a call row; the edge saw at most those (a dial
        // committed just before the kill may never have been sent).
        assert_eq!(
            calls_per_dest.get(&t.destination).copied().unwrap_or(0),
            t.dial_count
        );
        assert!(
            per_dest.get(&t.destination).copied().unwrap_or(0) <= t.dial_count,
            "{}",
            t.destination
        );
    }
    println!(
        "dials seen before the kill: {dials_before}, after: {}; calls ended by the restart: {restarted}",
        seen.len() - dials_before
    );
}
