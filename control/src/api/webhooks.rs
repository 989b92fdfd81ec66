//! `/v1/webhooks`: a tenant's webhook endpoints (create, list, get, replace,
//! delete, rotate the secret), their deliveries and attempts, and manual
//! redelivery. URLs are checked against internal addresses when saved.

use super::auth::Principal;
use super::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use super::paging::{Page as Pages, Paging};
use super::AppState;
use crate::model::Page;
use crate::store::webhooks::{EndpointSpec, WebhookAttempt, WebhookDelivery, WebhookEndpoint};
use crate::webhooks::{ssrf, validate_types};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An endpoint and its secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointWithSecret {
    /// The endpoint.
    pub endpoint: WebhookEndpoint,
    /// `whsec_...`: verify `X-Voxbridge-Signature` with the whole string,
    /// `webhook-signature` with a Standard Webhooks library.
    pub secret: String,
}

/// How long the old secret keeps signing after a rotation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// Seconds, 0-604800 (7 days); default 86400.
    #[serde(default, deserialize_with = "crate::model::lenient_opt_int")]
    #[schema(minimum = 0, maximum = 604800)]
    pub overlap_s: Option<i64>,
}

/// The shape of an endpoint URL, as `EndpointSpec.url`'s schema pattern
/// says (a test checks the two are the same).
pub const URL_PATTERN: &str = "^https?://(([a-z0-9-]+\\.)*[a-z][a-z0-9-]*|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[A-Za-z0-9._~/%-]*)?(\\?[A-Za-z0-9._~=&%-]*)?$";

fn url_shape() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(URL_PATTERN).expect("URL_PATTERN is a valid regex"))
}

async fn check(s: &AppState, spec: &EndpointSpec) -> Result<(), ApiError> {
    if spec.url.len() > 2048 {
        return Err(ApiError::bad_request("url longer than 2048 bytes"));
    }
    let url = reqwest::Url::parse(&spec.url).map_err(|e| ApiError::bad_request(format!("url: {e}")))?;
    let refused = |r: ssrf::Refused| match r {
        ssrf::Refused::Malformed(m) => ApiError::bad_request(m),
        ssrf::Refused::Internal(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden_destination", m),
    };
    // Internal literals (IPv6 included) are refused as such first; then
    // the URL must have the documented shape.
    let host = ssrf::check_url(&url, &s.webhook_allow).map_err(refused)?;
    if !url_shape().is_match(&spec.url) {
        return Err(ApiError::bad_request(
            "url must be http(s)://<lower-case host or IPv4>[:port][/path][?query] (see the schema's pattern)",
        ));
    }
    ssrf::check_host(
        &host,
        url.port_or_known_default().unwrap_or(443),
        &s.webhook_allow,
    )
    .await
    .map_err(refused)?;
    validate_types(&spec.event_types).map_err(ApiError::bad_request)?;
    if spec.max_concurrency.is_some_and(|c| !(1..=16).contains(&c)) {
        return Err(ApiError::bad_request("max_concurrency must be 1-16"));
    }
    if spec.timeout_ms.is_some_and(|t| !(1_000..=60_000).contains(&t)) {
        return Err(ApiError::bad_request("timeout_ms must be 1000-60000"));
    }
    Ok(())
}

/// Registers an endpoint. A URL that is or resolves to an internal address
/// is refused with 403 `forbidden_destination`.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = EndpointSpec,
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 201, body = EndpointWithSecret), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(spec): ApiJson<EndpointSpec>,
) -> Result<(StatusCode, Json<EndpointWithSecret>), ApiError> {
    let customer = p.customer()?;
    check(&s, &spec).await?;
    let (endpoint, secret) = s.store.create_webhook(&p.actor, customer, &spec).await?;
    Ok((StatusCode::CREATED, Json(EndpointWithSecret { endpoint, secret })))
}

/// Lists the caller's endpoints, newest first.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(Paging),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Page<WebhookEndpoint>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    p: Principal,
    Pages(page): Pages,
) -> Result<Json<Page<WebhookEndpoint>>, ApiError> {
    Ok(Json(s.store.list_webhooks(p.customer()?, page).await?))
}

/// One endpoint.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "Endpoint id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = WebhookEndpoint), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    Ok(Json(s.store.get_webhook(p.customer()?, &id).await?))
}

/// Replaces an endpoint's settings (enabling it again resumes its pending
/// deliveries).
#[utoipa::path(put, path = "/v1/webhooks/{id}", tag = "webhooks", request_body = EndpointSpec,
    params(("id" = String, Path, description = "Endpoint id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = WebhookEndpoint), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(spec): ApiJson<EndpointSpec>,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    let customer = p.customer()?;
    check(&s, &spec).await?;
    Ok(Json(
        s.store.update_webhook(&p.actor, customer, &id, &spec).await?,
    ))
}

/// Deletes an endpoint and its pending deliveries.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "Endpoint id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.store.delete_webhook(&p.actor, p.customer()?, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new secret; the old one keeps signing alongside for `overlap_s`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate_secret", tag = "webhooks", request_body = Rotate,
    params(("id" = String, Path, description = "Endpoint id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = EndpointWithSecret), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub async fn rotate(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(r): ApiJson<Rotate>,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    let overlap = r.overlap_s.unwrap_or(86_400);
    if !(0..=604_800).contains(&overlap) {
        return Err(ApiError::bad_request("overlap_s must be 0-604800"));
    }
    let (endpoint, secret) = s
        .store
        .rotate_webhook_secret(&p.actor, p.customer()?, &id, overlap * 1000)
        .await?;
    Ok(Json(EndpointWithSecret { endpoint, secret }))
}

/// An endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path, description = "Endpoint id"), Paging),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Page<WebhookDelivery>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn deliveries(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    Pages(page): Pages,
) -> Result<Json<Page<WebhookDelivery>>, ApiError> {
    let customer = p.customer()?;
    s.store.get_webhook(customer, &id).await?;
    Ok(Json(s.store.list_deliveries(customer, &id, page).await?))
}

/// One delivery.
#[utoipa::path(get, path = "/v1/webhook_deliveries/{id}", tag = "webhooks", params(("id" = String, Path, description = "Delivery id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = WebhookDelivery), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_delivery(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WebhookDelivery>, ApiError> {
    Ok(Json(s.store.get_delivery(p.customer()?, &id).await?))
}

/// A delivery's attempts, newest first.
#[utoipa::path(get, path = "/v1/webhook_deliveries/{id}/attempts", tag = "webhooks", params(("id" = String, Path, description = "Delivery id"), Paging),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Page<WebhookAttempt>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn attempts(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    Pages(page): Pages,
) -> Result<Json<Page<WebhookAttempt>>, ApiError> {
    let customer = p.customer()?;
    s.store.get_delivery(customer, &id).await?;
    Ok(Json(s.store.list_attempts(customer, &id, page).await?))
}

/// Sends a delivery again now, with a fresh retry window.
#[utoipa::path(post, path = "/v1/webhook_deliveries/{id}/redeliver", tag = "webhooks", params(("id" = String, Path, description = "Delivery id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = WebhookDelivery), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn redeliver(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WebhookDelivery>, ApiError> {
    Ok(Json(s.store.redeliver(&p.actor, p.customer()?, &id).await?))
}
