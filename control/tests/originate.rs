//! The ARI and HTTP-hook originators against a local HTTP server that
//! records each request: the exact ARI requests Asterisk documents for
//! `POST /ari/channels` (path, query, body, basic auth) and
//! `DELETE /ari/channels/{channelId}`, and the hook's JSON body and answers.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{any, post};
use axum::Router;
use std::sync::Arc;
use tokio::sync::mpsc;
use voxbridge_control::originate::ari::{AriConfig, AriOriginator};
use voxbridge_control::originate::http_hook::{HttpHook, HttpHookConfig};
use voxbridge_control::originate::{DialOutcome, DialRequest, Originator};

#[derive(Debug)]
struct Seen {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    auth: Option<String>,
    content_type: Option<String>,
    body: serde_json::Value,
}

type Tx = mpsc::UnboundedSender<Seen>;

async fn record(
    State((tx, status)): State<(Tx, StatusCode)>,
    method: Method,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    let query = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let _ = tx.send(Seen {
        method,
        path: format!("/{rest}"),
        query,
        auth: header("authorization"),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    (
        status,
        r#"{"id":"x","name":"PJSIP/trunk-00000001","state":"Down"}"#.into(),
    )
}

async fn server(status: StatusCode) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/{*rest}", any(record))
        .with_state((tx, status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

fn request() -> DialRequest {
    let mut vars = serde_json::Map::new();
    vars.insert("name".into(), "Ann Lee".into());
    DialRequest {
        call_id: "0b1c2d3e-0000-4000-8000-00000000abcd".into(),
        customer_id: "default".into(),
        destination: "+15550100".into(),
        source: "+15559999".into(),
        route: "default".into(),
        audiosocket: Some("10.0.0.5:9092".parse().expect("addr")),
        vars,
        attempt: 1,
    }
}

#[tokio::test]
async fn ari_originate_sends_the_documented_request() {
    let (url, mut seen) = server(StatusCode::OK).await;
    let ari = AriOriginator::new(&AriConfig {
        url: url.clone(),
        username: "vox".into(),
        password: "s3cret".into(),
        ..AriConfig::default()
    })
    .expect("config");
    assert_eq!(ari.originate(&request()).await, DialOutcome::Accepted);
    let r = seen.recv().await.expect("request seen");
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path, "/ari/channels");
    let q: Vec<(&str, &str)> = r.query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        q,
        vec![
            ("endpoint", "PJSIP/+15550100@trunk"),
            ("extension", "s"),
            ("context", "voxbridge-outbound"),
            ("priority", "1"),
            ("callerId", "+15559999"),
            ("timeout", "30"),
            ("channelId", "0b1c2d3e-0000-4000-8000-00000000abcd"),
        ]
    );
    // HTTP basic: base64("vox:s3cret").
    assert_eq!(r.auth.as_deref(), Some("Basic dm94OnMzY3JldA=="));
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        r.body,
        serde_json::json!({"variables": {
            "VOXBRIDGE_CALL_ID": "0b1c2d3e-0000-4000-8000-00000000abcd",
            "VOXBRIDGE_AUDIOSOCKET": "10.0.0.5:9092",
            "VOXBRIDGE_ROUTE": "default",
            "VOXBRIDGE_VAR_NAME": "Ann Lee",
        }})
    );

    ari.cancel("0b1c2d3e-0000-4000-8000-00000000abcd").await;
    let r = seen.recv().await.expect("hangup seen");
    assert_eq!(r.method, Method::DELETE);
    assert_eq!(r.path, "/ari/channels/0b1c2d3e-0000-4000-8000-00000000abcd");
    assert_eq!(r.query, vec![("reason".to_string(), "normal".to_string())]);
}

#[tokio::test]
async fn ari_stasis_mode_and_refusals() {
    let (url, mut seen) = server(StatusCode::CONFLICT).await;
    let ari = AriOriginator::new(&AriConfig {
        url,
        app: Some("voxbridge".into()),
        ..AriConfig::default()
    })
    .expect("config");
    let mut req = request();
    req.source.clear();
    match ari.originate(&req).await {
        DialOutcome::Failed(why) => assert!(why.contains("409"), "{why}"),
        other => panic!("a 409 must fail the attempt, got {other:?}"),
    }
    let r = seen.recv().await.expect("request seen");
    let keys: Vec<&str> = r.query.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, vec!["endpoint", "app", "appArgs", "timeout", "channelId"]);
    assert_eq!(r.query[2].1, "0b1c2d3e-0000-4000-8000-00000000abcd");
    assert!(AriOriginator::new(&AriConfig {
        url: "not a url".into(),
        ..AriConfig::default()
    })
    .is_err());
}

#[tokio::test]
async fn the_http_hook_posts_the_call_and_reads_its_answer() {
    let (tx, mut seen) = mpsc::unbounded_channel::<serde_json::Value>();
    let answers = Arc::new(std::sync::Mutex::new(vec![
        r#"{"result":"busy"}"#,
        "",
        r#"{"result":"failed"}"#,
    ]));
    let app = Router::new().route(
        "/originate",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            let answers = answers.clone();
            async move {
                assert_eq!(
                    headers.get("authorization").and_then(|v| v.to_str().ok()),
                    Some("Bearer tok")
                );
                let _ = tx.send(serde_json::from_slice(&body).expect("json body"));
                answers.lock().expect("lock").remove(0).to_owned()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/originate", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let hook = HttpHook::new(&HttpHookConfig {
        url,
        bearer_token: Some("tok".into()),
        ..HttpHookConfig::default()
    })
    .expect("config");
    assert_eq!(hook.originate(&request()).await, DialOutcome::Busy);
    let body = seen.recv().await.expect("seen");
    assert_eq!(body["call_id"], "0b1c2d3e-0000-4000-8000-00000000abcd");
    assert_eq!(body["audiosocket"], "10.0.0.5:9092");
    assert_eq!(body["vars"]["name"], "Ann Lee");
    assert_eq!(body["attempt"], 1);
    assert_eq!(hook.originate(&request()).await, DialOutcome::Accepted);
    assert!(matches!(hook.originate(&request()).await, DialOutcome::Failed(_)));
}
