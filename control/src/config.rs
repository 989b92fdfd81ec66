//! The `[control]` section of the daemon's config, with its defaults (the
//! embedded store under `data_dir`, the in-process bus, no Kafka) and the
//! environment overrides.

use crate::api::auth::AuthConfig;
use crate::error::{ControlError, Result};
use crate::secret::{Secret, SecretUrl};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where events go after the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventsTo {
    /// The in-process bus (embedded default).
    Bus,
    /// Kafka (`[control.kafka]`).
    Kafka,
}

/// `[control.kafka]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    /// `host:port[,host:port]`.
    pub brokers: String,
    /// Topic prefix: topics are `<prefix>.<resource>.events`.
    pub topic_prefix: String,
    /// Per-message delivery timeout before the relay retries from the outbox, ms.
    pub message_timeout_ms: u32,
    /// Partitions of topics created at start.
    pub partitions: i32,
    /// Also send `event_type` and `event_id` as Kafka record headers (the
    /// JSON value always carries them; off by default, see relay/kafka.rs).
    pub record_headers: bool,
}

impl Default for KafkaSection {
    fn default() -> Self {
        KafkaSection {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: "voxbridge".into(),
            message_timeout_ms: 30_000,
            partitions: 3,
            record_headers: false,
        }
    }
}

/// `[control.auth]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// HS256 secret for JWTs.
    pub jwt_hs256_secret: Option<Secret>,
    /// File with the RS256 public key (PEM) for JWTs.
    pub jwt_rs256_public_key_file: Option<PathBuf>,
    /// Clock skew tolerated on `exp`, seconds.
    pub leeway_s: u64,
    /// Key for the admin endpoints (customers, access keys).
    pub admin_key: Option<Secret>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            jwt_hs256_secret: None,
            jwt_rs256_public_key_file: None,
            leeway_s: 30,
            admin_key: None,
        }
    }
}

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Run the control sidecar in this process.
    pub enabled: bool,
    /// REST API address.
    pub listen: SocketAddr,
    /// `postgres://...` or `sqlite://<path>`; the embedded SQLite file under
    /// `data_dir` when absent.
    pub store: Option<SecretUrl>,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// Owner of calls whose route has no `customer_id` parameter (created at
    /// start if missing).
    pub default_customer: String,
    /// Where events go.
    pub events: EventsTo,
    /// Kafka settings (when `events = "kafka"`).
    pub kafka: KafkaSection,
    /// API authentication.
    pub auth: AuthSection,
    /// Webhook delivery.
    pub webhooks: crate::webhooks::WebhookConfig,
    /// Billing.
    pub billing: BillingSection,
    /// The API's read cache (`[control.cache]`; crate::cache).
    pub cache: crate::cache::CacheConfig,
    /// This instance's name, written on the calls it creates; at start it
    /// ends the calls of its name that are not over (they died with the
    /// previous run). Give each instance sharing a database its own.
    pub node_id: String,
    /// How often this node records that it is alive, ms. After a crash its
    /// calls are ended (and billed) at the last heartbeat, so at most this
    /// much of a call's last moments can go unbilled, and no downtime is billed.
    pub heartbeat_ms: u64,
    /// Outbound calls (`POST /v1/calls`, campaigns).
    pub originate: crate::originate::OriginateConfig,
    /// The campaign scheduler.
    pub campaigns: crate::campaign::scheduler::CampaignsConfig,
    /// Where the media plane writes recordings and how long they stay (the
    /// top-level `[recording]` section, which the media plane reads too).
    #[serde(skip)]
    pub recordings: RecordingFiles,
}

/// The recordings' directory and retention, as control sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingFiles {
    /// Directory of the files.
    pub dir: std::path::PathBuf,
    /// Recordings older than this many days are deleted; 0 keeps them.
    pub retention_days: u32,
}

