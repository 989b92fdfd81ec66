//! Where webhooks may not go: loopback, private (RFC 1918, unique local),
//! link-local (with the 169.254.169.254 metadata address), carrier-grade
//! NAT, unspecified, multicast, broadcast and documentation ranges, and the
//! IPv4-mapped forms of all of those, unless an allow-list entry (a CIDR
//! from `[control.webhooks] allow`) covers the address.
//!
//! Checked twice: when an endpoint is saved (its host resolved then), and on
//! every delivery by [`GuardedResolver`], the HTTP client's DNS resolver,
//! which drops forbidden addresses from each answer, so a name that
//! re-resolves to an inside address later (DNS rebinding) gets no
//! connection. URLs with an IP literal are checked by [`check_url`] before
//! each request, since they are never resolved.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Whether `ip` is an outside, routable address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || o[0] >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x64 && s[1] == 0xff9b))
}

/// The allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow(pub Vec<IpNet>);

impl Allow {
    /// Whether a webhook may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.0.iter().any(|n| n.contains(&ip))
    }
}

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not an http(s) URL with a host and without credentials.
    Malformed(String),
    /// It is, or resolves to, an internal address.
    Internal(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Malformed(m) | Refused::Internal(m) => f.write_str(m),
        }
    }
}

/// Checks a URL's form (http or https, a host, no credentials) and, for an
/// IP literal, the address. Returns the host.
pub fn check_url(url: &reqwest::Url, allow: &Allow) -> Result<String, Refused> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused::Malformed("url must be http or https".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Malformed("url must not carry credentials".into()));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), allow)?,
        Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), allow)?,
        None => return Err(Refused::Malformed("url has no host".into())),
    };
    Ok(host)
}

fn check_ip(ip: IpAddr, allow: &Allow) -> Result<String, Refused> {
    match allow.permits(ip) {
        true => Ok(ip.to_string()),
        false => Err(Refused::Internal(format!(
            "{ip} is a loopback, private, link-local or otherwise internal address"
        ))),
    }
}

/// How long saving an endpoint waits for its name to resolve. A resolver
/// that retries an unknown name can take 10 s or more; the API answers
/// sooner, and every delivery checks again anyway.
pub const SAVE_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Resolves `host` and refuses it if any address it has now is internal. A
/// name that does not resolve (yet), or not within [`SAVE_LOOKUP_TIMEOUT`],
/// passes: every delivery checks again.
pub async fn check_host(host: &str, port: u16, allow: &Allow) -> Result<(), Refused> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let lookup = tokio::time::timeout(SAVE_LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port))).await;
    let addrs: Vec<SocketAddr> = match lookup {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => {
            tracing::info!(host, error = %e, "webhook host does not resolve now; checked again at delivery");
            return Ok(());
        }
        Err(_) => {
            tracing::info!(
                host,
                "webhook host did not resolve in time; checked again at delivery"
            );
            return Ok(());
        }
    };
    match addrs.iter().find(|a| !allow.permits(a.ip())) {
        Some(bad) => Err(Refused::Internal(format!(
            "{host} resolves to {}, an internal address",
            bad.ip()
        ))),
        None => Ok(()),
    }
}

/// The webhook client's resolver: the system's answer less forbidden
/// addresses; an error when none is left.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub Arc<Allow>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok: Vec<SocketAddr> = all.into_iter().filter(|a| allow.permits(a.ip())).collect();
            if ok.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> =
                    format!("{host} resolves only to internal addresses (refused)").into();
                return Err(e);
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_addresses_are_refused() {
        for bad in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = bad.parse().expect("ip");
            assert!(!is_public(ip), "{bad} must be refused");
        }
        for good in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            let ip: IpAddr = good.parse().expect("ip");
            assert!(is_public(ip), "{good} is public");
        }
    }

    #[test]
    fn the_allow_list_opens_ranges() {
        let allow = Allow(vec!["127.0.0.0/8".parse().expect("net")]);
        assert!(allow.permits("127.0.0.1".parse().expect("ip")));
        assert!(!allow.permits("10.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn urls_are_checked() {
        let none = Allow::default();
        let u = |s: &str| reqwest::Url::parse(s).expect("url");
        assert!(check_url(&u("http://127.0.0.1:8080/hook"), &none).is_err());
        assert!(check_url(&u("http://[::1]/hook"), &none).is_err());
        assert!(check_url(&u("http://169.254.169.254/latest/meta-data"), &none).is_err());
        assert!(check_url(&u("http://10.1.2.3/"), &none).is_err());
        assert!(check_url(&u("ftp://example.com/"), &none).is_err());
        assert!(check_url(&u("https://user:pw@example.com/"), &none).is_err());
        assert_eq!(
            check_url(&u("https://example.com/x"), &none),
            Ok("example.com".into())
        );
        assert_eq!(check_url(&u("http://8.8.8.8/x"), &none), Ok("8.8.8.8".into()));
    }

    #[tokio::test]
    async fn the_delivery_resolver_drops_inside_addresses() {
        use reqwest::dns::Resolve as _;
        let guarded = GuardedResolver(Arc::new(Allow::default()));
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        assert!(
            guarded.resolve(name).await.is_err(),
            "localhost resolves only inside"
        );
        let open = GuardedResolver(Arc::new(Allow(vec![
            "127.0.0.0/8".parse().expect("net"),
            "::1/128".parse().expect("net"),
        ])));
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        assert!(open.resolve(name).await.is_ok());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused() {
        assert!(check_host("localhost", 80, &Allow::default()).await.is_err());
        let allow = Allow(vec![
            "127.0.0.0/8".parse().expect("net"),
            "::1/128".parse().expect("net"),
        ]);
        assert!(check_host("localhost", 80, &allow).await.is_ok());
    }
}
