//! The media process's event sink: each call event becomes one Kafka
//! message on `<prefix>.media.events`, key = call id. `emit` only enqueues
//! (librdkafka's own thread sends), so a call's task never waits on Kafka.

use super::{kafka, producer_config, LinkConfig, LinkStats};
use crate::error::Result;
use rdkafka::client::ClientContext;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use voxbridge_contract::event_wire::WireEvent;
use voxbridge_contract::events::{CallEvent, EventSink};

/// Counts deliveries that failed for good (none while Kafka is merely
/// down: messages have no deadline).
struct Deliveries(Arc<LinkStats>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.0.events_failed.fetch_add(1, Relaxed);
            tracing::error!(error = %e, "link: call event not delivered to Kafka");
        }
    }
}

/// Sends call events to Kafka.
pub struct KafkaEventSink {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    stats: Arc<LinkStats>,
}

impl KafkaEventSink {
    /// Builds the producer; Kafka need not be up yet.
    pub fn new(config: &LinkConfig, stats: Arc<LinkStats>) -> Result<Self> {
        let producer = producer_config(&config.brokers)
            .create_with_context(Deliveries(stats.clone()))
            .map_err(kafka)?;
        Ok(KafkaEventSink {
            producer,
            topic: config.events_topic(),
            stats,
        })
    }

    /// Waits up to `timeout` for queued events to reach Kafka (shutdown);
    /// returns how many are still queued.
    pub fn flush(&self, timeout: Duration) -> i32 {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, queued = self.producer.in_flight_count(), "link: call events still queued at shutdown");
        }
        self.producer.in_flight_count()
    }
}

impl EventSink for KafkaEventSink {
    fn emit(&self, event: CallEvent) {
        let wire = WireEvent {
            event_id: crate::store::new_id(),
            event,
        };
        let payload = wire.encode();
        let record = BaseRecord::to(&self.topic)
            .key(wire.event.call_id())
            .payload(&payload);
        match self.producer.send(record) {
            Ok(()) => {
                self.stats.events_sent.fetch_add(1, Relaxed);
            }
            Err((e, _)) => {
                // Only when a million events are already waiting for Kafka.
                self.stats.events_failed.fetch_add(1, Relaxed);
                tracing::error!(error = %e, call_id = wire.event.call_id(), "link: call event dropped (producer queue full)");
            }
        }
    }
}
