//! Per-request controls from request headers: standard `Cache-Control` directives, the
//! `tokenpace-cache` switch and `tokenpace-replay` pacing.
//!
//! | header | effect |
//! |---|---|
//! | `cache-control: no-store` | neither read nor write the cache; no coalescing |
//! | `cache-control: no-cache` | do not serve from the cache; the fresh response is stored |
//! | `cache-control: max-age=N` | serve only an entry at most N seconds old |
//! | `tokenpace-cache: on` | read and write (the default) |
//! | `tokenpace-cache: off` | like `no-store` |
//! | `tokenpace-cache: read-only` | read, never write |
//! | `tokenpace-cache: write-only` | write, never read |
//! | `tokenpace-replay: paced` | a streamed hit replays at the recorded pacing |
//! | `tokenpace-replay: instant` | a streamed hit is sent at once (the default) |
//! | `tokenpace-priority: interactive` | queued for tier capacity ahead of batch work (the default) |
//! | `tokenpace-priority: batch` | queued behind interactive work |
//! | `tokenpace-queue-timeout: 30s` | longest wait for tier capacity before a 429 |

use std::time::Duration;

use dispatch::admission::queue::Priority;
use dispatch::{CachePolicy, DispatchError};
use http::HeaderMap;

/// How a streamed cache hit is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// All at once.
    Instant,
    /// At the recorded arrival offsets.
    Paced,
}

/// How a request wants to wait for tier capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Its priority class.
    pub priority: Priority,
    /// Its queue deadline, when it set one.
    pub queue_timeout: Option<Duration>,
}

/// The priority and queue deadline a request asks for.
pub fn pacing(headers: &HeaderMap) -> Result<Pacing, DispatchError> {
    let priority = match headers.get("tokenpace-priority").map(|v| v.to_str()) {
        None => Priority::Interactive,
        Some(Ok(v)) => match v.trim().to_ascii_lowercase().as_str() {
            "interactive" => Priority::Interactive,
            "batch" => Priority::Batch,
            other => {
                return Err(DispatchError::invalid(
                    "tokenpace-priority",
                    format!(
                        "header tokenpace-priority: '{other}' is not a class (use interactive or batch)"
                    ),
                ));
            }
        },
        Some(Err(_)) => {
            return Err(DispatchError::invalid(
                "tokenpace-priority",
                "header tokenpace-priority must be interactive or batch",
            ));
        }
    };
    let queue_timeout = match headers.get("tokenpace-queue-timeout").map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(protocol::ratelimit::parse_go_duration(v.trim()).map_err(|e| {
            DispatchError::invalid(
                "tokenpace-queue-timeout",
                format!("header tokenpace-queue-timeout: '{v}' is not a duration ({e}); write it like 30s or 500ms"),
            )
        })?),
        Some(Err(_)) => {
            return Err(DispatchError::invalid(
                "tokenpace-queue-timeout",
                "header tokenpace-queue-timeout must be a duration like 30s",
            ));
        }
    };
    Ok(Pacing {
        priority,
        queue_timeout,
    })
}

/// The cache policy and replay mode a request asks for.
pub fn parse(headers: &HeaderMap) -> Result<(CachePolicy, Replay), DispatchError> {
    let mut policy = match headers.get("tokenpace-cache").map(|v| v.to_str()) {
        None => CachePolicy::ON,
        Some(Ok(v)) => match v.trim().to_ascii_lowercase().as_str() {
            "on" => CachePolicy::ON,
            "off" => CachePolicy::OFF,
            "read-only" => CachePolicy {
                write: false,
                ..CachePolicy::ON
            },
            "write-only" => CachePolicy {
                read: false,
                ..CachePolicy::ON
            },
            other => {
                return Err(DispatchError::invalid(
                    "tokenpace-cache",
                    format!(
                        "header tokenpace-cache: '{other}' is not a mode (use on, off, read-only or write-only)"
                    ),
                ));
            }
        },
        Some(Err(_)) => {
            return Err(DispatchError::invalid(
                "tokenpace-cache",
                "header tokenpace-cache must be ASCII (on, off, read-only or write-only)",
            ));
        }
    };
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(v) = value.to_str() else { continue };
        for directive in v.split(',') {
            let d = directive.trim().to_ascii_lowercase();
            if d == "no-store" {
                policy.read = false;
                policy.write = false;
            } else if d == "no-cache" {
                policy.read = false;
            } else if let Some(n) = d.strip_prefix("max-age=") {
                let secs: u64 = n.trim_matches('"').parse().map_err(|_| {
                    DispatchError::invalid(
                        "cache-control",
                        format!("cache-control: max-age='{n}' is not a whole number of seconds"),
                    )
                })?;
                policy.max_age = Some(Duration::from_secs(secs));
            }
        }
    }
    let replay = match headers.get("tokenpace-replay").map(|v| v.to_str()) {
        None => Replay::Instant,
        Some(Ok(v)) => match v.trim().to_ascii_lowercase().as_str() {
            "paced" => Replay::Paced,
            "instant" => Replay::Instant,
            other => {
                return Err(DispatchError::invalid(
                    "tokenpace-replay",
                    format!(
                        "header tokenpace-replay: '{other}' is not a mode (use paced or instant)"
                    ),
                ));
            }
        },
        Some(Err(_)) => {
            return Err(DispatchError::invalid(
                "tokenpace-replay",
                "header tokenpace-replay must be paced or instant",
            ));
        }
    };
    Ok((policy, replay))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn directives() {
        assert_eq!(parse(&h(&[])).unwrap(), (CachePolicy::ON, Replay::Instant));
        assert!(
            parse(&h(&[("cache-control", "no-store")]))
                .unwrap()
                .0
                .bypass()
        );
        let (p, _) = parse(&h(&[("cache-control", "no-cache, max-age=60")])).unwrap();
        assert!(!p.read && p.write);
        assert_eq!(p.max_age, Some(Duration::from_secs(60)));
        let (p, _) = parse(&h(&[("tokenpace-cache", "read-only")])).unwrap();
        assert!(p.read && !p.write);
        let (p, _) = parse(&h(&[("tokenpace-cache", "write-only")])).unwrap();
        assert!(!p.read && p.write);
        assert!(parse(&h(&[("tokenpace-cache", "off")])).unwrap().0.bypass());
        assert_eq!(
            parse(&h(&[("tokenpace-replay", "paced")])).unwrap().1,
            Replay::Paced
        );
        let e = parse(&h(&[("tokenpace-cache", "sometimes")])).unwrap_err();
        assert!(e.message.contains("read-only"), "{e}");
        assert!(parse(&h(&[("cache-control", "max-age=soon")])).is_err());
        assert!(parse(&h(&[("tokenpace-replay", "slow")])).is_err());
    }

    #[test]
    fn pacing_headers() {
        let p = pacing(&h(&[])).unwrap();
        assert_eq!(p.priority, Priority::Interactive);
        assert_eq!(p.queue_timeout, None);
        let p = pacing(&h(&[
            ("tokenpace-priority", "batch"),
            ("tokenpace-queue-timeout", "1m30s"),
        ]))
        .unwrap();
        assert_eq!(p.priority, Priority::Batch);
        assert_eq!(p.queue_timeout, Some(Duration::from_secs(90)));
        assert!(
            pacing(&h(&[("tokenpace-priority", "urgent")]))
                .unwrap_err()
                .message
                .contains("interactive")
        );
        assert!(pacing(&h(&[("tokenpace-queue-timeout", "soon")])).is_err());
    }
}
