//! The media server: AudioSocket and chan_websocket listeners, their
//! handshakes, the call limit, the RTP session registry, and graceful
//! shutdown.
//!
//! Asterisk connects as the TCP client and must send its UUID frame first,
//! within `limits.uuid_timeout_ms`; anything else is logged, counted and
//! closed without becoming a call. Shutdown: [`ShutdownHandle::shutdown`]
//! stops accepting, calls go on for up to `limits.shutdown_grace_ms`, then
//! the rest are hung up with cause `shutdown` and [`MediaServer::run`] returns.

use super::audiosocket;
use super::call_task::CallContext;
use super::chanws;
use crate::commands::{CallRegistry, MediaCommands};
use crate::config::{Config, Route};
use crate::driver::net::shared_port::SharedPort;
use crate::driver::sessions::{RegistryParts, RtpSessions};
use crate::error::{ConfigError, MediaError};
use crate::events::{EventSink, HangupCause};
use crate::metrics::Metrics;
use bytes::BytesMut;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use voxbridge_proto::audiosocket::{AudioSocketCodec, Frame};

/// Asks a running server to stop (cheap to clone).
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    /// Stops accepting calls and starts the grace period.
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

/// A bound, not yet running, media server.
pub struct MediaServer {
    config: Config,
    listeners: Vec<(TcpListener, String)>,
    chanws_listeners: Vec<(TcpListener, String)>,
    sip_socket: Option<tokio::net::UdpSocket>,
    /// SIP over TCP and TLS (bound only with `sip_socket`).
    sip_streams: Vec<super::sip::stream::StreamListener>,
    /// TLS client setups of the gateways reached over TLS, by name.
    sip_tls_dials: HashMap<String, super::sip::stream::TlsDial>,
    metrics: Arc<Metrics>,
    stop: Arc<watch::Sender<bool>>,
    hangup_tx: watch::Sender<bool>,
    tracker: TaskTracker,
    rtp: RtpSessions,
    calls: CallRegistry,
    /// One call context per route, shared by every ingress.
    contexts: Arc<BTreeMap<String, CallContext>>,
    /// Calls to place on SIP gateways, for the SIP task (with SIP on).
    sip_dials: Option<(
        tokio::sync::mpsc::Sender<super::sip::dial::SipCommand>,
        tokio::sync::mpsc::Receiver<super::sip::dial::SipCommand>,
    )>,
}

