//! The REST API under `/v1/` (axum): calls (and placing outbound ones),
//! campaigns, transcribes/transcripts, the
//! audit log, billing (balance, records; rate plans and credits for admins),
//! webhook endpoints and their deliveries,
//! customers and access keys (admin), provider-compatible hang-ups
//! (Twilio, Telnyx, Plivo REST shapes, [`compat`]), health, readiness, live
//! event subscriptions over WebSocket (`/v1/ws`, [`ws`]), and the OpenAPI
//! 3.1 document generated from the REST handlers at `/v1/openapi.json`.
//!
//! Every tenant endpoint scopes its SQL by the caller's `customer_id`, so
//! another tenant's resource is `404 not_found`, never `403` with a hint.
//! Bodies are capped at [`BODY_LIMIT`]; errors are JSON (`error.rs`).

pub mod admin;
pub mod auth;
pub mod billing;
pub mod calls;
pub mod campaigns;
pub mod compat;
pub mod dial_document;
pub mod error;
pub mod paging;
pub mod recordings;
pub mod text;
pub mod transcripts;
pub mod webhooks;
pub mod ws;

use crate::store::Store;
use auth::Auth;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use campaigns::Zones;
use error::{ApiError, ErrorBody};
use serde::Serialize;
use std::sync::Arc;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use voxbridge_contract::commands::CallCommands;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Commands to the media plane (hangup).
    pub commands: Arc<dyn CallCommands>,
    /// Prepared auth keys.
    pub auth: Auth,
    /// Published events, for `/v1/ws`.
    pub bus: crate::relay::bus::Bus,
    /// `/v1/ws` counters.
    pub live: Arc<ws::LiveStats>,
    /// Internal ranges webhook URLs may use anyway.
    pub webhook_allow: Arc<crate::webhooks::ssrf::Allow>,
    /// Places outbound calls (`None`: no originator configured).
    pub dialer: Option<Arc<crate::originate::Dialer>>,
    /// The call event pipeline (readiness, parked events).
    pub events: crate::sink::Pipeline,
    /// Where recordings are read from.
    pub recordings_dir: Arc<std::path::PathBuf>,
}

/// A media plane that runs no calls (control without media in-process).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMedia;

impl CallCommands for NoMedia {
    fn hangup(&self, _call_id: &str) -> bool {
        false
    }
}

/// Health and readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `unavailable`.
    pub status: &'static str,
    /// The store kind (readiness only).
    pub store: Option<&'static str>,
    /// Why it is not ready (readiness only).
    pub reason: Option<String>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/v1/health", tag = "health", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        store: None,
        reason: None,
    })
}

/// Readiness: the store answers and the call event pipeline moves (its
/// worker has not been retrying one event for longer than
/// [`crate::sink::STUCK_AFTER`]).
#[utoipa::path(get, path = "/v1/ready", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn ready(State(s): State<AppState>) -> (StatusCode, Json<Health>) {
    let store = Some(match s.store.dialect() {
        crate::store::Dialect::Postgres => "postgres",
        crate::store::Dialect::Sqlite => "sqlite",
    });
    let unavailable = |reason: String| {
        tracing::warn!(reason, "not ready");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable",
                store,
                reason: Some(reason),
            }),
        )
    };
    if let Err(e) = s.store.ping().await {
        return unavailable(format!("store: {e}"));
    }
    if let Some(d) = s.events.stats.stuck_for() {
        return unavailable(format!(
            "call event pipeline stuck: one event has been retried for {} s ({} queued)",
            d.as_secs(),
            s.events.stats.queued.load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
    (
        StatusCode::OK,
        Json(Health {
            status: "ready",
            store,
            reason: None,
        }),
    )
}

/// The OpenAPI document as served: the handlers' schemas with the text
/// rule added to every string ([`text::constrain_schema`]). Built once.
pub fn openapi_document() -> serde_json::Value {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut v = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        text::constrain_document(&mut v);
        v
    })
    .clone()
}

async fn openapi_json() -> Json<serde_json::Value> {
    Json(openapi_document())
}

async fn fallback() -> ApiError {
    ApiError::not_found()
}

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        c.add_security_scheme(
            "access_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Access-Key"))),
        );
        // Provider SDKs: the customer id and an access key as account and token.
        c.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "voxbridge control API", description = "Calls, transcripts, customers and access keys. Errors are {\"error\": {\"code\", \"message\"}}."),
    paths(
        health, ready,
        calls::list, calls::originate, calls::get, calls::hangup, calls::transfer, calls::audit,
        campaigns::create, campaigns::list, campaigns::get, campaigns::start, campaigns::pause, campaigns::stop,
        campaigns::add_targets, campaigns::list_targets, campaigns::stats,
        transcripts::start, transcripts::stop, transcripts::list_transcribes, transcripts::get_transcribe,
        transcripts::list_transcripts, transcripts::get_transcript,
        recordings::start, recordings::stop, recordings::pause, recordings::resume, recordings::list,
        recordings::file,
        admin::list_customers, admin::create_customer, admin::get_customer, admin::delete_customer,
        admin::list_keys, admin::create_key, admin::delete_key,
        admin::list_dead_letters, admin::get_dead_letter, admin::retry_dead_letter, admin::delete_dead_letter,
        billing::account, billing::list_records, billing::get_record, billing::set_plan, billing::credit,
        webhooks::list, webhooks::create, webhooks::get, webhooks::update, webhooks::delete, webhooks::rotate,
        webhooks::deliveries, webhooks::get_delivery, webhooks::attempts, webhooks::redeliver,
        compat::twilio_update_call, compat::telnyx_hangup, compat::telnyx_transfer, compat::plivo_hangup, compat::plivo_transfer,
    ),
    components(schemas(ErrorBody, voxbridge_proto::stt::PlainClient, voxbridge_proto::stt::PlainServer)),
    modifiers(&Security, &Zones)
)]
pub struct ApiDoc;

