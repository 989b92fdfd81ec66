//! loadgen's RTP callers: each call is a UDP socket that creates its session
//! through the daemon's media API (plain parameters, symmetric RTP off so the
//! daemon sends back to this socket), then sends one RTP packet per 20 ms.

use anyhow::{bail, Context as _};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use voxbridge_codecs::{g711, Codec, FrameEncoder};
use voxbridge_proto::rtp::RtpHeader;

/// The codec an RTP run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpCodec {
    /// G.711 u-law, PT 0.
    Pcmu,
    /// Opus at 48 kHz RTP clock, PT 96, encoded from the 8 kHz audio.
    Opus,
}

impl RtpCodec {
    fn api_name(self) -> &'static str {
        match self {
            RtpCodec::Pcmu => "pcmu",
            RtpCodec::Opus => "opus",
        }
    }

    fn pt(self) -> u8 {
        match self {
            RtpCodec::Pcmu => 0,
            RtpCodec::Opus => 96,
        }
    }

    fn ts_step(self) -> u32 {
        match self {
            RtpCodec::Pcmu => 160,
            RtpCodec::Opus => 960,
        }
    }
}

/// Pre-encoded payloads of the looped 8 kHz audio, one per 20 ms.
pub fn payloads(pcm: &[i16], codec: RtpCodec) -> anyhow::Result<Vec<Bytes>> {
    let mut enc = match codec {
        RtpCodec::Pcmu => None,
        RtpCodec::Opus => Some(FrameEncoder::new(Codec::Opus { rate: 8000 })?),
    };
    let mut out = vec![0u8; 1500];
    pcm.chunks_exact(160)
        .map(|c| match &mut enc {
            None => Ok(Bytes::from(
                c.iter().map(|s| g711::linear_to_ulaw(*s)).collect::<Vec<u8>>(),
            )),
            Some(e) => {
                let n = e.encode(c, &mut out)?;
                Ok(Bytes::copy_from_slice(&out[..n]))
            }
        })
        .collect()
}

/// Creates a session through `POST /v1/rtp/sessions`; returns where to send.
pub async fn create_session(
    api: SocketAddr,
    token: &str,
    remote: SocketAddr,
    codec: RtpCodec,
    call_id: &str,
) -> anyhow::Result<SocketAddr> {
    let body = serde_json::json!({
        "remote": remote.to_string(),
        "codec": codec.api_name(),
        "call_id": call_id,
        "symmetric": false,
    })
    .to_string();
    let mut s = TcpStream::connect(api)
        .await
        .with_context(|| format!("connect to the media API at {api}"))?;
    let req = format!(
        "POST /v1/rtp/sessions HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if !head.starts_with("HTTP/1.1 201") {
        bail!("session refused: {head} {body}");
    }
    let v: serde_json::Value = serde_json::from_str(body).context("session JSON")?;
    v["local"]
        .as_str()
        .and_then(|l| l.parse().ok())
        .context("session JSON has no local address")
}

/// One call's sending side.
pub struct RtpCaller {
    /// The call's socket (also read by its reader task).
    pub sock: Arc<UdpSocket>,
    to: SocketAddr,
    codec: RtpCodec,
    ssrc: u32,
    seq: u16,
    ts: u32,
    buf: Vec<u8>,
}

impl RtpCaller {
    /// A caller sending to `to`.
    pub fn new(sock: Arc<UdpSocket>, to: SocketAddr, codec: RtpCodec, ssrc: u32) -> Self {
        RtpCaller {
            sock,
            to,
            codec,
            ssrc,
            seq: 0,
            ts: 0,
            buf: Vec::with_capacity(1500),
        }
    }

    /// Sends one packet (non-blocking; a full socket buffer drops it).
    pub fn send(&mut self, payload: &[u8]) {
        self.buf.clear();
        RtpHeader {
            marker: self.seq == 0,
            payload_type: self.codec.pt(),
            sequence: self.seq,
            timestamp: self.ts,
            ssrc: self.ssrc,
        }
        .write(payload, &mut self.buf);
        let _ = self.sock.try_send_to(&self.buf, self.to);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.codec.ts_step());
    }
}

/// Whether a datagram is an RTP audio packet of `codec` (RTCP and others are not frames).
pub fn is_audio(d: &[u8], codec: RtpCodec) -> bool {
    d.len() > 12 && d[0] >> 6 == 2 && d[1] & 0x7F == codec.pt()
}

/// Ends a session through `DELETE /v1/rtp/sessions/{call_id}` (best effort).
pub async fn hangup_session(api: SocketAddr, token: &str, call_id: &str) {
    let Ok(mut s) = TcpStream::connect(api).await else {
        return;
    };
    let req =
        format!("DELETE /v1/rtp/sessions/{call_id} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_ok() {
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
    }
}
