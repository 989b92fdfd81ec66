//! `voxbridge serve`: the daemon. Loads the config (file, embedded defaults,
//! env overrides), runs the media server and its HTTP side (`/metrics`, the
//! RTP session API in [`crate::http`]), the control sidecar (store, outbox
//! relay, `/v1` REST API) unless `[control] enabled = false`, and shuts down
//! gracefully on SIGINT/SIGTERM. With `--role media` / `--role control` the
//! two run as separate processes linked by Kafka ([`voxbridge_control::link`]).

use crate::listener::HttpLimits;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use voxbridge_control::config::ControlConfig;
use voxbridge_control::link::media_side::MediaSide;
use voxbridge_control::service::Control;
use voxbridge_media::events::{EventSink, FanOut, LogSink};
use voxbridge_media::{CallCommands, Config, MediaServer};

/// `voxbridge serve` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// TOML config file; without one the embedded defaults apply (see README).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub check: bool,
    /// What this process runs (env `VOXBRIDGE_ROLE`): `all`, or `media` and
    /// `control` as separate processes linked by Kafka.
    #[arg(long, value_enum)]
    pub role: Option<Role>,
}

/// Reads the file (if any) and applies the environment: the media plane's
/// config and the `[control]` section.
pub fn load_config(path: Option<&PathBuf>) -> anyhow::Result<(Config, ControlConfig)> {
    let (mut config, mut control) = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
            split_config(&text).with_context(|| format!("config {}", p.display()))?
        }
        None => (Config::default(), ControlConfig::default()),
    };
    config.apply_env(|k| std::env::var(k).ok())?;
    config.validate()?;
    config.load_messages()?;
    control.apply_env(|k| std::env::var(k).ok())?;
    // `[recording]` is one section for both: the media plane writes the
    // files, control serves and expires them.
    control.recordings = voxbridge_control::config::RecordingFiles {
        dir: config.recording.dir.clone(),
        retention_days: config.recording.retention_days,
    };
    Ok((config, control))
}

/// One file, two owners: `[control]` goes to the control sidecar, the rest
/// to the media plane (each refuses keys it does not know).
fn split_config(text: &str) -> anyhow::Result<(Config, ControlConfig)> {
    let mut table: toml::Table = toml::from_str(text)?;
    let control = match table.remove("control") {
        Some(v) => v.try_into::<ControlConfig>().context("[control]")?,
        None => ControlConfig::default(),
    };
    let media = Config::from_toml(&toml::to_string(&table)?)?;
    Ok((media, control))
}

/// Runs the daemon until a signal.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (config, control) = load_config(args.config.as_ref())?;
    let role = match (args.role, std::env::var("VOXBRIDGE_ROLE")) {
        (Some(r), _) => r,
        (None, Ok(v)) => Role::parse_env(&v)?,
        (None, Err(_)) => Role::All,
    };
    check_role(role, &control)?;
    if args.check {
        println!("role: {}\n{config:#?}\n{control:#?}", role.name());
        return Ok(());
    }
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    // One worker: a current-thread runtime has no work-stealing overhead.
    let rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?
    };
    let grace = Duration::from_millis(config.limits.shutdown_grace_ms);
    let result = rt.block_on(serve(config, control, role));
    // Whatever is still running (a store call that never answers) is
    // abandoned: the process ends now.
    rt.shutdown_timeout(grace.min(Duration::from_secs(1)));
    result
}

/// Settings a role cannot carry out, refused before anything starts.
fn check_role(role: Role, control: &ControlConfig) -> anyhow::Result<()> {
    use voxbridge_control::originate::{ari::AriMediaKind, OriginatorKind};
    let o = &control.originate;
    if role == Role::Control && o.kind == OriginatorKind::Ari && o.ari.media == AriMediaKind::Websocket {
        anyhow::bail!(
            "[control.originate.ari] media = \"websocket\" connects each call's media from this process, \
             so it needs the media plane here (role all); with --role control use media = \"audiosocket\""
        );
    }
    Ok(())
}

