//! The sliding-window ledger of one lane: which charges count at a given moment, whether a
//! new one fits, and if not exactly when it will.
//!
//! It owns the rule the simulator applies to us (`sim::tier::limiter`): a charge admitted at
//! `t` counts while `now < t + window`, and a charge is admitted only if, for every limit
//! set, the charges counting at `now` plus its own stay within the limit. The per-day
//! limits follow the same rule over 24 hours. On top of that it keeps the two things only a
//! client needs: pauses (an upstream 429's `retry-after`) and calibration charges (what the
//! upstream's headers say it counted that we did not).
//!
//! It is pure: no I/O and no clock of its own. Every method that depends on time takes the
//! caller's `now`, and time never runs backwards inside (an earlier `now` than one already
//! seen is treated as the latest seen), so it is property-tested with a simulated clock.
//! Where ledgers live and how they are shared is left to the backends
//! ([`super::local`], [`super::redis`]); waiting is left to [`super::queue`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use protocol::fmt::thousands;

use super::{Charge, Limits, NotNow, Observed};

/// The window of the per-day limits.
pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest pause or calibration horizon honoured. Longer ones are clamped so that
/// `now + after` cannot overflow an `Instant`; a year is longer than any real `retry-after`.
const LONGEST: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// One kind of limit. The first four apply per `window`, the last two per [`DAY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Requests,
    Tokens,
    InputTokens,
    OutputTokens,
    RequestsPerDay,
    TokensPerDay,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Requests,
        Kind::Tokens,
        Kind::InputTokens,
        Kind::OutputTokens,
        Kind::RequestsPerDay,
        Kind::TokensPerDay,
    ];

    fn limit(self, limits: &Limits) -> Option<u64> {
        match self {
            Kind::Requests => limits.requests,
            Kind::Tokens => limits.tokens,
            Kind::InputTokens => limits.input_tokens,
            Kind::OutputTokens => limits.output_tokens,
            Kind::RequestsPerDay => limits.requests_per_day,
            Kind::TokensPerDay => limits.tokens_per_day,
        }
    }

    fn amount(self, charge: Charge) -> u128 {
        match self {
            Kind::Requests | Kind::RequestsPerDay => u128::from(charge.requests),
            Kind::Tokens | Kind::TokensPerDay => {
                u128::from(charge.input) + u128::from(charge.output)
            }
            Kind::InputTokens => u128::from(charge.input),
            Kind::OutputTokens => u128::from(charge.output),
        }
    }

    fn per_day(self) -> bool {
        matches!(self, Kind::RequestsPerDay | Kind::TokensPerDay)
    }

    /// Where calibration charges of this kind are kept; the per-day kinds have none, since
    /// the upstream headers we calibrate from describe the short window only.
    fn slot(self) -> Option<usize> {
        match self {
            Kind::Requests => Some(0),
            Kind::Tokens => Some(1),
            Kind::InputTokens => Some(2),
            Kind::OutputTokens => Some(3),
            Kind::RequestsPerDay | Kind::TokensPerDay => None,
        }
    }

    fn noun(self, amount: u128) -> &'static str {
        match self {
            Kind::Requests | Kind::RequestsPerDay if amount == 1 => "request",
            Kind::Requests | Kind::RequestsPerDay => "requests",
            Kind::Tokens | Kind::TokensPerDay => "tokens",
            Kind::InputTokens => "input tokens",
            Kind::OutputTokens => "output tokens",
        }
    }

    /// What the caller can change so the request fits.
    fn hint(self, charge: Charge, limit: u64) -> &'static str {
        match self {
            Kind::Requests | Kind::RequestsPerDay => "check the tier's request limits",
            Kind::Tokens | Kind::TokensPerDay if charge.input > limit => "shorten the prompt",
            Kind::Tokens | Kind::TokensPerDay | Kind::OutputTokens => "lower max_tokens",
            Kind::InputTokens => "shorten the prompt",
        }
    }
}

