//! Webhooks against a real local HTTP receiver, on both stores:
//!
//! - the receiver is down, then answers 500, then hangs past the timeout,
//!   then recovers: every event arrives, in order per resource, each attempt
//!   recorded; the captured requests verify with PyPI `standardwebhooks` and
//!   with Python's hmac (`tests/interop/verify_webhooks.py`);
//! - a delivery that keeps failing gives up, disables its endpoint with a
//!   `webhook_endpoint_disabled` event, and after the endpoint is enabled
//!   again and the delivery redelivered through the API, it arrives;
//! - a rotated secret signs alongside the new one;
//! - at most `max_concurrency` deliveries are open at once per endpoint.
//!
//! (Refused internal URLs are in `tests/api.rs` and `webhooks::ssrf`.)

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower::ServiceExt;
use voxbridge_control::config::ControlConfig;
use voxbridge_control::model::{Actor, CallChange, NewCall};
use voxbridge_control::service::Control;
use voxbridge_control::state::{CallStatus, Direction, HangupBy, HangupReason};
use voxbridge_control::webhooks::WebhookConfig;

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// What the receiver answers, request by request, then 200 for ever.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// Sleep past the endpoint's timeout, then 503.
    Hang,
}

#[derive(Clone)]
struct Receiver {
    script: Arc<Mutex<Vec<Answer>>>,
    got: mpsc::UnboundedSender<(HeaderMap, String)>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let next = {
        let mut s = r.script.lock().expect("script");
        (!s.is_empty()).then(|| s.remove(0))
    };
    match next {
        Some(Answer::Status(code)) => StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Some(Answer::Hang) => {
            // The receiver's own behaviour (a slow server), not test timing.
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            StatusCode::SERVICE_UNAVAILABLE
        }
        None => {
            let _ = r.got.send((headers, String::from_utf8_lossy(&body).into_owned()));
            StatusCode::OK
        }
    }
}

/// Starts the receiver on `port` (0: any); returns its port and what it
/// accepted.
async fn receiver(port: u16, script: Vec<Answer>) -> (u16, mpsc::UnboundedReceiver<(HeaderMap, String)>) {
    let (got, rx) = mpsc::unbounded_channel();
    let state = Receiver {
        script: Arc::new(Mutex::new(script)),
        got,
    };
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind receiver");
    let port = listener.local_addr().expect("addr").port();
    let app = Router::new().route("/hook", post(hook)).with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, rx)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

async fn start(store: String, give_up_after_s: u64, dir: &str) -> Control {
    let data = std::env::temp_dir().join(format!("voxbridge-wh-{dir}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    Control::start(&ControlConfig {
        store: Some(store.into()),
        data_dir: data,
        webhooks: WebhookConfig {
            allow: vec!["127.0.0.0/8".parse().expect("net")],
            retry_base_ms: 20,
            retry_cap_ms: 200,
            give_up_after_s,
            ..WebhookConfig::default()
        },
        ..ControlConfig::default()
    })
    .await
    .expect("control")
}

async fn api(app: &Router, key: &str, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("x-access-key", key);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(axum::body::Body::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        ))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn call_events(control: &Control, id: &str) {
    let s = &control.store;
    s.create_call(&NewCall {
        id: id.into(),
        customer_id: "default".into(),
        status: CallStatus::Ringing,
        direction: Direction::Incoming,
        source: "100".into(),
        destination: "200".into(),
        route: "default".into(),
        ingress: "rtp".into(),
        at: voxbridge_control::time::Millis::now(),
    })
    .await
    .expect("create");
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
        let change = CallChange {
            to,
            at: voxbridge_control::time::Millis::now(),
            hangup,
            sip: None,
        };
        s.transition_call(None, id, &change, None)
            .await
            .expect("transition");
    }
}

