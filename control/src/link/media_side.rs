//! Everything a media process (`voxbridge serve --role media`) runs of the
//! link: the Kafka event sink it hands its media server, and the command
//! listener that carries out control's hangups.

use super::commands::listen;
use super::events_out::KafkaEventSink;
use super::{LinkConfig, LinkStats};
use crate::error::Result;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use voxbridge_contract::commands::CallCommands;

/// How long queued events may take to reach Kafka at shutdown.
const FLUSH: Duration = Duration::from_secs(10);

/// The media process's end of the link.
pub struct MediaSide {
    /// The sink to give the media server.
    pub sink: Arc<KafkaEventSink>,
    /// Counters, for `/metrics`.
    pub stats: Arc<LinkStats>,
    config: LinkConfig,
    stop: watch::Sender<bool>,
    ready: watch::Receiver<bool>,
    listener: Option<JoinHandle<()>>,
}

impl MediaSide {
    /// Builds the sink; Kafka need not be up yet.
    pub fn new(config: LinkConfig) -> Result<Self> {
        let stats = Arc::new(LinkStats::default());
        let sink = Arc::new(KafkaEventSink::new(&config, stats.clone())?);
        let (stop, _) = watch::channel(false);
        let (_, ready) = watch::channel(false);
        Ok(MediaSide {
            sink,
            stats,
            config,
            stop,
            ready,
            listener: None,
        })
    }

    /// Makes sure the topics exist and starts carrying out commands with
    /// `commands` (the media server's).
    pub async fn listen(&mut self, commands: Arc<dyn CallCommands>) {
        if let Err(e) = self.config.ensure_topics().await {
            tracing::warn!(error = %e, "link: could not ensure topics (Kafka down?); events wait in memory");
        }
        let (ready_tx, ready) = watch::channel(false);
        self.ready = ready;
        self.listener = Some(tokio::spawn(listen(
            self.config.clone(),
            commands,
            self.stats.clone(),
            ready_tx,
            self.stop.subscribe(),
        )));
    }

    /// Resolves once commands sent from now on will be seen.
    pub async fn ready(&self) {
        let mut r = self.ready.clone();
        let _ = r.wait_for(|ok| *ok).await;
    }

    /// Stops the listener and waits (up to 10 s) for queued events to
    /// reach Kafka; call after the media server stopped.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        if let Some(t) = self.listener {
            let _ = t.await;
        }
        let sink = self.sink.clone();
        let left = tokio::task::spawn_blocking(move || sink.flush(FLUSH))
            .await
            .unwrap_or(-1);
        if left != 0 {
            tracing::error!(left, "link: call events not delivered at shutdown");
        }
    }
}