/// Why `charge` can never fit under `limits` (it alone exceeds one of them), naming the
/// limit, the numbers and the fix; `None` when it fits an empty window. Backends and the
/// queue share this so every path rejects with the same words.
#[must_use]
pub fn never_fits(limits: &Limits, charge: Charge, window: Duration) -> Option<String> {
    Kind::ALL.into_iter().find_map(|kind| {
        let limit = kind.limit(limits)?;
        let need = kind.amount(charge);
        (need > u128::from(limit)).then(|| {
            let per = if kind.per_day() {
                "day".to_owned()
            } else {
                span(window)
            };
            format!(
                "this request needs {} {} but the tier allows {} per {per}; {}",
                thousands(need),
                kind.noun(need),
                thousands(limit),
                kind.hint(charge, limit),
            )
        })
    })
}

/// A window as people write it: `60s`, `500ms`.
fn span(window: Duration) -> String {
    if window.subsec_nanos() == 0 {
        format!("{}s", window.as_secs())
    } else if window.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", window.as_millis())
    } else {
        format!("{window:?}")
    }
}

/// Running sums of real charges. `u128` so no sum of `u64` charges can overflow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sums {
    requests: u128,
    input: u128,
    output: u128,
}

impl Sums {
    fn add(&mut self, charge: Charge) {
        self.requests += u128::from(charge.requests);
        self.input += u128::from(charge.input);
        self.output += u128::from(charge.output);
    }

    fn sub(&mut self, charge: Charge) {
        // Saturating only as a guard: the sums always cover the charges subtracted.
        self.requests = self.requests.saturating_sub(u128::from(charge.requests));
        self.input = self.input.saturating_sub(u128::from(charge.input));
        self.output = self.output.saturating_sub(u128::from(charge.output));
    }

    fn of(&self, kind: Kind) -> u128 {
        match kind {
            Kind::Requests | Kind::RequestsPerDay => self.requests,
            Kind::Tokens | Kind::TokensPerDay => self.input + self.output,
            Kind::InputTokens => self.input,
            Kind::OutputTokens => self.output,
        }
    }

    fn charge(&self) -> Charge {
        let clamp = |n: u128| u64::try_from(n).unwrap_or(u64::MAX);
        Charge {
            requests: clamp(self.requests),
            input: clamp(self.input),
            output: clamp(self.output),
        }
    }
}

/// A reserved (and maybe settled) charge. A cancelled one stays as a zero charge until it
/// expires, which keeps the deque in id order for the binary search.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u64,
    at: Instant,
    charge: Charge,
}

/// A calibration charge: amounts per [`Kind::slot`], counted until `expires`. Kept apart
/// from the real entries because its expiry is the upstream's, not `at + window`, so it
/// would break the deque's order, and because it charges single kinds (a token shortfall
/// must not also count against the input-token limit).
#[derive(Debug, Clone, Copy)]
struct Synthetic {
    expires: Instant,
    amounts: [u128; 4],
}

/// The ledger of one lane. See the module docs for the rule.
///
/// Memory is bounded by what one window holds: the real charges admitted within the
/// window (within 24 h while a per-day limit is set), plus one calibration charge per
/// distinct upstream reset still ahead.
#[derive(Debug, Clone)]
pub struct Ledger {
    limits: Limits,
    window: Duration,
    /// The latest `now` seen; earlier ones are raised to it.
    latest: Option<Instant>,
    /// Real charges in admission order: both `id` and `at` increase along it.
    entries: VecDeque<Entry>,
    /// `entries[window_start..]` count against the per-window limits.
    window_start: usize,
    /// `entries[day_start..]` count against the per-day limits (none while no per-day
    /// limit is set; then nothing is kept beyond the window).
    day_start: usize,
    in_window: Sums,
    in_day: Sums,
    /// Calibration charges, ordered by expiry.
    synthetic: VecDeque<Synthetic>,
    synthetic_sums: [u128; 4],
    paused_until: Option<Instant>,
    next_id: u64,
}

