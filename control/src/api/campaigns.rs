//! `/v1/campaigns`: create, list, get, start (and resume), pause, stop, add
//! targets in bulk (JSON or CSV), list targets, and figures.

use super::auth::Principal;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use super::paging::{Page as Pages, Paging};
use super::AppState;
use crate::campaign::targets_in::{self, CheckedTarget};
use crate::campaign::{
    Campaign, CampaignSpec, CampaignStats, CampaignStatus, NewTarget, Target, TargetStatus,
};
use crate::model::Page;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Largest targets upload.
pub const TARGETS_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// 409 `originate_unavailable` when no originator is configured.
pub fn no_originator() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "originate_unavailable",
        "no originator is configured ([control.originate] kind)",
    )
}

fn check_route(s: &AppState, route: &str) -> Result<(), ApiError> {
    match &s.dialer {
        Some(d) if !d.knows_route(route) => Err(ApiError::bad_request(format!(
            "route {route:?} has no AudioSocket listener here"
        ))),
        _ => Ok(()),
    }
}

/// Creates a campaign (`pending`).
#[utoipa::path(post, path = "/v1/campaigns", tag = "campaigns", request_body = CampaignSpec,
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 201, body = Campaign), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(spec): ApiJson<CampaignSpec>,
) -> Result<(StatusCode, Json<Campaign>), ApiError> {
    let customer = p.customer()?;
    check_route(&s, spec.route.as_deref().unwrap_or("default"))?;
    let c = s.store.create_campaign(&p.actor, customer, &spec).await?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// Lists the caller's campaigns, newest first.
#[utoipa::path(get, path = "/v1/campaigns", tag = "campaigns", params(Paging),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Page<Campaign>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    p: Principal,
    Pages(page): Pages,
) -> Result<Json<Page<Campaign>>, ApiError> {
    Ok(Json(s.store.list_campaigns(p.customer()?, page).await?))
}

/// One campaign.
#[utoipa::path(get, path = "/v1/campaigns/{id}", tag = "campaigns", params(("id" = String, Path, description = "Campaign id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Campaign), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Campaign>, ApiError> {
    Ok(Json(s.store.get_campaign(p.customer()?, &id).await?))
}

async fn set_status(
    s: &AppState,
    p: &Principal,
    id: &str,
    to: CampaignStatus,
) -> Result<Json<Campaign>, ApiError> {
    if to == CampaignStatus::Running && s.dialer.is_none() {
        return Err(no_originator());
    }
    Ok(Json(
        s.store
            .set_campaign_status(&p.actor, p.customer()?, id, to)
            .await?,
    ))
}

/// Starts a pending campaign or resumes a paused one.
#[utoipa::path(post, path = "/v1/campaigns/{id}/start", tag = "campaigns", params(("id" = String, Path, description = "Campaign id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Campaign), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn start(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Campaign>, ApiError> {
    set_status(&s, &p, &id, CampaignStatus::Running).await
}

/// Pauses a running campaign (calls in progress finish).
#[utoipa::path(post, path = "/v1/campaigns/{id}/pause", tag = "campaigns", params(("id" = String, Path, description = "Campaign id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Campaign), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn pause(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Campaign>, ApiError> {
    set_status(&s, &p, &id, CampaignStatus::Paused).await
}

/// Stops a campaign for good (calls in progress finish; pending targets are not dialled).
#[utoipa::path(post, path = "/v1/campaigns/{id}/stop", tag = "campaigns", params(("id" = String, Path, description = "Campaign id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Campaign), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn stop(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Campaign>, ApiError> {
    set_status(&s, &p, &id, CampaignStatus::Stopped).await
}

/// A bulk of targets as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetsBody {
    /// The targets (1-10,000).
    #[schema(min_items = 1, max_items = 10000)]
    pub targets: Vec<NewTarget>,
}

/// Puts the IANA zone names jiff knows into the schema of every
/// `timezone` field, so the document says which values are accepted.
pub struct Zones;

impl utoipa::Modify for Zones {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let Some(c) = doc.components.as_mut() else {
            return;
        };
        let mut names: Vec<serde_json::Value> = jiff::tz::db()
            .available()
            .map(|n| serde_json::Value::String(n.to_string()))
            .collect();
        names.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        names.push(serde_json::Value::Null);
        for schema in ["CampaignSpec", "NewTarget"] {
            if let Some(RefOr::T(Schema::Object(o))) = c.schemas.get_mut(schema) {
                if let Some(RefOr::T(Schema::Object(tz))) = o.properties.get_mut("timezone") {
                    tz.enum_values = Some(names.clone());
                }
            }
        }
    }
}

/// What adding targets did.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetsAdded {
    /// Targets added.
    pub added: usize,
    /// The campaign after.
    pub campaign: Campaign,
}

fn parse_targets(headers: &HeaderMap, body: &[u8], default_tz: &str) -> Result<Vec<CheckedTarget>, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/json" => targets_in::from_json(body, default_tz),
        "text/csv" => targets_in::from_csv(body, default_tz),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json or text/csv",
            ))
        }
    }
    .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", m))
}

/// Adds targets in bulk, all or none: JSON (`{"targets": [...]}`) or CSV
/// with a header row (`destination` required, `timezone` optional, other
/// columns become `vars`). Up to 10,000 targets or 4 MiB per request.
#[utoipa::path(post, path = "/v1/campaigns/{id}/targets", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    request_body(content((TargetsBody = "application/json")), description = "JSON as below, or `text/csv` with a header row"),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 201, body = TargetsAdded), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn add_targets(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<TargetsAdded>), ApiError> {
    let customer = p.customer()?;
    let body = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body is too large",
        ),
        _ => ApiError::bad_request(r.body_text()),
    })?;
    let c = s.store.get_campaign(customer, &id).await?;
    let targets = parse_targets(&headers, &body, &c.timezone)?;
    let campaign = s.store.add_targets(&p.actor, customer, &id, &targets).await?;
    Ok((
        StatusCode::CREATED,
        Json(TargetsAdded {
            added: targets.len(),
            campaign,
        }),
    ))
}

/// Filter for `GET /v1/campaigns/{id}/targets`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListTargets {
    /// Only targets with this status.
    pub status: Option<TargetStatus>,
}

/// A campaign's targets, newest first.
#[utoipa::path(get, path = "/v1/campaigns/{id}/targets", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id"), ListTargets, Paging),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Page<Target>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_targets(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListTargets>,
    Pages(page): Pages,
) -> Result<Json<Page<Target>>, ApiError> {
    Ok(Json(
        s.store.list_targets(p.customer()?, &id, q.status, page).await?,
    ))
}

/// A campaign's totals and its targets counted by status and result.
#[utoipa::path(get, path = "/v1/campaigns/{id}/stats", tag = "campaigns", params(("id" = String, Path, description = "Campaign id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = CampaignStats), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn stats(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CampaignStats>, ApiError> {
    Ok(Json(s.store.campaign_stats(p.customer()?, &id).await?))
}
