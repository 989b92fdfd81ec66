//! RFC 6455 WebSocket, sans-IO: the opening handshake in both roles and the
//! framing, for links whose per-message cost matters (a chan_websocket leg
//! moves 50 binary frames a second per call, thousands of calls per core).
//!
//! - [`Decoder::decode`] takes whole messages off the front of a receive
//!   buffer: a frame that arrived in one piece comes out as a `Bytes` slice
//!   of that buffer (unmasked in place), so nothing is copied or allocated
//!   per frame; fragmented messages are joined. Protocol errors (reserved
//!   bits without an extension, unknown opcodes, a client frame without a
//!   mask or a server frame with one, a control frame that is fragmented or
//!   over 125 bytes, a stray continuation, a message over the limit, text
//!   that is not UTF-8) are errors the caller answers with a close.
//! - [`encode`] appends one frame to a send buffer (masked when given a key,
//!   as a client must).
//! - [`accept`], [`accept_response`], [`reject_response`] read a client's
//!   upgrade request and answer it; [`client_request`] and [`client_confirm`]
//!   do the client's half. `Sec-WebSocket-Accept` is SHA-1 of the key and
//!   the RFC's GUID, in base64 (RFC 6455 section 4.2.2).
//!
//! No extensions (permessage-deflate is never offered or accepted).

use crate::error::ProtoError;
use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};

/// The GUID of RFC 6455 section 1.3.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest upgrade request or response head read (Asterisk's is ~300 bytes).
pub const MAX_HEAD: usize = 8 * 1024;
/// At most this much room is reserved ahead for a frame still arriving.
const GROW_AHEAD: usize = 64 * 1024;

fn bad(what: impl Into<String>) -> ProtoError {
    ProtoError::WebSocket(what.into())
}

/// Which end of the connection this is: it decides which frames are masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepted the connection: frames from the peer must be masked.
    Server,
    /// Opened the connection: frames from the peer must not be masked.
    Client,
}

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Continues a fragmented message.
    Continuation,
    /// UTF-8 text.
    Text,
    /// Binary data.
    Binary,
    /// Close (an optional status code and reason).
    Close,
    /// Ping (answered with a pong carrying the same payload).
    Ping,
    /// Pong.
    Pong,
}

