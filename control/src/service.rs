//! The control sidecar as one running thing: opens the store, makes sure the
//! default customer exists, starts the event sink worker and the outbox
//! relay (to Kafka or the in-process bus), builds the API router, and on
//! shutdown lets the sink drain and the relay publish what is pending.

use crate::api::{self, auth::Auth, AppState};
use crate::billing_worker::{self, BillingStats};
use crate::campaign::scheduler::{self, SchedulerStats};
use crate::config::{ControlConfig, EventsTo};
use crate::error::Result;
use crate::originate::{Dialer, Originator};
use crate::relay::{self, bus::Bus, Publisher, RelayStats};
use crate::sink::{CallGate, ControlSink, SinkCtx};
use crate::store::Store;
use crate::webhooks::ssrf::Allow;
use crate::webhooks::worker::WebhookStats;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use voxbridge_contract::commands::CallCommands;

/// A running control sidecar.
pub struct Control {
    /// The store.
    pub store: Store,
    /// Where recordings are read from.
    recordings_dir: Arc<std::path::PathBuf>,
    /// The recording retention sweep, when `retention_days` is set.
    retention: Option<JoinHandle<()>>,
    /// The in-process bus (also when events go to Kafka: nothing publishes
    /// to it then).
    pub bus: Bus,
    /// Relay counters.
    pub relay_stats: Arc<RelayStats>,
    live: Arc<crate::api::ws::LiveStats>,
    billing: Arc<BillingStats>,
    sink_ctx: SinkCtx,
    webhooks: Arc<WebhookStats>,
    webhook_allow: Arc<Allow>,
    webhook_task: Option<JoinHandle<()>>,
    sink: ControlSink,
    sink_worker: JoinHandle<()>,
    relay: JoinHandle<()>,
    stop_sink: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    auth: Auth,
    /// Tasks that end with the sink (the Kafka event link).
    inbound: Vec<JoinHandle<()>>,
    billing_task: JoinHandle<()>,
    /// With Kafka: the bus feed and the billing consumer group.
    feeds: Vec<JoinHandle<()>>,
    events_ready: watch::Receiver<bool>,
    link_metrics: Option<Render>,
    dialer: Option<Arc<Dialer>>,
    scheduler: Option<JoinHandle<()>>,
    scheduler_stats: Arc<SchedulerStats>,
    heartbeat_ms: u64,
    heartbeat: Option<JoinHandle<()>>,
    stop_rx: watch::Receiver<bool>,
}

type Render = Arc<dyn Fn() -> String + Send + Sync>;

impl Control {
    /// Starts everything but the API listener, with the originator the
    /// config names.
    pub async fn start(cfg: &ControlConfig) -> Result<Self> {
        Self::start_with(cfg, cfg.originate.build()?).await
    }

