//! The Kafka publisher: rdkafka's idempotent producer (`acks=all`, at most
//! 5 requests in flight, so librdkafka keeps order per partition across its
//! own retries). Topic per resource type (`<prefix>.<type>.events`, e.g.
//! `voxbridge.call.events`), key = resource id, so one call's events land in
//! one partition in commit order. The value is the event envelope (JSON),
//! which carries `event_type` and `event_id`; with
//! [`KafkaConfig::record_headers`] they also go out as record headers.
//!
//! Headers are off by default: consumers of the envelope need nothing else,
//! and some Kafka-API brokers store headers at a high price. tansu 0.6 (the
//! broker of this project's tests) goes from p99 19 ms to 200-530 ms
//! produce->consume at 1,000 events/s of 561 bytes when each carries these
//! two headers, with nothing else running (benches/RESULTS.md, "Record
//! headers"). Apache Kafka keeps headers in the record batch at little cost;
//! turn them on there for consumers that route on headers.
//!
//! A batch is enqueued at once and then confirmed in order; the relay marks
//! only the confirmed prefix sent. The idempotent producer never confirms a
//! later message of a partition after failing an earlier one, so a row
//! retried after a failure cannot overtake its resource's earlier events.
//!
//! After any failed delivery the producer is replaced by a new one (a new
//! producer id, fresh sequence numbers): an idempotent producer whose
//! messages timed out keeps sequence state the broker may no longer accept
//! after a restart (seen with tansu: every later delivery failed). The rows
//! are then sent again from the outbox, so events whose acknowledgement was
//! lost arrive twice (consumers de-duplicate on `event_id`).

use super::Publisher;
use crate::error::{ControlError, Result};
use crate::store::OutboxRow;
use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// Kafka settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`.
    pub brokers: String,
    /// Topic prefix (`voxbridge`).
    pub topic_prefix: String,
    /// How long librdkafka keeps retrying one message before the relay sees
    /// an error and starts over from the outbox, ms.
    pub message_timeout_ms: u32,
    /// Resource types whose topics are created at start if missing.
    pub resource_types: Vec<String>,
    /// Partitions of the topics created at start.
    pub partitions: i32,
    /// Also send `event_type` and `event_id` as record headers (module docs).
    pub record_headers: bool,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: "voxbridge".into(),
            message_timeout_ms: 30_000,
            // Every resource type the outbox writes: the brokers voxbridge
            // is tested with do not create topics on first use, so a type
            // missing here would stall the relay on its first event.
            resource_types: crate::store::RESOURCE_TYPES
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
            partitions: 3,
            record_headers: false,
        }
    }
}

impl KafkaConfig {
    /// The topic of a resource type.
    pub fn topic(&self, resource_type: &str) -> String {
        format!("{}.{resource_type}.events", self.topic_prefix)
    }
}

/// The publisher.
pub struct KafkaPublisher {
    producer: std::sync::Mutex<FutureProducer>,
    config: KafkaConfig,
}

fn kafka(e: impl std::fmt::Display) -> ControlError {
    ControlError::Kafka(e.to_string())
}

impl KafkaPublisher {
    /// Builds the producer. Does not wait for the brokers: the relay's
    /// retries cover a broker that comes up later.
    pub fn new(config: KafkaConfig) -> Result<Self> {
        let producer = std::sync::Mutex::new(Self::producer(&config)?);
        Ok(KafkaPublisher { producer, config })
    }

    fn producer(config: &KafkaConfig) -> Result<FutureProducer> {
        ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("message.timeout.ms", config.message_timeout_ms.to_string())
            .set("linger.ms", "2")
            .create()
            .map_err(kafka)
    }

    /// Replaces the producer after a failure (module docs).
    fn renew(&self) {
        match Self::producer(&self.config) {
            Ok(p) => *self.producer.lock().unwrap_or_else(|e| e.into_inner()) = p,
            Err(e) => tracing::warn!(error = %e, "kafka: could not renew the producer"),
        }
    }

    /// Creates the configured topics that do not exist yet.
    pub async fn ensure_topics(&self) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.config.brokers)
            .create()
            .map_err(kafka)?;
        let names: Vec<String> = self
            .config
            .resource_types
            .iter()
            .map(|t| self.config.topic(t))
            .collect();
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|n| NewTopic::new(n, self.config.partitions, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for r in admin.create_topics(&topics, &opts).await.map_err(kafka)? {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(kafka(format!("create topic {name}: {code}"))),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Publisher for KafkaPublisher {
    async fn publish(&self, rows: &[OutboxRow]) -> Result<usize> {
        let producer = self.producer.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut pending = Vec::with_capacity(rows.len());
        for r in rows {
            let e = &r.event;
            let topic = self.config.topic(&e.resource.kind);
            let payload = e.to_json();
            let mut record = FutureRecord::to(&topic)
                .key(e.resource.id.as_str())
                .payload(payload.as_str());
            if self.config.record_headers {
                record = record.headers(
                    OwnedHeaders::new()
                        .insert(Header {
                            key: "event_type",
                            value: Some(e.event_type.as_str()),
                        })
                        .insert(Header {
                            key: "event_id",
                            value: Some(e.event_id.as_str()),
                        }),
                );
            }
            match producer.send_result(record) {
                Ok(f) => pending.push(f),
                // Queue full or similar: publish what was enqueued.
                Err((e, _)) => {
                    tracing::warn!(error = %e, "kafka enqueue refused");
                    break;
                }
            }
        }
        let mut done = 0;
        for f in pending {
            match f.await {
                Ok(Ok(_)) => done += 1,
                Ok(Err((e, _))) => {
                    tracing::warn!(error = %e, "kafka delivery failed");
                    break;
                }
                Err(_) => break,
            }
        }
        if done < rows.len() {
            self.renew();
        }
        if done == 0 && !rows.is_empty() {
            return Err(kafka("no event confirmed"));
        }
        Ok(done)
    }
}
