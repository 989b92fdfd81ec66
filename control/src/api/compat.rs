//! Provider-compatible call control: the REST calls a bot written for
//! Twilio, Telnyx or Plivo makes to end its own call or hand it on to a
//! person, answered for the calls voxbridge bridges, so such a bot's
//! hang-up and transfer reach the call without a line changed (pipecat's telephony serializers make these
//! calls when the pipeline ends and `auto_hang_up` is on; Twilio's takes a
//! `base_url` for exactly this).
//!
//! | provider | request | voxbridge answers |
//! |---|---|---|
//! | Twilio | `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`, form `Status=completed` (or `canceled`) | `200` with the call as a Twilio call resource; `404` code 20404 for a call it does not know |
//! | Twilio | the same with form `Twiml=<Response><Dial>+15550123</Dial></Response>` (`<Number>`/`<Sip>` inside `<Dial>` too), or `Url` (and `Method`) where the bot serves that TwiML | the transfer as `POST /v1/calls/{id}/transfer` starts it; `200` with the call |
//! | Telnyx | `POST /v2/calls/{call_control_id}/actions/hangup` | `200 {"data":{"result":"ok"}}`; `422` code 90018 once the call has ended; `404` |
//! | Telnyx | `POST /v2/calls/{call_control_id}/actions/transfer`, JSON `{"to": "+15550123"}` | the transfer; `200 {"data":{"result":"ok"}}`; `404` |
//! | Plivo | `DELETE /v1/Account/{auth_id}/Call/{call_uuid}/` | `204`; `404` for an unknown or ended call |
//! | Plivo | `POST /v1/Account/{auth_id}/Call/{call_uuid}/`, JSON `{"legs": "aleg", "aleg_url": ...}` where the bot serves Plivo XML with a `<Dial>` | the transfer; `202 {"message": "call transferred"}`; `404` |
//!
//! A document at a URL is fetched as [`super::dial_document`] says (as
//! webhooks are delivered: never to an internal address unless allowed,
//! bounded in time and size), only once the call is known to be answered.
//!
//! Credentials are the tenant's: HTTP Basic with the customer id (the
//! account id) and one of its access keys (the token), or `Bearer <access
//! key>` as Telnyx sends its API key ([`super::auth`]). The call ids are
//! the ones the bot saw in its start message (voxbridge's call id), the
//! account id in the path must be the authenticated customer's, and every
//! hang-up and transfer is scoped to that customer and audited like `POST
//! /v1/calls/{id}/hangup` and `.../transfer`, whose work they share (a
//! transfer needs an answered SIP call, as there: `409` otherwise).

use super::auth::Principal;
use super::calls::{check_transferable, request_hangup, request_transfer};
use super::dial_document::{dial_target, fetch_dial_target, FetchMethod};
use super::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use super::AppState;
use crate::model::Call;
use crate::state::CallStatus;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The path of Twilio's call resource. The call id is shorter than other
/// path segments may be: `.json` follows it in the same segment.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case, dead_code)]
pub struct TwilioCallPath {
    /// The customer id.
    #[param(max_length = 4000)]
    AccountSid: String,
    /// The call id.
    #[param(max_length = 4000)]
    CallSid: String,
}

/// A call in Twilio's call resource shape (the fields a client reads).
#[derive(Debug, Serialize, ToSchema)]
pub struct TwilioCall {
    /// The call id (voxbridge's).
    pub sid: String,
    /// The account (voxbridge's customer id).
    pub account_sid: String,
    /// `queued`, `ringing`, `in-progress` or `completed`.
    pub status: &'static str,
    /// The resource's path.
    pub uri: String,
}

/// A Twilio REST error.
#[derive(Debug, Serialize, ToSchema)]
pub struct TwilioError {
    /// Twilio's error code (20404: not found).
    pub code: u32,
    /// What went wrong.
    pub message: String,
    /// Where the code is explained.
    pub more_info: String,
    /// The HTTP status.
    pub status: u16,
}

/// Telnyx's answer to a call command.
#[derive(Debug, Serialize, ToSchema)]
pub struct TelnyxResult {
    /// `{"result": "ok"}`.
    pub data: TelnyxOk,
}

/// `{"result": "ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TelnyxOk {
    /// `ok`.
    pub result: &'static str,
}

