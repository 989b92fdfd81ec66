//! One SIP message: parsed from a datagram or a stream, written by a builder.
//!
//! The head (start line and headers) is checked as UTF-8 once and kept as
//! one `String` with the headers as ranges into it; folded header lines are
//! unfolded in place (the CR LF before the continuation becomes two
//! spaces, so no range moves). The body is a `Bytes` slice of the input.
//! [`Message::parse`] checks the framing, the start line and that the five
//! headers every response is built from (`Via`, `From`, `To`, `Call-ID`,
//! `CSeq`) are present and readable, so anything it returns can be
//! answered; what a request means (method, SDP) is for the layer above.

use super::header::{CSeq, Via};
use crate::error::ProtoError;
use bytes::{Bytes, BytesMut};
use std::fmt::{self, Write as _};
use std::ops::Range;

/// Largest head (start line and headers) accepted; real INVITEs are 0.5-4 KiB.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest body accepted (SDP, dtmf-relay, sipfrag; offers are under 2 KiB).
pub const MAX_BODY: usize = 32 * 1024;

pub(crate) fn bad(what: impl Into<String>) -> ProtoError {
    ProtoError::Sip(what.into())
}

/// A request method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// Starts a session (RFC 3261).
    Invite,
    /// Confirms a final response to an INVITE.
    Ack,
    /// Ends a session.
    Bye,
    /// Cancels a pending INVITE.
    Cancel,
    /// Asks for capabilities (SBCs use it as a health check).
    Options,
    /// Binds an address of record to a contact.
    Register,
    /// Mid-dialog information (RFC 6086; DTMF relay).
    Info,
    /// Asks the peer to call a third party (RFC 3515).
    Refer,
    /// Reports subscription state (RFC 6665; REFER progress).
    Notify,
    /// Updates a session before or after answer (RFC 3311).
    Update,
    /// Acknowledges a reliable provisional response (RFC 3262).
    Prack,
    /// Subscribes to an event package (RFC 6665).
    Subscribe,
    /// A page-mode instant message (RFC 3428).
    Message,
    /// Publishes event state (RFC 3903).
    Publish,
    /// Any other token.
    Other(String),
}

impl Method {
    /// Reads a method token (case-sensitive, as RFC 3261 section 7.1 says).
    pub fn from_token(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The token as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The headers voxbridge acts on, with their compact forms folded in;
/// everything else is [`HeaderName::Other`] and found by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    ContentLength,
    ContentType,
    Route,
    RecordRoute,
    Supported,
    Require,
    Allow,
    SessionExpires,
    MinSe,
    Authorization,
    WwwAuthenticate,
    ProxyAuthorization,
    ProxyAuthenticate,
    Event,
    SubscriptionState,
    ReferTo,
    ReferredBy,
    Expires,
    RetryAfter,
    UserAgent,
    Other,
}

impl HeaderName {
    /// Names a header line's name (long or compact form, any case).
    pub fn from_name(name: &str) -> HeaderName {
        if name.len() == 1 {
            return match name.as_bytes()[0].to_ascii_lowercase() {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'm' => HeaderName::Contact,
                b'l' => HeaderName::ContentLength,
                b'c' => HeaderName::ContentType,
                b'k' => HeaderName::Supported,
                b'x' => HeaderName::SessionExpires,
                b'o' => HeaderName::Event,
                b'r' => HeaderName::ReferTo,
                b'b' => HeaderName::ReferredBy,
                _ => HeaderName::Other,
            };
        }
        const LONG: [(&str, HeaderName); 27] = [
            ("via", HeaderName::Via),
            ("from", HeaderName::From),
            ("to", HeaderName::To),
            ("call-id", HeaderName::CallId),
            ("cseq", HeaderName::CSeq),
            ("contact", HeaderName::Contact),
            ("max-forwards", HeaderName::MaxForwards),
            ("content-length", HeaderName::ContentLength),
            ("content-type", HeaderName::ContentType),
            ("route", HeaderName::Route),
            ("record-route", HeaderName::RecordRoute),
            ("supported", HeaderName::Supported),
            ("require", HeaderName::Require),
            ("allow", HeaderName::Allow),
            ("session-expires", HeaderName::SessionExpires),
            ("min-se", HeaderName::MinSe),
            ("authorization", HeaderName::Authorization),
            ("www-authenticate", HeaderName::WwwAuthenticate),
            ("proxy-authorization", HeaderName::ProxyAuthorization),
            ("proxy-authenticate", HeaderName::ProxyAuthenticate),
            ("event", HeaderName::Event),
            ("subscription-state", HeaderName::SubscriptionState),
            ("refer-to", HeaderName::ReferTo),
            ("referred-by", HeaderName::ReferredBy),
            ("expires", HeaderName::Expires),
            ("retry-after", HeaderName::RetryAfter),
            ("user-agent", HeaderName::UserAgent),
        ];
        LONG.iter()
            .find(|(long, _)| long.eq_ignore_ascii_case(name))
            .map_or(HeaderName::Other, |(_, h)| *h)
    }

