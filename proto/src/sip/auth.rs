//! SIP digest authentication, both halves. The server's: the challenge a
//! UAS sends (`WWW-Authenticate`) and the check of the `Authorization` a
//! caller answers with. The client's: a trunk's challenge read
//! ([`Challenge::parse`], from `WWW-Authenticate` or `Proxy-Authenticate`)
//! and answered ([`Challenge::authorization`]). RFC 3261 section 22 with
//! RFC 8760's SHA-256 (and MD5 for old PBXs), `qop=auth` or none; the
//! hashes are RFC 7616's.

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

/// A challenge from a server (`WWW-Authenticate` or `Proxy-Authenticate`),
/// parsed: what the client needs to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, returned as given.
    pub opaque: Option<String>,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// The server offers `qop=auth` (the answer then carries `nc` and `cnonce`).
    pub qop_auth: bool,
    /// `stale=true`: the nonce expired, the password was right.
    pub stale: bool,
}

impl Challenge {
    /// Parses a `Digest` challenge; another scheme, an algorithm other than
    /// MD5 and SHA-256, a `qop` list without `auth` or a missing realm or
    /// nonce is an error that says what.
    pub fn parse(value: &str) -> Result<Challenge, ProtoError> {
        let trimmed = value.trim();
        let rest = trimmed
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("digest "))
            .map(|_| &trimmed[7..])
            .ok_or_else(|| bad("challenge is not Digest"))?;
        let mut fields = std::collections::HashMap::new();
        for item in super::message::split_list(rest) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| bad(format!("challenge field without '=': {item:.40?}")))?;
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            fields.insert(k.trim().to_ascii_lowercase(), v.to_owned());
        }
        let mut take = |k: &str| fields.remove(k);
        let realm = take("realm").ok_or_else(|| bad("challenge without realm"))?;
        let nonce = take("nonce").ok_or_else(|| bad("challenge without nonce"))?;
        let algorithm = match take("algorithm").as_deref() {
            None => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
            Some(a) => return Err(bad(format!("digest algorithm {a:.20?} is not supported"))),
        };
        let qop_auth = match take("qop") {
            None => false,
            Some(q) if q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")) => true,
            Some(q) => return Err(bad(format!("qop {q:.20?} does not offer auth"))),
        };
        let stale = take("stale").is_some_and(|s| s.eq_ignore_ascii_case("true"));
        Ok(Challenge {
            realm,
            nonce,
            opaque: take("opaque"),
            algorithm,
            qop_auth,
            stale,
        })
    }

    /// The `Authorization` (or `Proxy-Authorization`) value answering this
    /// challenge for `method` on `uri`; with `qop=auth`, `cnonce` and the
    /// nonce count `nc` (1 for a nonce's first use) go in.
    pub fn authorization(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> String {
        let nc = format!("{nc:08x}");
        let qop = self.qop_auth.then_some((nc.as_str(), cnonce));
        let r = response(
            self.algorithm,
            username,
            &self.realm,
            password,
            method,
            uri,
            &self.nonce,
            qop,
        );
        let mut v = format!(
            "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{r}\", algorithm={}",
            self.realm,
            self.nonce,
            self.algorithm.token()
        );
        if self.qop_auth {
            v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        }
        if let Some(o) = &self.opaque {
            v.push_str(&format!(", opaque=\"{o}\""));
        }
        v
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

    #[test]
    fn a_challenge_is_answered_as_the_server_checks_it() {
        for algorithm in [Algorithm::Md5, Algorithm::Sha256] {
            let c = Challenge::parse(&challenge("trunk.example", "n0nce", algorithm, false))
                .expect("ours parses");
            assert_eq!((c.algorithm, c.qop_auth, c.stale), (algorithm, true, false));
            let answer = c.authorization("acme", "pw", "INVITE", "sip:+15550100@trunk.example", "c1", 1);
            let creds = Credentials::parse(&answer).expect("the answer parses");
            assert_eq!(creds.qop, Some(("00000001".into(), "c1".into())));
            assert!(creds.verify("INVITE", "pw"));
            assert!(!creds.verify("INVITE", "other"));
        }
        // Asterisk's form: no qop, an opaque to return.
        let c = Challenge::parse("Digest algorithm=MD5, realm=\"asterisk\", nonce=\"1a2b\", opaque=\"o9\"")
            .expect("parses");
        assert!(!c.qop_auth && c.opaque.as_deref() == Some("o9"));
        let answer = c.authorization("u", "p", "INVITE", "sip:x@y", "unused", 1);
        assert!(answer.ends_with("opaque=\"o9\"") && !answer.contains("qop"));
        assert!(Credentials::parse(&answer).expect("parses").verify("INVITE", "p"));
        let stale = Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth,auth-int\", stale=TRUE")
            .expect("parses");
        assert!(stale.stale && stale.qop_auth);
        for bad in [
            "Basic realm=\"r\"",
            "Digest nonce=\"n\"",
            "Digest realm=\"r\"",
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256",
            "Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"",
            "Digest realm",
        ] {
            assert!(Challenge::parse(bad).is_err(), "{bad}");
        }
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

        /// Any challenge text: a challenge or an error, never a panic; a
        /// parsed one is answered without panicking.
        #[test]
        fn any_challenge_parses_or_errs(text in "[ -~]{0,300}") {
            if let Ok(c) = Challenge::parse(&format!("Digest {text}")) {
                let _ = c.authorization("u", "p", "INVITE", "sip:x", "c", 1);
            }
            let _ = Challenge::parse(&text);
        }
    }
}
