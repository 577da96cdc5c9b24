//! Integration tests of the gateway (one binary), in layers: handlers through
//! `Router::oneshot` (`routes`), then a real gateway on 127.0.0.1 port 0 in front of the
//! simulator (or a small mock upstream) for caching, coalescing, faults, secrets, the
//! persistent cache tiers, shutdown, and the files and batches endpoints. Every test starts
//! its own servers (and data directory), so no two tests share a port, a cache file, a
//! Redis or a counter.
#![expect(clippy::unwrap_used, reason = "tests")]

mod batches;
mod cache;
mod coalesce;
mod faults;
mod pacing;
mod routes;
mod secrets;
mod shutdown;
mod support;
mod tiers;