    /// The long form, as voxbridge writes it (`None` for `Other`).
    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Supported => "Supported",
            HeaderName::Require => "Require",
            HeaderName::Allow => "Allow",
            HeaderName::SessionExpires => "Session-Expires",
            HeaderName::MinSe => "Min-SE",
            HeaderName::Authorization => "Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::Event => "Event",
            HeaderName::SubscriptionState => "Subscription-State",
            HeaderName::ReferTo => "Refer-To",
            HeaderName::ReferredBy => "Referred-By",
            HeaderName::Expires => "Expires",
            HeaderName::RetryAfter => "Retry-After",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Other => return None,
        })
    }
}

#[derive(Debug, Clone)]
enum Start {
    Request { method: Method, uri: Range<usize> },
    Response { code: u16, reason: Range<usize> },
}

/// The start line, borrowed from a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// `METHOD Request-URI SIP/2.0`.
    Request {
        /// The method.
        method: &'a Method,
        /// The Request-URI as written.
        uri: &'a str,
    },
    /// `SIP/2.0 code reason`.
    Response {
        /// Status code, 100-699.
        code: u16,
        /// Reason phrase (may be empty).
        reason: &'a str,
    },
}

#[derive(Debug, Clone)]
struct HeaderLine {
    name: HeaderName,
    raw_name: Range<usize>,
    value: Range<usize>,
}

/// A parsed SIP request or response.
#[derive(Debug, Clone)]
pub struct Message {
    head: String,
    start: Start,
    headers: Vec<HeaderLine>,
    body: Bytes,
}

/// True for an RFC 5626 keepalive: a datagram of nothing but CR LFs.
pub fn is_keepalive(datagram: &[u8]) -> bool {
    !datagram.is_empty() && datagram.iter().all(|&b| b == b'\r' || b == b'\n')
}

