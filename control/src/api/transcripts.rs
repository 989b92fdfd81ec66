//! `/v1/transcribes` and `/v1/transcripts`, tenant-scoped, and starting and
//! stopping a call's transcription through a speech recognizer
//! (`POST /v1/calls/{id}/transcribes`, `.../transcribes/stop`).

use super::auth::Principal;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use super::paging::{Page as Pages, Paging};
use super::AppState;
use crate::model::{Page, Transcribe, Transcript};
use crate::state::CallStatus;
use crate::time::Millis;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use voxbridge_contract::commands::{is_language_tag, TranscribeDirections, TranscribeStart};

/// How long the media plane may take to answer a start or stop.
const MEDIA_ANSWER: Duration = Duration::from_secs(5);

/// Body of `POST /v1/calls/{id}/transcribes`; `{}` takes the route's
/// recognizer settings as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartTranscribe {
    /// The recognizer's language, a tag such as `en` or `en-US` (1-35
    /// letters, digits and `-`); the route's `language` when absent.
    #[schema(min_length = 1, max_length = 35, pattern = "^[A-Za-z0-9-]{1,35}$")]
    pub language: Option<String>,
    /// `in` (the caller), `out` (what the caller heard) or `both`; the
    /// route's `directions` when absent.
    pub directions: Option<TranscribeDirections>,
}

/// Starts transcribing a live call through its route's speech recognizer
/// (`[routes.<name>.transcribe]`): `202` with the transcribe, `running`;
/// `transcribe_started` is published, each segment as `transcript_created`,
/// and `transcribe_completed` once stopped or the call ends. `409` when
/// the call is not live, a transcribe already runs on it, or its route
/// names no recognizer. Audited.
#[utoipa::path(post, path = "/v1/calls/{id}/transcribes", tag = "transcripts", request_body = StartTranscribe,
    params(("id" = String, Path, description = "Call id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 202, body = Transcribe), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn start(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<StartTranscribe>,
) -> Result<(StatusCode, Json<Transcribe>), ApiError> {
    let customer = p.customer()?;
    if let Some(language) = &req.language {
        if !is_language_tag(language) {
            return Err(ApiError::bad_request(
                "language: 1-35 letters, digits and '-' (a tag such as en or en-US)",
            ));
        }
    }
    let call = s.store.get_call(customer, &id).await?;
    if !matches!(
        call.status,
        CallStatus::Dialing | CallStatus::Ringing | CallStatus::Progressing
    ) {
        return Err(ApiError::conflict(
            "not_live",
            format!(
                "only a live call can be transcribed (this one is {})",
                call.status.as_str()
            ),
        ));
    }
    if let Some(running) = s.store.running_transcribe(customer, &id).await? {
        return Err(ApiError::conflict(
            "transcribe_running",
            format!("transcribe {} runs on this call; stop it first", running.id),
        ));
    }
    let transcribe_id = crate::store::new_id();
    let command = TranscribeStart {
        transcribe_id: transcribe_id.clone(),
        language: req.language.clone(),
        directions: req.directions,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.commands
        .transcribe(&id, command, Box::new(move |r| drop(tx.send(r))));
    let running = match tokio::time::timeout(MEDIA_ANSWER, rx).await {
        Ok(Ok(Ok(running))) => running,
        Ok(Ok(Err(why))) => return Err(ApiError::conflict("not_transcribable", why)),
        Ok(Err(_)) | Err(_) => return Err(ApiError::media_unavailable()),
    };
    // The media plane's `transcribe_started` may be stored first; either
    // way there is one record and one event.
    let (t, _) = s
        .store
        .start_transcribe_once(
            &transcribe_id,
            &id,
            &running.language,
            running.directions.as_str(),
            Millis::now(),
        )
        .await?;
    s.store
        .audit_request(
            &p.actor,
            customer,
            "call.transcribe",
            ("transcribe", &transcribe_id),
            &serde_json::json!({
                "call_id": id,
                "language": running.language,
                "directions": running.directions.as_str(),
            }),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(t)))
}

/// Stops the transcribe running on a call: `202` with it, still
/// `running`; the audio already taken is recognized, and
/// `transcribe_completed` follows with the last segments. `404` when no
/// transcribe runs on the call. Audited.
#[utoipa::path(post, path = "/v1/calls/{id}/transcribes/stop", tag = "transcripts",
    params(("id" = String, Path, description = "Call id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 202, body = Transcribe), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn stop(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Transcribe>), ApiError> {
    let customer = p.customer()?;
    let Some(t) = s.store.running_transcribe(customer, &id).await? else {
        return Err(ApiError::not_found());
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.commands
        .stop_transcribe(&id, Box::new(move |r| drop(tx.send(r))));
    match tokio::time::timeout(MEDIA_ANSWER, rx).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(why))) => return Err(ApiError::conflict("not_running", why)),
        Ok(Err(_)) | Err(_) => return Err(ApiError::media_unavailable()),
    }
    s.store
        .audit_request(
            &p.actor,
            customer,
            "call.transcribe_stop",
            ("transcribe", &t.id),
            &serde_json::json!({ "call_id": id }),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(t)))
}

/// Filters for transcribes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListTranscribes {
    /// Only the transcribe of this call.
    pub call_id: Option<String>,
}

/// Filters for transcripts.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListTranscripts {
    /// Only segments of this transcribe.
    pub transcribe_id: Option<String>,
}

/// Lists transcribes, newest first.
#[utoipa::path(get, path = "/v1/transcribes", tag = "transcripts", params(ListTranscribes, Paging),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Page<Transcribe>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_transcribes(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListTranscribes>,
    Pages(page): Pages,
) -> Result<Json<Page<Transcribe>>, ApiError> {
    Ok(Json(
        s.store
            .list_transcribes(p.customer()?, q.call_id.as_deref(), page)
            .await?,
    ))
}

/// One transcribe.
#[utoipa::path(get, path = "/v1/transcribes/{id}", tag = "transcripts", params(("id" = String, Path, description = "Transcribe id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Transcribe), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_transcribe(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Transcribe>, ApiError> {
    Ok(Json(s.store.get_transcribe(p.customer()?, &id).await?))
}

/// Lists transcript segments, newest first.
#[utoipa::path(get, path = "/v1/transcripts", tag = "transcripts", params(ListTranscripts, Paging),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Page<Transcript>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_transcripts(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListTranscripts>,
    Pages(page): Pages,
) -> Result<Json<Page<Transcript>>, ApiError> {
    Ok(Json(
        s.store
            .list_transcripts(p.customer()?, q.transcribe_id.as_deref(), page)
            .await?,
    ))
}

/// One transcript segment.
#[utoipa::path(get, path = "/v1/transcripts/{id}", tag = "transcripts", params(("id" = String, Path, description = "Transcript id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Transcript), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_transcript(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Transcript>, ApiError> {
    Ok(Json(s.store.get_transcript(p.customer()?, &id).await?))
}
