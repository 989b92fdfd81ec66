//! Signed webhooks that never lose an event.
//!
//! - Each customer registers endpoints (URL, event-type filter, enabled,
//!   concurrency limit, request timeout) with a secret.
//! - Every event written to the outbox also writes, in the same
//!   transaction, one delivery row per enabled endpoint of its customer
//!   whose filter takes it (`store/outbox.rs`), so a committed event cannot
//!   miss its webhooks, whatever crashes afterwards.
//! - The [`worker`] POSTs the event envelope with both signature schemes
//!   ([`sign`]), one resource's deliveries to one endpoint in order (the
//!   next waits until the earlier one succeeded or gave up), at most the
//!   endpoint's concurrency at once, each attempt recorded (status code,
//!   latency, error). Failures retry with exponential backoff and jitter
//!   ([`schedule`]) for 25 h; a delivery that gives up disables its endpoint
//!   with a `webhook_endpoint_disabled` event (pending deliveries wait for it
//!   to be enabled again). Any delivery can be sent again through the API.
//! - URLs that resolve to internal addresses are refused when saved and on
//!   every attempt ([`ssrf`]).

pub mod schedule;
pub mod sign;
pub mod ssrf;
pub mod worker;

use ipnet::IpNet;
use serde::Deserialize;

/// `[control.webhooks]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Deliver webhooks from this process.
    pub enabled: bool,
    /// Internal ranges webhooks may reach anyway (CIDRs, e.g. `10.0.0.0/8`).
    pub allow: Vec<IpNet>,
    /// First retry delay, ms (doubles per failure).
    pub retry_base_ms: u64,
    /// Longest retry delay, ms.
    pub retry_cap_ms: u64,
    /// A delivery gives up (and disables its endpoint) this long after its
    /// first attempt, s.
    pub give_up_after_s: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        let b = schedule::Backoff::default();
        WebhookConfig {
            enabled: true,
            allow: Vec::new(),
            retry_base_ms: b.base.as_millis() as u64,
            retry_cap_ms: b.cap.as_millis() as u64,
            give_up_after_s: b.max_age.as_secs(),
        }
    }
}

impl WebhookConfig {
    /// The retry policy.
    pub fn backoff(&self) -> schedule::Backoff {
        schedule::Backoff {
            base: std::time::Duration::from_millis(self.retry_base_ms.max(1)),
            cap: std::time::Duration::from_millis(self.retry_cap_ms.max(self.retry_base_ms).max(1)),
            max_age: std::time::Duration::from_secs(self.give_up_after_s),
        }
    }
}

/// Event types an endpoint takes, as stored: `*` or `,a,b,`.
pub fn store_types(types: &[String]) -> String {
    if types.is_empty() || types.iter().any(|t| t == "*") {
        return "*".into();
    }
    format!(",{},", types.join(","))
}

/// The stored filter, back as a list.
pub fn load_types(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The `LIKE` pattern (escape `\`) that finds `event_type` in a stored filter.
pub fn type_pattern(event_type: &str) -> String {
    let escaped: String = event_type
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%,{escaped},%")
}

/// Refuses event-type filters that cannot be stored.
pub fn validate_types(types: &[String]) -> Result<(), String> {
    if types.len() > 50 {
        return Err("at most 50 event types".into());
    }
    for t in types {
        let ok = t == "*"
            || (!t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        if !ok {
            return Err(format!(
                "event type {t:?}: use * or lower-case names such as call_hungup"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_trip_and_escape() {
        let types = vec!["call_hungup".to_string(), "transcript_created".to_string()];
        let stored = store_types(&types);
        assert_eq!(stored, ",call_hungup,transcript_created,");
        assert_eq!(load_types(&stored), types);
        assert_eq!(store_types(&[]), "*");
        assert_eq!(type_pattern("call_hungup"), "%,call\\_hungup,%");
        assert!(validate_types(&["call_hungup".into(), "*".into()]).is_ok());
        assert!(validate_types(&["Call,x".into()]).is_err());
        assert!(validate_types(&[String::new()]).is_err());
    }
}