    /// As [`Control::start`], placing outbound calls through `originator`
    /// (`None`: outbound calls are refused).
    pub async fn start_with(cfg: &ControlConfig, originator: Option<Arc<dyn Originator>>) -> Result<Self> {
        let auth = Auth::new(&cfg.auth_config()?)?;
        let store = Store::connect(&cfg.store_url())
            .await?
            .with_node(&cfg.node_id)
            .with_cache(crate::cache::Cache::new(&cfg.cache)?);
        store
            .ensure_customer(&cfg.default_customer, "Default customer")
            .await?;
        let bus = Bus::default();
        let publisher: Arc<dyn Publisher> = match cfg.events {
            EventsTo::Bus => Arc::new(bus.clone()),
            // The bus is fed back from Kafka (relay/kafka_feed.rs).
            EventsTo::Kafka => kafka_publisher(cfg).await?,
        };
        // Subscribed before anything can publish (billing_worker docs); with
        // Kafka, the billing consumer group takes call_hungup instead.
        let billing_events = (cfg.events == EventsTo::Bus).then(|| bus.subscribe());
        let (stop_sink, stop_sink_rx) = watch::channel(false);
        let sink_ctx = SinkCtx {
            default_customer: cfg.default_customer.clone(),
            gate: Arc::new(CallGate::new(cfg.billing.refuse_without_balance)),
        };
        let (sink, sink_worker) = ControlSink::spawn(store.clone(), sink_ctx.clone(), stop_sink_rx);
        let relay_stats = Arc::new(RelayStats::default());
        let (stop, stop_rx) = watch::channel(false);
        let relay = tokio::spawn(relay::run(
            store.clone(),
            publisher,
            relay_stats.clone(),
            stop_rx.clone(),
        ));
        let billing = Arc::new(BillingStats::default());
        let billing_task = tokio::spawn(billing_worker::run(
            store.clone(),
            billing_events,
            billing.clone(),
            stop_rx.clone(),
        ));
        let (events_ready_tx, events_ready) = watch::channel(cfg.events == EventsTo::Bus);
        let mut feeds = match cfg.events {
            EventsTo::Bus => Vec::new(),
            EventsTo::Kafka => kafka_feeds(cfg, &bus, &store, &billing, events_ready_tx, &stop_rx),
        };
        // Other control nodes' writes reach this one as events (Kafka feeds
        // the bus); an in-process cache follows them (crate::cache).
        if cfg.events == EventsTo::Kafka && cfg.cache.kind == crate::cache::CacheKind::Memory {
            feeds.push(tokio::spawn(follow_events(
                store.cache().clone(),
                bus.subscribe(),
                stop_rx.clone(),
            )));
        }
        let webhooks = Arc::new(WebhookStats::default());
        let webhook_allow = Arc::new(Allow(cfg.webhooks.allow.clone()));
        let webhook_task = cfg.webhooks.enabled.then(|| {
            tokio::spawn(crate::webhooks::worker::run(
                store.clone(),
                Allow(cfg.webhooks.allow.clone()),
                cfg.webhooks.backoff(),
                webhooks.clone(),
                stop_rx.clone(),
            ))
        });
        let dialer = originator.map(|o| Arc::new(Dialer::new(store.clone(), o, &cfg.originate)));
        let scheduler_stats = Arc::new(SchedulerStats::default());
        let scheduler = dialer.as_ref().map(|d| {
            tokio::spawn(scheduler::run(
                store.clone(),
                d.clone(),
                cfg.campaigns.clone(),
                scheduler_stats.clone(),
                stop_rx.clone(),
            ))
        });
        let retention = (cfg.recordings.retention_days > 0).then(|| {
            tokio::spawn(crate::retention::run(
                store.clone(),
                cfg.recordings.dir.clone(),
                cfg.recordings.retention_days,
                stop_rx.clone(),
            ))
        });
        Ok(Control {
            recordings_dir: Arc::new(cfg.recordings.dir.clone()),
            retention,
            store,
            bus,
            relay_stats,
            live: Arc::default(),
            billing,
            sink_ctx,
            webhooks,
            webhook_allow,
            webhook_task,
            sink,
            sink_worker,
            relay,
            stop_sink,
            stop,
            auth,
            inbound: Vec::new(),
            billing_task,
            feeds,
            events_ready,
            link_metrics: None,
            dialer,
            scheduler,
            scheduler_stats,
            heartbeat_ms: cfg.heartbeat_ms.max(100),
            heartbeat: None,
            stop_rx,
        })
    }

    /// The outbound call dialer, if an originator is configured.
    pub fn dialer(&self) -> Option<Arc<Dialer>> {
        self.dialer.clone()
    }

    /// Tells the dialer where each route's AudioSocket listener is (the
    /// media plane of this process).
    pub fn set_media_routes(&self, routes: &[(String, std::net::SocketAddr)]) {
        if let Some(d) = &self.dialer {
            for (route, addr) in routes {
                d.set_route_addr(route, *addr);
            }
        }
    }

    /// Ends the calls this node was running when it last stopped (its
    /// media plane is new, so they are gone) at the previous run's last
    /// heartbeat, then starts this run's heartbeat; call before media
    /// starts. Returns how many calls it ended.
    pub async fn end_orphaned_calls(&mut self) -> Result<usize> {
        let n = self.store.end_orphaned_calls().await?;
        if n > 0 {
            tracing::warn!(
                calls = n,
                node = self.store.node(),
                "ended calls left over from the previous run at its last heartbeat"
            );
        }
        if self.heartbeat.is_none() {
            self.heartbeat = Some(tokio::spawn(heartbeat(
                self.store.clone(),
                std::time::Duration::from_millis(self.heartbeat_ms),
                self.stop_rx.clone(),
            )));
        }
        Ok(n)
    }

    /// Split mode (`--role control`): takes call events from media processes
    /// over Kafka (see [`crate::link`]) instead of from [`Control::sink`],
    /// and returns the command handle the API gives hangups to.
    #[cfg(feature = "kafka")]
    pub async fn link_media_over_kafka(&mut self, cfg: &ControlConfig) -> Result<Arc<dyn CallCommands>> {
        use crate::link::{commands::KafkaCommands, events_in, LinkStats};
        let link = cfg.link_config();
        if let Err(e) = link.ensure_topics().await {
            tracing::warn!(error = %e, "link: could not ensure topics (Kafka down?); the consumer will wait");
        }
        let stats = Arc::new(LinkStats::default());
        let consumer = events_in::subscribe(&link)?;
        let ctx = events_in::EventsIn {
            store: self.store.clone(),
            ctx: self.sink_ctx.clone(),
            sink_stats: self.sink.stats(),
            link_stats: stats.clone(),
        };
        self.inbound.push(tokio::spawn(events_in::run(
            consumer,
            ctx,
            self.stop_sink.subscribe(),
        )));
        let render = stats.clone();
        self.link_metrics = Some(Arc::new(move || render.render()));
        Ok(Arc::new(KafkaCommands::new(&link, stats)?))
    }

