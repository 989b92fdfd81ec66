//! `/v1/calls`: list, get, hangup, and the tenant's audit log.

use super::auth::Principal;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use super::paging::{Page as Pages, Paging};
use super::AppState;
use crate::model::{AuditEntry, Call, CallChange, CallFilter, NewCall, Page};
use crate::state::{self, CallStatus, Direction, HangupBy, HangupReason};
use crate::time::Millis;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

/// An outbound call to place.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Originate {
    /// Number or address to dial (1-64 characters; no blanks, control,
    /// bidirectional or invisible characters).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]+$"
    )]
    pub destination: String,
    /// Caller id to present (at most 64 characters, no control characters).
    #[serde(default)]
    #[schema(
        max_length = 64,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]*$"
    )]
    pub source: Option<String>,
    /// Media route (bot); default `default`.
    #[serde(default)]
    pub route: Option<String>,
    /// Values passed to the originator (an object).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub vars: Option<serde_json::Value>,
}

/// Places an outbound call through the configured originator. The call is
/// `dialing` until its media joins (`progressing`) or the originator or
/// the ring timeout ends it (`hangup` with `busy`, `noanswer` or
/// `dialout`).
#[utoipa::path(post, path = "/v1/calls", tag = "calls", request_body = Originate,
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 201, body = Call), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub async fn originate(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<Originate>,
) -> Result<(StatusCode, Json<Call>), ApiError> {
    let customer = p.customer()?;
    let dialer = s.dialer.clone().ok_or_else(super::campaigns::no_originator)?;
    let destination = req.destination.trim();
    crate::campaign::targets_in::check_destination(destination).map_err(ApiError::bad_request)?;
    let source = req.source.unwrap_or_default();
    if source.len() > 64 || source.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "source must be at most 64 bytes without control characters",
        ));
    }
    let route = req.route.unwrap_or_else(|| "default".into());
    if !dialer.knows_route(&route) {
        return Err(ApiError::bad_request(format!(
            "route {route:?} has no AudioSocket listener here (the originator connects calls to one)"
        )));
    }
    let vars = match req.vars {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m,
        Some(_) => return Err(ApiError::bad_request("vars must be an object")),
    };
    let new = NewCall {
        id: crate::store::new_id(),
        customer_id: customer.to_owned(),
        status: CallStatus::Dialing,
        direction: Direction::Outgoing,
        source,
        destination: destination.to_owned(),
        route,
        ingress: dialer.ingress().into(),
        at: Millis::now(),
    };
    let call = s.store.originate_call(&p.actor, &new).await?;
    dialer.start(&call, vars, 1);
    Ok((StatusCode::CREATED, Json(call)))
}

/// Filters for `GET /v1/calls`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListCalls {
    /// Only calls with this status.
    pub status: Option<CallStatus>,
    /// Only calls in this direction.
    pub direction: Option<Direction>,
    /// Created at or after (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
}

fn time(v: Option<&str>, name: &str) -> Result<Option<Millis>, ApiError> {
    v.map(|s| {
        Millis::parse(s).ok_or_else(|| ApiError::bad_request(format!("{name} must be an RFC 3339 time")))
    })
    .transpose()
}

/// Lists the caller's calls, newest first.
#[utoipa::path(get, path = "/v1/calls", tag = "calls", params(ListCalls, Paging),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Page<Call>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListCalls>,
    Pages(page): Pages,
) -> Result<Json<Page<Call>>, ApiError> {
    let filter = CallFilter {
        status: q.status,
        direction: q.direction,
        since: time(q.since.as_deref(), "since")?,
        until: time(q.until.as_deref(), "until")?,
    };
    Ok(Json(s.store.list_calls(p.customer()?, &filter, page).await?))
}

/// One call.
#[utoipa::path(get, path = "/v1/calls/{id}", tag = "calls", params(("id" = String, Path, description = "Call id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Call), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Call>, ApiError> {
    Ok(Json(s.store.get_call(p.customer()?, &id).await?))
}

/// Body of `POST /v1/calls/{id}/transfer`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// Where to: a number (at the caller's side of the SIP call) or a `sip:`
    /// URI (1-256 characters; no blanks, control, bidirectional or
    /// invisible characters).
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]+$"
    )]
    pub target: String,
}

/// What `POST /v1/calls/{id}/transfer` started.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct TransferStarted {
    /// The call.
    pub call_id: String,
    /// Where to.
    pub target: String,
    /// `requested`: the REFER went out; `call_transferred` follows when the
    /// far end reports the new call up (and the call ends with cause
    /// `transferred`), `call_transfer_failed` with its SIP status when it
    /// refuses or the target fails (the call goes on).
    pub status: String,
}

