//! SIP over TCP and TLS: an accept task per listener hands new connections
//! to the endpoint task, which admits them (allowed networks, the
//! connection cap) and starts one task per connection. A connection task
//! only moves bytes: it frames messages off the stream
//! ([`decode_stream`], `Content-Length` framing) and hands them to the
//! endpoint, and writes what the endpoint queues for its peer. The UAS
//! never sees a socket, and parsing runs beside signalling.
//!
//! A connection lives until its peer closes it, a read or write fails, or
//! it sends bytes that cannot be framed (counted as malformed and answered
//! `400` where the request can be addressed: the stream has lost its
//! place, so it is closed), or sends no whole message within
//! [`FIRST_MESSAGE_TIMEOUT`] of being accepted (so silent connections
//! cannot hold the `max_connections` slots). TLS handshakes must finish
//! within [`HANDSHAKE_TIMEOUT`], inside that.

use crate::sansio::sip::Peer;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::task::TaskTracker;
use voxbridge_proto::sip::{bad_request, decode_stream, Message, Transport};

/// Messages queued for one connection at most; past it a send fails (and
/// is counted) rather than making signalling wait on a slow peer.
const WRITE_QUEUE: usize = 256;
/// The longest a TLS handshake may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a new connection may take to send its first whole message
/// (64*T1, the longest a transaction waits).
pub(crate) const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(32);
/// How long a connection voxbridge opened to a gateway may stay quiet
/// before its first message (a day: registrations and calls keep it).
pub(crate) const OUTBOUND_IDLE: Duration = Duration::from_secs(86_400);
/// Bytes read at a time.
const READ_CHUNK: usize = 8 * 1024;

/// A stream listener: TCP, or TLS with its acceptor.
pub(crate) struct StreamListener {
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

impl StreamListener {
    fn transport(&self) -> Transport {
        match self.tls {
            Some(_) => Transport::Tls,
            None => Transport::Tcp,
        }
    }
}

/// What the connections tell the endpoint task.
pub(crate) enum StreamEvent {
    /// A new connection, not yet admitted.
    Accepted {
        stream: TcpStream,
        peer: Peer,
        tls: Option<TlsAcceptor>,
    },
    /// A message framed off `peer`'s connection.
    Message(Peer, Message),
    /// `peer` sent bytes that cannot be framed (its connection is closing).
    Malformed(Peer),
    /// `peer`'s connection `id` is gone.
    Closed { peer: Peer, id: u64 },
    /// A connection voxbridge opened to a gateway ([`connect`]).
    Connected { stream: Outbound, peer: Peer },
    /// Opening one failed.
    ConnectFailed(Peer),
}

/// The longest opening a connection to a gateway may take (the TLS
/// handshake has [`HANDSHAKE_TIMEOUT`] more).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection voxbridge opened: TCP, or TLS over it.
pub(crate) enum Outbound {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// How voxbridge opens TLS to one gateway: the trust anchors and the name
/// the gateway's certificate must carry.
#[derive(Clone)]
pub(crate) struct TlsDial {
    pub connector: TlsConnector,
    pub name: ServerName<'static>,
}

/// Opens a connection to `peer` (a gateway voxbridge places calls on or
/// registers with) on a task, over TLS when `tls` is given (the gateway's
/// certificate checked against its trust anchors and name); the endpoint
/// hears `Connected` or `ConnectFailed`.
pub(crate) fn connect(
    tracker: &TaskTracker,
    peer: Peer,
    tls: Option<TlsDial>,
    events: mpsc::Sender<StreamEvent>,
) {
    tracker.spawn(async move {
        let opened = async {
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer.addr))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            match tls {
                None => Ok(Outbound::Tcp(tcp)),
                Some(t) => tokio::time::timeout(HANDSHAKE_TIMEOUT, t.connector.connect(t.name, tcp))
                    .await
                    .map_err(|_| "the TLS handshake timed out".to_owned())?
                    .map(|s| Outbound::Tls(Box::new(s)))
                    .map_err(|e| format!("TLS: {e}")),
            }
        };
        let event = match opened.await {
            Ok(stream) => StreamEvent::Connected { stream, peer },
            Err(e) => {
                tracing::warn!(%peer, error = %e, "SIP connection to the gateway failed");
                StreamEvent::ConnectFailed(peer)
            }
        };
        let _ = events.send(event).await;
    });
}

