//! Call recordings: started, stopped, paused and resumed on a live call
//! (`POST /v1/calls/{id}/recordings`, `.../stop`, `.../pause`,
//! `.../resume`), listed (`GET /v1/recordings`) and fetched
//! (`GET /v1/recordings/{id}` streams the WAV file), tenant-scoped.

use super::auth::Principal;
use super::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use super::paging::{Page as Pages, Paging};
use super::AppState;
use crate::model::{Page, Recording};
use crate::state::CallStatus;
use crate::time::Millis;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use utoipa::IntoParams;
use voxbridge_contract::commands::{RecordCommand, RecordingInfo};

/// How long the media plane may take to answer (a start makes the file).
const MEDIA_ANSWER: Duration = Duration::from_secs(5);
/// Bytes read from a recording's file per piece of the response.
const READ_PIECE: usize = 64 * 1024;

/// Asks the media plane to `command` call `id`'s recording.
async fn ask(s: &AppState, id: &str, command: RecordCommand) -> Result<RecordingInfo, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.commands
        .record(id, command, Box::new(move |r| drop(tx.send(r))));
    match tokio::time::timeout(MEDIA_ANSWER, rx).await {
        Ok(Ok(Ok(info))) => Ok(info),
        Ok(Ok(Err(why))) => Err(ApiError::conflict("not_recordable", why)),
        Ok(Err(_)) | Err(_) => Err(ApiError::media_unavailable()),
    }
}

/// Starts recording a live call: `202` with the recording, `recording`.
/// The file is a stereo WAV (caller left, what the caller heard right) at
/// the bot's rate; `recording_started` is published, `recording_finished`
/// (with duration and size) once stopped, the call ends, or a write fails
/// (a full disk ends the recording, never the call). `409` when the call
/// is not live, a recording already runs on it, or the file cannot be
/// made. Audited.
#[utoipa::path(post, path = "/v1/calls/{id}/recordings", tag = "recordings",
    params(("id" = String, Path, description = "Call id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 202, body = Recording), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn start(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Recording>), ApiError> {
    let customer = p.customer()?;
    let call = s.store.get_call(customer, &id).await?;
    if !matches!(
        call.status,
        CallStatus::Dialing | CallStatus::Ringing | CallStatus::Progressing
    ) {
        return Err(ApiError::conflict(
            "not_live",
            format!(
                "only a live call can be recorded (this one is {})",
                call.status.as_str()
            ),
        ));
    }
    if let Some(running) = s.store.running_recording(customer, &id).await? {
        return Err(ApiError::conflict(
            "recording_running",
            format!("recording {} runs on this call; stop it first", running.id),
        ));
    }
    let recording_id = crate::store::new_id();
    let info = ask(
        &s,
        &id,
        RecordCommand::Start {
            recording_id: recording_id.clone(),
        },
    )
    .await?;
    // The media plane's `recording_started` may be stored first; either
    // way there is one record and one event.
    let (r, _) = s
        .store
        .start_recording_once(&info.recording_id, &id, &info.file, info.rate, Millis::now())
        .await?;
    s.store
        .audit_request(
            &p.actor,
            customer,
            "call.record",
            ("recording", &r.id),
            &serde_json::json!({ "call_id": id }),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(r)))
}

/// One of the commands on a running recording.
async fn command(
    s: AppState,
    p: Principal,
    id: String,
    command: RecordCommand,
    action: &'static str,
) -> Result<(StatusCode, Json<Recording>), ApiError> {
    let customer = p.customer()?;
    let Some(r) = s.store.running_recording(customer, &id).await? else {
        return Err(ApiError::not_found());
    };
    let paused = match command {
        RecordCommand::Pause => Some(true),
        RecordCommand::Resume => Some(false),
        _ => None,
    };
    ask(&s, &id, command).await?;
    if let Some(paused) = paused {
        // The media plane's `recording_paused` may be applied first.
        s.store.pause_recording(&r.id, paused).await?;
    }
    s.store
        .audit_request(
            &p.actor,
            customer,
            action,
            ("recording", &r.id),
            &serde_json::json!({ "call_id": id }),
        )
        .await?;
    let r = s.store.recording_by_id(&r.id).await?;
    Ok((StatusCode::ACCEPTED, Json(r)))
}

