//! Typed views of the SIP headers a user agent acts on, borrowed from the
//! message's head: `Via`, name-addr (`From`, `To`, `Contact`, `Refer-To`),
//! `CSeq`, SIP URIs and `;name=value` parameters. Each parses on demand
//! and says what is wrong when it cannot.

use super::message::{bad, Method};
use crate::error::ProtoError;
use std::net::SocketAddr;

/// Looks a parameter up in a `;a=1;b;c="x"` list: `Some(Some(v))` with a
/// value (quotes removed), `Some(None)` for a flag, `None` when absent.
/// Names compare without case.
pub fn find_param<'a>(params: &'a str, name: &str) -> Option<Option<&'a str>> {
    params
        .split(';')
        .map(|p| p.trim_matches([' ', '\t']))
        .find_map(|p| match p.split_once('=') {
            Some((n, v)) if n.trim_end().eq_ignore_ascii_case(name) => {
                Some(Some(v.trim_start().trim_matches('"')))
            }
            None if p.eq_ignore_ascii_case(name) => Some(None),
            _ => None,
        })
}

fn parse_host_port(text: &str) -> Result<(&str, Option<u16>), ProtoError> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| bad(format!("unclosed IPv6 reference {text:.60?}")))?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(bad(format!("junk after IPv6 reference {text:.60?}"))),
        };
        (&text[..end + 2], port)
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
    {
        return Err(bad(format!("bad host {host:.60?}")));
    }
    let port = match port {
        Some(p) => Some(
            p.trim()
                .parse::<u16>()
                .map_err(|_| bad(format!("bad port {p:.10?}")))?,
        ),
        None => None,
    };
    Ok((host, port))
}

/// One `Via` value: `SIP/2.0/UDP host:port;branch=z9hG4bK...;rport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// `UDP`, `TCP`, `TLS`, `WS`, ...
    pub transport: &'a str,
    /// The sent-by host (IPv6 kept in brackets).
    pub host: &'a str,
    /// The sent-by port, when written.
    pub port: Option<u16>,
    params: &'a str,
}

impl<'a> Via<'a> {
    /// Parses one Via value (not a comma list).
    pub fn parse(value: &'a str) -> Result<Via<'a>, ProtoError> {
        let value = value.trim();
        let rest = value
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("SIP/2.0/"))
            .map(|_| &value[8..])
            .ok_or_else(|| bad(format!("Via without SIP/2.0/: {value:.60?}")))?;
        let (transport, rest) = rest
            .split_once([' ', '\t'])
            .ok_or_else(|| bad(format!("Via without sent-by: {value:.60?}")))?;
        let (sent_by, params) = rest.split_once(';').unwrap_or((rest, ""));
        let (host, port) = parse_host_port(sent_by)?;
        if transport.is_empty() {
            return Err(bad("Via without a transport"));
        }
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }

    /// A parameter (`branch`, `rport`, `received`, ...).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// The transaction branch.
    pub fn branch(&self) -> Option<&'a str> {
        self.param("branch").flatten()
    }

    /// Where responses go (RFC 3261 section 18.2.2 with RFC 3581): to the
    /// source address when `rport` was asked for or the message came over
    /// a connection, else to `received`/sent-by at the sent-by port (5060
    /// when none is written).
    pub fn response_target(&self, source: SocketAddr, reliable: bool) -> SocketAddr {
        if reliable || self.param("rport").is_some() {
            return source;
        }
        let port = self.port.unwrap_or(5060);
        let host = self
            .param("received")
            .flatten()
            .unwrap_or(self.host)
            .trim_matches(['[', ']']);
        host.parse()
            .map(|ip| SocketAddr::new(ip, port))
            .unwrap_or_else(|_| SocketAddr::new(source.ip(), port))
    }

    /// The Via value as it goes into a response: `received` set to the
    /// source address and an empty `rport` filled in (RFC 3581).
    pub fn with_received(value: &str, source: SocketAddr) -> String {
        let mut out = String::with_capacity(value.len() + 40);
        for (i, p) in value.split(';').enumerate() {
            if i > 0 {
                out.push(';');
            }
            let trimmed = p.trim();
            if i > 0 && trimmed.eq_ignore_ascii_case("rport") {
                out.push_str(&format!("rport={}", source.port()));
            } else if i > 0
                && trimmed
                    .split_once('=')
                    .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("received"))
            {
                out.push_str(&format!("received={}", source.ip()));
            } else {
                out.push_str(p);
            }
        }
        if find_param(value.split_once(';').map_or("", |(_, p)| p), "received").is_none() {
            out.push_str(&format!(";received={}", source.ip()));
        }
        out
    }
}

