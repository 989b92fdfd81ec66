//! The small JSON shapes both directions' messages share.

use serde::Deserialize;
use std::borrow::Cow;

/// `{"name": ...}` (a mark).
#[derive(Deserialize)]
pub(super) struct WireName<'a> {
    #[serde(borrow)]
    pub(super) name: Cow<'a, str>,
}

/// `{"digit": ...}` (a key press).
#[derive(Deserialize)]
pub(super) struct WireDigit<'a> {
    #[serde(borrow)]
    pub(super) digit: Cow<'a, str>,
}
