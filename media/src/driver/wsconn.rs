//! WebSocket I/O of the chan_websocket leg and of the bot link: the sans-IO
//! RFC 6455 codec of [`voxbridge_proto::websocket`] over a plain TCP
//! stream, with one receive and one send buffer per connection.
//!
//! Why not tungstenite here: at 200 calls its per-message read path
//! (stream polling, a `BytesMut` split and refcount per message, a memmove
//! per read) was the largest cost of the chan_websocket leg in `perf`
//! (benches/RESULTS.md, "chan_websocket capacity"). This codec decodes a
//! frame in place (unmasking it in its receive buffer, handing out a
//! `Bytes` slice) and encodes straight into the send buffer, which one
//! non-blocking write drains per wake-up; neither allocates per frame once
//! the buffers have grown to a frame's size. `wss://` (a TLS bot, or
//! Asterisk dialled over TLS) keeps tungstenite ([`WsSocket::Tls`]), where
//! TLS costs more than framing.
//!
//! Sends never wait: what the socket does not take stays in the send
//! buffer, up to [`MAX_SEND_BUFFER`]; beyond it the caller keeps messages
//! in its own queue ([`Queued::Full`]). Failures are plain reasons
//! ([`Failure`]); the leg and the bot link wrap them in their own error
//! variants.

use super::botlink::{self, Queued};
use crate::sansio::botcodec::Outgoing;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{FutureExt, Sink, StreamExt};
use std::pin::Pin;
use std::task::{Context, Waker};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use voxbridge_proto::websocket::{self as ws, Decoder, Message, Opcode, Role, Upgrade};

/// At most this much waits in a connection's send buffer (~4 s of 16 kHz audio).
pub const MAX_SEND_BUFFER: usize = botlink::MAX_WRITE_BUFFER;
/// Read at least this much room at a time (a few 20 ms frames).
const READ_CHUNK: usize = 4 * 1024;

/// Why a connection failed or was refused, for a log line.
pub(crate) type Failure = String;

fn failure(e: impl std::fmt::Display) -> Failure {
    e.to_string()
}

/// Why reading a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadFailure {
    /// The peer closed the TCP connection.
    Closed,
    /// The peer's bytes broke RFC 6455 (bad input: count it).
    Protocol(String),
    /// The socket failed.
    Io(String),
}

impl std::fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadFailure::Closed => f.write_str("connection closed"),
            ReadFailure::Protocol(why) => write!(f, "WebSocket protocol: {why}"),
            ReadFailure::Io(why) => write!(f, "i/o: {why}"),
        }
    }
}

/// One WebSocket connection: to or from Asterisk, or to a bot.
pub(crate) enum WsSocket {
    /// `ws://`, either direction: the codec of this module.
    Plain(Box<WsConn>),
    /// `wss://` when dialling: tungstenite with rustls.
    Tls(Box<botlink::Ws>),
}

/// A plain WebSocket connection on the sans-IO codec.
pub(crate) struct WsConn {
    stream: TcpStream,
    role: Role,
    rx: BytesMut,
    tx: BytesMut,
    decoder: Decoder,
    /// Masking keys of a client's frames (xorshift; RFC 6455 asks for keys
    /// a browser script cannot predict, and no script runs here).
    mask_state: u64,
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9E37_79B9_7F4A_7C15);
    h.finish() | 1
}

impl WsConn {
    fn new(stream: TcpStream, role: Role, rx: BytesMut) -> Self {
        WsConn {
            stream,
            role,
            rx,
            tx: BytesMut::with_capacity(READ_CHUNK),
            decoder: Decoder::new(role, botlink::MAX_MESSAGE),
            mask_state: seed(),
        }
    }

    fn next_mask(&mut self) -> Option<[u8; 4]> {
        if self.role == Role::Server {
            return None;
        }
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.mask_state = x;
        Some((x as u32).to_be_bytes())
    }

    /// Reads an upgrade request from `sock` and answers it: `decide` picks
    /// the subprotocol to echo, or refuses with a status and a reason.
    pub(crate) async fn accept<F>(mut sock: TcpStream, decide: F) -> Result<(WsConn, Upgrade), Failure>
    where
        F: FnOnce(&Upgrade) -> Result<Option<&'static str>, (u16, String)>,
    {
        let mut rx = BytesMut::with_capacity(READ_CHUNK);
        let (up, used) = loop {
            match ws::accept(&rx) {
                Ok(Some(done)) => break done,
                Ok(None) => {}
                Err(e) => {
                    let _ = sock.try_write(ws::reject_response(400, &e.to_string()).as_bytes());
                    return Err(failure(e));
                }
            }
            if sock.read_buf(&mut rx).await.map_err(failure)? == 0 {
                return Err("closed during the upgrade".into());
            }
        };
        rx.advance(used);
        match decide(&up) {
            Ok(protocol) => {
                sock.write_all(ws::accept_response(&up, protocol).as_bytes())
                    .await
                    .map_err(failure)?;
                Ok((WsConn::new(sock, Role::Server, rx), up))
            }
            Err((status, reason)) => {
                let _ = sock
                    .write_all(ws::reject_response(status, &reason).as_bytes())
                    .await;
                Err(reason)
            }
        }
    }