/// What one `voxbridge serve` process runs.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Media plane and control sidecar in one process (events and commands
    /// are function calls); `[control] enabled = false` leaves control out.
    All,
    /// The media plane only: call events go to Kafka, hangup commands come
    /// from Kafka (`[control.kafka] brokers`).
    Media,
    /// The control sidecar only: call events come from media processes over
    /// Kafka, API hangups go to them over Kafka.
    Control,
}

impl Role {
    fn parse_env(v: &str) -> anyhow::Result<Self> {
        <Role as clap::ValueEnum>::from_str(v, true)
            .map_err(|_| anyhow::anyhow!("VOXBRIDGE_ROLE={v:?}: use all, media or control"))
    }

    fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Media => "media",
            Role::Control => "control",
        }
    }
}

async fn serve(config: Config, control_cfg: ControlConfig, role: Role) -> anyhow::Result<()> {
    if role == Role::Control {
        return serve_control(config, control_cfg).await;
    }
    let metrics_addr = config.metrics_listen;
    let limits = http_limits(&config);
    let grace = Duration::from_millis(config.limits.shutdown_grace_ms);
    let media_api = config.media_api.clone();
    let control = match control_cfg.enabled && role == Role::All {
        true => {
            let mut c = Control::start(&control_cfg).await.context("control sidecar")?;
            // This process's media plane is new: calls it ran before died with it.
            c.end_orphaned_calls()
                .await
                .context("end calls of the previous run")?;
            Some(c)
        }
        false => None,
    };
    let link = match role {
        Role::Media => Some(MediaSide::new(control_cfg.link_config()).context("media link")?),
        _ => None,
    };
    // The call log (a line per call start and end, a warning per bot
    // failure) is written whatever else takes the events.
    let log: Arc<dyn EventSink> = Arc::new(LogSink);
    let sink: Arc<dyn EventSink> = match (&control, &link) {
        (Some(c), _) => Arc::new(FanOut(vec![log, Arc::new(c.sink())])),
        (None, Some(l)) => Arc::new(FanOut(vec![log, l.sink.clone() as Arc<dyn EventSink>])),
        (None, None) => log,
    };
    let server = MediaServer::bind(config, sink).await?;
    if let Some(c) = &control {
        c.set_media_routes(&server.audiosocket_routes());
    }
    let mut control_addr = String::from("off");
    if let Some(c) = &control {
        control_addr = serve_api(c, control_cfg.listen, Arc::new(server.commands()), limits).await?;
    }
    let mut link = link;
    if let Some(l) = &mut link {
        l.listen(Arc::new(server.commands())).await;
    }
    let metrics = server.metrics();
    let shutdown = server.shutdown_handle();
    let addrs: Vec<String> = server.audiosocket_addrs().iter().map(|a| a.to_string()).collect();
    let mut http_addr = String::from("off");
    let extra: Option<crate::http::ExtraMetrics> = match (&control, &link) {
        (Some(c), _) => {
            let m = c.metrics();
            Some(Arc::new(move || m.render()))
        }
        (None, Some(l)) => {
            let stats = l.stats.clone();
            Some(Arc::new(move || stats.render()))
        }
        (None, None) => None,
    };
    let rtp = server.rtp_sessions();
    match media_api.listen {
        // The session API on a listener of its own; /metrics apart.
        Some(api_addr) => {
            let api =
                crate::http::sessions_router(metrics.clone(), rtp.clone(), extra.clone(), media_api.tokens);
            let bound = serve_http(api_addr, api, "media API", limits).await?;
            tracing::info!(addr = %bound, "media API listening");
            if let Some(addr) = metrics_addr {
                let app = crate::http::metrics_router(metrics.clone(), rtp, extra);
                http_addr = serve_http(addr, app, "HTTP server (metrics)", limits).await?;
            }
        }
        None => {
            if let Some(addr) = metrics_addr {
                let app = crate::http::router_with(metrics.clone(), rtp, extra, media_api.tokens);
                http_addr = serve_http(addr, app, "HTTP server (metrics, media API)", limits).await?;
            }
        }
    }
    announce(&addrs.join(","), &http_addr, &control_addr, role);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: stopping");
        shutdown.shutdown();
    });
    server.run().await;
    // The media plane is down; what is left (events to store, the relay's
    // last pass) gets one more grace period whatever the store does.
    let rest = async {
        if let Some(l) = link {
            l.stop().await;
        }
        if let Some(c) = control {
            c.shutdown().await;
        }
    };
    if tokio::time::timeout(grace, rest).await.is_err() {
        tracing::error!(
            grace_ms = grace.as_millis() as u64,
            "shutdown: the event pipeline did not finish within the grace period (store or Kafka down?); \
             events not yet stored are lost, events stored and not yet relayed go out at the next start"
        );
    }
    Ok(())
}

