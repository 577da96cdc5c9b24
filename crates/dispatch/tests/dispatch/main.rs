//! Integration tests of the dispatch crate (one binary, STYLE: one per crate).
#![expect(clippy::unwrap_used, reason = "tests")]
mod admission_redis;
mod cache_tiers;
mod shape;