/// The `/v1` router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/ready", get(ready))
        .route("/v1/openapi.json", get(openapi_json))
        .route("/v1/calls", get(calls::list).post(calls::originate))
        .route("/v1/calls/{id}", get(calls::get))
        .route("/v1/calls/{id}/hangup", post(calls::hangup))
        .route("/v1/calls/{id}/transfer", post(calls::transfer))
        .route("/v1/calls/{id}/transcribes", post(transcripts::start))
        .route("/v1/calls/{id}/transcribes/stop", post(transcripts::stop))
        .route("/v1/calls/{id}/recordings", post(recordings::start))
        .route("/v1/calls/{id}/recordings/stop", post(recordings::stop))
        .route("/v1/calls/{id}/recordings/pause", post(recordings::pause))
        .route("/v1/calls/{id}/recordings/resume", post(recordings::resume))
        .route("/v1/recordings", get(recordings::list))
        .route("/v1/recordings/{id}", get(recordings::file))
        .route("/v1/audit", get(calls::audit))
        .route("/v1/campaigns", get(campaigns::list).post(campaigns::create))
        .route("/v1/campaigns/{id}", get(campaigns::get))
        .route("/v1/campaigns/{id}/start", post(campaigns::start))
        .route("/v1/campaigns/{id}/pause", post(campaigns::pause))
        .route("/v1/campaigns/{id}/stop", post(campaigns::stop))
        .route(
            "/v1/campaigns/{id}/targets",
            get(campaigns::list_targets)
                .post(campaigns::add_targets)
                .layer(DefaultBodyLimit::max(campaigns::TARGETS_BODY_LIMIT)),
        )
        .route("/v1/campaigns/{id}/stats", get(campaigns::stats))
        .route("/v1/ws", get(ws::ws))
        .route("/v1/billing", get(billing::account))
        .route("/v1/billing/records", get(billing::list_records))
        .route("/v1/billing/records/{id}", get(billing::get_record))
        .route(
            "/v1/customers/{id}/billing",
            axum::routing::put(billing::set_plan),
        )
        .route("/v1/customers/{id}/billing/credit", post(billing::credit))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get).put(webhooks::update).delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/rotate_secret", post(webhooks::rotate))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/webhook_deliveries/{id}", get(webhooks::get_delivery))
        .route("/v1/webhook_deliveries/{id}/attempts", get(webhooks::attempts))
        .route("/v1/webhook_deliveries/{id}/redeliver", post(webhooks::redeliver))
        .route("/v1/transcribes", get(transcripts::list_transcribes))
        .route("/v1/transcribes/{id}", get(transcripts::get_transcribe))
        .route("/v1/transcripts", get(transcripts::list_transcripts))
        .route("/v1/transcripts/{id}", get(transcripts::get_transcript))
        .route(
            "/v1/customers",
            get(admin::list_customers).post(admin::create_customer),
        )
        .route(
            "/v1/customers/{id}",
            get(admin::get_customer).delete(admin::delete_customer),
        )
        .route(
            "/v1/customers/{id}/access_keys",
            get(admin::list_keys).post(admin::create_key),
        )
        .route(
            "/v1/customers/{id}/access_keys/{key_id}",
            axum::routing::delete(admin::delete_key),
        )
        .route("/v1/dead_letters", get(admin::list_dead_letters))
        .route(
            "/v1/dead_letters/{id}",
            get(admin::get_dead_letter).delete(admin::delete_dead_letter),
        )
        .route("/v1/dead_letters/{id}/retry", post(admin::retry_dead_letter))
        // Provider-compatible call control (compat.rs).
        .route(
            "/2010-04-01/Accounts/{account}/Calls/{call}",
            post(compat::twilio_update_call),
        )
        .route("/v2/calls/{id}/actions/hangup", post(compat::telnyx_hangup))
        .route("/v2/calls/{id}/actions/transfer", post(compat::telnyx_transfer))
        .route(
            "/v1/Account/{account}/Call/{id}/",
            axum::routing::delete(compat::plivo_hangup).post(compat::plivo_transfer),
        )
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(text::guard_uri))
        .with_state(state)
}