/// Telnyx's error list.
#[derive(Debug, Serialize, ToSchema)]
pub struct TelnyxErrors {
    /// The errors.
    pub errors: Vec<TelnyxErrorItem>,
}

/// One Telnyx error.
#[derive(Debug, Serialize, ToSchema)]
pub struct TelnyxErrorItem {
    /// Telnyx's code (`90018`: the call has already ended; `10005`: not found).
    pub code: String,
    /// Short title.
    pub title: String,
    /// What went wrong.
    pub detail: String,
}

/// A Plivo REST error.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlivoError {
    /// What went wrong.
    pub error: String,
}

fn twilio_status(status: CallStatus) -> &'static str {
    match status {
        CallStatus::Dialing => "queued",
        CallStatus::Ringing => "ringing",
        CallStatus::Progressing => "in-progress",
        CallStatus::Terminating | CallStatus::Canceling | CallStatus::Hangup => "completed",
    }
}

fn twilio_not_found() -> Response {
    let body = TwilioError {
        code: 20404,
        message: "The requested resource was not found".into(),
        more_info: "https://www.twilio.com/docs/errors/20404".into(),
        status: 404,
    };
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// The account in the path must be the authenticated customer's; another
/// tenant's account is answered as unknown.
fn own_account(p: &Principal, account: &str) -> Result<bool, ApiError> {
    Ok(p.customer()? == account)
}

/// Twilio's call update: `Status=completed` or `Status=canceled` ends the
/// call; `Twiml` with a `<Dial>`, or a `Url` serving such TwiML (asked for
/// with `Method`, POST unless GET, with `CallSid` and `AccountSid`), hands
/// it on to the number or SIP URI dialled (a blind transfer, as `POST
/// /v1/calls/{id}/transfer`). Other TwiML is not supported.
#[utoipa::path(post, path = "/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json", tag = "provider-compatible",
    params(TwilioCallPath),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`Status=completed` or `Status=canceled`, or `Twiml=<Response><Dial>target</Dial></Response>`, or `Url=<where that TwiML is served>` (with `Method=GET` or `POST`)"),
    security(("basic" = []), ("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = TwilioCall), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = TwilioError), (status = 409, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn twilio_update_call(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((account, call)): ApiPath<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(id) = call.strip_suffix(".json") else {
        return Ok(twilio_not_found());
    };
    if !own_account(&p, &account)? {
        return Ok(twilio_not_found());
    }
    let form = |key: &str| {
        url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    let target = if let Some(twiml) = form("Twiml") {
        Some(dial_target(&twiml).ok_or_else(|| {
            ApiError::bad_request(
                "Twiml: voxbridge carries out <Dial> (a number or a SIP URI) and nothing else",
            )
        })?)
    } else if let Some(url) = form("Url") {
        let method = FetchMethod::parse("Method", form("Method").as_deref())?;
        // The call first: nothing is fetched for a call that cannot move.
        match check_transferable(&s, &p, id).await {
            Err(e) if e.status == StatusCode::NOT_FOUND => return Ok(twilio_not_found()),
            r => r?,
        }
        let params = [("CallSid", id), ("AccountSid", account.as_str())];
        Some(fetch_dial_target(&s.webhook_allow, "Url", &url, method, &params).await?)
    } else {
        None
    };
    let call: Call = if let Some(target) = target {
        match request_transfer(&s, &p, id, target).await {
            Ok(_) => s.store.get_call(p.customer()?, id).await?,
            Err(e) if e.status == StatusCode::NOT_FOUND => return Ok(twilio_not_found()),
            Err(e) => return Err(e),
        }
    } else {
        match form("Status").as_deref() {
            Some("completed" | "canceled") => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "Status must be completed or canceled: voxbridge ends calls and does not redirect them",
                ))
            }
            None => {
                return Err(ApiError::bad_request(
                    "send Status=completed to end the call, or Twiml (or a Url serving it) with a <Dial> to transfer it",
                ))
            }
        }
        match request_hangup(&s, &p, id).await {
            Ok((call, _)) => call,
            Err(e) if e.status == StatusCode::NOT_FOUND => return Ok(twilio_not_found()),
            Err(e) => return Err(e),
        }
    };
    let body = TwilioCall {
        uri: format!("/2010-04-01/Accounts/{account}/Calls/{}.json", call.id),
        sid: call.id,
        account_sid: call.customer_id,
        status: twilio_status(call.status),
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}

