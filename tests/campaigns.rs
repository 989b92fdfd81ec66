//! Outbound calls and campaigns, end to end in one process on a real
//! PostgreSQL: the control API, the campaign scheduler, the simulated
//! callee speaking over AudioSocket, the media plane and the built-in bot.
//!
//! - a 200-target campaign with mixed outcomes completes with the totals
//!   and retries its policy says, and its call start times and durations
//!   (from the store) never exceed its pacing and concurrency limits;
//! - `POST /v1/calls` places a call that is answered (media joins by call
//!   id) or busy, on the same state machine as inbound calls;
//! - with `originator = "sip"` the media plane places it on a SIP gateway
//!   (sipp as the callee): dialing -> ringing -> progressing, an API
//!   hangup sends BYE; a busy callee ends the call busy; an inbound SIP
//!   call is handed on by `POST /v1/calls/{id}/transfer` (REFER, sipp's
//!   NOTIFY) and ends `transferred`.

mod harness;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use harness::sipp::{sipp_done, sipp_one_call, sipp_report, sipp_uas, sipp_uas_on};
use harness::{billed_default_customer, within};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use voxbridge::bot::{self, Mode};
use voxbridge_control::campaign::pacing::Pacing;
use voxbridge_control::config::ControlConfig;
use voxbridge_control::model::PageReq;
use voxbridge_control::originate::simulated::SimulatedConfig;
use voxbridge_control::originate::{OriginateConfig, OriginatorKind};
use voxbridge_control::service::Control;
use voxbridge_media::{MediaServer, ShutdownHandle};
use voxbridge_proto::envelope::EventEnvelope;

struct Stack {
    control: Control,
    /// The media plane's SIP endpoint, when its config turns SIP on.
    sip: Option<std::net::SocketAddr>,
    api: axum::Router,
    key: String,
    shutdown: ShutdownHandle,
    media: tokio::task::JoinHandle<()>,
}

async fn stack(sim: SimulatedConfig, ring_timeout_ms: u64) -> Stack {
    stack_on(harness::pg::fresh_pg_url().await, "local", sim, ring_timeout_ms).await
}

async fn stack_on(store_url: String, node: &str, sim: SimulatedConfig, ring_timeout_ms: u64) -> Stack {
    let originate = OriginateConfig {
        kind: OriginatorKind::Simulated,
        ring_timeout_ms,
        simulated: sim,
        ..OriginateConfig::default()
    };
    stack_with(store_url, node, originate, |_| {}).await
}

/// A stack whose control places calls with `originate`, its media plane's
/// config changed by `media`.
async fn stack_with(
    store_url: String,
    node: &str,
    originate: OriginateConfig,
    media: impl FnOnce(&mut voxbridge_media::Config),
) -> Stack {
    let bot = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind bot");
    let bot_url = format!("ws://{}", bot.local_addr().expect("addr"));
    tokio::spawn(bot::serve(bot, Mode::Echo, Duration::ZERO, None));
    let mut ccfg = ControlConfig {
        store: Some(store_url.into()),
        node_id: node.into(),
        ..ControlConfig::default()
    };
    ccfg.originate = originate;
    ccfg.campaigns.tick_ms = 20;
    let control = Control::start(&ccfg).await.expect("control starts");
    let key = match control.store.billing_account("default").await {
        // The second instance on one database: the first made the key.
        Ok(_) => String::new(),
        Err(_) => billed_default_customer(&control.store).await.0,
    };
    let mut config = harness::one_listener(harness::pipecat_route(&bot_url, 16000));
    media(&mut config);
    let server = MediaServer::bind(config, Arc::new(control.sink()))
        .await
        .expect("media binds");
    control.set_media_routes(&server.audiosocket_routes());
    let sip = server.sip_addr();
    let api = control.router(Arc::new(server.commands()));
    let shutdown = server.shutdown_handle();
    let media = tokio::spawn(server.run());
    Stack {
        control,
        sip,
        api,
        key,
        shutdown,
        media,
    }
}

