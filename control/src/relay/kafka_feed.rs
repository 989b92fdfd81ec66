//! With `events = "kafka"`, what each control process reads back from the
//! event topics:
//!
//! - [`bus_feed`]: every event, into this process's bus (for `/v1/ws`), so
//!   every instance's subscribers see every event whichever instance's relay
//!   published it. Each process reads all partitions from the end offsets it
//!   found at start (no group).
//! - [`billing_group`]: `call_hungup` events for billing, in the consumer
//!   group `<prefix>.billing`, so several instances share the partitions;
//!   an offset is stored only after its call is charged (a redelivery
//!   charges nothing, see `Store::bill_call`).
//!
//! Webhooks need no consumer: their deliveries are rows written with the
//! event itself (`crate::webhooks`).

use super::bus::Bus;
use super::kafka::KafkaConfig;
use crate::billing_worker::{bill_one, BillingStats};
use crate::link::assign_from_end_retrying;
use crate::store::Store;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::Message;
use std::sync::Arc;
use tokio::sync::watch;
use voxbridge_proto::envelope::EventEnvelope;

/// Reads every event topic into `bus` until `stop`; `ready` turns true once
/// events sent from then on will be seen.
pub async fn bus_feed(
    config: KafkaConfig,
    bus: Bus,
    ready: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let topics: Vec<String> = config.resource_types.iter().map(|t| config.topic(t)).collect();
    let group = format!("{}.bus", config.topic_prefix);
    let what = "kafka bus feed";
    let Some(consumer) = assign_from_end_retrying(&config.brokers, &group, &topics, what, &mut stop).await
    else {
        return;
    };
    ready.send_replace(true);
    loop {
        let msg = tokio::select! {
            m = consumer.recv() => m,
            _ = stop.wait_for(|s| *s) => return,
        };
        match msg {
            Ok(m) => match std::str::from_utf8(m.payload().unwrap_or_default())
                .map_err(|e| e.to_string())
                .and_then(|t| EventEnvelope::parse(t).map_err(|e| e.to_string()))
            {
                Ok(e) => bus.send(e),
                Err(e) => {
                    tracing::warn!(error = %e, topic = m.topic(), "kafka bus feed: not an event envelope; skipped")
                }
            },
            Err(e) => tracing::warn!(error = %e, "kafka bus feed"),
        }
    }
}

/// Charges `call_hungup` events from `<prefix>.call.events` in the group
/// `<prefix>.billing` until `stop`.
pub async fn billing_group(
    config: KafkaConfig,
    store: Store,
    stats: Arc<BillingStats>,
    mut stop: watch::Receiver<bool>,
) {
    let consumer: StreamConsumer = match ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("{}.billing", config.topic_prefix))
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "billing consumer: not started (the sweep still bills)");
            return;
        }
    };
    if let Err(e) = consumer.subscribe(&[&config.topic("call")]) {
        tracing::error!(error = %e, "billing consumer: cannot subscribe (the sweep still bills)");
        return;
    }
    loop {
        let msg = tokio::select! {
            m = consumer.recv() => m,
            _ = stop.wait_for(|s| *s) => break,
        };
        let m = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "billing consumer");
                continue;
            }
        };
        let event_type = m.headers().and_then(|h| {
            use rdkafka::message::Headers;
            h.iter().find(|h| h.key == "event_type").and_then(|h| h.value)
        });
        match classify(event_type, m.payload()) {
            Billable::Hangup(e) => {
                if !bill_one(&store, &e.event_id, &e.resource.id, &stats, &mut stop).await {
                    break;
                }
            }
            Billable::Other => {}
            Billable::Unreadable => tracing::warn!(
                offset = m.offset(),
                "billing consumer: unreadable message skipped"
            ),
        }
        if let Err(e) = consumer.store_offset_from_message(&m) {
            tracing::warn!(error = %e, "billing consumer: could not store the offset");
        }
    }
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
}

/// What a message on the call topic means for billing.
#[derive(Debug)]
enum Billable {
    /// A `call_hungup` event: charge the call.
    Hangup(Box<EventEnvelope>),
    /// Any other event.
    Other,
    /// A value that is no event envelope (skipped, logged).
    Unreadable,
}

/// Classifies a message by its `event_type` header when the relay sent
/// headers (other events are then skipped without parsing), else by the
/// envelope in its value (the default: no headers, see relay/kafka.rs).
fn classify(event_type_header: Option<&[u8]>, payload: Option<&[u8]>) -> Billable {
    if event_type_header.is_some_and(|v| v != b"call_hungup") {
        return Billable::Other;
    }
    let parsed = payload
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|t| EventEnvelope::parse(t).ok());
    match parsed {
        Some(e) if e.event_type == "call_hungup" => Billable::Hangup(Box::new(e)),
        Some(_) => Billable::Other,
        None => Billable::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxbridge_proto::envelope::Resource;

    fn event(event_type: &str) -> String {
        EventEnvelope {
            event_id: "e1".into(),
            event_type: event_type.into(),
            timestamp: "2026-12-01T00:00:00Z".into(),
            customer_id: "acme".into(),
            resource: Resource {
                kind: "call".into(),
                id: "c1".into(),
                fields: serde_json::Map::new(),
            },
        }
        .to_json()
    }

    #[test]
    fn hangups_are_found_with_and_without_headers() {
        let hung = event("call_hungup");
        let created = event("call_created");
        assert!(
            matches!(classify(None, Some(hung.as_bytes())), Billable::Hangup(e) if e.resource.id == "c1")
        );
        assert!(matches!(
            classify(Some(b"call_hungup"), Some(hung.as_bytes())),
            Billable::Hangup(_)
        ));
        assert!(matches!(
            classify(None, Some(created.as_bytes())),
            Billable::Other
        ));
        // A header that names another type is trusted: the value is not parsed.
        assert!(matches!(
            classify(Some(b"call_created"), Some(b"not json")),
            Billable::Other
        ));
        assert!(matches!(classify(None, Some(b"not json")), Billable::Unreadable));
        assert!(matches!(
            classify(Some(b"call_hungup"), None),
            Billable::Unreadable
        ));
        assert!(matches!(classify(None, None), Billable::Unreadable));
    }
}
