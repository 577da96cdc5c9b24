//! The exact response cache: [`key`] (the canonical request and its hash), [`entry`] (a
//! cached response and its encoding), [`shape`] (serving an entry as the other shape:
//! streamed <-> non-streamed), and the tiers: [`memory`] (bounded LRU), [`sqlite`] (the
//! persistent embedded default) and [`redis`] (shared by several gateway instances),
//! combined by [`tiered`].

pub mod entry;
pub mod key;
pub mod memory;
pub mod redis;
pub mod shape;
pub mod sqlite;
pub mod tiered;