impl MediaServer {
    /// Validates `config`, reads the files it names and binds every listener
    /// (port 0 picks a free port).
    pub async fn bind(mut config: Config, sink: Arc<dyn EventSink>) -> Result<Self, MediaError> {
        config.validate()?;
        config.load_messages()?;
        let mut listeners = Vec::new();
        for l in &config.audiosocket {
            let listener = TcpListener::bind(l.listen).await.map_err(|e| {
                MediaError::from(ConfigError(format!("audiosocket listen {}: {e}", l.listen)))
            })?;
            listeners.push((listener, l.route.clone()));
        }
        let mut chanws_listeners = Vec::new();
        for l in &config.chan_websocket {
            let listener = TcpListener::bind(l.listen).await.map_err(|e| {
                MediaError::from(ConfigError(format!("chan_websocket listen {}: {e}", l.listen)))
            })?;
            chanws_listeners.push((listener, l.route.clone()));
        }
        let sip_socket = match config.sip.listen {
            Some(addr) => Some(
                tokio::net::UdpSocket::bind(addr)
                    .await
                    .map_err(|e| MediaError::from(ConfigError(format!("sip listen {addr}: {e}"))))?,
            ),
            None => None,
        };
        let mut sip_streams = Vec::new();
        if let Some(addr) = config.sip.tcp_listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| MediaError::from(ConfigError(format!("sip tcp_listen {addr}: {e}"))))?;
            sip_streams.push(super::sip::stream::StreamListener { listener, tls: None });
        }
        if let (Some(addr), Some(cert), Some(key)) =
            (config.sip.tls_listen, &config.sip.tls_cert, &config.sip.tls_key)
        {
            let tls = super::sip::stream::tls_acceptor(cert, key)?;
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| MediaError::from(ConfigError(format!("sip tls_listen {addr}: {e}"))))?;
            sip_streams.push(super::sip::stream::StreamListener {
                listener,
                tls: Some(tls),
            });
        }
        let mut sip_tls_dials = HashMap::new();
        for (i, g) in config.sip.gateways.iter().enumerate().filter(|(_, g)| g.is_tls()) {
            let dial = super::sip::stream::tls_dial(
                g.tls_ca.as_deref(),
                g.tls_server_name(),
                &format!("sip.gateways[{i}]"),
            )?;
            sip_tls_dials.insert(g.name.clone(), dial);
        }
        let routes: BTreeMap<String, Arc<Route>> = config
            .routes
            .iter()
            .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
            .collect();
        let metrics = Arc::new(Metrics::default());
        let stop = Arc::new(watch::channel(false).0);
        let (hangup_tx, hangup_rx) = watch::channel(false);
        let tracker = TaskTracker::new();
        let calls = CallRegistry::default();
        let recording = Arc::new(config.recording.clone());
        let tenant_recognizers: Arc<BTreeMap<String, crate::config::Transcribe>> = Arc::new(
            config
                .tenants
                .iter()
                .filter_map(|(id, t)| Some((id.clone(), t.transcribe.clone()?)))
                .collect(),
        );
        let contexts: Arc<BTreeMap<String, CallContext>> = Arc::new(
            routes
                .iter()
                .map(|(name, route)| {
                    let ctx = CallContext {
                        route_name: name.clone(),
                        route: route.clone(),
                        sink: sink.clone(),
                        metrics: metrics.clone(),
                        hangup_now: hangup_rx.clone(),
                        max_frame_bytes: config.limits.max_frame_bytes,
                        media_timeout: Duration::from_millis(config.limits.media_timeout_ms),
                        frame_timeout: Duration::from_millis(config.limits.frame_timeout_ms),
                        transfers: None,
                        tracker: tracker.clone(),
                        recording: recording.clone(),
                        tenant_recognizers: tenant_recognizers.clone(),
                    };
                    (name.clone(), ctx)
                })
                .collect(),
        );
        let shared = match config.rtp.shared_port {
            0 => None,
            port => Some(
                SharedPort::bind(
                    config.rtp.bind_ip,
                    port,
                    config.limits.max_calls.saturating_mul(2),
                    metrics.clone(),
                    stop.subscribe(),
                )
                .await
                .map_err(|e| {
                    MediaError::from(ConfigError(format!(
                        "rtp.shared_port {}:{port}: {e}",
                        config.rtp.bind_ip
                    )))
                })?,
            ),
        };
        let rtp = RtpSessions::new(RegistryParts {
            shared,
            cfg: config.rtp.clone(),
            routes: routes.clone(),
            sink: sink.clone(),
            metrics: metrics.clone(),
            hangup_now: hangup_rx,
            stopping: stop.subscribe(),
            tracker: tracker.clone(),
            max_calls: config.limits.max_calls,
            calls: calls.clone(),
            recording,
            tenant_recognizers,
        });
        let sip_socket_on = sip_socket.is_some();
        Ok(MediaServer {
            config,
            listeners,
            chanws_listeners,
            sip_socket,
            sip_streams,
            sip_tls_dials,
            metrics,
            stop,
            hangup_tx,
            tracker,
            rtp,
            calls,
            contexts,
            sip_dials: sip_socket_on.then(|| tokio::sync::mpsc::channel(super::sip::dial::COMMANDS_QUEUED)),
        })
    }

    /// The RTP session registry (what the media API drives).
    pub fn rtp_sessions(&self) -> RtpSessions {
        self.rtp.clone()
    }

    /// Commands for every call of this server, AudioSocket, chan_websocket
    /// or RTP: hangup, dialling Asterisk's media WebSocket, and placing
    /// calls on SIP gateways (with SIP on).
    pub fn commands(&self) -> MediaCommands {
        MediaCommands {
            calls: self.calls.clone(),
            sip: self
                .sip_dials
                .as_ref()
                .map(|(tx, _)| super::sip::dial::SipDialer {
                    commands: tx.clone(),
                    gateways: Arc::new(self.config.sip.gateways.clone()),
                    routes: Arc::new(self.config.routes.keys().cloned().collect()),
                    stopping: self.stop.subscribe(),
                }),
            dialer: chanws::MediaDialer {
                contexts: self.contexts.clone(),
                tracker: self.tracker.clone(),
                calls: self.calls.clone(),
                max_calls: self.config.limits.max_calls,
                timeout: Duration::from_millis(self.config.limits.uuid_timeout_ms),
                stopping: self.stop.subscribe(),
            },
        }
    }

    /// The addresses the AudioSocket listeners are bound to.
    pub fn audiosocket_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// The address the SIP endpoint is bound to, if SIP is on.
    pub fn sip_addr(&self) -> Option<SocketAddr> {
        self.sip_socket.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The address SIP over TCP (`tls: false`) or TLS listens on, if on.
    pub fn sip_stream_addr(&self, tls: bool) -> Option<SocketAddr> {
        self.sip_streams
            .iter()
            .find(|l| l.tls.is_some() == tls)
            .and_then(|l| l.listener.local_addr().ok())
    }

    /// The addresses the chan_websocket listeners are bound to.
    pub fn chanws_addrs(&self) -> Vec<SocketAddr> {
        self.chanws_listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// Each AudioSocket listener's route and bound address (where an
    /// originated call's answered leg connects).
    pub fn audiosocket_routes(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(l, route)| l.local_addr().ok().map(|a| (route.clone(), a)))
            .collect()
    }

    /// The server's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// A handle that stops the server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.stop.clone())
    }

    /// Accepts calls until shutdown, then drains them (see the module docs).
    pub async fn run(self) {
        let tracker = self.tracker.clone();
        let hangup_tx = self.hangup_tx;
        let limits = self.config.limits.clone();
        let mut accept_loops = Vec::new();
        let contexts = self.contexts.clone();
        for (listener, route) in self.chanws_listeners {
            let acceptor = ChanWsAcceptor {
                listener,
                route,
                contexts: contexts.clone(),
                tracker: tracker.clone(),
                calls: self.calls.clone(),
                max_calls: limits.max_calls,
                handshake_timeout: Duration::from_millis(limits.uuid_timeout_ms),
                send_buffer: limits.send_buffer_bytes,
            };
            accept_loops.push(tokio::spawn(acceptor.run(self.stop.subscribe())));
        }
        for (listener, route_name) in self.listeners {
            // `Config::validate` checked that every listener's route exists.
            let Some(ctx) = contexts.get(&route_name).cloned() else {
                tracing::error!(route = %route_name, "AudioSocket listener without a route: not started");
                continue;
            };
            let acceptor = Acceptor {
                listener,
                ctx,
                tracker: tracker.clone(),
                calls: self.calls.clone(),
                max_calls: limits.max_calls,
                uuid_timeout: Duration::from_millis(limits.uuid_timeout_ms),
                send_buffer: limits.send_buffer_bytes,
            };
            accept_loops.push(tokio::spawn(acceptor.run(self.stop.subscribe())));
        }
        if let Some(socket) = self.sip_socket {
            let sent_by = match (&self.config.sip.advertise, socket.local_addr()) {
                (Some(a), _) => a.clone(),
                (None, Ok(local)) => local.to_string(),
                (None, Err(_)) => "127.0.0.1:5060".into(),
            };
            use std::hash::{BuildHasher, Hasher};
            let seed = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            // Over TCP and TLS: the advertised host with that listener's port.
            let stream_sent_by = |tls: bool| {
                let port = self
                    .sip_streams
                    .iter()
                    .find(|l| l.tls.is_some() == tls)
                    .and_then(|l| l.listener.local_addr().ok())?
                    .port();
                let host = match sent_by.rsplit_once(':') {
                    Some((h, p)) if p.parse::<u16>().is_ok() => h,
                    _ => sent_by.as_str(),
                };
                Some(format!("{host}:{port}"))
            };
            let (sent_by_tcp, sent_by_tls) = (stream_sent_by(false), stream_sent_by(true));
            let endpoint = super::sip::SipEndpoint {
                socket,
                streams: self.sip_streams,
                max_connections: self.config.sip.max_connections,
                uas: crate::sansio::sip::SipUas::new(crate::sansio::sip::UasConfig {
                    sent_by,
                    sent_by_tcp,
                    sent_by_tls,
                    user_agent: concat!("voxbridge/", env!("CARGO_PKG_VERSION")).into(),
                    timers: Default::default(),
                    seed,
                    allow: self.config.sip.allow_cidrs(),
                    invite_rate: self.config.sip.invite_rate,
                    invite_burst: self.config.sip.invite_burst,
                    retry_after_s: self.config.sip.retry_after_s,
                    routes: self.config.sip.route_rules(),
                    default_route: self.config.sip.route.clone(),
                    // A call holds two or three at once; the rest is room for
                    // OPTIONS and stray requests.
                    max_transactions: self.config.limits.max_calls.saturating_mul(4).max(4096),
                    auth: self.config.sip.digest_auth(),
                    ringing: self.config.sip.ringing,
                    early_media: (self.config.sip.early_media_ms > 0)
                        .then(|| Duration::from_millis(self.config.sip.early_media_ms.into())),
                    codecs: self.config.rtp.allowed_codecs(),
                    session_expires: (self.config.sip.session_expires_s > 0)
                        .then_some(self.config.sip.session_expires_s),
                }),
                rtp: self.rtp.clone(),
                retry_after_s: self.config.sip.retry_after_s,
                metrics: self.metrics.clone(),
                tracker: tracker.clone(),
                drain_limit: Duration::from_millis(self.config.limits.shutdown_grace_ms)
                    + Duration::from_secs(10),
                gateways: Arc::new(self.config.sip.gateways.clone()),
                commands: self.sip_dials.map(|(_, rx)| rx),
                pending: Default::default(),
                outbound: Default::default(),
                tls_dials: self.sip_tls_dials,
                contact_hops: Default::default(),
                connecting: Default::default(),
            };
            // On the tracker, not among the accept loops: it keeps
            // answering (and sending BYEs) until its last call is gone.
            tracker.spawn(endpoint.run(self.stop.subscribe()));
        }
        let mut stop = self.stop.subscribe();
        // Err: every handle is gone, which also means stop.
        let _ = stop.wait_for(|s| *s).await;
        for a in &accept_loops {
            a.abort();
        }
        tracker.close();
        let active = self.metrics.active_calls.load(Relaxed);
        tracing::info!(
            active,
            grace_ms = limits.shutdown_grace_ms,
            "shutting down: no new calls"
        );
        let grace = Duration::from_millis(limits.shutdown_grace_ms);
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::info!(
                active = self.metrics.active_calls.load(Relaxed),
                "grace period over: hanging up"
            );
            hangup_tx.send_replace(true);
            tracker.wait().await;
        }
        tracing::info!("media server stopped");
    }
}

