//! One connection to a Redis and its failure behaviour, shared by the tiers that keep
//! state there: the cache's shared tier ([`crate::cache::redis`]) and the shared
//! admission ledger ([`crate::admission::redis`]).
//!
//! [`RedisConn`] owns the client, the one multiplexed connection, its timeouts and
//! back-off, and what of the URL may be shown; each tier keeps its own key layout, its
//! own commands or scripts, its own error type (mapped from [`ConnError`]) and its own
//! response to failure (the cache treats it as a miss, the ledger falls back to an
//! in-process one). Redis is an optimisation, never a dependency, so:
//!
//! - [`RedisConn::open`] only parses the URL; the connection is made on first use, so a
//!   gateway starts while Redis is down;
//! - connecting and every command or script call are bounded by a short timeout (250 ms
//!   by default), so an unreachable Redis costs a request at most that;
//! - after a failed connect, calls fail at once for a short back-off (1 s by default)
//!   instead of each paying the connect timeout again: a blackholed Redis then costs one
//!   request in a second, not all of them;
//! - after an I/O error or a timeout the connection is dropped and made again on next use;
//! - the password in the URL never reaches an error message or a log line: errors carry
//!   the URL as [`redact_url`] writes it and driver messages with the password scrubbed.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

/// The default bound on connecting and on each command or script call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// The default time calls fail fast after a failed connect.
pub const DEFAULT_RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// Why a call on a [`RedisConn`] failed; every URL here is already redacted. The
/// admission ledger passes it on as it is; the cache's tier maps it into its own
/// [`StoreError`](crate::cache::tiered::StoreError) variants and wording.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The URL does not parse.
    #[error("the Redis URL '{url}' is not valid: {reason}")]
    Url {
        /// The URL, credentials redacted.
        url: String,
        /// Why, any password scrubbed.
        reason: String,
    },
    /// Connecting or a call took longer than the timeout.
    #[error("Redis at '{url}': {op} took longer than {after:?}")]
    Timeout {
        /// The URL, credentials redacted.
        url: String,
        /// What was attempted (`connect`, or the caller's name for the call).
        op: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// Connecting failed recently; not retried until the back-off has passed.
    #[error("Redis at '{url}' is unreachable (the last connect failed {since:?} ago)")]
    Unavailable {
        /// The URL, credentials redacted.
        url: String,
        /// Since the failed connect.
        since: Duration,
    },
    /// The driver or the server reported an error.
    #[error("Redis at '{url}': {op} failed: {message}")]
    Redis {
        /// The URL, credentials redacted.
        url: String,
        /// What was attempted.
        op: &'static str,
        /// The driver's or server's message, any password scrubbed.
        message: String,
    },
}

/// A lazily made, bounded, backed-off connection to one Redis.
pub struct RedisConn {
    client: redis::Client,
    /// The URL with credentials redacted: the only form that appears in errors.
    url: String,
    /// The password, scrubbed from any driver or server message that might echo it.
    secret: Option<String>,
    timeout: Duration,
    reconnect_backoff: Duration,
    /// An async mutex because connecting awaits; calls only clone the connection out.
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

impl fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConn")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("reconnect_backoff", &self.reconnect_backoff)
            .finish_non_exhaustive()
    }
}

impl RedisConn {
    /// A connection to the Redis at `url` (`redis://[user][:password@]host[:port][/db]`).
    /// Parses the URL only; nothing is contacted until the first call.
    pub fn open(url: &str) -> Result<RedisConn, ConnError> {
        let redacted = redact_url(url);
        let client = redis::Client::open(url).map_err(|e| ConnError::Url {
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
        Ok(RedisConn {
            client,
            url: redacted,
            secret,
            timeout: DEFAULT_TIMEOUT,
            reconnect_backoff: DEFAULT_RECONNECT_BACKOFF,
            state: tokio::sync::Mutex::new(ConnState::default()),
        })
    }

    /// Bounds connecting and each call by `timeout` instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> RedisConn {
        self.timeout = timeout;
        self
    }

    /// Fails calls at once for `backoff` after a failed connect, instead of
    /// [`DEFAULT_RECONNECT_BACKOFF`].
    pub fn with_reconnect_backoff(mut self, backoff: Duration) -> RedisConn {
        self.reconnect_backoff = backoff;
        self
    }

    /// The URL with its credentials redacted (for logs and errors).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound on connecting and on each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How long calls fail fast after a failed connect.
    pub fn reconnect_backoff(&self) -> Duration {
        self.reconnect_backoff
    }

    /// Runs one command under the timeout; `op` names it in errors (`GET`, `SET`, ...).
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, ConnError> {
        self.run(
            op,
            |mut conn| async move { cmd.query_async(&mut conn).await },
        )
        .await
    }

    /// Runs one script invocation (`EVALSHA`, falling back to `EVAL`) under the timeout;
    /// `op` names it in errors.
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, ConnError> {
        self.run(op, |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// Runs `call` on the shared connection under the timeout, dropping the connection
    /// when the failure says it is broken.
    async fn run<T, F, Fut>(&self, op: &'static str, call: F) -> Result<T, ConnError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let (conn, generation) = self.connection().await?;
        match tokio::time::timeout(self.timeout, call(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    self.drop_connection(generation).await;
                }
                Err(self.error(op, &e))
            }
            Err(_) => {
                // A call that stalls means a stalled connection (a dead peer that sent no
                // reset): every request multiplexed on it would stall too.
                self.drop_connection(generation).await;
                Err(ConnError::Timeout {
                    url: self.url.clone(),
                    op,
                    after: self.timeout,
                })
            }
        }
    }

    /// The shared connection, made now if there is none; an error at once during the
    /// back-off after a failed connect.
    async fn connection(&self) -> Result<(MultiplexedConnection, u64), ConnError> {
        let mut state = self.state.lock().await;
        if let Some(conn) = &state.conn {
            return Ok((conn.clone(), state.generation));
        }
        if let Some(failed_at) = state.failed_at {
            let since = failed_at.elapsed();
            if since < self.reconnect_backoff {
                return Err(ConnError::Unavailable {
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
                Err(ConnError::Timeout {
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

    fn error(&self, op: &'static str, e: &redis::RedisError) -> ConnError {
        ConnError::Redis {
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
        let err = RedisConn::open("redis://:hunter2@/").unwrap_err();
        let message = err.to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("***"), "{message}");
        // Unencoded separators in a password, a missing colon: still redacted.
        for url in [
            "redis://:hun/ter2@host/",
            "redis//:hunter2@host/",
            "redis://:h#unter2@",
        ] {
            let message = RedisConn::open(url)
                .map(|c| c.url().to_owned())
                .unwrap_or_else(|e| e.to_string());
            assert!(!message.contains("unter2"), "{message}");
        }
    }
}