/// Takes one message off the front of a stream buffer (SIP over TCP or
/// TLS). Leading CR LFs (keepalives) are dropped. `Ok(None)` means more
/// bytes are needed; an error means the stream cannot be resynchronised
/// and the connection should be closed. `Content-Length` is required on a
/// stream (RFC 3261 section 18.3).
pub fn decode_stream(buf: &mut BytesMut) -> Result<Option<Message>, ProtoError> {
    let skip = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let _ = buf.split_to(skip);
    let Some(head_len) = find_head_end(buf) else {
        if buf.len() > MAX_HEAD {
            return Err(bad(format!("no end of headers in the first {MAX_HEAD} bytes")));
        }
        return Ok(None);
    };
    let (head, start, headers) = parse_head(&buf[..head_len])?;
    let length = match first(&head, &headers, HeaderName::ContentLength) {
        Some(v) => parse_content_length(v)?,
        None => return Err(bad("Content-Length is required on a stream")),
    };
    if buf.len() < head_len + 4 + length {
        buf.reserve(head_len + 4 + length - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(head_len + 4 + length);
    let body = frame.split_off(head_len + 4).freeze();
    let msg = Message {
        head,
        start,
        headers,
        body,
    };
    msg.check_required()?;
    Ok(Some(msg))
}

/// The `400 Bad Request` for bytes that did not parse as a request, when
/// enough of one is there to address it (RFC 3261 section 21.4.1: a
/// request that cannot be understood is answered, when it can be): a
/// request line of any method but ACK, a `Via` that parses, `From`, `To`,
/// `Call-ID` and a `CSeq` that parses, copied as written (compact forms
/// too), with `why` in a `Warning`. `None` when any is missing: the bytes
/// are then dropped, as nothing can be addressed. Looks at the first
/// `MAX_HEAD` bytes only; what it builds always parses back.
pub fn bad_request(data: &[u8], why: &str) -> Option<Bytes> {
    const MAX_VALUE: usize = 512;
    let data = &data[..data.len().min(MAX_HEAD)];
    let end = find_head_end(data).unwrap_or(data.len());
    let text = std::str::from_utf8(&data[..end]).ok()?;
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let mut request_line = lines.next()?.split(' ');
    let (method, uri, version) = (request_line.next()?, request_line.next()?, request_line.next()?);
    let method_ok = !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_alphabetic())
        && !method.eq_ignore_ascii_case("ACK");
    if request_line.next().is_some() || version != "SIP/2.0" || uri.is_empty() || !method_ok {
        return None;
    }
    let mut vias = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() || value.len() > MAX_VALUE || value.chars().any(char::is_control) {
            continue;
        }
        match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" if vias.len() < 16 => vias.push(value),
            "from" | "f" => {
                from.get_or_insert(value);
            }
            "to" | "t" => {
                to.get_or_insert(value);
            }
            "call-id" | "i" => {
                call_id.get_or_insert(value);
            }
            "cseq" => {
                cseq.get_or_insert(value);
            }
            _ => {}
        }
    }
    let top_via = vias.first()?;
    super::header::Via::parse(top_via).ok()?;
    let cseq = cseq?;
    super::header::CSeq::parse(cseq).ok()?;
    let mut b = MessageBuilder::response(400, "Bad Request");
    for via in &vias {
        b = b.header("Via", via);
    }
    let why: String = why
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .take(160)
        .collect();
    Some(
        b.header("From", from?)
            .header("To", to?)
            .header("Call-ID", call_id?)
            .header("CSeq", cseq)
            .header("Warning", format_args!("399 voxbridge \"{why}\""))
            .build(),
    )
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).take(MAX_HEAD + 1).position(|w| w == b"\r\n\r\n")
}

fn parse_content_length(value: &str) -> Result<usize, ProtoError> {
    let n: usize = value
        .parse()
        .map_err(|_| bad(format!("Content-Length {value:?} is not a number")))?;
    if n > MAX_BODY {
        return Err(ProtoError::LengthTooLarge {
            len: n,
            max: MAX_BODY,
        });
    }
    Ok(n)
}

fn first<'a>(head: &'a str, headers: &[HeaderLine], name: HeaderName) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name == name)
        .map(|h| &head[h.value.clone()])
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn parse_head(raw: &[u8]) -> Result<(String, Start, Vec<HeaderLine>), ProtoError> {
    if raw.len() > MAX_HEAD {
        return Err(ProtoError::LengthTooLarge {
            len: raw.len(),
            max: MAX_HEAD,
        });
    }
    let mut bytes = raw.to_vec();
    // Unfold: CR LF followed by SP/HT continues the previous line.
    for i in 0..bytes.len().saturating_sub(2) {
        if bytes[i] == b'\r' && bytes[i + 1] == b'\n' && matches!(bytes[i + 2], b' ' | b'\t') {
            bytes[i] = b' ';
            bytes[i + 1] = b' ';
        }
    }
    let head = String::from_utf8(bytes).map_err(|_| bad("head is not UTF-8"))?;
    let mut lines = LineRanges { s: &head, pos: 0 };
    let start_range = lines.next().ok_or_else(|| bad("empty message"))?;
    let start = parse_start(&head, start_range)?;
    let mut headers = Vec::with_capacity(16);
    for line in lines {
        let text = &head[line.clone()];
        let colon = text
            .find(':')
            .ok_or_else(|| bad(format!("header line without a colon: {:.40?}", text)))?;
        let name = text[..colon].trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(bad(format!("bad header name {:.40?}", name)));
        }
        let value_text = &text[colon + 1..];
        let lead = value_text.len() - value_text.trim_start_matches([' ', '\t']).len();
        let value_trimmed = value_text.trim_matches([' ', '\t']);
        let value_start = line.start + colon + 1 + lead;
        headers.push(HeaderLine {
            name: HeaderName::from_name(name),
            raw_name: line.start..line.start + name.len(),
            value: value_start..value_start + value_trimmed.len(),
        });
    }
    Ok((head, start, headers))
}

