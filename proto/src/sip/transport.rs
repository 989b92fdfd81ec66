//! The transports SIP runs over (RFC 3261 section 18): their names in
//! `Via` and in URIs, and whether they are reliable (which turns the
//! transactions' retransmission timers off).

/// A SIP transport. TLS is written as `transport=tls` on `sip:` URIs, the
/// way trunks use it (RFC 3261 section 26.2 deprecates `;transport=tls` for
/// `sips:` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Datagrams; requests and 2xx responses are retransmitted.
    Udp,
    /// One stream per peer, messages framed by `Content-Length`.
    Tcp,
    /// TCP under TLS.
    Tls,
}

impl Transport {
    /// The name in a `Via` header (`SIP/2.0/TCP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The value of a URI's `transport` parameter.
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// True for the stream transports: no retransmissions, responses go
    /// back on the connection the request came on.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_reliability() {
        assert_eq!(Transport::Tls.via_name(), "TLS");
        assert_eq!(Transport::Tcp.uri_param(), "tcp");
        assert!(!Transport::Udp.is_reliable());
        assert!(Transport::Tcp.is_reliable() && Transport::Tls.is_reliable());
    }
}
