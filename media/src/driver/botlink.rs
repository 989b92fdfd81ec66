//! The bot WebSocket connection: connect with a deadline, then non-blocking
//! sends. A `ws://` bot is spoken to with the sans-IO codec of
//! [`super::wsconn`]; a `wss://` one through tungstenite with rustls.
//!
//! Sends never wait on a slow bot: messages move from the call's queue
//! toward the bot into the link's send buffer (at most
//! [`MAX_WRITE_BUFFER`], like a socket buffer) and are flushed once per batch
//! with a single non-blocking write; what the buffer does not take stays in
//! the call's queue for the next flush (at most 20 ms later). A bot that stops reading
//! lets that queue reach its bound, and the call treats the bot as failed
//! (`BotLinkError::Stalled`, its route's `on_bot_failure`), so a stuck bot
//! can never stall the caller's 20 ms clock nor swallow its audio unseen.

use super::wsconn::WsSocket;
use crate::config::Route;
use crate::error::BotLinkError;
use crate::sansio::botcodec::Outgoing;
use futures_util::{FutureExt, Sink, SinkExt};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// tungstenite's stream type (`wss://` links, tests and loadgen).
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The link's write buffer holds at most this much (~4 s of 16 kHz audio);
/// beyond it messages wait in the call's queue toward the bot.
pub const MAX_WRITE_BUFFER: usize = 128 * 1024;
/// Largest message accepted from a bot (10 s of 48 kHz PCM16 is 960 KB).
pub const MAX_MESSAGE: usize = 4 << 20;

/// A connect in progress.
pub(crate) type Connecting = Pin<Box<dyn Future<Output = Result<(WsSocket, Duration), BotLinkError>> + Send>>;

/// WebSocket settings per link: small buffers (thousands of calls per core).
/// tungstenite zero-fills `read_buffer_size` bytes before every read, so it
/// is kept near the size of one 20 ms message (a 24 kHz frame is ~1 KB);
/// TTS bursts simply take several reads.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Starts connecting to the route's bot; resolves to the link and the time it took.
pub(crate) fn connect(route: &Route) -> Connecting {
    let url = route.url.clone();
    let deadline = route.connect_timeout();
    let subprotocol = route.protocol.subprotocol();
    Box::pin(async move {
        let t0 = Instant::now();
        let attempt = WsSocket::connect(url.as_str(), subprotocol);
        // The URL may carry a token: errors (and so logs) show it redacted.
        let shown = crate::secret::redact_url(&url);
        match tokio::time::timeout(deadline, attempt).await {
            Err(_) => Err(BotLinkError::ConnectTimeout {
                url: shown,
                timeout_ms: deadline.as_millis() as u64,
            }),
            Ok(Err(reason)) => Err(BotLinkError::Connect { url: shown, reason }),
            Ok(Ok(ws)) => Ok((ws, t0.elapsed())),
        }
    })
}

/// Converts a codec payload into a WebSocket message.
pub fn to_message(o: Outgoing) -> Message {
    match o {
        // The codec only produces UTF-8 in Text; a failure here would be a bug,
        // and sending it as binary keeps the link alive.
        Outgoing::Text(b) => match Utf8Bytes::try_from(b.clone()) {
            Ok(t) => Message::Text(t),
            Err(_) => Message::Binary(b),
        },
        Outgoing::Binary(b) => Message::Binary(b),
    }
}

/// Whether the link's write buffer took a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// It is in the write buffer.
    Taken,
    /// The buffer is full: the message stays in the call's queue.
    Full,
}

/// Queues a message without waiting (see the module docs); an error means
/// the link is gone.
pub fn queue<S>(ws: &mut WebSocketStream<S>, o: Outgoing) -> Result<Queued, BotLinkError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut sink = Pin::new(ws);
    match sink.as_mut().start_send(to_message(o)) {
        Ok(()) => Ok(Queued::Taken),
        Err(tokio_tungstenite::tungstenite::Error::WriteBufferFull(_)) => Ok(Queued::Full),
        Err(e) => Err(BotLinkError::Dropped(format!("send: {e}"))),
    }
}

/// One non-blocking flush attempt; an error means the link is gone.
pub fn flush<S>(ws: &mut WebSocketStream<S>) -> Result<(), BotLinkError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match ws.flush().now_or_never() {
        None | Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(BotLinkError::Dropped(format!("flush: {e}"))),
    }
}

/// Sends the last message and closes, in the background, bounded by one second.
pub(crate) fn close_with(mut ws: WsSocket, last: Option<Outgoing>) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(last)).await;
    });
}
