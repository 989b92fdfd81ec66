//! The API's one error type: a status, a stable machine-readable code and a
//! message, as `{"error": {"code": "...", "message": "..."}}`. Internal
//! details (database messages) are logged, never sent.
//!
//! | status | code |
//! |---|---|
//! | 400 | `bad_request`, `invalid_json`, `invalid_body`, `invalid_text` (a string breaks the text rule, `api/text.rs`), `invalid` (the store refused a value) |
//! | 400, 405, 426 | `not_websocket` (`/v1/ws` without a WebSocket upgrade) |
//! | 401 | `unauthorized` |
//! | 403 | `forbidden`, `forbidden_destination` (a webhook or provider-document URL that is or resolves to an internal address) |
//! | 404 | `not_found` |
//! | 408 | `request_timeout` (the listener's request timeout, `src/listener.rs`) |
//! | 409 | `conflict`, `invalid_transition` |
//! | 413 | `payload_too_large` |
//! | 415 | `unsupported_media_type` |
//! | 500 | `internal` |
//! | 502 | `document_unavailable` (a provider transfer's document could not be fetched) |
//! | 503 | `unavailable` |

use crate::error::ControlError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

/// The JSON body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (see the table in the API docs).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 `invalid_text`: a string breaks the API's text rule.
    pub fn invalid_text(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_text", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// 409 with `code`: the resource is not in a state for this.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 503 `media_unavailable`: the media plane did not answer a command.
    pub fn media_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "media_unavailable",
            "the media plane did not answer",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound => ApiError::not_found(),
            ControlError::Invalid(m) => ApiError::bad_request(m),
            ControlError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            e @ ControlError::Transition { .. } => {
                Self::new(StatusCode::CONFLICT, "invalid_transition", e.to_string())
            }
            ControlError::Rejected(m) => {
                tracing::warn!(error = %m, "API request refused by the store");
                Self::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "the store refused a value of this request; nothing was written",
                )
            }
            ControlError::Store(m) => {
                tracing::error!(error = %m, "API request failed: store");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store is unavailable; nothing was written",
                )
            }
            other => {
                tracing::error!(error = %other, "API request failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_body", e.body_text())
            }
            JsonRejection::JsonSyntaxError(e) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text())
            }
            JsonRejection::MissingJsonContentType(e) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                e.body_text(),
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is too large",
            ),
            other => Self::bad_request(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s, and whose every string
/// obeys the API's text rule ([`super::text`]): a body is parsed, checked,
/// then read into `T`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(v) = axum::Json::<serde_json::Value>::from_request(req, state).await?;
        super::text::check_json(&v)?;
        if super::text::too_long(&v) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_text",
                format!("a text field is longer than {} characters", super::text::MAX_TEXT),
            ));
        }
        serde_json::from_value(v)
            .map(ApiJson)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()))
    }
}

/// `Query<T>` whose rejections are [`ApiError`]s.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `Path<T>` whose rejections are [`ApiError`]s.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);