impl Ledger {
    /// An empty ledger applying `limits` per `window` (and the per-day ones per [`DAY`]).
    #[must_use]
    pub fn new(limits: Limits, window: Duration) -> Ledger {
        Ledger {
            limits,
            window,
            latest: None,
            entries: VecDeque::new(),
            window_start: 0,
            day_start: 0,
            in_window: Sums::default(),
            in_day: Sums::default(),
            synthetic: VecDeque::new(),
            synthetic_sums: [0; 4],
            paused_until: None,
            next_id: 0,
        }
    }

    /// The limits applied.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The window the per-window limits apply to.
    #[must_use]
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Replaces the limits (learned later, e.g. from the upstream's headers). Charges
    /// already held count against the new limits. Switching a per-day limit on starts its
    /// count with what the ledger still holds (the current window), since older charges
    /// were not kept.
    pub fn set_limits(&mut self, limits: Limits) {
        let tracked_day = self.tracks_day();
        self.limits = limits;
        if !tracked_day && self.tracks_day() {
            self.day_start = 0;
            self.in_day = self.sum_from(0);
        }
    }

    /// Replaces the window. A longer one counts again what the ledger still holds; charges
    /// already dropped stay dropped.
    pub fn set_window(&mut self, window: Duration) {
        if window != self.window {
            self.window = window;
            self.window_start = 0;
            self.in_window = self.sum_from(0);
        }
    }

    /// Admits `charge` at `now` if it fits every limit, returning its id for
    /// [`Ledger::settle`] and [`Ledger::cancel`]; ids increase.
    ///
    /// # Errors
    /// [`NotNow::Never`] when the charge alone exceeds a limit; otherwise
    /// [`NotNow::RetryIn`] with the exact wait until it fits (and any pause has ended),
    /// assuming nothing else is admitted meanwhile: retrying at `now + d` succeeds, at
    /// `now + d - 1ns` it would not.
    pub fn try_reserve(&mut self, now: Instant, charge: Charge) -> Result<u64, NotNow> {
        let now = self.clock(now);
        self.prune(now);
        if let Some(message) = never_fits(&self.limits, charge, self.window) {
            return Err(NotNow::Never(message));
        }
        let mut wait = self
            .paused_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        for kind in Kind::ALL {
            let Some(limit) = kind.limit(&self.limits) else {
                continue;
            };
            let need = self.counted(kind) + kind.amount(charge);
            let limit = u128::from(limit);
            if need > limit {
                wait = wait.max(self.wait_for(kind, need - limit, now));
            }
        }
        if !wait.is_zero() {
            return Err(NotNow::RetryIn(wait));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push_back(Entry {
            id,
            at: now,
            charge,
        });
        // The new entry is at the end, so inside both cursors' ranges.
        self.in_window.add(charge);
        self.in_day.add(charge);
        Ok(id)
    }

    /// Replaces the charge of `id` by what was actually used; it keeps its admission time.
    /// Using less gives capacity back at once; using more is recorded even when it takes
    /// the window over a limit (the upstream counted it too), so later charges wait longer.
    /// An unknown or expired id is ignored.
    pub fn settle(&mut self, now: Instant, id: u64, actual: Charge) {
        let now = self.clock(now);
        self.prune(now);
        self.replace(id, actual);
    }

    /// Removes the charge of `id` (its request was never sent). Unknown ids are ignored.
    pub fn cancel(&mut self, id: u64) {
        self.replace(id, Charge::default());
    }

    /// Admits nothing before `now + after`. A shorter pause than one in force changes
    /// nothing.
    pub fn pause(&mut self, now: Instant, after: Duration) {
        let now = self.clock(now);
        self.prune(now);
        let until = later(now, after);
        self.paused_until = Some(self.paused_until.map_or(until, |held| held.max(until)));
    }

    /// Aligns with what the upstream reported at `now`: for each limit where it has fewer
    /// left than the ledger computes (limit minus counted), charges the difference until the
    /// upstream's reset (`now + reset`; a full window when no reset was given). Never
    /// loosens: reporting more left than the ledger computes changes nothing.
    pub fn calibrate(&mut self, now: Instant, observed: Observed) {
        let now = self.clock(now);
        self.prune(now);
        let reports = [
            (
                Kind::Requests,
                observed.remaining_requests,
                observed.reset_requests,
            ),
            (
                Kind::Tokens,
                observed.remaining_tokens,
                observed.reset_tokens,
            ),
            (
                Kind::InputTokens,
                observed.remaining_input_tokens,
                observed.reset_tokens,
            ),
            (
                Kind::OutputTokens,
                observed.remaining_output_tokens,
                observed.reset_tokens,
            ),
        ];
        for (kind, remaining, reset) in reports {
            let (Some(limit), Some(remaining), Some(slot)) =
                (kind.limit(&self.limits), remaining, kind.slot())
            else {
                continue;
            };
            let ours = u128::from(limit).saturating_sub(self.counted(kind));
            let remaining = u128::from(remaining);
            if remaining >= ours {
                continue;
            }
            let expires = later(now, reset.unwrap_or(self.window));
            if expires <= now {
                // The upstream's count has just reset: nothing to hold.
                continue;
            }
            let mut amounts = [0; 4];
            amounts[slot] = ours - remaining;
            self.add_synthetic(Synthetic { expires, amounts });
        }
    }

    /// The real charges (reserved or settled; not calibration charges) counting against the
    /// per-window limits at `now`.
    #[must_use]
    pub fn usage(&self, now: Instant) -> Charge {
        let now = self.latest.map_or(now, |latest| latest.max(now));
        let mut sums = self.in_window;
        // Entries not yet pruned may have expired since the last call.
        for entry in self.entries.range(self.window_start..) {
            if !expired(entry.at, now, self.window) {
                break;
            }
            sums.sub(entry.charge);
        }
        sums.charge()
    }

    /// How many charges (real and calibration) are held: what memory the ledger uses.
    #[must_use]
    pub fn held(&self) -> usize {
        self.entries.len() + self.synthetic.len()
    }

    fn tracks_day(&self) -> bool {
        self.limits.requests_per_day.is_some() || self.limits.tokens_per_day.is_some()
    }

    /// Raises `now` to the latest instant seen and records it.
    fn clock(&mut self, now: Instant) -> Instant {
        let now = self.latest.map_or(now, |latest| latest.max(now));
        self.latest = Some(now);
        now
    }

    fn sum_from(&self, start: usize) -> Sums {
        let mut sums = Sums::default();
        for entry in self.entries.range(start..) {
            sums.add(entry.charge);
        }
        sums
    }

    /// Drops what no longer counts at `now` and ends a pause that is over.
    fn prune(&mut self, now: Instant) {
        while let Some(entry) = self.entries.get(self.window_start) {
            if !expired(entry.at, now, self.window) {
                break;
            }
            self.in_window.sub(entry.charge);
            self.window_start += 1;
        }
        // Without a per-day limit nothing is kept for the day: a zero horizon expires all.
        let day = if self.tracks_day() {
            DAY
        } else {
            Duration::ZERO
        };
        while let Some(entry) = self.entries.get(self.day_start) {
            if !expired(entry.at, now, day) {
                break;
            }
            self.in_day.sub(entry.charge);
            self.day_start += 1;
        }
        let gone = self.window_start.min(self.day_start);
        self.entries.drain(..gone);
        self.window_start -= gone;
        self.day_start -= gone;

        while let Some(front) = self.synthetic.front() {
            if front.expires > now {
                break;
            }
            for (sum, amount) in self.synthetic_sums.iter_mut().zip(front.amounts) {
                *sum = sum.saturating_sub(amount);
            }
            self.synthetic.pop_front();
        }
        if self.paused_until.is_some_and(|until| until <= now) {
            self.paused_until = None;
        }
    }

    /// What counts against `kind` (after [`Ledger::prune`]).
    fn counted(&self, kind: Kind) -> u128 {
        if kind.per_day() {
            return self.in_day.of(kind);
        }
        let synthetic = kind.slot().map_or(0, |slot| self.synthetic_sums[slot]);
        self.in_window.of(kind) + synthetic
    }

    /// How long until at least `excess` of `kind` has expired: walking the charges in
    /// expiry order (real ones and calibration ones merged), the time to the expiry of the
    /// one by which enough has gone. Just before that instant the charge still counts, so
    /// the wait is exact.
    fn wait_for(&self, kind: Kind, excess: u128, now: Instant) -> Duration {
        let (start, horizon) = if kind.per_day() {
            (self.day_start, DAY)
        } else {
            (self.window_start, self.window)
        };
        let mut real = self
            .entries
            .range(start..)
            .map(|entry| {
                let left = horizon.saturating_sub(now.saturating_duration_since(entry.at));
                (left, kind.amount(entry.charge))
            })
            .peekable();
        let mut synthetic = kind
            .slot()
            .map(|slot| {
                self.synthetic
                    .iter()
                    .map(move |s| (s.expires.saturating_duration_since(now), s.amounts[slot]))
            })
            .into_iter()
            .flatten()
            .peekable();
        let mut gone = 0u128;
        let mut last = Duration::ZERO;
        loop {
            let next = match (real.peek(), synthetic.peek()) {
                (Some(r), Some(s)) if s.0 < r.0 => synthetic.next(),
                (Some(_), _) => real.next(),
                (None, _) => synthetic.next(),
            };
            let Some((left, amount)) = next else {
                // Unreachable while the sums match the charges: once all have expired the
                // charge fits (`never_fits` passed). The last expiry is then a true bound.
                return last;
            };
            last = left;
            gone += amount;
            if gone >= excess {
                return left;
            }
        }
    }

    fn replace(&mut self, id: u64, actual: Charge) {
        let Ok(index) = self.entries.binary_search_by_key(&id, |entry| entry.id) else {
            return;
        };
        let Some(entry) = self.entries.get_mut(index) else {
            return;
        };
        let old = std::mem::replace(&mut entry.charge, actual);
        if index >= self.window_start {
            self.in_window.sub(old);
            self.in_window.add(actual);
        }
        if index >= self.day_start {
            self.in_day.sub(old);
            self.in_day.add(actual);
        }
    }

    fn add_synthetic(&mut self, new: Synthetic) {
        for (sum, amount) in self.synthetic_sums.iter_mut().zip(new.amounts) {
            *sum += amount;
        }
        let at = self.synthetic.partition_point(|s| s.expires <= new.expires);
        // Calibrations after every response mostly share a reset instant: merge them.
        if let Some(prev) = at.checked_sub(1).and_then(|i| self.synthetic.get_mut(i))
            && prev.expires == new.expires
        {
            for (held, amount) in prev.amounts.iter_mut().zip(new.amounts) {
                *held += amount;
            }
            return;
        }
        self.synthetic.insert(at, new);
    }
}

/// Whether a charge admitted at `at` no longer counts at `now` under a `window`.
fn expired(at: Instant, now: Instant, window: Duration) -> bool {
    now.saturating_duration_since(at) >= window
}

/// `now + after`, clamped to [`LONGEST`] so it cannot overflow.
fn later(now: Instant, after: Duration) -> Instant {
    // `checked_add` of at most a year to a monotonic clock cannot fail in practice; if it
    // ever did, holding nothing is the only answer that does not panic.
    now.checked_add(after.min(LONGEST)).unwrap_or(now)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