struct LineRanges<'a> {
    s: &'a str,
    pos: usize,
}

impl Iterator for LineRanges<'_> {
    type Item = Range<usize>;
    fn next(&mut self) -> Option<Range<usize>> {
        if self.pos >= self.s.len() {
            return None;
        }
        let rest = &self.s[self.pos..];
        let end = rest.find("\r\n").unwrap_or(rest.len());
        let range = self.pos..self.pos + end;
        self.pos += end + 2;
        Some(range)
    }
}

fn parse_start(head: &str, line: Range<usize>) -> Result<Start, ProtoError> {
    let text = &head[line.clone()];
    if let Some(rest) = text.strip_prefix("SIP/2.0 ") {
        let code_text = rest.get(..3).ok_or_else(|| bad("status line too short"))?;
        let code: u16 = code_text
            .parse()
            .ok()
            .filter(|c| (100..=699).contains(c))
            .ok_or_else(|| bad(format!("bad status code {code_text:?}")))?;
        let after = &rest[3..];
        if !after.is_empty() && !after.starts_with(' ') {
            return Err(bad("status code longer than three digits"));
        }
        let reason_start = line.start + 8 + 3 + usize::from(!after.is_empty());
        return Ok(Start::Response {
            code,
            reason: reason_start.min(line.end)..line.end,
        });
    }
    let mut parts = text.splitn(3, ' ');
    let (Some(method), Some(uri), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad(format!("bad request line {:.60?}", text)));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(bad(format!("bad method {:.20?}", method)));
    }
    if version != "SIP/2.0" {
        return Err(bad(format!("unsupported version {:.20?}", version)));
    }
    if uri.is_empty() || !uri.contains(':') {
        return Err(bad(format!("bad Request-URI {:.60?}", uri)));
    }
    let uri_start = line.start + method.len() + 1;
    Ok(Start::Request {
        method: Method::from_token(method),
        uri: uri_start..uri_start + uri.len(),
    })
}

impl Message {
    /// Parses one message from a datagram (UDP). A missing `Content-Length`
    /// means the body is the rest of the datagram; bytes past it are
    /// dropped (RFC 3261 section 18.3).
    pub fn parse(datagram: Bytes) -> Result<Message, ProtoError> {
        let head_len = find_head_end(&datagram).ok_or_else(|| {
            if datagram.len() > MAX_HEAD {
                ProtoError::LengthTooLarge {
                    len: datagram.len(),
                    max: MAX_HEAD,
                }
            } else {
                bad("no blank line after the headers")
            }
        })?;
        let (head, start, headers) = parse_head(&datagram[..head_len])?;
        let available = datagram.len() - head_len - 4;
        let length = match first(&head, &headers, HeaderName::ContentLength) {
            Some(v) => parse_content_length(v)?,
            None => available.min(MAX_BODY),
        };
        if length > available {
            return Err(bad(format!(
                "Content-Length {length} but {available} body bytes arrived"
            )));
        }
        let body = datagram.slice(head_len + 4..head_len + 4 + length);
        let msg = Message {
            head,
            start,
            headers,
            body,
        };
        msg.check_required()?;
        Ok(msg)
    }

    fn check_required(&self) -> Result<(), ProtoError> {
        for name in [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            if self.header(name).is_none_or(str::is_empty) {
                return Err(bad(format!(
                    "missing {} header",
                    name.as_str().unwrap_or_default()
                )));
            }
        }
        let cseq = self.cseq()?;
        if let Start::Request { method, .. } = &self.start {
            if &cseq.method != method {
                return Err(bad(format!(
                    "CSeq method {} does not match {}",
                    cseq.method, method
                )));
            }
        }
        self.top_via()?;
        Ok(())
    }

