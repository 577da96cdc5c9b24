//! The shared tier: encoded entries in Redis under `{prefix}{key hex}`, so several gateway
//! instances answer each other's repeats.
//!
//! It owns the connection and its failure behaviour, and nothing else: expiry beyond
//! Redis's own `PX` and any retrying are the caller's. Redis is an optimisation, never a
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
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::entry::Entry;
use super::key::CacheKey;
use super::tiered::StoreError;

/// The default bound on connecting and on each command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// The default time operations fail fast after a failed connect.
pub const DEFAULT_RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// Entries in a Redis shared by several gateways.
pub struct RedisTier {
    client: redis::Client,
    /// The URL with credentials redacted: the only form that appears in errors.
    url: String,
    /// The password, scrubbed from any driver or server message that might echo it.
    secret: Option<String>,
    prefix: String,
    ttl: Option<Duration>,
    timeout: Duration,
    reconnect_backoff: Duration,
    /// An async mutex because connecting awaits; commands only clone the connection out.
    state: tokio::sync::Mutex<ConnState>,
}

#[derive(Default)]
struct ConnState {
    conn: Option<MultiplexedConnection>,
    /// Counts connections made, so a failure drops only the connection it happened on
    /// (not a fresh one another task made meanwhile).
    generation: u64,
    failed_at: Option<Instant>,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .field("timeout", &self.timeout)
            .field("reconnect_backoff", &self.reconnect_backoff)
            .finish_non_exhaustive()
    }
}

impl RedisTier {
    /// A tier on the Redis at `url` (`redis://[user][:password@]host[:port][/db]`),
    /// storing keys as `{prefix}{key hex}` with `PX ttl` when a TTL is given. Parses the
    /// URL only; nothing is contacted until the first operation.
    pub fn new(url: &str, prefix: &str, ttl: Option<Duration>) -> Result<RedisTier, StoreError> {
        let redacted = redact_url(url);
        let client = redis::Client::open(url).map_err(|e| StoreError::RedisUrl {
            url: redacted.clone(),
            // The parser's messages name the problem, not the URL; scrubbed regardless.
            reason: scrub(&e.to_string(), url_password(url).as_deref()),
        })?;
        let secret = client
            .get_connection_info()
            .redis_settings()
            .password()
            .filter(|p| !p.is_empty())
            .map(str::to_owned);
        Ok(RedisTier {
            client,
            url: redacted,
            secret,
            prefix: prefix.to_owned(),
            ttl,
            timeout: DEFAULT_TIMEOUT,
            reconnect_backoff: DEFAULT_RECONNECT_BACKOFF,
            state: tokio::sync::Mutex::new(ConnState::default()),
        })
    }

