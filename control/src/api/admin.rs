//! Admin endpoints: customers and their access keys. Admin only (the admin
//! key, or a JWT with `role: "admin"`).

use super::auth::Principal;
use super::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use super::paging::{Page as Pages, Paging};
use super::AppState;
use crate::model::{AccessKey, Customer, Page};
use crate::store::dead_letters::DeadLetter;
use crate::store::NewCustomer;
use crate::time::Millis;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccessKey {
    /// Label, at most 200 characters.
    #[schema(max_length = 200)]
    pub name: String,
    /// Expiry (RFC 3339); never when absent.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// A new key and its secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedAccessKey {
    /// The key.
    pub key: AccessKey,
    /// The secret to send as `X-Access-Key`.
    pub secret: String,
}

/// Lists customers.
#[utoipa::path(get, path = "/v1/customers", tag = "admin", params(Paging),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Page<Customer>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_customers(
    State(s): State<AppState>,
    p: Principal,
    Pages(page): Pages,
) -> Result<Json<Page<Customer>>, ApiError> {
    p.require_admin()?;
    Ok(Json(s.store.list_customers(page).await?))
}

/// Creates a customer.
#[utoipa::path(post, path = "/v1/customers", tag = "admin", request_body = NewCustomer,
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 201, body = Customer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn create_customer(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(new): ApiJson<NewCustomer>,
) -> Result<(StatusCode, Json<Customer>), ApiError> {
    p.require_admin()?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_customer(&p.actor, new).await?),
    ))
}

/// One customer.
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "admin", params(("id" = String, Path, description = "Customer id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Customer), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_customer(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Customer>, ApiError> {
    p.require_admin()?;
    Ok(Json(s.store.get_customer(&id).await?))
}

/// Deletes a customer: its keys, billing account, webhooks (disabled) and
/// campaigns (stopped) go with it in one transaction, its calls still
/// running are hung up, its live subscriptions are closed, and its id is
/// never reused. Its calls, records and transcripts stay as history.
#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "admin", params(("id" = String, Path, description = "Customer id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_customer(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    p.require_admin()?;
    let open_calls = s.store.delete_customer(&p.actor, &id).await?;
    for call_id in &open_calls {
        s.commands.hangup(call_id);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A customer's access keys.
#[utoipa::path(get, path = "/v1/customers/{id}/access_keys", tag = "admin", params(("id" = String, Path, description = "Customer id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Vec<AccessKey>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_keys(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<AccessKey>>, ApiError> {
    p.require_admin()?;
    s.store.get_customer(&id).await?;
    Ok(Json(s.store.list_access_keys(&id).await?))
}

/// Makes an access key; the secret is in this response only.
#[utoipa::path(post, path = "/v1/customers/{id}/access_keys", tag = "admin", params(("id" = String, Path, description = "Customer id")),
    request_body = NewAccessKey, security(("bearer" = []), ("access_key" = [])),
    responses((status = 201, body = CreatedAccessKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub async fn create_key(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(new): ApiJson<NewAccessKey>,
) -> Result<(StatusCode, Json<CreatedAccessKey>), ApiError> {
    p.require_admin()?;
    let expire = new
        .expires_at
        .as_deref()
        .map(|t| Millis::parse(t).ok_or_else(|| ApiError::bad_request("expires_at must be an RFC 3339 time")))
        .transpose()?;
    let (key, secret) = s
        .store
        .create_access_key(&p.actor, &id, &new.name, expire)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedAccessKey { key, secret })))
}

/// Deletes an access key.
#[utoipa::path(delete, path = "/v1/customers/{id}/access_keys/{key_id}", tag = "admin",
    params(("id" = String, Path, description = "Customer id"), ("key_id" = String, Path, description = "Key id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_key(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((id, key_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    p.require_admin()?;
    s.store.delete_access_key(&p.actor, &id, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Parked call events (events the store refused for what they carry).
#[utoipa::path(get, path = "/v1/dead_letters", tag = "admin", params(Paging),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Page<DeadLetter>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_dead_letters(
    State(s): State<AppState>,
    p: Principal,
    Pages(page): Pages,
) -> Result<Json<Page<DeadLetter>>, ApiError> {
    p.require_admin()?;
    Ok(Json(s.store.list_dead_letters(page).await?))
}

/// One parked event.
#[utoipa::path(get, path = "/v1/dead_letters/{id}", tag = "admin", params(("id" = String, Path, description = "Parked event id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = DeadLetter), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_dead_letter(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeadLetter>, ApiError> {
    p.require_admin()?;
    Ok(Json(s.store.get_dead_letter(&id).await?))
}

/// What a retry did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    /// Whether the event changed the store (false: it was a replay).
    pub applied: bool,
}

/// Applies a parked event again; on success it is no longer parked. A
/// refusal again is `409` with the store's reason (the event stays parked,
/// its attempts counted).
#[utoipa::path(post, path = "/v1/dead_letters/{id}/retry", tag = "admin", params(("id" = String, Path, description = "Parked event id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Retried), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry_dead_letter(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Retried>, ApiError> {
    p.require_admin()?;
    let parked = s.store.get_dead_letter(&id).await?;
    match crate::sink::retry_parked(&s.store, &s.events.ctx, &parked).await {
        Ok(applied) => Ok(Json(Retried { applied })),
        Err(e @ (crate::ControlError::Rejected(_) | crate::ControlError::Row(_))) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("refused again: {e}"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Drops a parked event for good.
#[utoipa::path(delete, path = "/v1/dead_letters/{id}", tag = "admin", params(("id" = String, Path, description = "Parked event id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_dead_letter(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    p.require_admin()?;
    s.store.delete_dead_letter(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
