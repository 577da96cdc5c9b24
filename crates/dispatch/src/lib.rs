//! Everything between a request and its upstream.
//!
//! - [`kind`]: which operation a request is (chat, completions, messages);
//! - [`cache`]: the exact response cache (key, entries, shapes, tiers);
//!
//! It leaves HTTP ingress (routes, auth, `/metrics` rendering, shutdown) to `gateway`,
//! and the upstream connections themselves to `client`.

pub mod cache;
pub mod kind;
