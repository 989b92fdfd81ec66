//! `limit` and `cursor`, shared by every list endpoint: one query struct for
//! the OpenAPI document and one extractor that yields a checked
//! [`PageReq`]. Filters live in each endpoint's own query struct; both are
//! read from the same query string.

use super::error::{ApiError, ApiQuery};
use crate::model::PageReq;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Deserialize;
use utoipa::IntoParams;

/// Paging parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Page size, 1-100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub cursor: Option<String>,
}

/// The page a list request asks for.
#[derive(Debug, Clone, Copy)]
pub struct Page(pub PageReq);

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ApiQuery(p) = ApiQuery::<Paging>::from_request_parts(parts, state).await?;
        Ok(Page(PageReq::new(p.limit, p.cursor.as_deref())?))
    }
}