struct Acceptor {
    listener: TcpListener,
    ctx: CallContext,
    tracker: TaskTracker,
    calls: CallRegistry,
    max_calls: usize,
    uuid_timeout: Duration,
    send_buffer: usize,
}

impl Acceptor {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let Some((sock, peer)) = accept(&self.listener, &mut stop, self.send_buffer).await else {
                return;
            };
            if over_limit(&self.ctx.metrics, self.max_calls, peer) {
                let _ = sock.try_write(&[voxbridge_proto::audiosocket::kind::HANGUP, 0, 0]);
                continue;
            }
            let ctx = self.ctx.clone();
            let timeout = self.uuid_timeout;
            let calls = self.calls.clone();
            self.tracker.spawn(async move {
                match handshake(sock, timeout, ctx.max_frame_bytes).await {
                    Ok((mut sock, rest, id)) => match calls.claim(&id) {
                        Some((stop, _registered)) => audiosocket::run(sock, rest, id, ctx, Some(stop)).await,
                        None => {
                            // Another live call has this UUID: refused, never
                            // merged (its record and media stay its own).
                            ctx.metrics.rejected_connections.fetch_add(1, Relaxed);
                            ctx.metrics.duplicate_call_ids.fetch_add(1, Relaxed);
                            tracing::warn!(%peer, call_id = %id, "AudioSocket connection refused: call id in use");
                            let _ = sock.write_all(&[voxbridge_proto::audiosocket::kind::HANGUP, 0, 0]).await;
                        }
                    },
                    Err(e) => {
                        ctx.metrics.rejected_connections.fetch_add(1, Relaxed);
                        if matches!(e, MediaError::CallerProtocol(_) | MediaError::Proto(_)) {
                            ctx.metrics.caller_protocol_errors.fetch_add(1, Relaxed);
                        }
                        tracing::warn!(%peer, error = %e, "AudioSocket connection refused");
                    }
                }
            });
        }
    }
}

