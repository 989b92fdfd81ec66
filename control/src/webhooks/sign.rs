//! Webhook signatures, sans-IO. Every delivery carries two signature
//! schemes over the same body and timestamp:
//!
//! - voxbridge's: `X-Voxbridge-Timestamp: <unix seconds>` and
//!   `X-Voxbridge-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`,
//!   the key being the secret string's bytes;
//! - Standard Webhooks (<https://www.standardwebhooks.com>):
//!   `webhook-id`, `webhook-timestamp` and
//!   `webhook-signature: v1,<base64 HMAC-SHA256(key, id + "." + timestamp + "." + body)>`,
//!   the key being the base64 part of the `whsec_...` secret, decoded.
//!
//! While a rotated-out secret is still in its overlap window, both headers
//! carry one signature per secret (`sha256=a,sha256=b`; `v1,a v1,b`), so a
//! receiver holding either secret verifies.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of a secret, as Standard Webhooks libraries expect.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", B64.encode(bytes))
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `X-Voxbridge-Signature` for one secret: `sha256=<hex>`.
pub fn voxbridge_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    format!(
        "sha256={}",
        hex(&hmac(secret.as_bytes(), &[ts.as_bytes(), b".", body]))
    )
}

/// `webhook-signature` for one secret: `v1,<base64>`. A secret that is not
/// `whsec_<base64>` is used as raw bytes.
pub fn standard_signature(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b| B64.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let ts = timestamp.to_string();
    let mac = hmac(&key, &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", B64.encode(mac))
}

/// The signature headers of one delivery, signed with every secret in
/// `secrets` (the current one first).
pub fn headers(
    secrets: &[&str],
    msg_id: &str,
    event_type: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let ours: Vec<String> = secrets
        .iter()
        .map(|s| voxbridge_signature(s, timestamp, body))
        .collect();
    let standard: Vec<String> = secrets
        .iter()
        .map(|s| standard_signature(s, msg_id, timestamp, body))
        .collect();
    vec![
        ("x-voxbridge-event", event_type.to_owned()),
        ("x-voxbridge-timestamp", timestamp.to_string()),
        ("x-voxbridge-signature", ours.join(",")),
        ("webhook-id", msg_id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", standard.join(" ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        // The example of the Standard Webhooks specification.
        let sig = standard_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn hmac_sha256_known_answer() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let sig = voxbridge_signature("Jefe", 1, b"x");
        assert_eq!(sig, format!("sha256={}", hex(&hmac(b"Jefe", &[b"1.x"]))));
    }

    #[test]
    fn rotation_signs_with_both_secrets() {
        let h = headers(&["whsec_AAAA", "whsec_BBBB"], "m1", "call_hungup", 7, b"{}");
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(get("x-voxbridge-signature").matches("sha256=").count(), 2);
        assert_eq!(get("webhook-signature").split(' ').count(), 2);
        assert_eq!(get("x-voxbridge-event"), "call_hungup");
        assert!(new_secret().starts_with(SECRET_PREFIX));
        assert_ne!(new_secret(), new_secret());
    }
}
