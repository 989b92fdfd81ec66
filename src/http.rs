//! The media plane's HTTP surface: `/metrics`, `/healthz` and the RTP
//! session API.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | POST | `/v1/rtp/sessions` | SDP offer (`application/sdp`) | 201, SDP answer; `X-Call-Id` and `Location` headers |
//! | POST | `/v1/rtp/sessions` | JSON plain parameters (`application/json`) | 201, JSON with `call_id`, `local`, `codec`, `pt`, `dtmf_pt`, `sdp` |
//! | GET | `/v1/rtp/sessions` | | 200, JSON list |
//! | DELETE | `/v1/rtp/sessions/{call_id}` | | 204, or 404 |
//!
//! An SDP POST takes `call_id`, `route`, `caller`, `callee` as query
//! parameters. Errors are JSON `{"error": "..."}`: 400 for a bad request
//! (unparsable SDP or JSON, no common codec), 415 for another content type,
//! 503 when the daemon cannot take the call now (shutting down, call limit,
//! no free port).
//!
//! Every session request needs `Authorization: Bearer <token>` with a token
//! of `[[media_api.tokens]]` (401 without, counted). A token's tenant is
//! the only one its sessions can belong to: its `customer_id` is written
//! into the call's parameters whatever the request says (naming another is
//! 403), and a token without one may not name any. A token lists and hangs
//! up only the sessions of its tenant (another's is 404). `/metrics` and
//! `/healthz` are open; `[media_api] listen` serves the session API on a
//! listener of its own.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use voxbridge_media::config::MediaApiToken;
use voxbridge_media::metrics::Metrics;
use voxbridge_media::sessions::{Created, PlainSession, SessionRequest};
use voxbridge_media::{MediaError, RtpSessions};
use voxbridge_proto::sdp::AudioCodec;

/// More Prometheus text appended to `/metrics` (the control sidecar's).
pub type ExtraMetrics = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    rtp: RtpSessions,
    extra: Option<ExtraMetrics>,
    tokens: Arc<Vec<MediaApiToken>>,
}

static UNAUTHORIZED: AtomicU64 = AtomicU64::new(0);

/// The router: `/metrics`, `/healthz` and the session API for `tokens`.
pub fn router(metrics: Arc<Metrics>, rtp: RtpSessions, tokens: Vec<MediaApiToken>) -> Router {
    router_with(metrics, rtp, None, tokens)
}

/// `/metrics` and `/healthz` only, for a process without a media plane
/// (`voxbridge serve --role control`).
pub fn metrics_only(render: ExtraMetrics) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let mut text = render();
                text.push_str(&crate::listener::render_metrics());
                async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
}

/// [`router`] with `extra` appended to `/metrics`.
pub fn router_with(
    metrics: Arc<Metrics>,
    rtp: RtpSessions,
    extra: Option<ExtraMetrics>,
    tokens: Vec<MediaApiToken>,
) -> Router {
    metrics_router(metrics.clone(), rtp.clone(), extra.clone())
        .merge(sessions_router(metrics, rtp, extra, tokens))
}

/// `/metrics` and `/healthz` only (open).
pub fn metrics_router(metrics: Arc<Metrics>, rtp: RtpSessions, extra: Option<ExtraMetrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(AppState {
            metrics,
            rtp,
            extra,
            tokens: Arc::default(),
        })
}

/// The session API only (authenticated), for a listener of its own.
pub fn sessions_router(
    metrics: Arc<Metrics>,
    rtp: RtpSessions,
    extra: Option<ExtraMetrics>,
    tokens: Vec<MediaApiToken>,
) -> Router {
    Router::new()
        .route("/v1/rtp/sessions", get(list).post(create))
        .route("/v1/rtp/sessions/{call_id}", axum::routing::delete(hangup))
        .with_state(AppState {
            metrics,
            rtp,
            extra,
            tokens: Arc::new(tokens),
        })
}

/// The token a request presents, if it is one of the configured ones.
fn authorize<'a>(s: &'a AppState, headers: &HeaderMap) -> Option<&'a MediaApiToken> {
    let offered = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    offered.and_then(|t| s.tokens.iter().find(|k| k.token.matches(t)))
}

/// The 401 for a request without a valid token (counted).
fn unauthorized(s: &AppState) -> Response {
    UNAUTHORIZED.fetch_add(1, Relaxed);
    let why = if s.tokens.is_empty() {
        "the media API needs a token: configure [[media_api.tokens]] (or VOXBRIDGE_MEDIA_API_TOKEN)"
    } else {
        "send Authorization: Bearer <token> with a token of [[media_api.tokens]]"
    };
    let mut r = error(StatusCode::UNAUTHORIZED, why);
    r.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer"),
    );
    r
}