    /// Resolves once this process's bus sees every event published from now
    /// on (at once on the in-process bus; with Kafka, once the feed reads
    /// the topics' ends).
    pub async fn events_ready(&self) {
        let mut r = self.events_ready.clone();
        let _ = r.wait_for(|ok| *ok).await;
    }

    /// The sidecar's counters, for `/metrics`.
    pub fn metrics(&self) -> ControlMetrics {
        ControlMetrics {
            sink: self.sink.stats(),
            relay: self.relay_stats.clone(),
            link: self.link_metrics.clone(),
            live: self.live.clone(),
            billing: self.billing.clone(),
            webhooks: self.webhooks.clone(),
            gate: self.sink_ctx.gate.clone(),
            dialer: self.dialer.clone(),
            scheduler: self.scheduler_stats.clone(),
            store: self.store.clone(),
        }
    }

    /// The sink the media server reports to.
    pub fn sink(&self) -> ControlSink {
        self.sink.clone()
    }

    /// The `/v1` API, giving hangups to `commands`.
    pub fn router(&self, commands: Arc<dyn CallCommands>) -> axum::Router {
        self.sink_ctx.gate.set_commands(commands.clone());
        if let Some(d) = &self.dialer {
            d.attach_media(commands.clone());
        }
        api::router(AppState {
            events: crate::sink::Pipeline {
                ctx: self.sink_ctx.clone(),
                stats: self.sink.stats(),
            },
            store: self.store.clone(),
            commands,
            auth: self.auth.clone(),
            bus: self.bus.clone(),
            live: self.live.clone(),
            webhook_allow: self.webhook_allow.clone(),
            dialer: self.dialer.clone(),
            recordings_dir: self.recordings_dir.clone(),
        })
    }

    /// Call after the media server stopped: stores the call events still
    /// queued, then lets the relay make its last pass.
    pub async fn shutdown(self) {
        let Control {
            sink_worker,
            relay,
            stop_sink,
            stop,
            inbound,
            billing_task,
            webhook_task,
            feeds,
            scheduler,
            heartbeat,
            retention,
            ..
        } = self;
        stop_sink.send_replace(true);
        let _ = sink_worker.await;
        for t in inbound {
            let _ = t.await;
        }
        stop.send_replace(true);
        let _ = relay.await;
        let _ = billing_task.await;
        for f in feeds {
            let _ = f.await;
        }
        if let Some(t) = webhook_task {
            let _ = t.await;
        }
        if let Some(t) = scheduler {
            let _ = t.await;
        }
        if let Some(t) = heartbeat {
            let _ = t.await;
        }
        if let Some(t) = retention {
            let _ = t.await;
        }
    }
}

/// Invalidates `cache` by the events on the bus until `stop`.
async fn follow_events(
    cache: crate::cache::Cache,
    mut events: tokio::sync::broadcast::Receiver<Arc<voxbridge_proto::envelope::EventEnvelope>>,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            got = events.recv() => match got {
                Ok(e) => cache.forget_for_event(&e),
                Err(RecvError::Lagged(_)) => cache.forget_all(),
                Err(RecvError::Closed) => return,
            },
            _ = stop.changed() => return,
        }
    }
}

/// Records every `every` that this node is alive, until `stop`. A store
/// error is logged and the next beat tries again.
async fn heartbeat(store: Store, every: std::time::Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = store.heartbeat().await {
            tracing::warn!(error = %e, "node heartbeat not stored");
        }
    }
}

/// The sidecar's counters (cheap to clone).
#[derive(Clone)]
pub struct ControlMetrics {
    sink: Arc<crate::sink::SinkStats>,
    relay: Arc<RelayStats>,
    link: Option<Render>,
    live: Arc<crate::api::ws::LiveStats>,
    billing: Arc<BillingStats>,
    webhooks: Arc<WebhookStats>,
    gate: Arc<CallGate>,
    dialer: Option<Arc<Dialer>>,
    scheduler: Arc<SchedulerStats>,
    store: Store,
}