impl Default for RecordingFiles {
    fn default() -> Self {
        RecordingFiles {
            dir: "voxbridge-data/recordings".into(),
            retention_days: 0,
        }
    }
}

/// `[control.billing]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingSection {
    /// Hang up new calls of customers whose billing account has no balance.
    pub refuse_without_balance: bool,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            store: None,
            data_dir: PathBuf::from("voxbridge-data"),
            default_customer: "default".into(),
            events: EventsTo::Bus,
            kafka: KafkaSection::default(),
            auth: AuthSection::default(),
            webhooks: crate::webhooks::WebhookConfig::default(),
            billing: BillingSection::default(),
            cache: crate::cache::CacheConfig::default(),
            node_id: "local".into(),
            heartbeat_ms: 1000,
            originate: crate::originate::OriginateConfig::default(),
            campaigns: crate::campaign::scheduler::CampaignsConfig::default(),
            recordings: RecordingFiles::default(),
        }
    }
}

/// Environment variables that override the file.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("VOXBRIDGE_CONTROL", "on/off: run the control sidecar"),
    ("VOXBRIDGE_CONTROL_LISTEN", "REST API address"),
    ("VOXBRIDGE_STORE_URL", "postgres://... or sqlite://<path>"),
    ("VOXBRIDGE_DATA_DIR", "directory of the embedded store"),
    (
        "VOXBRIDGE_KAFKA_BROKERS",
        "brokers; also switches events to Kafka",
    ),
    ("VOXBRIDGE_ADMIN_KEY", "admin key for /v1/customers"),
    ("VOXBRIDGE_JWT_HS256_SECRET", "HS256 secret for JWTs"),
    ("VOXBRIDGE_NODE_ID", "this instance's node id"),
    ("VOXBRIDGE_CACHE", "off, memory or redis: the API's read cache"),
    (
        "VOXBRIDGE_REDIS_URL",
        "redis://...; also switches the cache to redis",
    ),
];