/// Hands an answered SIP call on to a person (blind transfer, SIP REFER).
/// `202` once the REFER is on its way; `409` when the call is not an
/// answered SIP call running in this process or a transfer is under way.
/// Audited.
#[utoipa::path(post, path = "/v1/calls/{id}/transfer", tag = "calls", request_body = Transfer,
    params(("id" = String, Path, description = "Call id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 202, body = TransferStarted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn transfer(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<Transfer>,
) -> Result<(StatusCode, Json<TransferStarted>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(request_transfer(&s, &p, &id, req.target).await?),
    ))
}

/// The tenant's call `id` exists (`404`) and is answered (`409` otherwise):
/// only then may it be handed on.
pub(crate) async fn check_transferable(s: &AppState, p: &Principal, id: &str) -> Result<(), ApiError> {
    let call = s.store.get_call(p.customer()?, id).await?;
    if call.status != CallStatus::Progressing {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_answered",
            format!(
                "only an answered call can be transferred (this one is {})",
                call.status.as_str()
            ),
        ));
    }
    Ok(())
}

/// Hands call `id` of the principal's customer on to `target` (the work of
/// `POST /v1/calls/{id}/transfer`, shared with the provider-compatible
/// endpoints): checked, asked of the media plane, audited.
pub(crate) async fn request_transfer(
    s: &AppState,
    p: &Principal,
    id: &str,
    target: String,
) -> Result<TransferStarted, ApiError> {
    let id = id.to_owned();
    let customer = p.customer()?;
    crate::campaign::targets_in::check_address("target", &target, 256).map_err(ApiError::bad_request)?;
    check_transferable(s, p, &id).await?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.commands
        .transfer(&id, &target, Box::new(move |r| drop(tx.send(r))));
    match tokio::time::timeout(std::time::Duration::from_secs(5), rx).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(why))) => return Err(ApiError::new(StatusCode::CONFLICT, "not_transferable", why)),
        Ok(Err(_)) | Err(_) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "media_unavailable",
                "the media plane did not take the transfer",
            ))
        }
    }
    s.store
        .audit_request(
            &p.actor,
            customer,
            "call.transfer",
            ("call", &id),
            &serde_json::json!({ "target": target }),
        )
        .await?;
    Ok(TransferStarted {
        call_id: id,
        target,
        status: "requested".into(),
    })
}

/// Hangs a call up: `terminating` (answered) or `canceling` (not yet), then
/// `hangup` when the media plane confirms. If no media plane of this
/// process runs the call, it is closed here at once. A call already on its
/// way out is returned as it is.
#[utoipa::path(post, path = "/v1/calls/{id}/hangup", tag = "calls", params(("id" = String, Path, description = "Call id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Call), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn hangup(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Call>, ApiError> {
    Ok(Json(request_hangup(&s, &p, &id).await?.0))
}

/// Ends call `id` of the principal's customer (the work of `POST
/// /v1/calls/{id}/hangup`, shared with the provider-compatible endpoints):
/// returns the call as it now stands and whether this request changed it
/// (`false`: it had already ended or was ending).
pub(crate) async fn request_hangup(s: &AppState, p: &Principal, id: &str) -> Result<(Call, bool), ApiError> {
    let customer = p.customer()?;
    // What to ask for depends on the call's status: decided on the locked
    // row, in the change's own transaction.
    let t = s
        .store
        .transition_call_with(Some(customer), id, Some(&p.actor), |call| {
            state::hangup_request(call.status).map(|to| CallChange {
                to,
                at: Millis::now(),
                hangup: None,
                sip: None,
            })
        })
        .await?;
    if !t.applied {
        // Already on its way out.
        return Ok((t.call, false));
    }
    let to = t.call.status;
    if s.commands.hangup(id) {
        return Ok((t.call, true));
    }
    if let (Direction::Outgoing, Some(d)) = (t.call.direction, &s.dialer) {
        // Not in media yet: stop the originator from ringing it.
        d.cancel(id).await;
    }
    let reason = if to == CallStatus::Canceling {
        HangupReason::Cancel
    } else {
        HangupReason::Normal
    };
    let done = CallChange {
        to: CallStatus::Hangup,
        at: Millis::now(),
        hangup: Some((HangupBy::Local, reason, "api_hangup".into())),
        sip: None,
    };
    let t = s
        .store
        .transition_call(Some(customer), id, &done, Some(&p.actor))
        .await?;
    Ok((t.call, true))
}

/// The caller's audit log, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(Paging),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Page<AuditEntry>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn audit(
    State(s): State<AppState>,
    p: Principal,
    Pages(page): Pages,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    Ok(Json(s.store.list_audit(p.customer()?, page).await?))
}
