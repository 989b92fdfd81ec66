//! `voxbridge serve`: the daemon. Loads the config (file, embedded defaults,
//! env overrides), runs the media server and its HTTP side (`/metrics`, the
//! RTP session API in [`crate::http`]), the control sidecar (store, outbox
//! relay, `/v1` REST API) unless `[control] enabled = false`, and shuts down
//! gracefully on SIGINT/SIGTERM.

use anyhow::Context as _;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use voxbridge_control::config::ControlConfig;
use voxbridge_control::service::Control;
use voxbridge_media::events::{EventSink, LogSink};
use voxbridge_media::{Config, MediaServer};

/// `voxbridge serve` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// TOML config file; without one the embedded defaults apply (see README).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub check: bool,
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
    control.apply_env(|k| std::env::var(k).ok())?;
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
    if args.check {
        println!("{config:#?}\n{control:#?}");
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
    rt.block_on(serve(config, control))
}

async fn serve(config: Config, control_cfg: ControlConfig) -> anyhow::Result<()> {
    let metrics_addr = config.metrics_listen;
    let control = match control_cfg.enabled {
        true => Some(Control::start(&control_cfg).await.context("control sidecar")?),
        false => None,
    };
    let sink: Arc<dyn EventSink> = match &control {
        Some(c) => Arc::new(c.sink()),
        None => Arc::new(LogSink),
    };
    let server = MediaServer::bind(config, sink).await?;
    let mut control_addr = String::from("off");
    if let Some(c) = &control {
        let listener = TcpListener::bind(control_cfg.listen)
            .await
            .with_context(|| format!("control API listen {}", control_cfg.listen))?;
        control_addr = listener.local_addr()?.to_string();
        let app = c.router(Arc::new(server.commands()));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "control API server failed");
            }
        });
    }
    let metrics = server.metrics();
    let shutdown = server.shutdown_handle();
    let addrs: Vec<String> = server.audiosocket_addrs().iter().map(|a| a.to_string()).collect();
    let mut http_addr = String::from("off");
    if let Some(addr) = metrics_addr {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("metrics listen {addr}"))?;
        http_addr = listener.local_addr()?.to_string();
        let extra = control.as_ref().map(|c| {
            let m = c.metrics();
            Arc::new(move || m.render()) as crate::http::ExtraMetrics
        });
        let app = crate::http::router_with(metrics.clone(), server.rtp_sessions(), extra);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "HTTP server (metrics, media API) failed");
            }
        });
    }
    // One line scripts can wait for and parse (ports may be 0 in the config).
    println!(
        "voxbridge serve: audiosocket={} metrics={} control={} pid={}",
        addrs.join(","),
        http_addr,
        control_addr,
        std::process::id()
    );
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: stopping");
        shutdown.shutdown();
    });
    server.run().await;
    if let Some(c) = control {
        c.shutdown().await;
    }
    Ok(())
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
