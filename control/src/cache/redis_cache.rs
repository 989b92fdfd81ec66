//! The Redis cache: `GET`, `SET NX EX` to fill, `SET PX` of an empty
//! value as the tombstone, through the `redis` crate's connection manager
//! (one multiplexed connection, reconnected on failure). A command that
//! fails or takes longer than the timeout is an error for the caller to
//! count; after one, reads and fills skip Redis for [`PAUSE`] so that a
//! Redis that is down costs the API one timeout a second, not one per
//! request. Invalidations are always tried.

use crate::error::{ControlError, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How long reads and fills skip Redis after it failed.
const PAUSE: Duration = Duration::from_secs(1);

pub(super) struct RedisCache {
    conn: ConnectionManager,
    ttl_s: u64,
    started: Instant,
    /// Reads and fills skip Redis until this many ms after `started`.
    paused_until_ms: AtomicU64,
}

fn failed(e: redis::RedisError) -> ControlError {
    ControlError::Store(format!("redis: {e}"))
}

impl RedisCache {
    pub(super) fn new(url: &str, ttl: Duration, timeout: Duration) -> Result<RedisCache> {
        let client =
            redis::Client::open(url).map_err(|e| ControlError::Config(format!("cache.redis_url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| ControlError::Config(format!("cache.redis_url: {e}")))?;
        Ok(RedisCache {
            conn,
            ttl_s: ttl.as_secs().max(1),
            started: Instant::now(),
            paused_until_ms: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn paused(&self) -> bool {
        self.now_ms() < self.paused_until_ms.load(Relaxed)
    }

    fn pause(&self, e: redis::RedisError) -> ControlError {
        let until = self.now_ms().saturating_add(PAUSE.as_millis() as u64);
        self.paused_until_ms.store(until, Relaxed);
        failed(e)
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        if self.paused() {
            return Ok(None);
        }
        let mut conn = self.conn.clone();
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.pause(e))?;
        // An empty value is a tombstone.
        Ok(value.filter(|v| !v.is_empty()))
    }

    pub(super) async fn fill(&self, key: &str, value: Vec<u8>) -> Result<()> {
        if self.paused() || value.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("EX")
            .arg(self.ttl_s)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.pause(e))?;
        Ok(())
    }

    pub(super) async fn invalidate(&self, keys: &[String]) -> Result<()> {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("SET")
                .arg(key)
                .arg("")
                .arg("PX")
                .arg(super::TOMBSTONE.as_millis() as u64)
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(|e| self.pause(e))
    }
}