/// Starts the task of a connection voxbridge opened ([`connect`]); returns
/// its write queue. It may stay quiet for [`OUTBOUND_IDLE`] (a gateway
/// speaks when it has something to say).
pub(crate) fn spawn_outbound(
    tracker: &TaskTracker,
    stream: Outbound,
    peer: Peer,
    id: u64,
    events: mpsc::Sender<StreamEvent>,
) -> mpsc::Sender<Bytes> {
    let (writes_tx, writes) = mpsc::channel(WRITE_QUEUE);
    tracker.spawn(async move {
        match stream {
            Outbound::Tcp(s) => serve(s, peer, writes, OUTBOUND_IDLE, &events).await,
            Outbound::Tls(s) => serve(*s, peer, writes, OUTBOUND_IDLE, &events).await,
        }
        let _ = events.send(StreamEvent::Closed { peer, id }).await;
    });
    writes_tx
}

/// The TLS client setup for a gateway: the CAs in the PEM file `ca` (the
/// public web PKI's roots when none) and the name its certificate must
/// carry (`server_name`: a DNS name or an IP address).
pub(crate) fn tls_dial(
    ca: Option<&std::path::Path>,
    server_name: &str,
    what: &str,
) -> Result<TlsDial, crate::error::ConfigError> {
    use crate::error::ConfigError;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect())
                .map_err(|e| ConfigError(format!("{what}.tls_ca {}: {e}", path.display())))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ConfigError(format!(
                    "{what}.tls_ca {}: no CA certificate in it",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| ConfigError(format!("{what}.tls_server_name {server_name:?}: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError(format!("{what} TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsDial {
        connector: TlsConnector::from(Arc::new(config)),
        name,
    })
}

/// Accepts connections on `listener` until the endpoint is gone.
pub(crate) async fn accept_loop(listener: StreamListener, events: mpsc::Sender<StreamEvent>) {
    let transport = listener.transport();
    loop {
        match listener.listener.accept().await {
            Ok((stream, addr)) => {
                let accepted = StreamEvent::Accepted {
                    stream,
                    peer: Peer { transport, addr },
                    tls: listener.tls.clone(),
                };
                if events.send(accepted).await.is_err() {
                    return;
                }
            }
            // Out of file descriptors, say: wait a little rather than spin.
            Err(e) => {
                tracing::warn!(error = %e, transport = transport.via_name(), "SIP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Starts the task of an admitted connection; returns its write queue.
pub(crate) fn spawn_connection(
    tracker: &TaskTracker,
    stream: TcpStream,
    peer: Peer,
    id: u64,
    tls: Option<TlsAcceptor>,
    first_message_timeout: Duration,
    events: mpsc::Sender<StreamEvent>,
) -> mpsc::Sender<Bytes> {
    let (writes_tx, writes) = mpsc::channel(WRITE_QUEUE);
    tracker.spawn(async move {
        let _ = stream.set_nodelay(true);
        match tls {
            None => serve(stream, peer, writes, first_message_timeout, &events).await,
            Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => serve(tls_stream, peer, writes, first_message_timeout, &events).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "SIP TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "SIP TLS handshake timed out"),
            },
        }
        let _ = events.send(StreamEvent::Closed { peer, id }).await;
    });
    writes_tx
}

/// Reads messages off `stream` and writes `writes` to it until either side ends.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: Peer,
    writes: mpsc::Receiver<Bytes>,
    first_message_timeout: Duration,
    events: &mpsc::Sender<StreamEvent>,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    // Dropped before the stream: once the peer sees the connection close,
    // a message queued for it fails at once (the endpoint re-routes it).
    let mut writes = writes;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let silent_until = tokio::time::sleep(first_message_timeout);
    tokio::pin!(silent_until);
    let mut spoke = false;
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => return,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "SIP connection read failed");
                    return;
                }
                Ok(_) => loop {
                    match decode_stream(&mut buf) {
                        Ok(Some(msg)) => {
                            spoke = true;
                            if events.send(StreamEvent::Message(peer, msg)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "SIP stream cannot be framed: closing it");
                            // A 400 first where the request can be addressed.
                            if let Some(r) = bad_request(&buf, &e.to_string()) {
                                let _ = writer.write_all(&r).await;
                            }
                            let _ = writer.shutdown().await;
                            let _ = events.send(StreamEvent::Malformed(peer)).await;
                            return;
                        }
                    }
                },
            },
            () = &mut silent_until, if !spoke => {
                tracing::debug!(%peer, "SIP connection sent no message in time: closed");
                return;
            }
            write = writes.recv() => match write {
                Some(bytes) => {
                    if let Err(e) = writer.write_all(&bytes).await {
                        tracing::debug!(%peer, error = %e, "SIP connection write failed");
                        return;
                    }
                }
                // The endpoint is gone: close the stream cleanly.
                None => {
                    let _ = writer.shutdown().await;
                    return;
                }
            },
        }
    }
}