    /// Connects to a `ws://` URL, offering `protocol` if given.
    pub(crate) async fn connect(url: &str, protocol: Option<&str>) -> Result<WsConn, Failure> {
        let uri: tokio_tungstenite::tungstenite::http::Uri = url.parse().map_err(failure)?;
        let host = uri.host().ok_or("the URL has no host")?;
        let port = uri.port_u16().unwrap_or(80);
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut sock = TcpStream::connect((host.trim_matches(|c| c == '[' || c == ']'), port))
            .await
            .map_err(failure)?;
        let _ = sock.set_nodelay(true);
        let mut key_bytes = [0u8; 16];
        let mut k = seed();
        for chunk in key_bytes.chunks_mut(8) {
            k = k
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            chunk.copy_from_slice(&k.to_le_bytes());
        }
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD.encode(key_bytes);
        let authority = uri.authority().map_or(host, |a| a.as_str());
        sock.write_all(ws::client_request(authority, target, &key, protocol).as_bytes())
            .await
            .map_err(failure)?;
        let mut rx = BytesMut::with_capacity(READ_CHUNK);
        loop {
            if let Some((chosen, used)) = ws::client_confirm(&rx, &key).map_err(failure)? {
                if let Some(other) = chosen.filter(|c| Some(c.as_str()) != protocol) {
                    return Err(format!(
                        "the server chose subprotocol {other:?}, not {protocol:?}"
                    ));
                }
                rx.advance(used);
                return Ok(WsConn::new(sock, Role::Client, rx));
            }
            if sock.read_buf(&mut rx).await.map_err(failure)? == 0 {
                return Err("closed during the upgrade".into());
            }
        }
    }

    /// The next message (cancel-safe: bytes read stay in the buffer). A
    /// ping is answered here; it is still handed out, as proof of life.
    async fn next(&mut self) -> Result<Message, ReadFailure> {
        loop {
            let decoded = self.decoder.decode(&mut self.rx);
            if let Some(m) = decoded.map_err(|e| ReadFailure::Protocol(e.to_string()))? {
                if let Message::Ping(p) = &m {
                    if self.tx.len() < MAX_SEND_BUFFER {
                        let mask = self.next_mask();
                        ws::encode(&mut self.tx, Opcode::Pong, p, mask);
                    }
                }
                return Ok(m);
            }
            if self.rx.capacity() - self.rx.len() < READ_CHUNK / 2 {
                self.rx.reserve(READ_CHUNK);
            }
            let read = self.stream.read_buf(&mut self.rx).await;
            if read.map_err(|e| ReadFailure::Io(e.to_string()))? == 0 {
                return Err(ReadFailure::Closed);
            }
        }
    }

    fn queue(&mut self, opcode: Opcode, payload: &[u8]) -> Queued {
        if self.tx.len() >= MAX_SEND_BUFFER {
            return Queued::Full;
        }
        let mask = self.next_mask();
        ws::encode(&mut self.tx, opcode, payload, mask);
        Queued::Taken
    }

    /// Writes what the socket takes now, without waiting.
    fn flush(&mut self) -> Result<(), Failure> {
        while !self.tx.is_empty() {
            match self.stream.try_write(&self.tx) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.tx.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(failure(e)),
            }
        }
        Ok(())
    }

    fn queue_close(&mut self) {
        let mask = self.next_mask();
        ws::encode_close(&mut self.tx, Some(1000), mask);
    }
}