impl Opcode {
    fn from_bits(b: u8) -> Result<Opcode, ProtoError> {
        Ok(match b {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            other => return Err(bad(format!("reserved opcode {other:#x}"))),
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Text, checked to be UTF-8 (read it with [`Message::text`]).
    Text(Bytes),
    /// Binary data.
    Binary(Bytes),
    /// A ping's payload.
    Ping(Bytes),
    /// A pong's payload.
    Pong(Bytes),
    /// A close, with its status code and reason if it had them.
    Close(Option<(u16, String)>),
}

impl Message {
    /// The text of a `Text` message.
    pub fn text(&self) -> Option<&str> {
        match self {
            Message::Text(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

/// The fixed part of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last frame of its message.
    pub fin: bool,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: usize,
    /// Header length (2 to 14 bytes).
    pub header_len: usize,
}

/// Reads a frame header from the front of `buf`: `Ok(None)` when more bytes
/// are needed.
pub fn parse_header(buf: &[u8]) -> Result<Option<FrameHeader>, ProtoError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(bad("reserved bits set with no extension agreed"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = Opcode::from_bits(b0 & 0x0F)?;
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(l) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(l);
                (u64::from_be_bytes(a), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len >> 63 != 0 {
        return Err(bad("payload length with the top bit set"));
    }
    let mask = if masked {
        match buf.get(at..at + 4) {
            Some(k) => {
                at += 4;
                Some([k[0], k[1], k[2], k[3]])
            }
            None => return Ok(None),
        }
    } else {
        None
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(bad("control frame fragmented or over 125 bytes"));
    }
    Ok(Some(FrameHeader {
        fin,
        opcode,
        mask,
        len: usize::try_from(len).unwrap_or(usize::MAX),
        header_len: at,
    }))
}

/// XORs `data` with the masking key (the key's phase starts at `data[0]`).
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the key's phase is 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// Takes whole messages off a receive buffer (module docs).
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    max_message: usize,
    /// A fragmented message being joined: its opcode and what came so far.
    partial: Option<(Opcode, BytesMut)>,
}

impl Decoder {
    /// A decoder for `role`'s end that refuses messages over `max_message` bytes.
    pub fn new(role: Role, max_message: usize) -> Self {
        Decoder {
            role,
            max_message,
            partial: None,
        }
    }

    /// The next whole message from the front of `buf` (consumed), `Ok(None)`
    /// when more bytes are needed. After an error the connection is unusable.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ProtoError> {
        loop {
            let Some(h) = parse_header(buf)? else {
                return Ok(None);
            };
            match (self.role, h.mask.is_some()) {
                (Role::Server, false) => return Err(bad("a client frame without a mask")),
                (Role::Client, true) => return Err(bad("a server frame with a mask")),
                _ => {}
            }
            let joined = self.partial.as_ref().map_or(0, |(_, p)| p.len());
            if h.len > self.max_message || joined.saturating_add(h.len) > self.max_message {
                return Err(ProtoError::LengthTooLarge {
                    len: joined.saturating_add(h.len),
                    max: self.max_message,
                });
            }
            if buf.len() - h.header_len < h.len {
                // Room for the rest of the frame, but never more than
                // GROW_AHEAD on a header's word: a peer that announces a
                // 4 MiB frame and sends nothing gets no 4 MiB buffer.
                buf.reserve((h.header_len + h.len - buf.len()).min(GROW_AHEAD));
                return Ok(None);
            }
            buf.advance(h.header_len);
            let mut payload = buf.split_to(h.len);
            if let Some(key) = h.mask {
                apply_mask(&mut payload, key);
            }
            match (h.opcode, h.fin, self.partial.take()) {
                (Opcode::Close, _, partial) => {
                    self.partial = partial;
                    return close_message(&payload).map(Some);
                }
                (Opcode::Ping, _, partial) => {
                    self.partial = partial;
                    return Ok(Some(Message::Ping(payload.freeze())));
                }
                (Opcode::Pong, _, partial) => {
                    self.partial = partial;
                    return Ok(Some(Message::Pong(payload.freeze())));
                }
                (Opcode::Text | Opcode::Binary, _, Some(_)) => {
                    return Err(bad("a new message inside a fragmented one"))
                }
                (Opcode::Text | Opcode::Binary, true, None) => {
                    return data_message(h.opcode, payload.freeze()).map(Some)
                }
                (Opcode::Text | Opcode::Binary, false, None) => {
                    self.partial = Some((h.opcode, payload));
                }
                (Opcode::Continuation, _, None) => {
                    return Err(bad("a continuation with no message to continue"))
                }
                (Opcode::Continuation, fin, Some((op, mut joined))) => {
                    joined.extend_from_slice(&payload);
                    if fin {
                        return data_message(op, joined.freeze()).map(Some);
                    }
                    self.partial = Some((op, joined));
                }
            }
        }
    }
}

fn data_message(op: Opcode, payload: Bytes) -> Result<Message, ProtoError> {
    if op == Opcode::Text {
        std::str::from_utf8(&payload).map_err(|_| bad("a text message that is not UTF-8"))?;
        Ok(Message::Text(payload))
    } else {
        Ok(Message::Binary(payload))
    }
}

fn close_message(payload: &[u8]) -> Result<Message, ProtoError> {
    match payload {
        [] => Ok(Message::Close(None)),
        [_] => Err(bad("a close payload of one byte")),
        [a, b, reason @ ..] => {
            let reason = std::str::from_utf8(reason).map_err(|_| bad("a close reason that is not UTF-8"))?;
            Ok(Message::Close(Some((
                u16::from_be_bytes([*a, *b]),
                reason.to_owned(),
            ))))
        }
    }
}

/// Appends one final frame carrying `payload` to `out`, masked with `mask`
/// when given (a client's frames must be).
pub fn encode(out: &mut BytesMut, opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.reserve(14 + payload.len());
    out.extend_from_slice(&[0x80 | opcode.bits()]);
    match payload.len() {
        n @ 0..=125 => out.extend_from_slice(&[mask_bit | n as u8]),
        n @ 126..=0xFFFF => {
            out.extend_from_slice(&[mask_bit | 126]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.extend_from_slice(&[mask_bit | 127]);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            let start = out.len();
            out.extend_from_slice(payload);
            apply_mask(&mut out[start..], key);
        }
        None => out.extend_from_slice(payload),
    }
}

/// Appends a close frame with `code` (and no reason).
pub fn encode_close(out: &mut BytesMut, code: Option<u16>, mask: Option<[u8; 4]>) {
    match code {
        Some(c) => encode(out, Opcode::Close, &c.to_be_bytes(), mask),
        None => encode(out, Opcode::Close, &[], mask),
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A client's upgrade request, as [`accept`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The request target (path and query), as sent.
    pub target: String,
    /// `Sec-WebSocket-Key`.
    pub key: String,
    /// The subprotocols offered (`Sec-WebSocket-Protocol`, every header, split on commas).
    pub protocols: Vec<String>,
}

impl Upgrade {
    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query part of the target (empty when there is none).
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

fn header<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> impl Iterator<Item = &'a str> + 'a {
    let name = name.to_owned();
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(&name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
}

fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    header(headers, name).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// The length of a complete HTTP head (`what`: request or response),
/// `None` while it may still complete within [`MAX_HEAD`].
fn head_length(
    parsed: httparse::Result<usize>,
    have: usize,
    what: &str,
) -> Result<Option<usize>, ProtoError> {
    match parsed {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if have >= MAX_HEAD => {
            Err(bad(format!("upgrade {what} head over {MAX_HEAD} bytes")))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(bad(format!("upgrade {what}: {e}"))),
    }
}

/// Reads a client's upgrade request from the front of `buf`: `Ok(None)`
/// while its head is incomplete, else the request and the bytes it took
/// (frames may follow in the same buffer).
pub fn accept(buf: &[u8]) -> Result<Option<(Upgrade, usize)>, ProtoError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let Some(used) = head_length(req.parse(buf), buf.len(), "request")? else {
        return Ok(None);
    };
    if req.method != Some("GET") {
        return Err(bad("upgrade request is not a GET"));
    }
    let headers = req.headers;
    if !has_token(headers, "upgrade", "websocket") || !has_token(headers, "connection", "upgrade") {
        return Err(bad("not a WebSocket upgrade (Upgrade/Connection headers)"));
    }
    if header(headers, "sec-websocket-version").next().map(str::trim) != Some("13") {
        return Err(bad("Sec-WebSocket-Version is not 13"));
    }
    let key = header(headers, "sec-websocket-key")
        .next()
        .map(str::trim)
        .filter(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k)
                .is_ok_and(|d| d.len() == 16)
        })
        .ok_or_else(|| bad("missing or malformed Sec-WebSocket-Key"))?
        .to_owned();
    let protocols = header(headers, "sec-websocket-protocol")
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    Ok(Some((
        Upgrade {
            target: req.path.unwrap_or("/").to_owned(),
            key,
            protocols,
        },
        used,
    )))
}

/// The `101 Switching Protocols` answer to `up`, with `protocol` if one was chosen.
pub fn accept_response(up: &Upgrade, protocol: Option<&str>) -> String {
    let mut r = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(&up.key)
    );
    if let Some(p) = protocol {
        r.push_str("Sec-WebSocket-Protocol: ");
        r.push_str(p);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

/// A refusal: `status` with `reason` as a short plain-text body.
pub fn reject_response(status: u16, reason: &str) -> String {
    let phrase = match status {
        400 => "Bad Request",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let body: String = reason.chars().filter(|c| !c.is_control()).take(200).collect();
    format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A client's upgrade request for `target` (path and query) on `host`
/// (with its port), with `key` (16 random bytes in base64) and a subprotocol.
pub fn client_request(host: &str, target: &str, key: &str, protocol: Option<&str>) -> String {
    let mut r = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(p) = protocol {
        r.push_str("Sec-WebSocket-Protocol: ");
        r.push_str(p);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

/// The server's answer to a [`client_request`] with `key`, from the front
/// of `buf`: `Ok(None)` while incomplete, else the subprotocol it chose and
/// the bytes the head took.
pub fn client_confirm(buf: &[u8], key: &str) -> Result<Option<(Option<String>, usize)>, ProtoError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let Some(used) = head_length(resp.parse(buf), buf.len(), "response")? else {
        return Ok(None);
    };
    if resp.code != Some(101) {
        return Err(bad(format!(
            "upgrade answered {} {}",
            resp.code.unwrap_or(0),
            resp.reason.unwrap_or("")
        )));
    }
    let headers = resp.headers;
    if !has_token(headers, "upgrade", "websocket") {
        return Err(bad("101 without Upgrade: websocket"));
    }
    let want = accept_key(key);
    if header(headers, "sec-websocket-accept").next().map(str::trim) != Some(want.as_str()) {
        return Err(bad("wrong Sec-WebSocket-Accept"));
    }
    let protocol = header(headers, "sec-websocket-protocol")
        .next()
        .map(|p| p.trim().to_owned());
    Ok(Some((protocol, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_accept_key_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn the_rfc_framing_examples() {
        // RFC 6455 section 5.7.
        let mut d = Decoder::new(Role::Client, 1 << 20);
        let mut b = BytesMut::from(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f][..]);
        assert_eq!(
            d.decode(&mut b),
            Ok(Some(Message::Text(Bytes::from_static(b"Hello"))))
        );
        assert!(b.is_empty());

        let mut s = Decoder::new(Role::Server, 1 << 20);
        let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let mut b = BytesMut::from(&masked[..]);
        assert_eq!(
            s.decode(&mut b),
            Ok(Some(Message::Text(Bytes::from_static(b"Hello"))))
        );

        // Fragmented "Hel" + "lo", with a ping between the fragments.
        let mut b = BytesMut::from(
            &[
                0x01, 0x03, 0x48, 0x65, 0x6c, 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x80, 0x02, 0x6c,
                0x6f,
            ][..],
        );
        assert_eq!(
            d.decode(&mut b),
            Ok(Some(Message::Ping(Bytes::from_static(b"Hello"))))
        );
        assert_eq!(
            d.decode(&mut b),
            Ok(Some(Message::Text(Bytes::from_static(b"Hello"))))
        );

        // 256 bytes of binary in one unmasked frame (16-bit length).
        let mut b = BytesMut::from(&[0x82, 0x7E, 0x01, 0x00][..]);
        assert_eq!(d.decode(&mut b), Ok(None), "header alone: wait for the payload");
        b.extend_from_slice(&[7u8; 256]);
        assert_eq!(
            d.decode(&mut b),
            Ok(Some(Message::Binary(Bytes::from(vec![7u8; 256]))))
        );
    }

    #[test]
    fn encode_then_decode_every_length_form_both_ways() {
        for len in [0usize, 1, 125, 126, 640, 65535, 65536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            for (role, mask) in [(Role::Client, None), (Role::Server, Some([1, 2, 3, 4]))] {
                let mut out = BytesMut::new();
                encode(&mut out, Opcode::Binary, &payload, mask);
                let mut d = Decoder::new(role, 1 << 20);
                assert_eq!(
                    d.decode(&mut out),
                    Ok(Some(Message::Binary(Bytes::from(payload.clone())))),
                    "{len} {role:?}"
                );
                assert!(out.is_empty());
            }
        }
    }

    #[test]
    fn protocol_errors_are_named() {
        let cases: &[(&[u8], Role, &str)] = &[
            (&[0xC1, 0x00], Role::Client, "reserved bits"),
            (&[0x83, 0x00], Role::Client, "reserved opcode"),
            (&[0x81, 0x00], Role::Server, "without a mask"),
            (&[0x81, 0x80, 1, 2, 3, 4], Role::Client, "with a mask"),
            (&[0x09, 0x00], Role::Client, "control frame"),
            (&[0x89, 0x7E, 0x00, 0x7E], Role::Client, "control frame"),
            (&[0x80, 0x00], Role::Client, "continuation"),
            (&[0x01, 0x00, 0x82, 0x00], Role::Client, "inside a fragmented"),
            (&[0x81, 0x02, 0xC3, 0x28], Role::Client, "not UTF-8"),
            (&[0x88, 0x01, 0x03], Role::Client, "one byte"),
            (&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0], Role::Client, "top bit"),
        ];
        for (bytes, role, why) in cases {
            let mut d = Decoder::new(*role, 1 << 20);
            let mut b = BytesMut::from(*bytes);
            match d.decode(&mut b) {
                Err(ProtoError::WebSocket(e)) => assert!(e.contains(why), "{bytes:02x?}: {e}"),
                other => panic!("{bytes:02x?}: {other:?}"),
            }
        }
        let mut d = Decoder::new(Role::Client, 100);
        let mut b = BytesMut::from(&[0x82, 0x65][..]);
        assert_eq!(
            d.decode(&mut b),
            Err(ProtoError::LengthTooLarge { len: 101, max: 100 })
        );
    }

    #[test]
    fn an_announced_frame_is_not_allocated_before_it_arrives() {
        let mut d = Decoder::new(Role::Client, 4 << 20);
        // A binary frame of 4 MiB - 1, announced, nothing of it sent.
        let mut b = BytesMut::from(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0x3F, 0xFF, 0xFF][..]);
        assert_eq!(d.decode(&mut b), Ok(None));
        assert!(b.capacity() <= GROW_AHEAD + 64, "{}", b.capacity());
    }

    #[test]
    fn close_codes() {
        let mut d = Decoder::new(Role::Client, 1 << 20);
        let mut out = BytesMut::new();
        encode_close(&mut out, Some(1000), None);
        encode_close(&mut out, None, None);
        assert_eq!(
            d.decode(&mut out),
            Ok(Some(Message::Close(Some((1000, String::new())))))
        );
        let mut b = BytesMut::from(&b"\x88\x06\x0f\xa1gone"[..]);
        assert_eq!(
            d.decode(&mut b),
            Ok(Some(Message::Close(Some((4001, "gone".into())))))
        );
        assert_eq!(d.decode(&mut out), Ok(Some(Message::Close(None))));
    }

    #[test]
    fn asterisks_upgrade_request_is_accepted() {
        // The head chan_websocket sends (res_http_websocket's client), with
        // the `v()` options as query parameters.
        let req = "GET /media/sales?call_id=abc&caller=%2B15550100 HTTP/1.1\r\n\
            Host: 127.0.0.1:8765\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: media\r\n\
            Sec-WebSocket-Version: 13\r\n\r\n\x02\x00";
        let (up, used) = accept(req.as_bytes()).expect("valid").expect("complete");
        assert_eq!(used, req.len() - 2, "the frame after the head is left");
        assert_eq!(up.path(), "/media/sales");
        assert_eq!(up.query(), "call_id=abc&caller=%2B15550100");
        assert_eq!(up.protocols, vec!["media"]);
        let resp = accept_response(&up, Some("media"));
        assert!(resp.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{resp}");
        assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(resp.ends_with("Sec-WebSocket-Protocol: media\r\n\r\n"));
        assert_eq!(accept(&req.as_bytes()[..40]), Ok(None));
        for broken in [
            req.replace("GET", "POST"),
            req.replace("Version: 13", "Version: 8"),
            req.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"),
            req.replace("Upgrade: websocket\r\n", ""),
        ] {
            assert!(accept(broken.as_bytes()).is_err(), "{broken}");
        }
        assert!(accept(&vec![b'a'; MAX_HEAD]).is_err());
    }

    #[test]
    fn the_client_half_checks_the_accept_key() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let req = client_request("asterisk:8088", "/media/4f8a", key, Some("media"));
        let (up, _) = accept(req.as_bytes())
            .expect("our own request")
            .expect("complete");
        assert_eq!((up.target.as_str(), up.key.as_str()), ("/media/4f8a", key));
        let resp = accept_response(&up, Some("media"));
        assert_eq!(
            client_confirm(resp.as_bytes(), key),
            Ok(Some((Some("media".into()), resp.len())))
        );
        assert!(client_confirm(resp.as_bytes(), "AAAAAAAAAAAAAAAAAAAAAA==").is_err());
        let refused = reject_response(404, "no route \"x\"");
        assert!(client_confirm(refused.as_bytes(), key).is_err());
        assert_eq!(client_confirm(&resp.as_bytes()[..20], key), Ok(None));
    }

    #[test]
    fn masking_matches_the_bytewise_definition() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let key = [0xA1, 0x02, 0xF3, 0x44];
            let mut fast = data.clone();
            apply_mask(&mut fast, key);
            let slow: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
            assert_eq!(fast, slow, "{len}");
        }
    }

    proptest::proptest! {
        // Any bytes, cut anywhere: messages or an error, never a panic, and
        // the same messages whether they arrive at once or in two reads.
        #[test]
        fn any_bytes_in_any_split(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            cut in 0usize..600,
            server in proptest::bool::ANY,
        ) {
            let role = if server { Role::Server } else { Role::Client };
            let whole = drain(role, &[&data]);
            let cut = cut.min(data.len());
            let split = drain(role, &[&data[..cut], &data[cut..]]);
            proptest::prop_assert_eq!(whole, split);
            let _ = accept(&data);
            let _ = client_confirm(&data, "dGhlIHNhbXBsZSBub25jZQ==");
        }

        // Frames we write, fragmented by size and split at any byte, come
        // back as the same messages.
        #[test]
        fn written_frames_read_back(
            payloads in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 1..6),
            mask in proptest::option::of(proptest::array::uniform4(proptest::num::u8::ANY)),
            cut in 0usize..2000,
        ) {
            let role = if mask.is_some() { Role::Server } else { Role::Client };
            let mut out = BytesMut::new();
            for p in &payloads {
                encode(&mut out, Opcode::Binary, p, mask);
            }
            let cut = cut.min(out.len());
            let (got, err) = drain(role, &[&out[..cut], &out[cut..]]);
            proptest::prop_assert!(err.is_none(), "{:?}", err);
            let want: Vec<Message> = payloads.into_iter().map(|p| Message::Binary(Bytes::from(p))).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    /// Decodes `reads` fed one after another: the messages, and the error
    /// that ended them if one did.
    fn drain(role: Role, reads: &[&[u8]]) -> (Vec<Message>, Option<ProtoError>) {
        let mut d = Decoder::new(role, 1 << 12);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for r in reads {
            buf.extend_from_slice(r);
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(m)) => got.push(m),
                    Ok(None) => break,
                    Err(e) => return (got, Some(e)),
                }
            }
        }
        (got, None)
    }
}
