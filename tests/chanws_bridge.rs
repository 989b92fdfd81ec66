//! Asterisk's WebSocket media channel through the daemon, Asterisk dialling
//! us: a scripted Asterisk (a WebSocket client speaking chan_websocket's
//! `media` subprotocol with the messages its source writes) against the
//! real listener, the real call and a real bot link. Covered: the
//! subprotocol, the route and parameters from the URL, MEDIA_START, a
//! bit-exact slin16 round trip through the echo bot, hangup from either
//! side, and a connection that does not start with MEDIA_START.

mod harness;

use futures_util::{SinkExt, StreamExt};
use harness::*;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use voxbridge_media::config::ChanWsListener;
use voxbridge_media::{CallEvent, Config, HangupCause};

type Ws = WebSocketStream<TcpStream>;

const START_SLIN16: &str = "MEDIA_START connection_id:media_connection1 channel:WebSocket/media_connection1/0x7f00 channel_id:1733412345.7 format:slin16 optimal_frame_size:640 ptime:20";

fn with_chanws(mut config: Config) -> Config {
    config.chan_websocket = vec![ChanWsListener {
        listen: "127.0.0.1:0".parse().expect("addr"),
        route: "default".into(),
    }];
    config
}

/// Connects as Asterisk does (subprotocol `media`); returns the socket and
/// the subprotocol the daemon answered with.
async fn asterisk(addr: SocketAddr, path: &str) -> (Ws, Option<String>) {
    let (ws, resp) = upgrade(addr, path).await.expect("upgraded");
    let proto = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    (ws, proto)
}

/// Asterisk's upgrade request for `path`, with the `media` subprotocol.
async fn upgrade(addr: SocketAddr, path: &str) -> Result<(Ws, Response), WsError> {
    let mut req = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "media".parse().expect("header"));
    let sock = TcpStream::connect(addr).await.expect("connect");
    within("the upgrade", tokio_tungstenite::client_async(req, sock)).await
}

/// The next message from the daemon (`None` once it closed).
async fn next(ws: &mut Ws) -> Option<Message> {
    within("a message from the daemon", async {
        match ws.next().await {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => None,
            Some(Ok(m)) => Some(m),
        }
    })
    .await
}

/// The cause the call ended with.
async fn ended_with(d: &mut Daemon) -> HangupCause {
    match d
        .event("call ended", |e| matches!(e, CallEvent::Hungup { .. }))
        .await
    {
        CallEvent::Hungup { cause, .. } => cause,
        other => panic!("{other:?}"),
    }
}

/// A 16 kHz signal with no zero samples (so where it starts can be found).
fn signal(samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| {
            let v = (8000.0 * (i as f64 * 0.07).sin() + 3000.0 * (i as f64 * 0.011).cos()) as i16;
            if v == 0 {
                1
            } else {
                v
            }
        })
        .collect()
}

/// `pcm` to the daemon in Asterisk's 20 ms slin16 frames.
async fn send_slin16(ws: &mut Ws, pcm: &[i16]) {
    for frame in pcm.chunks(320) {
        let bytes: Vec<u8> = frame.iter().flat_map(|s| s.to_le_bytes()).collect();
        ws.send(Message::Binary(bytes.into())).await.expect("frame");
    }
}

/// The first `len` samples of bot audio coming back (from its first
/// non-zero sample), checking each message is one 640-byte slin16 frame.
async fn echo_of(ws: &mut Ws, len: usize) -> Vec<i16> {
    let mut heard: Vec<i16> = Vec::new();
    loop {
        match next(ws).await.expect("the daemon keeps sending") {
            Message::Binary(b) => {
                assert_eq!(b.len(), 640, "optimal_frame_size bytes per message");
                heard.extend(b.chunks_exact(2).map(|s| i16::from_le_bytes([s[0], s[1]])));
            }
            other => panic!("unexpected {other:?}"),
        }
        if let Some(start) = heard.iter().position(|&s| s != 0) {
            if heard.len() - start >= len {
                return heard[start..start + len].to_vec();
            }
        }
    }
}

#[tokio::test]
async fn slin16_round_trip_is_bit_exact_and_asterisk_hangs_up() {
    let bot_url = echo_bot().await;
    let mut d = Daemon::with_config(with_chanws(one_listener(pipecat_route(&bot_url, 16000)))).await;
    let addr = d.chanws.expect("a chan_websocket listener");
    let (mut ws, proto) = asterisk(addr, "/media/voxbridge?caller=100&language=en%2DUS").await;
    assert_eq!(proto.as_deref(), Some("media"), "the subprotocol is echoed");
    ws.send(Message::Text(START_SLIN16.into()))
        .await
        .expect("MEDIA_START");

    let created = d
        .event("call created", |e| matches!(e, CallEvent::Created { .. }))
        .await;
    let CallEvent::Created { info, .. } = created else {
        unreachable!()
    };
    assert_eq!(info.ingress, "chanws");
    assert_eq!(info.caller.as_deref(), Some("100"));
    assert_eq!(info.params.get("language").map(String::as_str), Some("en-US"));
    assert_eq!(
        info.params.get("asterisk_channel_id").map(String::as_str),
        Some("1733412345.7")
    );

    // 2 s of caller audio in Asterisk's 20 ms frames.
    let sent = signal(32_000);
    send_slin16(&mut ws, &sent).await;
    assert!(
        echo_of(&mut ws, sent.len()).await == sent,
        "the round trip is bit-exact at slin16"
    );

    // Asterisk hangs up: it closes the WebSocket.
    ws.close(None).await.expect("close");
    assert_eq!(ended_with(&mut d).await, HangupCause::CallerHangup);
}

