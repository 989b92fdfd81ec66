//! Media and control in separate processes (`voxbridge serve --role media`
//! and `--role control`), linked by Kafka instead of function calls.
//!
//! - Call events: the media process sends each [`CallEvent`] as a
//!   [`WireEvent`] (JSON, with a UUID `event_id`) to `<prefix>.media.events`,
//!   keyed by call id so one call's events stay in order on one partition
//!   ([`events_out`]). The control process reads that topic in the consumer
//!   group `<prefix>.control` and applies each event exactly as the
//!   in-process sink does, then stores the offset ([`events_in`]). Several
//!   control processes share the partitions.
//! - Commands: the control API's hangup becomes a [`CallCommand`] on
//!   `<prefix>.media.commands`; every media process reads all of it from the
//!   end it found at start and hangs up the calls it runs ([`commands`]).
//!
//! Delivery is at least once both ways. Events: the media process's
//! producer is idempotent and retries without a deadline while Kafka is down
//! (events wait in its memory, up to `queue.buffering.max.messages`, and
//! what is still queued at shutdown is flushed for up to 10 s); the control
//! side commits an offset only after its event is in the store, so a
//! control crash replays events, which is harmless: call creation and state
//! changes are idempotent and a transcript segment's id is its event's id.
//! Commands are for running calls only: a media process that starts later
//! does not see earlier ones.
//!
//! [`CallEvent`]: voxbridge_contract::events::CallEvent
//! [`WireEvent`]: voxbridge_contract::event_wire::WireEvent
//! [`CallCommand`]: voxbridge_contract::event_wire::CallCommand

pub mod commands;
pub mod events_in;
pub mod events_out;
pub mod media_side;

use crate::error::{ControlError, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Where the link's topics are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// `host:port[,host:port]`.
    pub brokers: String,
    /// Topic prefix (`voxbridge`).
    pub topic_prefix: String,
    /// Partitions of the topics created at start.
    pub partitions: i32,
}

impl LinkConfig {
    /// Media → control call events.
    pub fn events_topic(&self) -> String {
        format!("{}.media.events", self.topic_prefix)
    }

    /// Control → media commands.
    pub fn commands_topic(&self) -> String {
        format!("{}.media.commands", self.topic_prefix)
    }

    /// The control processes' consumer group.
    pub fn control_group(&self) -> String {
        format!("{}.control", self.topic_prefix)
    }

    /// Creates both topics if missing.
    pub async fn ensure_topics(&self) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .map_err(kafka)?;
        let names = [self.events_topic(), self.commands_topic()];
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|n| NewTopic::new(n, self.partitions, TopicReplication::Fixed(1)))
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

/// Counters of one process's side of the link.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Call events handed to the producer (media side).
    pub events_sent: AtomicU64,
    /// Call events Kafka failed to take or deliver (media side).
    pub events_failed: AtomicU64,
    /// Call events read (control side).
    pub events_received: AtomicU64,
    /// Messages on the events topic that did not decode (control side).
    pub events_malformed: AtomicU64,
    /// Commands sent (control side).
    pub commands_sent: AtomicU64,
    /// Commands read (media side).
    pub commands_received: AtomicU64,
    /// Commands carried out here: the call ran in this process (media side).
    pub commands_applied: AtomicU64,
    /// Messages on the commands topic that did not decode (media side).
    pub commands_malformed: AtomicU64,
}

impl LinkStats {
    /// Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP voxbridge_link_messages_total Messages between media and control processes over Kafka, by kind and result.\n\
             # TYPE voxbridge_link_messages_total counter\n",
        );
        for (kind, result, v) in [
            ("event", "sent", &self.events_sent),
            ("event", "failed", &self.events_failed),
            ("event", "received", &self.events_received),
            ("event", "malformed", &self.events_malformed),
            ("command", "sent", &self.commands_sent),
            ("command", "received", &self.commands_received),
            ("command", "applied", &self.commands_applied),
            ("command", "malformed", &self.commands_malformed),
        ] {
            out.push_str(&format!(
                "voxbridge_link_messages_total{{kind=\"{kind}\",result=\"{result}\"}} {}\n",
                v.load(Relaxed)
            ));
        }
        out
    }
}

/// A consumer (no group membership: its group id, `<group_prefix>.<uuid>`,
/// is never joined) assigned every partition of `topics` at its current end
/// offset, so it sees every message sent after this returns. Blocks
/// (metadata and offset requests): run it off the async workers.
pub(crate) fn assign_from_end(
    brokers: &str,
    group_prefix: &str,
    topics: &[String],
) -> Result<rdkafka::consumer::StreamConsumer> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{group_prefix}.{}", crate::store::new_id()))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(kafka)?;
    let timeout = Duration::from_secs(5);
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let meta = consumer.fetch_metadata(Some(topic), timeout).map_err(kafka)?;
        let partitions: Vec<i32> = meta
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(kafka(format!("topic {topic} has no partitions (not created?)")));
        }
        for p in partitions {
            let (_, high) = consumer.fetch_watermarks(topic, p, timeout).map_err(kafka)?;
            tpl.add_partition_offset(topic, p, Offset::Offset(high))
                .map_err(kafka)?;
        }
    }
    consumer.assign(&tpl).map_err(kafka)?;
    Ok(consumer)
}

/// [`assign_from_end`], retried with backoff (200 ms doubling to 5 s) while
/// Kafka is unreachable or the topics are missing; `None` if `stop` turns
/// true first. `what` names the reader in logs.
pub(crate) async fn assign_from_end_retrying(
    brokers: &str,
    group_prefix: &str,
    topics: &[String],
    what: &str,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<rdkafka::consumer::StreamConsumer> {
    let mut backoff = Duration::from_millis(200);
    loop {
        let (b, g, t) = (brokers.to_owned(), group_prefix.to_owned(), topics.to_vec());
        match tokio::task::spawn_blocking(move || assign_from_end(&b, &g, &t)).await {
            Ok(Ok(c)) => return Some(c),
            Ok(Err(e)) => tracing::warn!(error = %e, ?backoff, "{what} not ready; retrying"),
            Err(e) => tracing::warn!(error = %e, "{what} setup panicked; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn kafka(e: impl std::fmt::Display) -> ControlError {
    ControlError::Kafka(e.to_string())
}

/// The producer settings both sides use: idempotent, `acks=all`, no delivery
/// deadline (a message waits in memory until Kafka takes it).
fn producer_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0")
        .set("queue.buffering.max.messages", "1000000")
        .set("linger.ms", "2");
    c
}
