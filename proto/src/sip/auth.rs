//! SIP digest authentication, the server's half: the challenge a UAS sends
//! (`WWW-Authenticate`) and the check of the `Authorization` a caller
//! answers with. RFC 3261 section 22 with RFC 8760's SHA-256 (and MD5 for
//! old PBXs), `qop=auth` or none; the hashes are RFC 7616's.

use super::message::bad;
use crate::error::ProtoError;
use md5::Md5;
use sha2::{Digest, Sha256};

/// The hash of a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `MD5` (RFC 3261; what most PBXs and trunks still send).
    Md5,
    /// `SHA-256` (RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The token in `algorithm=`.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn hash(self, text: &str) -> String {
        fn hex(bytes: &[u8]) -> String {
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
        match self {
            Algorithm::Md5 => hex(&Md5::digest(text.as_bytes())),
            Algorithm::Sha256 => hex(&Sha256::digest(text.as_bytes())),
        }
    }
}

/// A `WWW-Authenticate` value: `Digest realm="..", nonce="..", algorithm=.., qop="auth"`
/// (`stale=true` when the caller's nonce had expired but its password was right).
pub fn challenge(realm: &str, nonce: &str, algorithm: Algorithm, stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
        algorithm.token()
    )
}

/// The digest `response` (RFC 7616 section 3.4.1) for `qop=auth` when
/// `qop` gives `(nc, cnonce)`, else RFC 2069's form.
#[allow(clippy::too_many_arguments)]
pub fn response(
    algorithm: Algorithm,
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let ha1 = algorithm.hash(&format!("{username}:{realm}:{password}"));
    let ha2 = algorithm.hash(&format!("{method}:{uri}"));
    match qop {
        Some((nc, cnonce)) => algorithm.hash(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")),
        None => algorithm.hash(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// An `Authorization` (or `Proxy-Authorization`) value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce` (ours, from the challenge).
    pub nonce: String,
    /// `uri` (the Request-URI the caller signed).
    pub uri: String,
    /// `response`, lower-case hex.
    pub response: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// `(nc, cnonce)` when `qop=auth`.
    pub qop: Option<(String, String)>,
}

impl Credentials {
    /// Parses a `Digest` credentials value; anything else (another scheme,
    /// `auth-int`, an unknown algorithm, a missing field) is an error that
    /// says what.
    pub fn parse(value: &str) -> Result<Credentials, ProtoError> {
        let rest = value
            .trim()
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("digest "))
            .map(|_| &value.trim()[7..])
            .ok_or_else(|| bad("Authorization is not Digest"))?;
        let mut fields = std::collections::HashMap::new();
        for item in super::message::split_list(rest) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| bad(format!("Authorization field without '=': {item:.40?}")))?;
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            fields.insert(k.trim().to_ascii_lowercase(), v.to_owned());
        }
        let mut take = |k: &str| {
            fields
                .remove(k)
                .ok_or_else(|| bad(format!("Authorization without {k}")))
        };
        let username = take("username")?;
        let realm = take("realm")?;
        let nonce = take("nonce")?;
        let uri = take("uri")?;
        let response = take("response")?.to_ascii_lowercase();
        let algorithm = match take("algorithm").ok().as_deref() {
            None => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
            Some(a) => return Err(bad(format!("digest algorithm {a:.20?} is not supported"))),
        };
        let qop = match take("qop").ok() {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some((take("nc")?, take("cnonce")?)),
            Some(q) => return Err(bad(format!("qop {q:.20?} is not supported"))),
        };
        Ok(Credentials {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            qop,
        })
    }

    /// True when `response` is what `password` gives for `method` (compared
    /// in constant time).
    pub fn verify(&self, method: &str, password: &str) -> bool {
        let qop = self
            .qop
            .as_ref()
            .map(|(nc, cnonce)| (nc.as_str(), cnonce.as_str()));
        let want = response(
            self.algorithm,
            &self.username,
            &self.realm,
            password,
            method,
            &self.uri,
            &self.nonce,
            qop,
        );
        want.len() == self.response.len()
            && want
                .bytes()
                .zip(self.response.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 section 3.9.1 (the same hashes SIP uses).
    #[test]
    fn the_rfc_7616_examples() {
        let (user, realm, pass) = ("Mufasa", "http-auth@example.org", "Circle of Life");
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let qop = Some(("00000001", cnonce));
        assert_eq!(
            response(
                Algorithm::Md5,
                user,
                realm,
                pass,
                "GET",
                "/dir/index.html",
                nonce,
                qop
            ),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        assert_eq!(
            response(
                Algorithm::Sha256,
                user,
                realm,
                pass,
                "GET",
                "/dir/index.html",
                nonce,
                qop
            ),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn credentials_parse_and_verify() {
        let r = response(
            Algorithm::Sha256,
            "trunk",
            "voxbridge",
            "s3cret",
            "INVITE",
            "sip:bot@vb",
            "n1",
            Some(("00000001", "c, 1")),
        );
        let value = format!(
            "Digest username=\"trunk\", realm=\"voxbridge\", nonce=\"n1\", uri=\"sip:bot@vb\", \
             response=\"{r}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c, 1\""
        );
        let c = Credentials::parse(&value).expect("valid");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert!(c.verify("INVITE", "s3cret"));
        assert!(!c.verify("INVITE", "wrong"));
        assert!(!c.verify("BYE", "s3cret"));
        let md5 = response(Algorithm::Md5, "u", "r", "p", "INVITE", "sip:x", "n", None);
        let old = format!("Digest username=\"u\",realm=\"r\",nonce=\"n\",uri=\"sip:x\",response=\"{md5}\"");
        assert!(Credentials::parse(&old)
            .expect("RFC 2069 form")
            .verify("INVITE", "p"));
        for bad in [
            "Basic dXNlcjpwYXNz",
            "Digest username=\"u\"",
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"x\", response=\"0\", algorithm=SHA-512",
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"x\", response=\"0\", qop=auth-int",
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"x\", response=\"0\", qop=auth",
        ] {
            assert!(Credentials::parse(bad).is_err(), "{bad}");
        }
        assert!(challenge("voxbridge", "abc", Algorithm::Sha256, true).ends_with("stale=true"));
    }

    proptest::proptest! {
        /// Any text after `Digest `: credentials or an error, never a panic;
        /// parsed credentials verify without panicking.
        #[test]
        fn any_credentials_parse_or_err(text in "[ -~]{0,300}") {
            if let Ok(c) = Credentials::parse(&format!("Digest {text}")) {
                let _ = c.verify("INVITE", "p");
            }
            let _ = Credentials::parse(&text);
        }
    }
}