impl ControlMetrics {
    /// Prometheus text format.
    pub fn render(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.sink;
        let r = &self.relay;
        let mut link = self.link.as_ref().map(|l| l()).unwrap_or_default();
        link.push_str(&self.live.render());
        link.push_str(&self.billing.render());
        link.push_str(&self.webhooks.render());
        link.push_str(&self.store.cache().render());
        link.push_str(&format!(
            "# HELP voxbridge_control_store_statements_total Statements sent to PostgreSQL (0 on the embedded store).\n\
             # TYPE voxbridge_control_store_statements_total counter\n\
             voxbridge_control_store_statements_total {}\n",
            self.store.statements()
        ));
        if let Some(d) = &self.dialer {
            link.push_str(&d.stats.render());
            link.push_str(&self.scheduler.render());
        }
        link.push_str(&format!(
            "# HELP voxbridge_control_calls_refused_total Calls hung up by the pre-call check.\n\
             # TYPE voxbridge_control_calls_refused_total counter\n\
             voxbridge_control_calls_refused_total{{reason=\"no_balance\"}} {}\n\
             voxbridge_control_calls_refused_total{{reason=\"customer_inactive\"}} {}\n",
            self.gate.refused.load(Relaxed),
            self.gate.refused_inactive.load(Relaxed)
        ));
        format!(
            "# HELP voxbridge_control_call_events_total Media call events taken by the control sidecar, by result.\n\
             # TYPE voxbridge_control_call_events_total counter\n\
             voxbridge_control_call_events_total{{result=\"applied\"}} {}\n\
             voxbridge_control_call_events_total{{result=\"ignored\"}} {}\n\
             voxbridge_control_call_events_total{{result=\"refused\"}} {}\n\
             voxbridge_control_call_events_total{{result=\"parked\"}} {}\n\
             # HELP voxbridge_control_call_events_queued Media call events waiting to be stored.\n\
             # TYPE voxbridge_control_call_events_queued gauge\n\
             voxbridge_control_call_events_queued {}\n\
             # HELP voxbridge_control_store_retries_total Store errors retried by the event worker.\n\
             # TYPE voxbridge_control_store_retries_total counter\n\
             voxbridge_control_store_retries_total {}\n\
             # HELP voxbridge_outbox_published_total Outbox events published and marked sent.\n\
             # TYPE voxbridge_outbox_published_total counter\n\
             voxbridge_outbox_published_total {}\n\
             # HELP voxbridge_outbox_publish_failures_total Failed outbox publish or mark attempts.\n\
             # TYPE voxbridge_outbox_publish_failures_total counter\n\
             voxbridge_outbox_publish_failures_total {}\n{link}",
            s.applied.load(Relaxed),
            s.ignored.load(Relaxed),
            s.refused.load(Relaxed),
            s.parked.load(Relaxed),
            s.queued.load(Relaxed),
            s.retries.load(Relaxed),
            r.published.load(Relaxed),
            r.failures.load(Relaxed),
        )
    }
}

#[cfg(feature = "kafka")]
fn kafka_config(cfg: &ControlConfig) -> crate::relay::kafka::KafkaConfig {
    crate::relay::kafka::KafkaConfig {
        brokers: cfg.kafka.brokers.clone(),
        topic_prefix: cfg.kafka.topic_prefix.clone(),
        message_timeout_ms: cfg.kafka.message_timeout_ms,
        partitions: cfg.kafka.partitions,
        record_headers: cfg.kafka.record_headers,
        ..crate::relay::kafka::KafkaConfig::default()
    }
}

/// The bus feed and the billing consumer group (relay/kafka_feed.rs).
#[cfg(feature = "kafka")]
fn kafka_feeds(
    cfg: &ControlConfig,
    bus: &Bus,
    store: &Store,
    billing: &Arc<BillingStats>,
    ready: watch::Sender<bool>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    use crate::relay::kafka_feed::{billing_group, bus_feed};
    vec![
        tokio::spawn(bus_feed(kafka_config(cfg), bus.clone(), ready, stop.clone())),
        tokio::spawn(billing_group(
            kafka_config(cfg),
            store.clone(),
            billing.clone(),
            stop.clone(),
        )),
    ]
}

#[cfg(not(feature = "kafka"))]
fn kafka_feeds(
    _: &ControlConfig,
    _: &Bus,
    _: &Store,
    _: &Arc<BillingStats>,
    _: watch::Sender<bool>,
    _: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    Vec::new()
}

#[cfg(feature = "kafka")]
async fn kafka_publisher(cfg: &ControlConfig) -> Result<Arc<dyn Publisher>> {
    use crate::relay::kafka::KafkaPublisher;
    let p = KafkaPublisher::new(kafka_config(cfg))?;
    // Topics are not auto-created everywhere; a broker that is down now is
    // not fatal (the relay retries), so only log.
    if let Err(e) = p.ensure_topics().await {
        tracing::warn!(error = %e, "kafka: could not ensure topics; the relay will retry publishing");
    }
    Ok(Arc::new(p))
}

#[cfg(not(feature = "kafka"))]
async fn kafka_publisher(_cfg: &ControlConfig) -> Result<Arc<dyn Publisher>> {
    Err(crate::ControlError::Config(
        "events = \"kafka\" needs voxbridge built with the kafka feature".into(),
    ))
}