/// The TLS acceptor for `[sip] tls_cert` and `tls_key` (PEM): rustls with
/// its safe defaults (TLS 1.2 and 1.3), no client certificates.
pub(crate) fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<TlsAcceptor, crate::error::ConfigError> {
    use crate::error::ConfigError;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| ConfigError(format!("sip.tls_cert {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ConfigError(format!(
            "sip.tls_cert {}: no certificate in it",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ConfigError(format!("sip.tls_key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError(format!("sip TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ConfigError(format!(
                "sip.tls_cert and sip.tls_key do not make a TLS identity: {e}"
            ))
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/tls")
            .join(name)
    }

    /// A connection that never sends a whole message is closed once its
    /// first-message timeout passes (50 ms here), and its end reported.
    #[tokio::test]
    async fn a_silent_connection_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let (server, from) = listener.accept().await.expect("accept");
        let (events_tx, mut events) = mpsc::channel(4);
        let tracker = TaskTracker::new();
        let peer = Peer {
            transport: Transport::Tcp,
            addr: from,
        };
        // Half a request, then nothing.
        client
            .write_all(b"OPTIONS sip:x SIP/2.0\r\n")
            .await
            .expect("write");
        let silent = Duration::from_millis(50);
        let _writes = spawn_connection(&tracker, server, peer, 1, None, silent, events_tx);
        let ended = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
        match ended.expect("the connection ends well before 10 s") {
            Some(StreamEvent::Closed { peer: p, id }) => assert_eq!((p, id), (peer, 1)),
            _ => panic!("the connection should end"),
        }
        let mut rest = Vec::new();
        let n = client.read_to_end(&mut rest).await.expect("a clean close");
        assert_eq!(n, 0, "nothing was said to a silent peer");
    }

    #[test]
    fn tls_identity_from_pem_files_and_mistakes_named() {
        assert!(tls_acceptor(&fixture("server.pem"), &fixture("server.key")).is_ok());
        let missing = tls_acceptor(&fixture("nope.pem"), &fixture("server.key"))
            .err()
            .expect("no such file");
        assert!(missing.to_string().contains("sip.tls_cert"), "{missing}");
        let no_key = tls_acceptor(&fixture("server.pem"), &fixture("server.pem"))
            .err()
            .expect("a certificate is not a key");
        assert!(no_key.to_string().contains("sip.tls_key"), "{no_key}");
        // The CA's certificate with the server's key: they do not match.
        let mismatch = tls_acceptor(&fixture("ca.pem"), &fixture("server.key"))
            .err()
            .expect("mismatched");
        assert!(mismatch.to_string().contains("TLS identity"), "{mismatch}");
    }
}
