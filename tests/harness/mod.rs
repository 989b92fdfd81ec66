//! In-process harness for the bridge scenarios: a daemon on 127.0.0.1:0, a
//! scripted Asterisk-like caller and a scripted bot.
//!
//! Every wait has a 10 s guard that fails the test with what it was waiting
//! for; nothing sleeps to synchronise.
#![allow(dead_code)]

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use voxbridge_media::config::{AudioSocketListener, Route};
use voxbridge_media::events::ChannelSink;
use voxbridge_media::metrics::Metrics;
use voxbridge_media::{CallEvent, Config, MediaServer, ShutdownHandle};
use voxbridge_proto::audiosocket::{AudioSocketCodec, Frame};

#[path = "../../control/tests/common/pg.rs"]
pub mod pg;
pub mod sipp;

/// Failure guard for every wait.
pub const GUARD: Duration = Duration::from_secs(10);

/// Awaits `f`, failing the test after [`GUARD`] with `what`.
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// One AudioSocket listener on a free loopback port, for route `default`,
/// and no metrics HTTP listener.
pub fn listen_locally(config: &mut Config) {
    config.audiosocket = vec![AudioSocketListener {
        listen: "127.0.0.1:0".parse().expect("addr"),
        route: "default".into(),
    }];
    config.metrics_listen = None;
}

/// A config whose only route, `default`, is `route`, listening locally.
pub fn one_listener(route: Route) -> Config {
    let mut config = Config::default();
    config.routes.insert("default".into(), route);
    listen_locally(&mut config);
    config
}

/// The `default` customer with an access key, a rate plan of 0.06 per
/// minute billed per second, and a balance of 1.00; returns the key and the
/// plan.
pub async fn billed_default_customer(
    store: &voxbridge_control::store::Store,
) -> (String, voxbridge_control::billing::RatePlan) {
    use voxbridge_control::model::Actor;
    let admin = Actor { id: "test".into() };
    let (_, secret) = store
        .create_access_key(&admin, "default", "test", None)
        .await
        .expect("key");
    let plan = voxbridge_control::billing::RatePlan {
        price_per_minute_micros: 60_000,
        increment_first_s: 1,
        increment_next_s: 1,
        min_charge_micros: 0,
        low_balance_threshold_micros: 0,
    };
    store.set_rate_plan(&admin, "default", &plan).await.expect("plan");
    store.credit(&admin, "default", 1_000_000).await.expect("credit");
    (secret, plan)
}

/// Every call of the `default` customer, all pages.
pub async fn all_calls(store: &voxbridge_control::store::Store) -> Vec<voxbridge_control::model::Call> {
    use voxbridge_control::model::{CallFilter, PageReq};
    let mut calls = Vec::new();
    let mut page = PageReq::new(Some(100), None).expect("page");
    loop {
        let p = store
            .list_calls("default", &CallFilter::default(), page)
            .await
            .expect("calls");
        calls.extend(p.items);
        match p.next_cursor {
            Some(c) => page = PageReq::new(Some(100), Some(&c)).expect("page"),
            None => return calls,
        }
    }
}

/// A daemon running in this process.
pub struct Daemon {
    pub addr: SocketAddr,
    /// The first chan_websocket listener, if the config has one.
    pub chanws: Option<SocketAddr>,
    /// The SIP endpoint, if the config turns it on.
    pub sip: Option<SocketAddr>,
    /// SIP over TCP and over TLS, when configured.
    pub sip_tcp: Option<SocketAddr>,
    pub sip_tls: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub events: mpsc::UnboundedReceiver<CallEvent>,
    pub shutdown: ShutdownHandle,
    pub task: tokio::task::JoinHandle<()>,
    pub rtp: voxbridge_media::RtpSessions,
    /// The media plane's commands (hangup, dialling Asterisk).
    pub commands: voxbridge_media::MediaCommands,
}

impl Daemon {
    /// A daemon whose only listener uses `route`.
    pub async fn start(route: Route) -> Daemon {
        Daemon::with_config(one_listener(route)).await
    }

    /// A daemon with `config`, its listener moved to a free port, metrics HTTP off.
    pub async fn with_config(mut config: Config) -> Daemon {
        listen_locally(&mut config);
        let (sink, events) = ChannelSink::new();
        let server = MediaServer::bind(config, sink).await.expect("daemon binds");
        let addr = server.audiosocket_addrs()[0];
        let chanws = server.chanws_addrs().first().copied();
        let sip = server.sip_addr();
        let (sip_tcp, sip_tls) = (server.sip_stream_addr(false), server.sip_stream_addr(true));
        let metrics = server.metrics();
        let shutdown = server.shutdown_handle();
        let rtp = server.rtp_sessions();
        let commands = server.commands();
        let task = tokio::spawn(server.run());
        Daemon {
            addr,
            chanws,
            sip,
            sip_tcp,
            sip_tls,
            metrics,
            events,
            shutdown,
            task,
            rtp,
            commands,
        }
    }

