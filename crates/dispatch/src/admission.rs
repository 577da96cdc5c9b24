//! Admission control against provider tier limits: reserve before sending, settle after,
//! queue instead of failing.
//!
//! - [`Limits`] and [`Charge`]: what a tier allows per window and what one request costs;
//! - [`ledger`]: the sliding-window rule (the simulator's): a request is admitted only if
//!   the charges inside the window plus its own stay within every limit; pure, clock passed
//!   in, property-tested;
//! - [`Backend`]: where ledgers live — [`local::LocalBackend`] in-process (the default) or
//!   [`redis::RedisBackend`], shared atomically by several gateway instances;
//! - [`queue`]: the bounded waiting queue in front of a backend: priority classes, fairness
//!   across tenants, per-request deadlines, truthful `retry-after` on rejection.

pub mod ledger;
pub mod local;
pub mod queue;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// What a tier allows. `None` = no limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Requests per window.
    pub requests: Option<u64>,
    /// Input + output tokens per window (OpenAI's TPM).
    pub tokens: Option<u64>,
    /// Input tokens per window (Anthropic's ITPM).
    pub input_tokens: Option<u64>,
    /// Output tokens per window (Anthropic's OTPM).
    pub output_tokens: Option<u64>,
    /// Requests per day (a 24 h window), where a provider has one.
    pub requests_per_day: Option<u64>,
    /// Tokens per day, where a provider has one.
    pub tokens_per_day: Option<u64>,
}

impl Limits {
    /// Whether nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }
}

/// What one request costs against the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Charge {
    /// Requests: 1 for a request. Settling replaces the whole charge, so a request that
    /// was sent is settled with 1 (0 would give its slot back).
    pub requests: u64,
    /// Input tokens.
    pub input: u64,
    /// Output tokens (reserved: `max_tokens` or an estimate; settled: actual).
    pub output: u64,
}

/// A lane: one (upstream account, model) pair, which providers limit independently.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lane {
    /// The upstream (its account: one key per upstream).
    pub upstream: String,
    /// The upstream model.
    pub model: String,
}

/// An admitted reservation, to settle or cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The lane.
    pub lane: Lane,
    /// The backend's id of the charge.
    pub id: u64,
    /// What was reserved.
    pub charge: Charge,
}

/// Why a charge does not fit now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotNow {
    /// It fits after this long (at the latest, if nothing else is admitted first).
    RetryIn(Duration),
    /// It can never fit: it alone exceeds a limit (the message names which).
    Never(String),
}

/// A boxed future, so [`Backend`] is object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where ledgers live. Implementations: in-process, or Redis (shared by instances).
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Admits `charge` on `lane` under `limits` and `window` if it fits now.
    fn try_reserve<'a>(
        &'a self,
        lane: &'a Lane,
        limits: Limits,
        window: Duration,
        charge: Charge,
    ) -> BoxFuture<'a, Result<Reservation, NotNow>>;

    /// Replaces a reservation's charge by what was actually used (tokens given back, or
    /// taken when the usage exceeded the reservation). The charge keeps its admission time.
    fn settle<'a>(&'a self, reservation: &'a Reservation, actual: Charge) -> BoxFuture<'a, ()>;

    /// Removes a reservation whose request was never sent.
    fn cancel<'a>(&'a self, reservation: &'a Reservation) -> BoxFuture<'a, ()>;

    /// Blocks the lane until `after` has passed (an upstream 429's `retry-after`): nothing
    /// is admitted on it before then.
    fn pause<'a>(&'a self, lane: &'a Lane, after: Duration) -> BoxFuture<'a, ()>;

    /// Aligns the lane with what the upstream reported (its `x-ratelimit-remaining-*` and
    /// `-reset-*` headers): when the upstream has less left than the ledger thinks, a
    /// synthetic charge of the difference is added that expires when the upstream's count
    /// resets, so the ledger is never less conservative than the provider. Never loosens.
    fn calibrate<'a>(
        &'a self,
        lane: &'a Lane,
        limits: Limits,
        window: Duration,
        observed: Observed,
    ) -> BoxFuture<'a, ()>;
}

/// What an upstream's rate-limit headers said, relative to the moment they arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observed {
    /// Requests left in the upstream's window.
    pub remaining_requests: Option<u64>,
    /// Tokens left (OpenAI: input + output; Anthropic: `tokens`).
    pub remaining_tokens: Option<u64>,
    /// Input tokens left (Anthropic).
    pub remaining_input_tokens: Option<u64>,
    /// Output tokens left (Anthropic).
    pub remaining_output_tokens: Option<u64>,
    /// When the request count fully resets, from now.
    pub reset_requests: Option<Duration>,
    /// When the token counts fully reset, from now.
    pub reset_tokens: Option<Duration>,
}