/// A name-addr or addr-spec: `"Alice" <sip:alice@example.com>;tag=19`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name, unquoted, when there is one.
    pub display: Option<&'a str>,
    /// The URI inside `<...>` (or the whole addr-spec).
    pub uri: &'a str,
    params: &'a str,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (not a comma list).
    pub fn parse(value: &'a str) -> Result<NameAddr<'a>, ProtoError> {
        let value = value.trim();
        let (display, after_display) = if let Some(rest) = value.strip_prefix('"') {
            let mut escaped = false;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    let close = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    close
                })
                .map(|(i, _)| i)
                .ok_or_else(|| bad(format!("unclosed display name {value:.60?}")))?;
            (Some(&rest[..end]), rest[end + 1..].trim_start())
        } else {
            match value.find('<') {
                Some(i) => {
                    let d = value[..i].trim();
                    ((!d.is_empty()).then_some(d), &value[i..])
                }
                None => (None, value),
            }
        };
        let (uri, params) = if let Some(rest) = after_display.strip_prefix('<') {
            let end = rest
                .find('>')
                .ok_or_else(|| bad(format!("unclosed <URI> in {value:.60?}")))?;
            let after = rest[end + 1..].trim_start();
            let params = match after.strip_prefix(';') {
                Some(p) => p,
                None if after.is_empty() => "",
                None => return Err(bad(format!("junk after <URI> in {value:.60?}"))),
            };
            (&rest[..end], params)
        } else if display.is_some() {
            return Err(bad(format!("display name without <URI> in {value:.60?}")));
        } else {
            after_display.split_once(';').unwrap_or((after_display, ""))
        };
        let uri = uri.trim();
        if !uri.contains(':') || uri.contains([' ', '\t']) {
            return Err(bad(format!("not a URI: {uri:.60?}")));
        }
        Ok(NameAddr { display, uri, params })
    }

    /// A header parameter.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// The `tag` parameter (identifies a dialog's end).
    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").flatten()
    }
}

/// `CSeq: 314159 INVITE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number (less than 2^31, RFC 3261 section 8.1.1.5).
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value.
    pub fn parse(value: &str) -> Result<CSeq, ProtoError> {
        let mut parts = value.split_whitespace();
        let (Some(n), Some(m), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(format!("bad CSeq {value:.40?}")));
        };
        let seq = n
            .parse::<u32>()
            .ok()
            .filter(|s| *s < 1 << 31)
            .ok_or_else(|| bad(format!("bad CSeq number {n:.12?}")))?;
        Ok(CSeq {
            seq,
            method: Method::from_token(m),
        })
    }
}

/// A `sip:`/`sips:` URI: `sip:user:password@host:port;uri-params?headers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `sip` or `sips`.
    pub scheme: &'a str,
    /// The user part, when there is one (a phone number or a name).
    pub user: Option<&'a str>,
    /// The host (IPv6 kept in brackets).
    pub host: &'a str,
    /// The port, when written.
    pub port: Option<u16>,
    params: &'a str,
}

