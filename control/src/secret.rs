//! Secrets in configuration: read like strings, never printed. Every key,
//! password, token and database URL of the config is one of these two
//! types ([`Secret`] is the media plane's, shared), so `serve --check`, `{:?}` in a log line or a panic message can
//! show the config without showing what would let someone in.

use serde::Deserialize;

pub use voxbridge_contract::secret::Secret;

impl From<&str> for SecretUrl {
    fn from(s: &str) -> Self {
        SecretUrl::new(s)
    }
}

impl From<String> for SecretUrl {
    fn from(s: String) -> Self {
        SecretUrl(s)
    }
}

/// A URL that may carry a password (`postgres://user:pass@host/db`).
/// `Debug` and `Display` print it with the password and any query string
/// (where drivers take `password=`) replaced by `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(s: impl Into<String>) -> Self {
        SecretUrl(s.into())
    }

    /// The URL itself, for the one place that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its secrets.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                if u.query().is_some() {
                    u.set_query(Some("***"));
                }
                u.to_string()
            }
            // Not a URL (a key=value connection string?): show nothing.
            Err(_) => "<redacted>".into(),
        }
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "\"<redacted>\"");
        assert_eq!(s.expose(), "hunter2-very-secret");
        let u = SecretUrl::new("postgres://app:hunter2@db.internal:5432/voxbridge?sslpassword=x");
        let shown = format!("{u:?} {u}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("sslpassword"),
            "{shown}"
        );
        assert!(shown.contains("db.internal:5432/voxbridge"), "{shown}");
        assert_eq!(SecretUrl::new("host=db password=x").redacted(), "<redacted>");
    }
}
