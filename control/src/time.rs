//! Timestamps: stored as milliseconds since the Unix epoch (`BIGINT` in
//! both stores, so one set of SQL serves both), shown as RFC 3339 UTC.

use serde::{Serialize, Serializer};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch; serialises as an RFC 3339 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub i64);

impl Millis {
    /// The wall clock now.
    pub fn now() -> Self {
        Self::from_system(SystemTime::now())
    }

    /// From a `SystemTime` (times before 1970 clamp to 0).
    pub fn from_system(t: SystemTime) -> Self {
        let ms = t.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        Millis(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// RFC 3339 with milliseconds, UTC (`2026-11-24T09:30:00.123Z`).
    pub fn rfc3339(self) -> String {
        let t = OffsetDateTime::from(UNIX_EPOCH + Duration::from_millis(u64::try_from(self.0).unwrap_or(0)));
        let ms = t.millisecond();
        let t = t.replace_millisecond(0).unwrap_or(t);
        match t.format(&Rfc3339) {
            // `...:00Z` -> `...:00.123Z`
            Ok(s) => format!("{}.{ms:03}Z", s.trim_end_matches('Z')),
            Err(_) => String::from("1970-01-01T00:00:00.000Z"),
        }
    }

    /// Parses RFC 3339 (any offset; times before 1970 clamp to 0).
    pub fn parse(s: &str) -> Option<Self> {
        let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        Some(Millis(i64::try_from(ms.max(0)).unwrap_or(i64::MAX)))
    }
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_rfc3339() {
        let m = Millis(1_795_512_600_123);
        assert_eq!(m.rfc3339(), "2026-11-24T09:30:00.123Z");
        assert_eq!(Millis::parse(&m.rfc3339()), Some(m));
        assert_eq!(Millis::parse("yesterday"), None);
        assert_eq!(Millis::parse("2026-11-24T10:30:00.123+01:00"), Some(m));
        assert_eq!(Millis::parse("1900-01-01T00:00:00Z"), Some(Millis(0)));
        assert_eq!(Millis(0).rfc3339(), "1970-01-01T00:00:00.000Z");
    }
}