#[tokio::test]
async fn a_bot_hangup_reaches_asterisk_as_hangup_then_close() {
    let mut bot = TestBot::start().await;
    let mut d = Daemon::with_config(with_chanws(one_listener(pipecat_route(&bot.url, 16000)))).await;
    let (mut ws, _) = asterisk(d.chanws.expect("listener"), "/").await;
    ws.send(Message::Text(START_SLIN16.into()))
        .await
        .expect("MEDIA_START");
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("the bot's start message");
    // The bot ends the call with a normal close.
    link.ws.close(None).await.expect("bot close");
    let mut texts = Vec::new();
    while let Some(m) = next(&mut ws).await {
        if let Message::Text(t) = m {
            texts.push(t.as_str().to_string());
        }
    }
    assert_eq!(
        texts,
        ["HANGUP"],
        "Asterisk is told to hang up, then the socket closes"
    );
    assert_eq!(ended_with(&mut d).await, HangupCause::BotHangup);
}

#[tokio::test]
async fn a_connection_that_does_not_start_with_media_start_is_refused() {
    let bot = TestBot::start().await;
    let d = Daemon::with_config(with_chanws(one_listener(pipecat_route(&bot.url, 16000)))).await;
    let addr = d.chanws.expect("listener");
    let (mut ws, _) = asterisk(addr, "/").await;
    ws.send(Message::Text("MEDIA_XON".into())).await.expect("send");
    assert!(next(&mut ws).await.is_none(), "closed");
    assert_eq!(
        d.metrics
            .rejected_connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        d.metrics.active_calls.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // A route the daemon does not have: refused at the upgrade.
    match upgrade(addr, "/?route=nope").await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 404),
        other => panic!("expected a 404, got {:?}", other.map(|_| ())),
    }
}

/// `MEDIA_START` as Asterisk sends it on a server-mode (`INCOMING`)
/// channel with the JSON control format.
const START_SERVER_JSON: &str = r#"{"event":"MEDIA_START","connection_id":"4f8a2c1e-7d3b-4c2a-9e1f-0a1b2c3d4e5f","channel":"WebSocket/INCOMING-00000001","channel_id":"1733412399.21","format":"slin16","optimal_frame_size":640,"ptime":20,"channel_variables":{"VOXBRIDGE_CALL_ID":"out-1"}}"#;

/// Asterisk in server mode: serves `/media/<connection id>` with the
/// `media` subprotocol; hands the upgraded socket and the path out.
// The handshake callback's error type is tungstenite's (an HTTP response).
#[allow(clippy::result_large_err)]
async fn asterisk_server() -> (SocketAddr, tokio::sync::mpsc::Receiver<(Ws, String)>) {
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response as SrvResponse};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut path = String::new();
                let cb = |req: &Request, mut resp: SrvResponse| {
                    path = req.uri().path().to_string();
                    let offered = req
                        .headers()
                        .get("Sec-WebSocket-Protocol")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    assert_eq!(offered, "media", "voxbridge offers the media subprotocol");
                    resp.headers_mut()
                        .insert("Sec-WebSocket-Protocol", "media".parse().expect("header"));
                    Ok(resp)
                };
                if let Ok(ws) = tokio_tungstenite::accept_hdr_async(sock, cb).await {
                    let _ = tx.send((ws, path)).await;
                }
            });
        }
    });
    (addr, rx)
}

fn dial_to(call_id: &str, url: String) -> voxbridge_media::commands::AsteriskMediaDial {
    voxbridge_media::commands::AsteriskMediaDial {
        call_id: call_id.into(),
        route: "default".into(),
        url,
        params: [("callee".to_string(), "+15550100".to_string())].into(),
    }
}

