//! The bot WebSocket connection: connect with a deadline, then non-blocking
//! sends.
//!
//! Sends never wait on a slow bot: messages are queued in tungstenite's write
//! buffer and flushed once per batch with a single poll; what the socket does
//! not take now goes out with the next flush (at most 20 ms later). A bot that
//! stops reading fills the buffer up to [`MAX_WRITE_BUFFER`]; the next send is
//! refused ([`BotLinkError::Stalled`]) and the call treats the bot as failed
//! (its route's `on_bot_failure`), so a stuck bot can never stall the
//! caller's 20 ms clock nor swallow its audio unseen.

use crate::botcodec::Outgoing;
use crate::config::Route;
use crate::error::BotLinkError;
use futures_util::{FutureExt, Sink, SinkExt};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The link's stream type.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A bot that has not read 4 MiB of queued messages (~100 s of 16 kHz audio) is dropped.
pub const MAX_WRITE_BUFFER: usize = 4 << 20;
/// Largest message accepted from a bot (10 s of 48 kHz PCM16 is 960 KB).
pub const MAX_MESSAGE: usize = 4 << 20;

/// A connect in progress.
pub type Connecting = Pin<Box<dyn Future<Output = Result<(Ws, Duration), BotLinkError>> + Send>>;

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

/// Starts connecting to the route's bot; resolves to the stream and the time it took.
pub fn connect(route: &Route) -> Connecting {
    let url = route.url.clone();
    let deadline = route.connect_timeout();
    Box::pin(async move {
        let t0 = Instant::now();
        let attempt = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config()), true);
        // The URL may carry a token: errors (and so logs) show it redacted.
        let shown = crate::secret::redact_url(&url);
        match tokio::time::timeout(deadline, attempt).await {
            Err(_) => Err(BotLinkError::ConnectTimeout {
                url: shown,
                timeout_ms: deadline.as_millis() as u64,
            }),
            Ok(Err(e)) => Err(BotLinkError::Connect {
                url: shown,
                reason: e.to_string(),
            }),
            Ok(Ok((ws, _response))) => Ok((ws, t0.elapsed())),
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

/// Queues a message without waiting (see the module docs).
pub fn queue(ws: &mut Ws, o: Outgoing) -> Result<(), BotLinkError> {
    let mut sink = Pin::new(ws);
    sink.as_mut().start_send(to_message(o)).map_err(|e| match e {
        tokio_tungstenite::tungstenite::Error::WriteBufferFull(_) => BotLinkError::Stalled {
            unsent: MAX_WRITE_BUFFER,
        },
        e => BotLinkError::Dropped(format!("send: {e}")),
    })
}

/// One non-blocking flush attempt; an error means the link is gone.
pub fn flush(ws: &mut Ws) -> Result<(), BotLinkError> {
    match ws.flush().now_or_never() {
        None | Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(BotLinkError::Dropped(format!("flush: {e}"))),
    }
}

/// Sends the last message and closes, in the background, bounded by one second.
pub fn close_with(mut ws: Ws, last: Option<Outgoing>) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            if let Some(m) = last {
                let _ = ws.send(to_message(m)).await;
            }
            let _ = ws.close(None).await;
        })
        .await;
    });
}
