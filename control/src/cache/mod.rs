//! Cache-aside for the API's hot reads (issue 27, as in the VoIPBIN flow):
//! a read asks the cache first, falls back to the database and fills the
//! cache; a write goes to the database first, then invalidates the cache,
//! then wakes the outbox relay that publishes its event. A cache that fails
//! is logged and counted and the request carries on against the database.
//!
//! What is cached (by [`crate::store::Store`]): an access key by its
//! secret's hash (every request that authenticates with a key), a customer
//! being active (every request with a JWT), and a call by id (`GET
//! /v1/calls/{id}`). Values are the database rows as read, so a hit is
//! mapped by the same code as a miss.
//!
//! Two backends: Redis (shared by every node, so one node's write
//! invalidates for all), and an in-process map (one node only: another
//! node's write does not reach it; use Redis, or `off`, with several control
//! nodes on one database). `[control.cache]` picks one.
//!
//! The race every cache-aside has (a reader fills with what it read just
//! before a writer's commit, after the writer invalidated) is closed with
//! a tombstone: invalidating writes a short-lived marker
//! ([`TOMBSTONE`]) and a fill only writes where there is nothing
//! (Redis `SET NX`), so a fill that comes after an invalidation cannot put
//! the old row back; reads pass to the database until the marker expires.
//! Values also expire after `ttl_s`, which bounds how long a value can be
//! stale if an invalidation could not reach the cache (logged and counted).

mod memory;
mod redis_cache;

use crate::error::{ControlError, Result};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use voxbridge_proto::envelope::EventEnvelope;

/// How long an invalidation keeps fills out: longer than a read's way
/// from the database to the cache can take.
pub const TOMBSTONE: Duration = Duration::from_secs(2);

/// Which cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CacheKind {
    /// Every read goes to the database.
    Off,
    /// This process's memory (one control node).
    #[default]
    Memory,
    /// Redis at `redis_url` (any number of nodes).
    Redis,
}

/// `[control.cache]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `off`, `memory` (default) or `redis`.
    pub kind: CacheKind,
    /// `redis://[:password@]host:port[/db]` for `kind = "redis"` (printed
    /// without its password).
    pub redis_url: crate::secret::SecretUrl,
    /// How long a cached row lives, seconds (1-3600).
    pub ttl_s: u64,
    /// Most rows the in-process cache holds.
    pub capacity: usize,
    /// A Redis command slower than this counts as failed, ms.
    pub redis_timeout_ms: u64,
    /// Every key starts with `<key_prefix>:` (deployments sharing a Redis
    /// give each its own).
    pub key_prefix: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            kind: CacheKind::Memory,
            redis_url: crate::secret::SecretUrl::new("redis://127.0.0.1:6379"),
            ttl_s: 60,
            capacity: 100_000,
            redis_timeout_ms: 250,
            key_prefix: "voxbridge".into(),
        }
    }
}

impl CacheConfig {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<()> {
        if !(1..=3600).contains(&self.ttl_s) {
            return Err(ControlError::Config(format!(
                "cache.ttl_s = {} is not between 1 and 3600",
                self.ttl_s
            )));
        }
        if self.kind == CacheKind::Memory && self.capacity == 0 {
            return Err(ControlError::Config(
                "cache.capacity must be at least 1 (or kind = \"off\")".into(),
            ));
        }
        if self.key_prefix.is_empty()
            || self
                .key_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ControlError::Config(format!(
                "cache.key_prefix {:?} must be non-empty, without spaces",
                self.key_prefix
            )));
        }
        if self.kind == CacheKind::Redis && !self.redis_url.expose().starts_with("redis://") {
            return Err(ControlError::Config(format!(
                "cache.redis_url must start with redis:// (got {})",
                self.redis_url
            )));
        }
        Ok(())
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Reads answered by the cache.
    pub hits: AtomicU64,
    /// Reads that went to the database.
    pub misses: AtomicU64,
    /// Keys invalidated by writes.
    pub invalidations: AtomicU64,
    /// Cache operations that failed (the request went on without it).
    pub errors: AtomicU64,
}

enum Backend {
    Off,
    Memory(memory::MemoryCache),
    Redis(redis_cache::RedisCache),
}

/// The cache (cheap to clone).
#[derive(Clone)]
pub struct Cache {
    backend: Arc<Backend>,
    stats: Arc<CacheStats>,
    prefix: Arc<str>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match *self.backend {
            Backend::Off => "off",
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        };
        f.debug_struct("Cache").field("kind", &kind).finish()
    }
}

impl Default for Cache {
    fn default() -> Self {
        Cache::off()
    }
}

impl Cache {
    /// No cache: every read goes to the database.
    pub fn off() -> Cache {
        Cache::with(Backend::Off)
    }

