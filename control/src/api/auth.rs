//! Who is calling: a JWT (`Authorization: Bearer <jwt>`, HS256 or RS256,
//! claims `customer_id`, `agent_id`, `exp`, optional `role: "admin"`), an
//! access key (`X-Access-Key` header or `accesskey` query parameter), or the
//! configured admin key (same places). The result, [`Principal`], carries
//! the customer id every tenant query is scoped by.

use super::error::ApiError;
use super::AppState;
use crate::model::Actor;
use crate::store::Store;
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

/// JWT claims voxbridge reads.
#[derive(Debug, Deserialize)]
struct Claims {
    customer_id: Option<String>,
    agent_id: Option<String>,
    role: Option<String>,
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
    })
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
        }),
        None => Err(ApiError::unauthorized("unknown or expired access key")),
    }
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
        if let Some(bearer) = header("authorization") {
            let token = bearer
                .strip_prefix("Bearer ")
                .ok_or_else(|| ApiError::unauthorized("Authorization must be 'Bearer <token>'"))?
                .trim();
            // An access key may be sent as a bearer token too.
            if token.starts_with("vbk_") || token.matches('.').count() != 2 {
                return access_key(&state.auth, &state.store, token).await;
            }
            return jwt(&state.auth, token);
        }
        if let Some(key) = header("x-access-key").or_else(|| query_key(parts)) {
            return access_key(&state.auth, &state.store, key).await;
        }
        Err(ApiError::unauthorized(
            "send Authorization: Bearer <JWT> or an X-Access-Key header",
        ))
    }
}