fn telnyx_error(status: StatusCode, code: &str, title: &str, detail: String) -> Response {
    let body = TelnyxErrors {
        errors: vec![TelnyxErrorItem {
            code: code.into(),
            title: title.into(),
            detail,
        }],
    };
    (status, Json(body)).into_response()
}

/// Telnyx's answer to a command it carried out.
fn telnyx_ok() -> Response {
    let body = TelnyxResult {
        data: TelnyxOk { result: "ok" },
    };
    (StatusCode::OK, Json(body)).into_response()
}

/// Telnyx's answer for a call it does not know.
fn telnyx_not_found() -> Response {
    telnyx_error(
        StatusCode::NOT_FOUND,
        "10005",
        "Resource not found",
        "no such call".into(),
    )
}

/// Telnyx's hangup command.
#[utoipa::path(post, path = "/v2/calls/{call_control_id}/actions/hangup", tag = "provider-compatible",
    params(("call_control_id" = String, Path, description = "The call id")),
    security(("bearer" = []), ("basic" = []), ("access_key" = [])),
    responses((status = 200, body = TelnyxResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = TelnyxErrors), (status = 422, body = TelnyxErrors)))]
pub async fn telnyx_hangup(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    match request_hangup(&s, &p, &id).await {
        Ok((call, false)) if call.status == CallStatus::Hangup => Ok(telnyx_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "90018",
            "Call has already ended",
            "the call has already ended".into(),
        )),
        Ok(_) => Ok(telnyx_ok()),
        Err(e) if e.status == StatusCode::NOT_FOUND => Ok(telnyx_not_found()),
        Err(e) => Err(e),
    }
}

/// Telnyx's transfer command: `to`, and the fields of Telnyx's that a bot
/// may send along, accepted and not used (the caller id presented is the
/// SIP call's own).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TelnyxTransfer {
    /// Where to: a number or a `sip:` URI (1-256 characters; no blanks or
    /// control characters).
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]+$"
    )]
    pub to: String,
    /// Caller id Telnyx would present (not used).
    #[serde(default)]
    #[schema(
        max_length = 64,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]*$"
    )]
    pub from: Option<String>,
    /// Telnyx's client state (not used).
    #[serde(default)]
    #[schema(
        max_length = 4096,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]*$"
    )]
    pub client_state: Option<String>,
    /// Telnyx's request id for idempotency (not used).
    #[serde(default)]
    #[schema(
        max_length = 256,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]*$"
    )]
    pub command_id: Option<String>,
    /// How long the new leg may ring, s (not used).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub timeout_secs: Option<u64>,
}

/// Telnyx's transfer command: hands the call on to `to` (a blind transfer,
/// as `POST /v1/calls/{id}/transfer`).
#[utoipa::path(post, path = "/v2/calls/{call_control_id}/actions/transfer", tag = "provider-compatible",
    params(("call_control_id" = String, Path, description = "The call id")),
    request_body = TelnyxTransfer,
    security(("bearer" = []), ("basic" = []), ("access_key" = [])),
    responses((status = 200, body = TelnyxResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = TelnyxErrors), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn telnyx_transfer(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<TelnyxTransfer>,
) -> Result<Response, ApiError> {
    match request_transfer(&s, &p, &id, req.to).await {
        Ok(_) => Ok(telnyx_ok()),
        Err(e) if e.status == StatusCode::NOT_FOUND => Ok(telnyx_not_found()),
        Err(e) => Err(e),
    }
}

/// Plivo's answer for a call it does not know.
fn plivo_not_found() -> Response {
    let body = PlivoError {
        error: "not found".into(),
    };
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// Which legs Plivo's transfer moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlivoLegs {
    /// The caller's leg: the only one a voxbridge call has.
    Aleg,
    /// The other leg (refused: a voxbridge call has none).
    Bleg,
    /// Both legs (refused, as `bleg`).
    Both,
}

/// An HTTP method Plivo fetches XML with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum PlivoMethod {
    /// The call's parameters in the query.
    Get,
    /// The call's parameters as a form (Plivo's default).
    Post,
}