    /// The start line.
    pub fn start_line(&self) -> StartLine<'_> {
        match &self.start {
            Start::Request { method, uri } => StartLine::Request {
                method,
                uri: &self.head[uri.clone()],
            },
            Start::Response { code, reason } => StartLine::Response {
                code: *code,
                reason: &self.head[reason.clone()],
            },
        }
    }

    /// The method of a request, or `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            Start::Request { uri, .. } => Some(&self.head[uri.clone()]),
            Start::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            Start::Response { code, .. } => Some(*code),
            Start::Request { .. } => None,
        }
    }

    /// True for a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, Start::Request { .. })
    }

    /// The first value of a header.
    pub fn header(&self, name: HeaderName) -> Option<&str> {
        first(&self.head, &self.headers, name)
    }

    /// Every line of a header, in order (a list-valued header may also hold
    /// several values in one line: see [`split_list`]).
    pub fn headers(&self, name: HeaderName) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| &self.head[h.value.clone()])
    }

    /// Every value of a list-valued header (`Via`, `Route`, `Record-Route`,
    /// `Supported`, `Require`, `Allow`, `Contact`), over all its lines.
    pub fn header_list(&self, name: HeaderName) -> impl Iterator<Item = &str> {
        self.headers(name).flat_map(split_list)
    }

    /// The first value of a header by its name (any case), for headers
    /// without a [`HeaderName`] of their own (`X-` headers).
    pub fn header_named(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| self.head[h.raw_name.clone()].eq_ignore_ascii_case(name))
            .map(|h| &self.head[h.value.clone()])
    }

    /// Every header line as (name as written, value), in order.
    pub fn all_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|h| (&self.head[h.raw_name.clone()], &self.head[h.value.clone()]))
    }

    /// The body (a slice of the received bytes).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The `Call-ID`.
    pub fn call_id(&self) -> &str {
        self.header(HeaderName::CallId).unwrap_or_default()
    }

    /// The `CSeq`.
    pub fn cseq(&self) -> Result<CSeq, ProtoError> {
        CSeq::parse(self.header(HeaderName::CSeq).unwrap_or_default())
    }

    /// The topmost `Via` (the one naming the previous hop).
    pub fn top_via(&self) -> Result<Via<'_>, ProtoError> {
        let value = self
            .header_list(HeaderName::Via)
            .next()
            .ok_or_else(|| bad("missing Via header"))?;
        Via::parse(value)
    }
}

/// Splits a header value on commas that are outside quotes and `<...>`.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || loop {
        let s = rest?;
        let mut quoted = false;
        let mut angle = false;
        let mut escaped = false;
        let mut cut = None;
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '<' if !quoted => angle = true,
                '>' if !quoted => angle = false,
                ',' if !quoted && !angle => {
                    cut = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let item = match cut {
            Some(i) => {
                rest = Some(&s[i + 1..]);
                &s[..i]
            }
            None => {
                rest = None;
                s
            }
        };
        let item = item.trim_matches([' ', '\t']);
        if !item.is_empty() {
            return Some(item);
        }
    })
}

/// Writes a request or a response: the start line, headers in the order
/// given, `Content-Length` (always, so the message also frames on a
/// stream) and the body.
#[derive(Debug)]
pub struct MessageBuilder {
    head: String,
    body: Bytes,
}

impl MessageBuilder {
    /// Starts a request.
    pub fn request(method: &Method, uri: &str) -> MessageBuilder {
        let mut head = String::with_capacity(512);
        let _ = write!(head, "{method} {uri} SIP/2.0\r\n");
        MessageBuilder {
            head,
            body: Bytes::new(),
        }
    }

    /// Starts a response with no headers.
    pub fn response(code: u16, reason: &str) -> MessageBuilder {
        let mut head = String::with_capacity(512);
        let _ = write!(head, "SIP/2.0 {code} {reason}\r\n");
        MessageBuilder {
            head,
            body: Bytes::new(),
        }
    }

