//! `voxbridge loadgen --mode chanws`: callers that play Asterisk's part of
//! its WebSocket media channel (`chan_websocket` dialling voxbridge): the
//! `media` subprotocol, `MEDIA_START` for 8 kHz signed linear with 20 ms
//! frames (the same audio and frame size as the AudioSocket mode, so the
//! two compare), then one 320-byte binary message per 20 ms. The call id
//! goes in the URL (`?call_id=`), so the echo bot can match its frames.

use anyhow::Context as _;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::StreamExt;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use voxbridge_proto::chanws::{ControlFormat, Event, MediaStart};

/// The caller's WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// Connects to the daemon's chan_websocket listener at `target` as call
/// `call_id` and sends `MEDIA_START`; returns the two halves.
pub async fn connect(
    target: SocketAddr,
    call_id: &str,
) -> anyhow::Result<(SplitSink<Ws, Message>, SplitStream<Ws>)> {
    let mut req = format!("ws://{target}/media?call_id={call_id}")
        .into_client_request()
        .context("chan_websocket request")?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "media".parse().context("header")?);
    let sock = TcpStream::connect(target)
        .await
        .with_context(|| format!("connect to the daemon's chan_websocket listener at {target}"))?;
    sock.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async(req, sock)
        .await
        .context("chan_websocket upgrade")?;
    let start = Event::MediaStart(MediaStart {
        connection_id: "loadgen".into(),
        channel: format!("WebSocket/loadgen/{call_id}"),
        channel_id: call_id.into(),
        format: "slin".into(),
        optimal_frame_size: 320,
        ptime: 20,
        channel_variables: Default::default(),
    });
    let mut text = String::new();
    start.write(ControlFormat::PlainText, call_id, &mut text);
    futures_util::SinkExt::send(&mut ws, Message::Text(text.into()))
        .await
        .context("MEDIA_START")?;
    Ok(ws.split())
}