/// Plivo's transfer: where the caller's leg goes next is the `<Dial>` of
/// the Plivo XML served at `aleg_url`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlivoTransfer {
    /// The legs to move: `aleg` (the default; the caller's, and the only
    /// one a voxbridge call has).
    #[serde(default)]
    pub legs: Option<PlivoLegs>,
    /// Where the Plivo XML for the caller's leg is served (http or https).
    #[schema(
        min_length = 1,
        max_length = 2048,
        pattern = "^[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]+$"
    )]
    pub aleg_url: Option<String>,
    /// How it is fetched (POST unless GET).
    #[serde(default)]
    pub aleg_method: Option<PlivoMethod>,
    /// Plivo's XML for the other leg (refused when given).
    #[serde(default)]
    #[schema(
        max_length = 2048,
        pattern = "^[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]*$"
    )]
    pub bleg_url: Option<String>,
    /// How that is fetched (not used).
    #[serde(default)]
    pub bleg_method: Option<PlivoMethod>,
}

/// Plivo's answer to a transfer it started.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlivoTransferred {
    /// `call transferred`.
    pub message: &'static str,
    /// The request's id.
    pub api_id: String,
}

/// Plivo's transfer of a call: the caller's leg (`aleg`) is handed on to
/// the number or SIP URI the `<Dial>` at `aleg_url` dials (fetched only
/// for an answered call of the tenant), as `POST /v1/calls/{id}/transfer`.
#[utoipa::path(post, path = "/v1/Account/{auth_id}/Call/{call_uuid}/", tag = "provider-compatible",
    params(("auth_id" = String, Path, description = "The customer id"),
           ("call_uuid" = String, Path, description = "The call id")),
    request_body = PlivoTransfer,
    security(("basic" = []), ("bearer" = []), ("access_key" = [])),
    responses((status = 202, body = PlivoTransferred), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = PlivoError),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn plivo_transfer(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((account, id)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<PlivoTransfer>,
) -> Result<Response, ApiError> {
    if !own_account(&p, &account)? {
        return Ok(plivo_not_found());
    }
    if req.legs.is_some_and(|l| l != PlivoLegs::Aleg) || req.bleg_url.is_some() {
        return Err(ApiError::bad_request(
            "legs: a voxbridge call has one leg, the caller's (aleg)",
        ));
    }
    let Some(url) = req.aleg_url else {
        return Err(ApiError::bad_request(
            "aleg_url: where the Plivo XML with the <Dial> for the caller is served",
        ));
    };
    match check_transferable(&s, &p, &id).await {
        Err(e) if e.status == StatusCode::NOT_FOUND => return Ok(plivo_not_found()),
        r => r?,
    }
    let method = match req.aleg_method {
        Some(PlivoMethod::Get) => FetchMethod::Get,
        Some(PlivoMethod::Post) | None => FetchMethod::Post,
    };
    let params = [("CallUUID", id.as_str()), ("AuthID", account.as_str())];
    let target = fetch_dial_target(&s.webhook_allow, "aleg_url", &url, method, &params).await?;
    match request_transfer(&s, &p, &id, target).await {
        Ok(_) => {
            let body = PlivoTransferred {
                message: "call transferred",
                api_id: uuid::Uuid::new_v4().to_string(),
            };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => Ok(plivo_not_found()),
        Err(e) => Err(e),
    }
}

/// Plivo's hangup.
#[utoipa::path(delete, path = "/v1/Account/{auth_id}/Call/{call_uuid}/", tag = "provider-compatible",
    params(("auth_id" = String, Path, description = "The customer id"),
           ("call_uuid" = String, Path, description = "The call id")),
    security(("basic" = []), ("bearer" = []), ("access_key" = [])),
    responses((status = 204, description = "The call is ending"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = PlivoError)))]
pub async fn plivo_hangup(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((account, id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    if !own_account(&p, &account)? {
        return Ok(plivo_not_found());
    }
    match request_hangup(&s, &p, &id).await {
        Ok((call, false)) if call.status == CallStatus::Hangup => Ok(plivo_not_found()),
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) if e.status == StatusCode::NOT_FOUND => Ok(plivo_not_found()),
        Err(e) => Err(e),
    }
}
