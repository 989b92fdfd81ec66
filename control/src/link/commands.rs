//! Commands from a control process to media processes over
//! `<prefix>.media.commands`: [`KafkaCommands`] is the control API's
//! [`CallCommands`] in split mode; [`listen`] runs in each media process and
//! hands every command to the local [`CallCommands`] (the media server's).
//!
//! Every media process reads every command (no consumer group: it assigns
//! itself all partitions from the end offsets it found at start), because
//! only the one running the call can act on it.

use super::{assign_from_end_retrying, kafka, producer_config, LinkConfig, LinkStats};
use crate::error::Result;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::Message;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::watch;
use voxbridge_contract::commands::CallCommands;
use voxbridge_contract::event_wire::CallCommand;

/// Sends commands to the media processes.
pub struct KafkaCommands {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    stats: Arc<LinkStats>,
}

impl KafkaCommands {
    /// Builds the producer; Kafka need not be up yet.
    pub fn new(config: &LinkConfig, stats: Arc<LinkStats>) -> Result<Self> {
        let producer = producer_config(&config.brokers).create().map_err(kafka)?;
        Ok(KafkaCommands {
            producer,
            topic: config.commands_topic(),
            stats,
        })
    }
}

impl CallCommands for KafkaCommands {
    /// `true` once the command is queued for Kafka: whether a media process
    /// runs the call is not known here. The call then stays `terminating`
    /// until its media process reports the hangup.
    fn hangup(&self, call_id: &str) -> bool {
        let payload = CallCommand::Hangup {
            call_id: call_id.to_owned(),
        }
        .encode();
        let record = BaseRecord::to(&self.topic).key(call_id).payload(&payload);
        match self.producer.send(record) {
            Ok(()) => {
                self.stats.commands_sent.fetch_add(1, Relaxed);
                true
            }
            Err((e, _)) => {
                tracing::error!(error = %e, call_id, "link: hangup command not queued");
                false
            }
        }
    }
}

/// Media side: connects (retrying with backoff while Kafka is unreachable),
/// sets `ready` once it reads from the end offsets, and then carries out
/// commands until `stop` turns true.
pub async fn listen(
    config: LinkConfig,
    commands: Arc<dyn CallCommands>,
    stats: Arc<LinkStats>,
    ready: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let group = format!("{}.media", config.topic_prefix);
    let topics = [config.commands_topic()];
    let what = "link: command listener";
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
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "link: command consumer");
                continue;
            }
        };
        stats.commands_received.fetch_add(1, Relaxed);
        match CallCommand::decode(msg.payload().unwrap_or_default()) {
            Ok(CallCommand::Hangup { call_id }) => {
                if commands.hangup(&call_id) {
                    stats.commands_applied.fetch_add(1, Relaxed);
                    tracing::info!(call_id, "link: hangup command carried out");
                }
            }
            Ok(other) => tracing::warn!(call_id = other.call_id(), "link: command not known here"),
            Err(e) => {
                stats.commands_malformed.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "link: undecodable command skipped");
            }
        }
    }
}
