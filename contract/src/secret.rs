//! A configured secret (API token, password, key): read like a string,
//! never printed. `Debug` shows `"<redacted>"`, so `serve --check`, a log
//! line or a panic message can show the config without what would let
//! someone in. control/ uses the same type for its secrets.

use serde::Deserialize;

/// A secret string (JWT secret, admin key, password, token). `Debug`
/// prints `"<redacted>"`; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `offered` is this secret, in time that does not depend on
    /// where they first differ.
    pub fn matches(&self, offered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// `url` with what may be a credential hidden: the user info
/// (`user:pass@`) and the query string (`?token=...`) become `***`. For bot
/// URLs in logs, errors and `serve --check`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, _)) => format!("{path}?***"),
        None => tail.to_owned(),
    };
    match scheme {
        Some(s) => format!("{s}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_urls_lose_their_credentials() {
        assert_eq!(
            redact_url("wss://bot.example.com/ws?token=abc"),
            "wss://bot.example.com/ws?***"
        );
        assert_eq!(
            redact_url("ws://user:pw@10.0.0.5:8765/x"),
            "ws://***@10.0.0.5:8765/x"
        );
        assert_eq!(redact_url("ws://127.0.0.1:8765"), "ws://127.0.0.1:8765");
    }

    #[test]
    fn a_secret_never_prints_and_compares_whole() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "\"<redacted>\"");
        assert!(s.matches("hunter2-very-secret"));
        assert!(!s.matches("hunter2-very-secreT"));
        assert!(!s.matches("hunter2"));
    }
}