/// The call parameters a token may give: its tenant, and no other.
fn tenant_params(
    token: &MediaApiToken,
    mut params: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    match (&token.customer_id, params.get("customer_id")) {
        (Some(own), Some(asked)) if own != asked => {
            return Err(format!(
                "token {:?} cannot create calls for customer {asked:?}",
                token.name
            ))
        }
        (None, Some(asked)) => {
            return Err(format!(
                "token {:?} has no customer: it cannot name customer {asked:?}",
                token.name
            ))
        }
        _ => {}
    }
    if let Some(own) = &token.customer_id {
        params.insert("customer_id".into(), own.clone());
    }
    Ok(params)
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    let mut text = s.metrics.render();
    if let Some(extra) = &s.extra {
        text.push_str(&extra());
    }
    text.push_str(&crate::listener::render_metrics());
    text.push_str(&format!(
        "# HELP voxbridge_media_api_unauthorized_total Media API requests refused for want of a valid token.\n\
         # TYPE voxbridge_media_api_unauthorized_total counter\n\
         voxbridge_media_api_unauthorized_total {}\n",
        UNAUTHORIZED.load(Relaxed)
    ));
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// JSON body of a plain session.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainBody {
    remote: Option<SocketAddr>,
    codec: String,
    pt: Option<u8>,
    dtmf_pt: Option<u8>,
    symmetric: Option<bool>,
    call_id: Option<String>,
    route: Option<String>,
    caller: Option<String>,
    callee: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

/// A request refused before it reached the registry (which counts its own).
fn refused(s: &AppState, status: StatusCode, msg: impl std::fmt::Display) -> Response {
    s.metrics
        .rtp
        .sessions_refused
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    error(status, msg)
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": msg.to_string() })),
    )
        .into_response()
}

fn media_error(e: MediaError) -> Response {
    match e {
        MediaError::Unavailable(_) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        _ => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn create(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token) = authorize(&s, &headers) else {
        return unauthorized(&s);
    };
    let ctype = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ctype.as_str() {
        "application/sdp" => {
            let Ok(offer) = std::str::from_utf8(&body) else {
                return refused(&s, StatusCode::BAD_REQUEST, "the SDP offer is not UTF-8");
            };
            let params = match tenant_params(token, BTreeMap::new()) {
                Ok(p) => p,
                Err(e) => return refused(&s, StatusCode::FORBIDDEN, e),
            };
            let req = SessionRequest {
                call_id: q.get("call_id").cloned(),
                route: q.get("route").cloned(),
                caller: q.get("caller").cloned(),
                callee: q.get("callee").cloned(),
                params,
                owner: token.customer_id.clone(),
                ..SessionRequest::default()
            };
            match s.rtp.offer(offer, req).await {
                Ok(c) => {
                    let mut h = HeaderMap::new();
                    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
                    if let Ok(v) = HeaderValue::from_str(&format!("/v1/rtp/sessions/{}", c.call_id)) {
                        h.insert(LOCATION, v);
                    }
                    if let Ok(v) = HeaderValue::from_str(&c.call_id) {
                        h.insert("x-call-id", v);
                    }
                    (StatusCode::CREATED, h, c.sdp).into_response()
                }
                Err(e) => media_error(e),
            }
        }
        "application/json" => {
            let b: PlainBody = match serde_json::from_slice(&body) {
                Ok(b) => b,
                Err(e) => return refused(&s, StatusCode::BAD_REQUEST, format!("json: {e}")),
            };
            let Some(codec) = AudioCodec::from_name(&b.codec) else {
                return refused(
                    &s,
                    StatusCode::BAD_REQUEST,
                    format!("unknown codec {:?} (pcmu, pcma, g722, opus)", b.codec),
                );
            };
            let plain = PlainSession {
                remote: b.remote,
                codec,
                pt: b.pt,
                dtmf_pt: b.dtmf_pt,
                symmetric: b.symmetric,
            };
            let params = match tenant_params(token, b.params) {
                Ok(p) => p,
                Err(e) => return refused(&s, StatusCode::FORBIDDEN, e),
            };
            let req = SessionRequest {
                call_id: b.call_id,
                route: b.route,
                caller: b.caller,
                callee: b.callee,
                params,
                owner: token.customer_id.clone(),
                ..SessionRequest::default()
            };
            match s.rtp.plain(plain, req).await {
                Ok(c) => (StatusCode::CREATED, axum::Json(created_json(&c))).into_response(),
                Err(e) => media_error(e),
            }
        }
        other => refused(
            &s,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {other:?}: send application/sdp (an offer) or application/json (plain parameters)"),
        ),
    }
}

fn created_json(c: &Created) -> serde_json::Value {
    serde_json::json!({
        "call_id": c.call_id,
        "local": c.local.to_string(),
        "codec": c.codec.encoding_name(),
        "pt": c.pt,
        "dtmf_pt": c.dtmf_pt,
        "sdp": c.sdp,
    })
}

async fn list(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = authorize(&s, &headers) else {
        return unauthorized(&s);
    };
    let v: Vec<_> = s
        .rtp
        .list()
        .into_iter()
        .filter(|x| x.owner == token.customer_id)
        .map(|x| {
            serde_json::json!({
                "call_id": x.call_id,
                "local": x.local.to_string(),
                "codec": x.codec.encoding_name(),
                "created_unix_ms": x.created.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            })
        })
        .collect();
    axum::Json(v).into_response()
}

async fn hangup(State(s): State<AppState>, headers: HeaderMap, Path(call_id): Path<String>) -> Response {
    let Some(token) = authorize(&s, &headers) else {
        return unauthorized(&s);
    };
    if s.rtp.hangup_owned(&call_id, token.customer_id.as_deref()) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no session {call_id:?}"))
    }
}
