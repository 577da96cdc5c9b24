//! Talking to upstreams: one request in, one timed event ledger out.
//!
//! This crate owns the client side of tokenpace's measurements:
//! - [`target`]: what an upstream is ([`Target`]) and its validated form ([`Endpoint`]);
//! - [`request`]: requests serialized once, ready to send many times ([`PreparedRequest`],
//!   [`RequestBuilder`]);
//! - [`Client`]: connection pools per host (TCP_NODELAY, HTTP/1.1 keep-alive, rustls with
//!   the ring provider), and [`Client::send`], which never fails but records everything into
//!   a [`Ledger`] on the monotonic clock, SSE events stamped on arrival before any JSON is
//!   parsed;
//! - [`Client::forward`]: a request passed through as given, its response pulled chunk by
//!   chunk as it arrives (the gateway's upstream call);
//! - [`ledger`]: the ledger itself (metrics.md §1.1) and [`ErrorClass`] (§1.6);
//! - [`derive()`]: the per-request metrics of a ledger (§1.2–§1.3), pure.
//!
//! It leaves aggregation (histograms, windows, goodput) to `metrics`, load shapes and
//! scheduling to `bench`, and retry/fallback policy to `dispatch`.

mod client;
pub mod derive;
mod error;
mod forward;
pub mod headers;
pub mod ledger;
pub mod request;
mod response;
mod stream;
pub mod target;
mod transport;

pub use client::{Client, ClientOptions, TlsRoots};
pub use derive::{RequestMetrics, TokenSource, derive, derive_with, tokenizer_for};
pub use error::{ClientError, ErrorClass, TimeoutPhase};
pub use forward::{ForwardBody, ForwardRequest, Forwarded};
pub use ledger::{
    Completion, ConnTiming, EventKind, EventStamp, Ledger, RateLimitSnapshot, UsageCounts,
};
pub use request::{DEFAULT_ANTHROPIC_MAX_TOKENS, PreparedRequest, RequestBuilder, WireDialect};
pub use target::{ANTHROPIC_VERSION, Api, Endpoint, Scheme, Target, USER_AGENT};
