//! The control-plane event envelope: the one JSON shape every event has on
//! Kafka, on webhooks and on WebSocket subscriptions.
//!
//! `{event_id, event_type, timestamp, customer_id, resource: {id, type, ...}}`,
//! versioned by `schema/event-envelope.v1.json` (JSON Schema 2020-12), which
//! the tests validate against.

use serde::{Deserialize, Serialize};

/// Path of the schema file, relative to the proto crate.
pub const SCHEMA_V1: &str = include_str!("../schema/event-envelope.v1.json");

/// The resource an event is about, with its type-specific fields alongside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Resource id (e.g. the call id).
    pub id: String,
    /// Resource type (`call`, `transcript`, `campaign`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Every other field of the resource's current state.
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventEnvelope {
    /// Unique event id (UUID); consumers de-duplicate on it.
    pub event_id: String,
    /// e.g. `call_created`, `call_hungup`, `transcript_created`.
    pub event_type: String,
    /// RFC 3339 UTC time the event happened.
    pub timestamp: String,
    /// Tenant that owns the resource.
    pub customer_id: String,
    /// The resource's state after the event.
    pub resource: Resource,
}

impl EventEnvelope {
    /// Serialises to JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings and JSON values always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses JSON, refusing unknown top-level fields.
    pub fn parse(json: &str) -> Result<Self, crate::ProtoError> {
        serde_json::from_str(json).map_err(|e| crate::ProtoError::Json(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn schema() -> jsonschema::Validator {
        let s: serde_json::Value = serde_json::from_str(SCHEMA_V1).expect("schema is JSON");
        jsonschema::validator_for(&s).expect("schema compiles")
    }

    fn sample() -> EventEnvelope {
        let mut fields = serde_json::Map::new();
        fields.insert("status".into(), "hangup".into());
        fields.insert("duration_ms".into(), 61_020.into());
        EventEnvelope {
            event_id: "0b5b2a6e-3c0f-4f6c-9d7e-2f1a7c1d9e01".into(),
            event_type: "call_hungup".into(),
            timestamp: "2026-11-24T09:30:00.123Z".into(),
            customer_id: "cust-1".into(),
            resource: Resource {
                id: "call-42".into(),
                kind: "call".into(),
                fields,
            },
        }
    }

    #[test]
    fn sample_validates_and_round_trips() {
        let e = sample();
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).expect("json");
        assert!(schema().is_valid(&v), "{v}");
        assert_eq!(EventEnvelope::parse(&e.to_json()).expect("valid"), e);
    }

    #[test]
    fn schema_rejects_what_consumers_cannot_use() {
        let s = schema();
        let good: serde_json::Value = serde_json::from_str(&sample().to_json()).expect("json");
        for drop in ["event_id", "event_type", "timestamp", "customer_id", "resource"] {
            let mut v = good.clone();
            v.as_object_mut().expect("object").remove(drop);
            assert!(!s.is_valid(&v), "missing {drop} accepted");
        }
        let mut v = good.clone();
        v["resource"].as_object_mut().expect("object").remove("type");
        assert!(!s.is_valid(&v), "resource without type accepted");
        let mut v = good;
        v["surprise"] = 1.into();
        assert!(!s.is_valid(&v), "unknown top-level field accepted");
        assert!(EventEnvelope::parse(&v.to_string()).is_err());
    }

    proptest! {
        #[test]
        fn generated_envelopes_validate(id in "[a-z0-9-]{1,40}", ty in "[a-z][a-z_]{0,29}", cust in "[a-zA-Z0-9]{1,20}", rid in "[a-z0-9-]{1,40}", rtype in "[a-z]{1,12}") {
            let e = EventEnvelope { event_id: id, event_type: ty, timestamp: "2026-01-01T00:00:00Z".into(), customer_id: cust, resource: Resource { id: rid, kind: rtype, fields: Default::default() } };
            let v: serde_json::Value = serde_json::from_str(&e.to_json()).expect("json");
            prop_assert!(schema().is_valid(&v));
            prop_assert_eq!(EventEnvelope::parse(&e.to_json()).expect("valid"), e);
        }
    }
}