/// Accepts Asterisk's WebSocket channel connections on one listener.
struct ChanWsAcceptor {
    listener: TcpListener,
    route: String,
    contexts: Arc<BTreeMap<String, CallContext>>,
    tracker: TaskTracker,
    calls: CallRegistry,
    max_calls: usize,
    handshake_timeout: Duration,
    send_buffer: usize,
}

impl ChanWsAcceptor {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let routes: Arc<Vec<String>> = Arc::new(self.contexts.keys().cloned().collect());
        if let Ok(addr) = self.listener.local_addr() {
            tracing::info!(%addr, route = %self.route, "chan_websocket listener up");
        }
        loop {
            let Some((sock, peer)) = accept(&self.listener, &mut stop, self.send_buffer).await else {
                return;
            };
            let Some(default_ctx) = self.contexts.get(&self.route) else {
                continue;
            };
            let metrics = default_ctx.metrics.clone();
            if over_limit(&metrics, self.max_calls, peer) {
                let _ = sock.try_write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            }
            let (contexts, routes, calls) = (self.contexts.clone(), routes.clone(), self.calls.clone());
            let (default_route, timeout) = (self.route.clone(), self.handshake_timeout);
            self.tracker.spawn(async move {
                let upgraded = tokio::time::timeout(timeout, chanws::upgrade(sock, &routes, &default_route))
                    .await
                    .unwrap_or_else(|_| {
                        Err(MediaError::CallerProtocol(format!(
                            "no WebSocket upgrade within {timeout:?}"
                        )))
                    });
                match upgraded {
                    Ok(up) => match contexts.get(&up.route).cloned() {
                        Some(ctx) => chanws::run(up, ctx, calls, timeout, peer).await,
                        None => {
                            // The upgrade only picks defined routes.
                            metrics.rejected_connections.fetch_add(1, Relaxed);
                        }
                    },
                    Err(e) => {
                        metrics.rejected_connections.fetch_add(1, Relaxed);
                        metrics.caller_protocol_errors.fetch_add(1, Relaxed);
                        tracing::warn!(%peer, error = %e, "chan_websocket connection refused");
                    }
                }
            });
        }
    }
}