    /// The cache `config` names (validated). Redis is connected lazily: a
    /// Redis that is down at start makes reads go to the database until it
    /// answers.
    pub fn new(config: &CacheConfig) -> Result<Cache> {
        config.validate()?;
        let ttl = Duration::from_secs(config.ttl_s);
        let mut cache = Cache::with(match config.kind {
            CacheKind::Off => Backend::Off,
            CacheKind::Memory => Backend::Memory(memory::MemoryCache::new(ttl, config.capacity)),
            CacheKind::Redis => Backend::Redis(redis_cache::RedisCache::new(
                config.redis_url.expose(),
                ttl,
                Duration::from_millis(config.redis_timeout_ms),
            )?),
        });
        cache.prefix = Arc::from(config.key_prefix.as_str());
        Ok(cache)
    }

    fn with(backend: Backend) -> Cache {
        Cache {
            backend: Arc::new(backend),
            stats: Arc::default(),
            prefix: Arc::from("voxbridge"),
        }
    }

    /// The key of an access key, by its secret's hash.
    pub fn access_key_key(&self, hash: &str) -> String {
        format!("{}:key:{hash}", self.prefix)
    }

    /// The key of a customer's being active.
    pub fn customer_key(&self, id: &str) -> String {
        format!("{}:customer:{id}", self.prefix)
    }

    /// The key of a call.
    pub fn call_key(&self, id: &str) -> String {
        format!("{}:call:{id}", self.prefix)
    }

    /// Whether reads go to a cache at all.
    pub fn enabled(&self) -> bool {
        !matches!(*self.backend, Backend::Off)
    }

    /// The counters.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// The value under `key`, if one is cached (a miss when the cache
    /// fails).
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let got = match &*self.backend {
            Backend::Off => return None,
            Backend::Memory(m) => Ok(m.get(key)),
            Backend::Redis(r) => r.get(key).await,
        };
        let value = got.unwrap_or_else(|e| {
            self.failed("read", &e);
            None
        });
        let counter = if value.is_some() {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        counter.fetch_add(1, Relaxed);
        value
    }

    /// Caches what a miss read from the database, unless the key holds a
    /// value or an invalidation's tombstone.
    pub async fn fill(&self, key: &str, value: Vec<u8>) {
        let done = match &*self.backend {
            Backend::Off => return,
            Backend::Memory(m) => {
                m.fill(key, value);
                Ok(())
            }
            Backend::Redis(r) => r.fill(key, value).await,
        };
        if let Err(e) = done {
            self.failed("fill", &e);
        }
    }

    /// Drops `keys` and keeps fills out of them for [`TOMBSTONE`]; called
    /// after the write's commit, before its event is published.
    pub async fn invalidate(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let done = match &*self.backend {
            Backend::Off => return,
            Backend::Memory(m) => {
                m.invalidate(keys);
                Ok(())
            }
            Backend::Redis(r) => r.invalidate(keys).await,
        };
        self.stats.invalidations.fetch_add(keys.len() as u64, Relaxed);
        if let Err(e) = done {
            self.failed("invalidation", &e);
        }
    }

    /// Drops from the in-process cache what an event says changed: the
    /// events of other control nodes reach this one through Kafka and the
    /// bus (`serve` with `events = "kafka"`), so a node's memory cache
    /// follows their writes too, an event's delivery time later (Redis is
    /// shared and invalidated by the writer itself: nothing to do).
    pub fn forget_for_event(&self, e: &EventEnvelope) {
        let Backend::Memory(m) = &*self.backend else {
            return;
        };
        let keys = match (e.event_type.as_str(), e.resource.kind.as_str()) {
            // The event names the key's id, the cache holds keys by hash:
            // every key goes (revocations are rare; a miss costs one read).
            ("access_key_deleted", _) => {
                m.invalidate_prefix(&format!("{}:key:", self.prefix));
                return;
            }
            ("customer_deleted", _) => {
                m.invalidate_prefix(&format!("{}:key:", self.prefix));
                vec![self.customer_key(&e.resource.id)]
            }
            // A call's transitions, and who answered (kept on the call).
            (_, "call") | (_, "call_amd") => vec![self.call_key(&e.resource.id)],
            _ => return,
        };
        self.stats.invalidations.fetch_add(keys.len() as u64, Relaxed);
        m.invalidate(&keys);
    }

    /// Empties the in-process cache (a subscriber that lost events cannot
    /// know what they changed).
    pub fn forget_all(&self) {
        if let Backend::Memory(m) = &*self.backend {
            m.invalidate_prefix("");
        }
    }

    fn failed(&self, what: &str, e: &ControlError) {
        self.stats.errors.fetch_add(1, Relaxed);
        tracing::warn!(error = %e, "cache {what} failed; going on without the cache");
    }

