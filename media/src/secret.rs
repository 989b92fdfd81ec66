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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_and_compares_whole() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "\"<redacted>\"");
        assert!(s.matches("hunter2-very-secret"));
        assert!(!s.matches("hunter2-very-secreT"));
        assert!(!s.matches("hunter2"));
    }
}