/// The next connection on `listener` (`None` once `stop` is set), with
/// Nagle off and the send buffer bounded. Accept errors (EMFILE and
/// friends) back off a little instead of spinning.
async fn accept(
    listener: &TcpListener,
    stop: &mut watch::Receiver<bool>,
    send_buffer: usize,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return None,
        };
        match accepted {
            Ok((sock, peer)) => {
                let _ = sock.set_nodelay(true);
                set_send_buffer(&sock, send_buffer);
                return Some((sock, peer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Whether the call limit is reached; if so the refusal is counted and
/// logged (the caller's listener tells the peer in its own protocol).
pub(crate) fn over_limit(metrics: &Metrics, max_calls: usize, peer: impl std::fmt::Display) -> bool {
    if metrics.active_calls.load(Relaxed) < max_calls as i64 {
        return false;
    }
    metrics.rejected_connections.fetch_add(1, Relaxed);
    metrics.hangup(HangupCause::Overload);
    tracing::warn!(%peer, max_calls, "call limit reached; refusing");
    true
}

/// Bounds the kernel's send buffer of a caller socket, so that a caller
/// that stops reading is found within seconds (best effort).
#[cfg(target_os = "linux")]
fn set_send_buffer(sock: &TcpStream, bytes: usize) {
    use nix::sys::socket::{setsockopt, sockopt::SndBuf};
    if let Err(e) = setsockopt(sock, SndBuf, &bytes) {
        tracing::debug!(error = %e, "SO_SNDBUF not set");
    }
}

#[cfg(not(target_os = "linux"))]
fn set_send_buffer(_: &TcpStream, _: usize) {}

/// Reads until the first frame; it must be a UUID. Returns the socket, the
/// bytes read past the UUID frame, and the UUID as Asterisk prints it.
async fn handshake(
    mut sock: TcpStream,
    timeout: Duration,
    max_frame: usize,
) -> Result<(TcpStream, BytesMut, String), MediaError> {
    let codec = AudioSocketCodec::new(max_frame);
    let mut buf = BytesMut::with_capacity(4096);
    let first = tokio::time::timeout(timeout, async {
        loop {
            if let Some(f) = codec.decode_frame(&mut buf)? {
                return Ok::<_, MediaError>(f);
            }
            if sock.read_buf(&mut buf).await? == 0 {
                return Err(MediaError::CallerProtocol("closed before sending a UUID".into()));
            }
        }
    })
    .await
    .map_err(|_| MediaError::CallerProtocol(format!("no UUID within {timeout:?}")))??;
    match first {
        Frame::Uuid(id) => Ok((sock, buf, Frame::uuid_string(&id))),
        other => Err(MediaError::CallerProtocol(format!(
            "first frame must be a UUID, got {}",
            other.name()
        ))),
    }
}