impl<'a> SipUri<'a> {
    /// Parses a SIP or SIPS URI (other schemes, such as `tel:`, are errors).
    pub fn parse(uri: &'a str) -> Result<SipUri<'a>, ProtoError> {
        let (scheme, rest) = uri
            .trim()
            .split_once(':')
            .ok_or_else(|| bad(format!("not a URI: {uri:.60?}")))?;
        if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
            return Err(bad(format!("not a SIP URI: {uri:.60?}")));
        }
        let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
        let (user_host, params) = match (rest.find('@'), rest.find(';')) {
            // A ';' inside the user part (telephone-subscriber) is not a URI parameter.
            (Some(at), _) => match rest[at..].find(';') {
                Some(semi) => (&rest[..at + semi], &rest[at + semi + 1..]),
                None => (rest, ""),
            },
            (None, Some(semi)) => (&rest[..semi], &rest[semi + 1..]),
            (None, None) => (rest, ""),
        };
        let (user, host_port) = match user_host.rsplit_once('@') {
            Some((u, h)) => (Some(u.split_once(':').map_or(u, |(u, _)| u)), h),
            None => (None, user_host),
        };
        let (host, port) = parse_host_port(host_port)?;
        Ok(SipUri {
            scheme,
            user: user.filter(|u| !u.is_empty()),
            host,
            port,
            params,
        })
    }

    /// A URI parameter (`transport`, `lr`, ...).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_forms() {
        let v = Via::parse("SIP/2.0/UDP 192.0.2.4:5062;branch=z9hG4bKx;rport").expect("valid in this test");
        assert_eq!((v.transport, v.host, v.port), ("UDP", "192.0.2.4", Some(5062)));
        assert_eq!(v.branch(), Some("z9hG4bKx"));
        assert_eq!(v.param("rport"), Some(None));
        let src: SocketAddr = "198.51.100.1:40000".parse().expect("valid in this test");
        assert_eq!(v.response_target(src, false), src);
        let v6 = Via::parse("SIP/2.0/TCP [2001:db8::1]:5070 ; branch=z9hG4bKy").expect("valid in this test");
        assert_eq!((v6.host, v6.port), ("[2001:db8::1]", Some(5070)));
        let plain = Via::parse("SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1").expect("valid in this test");
        assert_eq!(
            plain.response_target(src, false),
            "198.51.100.1:5060".parse().expect("valid in this test")
        );
        let w = Via::with_received("SIP/2.0/UDP h:5062;rport;branch=z9hG4bK1", src);
        assert_eq!(
            w,
            "SIP/2.0/UDP h:5062;rport=40000;branch=z9hG4bK1;received=198.51.100.1"
        );
        for bad in [
            "SIP/2.0/UDP",
            "HTTP/1.1 x",
            "SIP/2.0/UDP h:99999",
            "SIP/2.0/UDP [::1",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"Alice \\\"A\\\"\" <sip:alice@example.com;transport=tcp>;tag=9")
            .expect("valid in this test");
        assert_eq!(n.display, Some("Alice \\\"A\\\""));
        assert_eq!(n.uri, "sip:alice@example.com;transport=tcp");
        assert_eq!(n.tag(), Some("9"));
        let bare = NameAddr::parse("sip:bob@example.com;tag=7").expect("valid in this test");
        assert_eq!((bare.uri, bare.tag()), ("sip:bob@example.com", Some("7")));
        let unquoted = NameAddr::parse("Bob <sip:bob@b>").expect("valid in this test");
        assert_eq!((unquoted.display, unquoted.tag()), (Some("Bob"), None));
        for bad in [
            "\"open <sip:a@b>",
            "<sip:a@b",
            "Bob sip:a@b",
            "<nocolon>",
            "<sip:a@b> junk",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cseq_and_uri() {
        let c = CSeq::parse("  42   BYE ").expect("valid in this test");
        assert_eq!((c.seq, c.method), (42, Method::Bye));
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert!(CSeq::parse("1 INVITE extra").is_err());
        let u = SipUri::parse("sip:+4930123;phone-context=x@gw.example.com:5080;transport=udp?X=1")
            .expect("valid in this test");
        assert_eq!(u.user, Some("+4930123;phone-context=x"));
        assert_eq!((u.host, u.port), ("gw.example.com", Some(5080)));
        assert_eq!(u.param("transport"), Some(Some("udp")));
        let h = SipUri::parse("sip:192.0.2.1;lr").expect("valid in this test");
        assert_eq!((h.user, h.host, h.param("lr")), (None, "192.0.2.1", Some(None)));
        assert!(SipUri::parse("tel:+1234").is_err());
        assert!(SipUri::parse("sip:user@").is_err());
    }
}
