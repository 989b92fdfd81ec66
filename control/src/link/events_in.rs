//! The control process's side of the event link: reads `<prefix>.media.events`
//! in the consumer group `<prefix>.control`, applies each event as the
//! in-process sink would ([`crate::sink::apply_retrying`]: it waits out a
//! store outage instead of skipping), and only then stores the message's
//! offset for the next commit. Messages are handled one at a time, so a
//! call's events (one partition) apply in the order the media process sent
//! them. A message that does not decode is logged, counted and skipped.

use super::{kafka, LinkConfig, LinkStats};
use crate::error::Result;
use crate::sink::{apply_retrying, SinkStats};
use crate::store::Store;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::watch;
use voxbridge_contract::event_wire::WireEvent;

/// What the consumer needs.
pub struct EventsIn {
    /// The store events go to.
    pub store: Store,
    /// Default customer and pre-call check.
    pub ctx: crate::sink::SinkCtx,
    /// Outcome counters (shared with the in-process sink's).
    pub sink_stats: Arc<SinkStats>,
    /// Link counters.
    pub link_stats: Arc<LinkStats>,
}

/// Joins the group and subscribes. A new group starts at the earliest
/// retained event, so events sent before the first control process started
/// are not lost.
pub fn subscribe(config: &LinkConfig) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", config.control_group())
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .map_err(kafka)?;
    consumer.subscribe(&[&config.events_topic()]).map_err(kafka)?;
    Ok(consumer)
}

/// Consumes until `stop` turns true, then commits what it applied.
pub async fn run(consumer: StreamConsumer, ctx: EventsIn, mut stop: watch::Receiver<bool>) {
    loop {
        let msg = tokio::select! {
            m = consumer.recv() => m,
            _ = stop.wait_for(|s| *s) => break,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                // librdkafka reconnects by itself; errors here are reports.
                tracing::warn!(error = %e, "link: event consumer");
                continue;
            }
        };
        ctx.link_stats.events_received.fetch_add(1, Relaxed);
        match WireEvent::decode(msg.payload().unwrap_or_default()) {
            Ok(w) => apply_retrying(&ctx.store, &ctx.ctx, &w.event, Some(&w.event_id), &ctx.sink_stats).await,
            Err(e) => {
                ctx.link_stats.events_malformed.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, partition = msg.partition(), offset = msg.offset(), "link: undecodable call event skipped");
            }
        }
        if let Err(e) = consumer.store_offset_from_message(&msg) {
            tracing::warn!(error = %e, "link: could not store the event offset");
        }
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing new since the last automatic commit.
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            tracing::warn!(error = %e, "link: final offset commit failed (events since the last commit will be replayed)")
        }
    }
}