/// Stops the recording of a call: `202` with it; the file is completed and
/// `recording_finished` follows. `404` when no recording runs on the
/// call. Audited.
#[utoipa::path(post, path = "/v1/calls/{id}/recordings/stop", tag = "recordings",
    params(("id" = String, Path, description = "Call id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 202, body = Recording), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn stop(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Recording>), ApiError> {
    command(s, p, id, RecordCommand::Stop, "call.record_stop").await
}

/// Pauses the recording of a call (a card number is read out): silence is
/// recorded until it resumes, so the file keeps the call's time. `202`
/// with it, `paused`; `recording_paused` is published. `404` when no
/// recording runs on the call. Audited.
#[utoipa::path(post, path = "/v1/calls/{id}/recordings/pause", tag = "recordings",
    params(("id" = String, Path, description = "Call id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 202, body = Recording), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn pause(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Recording>), ApiError> {
    command(s, p, id, RecordCommand::Pause, "call.record_pause").await
}

/// Resumes a paused recording: `202` with it, `recording`;
/// `recording_resumed` is published. `404` when no recording runs on the
/// call. Audited.
#[utoipa::path(post, path = "/v1/calls/{id}/recordings/resume", tag = "recordings",
    params(("id" = String, Path, description = "Call id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 202, body = Recording), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn resume(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Recording>), ApiError> {
    command(s, p, id, RecordCommand::Resume, "call.record_resume").await
}

/// Filters for recordings.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListRecordings {
    /// Only the recordings of this call.
    pub call_id: Option<String>,
}

/// Lists recordings, newest first.
#[utoipa::path(get, path = "/v1/recordings", tag = "recordings", params(ListRecordings, Paging),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, body = Page<Recording>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListRecordings>,
    Pages(page): Pages,
) -> Result<Json<Page<Recording>>, ApiError> {
    Ok(Json(
        s.store
            .list_recordings(p.customer()?, q.call_id.as_deref(), page)
            .await?,
    ))
}

/// Whether `file` is a plain file name (what the media plane reports is
/// never read outside the recordings directory).
fn plain_file_name(file: &str) -> bool {
    !file.is_empty()
        && file.len() <= 80
        && !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The recording's file, `audio/wav` (stereo PCM16: caller left, what the
/// caller heard right) or `audio/ogg` (stereo Opus, with `[recording]
/// format = "ogg"`), streamed; to its tenant only. A recording still
/// being written is served as far as it is (its header says "to the end
/// of the file"). `404` when there is no such recording of the tenant or
/// its file is gone (retention).
#[utoipa::path(get, path = "/v1/recordings/{id}", tag = "recordings", params(("id" = String, Path, description = "Recording id")),
    security(("bearer" = []), ("access_key" = [])),
    responses((status = 200, description = "The recording's file", content((Vec<u8> = "audio/wav"), (Vec<u8> = "audio/ogg"))),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn file(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (r, file) = s.store.get_recording(p.customer()?, &id).await?;
    if r.status == "deleted" || !plain_file_name(&file) {
        return Err(ApiError::not_found());
    }
    let path = s.recordings_dir.join(&file);
    let f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ApiError::not_found()),
        Err(e) => {
            tracing::warn!(recording_id = r.id, path = %path.display(), error = %e, "cannot open a recording");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the recording's file cannot be read",
            ));
        }
    };
    let len = f.metadata().await.map(|m| m.len()).ok();
    let pieces = futures_util::stream::unfold(Some(f), |f| async move {
        let mut f = f?;
        let mut buf = vec![0u8; READ_PIECE];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut response = Body::from_stream(pieces).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(if file.ends_with(".opus") {
            "audio/ogg"
        } else {
            "audio/wav"
        }),
    );
    // Only a finished file's length is final.
    if let (Some(len), "completed" | "failed") = (len, r.status.as_str()) {
        headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::plain_file_name;

    #[test]
    fn only_plain_names_are_served() {
        assert!(plain_file_name("0b6d3c1e-aaaa.wav"));
        assert!(!plain_file_name("../secret.wav"));
        assert!(!plain_file_name("a/b.wav"));
        assert!(!plain_file_name(".hidden"));
        assert!(!plain_file_name(""));
    }
}