/// Runs the independent verifier over captured requests.
fn verify_with_python(captured: &[(HeaderMap, String)], secret: &str) {
    let reqs: Vec<Value> = captured
        .iter()
        .map(|(h, body)| {
            let headers: HashMap<String, String> = h
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            json!({"secret": secret, "headers": headers, "body": body})
        })
        .collect();
    let file = std::env::temp_dir().join(format!(
        "voxbridge-wh-captured-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&file, serde_json::to_vec(&reqs).expect("json")).expect("write");
    let out = std::process::Command::new(common::python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/interop/verify_webhooks.py"
        ))
        .arg(&file)
        .output()
        .expect("run verify_webhooks.py (scripts/setup.sh makes the venv)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verifier: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), format!("VERIFIED {}", captured.len()));
    let _ = std::fs::remove_file(file);
}

async fn every_event_arrives_in_order_and_verifies(store: String) {
    let control = start(store, 3_600, "order").await;
    let (_, key) = control
        .store
        .create_access_key(&Actor { id: "t".into() }, "default", "wh", None)
        .await
        .expect("key");
    let app = control.router(Arc::new(voxbridge_control::api::NoMedia));
    let port = free_port();
    let (status, created) = api(
        &app,
        &key,
        "POST",
        "/v1/webhooks",
        Some(json!({
            "url": format!("http://127.0.0.1:{port}/hook"),
            "event_types": ["call_created", "call_progressing", "call_hungup"],
            "timeout_ms": 1000,
            "max_concurrency": 4
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let endpoint = created["endpoint"]["id"].as_str().expect("id").to_owned();

    // The receiver is down while 8 calls make 24 events, until an attempt
    // has failed against it (checked after each commit).
    let mut commits = control.store.commits();
    let calls: Vec<String> = (0..8).map(|i| format!("call-{i}")).collect();
    for c in &calls {
        call_events(&control, c).await;
    }
    let deliveries = format!("/v1/webhooks/{endpoint}/deliveries?limit=100");
    within("an attempt against the down receiver", async {
        loop {
            let (_, page) = api(&app, &key, "GET", &deliveries, None).await;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if items.iter().any(|d| d["attempts"].as_i64() >= Some(1)) {
                break;
            }
            commits.changed().await.expect("store open");
        }
    })
    .await;
    // Up again: three 500s, one hang past the timeout, then 200s.
    let script = vec![
        Answer::Status(500),
        Answer::Status(500),
        Answer::Status(500),
        Answer::Hang,
    ];
    let (_, mut got) = receiver(port, script).await;
    let mut captured = Vec::new();
    while captured.len() < 24 {
        let r = within("every event at the receiver", got.recv())
            .await
            .expect("receiver");
        captured.push(r);
    }
    // Per call, the events in commit order.
    let mut per_call: HashMap<String, Vec<String>> = HashMap::new();
    for (_, body) in &captured {
        let v: Value = serde_json::from_str(body).expect("envelope");
        per_call
            .entry(v["resource"]["id"].as_str().expect("id").to_owned())
            .or_default()
            .push(v["event_type"].as_str().expect("type").to_owned());
    }
    for c in &calls {
        assert_eq!(
            per_call[c],
            ["call_created", "call_progressing", "call_hungup"],
            "order of {c}"
        );
    }
    verify_with_python(&captured, &secret);

    // The store's account: all delivered, the failures recorded.
    let (_, page) = api(
        &app,
        &key,
        "GET",
        &format!("/v1/webhooks/{endpoint}/deliveries?limit=100"),
        None,
    )
    .await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 24);
    assert!(items.iter().all(|d| d["status"] == "delivered"), "{page}");
    let retried: Vec<&Value> = items
        .iter()
        .filter(|d| d["attempts"].as_i64() > Some(1))
        .collect();
    assert!(
        !retried.is_empty(),
        "the down receiver made some deliveries retry"
    );
    let mut errors = String::new();
    for d in &retried {
        let (_, attempts) = api(
            &app,
            &key,
            "GET",
            &format!(
                "/v1/webhook_deliveries/{}/attempts",
                d["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
        errors.push_str(&attempts.to_string());
    }
    assert!(errors.contains("could not connect"), "{errors}");
    assert!(errors.contains("HTTP 500"), "{errors}");
    assert!(errors.contains("timed out"), "{errors}");
    control.shutdown().await;
}

async fn a_failing_endpoint_is_disabled_and_redelivery_works(store: String) {
    let control = start(store, 1, "disable").await;
    let mut bus = control.bus.subscribe();
    let (_, key) = control
        .store
        .create_access_key(&Actor { id: "t".into() }, "default", "wh", None)
        .await
        .expect("key");
    let app = control.router(Arc::new(voxbridge_control::api::NoMedia));
    let port = free_port();
    let spec = json!({"url": format!("http://127.0.0.1:{port}/hook"), "event_types": ["call_created"], "timeout_ms": 1000});
    let (status, created) = api(&app, &key, "POST", "/v1/webhooks", Some(spec.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let endpoint = created["endpoint"]["id"].as_str().expect("id").to_owned();
    let old_secret = created["secret"].as_str().expect("secret").to_owned();
    call_events(&control, "doomed").await;
    // Nobody listens on the port: after a second of retries it gives up.
    let disabled = within("webhook_endpoint_disabled", async {
        loop {
            let e = bus.recv().await.expect("bus");
            if e.event_type == "webhook_endpoint_disabled" {
                return e;
            }
        }
    })
    .await;
    assert_eq!(disabled.resource.id, endpoint);
    let (_, ep) = api(&app, &key, "GET", &format!("/v1/webhooks/{endpoint}"), None).await;
    assert_eq!(ep["enabled"], false);
    assert!(
        ep["disabled_reason"]
            .as_str()
            .expect("reason")
            .contains("could not connect"),
        "{ep}"
    );
    let (_, page) = api(
        &app,
        &key,
        "GET",
        &format!("/v1/webhooks/{endpoint}/deliveries"),
        None,
    )
    .await;
    let delivery = page["items"][0].clone();
    assert_eq!(delivery["status"], "failed");

    // A new secret, the old one still signing; the endpoint enabled again;
    // the failed delivery sent again by hand: it arrives, signed with both.
    let (status, rotated) = api(
        &app,
        &key,
        "POST",
        &format!("/v1/webhooks/{endpoint}/rotate_secret"),
        Some(json!({"overlap_s": 3600})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new_secret, old_secret);
    let (_, mut got) = receiver(port, Vec::new()).await;
    let (status, v) = api(&app, &key, "PUT", &format!("/v1/webhooks/{endpoint}"), Some(spec)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, again) = api(
        &app,
        &key,
        "POST",
        &format!(
            "/v1/webhook_deliveries/{}/redeliver",
            delivery["id"].as_str().expect("id")
        ),
        None,
    )
    .await;
    assert_eq!(
        (status, again["status"].as_str()),
        (StatusCode::OK, Some("pending")),
        "{again}"
    );
    let req = within("the redelivered event", got.recv())
        .await
        .expect("receiver");
    let v: Value = serde_json::from_str(&req.1).expect("envelope");
    assert_eq!(v["resource"]["id"], "doomed");
    assert_eq!(
        req.0["x-voxbridge-signature"]
            .to_str()
            .expect("ascii")
            .matches("sha256=")
            .count(),
        2
    );
    verify_with_python(std::slice::from_ref(&req), &new_secret);
    verify_with_python(std::slice::from_ref(&req), &old_secret);
    control.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_event_arrives_in_order_and_verifies() {
    every_event_arrives_in_order_and_verifies(common::fresh_sqlite_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_event_arrives_in_order_and_verifies() {
    every_event_arrives_in_order_and_verifies(common::fresh_pg_url().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_failing_endpoint_is_disabled_and_redelivery_works() {
    a_failing_endpoint_is_disabled_and_redelivery_works(common::fresh_sqlite_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_failing_endpoint_is_disabled_and_redelivery_works() {
    a_failing_endpoint_is_disabled_and_redelivery_works(common::fresh_pg_url().await).await;
}

/// Holds every request until the test lets it go, counting how many are
/// open at once.
#[derive(Clone)]
struct Holding {
    open: Arc<std::sync::atomic::AtomicUsize>,
    most: Arc<std::sync::atomic::AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
    arrived: Option<mpsc::UnboundedSender<()>>,
}

async fn hold(State(h): State<Holding>) -> StatusCode {
    use std::sync::atomic::Ordering::SeqCst;
    let now = h.open.fetch_add(1, SeqCst) + 1;
    h.most.fetch_max(now, SeqCst);
    if let Some(a) = &h.arrived {
        let _ = a.send(());
    }
    if let Ok(p) = h.gate.acquire().await {
        p.forget();
    }
    h.open.fetch_sub(1, SeqCst);
    StatusCode::OK
}

async fn the_concurrency_limit_holds(store: String) {
    use std::sync::atomic::Ordering::SeqCst;
    let control = start(store, 3_600, "limit").await;
    let (_, key) = control
        .store
        .create_access_key(&Actor { id: "t".into() }, "default", "wh", None)
        .await
        .expect("key");
    let app = control.router(Arc::new(voxbridge_control::api::NoMedia));
    let (tx, mut arrived) = mpsc::unbounded_channel();
    let holding = Holding {
        open: Arc::default(),
        most: Arc::default(),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
        arrived: Some(tx),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hook_app = Router::new()
        .route("/hook", post(hold))
        .with_state(holding.clone());
    tokio::spawn(async move { axum::serve(listener, hook_app).await });
    let spec = json!({"url": format!("http://127.0.0.1:{port}/hook"), "event_types": ["call_created"], "max_concurrency": 2});
    let (status, created) = api(&app, &key, "POST", "/v1/webhooks", Some(spec)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    // Six calls: six resources, so only the limit holds them back.
    for i in 0..6 {
        control
            .store
            .create_call(&NewCall {
                id: format!("lim-{i}"),
                customer_id: "default".into(),
                status: CallStatus::Ringing,
                direction: Direction::Incoming,
                source: String::new(),
                destination: String::new(),
                route: "default".into(),
                ingress: "rtp".into(),
                at: voxbridge_control::time::Millis::now(),
            })
            .await
            .expect("create");
    }
    // Let one go only once two are open: a third request while two are
    // held would show as three open.
    for n in 1..=6 {
        within("a held request", arrived.recv()).await.expect("receiver");
        if n >= 2 {
            holding.gate.add_permits(1);
        }
    }
    holding.gate.add_permits(1);
    assert_eq!(
        holding.most.load(SeqCst),
        2,
        "at most max_concurrency in flight, and it was used"
    );
    control.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_concurrency_limit_holds() {
    the_concurrency_limit_holds(common::fresh_sqlite_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_concurrency_limit_holds() {
    the_concurrency_limit_holds(common::fresh_pg_url().await).await;
}