impl WsSocket {
    /// Dials `url`: `ws://` on this module's codec, `wss://` through
    /// tungstenite; offers `protocol` if given.
    pub(crate) async fn connect(url: &str, protocol: Option<&'static str>) -> Result<WsSocket, Failure> {
        if url.starts_with("ws://") {
            return Ok(WsSocket::Plain(Box::new(WsConn::connect(url, protocol).await?)));
        }
        let mut req = url.into_client_request().map_err(failure)?;
        if let Some(p) = protocol {
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(p));
        }
        let (s, _) = tokio_tungstenite::connect_async_with_config(req, Some(botlink::ws_config()), true)
            .await
            .map_err(failure)?;
        Ok(WsSocket::Tls(Box::new(s)))
    }

    /// The next message; an error (or the stream's end) means the connection is gone.
    pub(crate) async fn next(&mut self) -> Result<Message, ReadFailure> {
        use tokio_tungstenite::tungstenite::{Error as E, Message as T};
        match self {
            WsSocket::Plain(c) => c.next().await,
            WsSocket::Tls(s) => loop {
                return Ok(match s.next().await {
                    Some(Ok(T::Text(t))) => Message::Text(Bytes::from(t)),
                    Some(Ok(T::Binary(b))) => Message::Binary(b),
                    Some(Ok(T::Ping(p))) => Message::Ping(p),
                    Some(Ok(T::Pong(p))) => Message::Pong(p),
                    Some(Ok(T::Close(c))) => {
                        Message::Close(c.map(|c| (u16::from(c.code), c.reason.to_string())))
                    }
                    Some(Ok(T::Frame(_))) => continue,
                    Some(Err(e @ (E::Protocol(_) | E::Capacity(_) | E::Utf8(_)))) => {
                        return Err(ReadFailure::Protocol(e.to_string()))
                    }
                    Some(Err(E::ConnectionClosed | E::AlreadyClosed)) | None => {
                        return Err(ReadFailure::Closed)
                    }
                    Some(Err(e)) => return Err(ReadFailure::Io(e.to_string())),
                });
            },
        }
    }

    /// Queues a message without waiting.
    pub(crate) fn queue(&mut self, o: &Outgoing) -> Result<Queued, Failure> {
        match self {
            WsSocket::Plain(c) => Ok(match o {
                Outgoing::Text(t) => c.queue(Opcode::Text, t),
                Outgoing::Binary(b) => c.queue(Opcode::Binary, b),
            }),
            WsSocket::Tls(s) => botlink::queue(s, o.clone()).map_err(failure),
        }
    }

    /// Bytes wait in this module's send buffer (tungstenite keeps its own).
    pub(crate) fn has_unsent(&self) -> bool {
        match self {
            WsSocket::Plain(c) => !c.tx.is_empty(),
            WsSocket::Tls(_) => false,
        }
    }

    /// Queues a ping (an empty one).
    pub(crate) fn ping(&mut self) {
        use tokio_tungstenite::tungstenite::Message as T;
        match self {
            WsSocket::Plain(c) => drop(c.queue(Opcode::Ping, &[])),
            WsSocket::Tls(s) => drop(Pin::new(s.as_mut()).start_send(T::Ping(Bytes::new()))),
        }
    }

    /// One non-blocking flush; an error means the connection is gone.
    pub(crate) fn flush(&mut self) -> Result<(), Failure> {
        match self {
            WsSocket::Plain(c) => c.flush(),
            WsSocket::Tls(s) => botlink::flush(s).map_err(failure),
        }
    }

    /// A close frame, best effort and without waiting.
    pub(crate) fn close_now(&mut self) {
        use tokio_tungstenite::tungstenite::Message as T;
        match self {
            WsSocket::Plain(c) => {
                c.queue_close();
                let _ = c.flush();
                // Half-close the write side so the peer sees the end at once.
                let mut cx = Context::from_waker(Waker::noop());
                let _ = Pin::new(&mut c.stream).poll_shutdown(&mut cx);
            }
            WsSocket::Tls(s) => {
                let _ = Pin::new(s.as_mut()).start_send(T::Close(None));
                let _ = futures_util::SinkExt::flush(s.as_mut()).now_or_never();
            }
        }
    }

    /// Sends `last` if given, closes, and waits (bounded by the caller)
    /// for it all to be written.
    pub(crate) async fn close(&mut self, last: Option<Outgoing>) {
        match self {
            WsSocket::Plain(c) => {
                if let Some(o) = last {
                    match o {
                        Outgoing::Text(t) => drop(c.queue(Opcode::Text, &t)),
                        Outgoing::Binary(b) => drop(c.queue(Opcode::Binary, &b)),
                    }
                }
                c.queue_close();
                let tx = std::mem::take(&mut c.tx);
                let _ = c.stream.write_all(&tx).await;
                let _ = c.stream.shutdown().await;
            }
            WsSocket::Tls(s) => {
                if let Some(o) = last {
                    let _ = futures_util::SinkExt::send(s.as_mut(), botlink::to_message(o)).await;
                }
                let _ = s.close(None).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! This codec against tungstenite as the peer, both roles.
    use super::*;
    use futures_util::SinkExt;
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::Message as T;

    #[tokio::test]
    async fn as_a_server_to_a_tungstenite_client() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "ws://{}/media/sales?call_id=a%20b",
            listener.local_addr().expect("addr")
        );
        let peer = tokio::spawn(async move {
            let mut req = url.into_client_request().expect("request");
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("media"));
            let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.expect("upgrade");
            assert_eq!(resp.headers()["sec-websocket-protocol"], "media");
            ws.send(T::Ping(Bytes::from_static(b"p1"))).await.expect("ping");
            ws.send(T::Binary(Bytes::from(vec![3u8; 70_000])))
                .await
                .expect("binary");
            let mut got = Vec::new();
            while let Some(Ok(m)) = ws.next().await {
                let close = matches!(m, T::Close(_));
                got.push(m);
                if close {
                    break;
                }
            }
            got
        });
        let (sock, _) = listener.accept().await.expect("accept");
        let (conn, up) = WsConn::accept(sock, |up| {
            assert!(up.protocols.iter().any(|p| p == "media"));
            Ok(Some("media"))
        })
        .await
        .expect("accepted");
        assert_eq!((up.path(), up.query()), ("/media/sales", "call_id=a%20b"));
        let mut s = WsSocket::Plain(Box::new(conn));
        assert_eq!(s.next().await, Ok(Message::Ping(Bytes::from_static(b"p1"))));
        assert!(s.has_unsent(), "the pong waits for the flush");
        assert_eq!(
            s.next().await,
            Ok(Message::Binary(Bytes::from(vec![3u8; 70_000])))
        );
        let text = Outgoing::Text(Bytes::from_static(b"MEDIA_XON"));
        assert_eq!(s.queue(&text), Ok(Queued::Taken));
        s.flush().expect("flush");
        s.close(None).await;
        let got = peer.await.expect("peer");
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], T::Pong(Bytes::from_static(b"p1")));
        assert_eq!(got[1], T::Text("MEDIA_XON".into()));
        assert!(
            matches!(got[2], T::Close(Some(ref c)) if u16::from(c.code) == 1000),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn an_unmasked_client_frame_is_a_protocol_failure_and_eof_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let peer = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let head = ws::client_request(&addr.to_string(), "/", "dGhlIHNhbXBsZSBub25jZQ==", None);
            s.write_all(head.as_bytes()).await.expect("head");
            let mut answer = [0u8; 256];
            let _ = s.read(&mut answer).await.expect("101");
            // A text frame with no mask, as no client may send.
            s.write_all(&[0x81, 0x02, b'h', b'i']).await.expect("frame");
            s
        });
        let (sock, _) = listener.accept().await.expect("accept");
        let (conn, _) = WsConn::accept(sock, |_| Ok(None)).await.expect("accepted");
        let mut s = WsSocket::Plain(Box::new(conn));
        match s.next().await {
            Err(ReadFailure::Protocol(why)) => assert!(why.contains("without a mask"), "{why}"),
            other => panic!("{other:?}"),
        }
        drop(peer.await.expect("peer"));

        // A client that sends its head and then ends the connection.
        let quitter = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            let head = ws::client_request(&addr.to_string(), "/", "dGhlIHNhbXBsZSBub25jZQ==", None);
            c.write_all(head.as_bytes()).await.expect("head");
            c.shutdown().await.expect("eof after the head");
            c
        });
        let (sock, _) = listener.accept().await.expect("accept");
        let (conn, _) = WsConn::accept(sock, |_| Ok(None)).await.expect("accepted");
        assert_eq!(
            WsSocket::Plain(Box::new(conn)).next().await,
            Err(ReadFailure::Closed)
        );
        drop(quitter.await.expect("client"));
    }

    #[tokio::test]
    async fn as_a_client_to_a_tungstenite_server() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/bot?token=t", listener.local_addr().expect("addr"));
        let peer = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.expect("accept");
            let mut ws = tokio_tungstenite::accept_async(sock).await.expect("upgrade");
            // Echo until the client closes; tungstenite refuses unmasked
            // client frames, so each echo proves the masking.
            while let Some(Ok(m)) = ws.next().await {
                match m {
                    T::Binary(_) | T::Text(_) => ws.send(m).await.expect("echo"),
                    T::Close(_) => break,
                    _ => {}
                }
            }
            ws.send(T::Close(None)).await.ok();
        });
        let mut s = WsSocket::connect(&url, None).await.expect("connected");
        for len in [0usize, 125, 126, 640, 65_536] {
            let payload = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
            assert_eq!(s.queue(&Outgoing::Binary(payload.clone())), Ok(Queued::Taken));
            s.flush().expect("flush");
            assert_eq!(s.next().await, Ok(Message::Binary(payload)), "{len}");
        }
        s.close(None).await;
        peer.await.expect("peer");
        let refused = WsSocket::connect(&format!("ws://{}/x", "127.0.0.1:9"), None).await;
        assert!(refused.is_err());
    }
}
