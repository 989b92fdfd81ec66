#![no_main]
//! The control REST API on arbitrary requests (endpoint, credentials, query
//! string, body) against an in-memory store: never a panic, never a 5xx,
//! and every error is the documented JSON shape. Bodies and query strings
//! reach the text rule (`api/text.rs`) with whatever they hold.
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;
use voxbridge_control::api::auth::{Auth, AuthConfig};
use voxbridge_control::api::{router, AppState, NoMedia};
use voxbridge_control::model::Actor;
use voxbridge_control::store::Store;

struct World {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    key: String,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (app, key) = rt.block_on(async {
            let store = Store::connect("sqlite::memory:").await.expect("store");
            store.ensure_customer("c", "C").await.expect("customer");
            let (_, key) = store
                .create_access_key(&Actor { id: "fuzz".into() }, "c", "k", None)
                .await
                .expect("key");
            let auth = Auth::new(&AuthConfig {
                admin_key: Some("fuzz-admin-key-0123456789".into()),
                hs256_secret: Some(b"fuzz-secret".to_vec()),
                ..AuthConfig::default()
            })
            .expect("auth");
            (
                router(AppState {
                    store,
                    commands: Arc::new(NoMedia),
                    auth,
                    bus: Default::default(),
                    live: Default::default(),
                    webhook_allow: Default::default(),
                    dialer: None,
                    events: Default::default(),
                    recordings_dir: Arc::new(std::env::temp_dir().join("voxbridge-fuzz-recordings")),
                }),
                key,
            )
        });
        World { rt, app, key }
    })
}

const ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/v1/calls"),
    ("GET", "/v1/calls/x"),
    ("POST", "/v1/calls/x/hangup"),
    ("GET", "/v1/transcribes"),
    ("GET", "/v1/transcripts/x"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/customers"),
    ("POST", "/v1/customers"),
    ("DELETE", "/v1/customers/c2"),
    ("POST", "/v1/customers/c/access_keys"),
    ("GET", "/v1/ready"),
    ("GET", "/v1/billing/records"),
    ("PUT", "/v1/customers/c/billing"),
    ("POST", "/v1/customers/c/billing/credit"),
    ("POST", "/v1/webhooks"),
    ("PUT", "/v1/webhooks/x"),
    ("POST", "/v1/webhooks/x/rotate_secret"),
    ("POST", "/v1/webhook_deliveries/x/redeliver"),
    ("GET", "/v1/dead_letters"),
    ("POST", "/v1/dead_letters/x/retry"),
    ("GET", "/v1/recordings"),
    ("GET", "/v1/recordings/x"),
    ("POST", "/v1/calls/x/recordings"),
    ("POST", "/v1/calls/x/recordings/pause"),
    ("GET", "/v1/calls/x%00y"),
    ("GET", "/v1/ws"),
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [e, a, q, rest @ ..] = data else { return };
    let w = world();
    let (method, path) = ENDPOINTS[usize::from(*e) % ENDPOINTS.len()];
    let split = usize::from(*q).min(rest.len());
    let query: String = String::from_utf8_lossy(&rest[..split])
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '#')
        .collect();
    let uri = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    let mut req = Request::builder().method(method).uri(uri.as_str());
    req = match a % 4 {
        0 => req,
        1 => req.header("x-access-key", w.key.as_str()),
        2 => req.header("authorization", "Bearer fuzz-admin-key-0123456789"),
        _ => req.header(
            "authorization",
            format!("Bearer {}", String::from_utf8_lossy(&rest[split..])),
        ),
    };
    let Ok(req) = req
        .header("content-type", "application/json")
        .body(Body::from(rest[split..].to_vec()))
    else {
        return;
    };
    w.rt.block_on(async {
        let resp = w.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        assert!(!status.is_server_error(), "{method} {uri}: {status}");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        if status.is_client_error() {
            let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON error body");
            assert!(v["error"]["code"].is_string(), "{v}");
        }
    });
});
