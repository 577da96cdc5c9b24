//! Tier rate limits: this module owns the simulator's per-(API key, model) sliding-window
//! accounting of requests and tokens, the built-in and TOML-configured tier tables, the
//! decision to admit a request or reject it with a truthful `retry_after`, and the text of
//! everything a real provider derives from that decision: the `x-ratelimit-*` (OpenAI) and
//! `anthropic-ratelimit-*` (Anthropic) headers, `retry-after`/`retry-after-ms`, and the
//! 429 error messages. It is pure and synchronous: time is always passed in (`now`), so the
//! HTTP layer uses the real clock and tests use a simulated one.
//!
//! Accounting model. A request charges 1 request plus its tokens at admission (input tokens
//! plus `max_tokens` as output, as providers reserve); [`Limiter::settle`] later lowers the
//! charge to what was actually used. A charge counts against the limits from its admission
//! instant `t` until `t + window` (exclusive), so in every half-open interval of length
//! `window` the admitted charges never exceed any configured limit.

mod format;
mod limiter;
mod limits;
mod state;

pub use limiter::{Admission, DEFAULT_WINDOW, Limiter};
pub use limits::{Charge, TierError, TierLimits, TierTable};
pub use state::{KindState, LimitKind, LimitState, Rejection};
