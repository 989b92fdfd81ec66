//! The REST API through its router (no socket): auth (JWT HS256/RS256,
//! access keys, admin key), tenant isolation on every endpoint, the JSON
//! errors, hangup through the media command interface, the OpenAPI document.
//! Runs against both stores.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;
use voxbridge_contract::commands::CallCommands;
use voxbridge_control::api::auth::{Auth, AuthConfig};
use voxbridge_control::api::{router, AppState};
use voxbridge_control::billing::RatePlan;
use voxbridge_control::model::{CallChange, NewCall};
use voxbridge_control::state::{CallStatus, Direction, HangupBy, HangupReason};
use voxbridge_control::store::billing::{Billed, BillingRecord};
use voxbridge_control::store::webhooks::EndpointSpec;
use voxbridge_control::store::Store;
use voxbridge_control::time::Millis;

both_stores!(
    credentials_are_checked,
    foreign_tenants_get_404_everywhere,
    bad_requests_get_documented_errors,
    admin_manages_customers_and_keys,
    every_request_resolves_to_an_active_customer,
    jwt_nbf_is_checked_and_the_scheme_is_case_insensitive,
    text_with_control_or_invisible_characters_is_a_400,
    readiness_reports_a_stuck_pipeline,
    hangup_reaches_the_media_plane,
    openapi_document_lists_every_route,
    webhook_urls_to_internal_addresses_are_refused,
    provider_compatible_hangups_end_only_the_tenants_calls,
    provider_compatible_transfers_reach_answered_calls,
    provider_transfers_follow_the_dial_of_a_document_the_bot_serves,
);

const SECRET: &[u8] = b"test-hs256-secret-0123456789";
const ADMIN: &str = "admin-key-0123456789abcdef";
const RSA_PRIVATE: &[u8] = include_bytes!("data/jwt_rs256_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("data/jwt_rs256_public.pem");

/// Records hangup commands; says the call runs here when `running`.
#[derive(Default)]
struct FakeMedia {
    running: bool,
    hangups: Mutex<Vec<String>>,
    /// Transfers asked for (call, target); each is taken.
    transfers: Mutex<Vec<(String, String)>>,
}

impl CallCommands for FakeMedia {
    fn hangup(&self, call_id: &str) -> bool {
        self.hangups.lock().expect("lock").push(call_id.to_owned());
        self.running
    }

    fn transfer(&self, call_id: &str, target: &str, done: voxbridge_contract::commands::DialDone) {
        self.transfers
            .lock()
            .expect("lock")
            .push((call_id.to_owned(), target.to_owned()));
        done(Ok(()));
    }
}

/// The router, with customers `a` and `b` (the tokens' tenants) created.
async fn app(store: Store, media: Arc<FakeMedia>) -> axum::Router {
    app_with(store, media, Default::default()).await
}

/// [`app`] whose fetches (provider transfers' documents) may reach `allow`.
async fn app_allowing(store: Store, media: Arc<FakeMedia>, allow: &str) -> axum::Router {
    let allow = voxbridge_control::webhooks::ssrf::Allow(vec![allow.parse().expect("a CIDR")]);
    app_over(store, media, Default::default(), allow).await
}

/// [`app`] over a given event pipeline.
async fn app_with(
    store: Store,
    media: Arc<FakeMedia>,
    events: voxbridge_control::sink::Pipeline,
) -> axum::Router {
    app_over(store, media, events, Default::default()).await
}

/// [`app`] over a given event pipeline, its fetches allowed to `allow`.
async fn app_over(
    store: Store,
    media: Arc<FakeMedia>,
    events: voxbridge_control::sink::Pipeline,
    allow: voxbridge_control::webhooks::ssrf::Allow,
) -> axum::Router {
    for c in ["a", "b"] {
        store.ensure_customer(c, c).await.expect("customer");
    }
    let auth = Auth::new(&AuthConfig {
        hs256_secret: Some(SECRET.to_vec()),
        rs256_public_pem: Some(RSA_PUBLIC.to_vec()),
        leeway_s: 30,
        admin_key: Some(ADMIN.into()),
    })
    .expect("auth");
    router(AppState {
        store,
        commands: media,
        auth,
        bus: Default::default(),
        live: Default::default(),
        webhook_allow: Arc::new(allow),
        dialer: None,
        events,
        recordings_dir: Arc::new(std::env::temp_dir()),
    })
}

fn now_s() -> i64 {
    Millis::now().0 / 1000
}

fn hs256(claims: Value) -> String {
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET)).expect("sign")
}