    /// Starts a response to `request`: every `Via`, `From`, `To` (with
    /// `to_tag` added when the request's `To` has none), `Call-ID` and
    /// `CSeq` copied as RFC 3261 section 8.2.6.2 says. The `Via` gets
    /// `received` and `rport` filled in when `source` is given (RFC 3581).
    pub fn response_to(
        request: &Message,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
        source: Option<std::net::SocketAddr>,
    ) -> MessageBuilder {
        let mut b = MessageBuilder::response(code, reason);
        for (i, via) in request.header_list(HeaderName::Via).enumerate() {
            match (i, source) {
                (0, Some(src)) => b.push_line("Via", &Via::with_received(via, src)),
                _ => b.push_line("Via", via),
            }
        }
        for name in [HeaderName::From, HeaderName::To] {
            let value = request.header(name).unwrap_or_default();
            let add_tag = name == HeaderName::To
                && to_tag.is_some()
                && super::header::NameAddr::parse(value)
                    .map(|n| n.tag().is_none())
                    .unwrap_or(true);
            match (add_tag, to_tag) {
                (true, Some(tag)) => {
                    b.push_line(name.as_str().unwrap_or_default(), &format!("{value};tag={tag}"))
                }
                _ => b.push_line(name.as_str().unwrap_or_default(), value),
            }
        }
        b.push_line("Call-ID", request.call_id());
        b.push_line("CSeq", request.header(HeaderName::CSeq).unwrap_or_default());
        b
    }

    fn push_line(&mut self, name: &str, value: &str) {
        self.head.push_str(name);
        self.head.push_str(": ");
        self.head.push_str(value);
        self.head.push_str("\r\n");
    }

    /// Adds a header line. CR and LF in `value` are replaced by spaces, so
    /// nothing from outside can inject a header.
    pub fn header(mut self, name: &str, value: impl fmt::Display) -> MessageBuilder {
        let start = self.head.len() + name.len() + 2;
        self.push_line(name, &value.to_string());
        let end = self.head.len() - 2;
        if self.head[start..end].contains(['\r', '\n']) {
            let cleaned = self.head[start..end].replace(['\r', '\n'], " ");
            self.head.replace_range(start..end, &cleaned);
        }
        self
    }