impl Stack {
    async fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: String,
    ) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("x-access-key", &self.key)
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("request");
        let resp = self.api.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Creates a campaign from `spec`, adds the targets in `csv` (one per
    /// line after the header) and starts it; its id.
    async fn start_campaign(&self, spec: serde_json::Value, csv: String) -> String {
        let (status, c) = self
            .call("POST", "/v1/campaigns", "application/json", spec.to_string())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
        let id = c["id"].as_str().expect("id").to_owned();
        let rows = csv.lines().count() - 1;
        let (status, added) = self
            .call("POST", &format!("/v1/campaigns/{id}/targets"), "text/csv", csv)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{added}");
        assert_eq!(added["added"], rows);
        let (status, started) = self
            .call(
                "POST",
                &format!("/v1/campaigns/{id}/start"),
                "application/json",
                String::new(),
            )
            .await;
        assert_eq!(
            (status, started["status"].as_str()),
            (StatusCode::OK, Some("running"))
        );
        id
    }

    async fn stop(self) {
        self.shutdown.shutdown();
        let _ = self.media.await;
        self.control.shutdown().await;
    }
}

async fn event_where(
    bus: &mut tokio::sync::broadcast::Receiver<Arc<EventEnvelope>>,
    what: &str,
    wait: Duration,
    pred: impl Fn(&EventEnvelope) -> bool,
) -> Arc<EventEnvelope> {
    tokio::time::timeout(wait, async {
        loop {
            match bus.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("bus: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Per target class: its script for the simulated callee, the attempts it
/// takes under the policy below, and its final result.
const CLASSES: [(&str, u32, &str); 5] = [
    ("answer", 1, "answered"),
    ("busy,answer", 2, "answered"),
    ("busy,busy,busy,busy", 3, "busy"),
    ("no_answer,answer", 2, "answered"),
    ("fail,fail", 2, "failed"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_target_campaign_completes_with_its_retries_within_its_limits() {
    let s = stack(
        SimulatedConfig {
            answer_delay_ms: 20,
            max_talk_ms: 100,
            linger_ms: 60,
            ..SimulatedConfig::default()
        },
        800,
    )
    .await;
    let mut bus = s.control.bus.subscribe();
    let mut csv = String::from("destination,timezone,sim\n");
    for i in 0..200 {
        csv.push_str(&format!("+1555{i:07},Europe/Berlin,\"{}\"\n", CLASSES[i % 5].0));
    }
    let spec = serde_json::json!({
        "name": "two hundred",
        "max_concurrent": 12,
        "calls_per_second": 40,
        "retry": {
            "busy": {"max_tries": 3, "interval_s": 0},
            "no_answer": {"max_tries": 2, "interval_s": 0},
            "failed": {"max_tries": 2, "interval_s": 0},
        }
    });
    let id = s.start_campaign(spec, csv).await;

    let done = event_where(&mut bus, "campaign_completed", Duration::from_secs(120), |e| {
        e.event_type == "campaign_completed" && e.resource.id == id
    })
    .await;
    let f = &done.resource.fields;
    // Attempts: 1 + 2 + 3 + 2 + 2 per five targets; answered: classes 0, 1, 3.
    assert_eq!(
        (f["dialed"].as_i64(), f["answered"].as_i64(), f["failed"].as_i64()),
        (Some(400), Some(120), Some(280))
    );
    assert_eq!(
        (f["active"].as_i64(), f["remaining"].as_i64()),
        (Some(0), Some(0))
    );

    let (_, stats) = s
        .call(
            "GET",
            &format!("/v1/campaigns/{id}/stats"),
            "application/json",
            String::new(),
        )
        .await;
    assert_eq!(stats["targets"]["completed"], 200, "{stats}");
    assert_eq!(
        stats["results"],
        serde_json::json!({"answered": 120, "busy": 40, "failed": 40})
    );

    // Every target: the attempts and result of its class.
    let store = &s.control.store;
    let mut targets = Vec::new();
    let mut page = PageReq::new(Some(100), None).expect("page");
    loop {
        let p = store
            .list_targets("default", &id, None, page)
            .await
            .expect("targets");
        targets.extend(p.items);
        match p.next_cursor {
            Some(c) => page = PageReq::new(Some(100), Some(&c)).expect("page"),
            None => break,
        }
    }
    assert_eq!(targets.len(), 200);
    let mut calls_per_dest: HashMap<String, u32> = HashMap::new();
    let mut starts = Vec::new();
    let mut spans = Vec::new();
    for c in harness::all_calls(store).await {
        *calls_per_dest.entry(c.destination.clone()).or_default() += 1;
        assert_eq!(c.status.as_str(), "hangup", "call {} left {}", c.id, c.status);
        starts.push(c.tm_create.0);
        spans.push((c.tm_create.0, c.tm_hangup.expect("hung up").0));
    }
    for t in &targets {
        let i: usize = t.destination[5..].parse().expect("index");
        let (_, attempts, result) = CLASSES[i % 5];
        assert_eq!(t.dial_count, attempts, "target {}", t.destination);
        assert_eq!(
            t.result.map(|r| r.as_str()),
            Some(result),
            "target {}",
            t.destination
        );
        assert_eq!(
            calls_per_dest.get(&t.destination),
            Some(&attempts),
            "calls to {}",
            t.destination
        );
    }
    assert_eq!(starts.len(), 400);

    // Pacing from the calls' start times: any n + 1 consecutive starts
    // span at least the window (40/s: 40 per 1,000 ms).
    let pacing = Pacing::from_cps_milli(40_000);
    starts.sort_unstable();
    for w in starts.windows(pacing.n + 1) {
        assert!(
            w[pacing.n] - w[0] >= pacing.window_ms,
            "{} starts within {} ms",
            pacing.n + 1,
            w[pacing.n] - w[0]
        );
    }
    // Concurrency from start and hangup times: never more than 12 at once.
    let mut edges: Vec<(i64, i32)> = spans.iter().flat_map(|&(a, b)| [(a, 1), (b, -1)]).collect();
    edges.sort_unstable(); // at equal times the hangup (-1) comes first
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    assert!(most <= 12, "{most} calls at once");
    assert!(most >= 2, "the test should run calls concurrently ({most})");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_call_is_answered_by_its_media_leg_or_ends_busy() {
    let s = stack(
        SimulatedConfig {
            answer_delay_ms: 20,
            max_talk_ms: 200,
            linger_ms: 100,
            ..SimulatedConfig::default()
        },
        5_000,
    )
    .await;
    let mut bus = s.control.bus.subscribe();
    let body =
        serde_json::json!({"destination": "+15550001", "source": "+15559999", "vars": {"sim": "answer"}});
    let (status, call) = s
        .call("POST", "/v1/calls", "application/json", body.to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    assert_eq!(
        (call["status"].as_str(), call["direction"].as_str()),
        (Some("dialing"), Some("outgoing"))
    );
    let id = call["id"].as_str().expect("id").to_owned();
    let e = event_where(&mut bus, "call_progressing", Duration::from_secs(10), |e| {
        e.resource.id == id && e.event_type.starts_with("call_") && e.event_type != "call_created"
    })
    .await;
    assert_eq!(e.event_type, "call_progressing");
    let e = event_where(&mut bus, "call_hungup", Duration::from_secs(10), |e| {
        e.resource.id == id
    })
    .await;
    assert_eq!(e.event_type, "call_hungup");
    assert_eq!(e.resource.fields["hangup_reason"], "normal");
    assert_eq!(e.resource.fields["hangup_cause"], "caller_hangup");

    let body = serde_json::json!({"destination": "+15550002", "vars": {"sim": "busy"}});
    let (_, call) = s
        .call("POST", "/v1/calls", "application/json", body.to_string())
        .await;
    let id = call["id"].as_str().expect("id").to_owned();
    let e = within(
        "the busy call's hangup",
        event_where(&mut bus, "call_hungup", Duration::from_secs(10), |e| {
            e.resource.id == id && e.event_type != "call_created"
        }),
    )
    .await;
    assert_eq!(
        (e.event_type.as_str(), e.resource.fields["hangup_reason"].as_str()),
        ("call_hungup", Some("busy"))
    );

    // Refusals are clear.
    let (status, err) = s
        .call(
            "POST",
            "/v1/calls",
            "application/json",
            r#"{"destination": "+1", "route": "nope"}"#.into(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, _) = s
        .call(
            "POST",
            "/v1/calls",
            "application/json",
            r#"{"destination": ""}"#.into(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_call_goes_out_over_sip_and_follows_the_call_states() {
    let (port, callee) = sipp_uas("uas");
    let originate = OriginateConfig {
        kind: OriginatorKind::Sip,
        ring_timeout_ms: 8_000,
        ..OriginateConfig::default()
    };
    let s = stack_with(harness::pg::fresh_pg_url().await, "local", originate, |m| {
        m.sip.listen = Some("127.0.0.1:0".parse().expect("addr"));
        m.sip.gateways = vec![
            toml::from_str(&format!("name = \"carrier\"\naddress = \"127.0.0.1:{port}\"")).expect("gateway"),
        ];
    })
    .await;
    let mut bus = s.control.bus.subscribe();
    let body = serde_json::json!({"destination": "+15550100", "source": "+15550199"});
    let (status, call) = s
        .call("POST", "/v1/calls", "application/json", body.to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    let id = call["id"].as_str().expect("id").to_owned();
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("call_progressing") {
        let e = event_where(&mut bus, "the call's progress", Duration::from_secs(10), |e| {
            e.resource.id == id && e.event_type.starts_with("call_") && e.event_type != "call_created"
        })
        .await;
        seen.push(e.event_type.clone());
    }
    assert_eq!(
        seen,
        vec!["call_ringing", "call_progressing"],
        "sipp's 180, then the answer"
    );
    let (status, _) = s
        .call(
            "POST",
            &format!("/v1/calls/{id}/hangup"),
            "application/json",
            "{}".into(),
        )
        .await;
    assert!(status.is_success(), "{status}");
    let e = event_where(&mut bus, "call_hungup", Duration::from_secs(10), |e| {
        e.resource.id == id && e.event_type == "call_hungup"
    })
    .await;
    assert_eq!(e.resource.fields["ingress"], "sip");
    sipp_done(callee, "uas (voxbridge's BYE after the API hangup)").await;

    // A caller on the SIP trunk, handed on to a person through the API:
    // sipp checks the REFER and reports the new call up by NOTIFY.
    let sip = s.sip.expect("SIP on");
    let caller = tokio::spawn(sipp_one_call(sip, "uac_transfer.xml"));
    let e = event_where(
        &mut bus,
        "the inbound call answered",
        Duration::from_secs(10),
        |e| e.event_type == "call_progressing" && e.resource.fields["direction"] == "incoming",
    )
    .await;
    let inbound = e.resource.id.clone();
    let (status, body) = s
        .call(
            "POST",
            &format!("/v1/calls/{inbound}/transfer"),
            "application/json",
            r#"{"target": "+15550123"}"#.into(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let e = event_where(&mut bus, "call_transferred", Duration::from_secs(10), |e| {
        e.resource.id == inbound && e.event_type == "call_transferred"
    })
    .await;
    assert!(e.resource.fields["target"]
        .as_str()
        .is_some_and(|t| t.starts_with("sip:+15550123@")));
    let e = event_where(
        &mut bus,
        "the transferred call's hangup",
        Duration::from_secs(10),
        |e| e.resource.id == inbound && e.event_type == "call_hungup",
    )
    .await;
    assert_eq!(e.resource.fields["hangup_cause"], "transferred");
    let out = within("sipp", caller).await.expect("sipp task");
    assert!(out.status.success(), "sipp failed: {}", sipp_report(&out));
    // A call that is over cannot be transferred.
    let (status, _) = s
        .call(
            "POST",
            &format!("/v1/calls/{inbound}/transfer"),
            "application/json",
            r#"{"target": "+15550123"}"#.into(),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A transfer whose target is busy (sipp's NOTIFY says 486): the API
    // caller learns it from `call_transfer_failed`, and the call goes on
    // until sipp's BYE.
    let caller = tokio::spawn(sipp_one_call(sip, "uac_transfer_busy.xml"));
    let e = event_where(
        &mut bus,
        "the second inbound call answered",
        Duration::from_secs(10),
        |e| {
            e.event_type == "call_progressing"
                && e.resource.fields["direction"] == "incoming"
                && e.resource.id != inbound
        },
    )
    .await;
    let busy_transfer = e.resource.id.clone();
    let (status, body) = s
        .call(
            "POST",
            &format!("/v1/calls/{busy_transfer}/transfer"),
            "application/json",
            r#"{"target": "+15550123"}"#.into(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let e = event_where(&mut bus, "call_transfer_failed", Duration::from_secs(10), |e| {
        e.resource.id == busy_transfer && e.event_type == "call_transfer_failed"
    })
    .await;
    assert_eq!(
        (
            e.resource.fields["sip_code"].as_u64(),
            e.resource.fields["sip_reason"].as_str()
        ),
        (Some(486), Some("Busy Here"))
    );
    let e = event_where(&mut bus, "the caller's hangup", Duration::from_secs(10), |e| {
        e.resource.id == busy_transfer && e.event_type == "call_hungup"
    })
    .await;
    assert_eq!(
        e.resource.fields["hangup_cause"], "caller_hangup",
        "the call went on after the failure"
    );
    let out = within("sipp", caller).await.expect("sipp task");
    assert!(out.status.success(), "sipp failed: {}", sipp_report(&out));

    // The next callee is busy: the call ends busy.
    let (port2, busy) = sipp_uas_on(port, "uas_busy.xml");
    assert_eq!(port2, port);
    let body = serde_json::json!({"destination": "+15550101"});
    let (_, call) = s
        .call("POST", "/v1/calls", "application/json", body.to_string())
        .await;
    let id = call["id"].as_str().expect("id").to_owned();
    let e = event_where(&mut bus, "call_hungup", Duration::from_secs(10), |e| {
        e.resource.id == id && e.event_type == "call_hungup"
    })
    .await;
    assert_eq!(e.resource.fields["hangup_reason"], "busy");
    sipp_done(busy, "uas_busy.xml").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_never_dial_a_target_twice() {
    let url = harness::pg::fresh_pg_url().await;
    let sim = SimulatedConfig {
        answer_delay_ms: 10,
        max_talk_ms: 60,
        linger_ms: 20,
        ..SimulatedConfig::default()
    };
    let a = stack_on(url.clone(), "node-a", sim.clone(), 2_000).await;
    let b = stack_on(url, "node-b", sim, 2_000).await;
    // Each instance relays the shared outbox to its own bus, and whichever
    // relay gets to a row first marks it sent: watch both buses.
    let (mut bus_a, mut bus_b) = (a.control.bus.subscribe(), b.control.bus.subscribe());
    let admin = voxbridge_control::model::Actor { id: "test".into() };
    let spec = voxbridge_control::campaign::CampaignSpec {
        name: "shared".into(),
        route: None,
        source: None,
        max_concurrent: Some(10),
        calls_per_second: Some(100.0),
        window: None,
        timezone: None,
        retry: Some(voxbridge_control::campaign::RetryPolicy {
            busy: voxbridge_control::campaign::Retry {
                max_tries: 2,
                interval_s: 0,
            },
            ..Default::default()
        }),
    };
    let store = &a.control.store;
    let c = store
        .create_campaign(&admin, "default", &spec)
        .await
        .expect("campaign");
    let mut csv = String::from("destination,sim\n");
    for i in 0..120 {
        csv.push_str(&format!(
            "+1777{i:07},\"{}\"\n",
            if i % 2 == 0 { "answer" } else { "busy,answer" }
        ));
    }
    let targets = voxbridge_control::campaign::targets_in::from_csv(csv.as_bytes(), "UTC").expect("csv");
    store
        .add_targets(&admin, "default", &c.id, &targets)
        .await
        .expect("targets");
    store
        .set_campaign_status(
            &admin,
            "default",
            &c.id,
            voxbridge_control::campaign::CampaignStatus::Running,
        )
        .await
        .expect("start");
    let completed = |e: &EventEnvelope| e.event_type == "campaign_completed" && e.resource.id == c.id;
    let wait = Duration::from_secs(120);
    let done = tokio::select! {
        e = event_where(&mut bus_a, "campaign_completed", wait, completed) => e,
        e = event_where(&mut bus_b, "campaign_completed", wait, completed) => e,
    };
    // 60 targets answer at once, 60 are busy once and then answer.
    assert_eq!(done.resource.fields["dialed"], 180);
    assert_eq!(done.resource.fields["answered"], 120);
    let mut per_dest: HashMap<String, u32> = HashMap::new();
    for call in harness::all_calls(store).await {
        *per_dest.entry(call.destination.clone()).or_default() += 1;
    }
    for i in 0..120 {
        let want = if i % 2 == 0 { 1 } else { 2 };
        assert_eq!(per_dest.get(&format!("+1777{i:07}")), Some(&want), "target {i}");
    }
    // Both schedulers took part.
    let placed = |s: &Stack| {
        s.control
            .dialer()
            .map(|d| d.stats.placed.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or(0)
    };
    let (pa, pb) = (placed(&a), placed(&b));
    assert_eq!(pa + pb, 180);
    assert!(pa > 0 && pb > 0, "both instances dial ({pa}, {pb})");
    println!("dials by node-a: {pa}, by node-b: {pb}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_stop_follow_the_campaign_state_machine() {
    let s = stack(SimulatedConfig::default(), 60_000).await;
    let body = serde_json::json!({"name": "paced", "calls_per_second": 0.01, "window": {"start": "00:00", "end": "00:00"}});
    let (status, c) = s
        .call("POST", "/v1/campaigns", "application/json", body.to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let id = c["id"].as_str().expect("id").to_owned();
    let targets = serde_json::json!({"targets": [
        {"destination": "+15551001", "vars": {"sim": "no_answer"}},
        {"destination": "+15551002", "timezone": "Asia/Tokyo"},
    ]});
    let (status, added) = s
        .call(
            "POST",
            &format!("/v1/campaigns/{id}/targets"),
            "application/json",
            targets.to_string(),
        )
        .await;
    assert_eq!(
        (status, added["added"].as_u64()),
        (StatusCode::CREATED, Some(2)),
        "{added}"
    );
    let path = |verb: &str| format!("/v1/campaigns/{id}/{verb}");
    let (status, _) = s
        .call("POST", &path("pause"), "application/json", String::new())
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a pending campaign cannot pause");
    let (_, c) = s
        .call("POST", &path("start"), "application/json", String::new())
        .await;
    assert_eq!(c["status"], "running");
    let (_, c) = s
        .call("POST", &path("pause"), "application/json", String::new())
        .await;
    assert_eq!(c["status"], "paused");
    // A paused campaign dials nothing, whoever runs the step.
    let placed = s
        .control
        .store
        .dial_due_targets(&id, voxbridge_control::time::Millis::now(), "audiosocket")
        .await
        .expect("step");
    assert!(placed.is_empty());
    let (_, c) = s
        .call("POST", &path("start"), "application/json", String::new())
        .await;
    assert_eq!(c["status"], "running");
    let (_, c) = s
        .call("POST", &path("stop"), "application/json", String::new())
        .await;
    assert_eq!(c["status"], "stopped");
    assert!(c["tm_end"].is_string());
    let (status, err) = s
        .call("POST", &path("start"), "application/json", String::new())
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    let (status, _) = s
        .call(
            "POST",
            &format!("/v1/campaigns/{id}/targets"),
            "text/csv",
            "destination\n+1\n".into(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a stopped campaign takes no targets"
    );
    // Bad bulk input names the row; an unknown type is refused.
    let (status, err) = s
        .call(
            "POST",
            "/v1/campaigns",
            "application/json",
            r#"{"name": "x", "timezone": "Mars/Base"}"#.into(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, _) = s
        .call(
            "POST",
            &format!("/v1/campaigns/{id}/targets"),
            "text/plain",
            "destination\n+1\n".into(),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (_, stats) = s
        .call(
            "GET",
            &format!("/v1/campaigns/{id}/stats"),
            "application/json",
            String::new(),
        )
        .await;
    assert_eq!(stats["campaign"]["status"], "stopped");
    assert_eq!(
        stats["targets"]["pending"].as_i64().unwrap_or(0) + stats["targets"]["dialing"].as_i64().unwrap_or(0),
        2
    );
    s.stop().await;
}

/// A campaign whose targets reach voicemails, on a route that leaves its
/// message on machines: each attempt is answered by the simulated
/// voicemail (greeting, beep), detected as a machine, given the message
/// after the beep and hung up `message_left`; the target's result is
/// `machine` and its own retry rule (2 tries) dials it once more; a target
/// a person answers stays `answered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voicemails_get_the_message_and_the_machine_retry_rule() {
    use voxbridge_media::config::{AmdCalls, AnsweringMachine, OnMachine};
    let message = std::env::temp_dir().join(format!("voxbridge-test-message-{}.wav", std::process::id()));
    let mut wav =
        voxbridge_proto::wav::write_header(voxbridge_proto::wav::WavEncoding::Pcm16, 8000, 8000).to_vec();
    for i in 0..4000 {
        let s = ((i as f64 * 600.0 * std::f64::consts::TAU / 8000.0).sin() * 8000.0) as i16;
        wav.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(&message, wav).expect("write the message");
    let originate = OriginateConfig {
        kind: OriginatorKind::Simulated,
        ring_timeout_ms: 5_000,
        simulated: SimulatedConfig {
            answer_delay_ms: 20,
            // The greeting: two seconds of the built-in speech.
            max_talk_ms: 2_000,
            linger_ms: 100,
            ..SimulatedConfig::default()
        },
        ..OriginateConfig::default()
    };
    let s = stack_with(harness::pg::fresh_pg_url().await, "local", originate, |config| {
        let route = config.routes.get_mut("default").expect("the default route");
        route.amd = Some(AnsweringMachine {
            calls: AmdCalls::All,
            on_machine: OnMachine::LeaveMessage,
            message: Some(message.clone()),
            ..AnsweringMachine::default()
        });
    })
    .await;
    let mut bus = s.control.bus.subscribe();
    let spec = serde_json::json!({
        "name": "voicemails",
        "calls_per_second": 20,
        "retry": {"machine": {"max_tries": 2, "interval_s": 0}}
    });
    let csv = "destination,sim\n+15550001,machine\n+15550002,machine\n";
    let id = s.start_campaign(spec, csv.into()).await;
    let done = event_where(&mut bus, "campaign_completed", Duration::from_secs(60), |e| {
        e.event_type == "campaign_completed" && e.resource.id == id
    })
    .await;
    let f = &done.resource.fields;
    assert_eq!(
        (
            f["dialed"].as_i64(),
            f["machine"].as_i64(),
            f["answered"].as_i64(),
            f["failed"].as_i64()
        ),
        (Some(4), Some(4), Some(0), Some(0)),
        "{f:?}"
    );
    let (status, stats) = s
        .call(
            "GET",
            &format!("/v1/campaigns/{id}/stats"),
            "application/json",
            String::new(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["results"], serde_json::json!({"machine": 2}));
    let page = PageReq::new(Some(10), None).expect("page");
    let targets = s
        .control
        .store
        .list_targets("default", &id, None, page)
        .await
        .expect("targets");
    assert_eq!(targets.items.len(), 2);
    for t in &targets.items {
        assert_eq!((t.tries.machine, t.dial_count), (2, 2), "{t:?}");
        assert_eq!(
            t.result,
            Some(voxbridge_control::campaign::DialResult::Machine),
            "{t:?}"
        );
    }
    for call in harness::all_calls(&s.control.store).await {
        assert_eq!(call.answered_by.as_deref(), Some("machine"), "{call:?}");
        assert_eq!(call.hangup_cause.as_deref(), Some("message_left"), "{call:?}");
    }
    s.stop().await;
    let _ = std::fs::remove_file(&message);
}
