//! The in-process event bus of the embedded default: the outbox relay
//! publishes here instead of Kafka, and in-process consumers subscribe.
//!
//! A `tokio::sync::broadcast` channel of 4,096 events: a subscriber that
//! falls further behind gets `Lagged` and must resynchronise from the store;
//! the relay never waits for subscribers (the outbox is the durable copy).

use super::Publisher;
use crate::error::Result;
use crate::store::OutboxRow;
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::broadcast;
use voxbridge_proto::envelope::EventEnvelope;

/// Events buffered per subscriber.
pub const CAPACITY: usize = 4096;

/// The bus (cheap to clone).
#[derive(Debug, Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<EventEnvelope>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Bus {
    /// Publishes one event (the Kafka feed).
    pub fn send(&self, event: EventEnvelope) {
        let _ = self.tx.send(Arc::new(event));
    }

    /// A new subscriber that sees events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventEnvelope>> {
        self.tx.subscribe()
    }
}

#[async_trait]
impl Publisher for Bus {
    async fn publish(&self, rows: &[OutboxRow]) -> Result<usize> {
        for r in rows {
            // No subscriber is fine: the event is in the outbox either way.
            let _ = self.tx.send(Arc::new(r.event.clone()));
        }
        Ok(rows.len())
    }
}