    /// Sets the body and its `Content-Type`.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> MessageBuilder {
        self = self.header("Content-Type", content_type);
        self.body = body.into();
        self
    }

    /// Finishes the message.
    pub fn build(mut self) -> Bytes {
        let _ = write!(self.head, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut out = BytesMut::with_capacity(self.head.len() + self.body.len());
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(&self.body);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_requests_get_a_400_when_they_can_be_addressed() {
        let head = "INVITE sip:bob@example.com SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\nt: <sip:bob@example.com>\r\ni: abc\r\nCSeq: 1 INVITE\r\n";
        // Content-Length larger than the body: Message::parse refuses it.
        let data = format!("{head}Content-Length: 999\r\n\r\nv=0");
        let err = Message::parse(Bytes::from(data.clone())).expect_err("short body");
        let r = bad_request(data.as_bytes(), &err.to_string()).expect("addressable");
        let r = Message::parse(r).expect("our 400 parses");
        assert_eq!(r.status(), Some(400));
        assert_eq!(r.call_id(), "abc");
        assert!(r
            .header(HeaderName::Via)
            .is_some_and(|v| v.contains("branch=z9hG4bK1")));
        assert!(r
            .all_headers()
            .any(|(n, v)| n == "Warning" && v.contains("Content-Length")));
        for unaddressable in [
            format!("ACK sip:b@e SIP/2.0\r\n{}", &head[35..]),
            head.replace("CSeq: 1 INVITE", "CSeq: x"),
            head.replace("i: abc\r\n", ""),
            "SIP/2.0 200 OK\r\n\r\n".to_owned(),
            "garbage".to_owned(),
        ] {
            assert!(
                bad_request(unaddressable.as_bytes(), "x").is_none(),
                "{unaddressable:?}"
            );
        }
    }

    pub(crate) const INVITE: &str = "INVITE sip:bot@voxbridge.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bot <sip:bot@voxbridge.example.com>\r\n\
From: \"Alice, A.\" <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.example.com>\r\n\
X-Customer: 42\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn parses_an_invite() {
        let m = Message::parse(Bytes::from_static(INVITE.as_bytes())).expect("valid in this test");
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.request_uri(), Some("sip:bot@voxbridge.example.com"));
        assert_eq!(m.call_id(), "a84b4c76e66710@pc33.example.com");
        assert_eq!(m.cseq().expect("valid in this test").seq, 314159);
        assert_eq!(
            m.top_via().expect("valid in this test").branch(),
            Some("z9hG4bK776asdhds")
        );
        assert_eq!(m.header_named("x-customer"), Some("42"));
        assert_eq!(m.body().as_ref(), b"v=0\n");
        assert_eq!(m.header(HeaderName::MaxForwards), Some("70"));
    }

    #[test]
    fn compact_forms_folding_and_lists() {
        let raw = "BYE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/TCP h2;branch=z9hG4bK2\r\n\
v: SIP/2.0/UDP h3;branch=z9hG4bK3\r\nf: <sip:x@y>;tag=1\r\nt: <sip:a@b>\r\n ;tag=2\r\ni: abc\r\nCSeq: 2 BYE\r\nl: 0\r\n\r\n";
        let m = Message::parse(Bytes::from(raw)).expect("valid in this test");
        let vias: Vec<_> = m.header_list(HeaderName::Via).collect();
        assert_eq!(vias.len(), 3);
        assert_eq!(
            m.top_via().expect("valid in this test").branch(),
            Some("z9hG4bK1")
        );
        let to = super::super::NameAddr::parse(m.header(HeaderName::To).expect("valid in this test"))
            .expect("valid in this test");
        assert_eq!(to.tag(), Some("2"));
    }

    #[test]
    fn rejects_what_cannot_be_answered() {
        let cases: [(&str, &str); 6] = [
            ("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCSeq: 1 INVITE\r\n\r\n", "Call-ID"),
            ("INVITE sip:a@b SIP/3.0\r\n\r\n", "version"),
            ("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>\r\nTo: <sip:a@b>\r\nCall-ID: 1\r\nCSeq: 1 BYE\r\n\r\n", "CSeq method"),
            ("SIP/2.0 99 Odd\r\n\r\n", "status code"),
            ("INVITE sip:a@b SIP/2.0\r\nVia SIP/2.0/UDP h\r\n\r\n", "colon"),
            ("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>\r\nTo: <sip:a@b>\r\nCall-ID: 1\r\nCSeq: 1 INVITE\r\nContent-Length: 10\r\n\r\nabc", "Content-Length 10"),
        ];
        for (raw, want) in cases {
            let err = Message::parse(Bytes::from(raw))
                .expect_err("must fail")
                .to_string();
            assert!(err.contains(want), "{raw:?}: {err}");
        }
    }

    #[test]
    fn stream_framing_waits_and_takes_exactly_one() {
        let mut buf = BytesMut::from(&b"\r\n\r\n"[..]);
        buf.extend_from_slice(INVITE.as_bytes());
        buf.extend_from_slice(&INVITE.as_bytes()[..20]);
        let whole = buf.clone();
        for cut in [4, 30, whole.len() - 25] {
            let mut part = BytesMut::from(&whole[..cut]);
            assert!(
                decode_stream(&mut part).expect("valid in this test").is_none(),
                "cut {cut}"
            );
        }
        let m = decode_stream(&mut buf)
            .expect("valid in this test")
            .expect("valid in this test");
        assert_eq!(m.body().as_ref(), b"v=0\n");
        assert_eq!(&buf[..], &INVITE.as_bytes()[..20]);
        let mut no_length =
            BytesMut::from("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n");
        assert!(decode_stream(&mut no_length).is_err());
    }

    #[test]
    fn builds_a_response_that_parses_back() {
        let req = Message::parse(Bytes::from_static(INVITE.as_bytes())).expect("valid in this test");
        let src: std::net::SocketAddr = "192.0.2.7:5062".parse().expect("valid in this test");
        let bytes = MessageBuilder::response_to(&req, 200, "OK", Some("vb1"), Some(src))
            .header("Contact", "<sip:voxbridge@192.0.2.1:5060>")
            .header("X-Evil", "a\r\nInjected: 1")
            .body("application/sdp", Bytes::from_static(b"v=0\r\n"))
            .build();
        let resp = Message::parse(bytes).expect("valid in this test");
        assert_eq!(resp.status(), Some(200));
        assert_eq!(resp.cseq().expect("valid in this test").method, Method::Invite);
        let to = super::super::NameAddr::parse(resp.header(HeaderName::To).expect("valid in this test"))
            .expect("valid in this test");
        assert_eq!(to.tag(), Some("vb1"));
        let via = resp.top_via().expect("valid in this test");
        assert_eq!(via.param("received"), Some(Some("192.0.2.7")));
        assert_eq!(resp.header_named("Injected"), None);
        assert_eq!(resp.body().as_ref(), b"v=0\r\n");
    }

    fn stream_of(reads: &[&[u8]]) -> Vec<String> {
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for r in reads {
            buf.extend_from_slice(r);
            loop {
                match decode_stream(&mut buf) {
                    Ok(Some(m)) => got.push(format!("{:?} {:?}", m.start_line(), m.body())),
                    Ok(None) => break,
                    Err(e) => {
                        got.push(format!("error {e}"));
                        return got;
                    }
                }
            }
        }
        got
    }

    proptest::proptest! {
        /// Any bytes: a message or an error, never a panic; on a stream the
        /// same outcome however the bytes are split.
        #[test]
        fn any_bytes_parse_or_err(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..800),
            cut in 0usize..800,
        ) {
            match Message::parse(Bytes::from(data.clone())) {
                Ok(m) => {
                    let _ = (m.cseq(), m.top_via(), m.start_line());
                }
                // A 400 for what failed, when built, always parses back.
                Err(e) => {
                    if let Some(r) = bad_request(&data, &e.to_string()) {
                        let r = Message::parse(r).expect("our 400 parses");
                        proptest::prop_assert_eq!(r.status(), Some(400));
                    }
                }
            }
            let cut = cut.min(data.len());
            proptest::prop_assert_eq!(stream_of(&[&data]), stream_of(&[&data[..cut], &data[cut..]]));
        }

        /// A request with any header values and any junk after the head:
        /// when it does not parse, its 400 (if any) parses and keeps its
        /// Call-ID.
        #[test]
        fn near_requests_get_a_400_that_parses(
            values in proptest::collection::vec("[ -~]{0,30}", 5),
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..60),
        ) {
            let mut data = format!(
                "OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h{};branch=z9hG4bK1\r\nFrom: <sip:a@b>{}\r\nTo: <sip:x@y>{}\r\nCall-ID: c{}\r\nCSeq: 1 OPTIONS{}\r\n",
                values[0], values[1], values[2], values[3], values[4]
            )
            .into_bytes();
            data.extend_from_slice(&junk);
            if let Err(e) = Message::parse(Bytes::from(data.clone())) {
                if let Some(r) = bad_request(&data, &e.to_string()) {
                    let r = Message::parse(r).expect("our 400 parses");
                    proptest::prop_assert_eq!(r.status(), Some(400));
                    let call_id = format!("c{}", values[3]);
                    proptest::prop_assert_eq!(r.call_id(), call_id.trim());
                }
            }
        }

        /// What the builder writes parses back to the same values, alone in
        /// a datagram and back to back on a stream split anywhere.
        #[test]
        fn built_messages_round_trip(
            values in proptest::collection::vec("[ -~]{0,40}", 1..5),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            seq in 0u32..(1 << 31),
            cut in 0usize..2000,
        ) {
            let mut b = MessageBuilder::request(&Method::Info, "sip:bot@vb")
                .header("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKp")
                .header("From", "<sip:a@x>;tag=1")
                .header("To", "<sip:bot@vb>;tag=2")
                .header("Call-ID", "p@x")
                .header("CSeq", format_args!("{seq} INFO"));
            for (i, v) in values.iter().enumerate() {
                b = b.header(&format!("X-P{i}"), v);
            }
            let bytes = b.body("application/octet-stream", body.clone()).build();
            let m = Message::parse(bytes.clone()).expect("valid in this test");
            proptest::prop_assert_eq!(m.cseq().expect("valid in this test").seq, seq);
            for (i, v) in values.iter().enumerate() {
                proptest::prop_assert_eq!(m.header_named(&format!("x-p{i}")), Some(v.trim()));
            }
            proptest::prop_assert_eq!(m.body().as_ref(), &body[..]);
            let mut twice = bytes.to_vec();
            twice.extend_from_slice(&bytes);
            let cut = cut.min(twice.len());
            let got = stream_of(&[&twice[..cut], &twice[cut..]]);
            proptest::prop_assert_eq!(got.len(), 2);
            proptest::prop_assert_eq!(&got[0], &got[1]);
        }
    }

    #[test]
    fn keepalives() {
        assert!(is_keepalive(b"\r\n\r\n"));
        assert!(!is_keepalive(b""));
        assert!(!is_keepalive(b"\r\nX"));
    }
}