    /// The next event that `pred` accepts (earlier ones are skipped).
    pub async fn event(&mut self, what: &str, pred: impl Fn(&CallEvent) -> bool) -> CallEvent {
        within(what, async {
            loop {
                let e = self.events.recv().await.expect("event channel open");
                if pred(&e) {
                    return e;
                }
            }
        })
        .await
    }
}

/// A route to `url` at `rate` over pipecat.
pub fn pipecat_route(url: &str, rate: u32) -> Route {
    Route {
        url: url.into(),
        sample_rate: rate,
        ..Route::default()
    }
}

/// A bot listener; each accepted WebSocket arrives on `conns`.
pub struct TestBot {
    pub url: String,
    pub conns: mpsc::UnboundedReceiver<BotConn>,
}

impl TestBot {
    pub async fn start() -> TestBot {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind bot");
        let url = format!("ws://{}", listener.local_addr().expect("addr"));
        let (tx, conns) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    // The subprotocol the daemon offers (jambonz's) is
                    // accepted and remembered, as a bot's server does.
                    let offered = std::sync::Arc::new(std::sync::Mutex::new(None));
                    let seen = offered.clone();
                    // The callback's type is tungstenite's (its error is a whole HTTP response).
                    #[allow(clippy::result_large_err)]
                    let callback = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                                         mut resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                        if let Some(p) = req.headers().get("Sec-WebSocket-Protocol") {
                            if let Ok(mut s) = seen.lock() {
                                *s = p.to_str().ok().map(str::to_owned);
                            }
                            resp.headers_mut().insert("Sec-WebSocket-Protocol", p.clone());
                        }
                        Ok(resp)
                    };
                    if let Ok(ws) = tokio_tungstenite::accept_hdr_async(sock, callback).await {
                        let protocol = offered.lock().ok().and_then(|s| s.clone());
                        let _ = tx.send(BotConn { ws, protocol });
                    }
                });
            }
        });
        TestBot { url, conns }
    }

    pub async fn accept(&mut self) -> BotConn {
        within("the daemon to connect to the bot", self.conns.recv())
            .await
            .expect("bot listener alive")
    }
}

/// One bot-side WebSocket.
pub struct BotConn {
    pub ws: WebSocketStream<TcpStream>,
    /// The subprotocol the daemon asked for, if any.
    pub protocol: Option<String>,
}

impl BotConn {
    /// The next data message (pings skipped); `None` when the link closed.
    pub async fn recv(&mut self) -> Option<Message> {
        within("a message at the bot", async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(m)) => return Some(m),
                }
            }
        })
        .await
    }

    pub async fn send(&mut self, m: Message) {
        self.ws.send(m).await.expect("bot send");
    }

    /// Drops the TCP connection without a close frame.
    pub fn drop_abruptly(self) {
        drop(self.ws.into_inner());
    }
}

/// The next pipecat frame at the bot.
pub async fn pipecat_next(bot: &mut BotConn) -> Option<voxbridge_proto::pipecat::Kind> {
    match bot.recv().await? {
        Message::Binary(b) => Some(voxbridge_proto::pipecat::decode(b).expect("valid pipecat frame")),
        other => panic!("pipecat link got {other:?}"),
    }
}

/// The JSON of a pipecat `MessageFrame`, if `k` is one.
pub fn message_json(k: &voxbridge_proto::pipecat::Kind) -> Option<serde_json::Value> {
    match k {
        voxbridge_proto::pipecat::Kind::Message(m) => serde_json::from_str(&m.data).ok(),
        _ => None,
    }
}

/// Any pipecat frame as a WebSocket message.
pub fn pipecat_msg(kind: voxbridge_proto::pipecat::Kind) -> Message {
    let mut b = BytesMut::new();
    voxbridge_proto::pipecat::encode(kind, &mut b);
    Message::Binary(b.freeze())
}

/// A pipecat audio frame.
pub fn pipecat_audio(pcm: &[i16], rate: u32) -> Message {
    let mut b = BytesMut::new();
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    voxbridge_proto::pipecat::encode_audio(bytes.into(), rate, &mut b);
    Message::Binary(b.freeze())
}

/// A scripted Asterisk-like AudioSocket client.
pub struct Caller {
    pub sock: TcpStream,
    buf: BytesMut,
    codec: AudioSocketCodec,
}

