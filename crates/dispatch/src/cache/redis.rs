//! The shared tier: encoded entries in Redis under `{prefix}{key hex}`, so several gateway
//! instances answer each other's repeats.
//!
//! It owns the key layout, the commands (`GET`, `SET ... PX`, `DEL`) and the reading of
//! what they return, and nothing else: expiry beyond Redis's own `PX` and any retrying
//! are the caller's; the connection and its failure behaviour are
//! [`RedisConn`]'s, shared with the admission ledger. Redis is an optimisation, never a
//! dependency, so:
//!
//! - [`RedisTier::new`] only parses the URL; the one multiplexed connection is made on
//!   first use, so a gateway starts while Redis is down;
//! - connecting and every command are bounded by a short timeout (250 ms by default), so
//!   an unreachable Redis costs a request at most that, as an error the caller treats as
//!   a miss;
//! - after a failed connect, operations fail at once for a short back-off (1 s by
//!   default) instead of each paying the connect timeout again: a blackholed Redis then
//!   costs one request in a second, not all of them;
//! - after an I/O error or a timeout the connection is dropped and made again on next use;
//! - the password in the URL never reaches an error message or a log line.

use std::fmt;
use std::time::Duration;

use super::entry::Entry;
use super::key::CacheKey;
use super::tiered::StoreError;
use crate::redis_conn::{ConnError, RedisConn};

pub use crate::redis_conn::{DEFAULT_RECONNECT_BACKOFF, DEFAULT_TIMEOUT};

/// Entries in a Redis shared by several gateways.
pub struct RedisTier {
    conn: RedisConn,
    prefix: String,
    ttl: Option<Duration>,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("url", &self.conn.url())
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .field("timeout", &self.conn.timeout())
            .field("reconnect_backoff", &self.conn.reconnect_backoff())
            .finish_non_exhaustive()
    }
}

impl From<ConnError> for StoreError {
    fn from(e: ConnError) -> StoreError {
        match e {
            ConnError::Url { url, reason } => StoreError::RedisUrl { url, reason },
            ConnError::Timeout { url, op, after } => StoreError::RedisTimeout { url, op, after },
            ConnError::Unavailable { url, since } => StoreError::RedisUnavailable { url, since },
            ConnError::Redis { url, op, message } => StoreError::Redis { url, op, message },
        }
    }
}

impl RedisTier {
    /// A tier on the Redis at `url` (`redis://[user][:password@]host[:port][/db]`),
    /// storing keys as `{prefix}{key hex}` with `PX ttl` when a TTL is given. Parses the
    /// URL only; nothing is contacted until the first operation.
    pub fn new(url: &str, prefix: &str, ttl: Option<Duration>) -> Result<RedisTier, StoreError> {
        Ok(RedisTier {
            conn: RedisConn::open(url)?,
            prefix: prefix.to_owned(),
            ttl,
        })
    }

    /// Bounds connecting and each command by `timeout` instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> RedisTier {
        self.conn = self.conn.with_timeout(timeout);
        self
    }

    /// Fails operations at once for `backoff` after a failed connect, instead of
    /// [`DEFAULT_RECONNECT_BACKOFF`].
    pub fn with_reconnect_backoff(mut self, backoff: Duration) -> RedisTier {
        self.conn = self.conn.with_reconnect_backoff(backoff);
        self
    }

    /// The URL with its credentials redacted (for logs).
    pub fn url(&self) -> &str {
        self.conn.url()
    }

    /// The Redis key of a cache key.
    pub fn redis_key(&self, key: &CacheKey) -> String {
        format!("{}{}", self.prefix, key.hex())
    }

    /// The entry under `key`, if any. A value that does not decode (another build's
    /// format, a foreign writer) is a miss; it is left alone, since a gateway that can
    /// read it may share this Redis, and the next store overwrites it.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<Entry>, StoreError> {
        let value: Option<Vec<u8>> = self
            .query("GET", redis::cmd("GET").arg(self.redis_key(key)))
            .await?;
        let Some(value) = value else {
            return Ok(None);
        };
        match Entry::decode(&value) {
            Ok(entry) => Ok(Some(entry)),
            Err(e) => {
                tracing::debug!(key = ?key, error = %e, "ignoring an undecodable Redis cache value");
                Ok(None)
            }
        }
    }

    /// Stores `entry` under `key` (`SET key value [PX ttl]`).
    pub async fn put(&self, key: CacheKey, entry: &Entry) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(&key)).arg(entry.encode());
        if let Some(ttl) = self.ttl {
            // PX 0 is an error in Redis; a sub-millisecond TTL rounds up.
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            cmd.arg("PX").arg(ms);
        }
        self.query::<()>("SET", &cmd).await
    }

    /// Removes the entry under `key`; whether there was one.
    pub async fn remove(&self, key: &CacheKey) -> Result<bool, StoreError> {
        let removed: u64 = self
            .query("DEL", redis::cmd("DEL").arg(self.redis_key(key)))
            .await?;
        Ok(removed > 0)
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        Ok(self.conn.query(op, cmd).await?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_bad_url_is_an_error_without_the_password() {
        let err = RedisTier::new("redis://:hunter2@/", "p:", None).unwrap_err();
        let message = err.to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("***"), "{message}");
        assert!(matches!(err, StoreError::RedisUrl { .. }), "{err:?}");
    }

    #[test]
    fn keys_are_prefix_and_hex() {
        let tier = RedisTier::new("redis://127.0.0.1/", "tp:cache:", None).unwrap();
        assert_eq!(
            tier.redis_key(&CacheKey([0xab; 32])),
            format!("tp:cache:{}", "ab".repeat(32))
        );
    }

    #[tokio::test]
    async fn a_refused_connection_fails_then_backs_off() {
        // Bind and drop to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tier = RedisTier::new(&format!("redis://:hunter2@127.0.0.1:{port}/"), "p:", None)
            .unwrap()
            .with_reconnect_backoff(Duration::from_secs(60));
        let err = tier.get(&CacheKey([1; 32])).await.unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let started = Instant::now();
        let err = tier.get(&CacheKey([1; 32])).await.unwrap_err();
        assert!(
            matches!(err, StoreError::RedisUnavailable { .. }),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "no new connect attempt"
        );
    }

    #[tokio::test]
    async fn a_silent_server_costs_at_most_the_timeout() {
        // Accepts connections (the kernel completes the handshake) but never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}/", listener.local_addr().unwrap());
        let tier = RedisTier::new(&url, "p:", None)
            .unwrap()
            .with_timeout(Duration::from_millis(100));
        let started = Instant::now();
        let err = tier.get(&CacheKey([1; 32])).await.unwrap_err();
        assert!(matches!(err, StoreError::RedisTimeout { .. }), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
