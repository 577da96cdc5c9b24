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

use std::time::Duration;

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
}
