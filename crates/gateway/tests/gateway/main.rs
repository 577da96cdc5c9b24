//! Integration tests of the gateway (one binary), in layers: handlers through
//! `Router::oneshot` (`routes`), then a real gateway on 127.0.0.1 port 0 in front of the
//! simulator (or a small mock upstream) for caching, coalescing, faults, secrets, the
//! persistent cache tiers and shutdown. Every test starts its own servers, so no two tests
//! share a port, a cache file, a Redis or a counter.
#![expect(clippy::unwrap_used, reason = "tests")]

mod cache;
mod coalesce;
mod faults;
mod pacing;
mod routes;
mod secrets;
mod shutdown;
mod support;
mod tiers;
