//! Who may call and where a call goes: source networks, the INVITE rate
//! limit (a token bucket driven by the `now` handed in) and the rules that
//! pick a call's route from its Request-URI user, `From`, `To` and source.

use std::net::IpAddr;
use std::time::Instant;

/// An address block (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr` or `addr/prefix`.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address or address/prefix"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix must be 0-{max}"))?,
            None => max,
        };
        Ok(Cidr { net, prefix })
    }

    /// True when `ip` is inside the block (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// A pattern on a user part: exact, or a prefix when it ends in `*`.
fn user_matches(pattern: &str, value: Option<&str>) -> bool {
    let Some(value) = value else {
        return false;
    };
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => value == pattern,
    }
}

/// One `[[sip.routes]]` rule: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRule {
    /// Request-URI user (the number dialled).
    pub user: Option<String>,
    /// `From` user (the caller).
    pub from: Option<String>,
    /// `To` user.
    pub to: Option<String>,
    /// Source network.
    pub source: Option<Cidr>,
    /// The route the call takes.
    pub route: String,
}

/// What a rule is matched against.
#[derive(Debug, Clone, Copy)]
pub struct CallTarget<'a> {
    /// Request-URI user.
    pub user: Option<&'a str>,
    /// `From` user.
    pub from: Option<&'a str>,
    /// `To` user.
    pub to: Option<&'a str>,
    /// Source address.
    pub source: IpAddr,
}

impl RouteRule {
    /// True when every condition holds.
    pub fn matches(&self, t: &CallTarget<'_>) -> bool {
        self.user.as_deref().is_none_or(|p| user_matches(p, t.user))
            && self.from.as_deref().is_none_or(|p| user_matches(p, t.from))
            && self.to.as_deref().is_none_or(|p| user_matches(p, t.to))
            && self.source.is_none_or(|c| c.contains(t.source))
    }
}

/// A token bucket: `rate` INVITEs a second on average, `burst` at once.
#[derive(Debug, Clone)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl RateLimit {
    /// A full bucket. `rate` 0 means no limit.
    pub fn new(rate: f64, burst: f64) -> RateLimit {
        RateLimit {
            rate,
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            last: None,
        }
    }

    /// Takes one token at `now`; false when the bucket is empty.
    pub fn admit(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn cidr_blocks() {
        let c = Cidr::parse("10.1.0.0/16").expect("valid");
        assert!(c.contains(ip("10.1.200.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(c.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped");
        assert!(Cidr::parse("0.0.0.0/0").expect("valid").contains(ip("192.0.2.1")));
        assert!(Cidr::parse("2001:db8::/32")
            .expect("valid")
            .contains(ip("2001:db8:1::5")));
        assert!(Cidr::parse("192.0.2.7").expect("valid").contains(ip("192.0.2.7")));
        assert!(!Cidr::parse("192.0.2.7").expect("valid").contains(ip("192.0.2.8")));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_match_every_condition_given() {
        let rule = RouteRule {
            user: Some("+4930*".into()),
            source: Some(Cidr::parse("192.0.2.0/24").expect("valid")),
            route: "berlin".into(),
            ..RouteRule::default()
        };
        let t = |user, source| CallTarget {
            user: Some(user),
            from: Some("+1555"),
            to: None,
            source: ip(source),
        };
        assert!(rule.matches(&t("+4930123", "192.0.2.9")));
        assert!(!rule.matches(&t("+4940123", "192.0.2.9")));
        assert!(!rule.matches(&t("+4930123", "198.51.100.1")));
        let exact = RouteRule {
            from: Some("+1555".into()),
            route: "r".into(),
            ..RouteRule::default()
        };
        assert!(exact.matches(&t("x", "192.0.2.1")));
    }

    #[test]
    fn the_bucket_refills_at_its_rate() {
        let t = Instant::now();
        let mut b = RateLimit::new(10.0, 2.0);
        assert!(b.admit(t) && b.admit(t));
        assert!(!b.admit(t), "burst used up");
        assert!(!b.admit(t + Duration::from_millis(50)));
        assert!(b.admit(t + Duration::from_millis(150)), "one token after 100 ms");
        let mut off = RateLimit::new(0.0, 0.0);
        assert!((0..1000).all(|_| off.admit(t)));
    }
}