    /// The counters in Prometheus text format.
    pub fn render(&self) -> String {
        let s = &self.stats;
        format!(
            "# HELP voxbridge_control_cache_reads_total API reads asked of the cache, by result.\n\
             # TYPE voxbridge_control_cache_reads_total counter\n\
             voxbridge_control_cache_reads_total{{result=\"hit\"}} {}\n\
             voxbridge_control_cache_reads_total{{result=\"miss\"}} {}\n\
             # HELP voxbridge_control_cache_invalidations_total Cache keys invalidated by writes.\n\
             # TYPE voxbridge_control_cache_invalidations_total counter\n\
             voxbridge_control_cache_invalidations_total {}\n\
             # HELP voxbridge_control_cache_errors_total Cache operations that failed (the request went on).\n\
             # TYPE voxbridge_control_cache_errors_total counter\n\
             voxbridge_control_cache_errors_total {}\n",
            s.hits.load(Relaxed),
            s.misses.load(Relaxed),
            s.invalidations.load(Relaxed),
            s.errors.load(Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Cache {
        Cache::new(&CacheConfig::default()).expect("valid")
    }

    #[tokio::test]
    async fn a_fill_is_read_back_and_an_invalidation_drops_it() {
        let c = memory();
        assert_eq!(c.get("k").await, None);
        c.fill("k", b"v1".to_vec()).await;
        assert_eq!(c.get("k").await.as_deref(), Some(&b"v1"[..]));
        c.invalidate(&["k".into()]).await;
        assert_eq!(c.get("k").await, None);
        let s = c.stats();
        assert_eq!((s.hits.load(Relaxed), s.misses.load(Relaxed)), (1, 2));
    }

    #[tokio::test]
    async fn a_fill_after_an_invalidation_does_not_put_the_old_row_back() {
        // A reader read the row before a writer's commit; the writer
        // invalidated; the reader's fill comes last.
        let c = memory();
        c.invalidate(&["k".into()]).await;
        c.fill("k", b"old".to_vec()).await;
        assert_eq!(c.get("k").await, None, "the tombstone keeps the fill out");
    }

    fn event(event_type: &str, kind: &str, id: &str) -> EventEnvelope {
        EventEnvelope {
            event_id: "e".into(),
            event_type: event_type.into(),
            timestamp: "2026-12-08T00:00:00Z".into(),
            customer_id: "c".into(),
            resource: voxbridge_proto::envelope::Resource {
                id: id.into(),
                kind: kind.into(),
                fields: Default::default(),
            },
        }
    }

    #[tokio::test]
    async fn another_nodes_events_drop_what_they_changed_from_the_memory_cache() {
        let c = memory();
        let (call, key, customer) = (c.call_key("call-1"), c.access_key_key("h1"), c.customer_key("c"));
        let other_call = c.call_key("call-2");
        for k in [&call, &key, &customer, &other_call] {
            c.fill(k, b"row".to_vec()).await;
        }
        c.forget_for_event(&event("transcript_created", "transcript", "call-1"));
        assert!(
            c.get(&call).await.is_some(),
            "an event about something else changes nothing"
        );
        c.forget_for_event(&event("call_hungup", "call", "call-1"));
        assert_eq!(c.get(&call).await, None);
        assert!(c.get(&other_call).await.is_some());
        c.forget_for_event(&event("access_key_deleted", "access_key", "key-id"));
        assert_eq!(c.get(&key).await, None, "keys are held by hash: all of them go");
        assert!(c.get(&customer).await.is_some());
        c.forget_for_event(&event("customer_deleted", "customer", "c"));
        assert_eq!(c.get(&customer).await, None);
        c.fill(&other_call, b"row".to_vec()).await;
        c.forget_all();
        assert_eq!(c.get(&other_call).await, None);
    }

    #[tokio::test]
    async fn off_caches_nothing() {
        let c = Cache::off();
        c.fill("k", b"v".to_vec()).await;
        assert_eq!(c.get("k").await, None);
        assert!(!c.enabled());
    }

    #[test]
    fn bad_settings_are_refused() {
        for c in [
            CacheConfig {
                ttl_s: 0,
                ..CacheConfig::default()
            },
            CacheConfig {
                capacity: 0,
                ..CacheConfig::default()
            },
            CacheConfig {
                kind: CacheKind::Redis,
                redis_url: crate::secret::SecretUrl::new("http://x"),
                ..CacheConfig::default()
            },
            CacheConfig {
                key_prefix: "a b".into(),
                ..CacheConfig::default()
            },
        ] {
            assert!(matches!(Cache::new(&c), Err(ControlError::Config(_))), "{c:?}");
        }
    }
}