#[tokio::test]
async fn we_dial_asterisk_in_server_mode_and_the_call_runs_bit_exact() {
    use voxbridge_media::CallCommands;
    let bot_url = echo_bot().await;
    let mut d = Daemon::with_config(one_listener(pipecat_route(&bot_url, 16000))).await;
    let (ast, mut accepted) = asterisk_server().await;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let url = format!("ws://{ast}/media/4f8a2c1e-7d3b-4c2a-9e1f-0a1b2c3d4e5f");
    d.commands
        .dial_asterisk_media(dial_to("out-1", url), Box::new(move |r| drop(done_tx.send(r))))
        .expect("dial accepted");
    let (mut ws, path) = within("voxbridge connects", accepted.recv())
        .await
        .expect("connected");
    assert_eq!(path, "/media/4f8a2c1e-7d3b-4c2a-9e1f-0a1b2c3d4e5f");
    // The same id again while the first runs: refused at once.
    let again = d.commands.dial_asterisk_media(
        dial_to("out-1", format!("ws://{ast}/media/x")),
        Box::new(|_| panic!("a refused dial never reports")),
    );
    assert!(again.expect_err("in use").contains("in use"));
    ws.send(Message::Text(START_SERVER_JSON.into()))
        .await
        .expect("MEDIA_START");
    within("the dial reports", done_rx)
        .await
        .expect("reported")
        .expect("the call runs");
    let CallEvent::Created { info, .. } = d
        .event("call created", |e| matches!(e, CallEvent::Created { .. }))
        .await
    else {
        unreachable!()
    };
    assert_eq!((info.call_id.as_str(), info.ingress), ("out-1", "chanws"));
    assert_eq!(info.callee.as_deref(), Some("+15550100"));
    assert_eq!(
        info.params.get("asterisk_connection_id").map(String::as_str),
        Some("4f8a2c1e-7d3b-4c2a-9e1f-0a1b2c3d4e5f")
    );
    assert_eq!(
        info.params.get("direction").map(String::as_str),
        Some("outgoing"),
        "a call voxbridge placed says so"
    );

    let sent = signal(16_000);
    send_slin16(&mut ws, &sent).await;
    assert!(
        echo_of(&mut ws, sent.len()).await == sent,
        "the round trip is bit-exact at slin16"
    );
    // Asterisk hangs the channel up (ARI tore the bridge down).
    ws.close(None).await.expect("close");
    assert_eq!(ended_with(&mut d).await, HangupCause::CallerHangup);
}

#[tokio::test]
async fn a_dial_that_cannot_connect_reports_why_and_frees_the_call_id() {
    use voxbridge_media::CallCommands;
    let bot = TestBot::start().await;
    let d = Daemon::with_config(one_listener(pipecat_route(&bot.url, 16000))).await;
    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead = closed.local_addr().expect("addr");
    drop(closed);
    let (tx, rx) = tokio::sync::oneshot::channel();
    d.commands
        .dial_asterisk_media(
            dial_to("out-2", format!("ws://{dead}/media/abc")),
            Box::new(move |r| drop(tx.send(r))),
        )
        .expect("started");
    let why = within("the dial reports", rx)
        .await
        .expect("reported")
        .expect_err("nothing listens");
    assert!(why.contains("media WebSocket"), "{why}");
    // Refused before any attempt: an unknown route, a URL that is not ws.
    let mut bad = dial_to("out-3", format!("ws://{dead}/media/abc"));
    bad.route = "nope".into();
    let e = d
        .commands
        .dial_asterisk_media(bad, Box::new(|_| {}))
        .expect_err("no route");
    assert!(e.contains("nope"), "{e}");
    let e = d
        .commands
        .dial_asterisk_media(dial_to("out-4", "http://x/media/a".into()), Box::new(|_| {}))
        .expect_err("not ws");
    assert!(e.contains("ws://"), "{e}");
    // The failed call's id is free again.
    let (tx, rx) = tokio::sync::oneshot::channel();
    d.commands
        .dial_asterisk_media(
            dial_to("out-2", format!("ws://{dead}/media/abc")),
            Box::new(move |r| drop(tx.send(r))),
        )
        .expect("the id is free again");
    assert!(within("the dial reports", rx).await.expect("reported").is_err());
}

#[tokio::test]
async fn a_quiet_asterisk_that_answers_pings_keeps_the_call_and_a_silent_one_is_hung_up() {
    // Asterisk sends no frames while the caller's side makes none (a real
    // capture: nothing during the dialplan's Wait()), so silence alone must
    // not end the call; a peer that does not even answer a ping is gone.
    let bot = TestBot::start().await;
    let mut config = with_chanws(one_listener(pipecat_route(&bot.url, 16000)));
    config.limits.media_timeout_ms = 1000;
    let mut d = Daemon::with_config(config).await;
    let (mut ws, _) = asterisk(d.chanws.expect("listener"), "/").await;
    ws.send(Message::Text(START_SLIN16.into()))
        .await
        .expect("MEDIA_START");
    // Reading answers pings (tungstenite pongs on read). Three pings, each
    // after half a timeout of quiet: the call has outlived the timeout.
    let mut pings = 0;
    while pings < 3 {
        match next(&mut ws).await.expect("the call stays up") {
            Message::Ping(_) => pings += 1,
            Message::Binary(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    while let Ok(e) = d.events.try_recv() {
        assert!(
            !matches!(e, CallEvent::Hungup { .. }),
            "hung up while pongs came: {e:?}"
        );
    }
    assert_eq!(
        d.metrics.active_calls.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Now nothing is read, so no pong: the timeout ends the call.
    assert_eq!(ended_with(&mut d).await, HangupCause::MediaTimeout);
    drop(ws);
}
