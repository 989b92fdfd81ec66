//! `/v1/billing`: a tenant's balance and billing records (read-only), and
//! the admin's rate plans and credits under `/v1/customers/{id}/billing`.

use super::auth::Principal;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use super::paging::{Page as Pages, Paging};
use super::AppState;
use crate::billing::RatePlan;
use crate::model::Page;
use crate::store::billing::{BillingAccount, BillingRecord};
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

/// Filters for billing records.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListRecords {
    /// Only the record of this call.
    pub call_id: Option<String>,
}

/// A credit (or, negative, a correction) to a balance.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credit {
    /// Micro-units to add.
    #[schema(minimum = -1_000_000_000_000_000_i64, maximum = 1_000_000_000_000_000_i64)]
    #[serde(deserialize_with = "crate::model::lenient_int")]
    pub amount_micros: i64,
}

/// Largest credit in one request, micro-units.
const MAX_CREDIT: i64 = 1_000_000_000_000_000;

/// The caller's balance and rate plan.
#[utoipa::path(get, path = "/v1/billing", tag = "billing",
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = BillingAccount), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn account(State(s): State<AppState>, p: Principal) -> Result<Json<BillingAccount>, ApiError> {
    Ok(Json(s.store.billing_account(p.customer()?).await?))
}

/// The caller's billing records, newest first.
#[utoipa::path(get, path = "/v1/billing/records", tag = "billing", params(ListRecords, Paging),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Page<BillingRecord>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_records(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListRecords>,
    Pages(page): Pages,
) -> Result<Json<Page<BillingRecord>>, ApiError> {
    Ok(Json(
        s.store
            .list_billing_records(p.customer()?, q.call_id.as_deref(), page)
            .await?,
    ))
}

/// One billing record.
#[utoipa::path(get, path = "/v1/billing/records/{id}", tag = "billing", params(("id" = String, Path, description = "Record id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = BillingRecord), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_record(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BillingRecord>, ApiError> {
    Ok(Json(s.store.get_billing_record(p.customer()?, &id).await?))
}

/// Sets a customer's rate plan (opens its account with balance 0). Admin.
#[utoipa::path(put, path = "/v1/customers/{id}/billing", tag = "admin", request_body = RatePlan,
    params(("id" = String, Path, description = "Customer id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = BillingAccount), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub async fn set_plan(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(plan): ApiJson<RatePlan>,
) -> Result<Json<BillingAccount>, ApiError> {
    p.require_admin()?;
    Ok(Json(s.store.set_rate_plan(&p.actor, &id, &plan).await?))
}

/// Adds to a customer's balance. Admin.
#[utoipa::path(post, path = "/v1/customers/{id}/billing/credit", tag = "admin", request_body = Credit,
    params(("id" = String, Path, description = "Customer id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = BillingAccount), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub async fn credit(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(c): ApiJson<Credit>,
) -> Result<Json<BillingAccount>, ApiError> {
    p.require_admin()?;
    if c.amount_micros.abs() > MAX_CREDIT {
        return Err(ApiError::bad_request(format!(
            "amount_micros must be within ±{MAX_CREDIT}"
        )));
    }
    Ok(Json(s.store.credit(&p.actor, &id, c.amount_micros).await?))
}