    /// Bounds connecting and each command by `timeout` instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> RedisTier {
        self.timeout = timeout;
        self
    }

    /// Fails operations at once for `backoff` after a failed connect, instead of
    /// [`DEFAULT_RECONNECT_BACKOFF`].
    pub fn with_reconnect_backoff(mut self, backoff: Duration) -> RedisTier {
        self.reconnect_backoff = backoff;
        self
    }

    /// The URL with its credentials redacted (for logs).
    pub fn url(&self) -> &str {
        &self.url
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
        let (mut conn, generation) = self.connection().await?;
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    self.drop_connection(generation).await;
                }
                Err(self.error(op, &e))
            }
            Err(_) => {
                // A command that stalls means a stalled connection (a dead peer that sent
                // no reset): every request multiplexed on it would stall too.
                self.drop_connection(generation).await;
                Err(StoreError::RedisTimeout {
                    url: self.url.clone(),
                    op,
                    after: self.timeout,
                })
            }
        }
    }

    /// The shared connection, made now if there is none.
    async fn connection(&self) -> Result<(MultiplexedConnection, u64), StoreError> {
        let mut state = self.state.lock().await;
        if let Some(conn) = &state.conn {
            return Ok((conn.clone(), state.generation));
        }
        if let Some(failed_at) = state.failed_at {
            let since = failed_at.elapsed();
            if since < self.reconnect_backoff {
                return Err(StoreError::RedisUnavailable {
                    url: self.url.clone(),
                    since,
                });
            }
        }
        // The lock is held while connecting so concurrent requests wait for this one
        // attempt (at most the timeout) rather than each opening a connection.
        let attempt =
            tokio::time::timeout(self.timeout, self.client.get_multiplexed_async_connection())
                .await;
        match attempt {
            Ok(Ok(conn)) => {
                state.generation += 1;
                state.conn = Some(conn.clone());
                state.failed_at = None;
                Ok((conn, state.generation))
            }
            Ok(Err(e)) => {
                state.failed_at = Some(Instant::now());
                Err(self.error("connect", &e))
            }
            Err(_) => {
                state.failed_at = Some(Instant::now());
                Err(StoreError::RedisTimeout {
                    url: self.url.clone(),
                    op: "connect",
                    after: self.timeout,
                })
            }
        }
    }

    async fn drop_connection(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.generation == generation {
            state.conn = None;
        }
    }

    fn error(&self, op: &'static str, e: &redis::RedisError) -> StoreError {
        StoreError::Redis {
            url: self.url.clone(),
            op,
            message: scrub(&e.to_string(), self.secret.as_deref()),
        }
    }
}

/// `url` with its credentials replaced by `***`: the user-info part
/// (`redis://:secret@host` -> `redis://***@host`) and `pass`/`password` query parameters
/// (`redis+unix:///sock?pass=secret`).
///
/// Everything before the last `@` counts as user-info, even past a `/`, `?` or `#` that
/// would end the authority for a URL parser: an unencoded password containing one of
/// those is exactly what makes a URL fail to parse, and that URL is then echoed in the
/// error.
pub fn redact_url(url: &str) -> String {
    let (head, rest) = url.split_at(url.find("://").map_or(0, |i| i + 3));
    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    let rest = match rest.rfind('@') {
        Some(at) => {
            out.push_str("***");
            &rest[at..]
        }
        None => rest,
    };
    let Some((path, query)) = rest.split_once('?') else {
        out.push_str(rest);
        return out;
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    out.push_str(path);
    out.push('?');
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name == "pass" || name == "password" => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    out.push_str(&params.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// The raw password of a URL (by the same reading as [`redact_url`]), for scrubbing a
/// parse error, when there is no client to ask.
fn url_password(url: &str) -> Option<String> {
    let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
    let userinfo = &rest[..rest.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    Some(password.to_owned()).filter(|p| !p.is_empty())
}

fn scrub(message: &str, secret: Option<&str>) -> String {
    match secret {
        Some(secret) if !secret.is_empty() => message.replace(secret, "***"),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact_url("redis://:secret@host"), "redis://***@host");
        assert_eq!(
            redact_url("redis://user:secret@host:6380/2"),
            "redis://***@host:6380/2"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?db=1&pass=secret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(redact_url("rediss://:p@ss@host/0"), "rediss://***@host/0");
        assert_eq!(redact_url("redis://:p/s?s@host/0"), "redis://***@host/0");
    }

    #[test]
    fn a_bad_url_is_an_error_without_the_password() {
        let err = RedisTier::new("redis://:hunter2@/", "p:", None).unwrap_err();
        let message = err.to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("***"), "{message}");
        // Unencoded separators in a password, a missing colon: still redacted.
        for url in [
            "redis://:hun/ter2@host/",
            "redis//:hunter2@host/",
            "redis://:h#unter2@",
        ] {
            let message = RedisTier::new(url, "p:", None)
                .map(|t| t.url().to_owned())
                .unwrap_or_else(|e| e.to_string());
            assert!(!message.contains("unter2"), "{message}");
        }
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