impl ControlConfig {
    /// Applies [`ENV_OVERRIDES`] read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = get("VOXBRIDGE_CONTROL") {
            self.enabled = match v.as_str() {
                "on" | "1" | "true" => true,
                "off" | "0" | "false" => false,
                _ => {
                    return Err(ControlError::Config(format!(
                        "VOXBRIDGE_CONTROL={v:?}: use on or off"
                    )))
                }
            };
        }
        if let Some(v) = get("VOXBRIDGE_CONTROL_LISTEN") {
            self.listen = v
                .parse()
                .map_err(|e| ControlError::Config(format!("VOXBRIDGE_CONTROL_LISTEN={v:?}: {e}")))?;
        }
        if let Some(v) = get("VOXBRIDGE_STORE_URL") {
            self.store = Some(SecretUrl::new(v));
        }
        if let Some(v) = get("VOXBRIDGE_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("VOXBRIDGE_KAFKA_BROKERS") {
            self.kafka.brokers = v;
            self.events = EventsTo::Kafka;
        }
        if let Some(v) = get("VOXBRIDGE_ADMIN_KEY") {
            self.auth.admin_key = Some(Secret::new(v));
        }
        if let Some(v) = get("VOXBRIDGE_JWT_HS256_SECRET") {
            self.auth.jwt_hs256_secret = Some(Secret::new(v));
        }
        if let Some(v) = get("VOXBRIDGE_NODE_ID") {
            self.node_id = v;
        }
        if let Some(v) = get("VOXBRIDGE_REDIS_URL") {
            self.cache.redis_url = SecretUrl::new(v);
            self.cache.kind = crate::cache::CacheKind::Redis;
        }
        if let Some(v) = get("VOXBRIDGE_CACHE") {
            self.cache.kind = match v.as_str() {
                "off" => crate::cache::CacheKind::Off,
                "memory" => crate::cache::CacheKind::Memory,
                "redis" => crate::cache::CacheKind::Redis,
                _ => {
                    return Err(ControlError::Config(format!(
                        "VOXBRIDGE_CACHE={v:?}: use off, memory or redis"
                    )))
                }
            };
        }
        Ok(())
    }

    /// The Kafka topics media and control processes share when they run
    /// apart (`voxbridge serve --role media|control`).
    #[cfg(feature = "kafka")]
    pub fn link_config(&self) -> crate::link::LinkConfig {
        crate::link::LinkConfig {
            brokers: self.kafka.brokers.clone(),
            topic_prefix: self.kafka.topic_prefix.clone(),
            partitions: self.kafka.partitions,
        }
    }

    /// The store URL in effect.
    pub fn store_url(&self) -> String {
        self.store
            .as_ref()
            .map(|u| u.expose().to_owned())
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("control.db").display()))
    }

    /// Reads the key files and returns the API's auth settings.
    pub fn auth_config(&self) -> Result<AuthConfig> {
        let a = &self.auth;
        if a.admin_key.as_ref().is_some_and(|k| k.expose().len() < 16) {
            return Err(ControlError::Config(
                "admin_key must be at least 16 characters".into(),
            ));
        }
        let rs256_public_pem = match &a.jwt_rs256_public_key_file {
            Some(p) => Some(std::fs::read(p).map_err(|e| {
                ControlError::Config(format!("jwt_rs256_public_key_file {}: {e}", p.display()))
            })?),
            None => None,
        };
        Ok(AuthConfig {
            hs256_secret: a
                .jwt_hs256_secret
                .as_ref()
                .map(|s| s.expose().as_bytes().to_vec()),
            rs256_public_pem,
            leeway_s: a.leeway_s,
            admin_key: a.admin_key.as_ref().map(|k| k.expose().to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_switches_to_kafka_and_postgres() {
        let mut c = ControlConfig::default();
        assert_eq!(c.store_url(), "sqlite://voxbridge-data/control.db");
        c.apply_env(|k| match k {
            "VOXBRIDGE_KAFKA_BROKERS" => Some("127.0.0.1:19092".into()),
            "VOXBRIDGE_STORE_URL" => Some("postgres://x@127.0.0.1/test".into()),
            _ => None,
        })
        .expect("env");
        assert_eq!(c.events, EventsTo::Kafka);
        assert_eq!(c.store_url(), "postgres://x@127.0.0.1/test");
        assert!(c
            .apply_env(|k| (k == "VOXBRIDGE_CONTROL").then(|| "maybe".into()))
            .is_err());
    }

    #[test]
    fn env_picks_the_cache_and_a_redis_url_means_redis() {
        use crate::cache::CacheKind;
        let mut c = ControlConfig::default();
        assert_eq!(c.cache.kind, CacheKind::Memory);
        c.apply_env(|k| (k == "VOXBRIDGE_REDIS_URL").then(|| "redis://:pw@10.0.0.9:6379".into()))
            .expect("env");
        assert_eq!(c.cache.kind, CacheKind::Redis);
        assert!(!format!("{c:?}").contains("pw@"), "the password is not printed");
        c.apply_env(|k| (k == "VOXBRIDGE_CACHE").then(|| "off".into()))
            .expect("env");
        assert_eq!(c.cache.kind, CacheKind::Off);
        assert!(c
            .apply_env(|k| (k == "VOXBRIDGE_CACHE").then(|| "disk".into()))
            .is_err());
        let toml = "[cache]\nkind = \"redis\"\nttl_s = 5\nkey_prefix = \"blue\"\n";
        let parsed: ControlConfig = toml::from_str(toml).expect("parses");
        assert_eq!((parsed.cache.kind, parsed.cache.ttl_s), (CacheKind::Redis, 5));
    }

    #[test]
    fn short_admin_keys_are_refused() {
        let mut c = ControlConfig::default();
        c.auth.admin_key = Some(Secret::new("short"));
        assert!(c.auth_config().is_err());
    }
}
