//! Who is calling: a JWT (`Authorization: Bearer <jwt>`, HS256 or RS256,
//! claims `customer_id`, `agent_id`, `exp`, optional `nbf`, optional
//! `role: "admin"`), an access key (`X-Access-Key` header, `accesskey`
//! query parameter, `Authorization: Bearer <key>`, or HTTP Basic with the
//! key as the password and its customer's id or the key's id as the user,
//! as provider SDKs send an account id and token), or the configured admin
//! key (same places). The
//! result, [`Principal`], carries the customer id every tenant query is
//! scoped by.
//!
//! The rule, enforced here and nowhere else: every credential that names a
//! customer resolves to an existing, active (not deleted) customer, checked
//! against the store on every request; a JWT naming a deleted or unknown
//! customer is `401`. The authorization scheme is matched case-insensitively
//! (RFC 9110 section 11.1).

use super::error::ApiError;
use super::AppState;
use crate::model::Actor;
use crate::store::Store;
use crate::time::Millis;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Authentication settings.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// HS256 shared secret.
    pub hs256_secret: Option<Vec<u8>>,
    /// RS256 public key (PEM).
    pub rs256_public_pem: Option<Vec<u8>>,
    /// Accepted clock skew for `exp`/`nbf`, seconds.
    pub leeway_s: u64,
    /// The admin key (SHA-256 kept, compared by hash).
    pub admin_key: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("hs256", &self.hs256_secret.is_some())
            .field("rs256", &self.rs256_public_pem.is_some())
            .field("leeway_s", &self.leeway_s)
            .field("admin_key", &self.admin_key.is_some())
            .finish()
    }
}

/// Prepared keys (parsed once).
#[derive(Clone)]
pub struct Auth {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    leeway: u64,
    admin_hash: Option<[u8; 32]>,
}

impl Auth {
    /// Parses the keys.
    pub fn new(c: &AuthConfig) -> crate::Result<Self> {
        let rs256 = match &c.rs256_public_pem {
            Some(pem) => Some(
                DecodingKey::from_rsa_pem(pem)
                    .map_err(|e| crate::ControlError::Config(format!("rs256 public key: {e}")))?,
            ),
            None => None,
        };
        Ok(Auth {
            hs256: c.hs256_secret.as_deref().map(DecodingKey::from_secret),
            rs256,
            leeway: c.leeway_s,
            admin_hash: c
                .admin_key
                .as_deref()
                .map(|k| Sha256::digest(k.as_bytes()).into()),
        })
    }
}

/// JWT claims voxbridge reads (`exp` and `nbf` are checked by the
/// validator; `exp` is kept to end live subscriptions when it passes).
#[derive(Debug, Deserialize)]
struct Claims {
    customer_id: Option<String>,
    agent_id: Option<String>,
    role: Option<String>,
    exp: Option<i64>,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant (absent for a bare admin).
    pub customer_id: Option<String>,
    /// Agent, from the JWT.
    pub agent_id: Option<String>,
    /// May manage customers and keys.
    pub admin: bool,
    /// For the audit log.
    pub actor: Actor,
    /// The access key used, if any (live subscriptions end when it is revoked).
    pub key_id: Option<String>,
    /// When the credential stops being valid (JWT `exp`, key expiry).
    pub expires: Option<Millis>,
}

impl Principal {
    /// The tenant every query is scoped by; 403 for a bare admin.
    pub fn customer(&self) -> Result<&str, ApiError> {
        self.customer_id.as_deref().ok_or_else(|| {
            ApiError::forbidden("this endpoint needs a customer (JWT customer_id or a customer's access key)")
        })
    }

    /// 403 unless admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::forbidden("admin only"))
        }
    }
}