fn token(customer: &str) -> String {
    hs256(json!({"customer_id": customer, "agent_id": "agent-7", "exp": now_s() + 300}))
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = auth {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(s) => {
            b = b.header("content-type", "application/json");
            Body::from(s.to_owned())
        }
        None => Body::empty(),
    };
    let resp = app
        .clone()
        .oneshot(b.body(body).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (status, v)
}

/// POSTs `body` as `auth`; asserts a 201 and returns the body.
async fn created(app: &axum::Router, uri: &str, auth: &str, body: &str) -> Value {
    let (s, v) = call(app, "POST", uri, Some(auth), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "POST {uri}: {v}");
    v
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

async fn seed_call(store: &Store, id: &str, customer: &str) {
    store
        .create_call(&NewCall {
            id: id.into(),
            customer_id: customer.into(),
            status: CallStatus::Ringing,
            direction: Direction::Incoming,
            source: "1000".into(),
            destination: "2000".into(),
            route: "default".into(),
            ingress: "audiosocket".into(),
            at: Millis::now(),
        })
        .await
        .expect("call");
}

/// Moves a seeded call to answered (`progressing`).
async fn answer_call(store: &Store, id: &str) {
    let answered = CallChange {
        to: CallStatus::Progressing,
        at: Millis::now(),
        hangup: None,
        sip: None,
    };
    store
        .transition_call(None, id, &answered, None)
        .await
        .expect("answered");
}

async fn credentials_are_checked(store: Store) {
    seed_call(&store, "c1", "a").await;
    let app = app(store, Arc::default()).await;
    let (s, v) = call(&app, "GET", "/v1/calls", None, None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (s, v) = call(&app, "GET", "/v1/calls", Some(&token("a")), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["items"][0]["id"], "c1");
    // Expired 10 s ago: inside the 30 s leeway. 100 s ago: refused.
    let (s, _) = call(
        &app,
        "GET",
        "/v1/calls",
        Some(&hs256(json!({"customer_id": "a", "exp": now_s() - 10}))),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(
        &app,
        "GET",
        "/v1/calls",
        Some(&hs256(json!({"customer_id": "a", "exp": now_s() - 100}))),
        None,
    )
    .await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (s, _) = call(
        &app,
        "GET",
        "/v1/calls",
        Some(&hs256(json!({"customer_id": "a"}))),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "exp is required");
    let forged = encode(
        &Header::default(),
        &json!({"customer_id": "a", "exp": now_s() + 60}),
        &EncodingKey::from_secret(b"other"),
    )
    .expect("sign");
    let (s, _) = call(&app, "GET", "/v1/calls", Some(&forged), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let rs = encode(
        &Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"customer_id": "a", "exp": now_s() + 60}),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa key"),
    )
    .expect("sign");
    let (s, v) = call(&app, "GET", "/v1/calls/c1", Some(&rs), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = call(&app, "GET", "/v1/calls", Some("not.a.jwt"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&app, "GET", "/v1/calls", Some("vbk_unknown"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// A hung-up call of `customer` (given a rate plan and credit), billed.
async fn billed_call(store: &Store, customer: &str, id: &str) -> BillingRecord {
    let admin = voxbridge_control::model::Actor { id: "t".into() };
    store.ensure_customer(customer, customer).await.expect("customer");
    let plan = RatePlan {
        price_per_minute_micros: 10_000,
        increment_first_s: 1,
        increment_next_s: 1,
        min_charge_micros: 0,
        low_balance_threshold_micros: 0,
    };
    store.set_rate_plan(&admin, customer, &plan).await.expect("plan");
    store.credit(&admin, customer, 1_000_000).await.expect("credit");
    seed_call(store, id, customer).await;
    let hangup = CallChange {
        to: CallStatus::Hangup,
        at: Millis::now(),
        hangup: Some((HangupBy::Remote, HangupReason::Normal, "caller_hangup".into())),
        sip: None,
    };
    store
        .transition_call(None, id, &hangup, None)
        .await
        .expect("hangup");
    match store.bill_call("ev-1", id).await.expect("bill") {
        Billed::New(r) => r,
        other => panic!("expected a charge, got {other:?}"),
    }
}

async fn foreign_tenants_get_404_everywhere(store: Store) {
    seed_call(&store, "b-call", "b").await;
    store
        .add_transcript("b-call", "in", "private words", Millis::now())
        .await
        .expect("transcript");
    let b_transcripts = store
        .list_transcripts(
            "b",
            None,
            voxbridge_control::model::PageReq::new(None, None).expect("page"),
        )
        .await
        .expect("list");
    let t = &b_transcripts.items[0];
    let record = billed_call(&store, "b", "b-billed").await;
    let spec = EndpointSpec {
        url: "https://hooks.example.com/b".into(),
        event_types: Vec::new(),
        enabled: Some(false),
        max_concurrency: None,
        timeout_ms: None,
    };
    let (hook, _) = store
        .create_webhook(&voxbridge_control::model::Actor { id: "t".into() }, "b", &spec)
        .await
        .expect("b's webhook");
    // b's recording, its file where the API reads them (the temp dir).
    let rec_id = voxbridge_control::store::new_id();
    let rec_file = format!("{rec_id}.wav");
    store
        .start_recording_once(&rec_id, "b-call", &rec_file, 16000, Millis::now())
        .await
        .expect("b's recording");
    std::fs::write(std::env::temp_dir().join(&rec_file), b"RIFF....WAVE").expect("the file");
    let app = app(store.clone(), Arc::default()).await;
    let a = token("a");
    for (method, uri) in [
        ("GET", "/v1/calls/b-call".to_string()),
        ("POST", "/v1/calls/b-call/hangup".to_string()),
        ("GET", format!("/v1/transcribes/{}", t.transcribe_id)),
        ("GET", format!("/v1/transcripts/{}", t.id)),
        ("GET", format!("/v1/billing/records/{}", record.id)),
        ("GET", format!("/v1/webhooks/{}", hook.id)),
        ("DELETE", format!("/v1/webhooks/{}", hook.id)),
        ("GET", format!("/v1/webhooks/{}/deliveries", hook.id)),
        ("GET", "/v1/billing".to_string()),
        ("GET", format!("/v1/recordings/{rec_id}")),
        ("POST", "/v1/calls/b-call/recordings".to_string()),
        ("POST", "/v1/calls/b-call/recordings/stop".to_string()),
        ("POST", "/v1/calls/b-call/recordings/pause".to_string()),
        ("POST", "/v1/calls/b-call/recordings/resume".to_string()),
    ] {
        let (s, v) = call(&app, method, &uri, Some(&a), None).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{method} {uri}"
        );
        assert!(
            !v.to_string().contains("b-call") && !v.to_string().contains("private"),
            "{v}"
        );
    }
    for uri in [
        "/v1/calls",
        "/v1/transcribes",
        "/v1/transcripts",
        "/v1/audit",
        "/v1/transcribes?call_id=b-call",
        "/v1/billing/records",
        "/v1/billing/records?call_id=b-billed",
        "/v1/webhooks",
        &format!("/v1/transcripts?transcribe_id={}", t.transcribe_id),
        "/v1/recordings",
        "/v1/recordings?call_id=b-call",
    ] {
        let (s, v) = call(&app, "GET", uri, Some(&a), None).await;
        assert_eq!(s, StatusCode::OK, "{uri}");
        assert_eq!(v["items"], json!([]), "{uri} leaks: {v}");
    }
    assert_eq!(
        store.get_call("b", "b-call").await.expect("get").status,
        CallStatus::Ringing
    );
    let (s, v) = call(&app, "GET", "/v1/transcripts", Some(&token("b")), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["items"][0]["message"], "private words");
    let resp = app
        .clone()
        .oneshot(
            Request::get(format!("/v1/recordings/{rec_id}"))
                .header("authorization", format!("Bearer {}", token("b")))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::OK, "the owner gets its recording");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"RIFF....WAVE");
    let _ = std::fs::remove_file(std::env::temp_dir().join(&rec_file));
}

async fn bad_requests_get_documented_errors(store: Store) {
    let app = app(store, Arc::default()).await;
    let cases: [(&str, &str, Option<String>, StatusCode, &str); 7] = [
        (
            "POST",
            "/v1/customers",
            Some("{not json".into()),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/customers",
            Some(r#"{"name":"x","surprise":1}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/customers",
            Some(r#"{"email":"x@y"}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "POST",
            "/v1/customers",
            Some(format!(r#"{{"name":"{}"}}"#, "x".repeat(70_000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "GET",
            "/v1/calls?limit=0",
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/v1/calls?status=answered",
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/v1/nothing-here",
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (method, uri, body, status, want) in cases {
        let tok = if uri.starts_with("/v1/customers") {
            ADMIN.to_string()
        } else {
            token("a")
        };
        let (s, v) = call(&app, method, uri, Some(&tok), body.as_deref()).await;
        assert_eq!((s, code(&v)), (status, want), "{method} {uri}: {v}");
        assert!(v["error"]["message"].is_string());
    }
    let req = Request::builder()
        .method("POST")
        .uri("/v1/customers")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::from(r#"{"name":"x"}"#))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, v) = call(&app, "GET", "/v1/calls?cursor=zzz", Some(&token("a")), None).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));
}

async fn webhook_urls_to_internal_addresses_are_refused(store: Store) {
    let app = app(store, Arc::default()).await;
    let a = token("a");
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://localhost:9000/hook",
        "http://[::ffff:192.168.0.1]/hook",
    ] {
        let body = json!({ "url": url }).to_string();
        let (s, v) = call(&app, "POST", "/v1/webhooks", Some(&a), Some(&body)).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::FORBIDDEN, "forbidden_destination"),
            "{url}: {v}"
        );
    }
    for url in [
        "file:///etc/passwd",
        "not a url",
        "https://user:pw@hooks.example.com/",
    ] {
        let body = json!({ "url": url }).to_string();
        let (s, v) = call(&app, "POST", "/v1/webhooks", Some(&a), Some(&body)).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{url}: {v}"
        );
    }
    let (s, v) = call(&app, "GET", "/v1/webhooks", Some(&a), None).await;
    assert_eq!(
        (s, v["items"].clone()),
        (StatusCode::OK, json!([])),
        "nothing was saved"
    );
}

async fn admin_manages_customers_and_keys(store: Store) {
    let app = app(store.clone(), Arc::default()).await;
    let (s, v) = call(&app, "GET", "/v1/customers", Some(&token("a")), None).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, v) = call(
        &app,
        "POST",
        "/v1/customers",
        Some(ADMIN),
        Some(r#"{"id":"acme","name":"Acme"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(
        &app,
        "POST",
        "/v1/customers",
        Some(ADMIN),
        Some(r#"{"id":"acme","name":"Again"}"#),
    )
    .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"));
    let (s, v) = call(
        &app,
        "POST",
        "/v1/customers/acme/access_keys",
        Some(ADMIN),
        Some(r#"{"name":"ci"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let secret = v["secret"].as_str().expect("secret").to_owned();
    let key_id = v["key"]["id"].as_str().expect("id").to_owned();
    // Billing: the admin sets a plan and credits; the tenant reads it.
    let plan = r#"{"price_per_minute_micros":12000,"increment_first_s":6,"increment_next_s":6,"min_charge_micros":0,"low_balance_threshold_micros":1000}"#;
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/customers/acme/billing",
        Some(&secret),
        Some(plan),
    )
    .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, "forbidden"),
        "tenants cannot set plans"
    );
    let (s, v) = call(&app, "PUT", "/v1/customers/acme/billing", Some(ADMIN), Some(plan)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let bad = plan.replace("\"increment_first_s\":6", "\"increment_first_s\":0");
    let (s, _) = call(&app, "PUT", "/v1/customers/acme/billing", Some(ADMIN), Some(&bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = call(
        &app,
        "POST",
        "/v1/customers/acme/billing/credit",
        Some(ADMIN),
        Some(r#"{"amount_micros":2500000}"#),
    )
    .await;
    assert_eq!(
        (s, v["balance_micros"].as_i64()),
        (StatusCode::OK, Some(2_500_000)),
        "{v}"
    );
    // JSON integers may be written 1.0; real fractions are refused.
    let (s, v) = call(
        &app,
        "POST",
        "/v1/customers/acme/billing/credit",
        Some(ADMIN),
        Some(r#"{"amount_micros":0.0}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(
        &app,
        "POST",
        "/v1/customers/acme/billing/credit",
        Some(ADMIN),
        Some(r#"{"amount_micros":1.5}"#),
    )
    .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_body"), "{v}");
    let (s, v) = call(&app, "GET", "/v1/billing", Some(&secret), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["plan"]["increment_next_s"], 6);
    assert_eq!(v["balance_micros"], 2_500_000);
    seed_call(&store, "acme-call", "acme").await;
    // The key works as a header, as a bearer token and as a query parameter.
    let req = Request::builder()
        .uri("/v1/calls")
        .header("x-access-key", &secret)
        .body(Body::empty())
        .expect("req");
    let resp = app.clone().oneshot(req).await.expect("resp");
    assert_eq!(resp.status(), StatusCode::OK);
    let (s, v) = call(&app, "GET", "/v1/calls/acme-call", Some(&secret), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = call(&app, "GET", &format!("/v1/calls?accesskey={secret}"), None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&app, "GET", "/v1/customers/acme/access_keys", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!v.to_string().contains(&secret), "the secret is shown once only");
    let (s, _) = call(
        &app,
        "DELETE",
        &format!("/v1/customers/acme/access_keys/{key_id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(&app, "GET", "/v1/calls", Some(&secret), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a deleted key stops working");
    let (s, _) = call(&app, "DELETE", "/v1/customers/acme", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = call(&app, "GET", "/v1/customers/acme", Some(ADMIN), None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, v) = call(&app, "GET", "/v1/audit", Some(&token("acme")), None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "unauthorized"),
        "a JWT naming a deleted customer is refused"
    );
    let audit = store
        .list_audit(
            "acme",
            voxbridge_control::model::PageReq {
                limit: 50,
                before: None,
            },
        )
        .await
        .expect("audit");
    let actions: Vec<_> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "customer.delete",
            "access_key.delete",
            "billing.credit",
            "billing.credit",
            "billing.plan",
            "access_key.create",
            "customer.create"
        ]
    );
}

/// Rule: every authenticated request resolves to an existing, active
/// customer; deleting one disables what it owns in the same transaction
/// and its id is never reused.
async fn every_request_resolves_to_an_active_customer(store: Store) {
    let media = Arc::new(FakeMedia {
        running: true,
        ..FakeMedia::default()
    });
    let app = app(store.clone(), media.clone()).await;
    let (s, v) = call(&app, "GET", "/v1/calls", Some(&token("never-existed")), None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"), "{v}");
    created(&app, "/v1/customers", ADMIN, r#"{"id":"gone","name":"Gone"}"#).await;
    let v = created(&app, "/v1/customers/gone/access_keys", ADMIN, r#"{"name":"k"}"#).await;
    let key = v["secret"].as_str().expect("secret").to_owned();
    let gone = token("gone");
    let hook = r#"{"url":"https://hooks.example.com/gone","event_types":[]}"#;
    let v = created(&app, "/v1/webhooks", &gone, hook).await;
    let hook_id = v["endpoint"]["id"].as_str().expect("hook id").to_owned();
    let actor = voxbridge_control::model::Actor { id: "t".into() };
    let spec: voxbridge_control::campaign::CampaignSpec =
        serde_json::from_value(json!({"name": "c"})).expect("spec");
    let campaign = store
        .create_campaign(&actor, "gone", &spec)
        .await
        .expect("campaign");
    seed_call(&store, "gone-live", "gone").await;

    let (s, _) = call(&app, "DELETE", "/v1/customers/gone", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        *media.hangups.lock().expect("lock"),
        ["gone-live"],
        "its live call is hung up"
    );
    for (method, uri, body) in [
        ("GET", "/v1/calls", None),
        ("POST", "/v1/webhooks", Some(hook)),
        ("POST", "/v1/calls", Some(r#"{"destination":"+15550100"}"#)),
    ] {
        for cred in [&gone, &key] {
            let (s, v) = call(&app, method, uri, Some(cred), body).await;
            assert_eq!(
                (s, code(&v)),
                (StatusCode::UNAUTHORIZED, "unauthorized"),
                "{method} {uri}: {v}"
            );
        }
    }
    let h = store
        .get_webhook("gone", &hook_id)
        .await
        .expect("webhook kept as history");
    assert!(!h.enabled, "its webhooks receive nothing more");
    let c = store.get_campaign("gone", &campaign.id).await.expect("campaign");
    assert_eq!(c.status.as_str(), "stopped");
    // The id is a tombstone: a new customer cannot take over the old one's data.
    let (s, v) = call(
        &app,
        "POST",
        "/v1/customers",
        Some(ADMIN),
        Some(r#"{"id":"gone","name":"New"}"#),
    )
    .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    let (s, _) = call(&app, "GET", "/v1/customers/gone", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(
        &app,
        "POST",
        "/v1/customers/gone/access_keys",
        Some(ADMIN),
        Some(r#"{"name":"k"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "no new keys for a deleted customer");
}

/// Rule: a JWT is not accepted before its `nbf`; the scheme is
/// case-insensitive (RFC 9110).
async fn jwt_nbf_is_checked_and_the_scheme_is_case_insensitive(store: Store) {
    let app = app(store, Arc::default()).await;
    let early = hs256(json!({"customer_id": "a", "exp": now_s() + 600, "nbf": now_s() + 300}));
    let (s, v) = call(&app, "GET", "/v1/calls", Some(&early), None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"), "{v}");
    let ripe = hs256(json!({"customer_id": "a", "exp": now_s() + 600, "nbf": now_s() - 1}));
    let (s, _) = call(&app, "GET", "/v1/calls", Some(&ripe), None).await;
    assert_eq!(s, StatusCode::OK);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let req = Request::builder()
            .uri("/v1/calls")
            .header("authorization", format!("{scheme} {}", token("a")))
            .body(Body::empty())
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("response");
        assert_eq!(resp.status(), StatusCode::OK, "scheme {scheme}");
    }
}

/// Rule: a NUL (or another control, bidirectional or invisible character)
/// anywhere in a path, a query or a body is a 400, the same on both stores,
/// never a 503 from the database.
async fn text_with_control_or_invisible_characters_is_a_400(store: Store) {
    let app = app(store, Arc::default()).await;
    let a = token("a");
    for (method, uri, body) in [
        ("GET", "/v1/calls/abc%00def", None),
        ("GET", "/v1/calls?cursor=%00", None),
        (
            "POST",
            "/v1/webhooks",
            Some(r#"{"url":"https://hooks.example.com/\u0000","event_types":[]}"#),
        ),
        ("POST", "/v1/calls", Some(r#"{"destination":"\u200b"}"#)),
        ("POST", "/v1/calls", Some(r#"{"destination":"\u202e0100"}"#)),
    ] {
        let (s, v) = call(&app, method, uri, Some(&a), body).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "invalid_text"),
            "{method} {uri}: {v}"
        );
    }
    let long = format!(
        r#"{{"id":"x","name":"Acme","email":"{}@example.com"}}"#,
        "a".repeat(5000)
    );
    let (s, v) = call(&app, "POST", "/v1/customers", Some(ADMIN), Some(&long)).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_text"), "{v}");
    let email = r#"{"id":"x","name":"Acme","email":"a@b@c"}"#;
    let (s, v) = call(&app, "POST", "/v1/customers", Some(ADMIN), Some(email)).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"), "{v}");
    // The OpenAPI document says so on every free-text string.
    let (_, doc) = call(&app, "GET", "/v1/openapi.json", None, None).await;
    let route = &doc["components"]["schemas"]["Originate"]["properties"]["route"];
    assert_eq!(route["pattern"], voxbridge_control::api::text::PATTERN, "{route}");
    assert_eq!(route["maxLength"], voxbridge_control::api::text::MAX_TEXT);
    let email = &doc["components"]["schemas"]["NewCustomer"]["properties"]["email"];
    assert_eq!(email["maxLength"], 254, "{email}");
}

/// Rule: readiness reports a call event pipeline that is stuck.
async fn readiness_reports_a_stuck_pipeline(store: Store) {
    let events = voxbridge_control::sink::Pipeline::default();
    let app = app_with(store, Arc::default(), events.clone()).await;
    let (s, v) = call(&app, "GET", "/v1/ready", None, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    events
        .stats
        .retrying_since_ms
        .store(Millis::now().0 - 10_000, std::sync::atomic::Ordering::Relaxed);
    let (s, v) = call(&app, "GET", "/v1/ready", None, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(v["reason"].as_str().unwrap_or("").contains("stuck"), "{v}");
}

async fn hangup_reaches_the_media_plane(store: Store) {
    seed_call(&store, "live", "a").await;
    seed_call(&store, "stale", "a").await;
    answer_call(&store, "live").await;
    let media = Arc::new(FakeMedia {
        running: true,
        ..Default::default()
    });
    let app = app(store.clone(), media.clone()).await;
    let (s, v) = call(&app, "POST", "/v1/calls/live/hangup", Some(&token("a")), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["status"], "terminating",
        "answered: terminating until media confirms"
    );
    assert_eq!(*media.hangups.lock().expect("lock"), ["live"]);
    let (_, v) = call(&app, "POST", "/v1/calls/live/hangup", Some(&token("a")), None).await;
    assert_eq!(v["status"], "terminating", "a second hangup is a no-op");
    assert_eq!(media.hangups.lock().expect("lock").len(), 1);
    // A call no media plane here runs is closed at once.
    let app = self::app(store.clone(), Arc::default()).await;
    let (s, v) = call(&app, "POST", "/v1/calls/stale/hangup", Some(&token("a")), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "hangup");
    assert_eq!(v["hangup_reason"], "cancel");
    assert_eq!(v["hangup_by"], "local");
    let (_, v) = call(&app, "GET", "/v1/audit", Some(&token("a")), None).await;
    let actions: Vec<_> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(actions, ["call.hangup", "call.canceling", "call.terminating"]);
    assert_eq!(v["items"][2]["actor"], "agent:agent-7");
    assert_eq!(v["items"][2]["before"]["status"], "progressing");
    assert_eq!(v["items"][2]["after"]["status"], "terminating");
}

async fn openapi_document_lists_every_route(store: Store) {
    let app = app(store, Arc::default()).await;
    let (s, doc) = call(&app, "GET", "/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/v1/calls",
        "/v1/calls/{id}",
        "/v1/calls/{id}/hangup",
        "/v1/transcribes",
        "/v1/transcripts/{id}",
        "/v1/customers",
        "/v1/customers/{id}/access_keys/{key_id}",
        "/v1/health",
        "/v1/ready",
        "/v1/audit",
        "/v1/billing",
        "/v1/billing/records/{id}",
        "/v1/customers/{id}/billing",
        "/v1/customers/{id}/billing/credit",
        "/v1/webhooks",
        "/v1/webhooks/{id}/rotate_secret",
        "/v1/webhook_deliveries/{id}/redeliver",
        "/v1/campaigns",
        "/v1/campaigns/{id}/targets",
        "/v1/campaigns/{id}/stats",
        "/v1/calls/{id}/transcribes",
        "/v1/calls/{id}/transcribes/stop",
        "/v1/calls/{id}/recordings",
        "/v1/calls/{id}/recordings/pause",
        "/v1/recordings",
        "/v1/recordings/{id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    // voxbridge's own speech recognizer protocol is documented with the API.
    for (schema, tag) in [
        ("PlainClient", "start"),
        ("PlainClient", "stop"),
        ("PlainServer", "transcript"),
        ("PlainServer", "error"),
    ] {
        let text = doc["components"]["schemas"][schema].to_string();
        assert!(
            text.contains(&format!("\"{tag}\"")),
            "{schema} lacks {tag}: {text}"
        );
    }
    assert!(doc["paths"]["/v1/calls"]["post"].is_object(), "originate missing");
    assert!(doc["components"]["schemas"]["Call"].is_object());
    // The server checks webhook URLs against the very pattern it documents.
    assert_eq!(
        doc["components"]["schemas"]["EndpointSpec"]["properties"]["url"]["pattern"],
        voxbridge_control::api::webhooks::URL_PATTERN
    );
    // Time zones are listed.
    let zones = doc["components"]["schemas"]["CampaignSpec"]["properties"]["timezone"]["enum"]
        .as_array()
        .expect("timezone enum");
    assert!(
        zones.iter().any(|z| z == "Europe/Berlin") && zones.len() > 300,
        "{} zones",
        zones.len()
    );
    let (s, v) = call(&app, "GET", "/v1/ready", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ready");
}

/// A request with any headers and a raw body (form, none).
async fn raw(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (StatusCode, Value) {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::from(body.to_owned())).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (status, v)
}

/// Twilio's call update as its SDKs send it: a form, Basic auth.
async fn twilio(
    app: &axum::Router,
    path: &str,
    auth: (&'static str, String),
    form: &str,
) -> (StatusCode, Value) {
    let content_type = ("content-type", "application/x-www-form-urlencoded".to_string());
    raw(app, "POST", path, &[auth, content_type], form).await
}

fn basic(user: &str, password: &str) -> (&'static str, String) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    ("authorization", format!("Basic {b64}"))
}

/// Twilio's, Telnyx's and Plivo's hang-up requests, as bots written for
/// them send them, end the call of the tenant whose access key signs them
/// (account id = customer id), with the provider's answers for a call
/// that has ended or is unknown, and never another tenant's call.
async fn provider_compatible_hangups_end_only_the_tenants_calls(store: Store) {
    for id in ["tw", "tx", "pl", "b-call"] {
        seed_call(&store, id, if id == "b-call" { "b" } else { "a" }).await;
    }
    let media = Arc::new(FakeMedia::default());
    let app = app(store.clone(), media.clone()).await;
    let v = created(&app, "/v1/customers/a/access_keys", ADMIN, r#"{"name":"bot"}"#).await;
    let key = v["secret"].as_str().expect("the new key's secret").to_owned();

    // Twilio: account id and token as Basic auth, Status=completed.
    let (s, v) = twilio(
        &app,
        "/2010-04-01/Accounts/a/Calls/tw.json",
        basic("a", &key),
        "Status=completed",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["sid"].as_str(), v["account_sid"].as_str(), v["status"].as_str()),
        (Some("tw"), Some("a"), Some("completed"))
    );
    assert_eq!(
        *media.hangups.lock().expect("lock"),
        ["tw"],
        "the media plane was asked"
    );
    let (s, v) = twilio(
        &app,
        "/2010-04-01/Accounts/a/Calls/nope.json",
        basic("a", &key),
        "Status=completed",
    )
    .await;
    assert_eq!(
        (s, v["code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(20404)),
        "pipecat reads 20404 as already ended"
    );
    let (s, v) = twilio(
        &app,
        "/2010-04-01/Accounts/b/Calls/b-call.json",
        basic("a", &key),
        "Status=completed",
    )
    .await;
    assert_eq!(
        (s, v["code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(20404)),
        "another account is unknown"
    );
    let (s, _) = twilio(
        &app,
        "/2010-04-01/Accounts/a/Calls/tw.json",
        basic("b", &key),
        "Status=completed",
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the Basic user must be the key's customer"
    );
    let (s, _) = twilio(
        &app,
        "/2010-04-01/Accounts/a/Calls/tw.json",
        basic("a", "wrong"),
        "Status=completed",
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = twilio(
        &app,
        "/2010-04-01/Accounts/a/Calls/tw.json",
        basic("a", &key),
        "Url=https://x&Method=PUT",
    )
    .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "a document is asked for with GET or POST"
    );

    // Telnyx: the API key as a bearer token.
    let bearer = ("authorization", format!("Bearer {key}"));
    let (s, v) = raw(
        &app,
        "POST",
        "/v2/calls/tx/actions/hangup",
        std::slice::from_ref(&bearer),
        "",
    )
    .await;
    assert_eq!((s, &v["data"]["result"]), (StatusCode::OK, &json!("ok")), "{v}");
    let (s, v) = raw(
        &app,
        "POST",
        "/v2/calls/b-call/actions/hangup",
        std::slice::from_ref(&bearer),
        "",
    )
    .await;
    assert_eq!(
        (s, &v["errors"][0]["code"]),
        (StatusCode::NOT_FOUND, &json!("10005"))
    );
    let ended = CallChange {
        to: CallStatus::Hangup,
        at: Millis::now(),
        hangup: Some((HangupBy::Remote, HangupReason::Normal, "caller_hangup".into())),
        sip: None,
    };
    store
        .transition_call(None, "tx", &ended, None)
        .await
        .expect("ended");
    let (s, v) = raw(
        &app,
        "POST",
        "/v2/calls/tx/actions/hangup",
        std::slice::from_ref(&bearer),
        "",
    )
    .await;
    assert_eq!(
        (s, &v["errors"][0]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("90018")),
        "already ended: {v}"
    );

    // Plivo: auth id and token as Basic auth, DELETE.
    let (s, v) = raw(&app, "DELETE", "/v1/Account/a/Call/pl/", &[basic("a", &key)], "").await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, _) = raw(
        &app,
        "DELETE",
        "/v1/Account/b/Call/b-call/",
        &[basic("a", &key)],
        "",
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    assert_eq!(
        *media.hangups.lock().expect("lock"),
        ["tw", "tx", "pl"],
        "b's call was never touched"
    );
    let b = store.call_by_id("b-call").await.expect("b's call");
    assert_eq!(b.status, CallStatus::Ringing);
    let (_, v) = call(&app, "GET", "/v1/audit", Some(&token("a")), None).await;
    let by_key = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["actor"].as_str().is_some_and(|a| a.starts_with("key:")))
        .count();
    assert!(by_key >= 3, "each hang-up audited with the key as actor: {v}");
    let (_, doc) = call(&app, "GET", "/v1/openapi.json", None, None).await;
    for path in [
        "/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json",
        "/v2/calls/{call_control_id}/actions/hangup",
        "/v1/Account/{auth_id}/Call/{call_uuid}/",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
}

/// A bot's transfer, as Twilio's call update (`Twiml` with a `<Dial>`) and
/// Telnyx's transfer action send it, reaches an answered call of the
/// tenant as `POST /v1/calls/{id}/transfer` would (audited), and is refused
/// for a call not answered, another tenant's call or TwiML without a
/// `<Dial>`.
async fn provider_compatible_transfers_reach_answered_calls(store: Store) {
    for id in ["tw", "tx", "ringing", "b-call"] {
        seed_call(&store, id, if id == "b-call" { "b" } else { "a" }).await;
    }
    for id in ["tw", "tx", "b-call"] {
        answer_call(&store, id).await;
    }
    let media = Arc::new(FakeMedia::default());
    let app = app(store.clone(), media.clone()).await;
    let v = created(&app, "/v1/customers/a/access_keys", ADMIN, r#"{"name":"bot"}"#).await;
    let key = v["secret"].as_str().expect("the new key's secret").to_owned();

    let twiml =
        "Twiml=%3CResponse%3E%3CDial%3E%3CNumber%3E%2B15550123%3C%2FNumber%3E%3C%2FDial%3E%3C%2FResponse%3E";
    let (s, v) = twilio(
        &app,
        "/2010-04-01/Accounts/a/Calls/tw.json",
        basic("a", &key),
        twiml,
    )
    .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("in-progress")),
        "{v}"
    );
    let (s, v) = twilio(
        &app,
        "/2010-04-01/Accounts/a/Calls/tw.json",
        basic("a", &key),
        "Twiml=%3CResponse%3E%3CSay%3Ehi%3C%2FSay%3E%3C%2FResponse%3E",
    )
    .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "no <Dial>: {v}"
    );
    let (s, v) = twilio(
        &app,
        "/2010-04-01/Accounts/a/Calls/ringing.json",
        basic("a", &key),
        twiml,
    )
    .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "not_answered"), "{v}");

    let bearer = ("authorization", format!("Bearer {key}"));
    let (s, v) = raw(
        &app,
        "POST",
        "/v2/calls/tx/actions/transfer",
        &[bearer.clone(), ("content-type", "application/json".into())],
        r#"{"to":"sip:desk@pbx.example","from":"+15550100"}"#,
    )
    .await;
    assert_eq!((s, &v["data"]["result"]), (StatusCode::OK, &json!("ok")), "{v}");
    let (s, v) = raw(
        &app,
        "POST",
        "/v2/calls/b-call/actions/transfer",
        &[bearer, ("content-type", "application/json".into())],
        r#"{"to":"+15550123"}"#,
    )
    .await;
    assert_eq!(
        (s, &v["errors"][0]["code"]),
        (StatusCode::NOT_FOUND, &json!("10005")),
        "another tenant's call is unknown"
    );
    assert_eq!(
        *media.transfers.lock().expect("lock"),
        [
            ("tw".to_string(), "+15550123".to_string()),
            ("tx".to_string(), "sip:desk@pbx.example".to_string())
        ],
        "only the tenant's answered calls were handed on"
    );
    let audit = store
        .list_audit(
            "a",
            voxbridge_control::model::PageReq {
                limit: 50,
                before: None,
            },
        )
        .await
        .expect("audit");
    let transfers = audit.items.iter().filter(|e| e.action == "call.transfer").count();
    assert_eq!(transfers, 2, "both transfers audited");
}

/// A bot's transfer by URL, as Twilio's call update (`Url`, `Method`) and
/// Plivo's transfer (`aleg_url`, `aleg_method`) send it: voxbridge fetches
/// the document the bot serves, with the call's ids, and hands the call on
/// to what its `<Dial>` dials. Never fetched from an internal address
/// unless allowed (403), nor for a call that is unknown (404) or not
/// answered (409); a document that is missing (502) or has no `<Dial>`
/// (400) moves nothing.
async fn provider_transfers_follow_the_dial_of_a_document_the_bot_serves(store: Store) {
    use axum::routing::any;
    for id in ["tw", "pl", "ringing"] {
        seed_call(&store, id, "a").await;
    }
    for id in ["tw", "pl"] {
        answer_call(&store, id).await;
    }
    // The bot's documents, and what each request carried.
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = asked.clone();
    let docs = axum::Router::new().route(
        "/{doc}",
        any(
            move |axum::extract::Path(doc): axum::extract::Path<String>, req: Request<Body>| {
                let log = log.clone();
                async move {
                    let method = req.method().to_string();
                    let query = req.uri().query().unwrap_or_default().to_string();
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    log.lock().expect("lock").push(format!(
                        "{method} {doc} {query}{}",
                        String::from_utf8_lossy(&body)
                    ));
                    match doc.as_str() {
                        "twiml" => (
                            StatusCode::OK,
                            "<Response><Dial><Number>+15550123</Number></Dial></Response>",
                        ),
                        "plivo" => (
                            StatusCode::OK,
                            "<Response><Dial><User>sip:agent@pbx.example</User></Dial></Response>",
                        ),
                        "say" => (StatusCode::OK, "<Response><Speak>hello</Speak></Response>"),
                        _ => (StatusCode::NOT_FOUND, "no such document"),
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, docs).await });

    let media = Arc::new(FakeMedia::default());
    let guarded = app(store.clone(), media.clone()).await;
    let v = created(
        &guarded,
        "/v1/customers/a/access_keys",
        ADMIN,
        r#"{"name":"bot"}"#,
    )
    .await;
    let key = v["secret"].as_str().expect("the new key's secret").to_owned();
    let url_form = |doc: &str| {
        format!(
            "Url={}&Method=POST",
            url::form_urlencoded::byte_serialize(format!("{base}/{doc}").as_bytes()).collect::<String>()
        )
    };

    let tw = |app: &axum::Router, call: &str, doc: &str| {
        let (app, auth) = (app.clone(), basic("a", &key));
        let (path, form) = (format!("/2010-04-01/Accounts/a/Calls/{call}.json"), url_form(doc));
        async move { twilio(&app, &path, auth, &form).await }
    };

    // Loopback is internal: refused before any request.
    let (s, v) = tw(&guarded, "tw", "twiml").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, "forbidden_destination"),
        "{v}"
    );
    assert!(asked.lock().expect("lock").is_empty(), "nothing fetched");

    let app = app_allowing(store.clone(), media.clone(), "127.0.0.0/8").await;
    let (s, v) = tw(&app, "tw", "twiml").await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("in-progress")),
        "{v}"
    );
    let (s, v) = tw(&app, "tw", "say").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "no <Dial>: {v}"
    );
    let (s, v) = tw(&app, "ringing", "twiml").await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "not_answered"), "{v}");
    let (s, v) = tw(&app, "nope", "twiml").await;
    assert_eq!(
        (s, v["code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(20404)),
        "{v}"
    );

    let plivo = |body: String| {
        let app = app.clone();
        let auth = basic("a", &key);
        async move {
            let content_type = ("content-type", "application/json".to_string());
            raw(
                &app,
                "POST",
                "/v1/Account/a/Call/pl/",
                &[auth, content_type],
                &body,
            )
            .await
        }
    };
    let (s, v) = plivo(format!(
        r#"{{"legs":"aleg","aleg_url":"{base}/plivo","aleg_method":"GET"}}"#
    ))
    .await;
    assert_eq!(
        (s, v["message"].as_str()),
        (StatusCode::ACCEPTED, Some("call transferred")),
        "{v}"
    );
    let (s, v) = plivo(format!(r#"{{"legs":"bleg","aleg_url":"{base}/plivo"}}"#)).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "one leg: {v}"
    );
    let (s, v) = plivo(format!(r#"{{"aleg_url":"{base}/gone"}}"#)).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_GATEWAY, "document_unavailable"),
        "{v}"
    );
    let (s, v) = plivo(r#"{"aleg_url":"ftp://example.com/x"}"#.into()).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"), "{v}");

    assert_eq!(
        *media.transfers.lock().expect("lock"),
        [
            ("tw".to_string(), "+15550123".to_string()),
            ("pl".to_string(), "sip:agent@pbx.example".to_string())
        ],
        "each answered call went where its document's <Dial> said"
    );
    let asked = asked.lock().expect("lock").clone();
    assert_eq!(
        asked,
        [
            "POST twiml CallSid=tw&AccountSid=a",
            "POST say CallSid=tw&AccountSid=a",
            "GET plivo CallUUID=pl&AuthID=a",
            "POST gone CallUUID=pl&AuthID=a",
        ],
        "fetched with the call's ids, and only for answered calls"
    );
}