impl Caller {
    /// Connects and sends the UUID frame.
    pub async fn connect(addr: SocketAddr, uuid: [u8; 16]) -> Caller {
        let mut c = Caller::connect_raw(addr).await;
        let mut hello = vec![0x01, 0x00, 0x10];
        hello.extend_from_slice(&uuid);
        c.send_raw(&hello).await;
        c
    }

    /// Connects without sending anything.
    pub async fn connect_raw(addr: SocketAddr) -> Caller {
        let sock = TcpStream::connect(addr).await.expect("connect to daemon");
        Caller {
            sock,
            buf: BytesMut::with_capacity(8192),
            codec: AudioSocketCodec::default(),
        }
    }

    pub async fn send_raw(&mut self, b: &[u8]) {
        self.sock.write_all(b).await.expect("caller write");
    }

    /// One 8 kHz slin frame per 160 samples.
    pub async fn send_audio(&mut self, pcm: &[i16]) {
        let mut out = Vec::with_capacity(pcm.len() * 2 + 16);
        for chunk in pcm.chunks(160) {
            out.push(0x10);
            out.extend_from_slice(&((chunk.len() * 2) as u16).to_be_bytes());
            for s in chunk {
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
        self.send_raw(&out).await;
    }

    /// The next frame from the daemon; `None` at EOF.
    pub async fn next(&mut self) -> Option<Frame> {
        within("a frame at the caller", async {
            loop {
                if let Some(f) = self
                    .codec
                    .decode_frame(&mut self.buf)
                    .expect("daemon sends valid frames")
                {
                    return Some(f);
                }
                match self.sock.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
    }

    /// The samples of the next audio frame (panics on anything else).
    pub async fn next_audio(&mut self) -> Vec<i16> {
        match self.next().await {
            Some(Frame::Audio { rate, pcm }) => {
                assert_eq!(rate, 8000, "the caller spoke 8 kHz, so it hears 8 kHz");
                pcm.chunks_exact(2)
                    .map(|p| i16::from_le_bytes([p[0], p[1]]))
                    .collect()
            }
            other => panic!("expected audio, got {other:?}"),
        }
    }

    /// Every frame already received, without waiting.
    pub fn drain_now(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        loop {
            let mut tmp = [0u8; 65536];
            match self.sock.try_read(&mut tmp) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
        while let Ok(Some(f)) = self.codec.decode_frame(&mut self.buf) {
            out.push(f);
        }
        out
    }

    /// Reads until a hangup frame or EOF; returns whether a hangup frame came.
    pub async fn until_hangup(&mut self) -> bool {
        loop {
            match self.next().await {
                Some(Frame::Hangup) => return true,
                Some(_) => continue,
                None => return false,
            }
        }
    }
}

/// The first `frames` x 20 ms of the bundled speech sample, 8 kHz.
pub fn speech_8k(frames: usize) -> Vec<i16> {
    let ul = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/hello_8k.ul")).expect("sample");
    ul.iter()
        .take(frames * 160)
        .map(|&c| voxbridge_codecs::g711::ulaw_to_linear(c))
        .collect()
}

/// A UUID whose last byte is `n`.
pub fn uuid(n: u8) -> [u8; 16] {
    let mut id = [0x5a; 16];
    id[15] = n;
    id
}

/// The RTP packets of one RFC 4733 key press (`digit`, telephone-event PT
/// 101, 8 kHz, 100 ms, the end packet three times) with `ssrc`.
pub fn digit_packets(digit: char, ssrc: u32) -> Vec<Vec<u8>> {
    voxbridge_proto::dtmf::digit_train(digit, 800, 100, 8000, 20, 10)
        .expect("digit")
        .enumerate()
        .map(|(i, p)| {
            let mut v = Vec::new();
            voxbridge_proto::rtp::RtpHeader {
                marker: p.marker,
                payload_type: 101,
                sequence: i as u16,
                timestamp: p.timestamp,
                ssrc,
            }
            .write(&p.event.to_bytes(), &mut v);
            v
        })
        .collect()
}

/// `voxbridge serve` (the built binary) as a child process; killed with
/// SIGKILL when dropped, as a crash would end it.
pub struct ServeProcess(pub std::process::Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh, empty temporary directory for one test's daemon
/// (`voxbridge-<name>-<pid>`).
pub fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("voxbridge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

impl ServeProcess {
    /// Sends SIGTERM and waits for the process to end, at most `within`;
    /// `None` when it was still running then.
    pub async fn sigterm(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let child = &mut self.0;
        let term = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(term.success(), "kill -TERM failed");
        tokio::time::timeout(within, async {
            loop {
                if let Some(status) = child.try_wait().expect("wait") {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .ok()
    }

    /// Starts `voxbridge serve --config <config>`: AudioSocket on a free
    /// loopback port, metrics off, one worker, the default route's bot at
    /// `bot_url`. Returns once it printed its `voxbridge serve:` line, with
    /// its AudioSocket address.
    pub fn start(config: &std::path::Path, bot_url: &str) -> (ServeProcess, String) {
        Self::start_with(config, bot_url, |_| {})
    }

    /// As [`ServeProcess::start`], with `customize` applied to the command
    /// last (to set the log level, or send stderr to a file).
    pub fn start_with(
        config: &std::path::Path,
        bot_url: &str,
        customize: impl FnOnce(&mut std::process::Command),
    ) -> (ServeProcess, String) {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_voxbridge"));
        cmd.args(["serve", "--config"])
            .arg(config)
            .env("VOXBRIDGE_AUDIOSOCKET_LISTEN", "127.0.0.1:0")
            .env("VOXBRIDGE_METRICS_LISTEN", "off")
            .env("VOXBRIDGE_BOT_URL", bot_url)
            .env("VOXBRIDGE_WORKERS", "1")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        customize(&mut cmd);
        let mut child = cmd.spawn().expect("voxbridge serve runs");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("serve line");
        assert!(line.starts_with("voxbridge serve:"), "{line:?}");
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("audiosocket="))
            .unwrap_or_else(|| panic!("no audiosocket address in {line:?}"))
            .to_owned();
        (ServeProcess(child), addr)
    }
}

/// voxbridge's own echo bot on a free loopback port; returns its URL.
pub async fn echo_bot() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind bot");
    let url = format!("ws://{}", l.local_addr().expect("addr"));
    tokio::spawn(voxbridge::bot::serve(
        l,
        voxbridge::bot::Mode::Echo,
        Duration::ZERO,
        None,
    ));
    url
}

/// A speech recognizer speaking voxbridge's own protocol, scripted: the
/// `Authorization` header and the `start` message of each stream it is
/// opened with go to `opened`; once a second of audio has come it sends an
/// interim result and a final "hello there", at `stop` a final "goodbye
/// now" (once `release` is true: a test holds it to see who waits for it),
/// then closes.
pub struct ScriptedRecognizer {
    pub url: String,
    pub opened: mpsc::UnboundedReceiver<(String, serde_json::Value)>,
    pub release: tokio::sync::watch::Sender<bool>,
}

impl ScriptedRecognizer {
    /// Listening; `hold_final`: the answer to `stop` waits for `release`.
    pub async fn start(hold_final: bool) -> ScriptedRecognizer {
        use voxbridge_proto::stt::PlainServer;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the recognizer");
        let url = format!("ws://{}/stt", listener.local_addr().expect("addr"));
        let (opened_tx, opened) = mpsc::unbounded_channel();
        let (release, released) = tokio::sync::watch::channel(!hold_final);
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let opened = opened_tx.clone();
                let mut released = released.clone();
                tokio::spawn(async move {
                    let auth = Arc::new(std::sync::Mutex::new(String::new()));
                    let seen = auth.clone();
                    #[allow(clippy::result_large_err)]
                    let callback = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                                         resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                        if let (Ok(mut a), Some(v)) = (seen.lock(), req.headers().get("Authorization")) {
                            *a = v.to_str().unwrap_or_default().to_owned();
                        }
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(sock, callback).await else {
                        return;
                    };
                    let auth = auth.lock().map(|a| a.clone()).unwrap_or_default();
                    let say = |text: &str, is_final: bool, start_ms: u64| {
                        let m = PlainServer::Transcript {
                            text: text.into(),
                            is_final,
                            start_ms,
                            duration_ms: 1000,
                        };
                        Message::text(serde_json::to_string(&m).unwrap_or_default())
                    };
                    let (mut bytes, mut said, mut started) = (0usize, false, false);
                    while let Some(Ok(m)) = ws.next().await {
                        match m {
                            Message::Text(t) if !started => {
                                started = true;
                                let start = serde_json::from_str(t.as_str()).unwrap_or_default();
                                let _ = opened.send((auth.clone(), start));
                            }
                            Message::Binary(b) => {
                                bytes += b.len();
                                if !said && bytes >= 32_000 {
                                    said = true;
                                    let _ = ws.send(say("hello", false, 250)).await;
                                    let _ = ws.send(say("hello there", true, 250)).await;
                                }
                            }
                            Message::Text(t) if t.as_str() == voxbridge_proto::stt::PLAIN_STOP => {
                                let _ = released.wait_for(|r| *r).await;
                                let _ = ws.send(say("goodbye now", true, 1500)).await;
                                let _ = ws.close(None).await;
                                return;
                            }
                            _ => {}
                        }
                    }
                });
            }
        });
        ScriptedRecognizer { url, opened, release }
    }
}