fn jwt(auth: &Auth, token: &str) -> Result<Principal, ApiError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| ApiError::unauthorized(format!("bad token: {e}")))?;
    let key = match header.alg {
        Algorithm::HS256 => auth.hs256.as_ref(),
        Algorithm::RS256 => auth.rs256.as_ref(),
        _ => None,
    }
    .ok_or_else(|| ApiError::unauthorized(format!("token algorithm {:?} is not accepted", header.alg)))?;
    let mut v = Validation::new(header.alg);
    v.leeway = auth.leeway;
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp"]);
    v.validate_aud = false;
    let data = jsonwebtoken::decode::<Claims>(token, key, &v)
        .map_err(|e| ApiError::unauthorized(format!("bad token: {e}")))?;
    let c = data.claims;
    let admin = c.role.as_deref() == Some("admin");
    if c.customer_id.is_none() && !admin {
        return Err(ApiError::unauthorized("token has no customer_id"));
    }
    let actor = match (&c.agent_id, &c.customer_id) {
        (Some(a), _) => format!("agent:{a}"),
        (None, Some(cu)) => format!("customer:{cu}"),
        (None, None) => "admin".into(),
    };
    Ok(Principal {
        customer_id: c.customer_id,
        agent_id: c.agent_id,
        admin,
        actor: Actor { id: actor },
        key_id: None,
        // Accepted until exp + leeway: that is when it stops being valid.
        expires: c.exp.map(|s| {
            Millis(
                s.saturating_add(i64::try_from(auth.leeway).unwrap_or(i64::MAX))
                    .saturating_mul(1000),
            )
        }),
    })
}

/// 401 unless the principal's customer (if it names one) exists and is
/// not deleted.
async fn active(store: &Store, p: Principal) -> Result<Principal, ApiError> {
    if let Some(c) = &p.customer_id {
        if !store.customer_active(c).await? {
            return Err(ApiError::unauthorized(format!(
                "customer {c:?} does not exist or was deleted"
            )));
        }
    }
    Ok(p)
}

async fn access_key(auth: &Auth, store: &Store, key: &str) -> Result<Principal, ApiError> {
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    // Equal-length hashes: comparing them leaks nothing about the key.
    if auth.admin_hash.is_some_and(|h| h == digest) {
        return Ok(Principal {
            customer_id: None,
            agent_id: None,
            admin: true,
            actor: Actor { id: "admin".into() },
            key_id: None,
            expires: None,
        });
    }
    match store.authenticate_key(key).await? {
        Some(k) => Ok(Principal {
            actor: Actor {
                id: format!("key:{}", k.id),
            },
            customer_id: Some(k.customer_id),
            agent_id: None,
            admin: false,
            expires: k.tm_expire,
            key_id: Some(k.id),
        }),
        None => Err(ApiError::unauthorized("unknown or expired access key")),
    }
}

/// The token of `Bearer <token>`, the scheme in any case.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The user and password of `Basic <base64(user:password)>`, the scheme
/// in any case; `None` for another scheme or a value that does not decode.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, encoded) = value.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    (!password.is_empty()).then(|| (user.to_owned(), password.to_owned()))
}

fn query_key(parts: &Parts) -> Option<&str> {
    parts
        .uri
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("accesskey="))
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(value) = header("authorization") {
            if let Some((user, key)) = basic_credentials(value) {
                let p = access_key(&state.auth, &state.store, &key).await?;
                let names_it = p.customer_id.as_deref() == Some(user.as_str())
                    || p.key_id.as_deref() == Some(user.as_str())
                    || (p.admin && user == "admin");
                if !names_it {
                    return Err(ApiError::unauthorized(
                        "Basic auth: the user must be the key's customer id or the key's id",
                    ));
                }
                return Ok(p);
            }
            let token = bearer_token(value).ok_or_else(|| {
                ApiError::unauthorized("Authorization must be 'Bearer <token>' or 'Basic <account:key>'")
            })?;
            // An access key may be sent as a bearer token too.
            if token.starts_with("vbk_") || token.matches('.').count() != 2 {
                return access_key(&state.auth, &state.store, token).await;
            }
            return active(&state.store, jwt(&state.auth, token)?).await;
        }
        if let Some(key) = header("x-access-key").or_else(|| query_key(parts)) {
            return access_key(&state.auth, &state.store, key).await;
        }
        Err(ApiError::unauthorized(
            "send Authorization: Bearer <JWT> or an X-Access-Key header",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            basic_credentials(&format!("Basic {}", b64("acme:vbk_1:2"))),
            Some(("acme".into(), "vbk_1:2".into()))
        );
        assert_eq!(
            basic_credentials(&format!("basic {}", b64("acme:k"))).map(|c| c.1),
            Some("k".into())
        );
        assert_eq!(
            basic_credentials(&format!("Basic {}", b64("acme:"))),
            None,
            "no password"
        );
        assert_eq!(basic_credentials(&format!("Basic {}", b64("nocolon"))), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
        assert_eq!(basic_credentials("Bearer abc"), None);
    }
}
