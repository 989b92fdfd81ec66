//! `/v1/transcribes` and `/v1/transcripts`: read-only, tenant-scoped.

use super::auth::Principal;
use super::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use super::paging::{Page as Pages, Paging};
use super::AppState;
use crate::model::{Page, Transcribe, Transcript};
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

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