/// One line scripts can wait for and parse (ports may be 0 in the config).
fn announce(audiosocket: &str, metrics: &str, control: &str, role: Role) {
    println!(
        "voxbridge serve: audiosocket={audiosocket} metrics={metrics} control={control} pid={} role={}",
        std::process::id(),
        role.name()
    );
}

/// `--role control`: the sidecar without a media plane.
async fn serve_control(config: Config, control_cfg: ControlConfig) -> anyhow::Result<()> {
    let mut control = Control::start(&control_cfg).await.context("control sidecar")?;
    let commands = control
        .link_media_over_kafka(&control_cfg)
        .await
        .context("media link")?;
    let limits = http_limits(&config);
    let control_addr = serve_api(&control, control_cfg.listen, commands, limits).await?;
    let mut http_addr = String::from("off");
    if let Some(addr) = config.metrics_listen {
        let m = control.metrics();
        let app = crate::http::metrics_only(Arc::new(move || m.render()));
        http_addr = serve_http(addr, app, "metrics server", limits).await?;
    }
    announce("off", &http_addr, &control_addr, Role::Control);
    wait_for_signal().await;
    tracing::info!("signal received: stopping");
    let grace = Duration::from_millis(config.limits.shutdown_grace_ms);
    if tokio::time::timeout(grace, control.shutdown()).await.is_err() {
        tracing::error!("shutdown: the event pipeline did not finish within the grace period");
    }
    Ok(())
}

fn http_limits(config: &Config) -> HttpLimits {
    let l = &config.limits;
    HttpLimits {
        header_timeout: Duration::from_millis(l.http_header_timeout_ms),
        request_timeout: Duration::from_millis(l.http_request_timeout_ms),
        max_connections_per_ip: l.http_max_connections_per_ip,
    }
}

async fn serve_api(
    control: &Control,
    listen: SocketAddr,
    commands: Arc<dyn CallCommands>,
    limits: HttpLimits,
) -> anyhow::Result<String> {
    serve_http(listen, control.router(commands), "control API", limits).await
}

async fn serve_http(
    addr: SocketAddr,
    app: axum::Router,
    what: &'static str,
    limits: HttpLimits,
) -> anyhow::Result<String> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("{what} listen {addr}"))?;
    let local = listener.local_addr()?.to_string();
    tokio::spawn(crate::listener::serve(listener, app, limits));
    Ok(local)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_control_only_process_refuses_ari_websocket_media() {
        let mut control = ControlConfig::default();
        control.originate.kind = voxbridge_control::originate::OriginatorKind::Ari;
        control.originate.ari.media = voxbridge_control::originate::ari::AriMediaKind::Websocket;
        let e = check_role(Role::Control, &control).expect_err("refused");
        assert!(e.to_string().contains("role all"), "{e}");
        assert!(check_role(Role::All, &control).is_ok());
        control.originate.ari.media = voxbridge_control::originate::ari::AriMediaKind::Audiosocket;
        assert!(check_role(Role::Control, &control).is_ok());
    }
}
