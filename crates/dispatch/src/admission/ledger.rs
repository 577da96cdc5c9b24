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
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);
    const NS: Duration = Duration::from_nanos(1);

    fn request(input: u64, output: u64) -> Charge {
        Charge {
            requests: 1,
            input,
            output,
        }
    }

    fn rpm(requests: u64) -> Limits {
        Limits {
            requests: Some(requests),
            ..Limits::default()
        }
    }

    fn tpm(tokens: u64) -> Limits {
        Limits {
            tokens: Some(tokens),
            ..Limits::default()
        }
    }

    fn retry_in(result: Result<u64, NotNow>) -> Duration {
        match result {
            Err(NotNow::RetryIn(wait)) => wait,
            other => panic!("expected RetryIn, got {other:?}"),
        }
    }

    #[test]
    fn admits_within_limits_and_refuses_beyond() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(rpm(2), WINDOW);
        assert_eq!(ledger.try_reserve(t0, request(1, 1)), Ok(0));
        assert_eq!(ledger.try_reserve(t0, request(1, 1)), Ok(1));
        assert_eq!(
            retry_in(ledger.try_reserve(t0 + Duration::from_secs(10), request(1, 1))),
            Duration::from_secs(50)
        );
    }

    #[test]
    fn retry_in_is_exact() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(tpm(100), WINDOW);
        ledger.try_reserve(t0, request(30, 30)).unwrap();
        let t1 = t0 + Duration::from_millis(1500);
        ledger.try_reserve(t1, request(20, 0)).unwrap();
        // 80 held; 60 more needs the first charge (60 tokens) gone: at t0 + 60s.
        let now = t0 + Duration::from_secs(7);
        let wait = retry_in(ledger.try_reserve(now, request(60, 0)));
        assert_eq!(now + wait, t0 + WINDOW);
        let mut early = ledger.clone();
        assert!(early.try_reserve(now + wait - NS, request(60, 0)).is_err());
        assert!(ledger.try_reserve(now + wait, request(60, 0)).is_ok());
    }

    #[test]
    fn unlimited_admits_everything() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(Limits::default(), WINDOW);
        for _ in 0..1000 {
            assert!(ledger.try_reserve(t0, request(u64::MAX, u64::MAX)).is_ok());
        }
    }

    #[test]
    fn a_charge_above_a_limit_is_never_and_says_which() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(tpm(200_000), WINDOW);
        assert_eq!(
            ledger.try_reserve(t0, request(50_000, 200_000)),
            Err(NotNow::Never(
                "this request needs 250,000 tokens but the tier allows 200,000 per 60s; \
                 lower max_tokens"
                    .to_owned()
            ))
        );
        let input = Limits {
            input_tokens: Some(1_000),
            ..Limits::default()
        };
        let Err(NotNow::Never(message)) =
            Ledger::new(input, Duration::from_millis(1500)).try_reserve(t0, request(1_001, 0))
        else {
            panic!("expected Never");
        };
        assert_eq!(
            message,
            "this request needs 1,001 input tokens but the tier allows 1,000 per 1500ms; \
             shorten the prompt"
        );
        let daily = Limits {
            requests_per_day: Some(0),
            ..Limits::default()
        };
        let Err(NotNow::Never(message)) = Ledger::new(daily, WINDOW).try_reserve(t0, request(1, 1))
        else {
            panic!("expected Never");
        };
        assert!(message.contains("needs 1 request but the tier allows 0 per day"));
    }

    #[test]
    fn settle_down_gives_capacity_back_immediately() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(tpm(1_000), WINDOW);
        let id = ledger.try_reserve(t0, request(100, 900)).unwrap();
        assert!(ledger.try_reserve(t0, request(500, 0)).is_err());
        ledger.settle(t0 + NS, id, request(100, 50));
        assert_eq!(ledger.usage(t0 + NS), request(100, 50));
        assert!(ledger.try_reserve(t0 + NS, request(500, 0)).is_ok());
    }

    #[test]
    fn settle_up_is_recorded_and_later_requests_wait_longer() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(tpm(1_000), WINDOW);
        let first = ledger.try_reserve(t0, request(100, 100)).unwrap();
        let t1 = t0 + Duration::from_secs(30);
        ledger.try_reserve(t1, request(100, 100)).unwrap();
        // The first used far more than reserved: the window is now over the limit.
        ledger.settle(t1, first, request(100, 900));
        assert_eq!(ledger.usage(t1).output, 1_000);
        // 100 more fits once the first (1,000) has gone, at t0 + 60s, not before.
        let wait = retry_in(ledger.try_reserve(t1, request(100, 0)));
        assert_eq!(t1 + wait, t0 + WINDOW);
        // Settling keeps the admission time: the first charge still expires at t0 + 60s.
        assert!(ledger.try_reserve(t0 + WINDOW, request(100, 0)).is_ok());
    }

    #[test]
    fn settling_an_expired_or_unknown_id_changes_nothing() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(tpm(1_000), WINDOW);
        let id = ledger.try_reserve(t0, request(100, 100)).unwrap();
        let later = t0 + WINDOW;
        ledger.settle(later, id, request(900, 0));
        ledger.settle(later, 42, request(900, 0));
        ledger.cancel(42);
        assert_eq!(ledger.usage(later), Charge::default());
        assert_eq!(ledger.held(), 0);
    }

    #[test]
    fn cancel_frees_the_whole_charge() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(rpm(1), WINDOW);
        let id = ledger.try_reserve(t0, request(1, 1)).unwrap();
        assert!(ledger.try_reserve(t0, request(1, 1)).is_err());
        ledger.cancel(id);
        assert_eq!(ledger.usage(t0), Charge::default());
        assert!(ledger.try_reserve(t0, request(1, 1)).is_ok());
    }

    #[test]
    fn pause_blocks_until_it_ends_exactly() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(rpm(10), WINDOW);
        ledger.pause(t0, Duration::from_secs(5));
        // A shorter pause does not shorten the one in force.
        ledger.pause(t0, Duration::from_secs(1));
        let wait = retry_in(ledger.try_reserve(t0 + Duration::from_secs(2), request(1, 1)));
        assert_eq!(wait, Duration::from_secs(3));
        assert!(
            ledger
                .try_reserve(t0 + Duration::from_secs(5) - NS, request(1, 1))
                .is_err()
        );
        assert!(
            ledger
                .try_reserve(t0 + Duration::from_secs(5), request(1, 1))
                .is_ok()
        );
    }

    #[test]
    fn pause_and_window_wait_take_the_later() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(rpm(1), WINDOW);
        ledger.try_reserve(t0, request(1, 1)).unwrap();
        ledger.pause(t0, Duration::from_secs(5));
        assert_eq!(retry_in(ledger.try_reserve(t0, request(1, 1))), WINDOW);
        let mut ledger = Ledger::new(rpm(1), Duration::from_secs(2));
        ledger.try_reserve(t0, request(1, 1)).unwrap();
        ledger.pause(t0, Duration::from_secs(5));
        assert_eq!(
            retry_in(ledger.try_reserve(t0, request(1, 1))),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn calibrate_charges_the_shortfall_until_the_upstream_resets() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(tpm(1_000), WINDOW);
        ledger.try_reserve(t0, request(100, 100)).unwrap();
        // We think 800 are left; the upstream says 300, resetting in 10 s.
        ledger.calibrate(
            t0,
            Observed {
                remaining_tokens: Some(300),
                reset_tokens: Some(Duration::from_secs(10)),
                ..Observed::default()
            },
        );
        assert!(ledger.try_reserve(t0, request(300, 0)).is_ok());
        // The synthetic charge is not any request's usage.
        let usage = Charge {
            requests: 2,
            input: 400,
            output: 100,
        };
        assert_eq!(ledger.usage(t0), usage);
        let wait = retry_in(ledger.try_reserve(t0, request(1, 0)));
        assert_eq!(wait, Duration::from_secs(10));
        assert!(
            ledger
                .try_reserve(t0 + Duration::from_secs(10), request(200, 0))
                .is_ok()
        );
    }

    #[test]
    fn calibrate_never_loosens() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(rpm(3), WINDOW);
        ledger.try_reserve(t0, request(1, 1)).unwrap();
        ledger.try_reserve(t0, request(1, 1)).unwrap();
        ledger.calibrate(
            t0,
            Observed {
                remaining_requests: Some(50),
                reset_requests: Some(Duration::ZERO),
                ..Observed::default()
            },
        );
        assert!(ledger.try_reserve(t0, request(1, 1)).is_ok());
        assert!(ledger.try_reserve(t0, request(1, 1)).is_err());
    }

    #[test]
    fn calibrating_tokens_does_not_charge_input_or_output_limits() {
        let t0 = Instant::now();
        let limits = Limits {
            tokens: Some(1_000),
            input_tokens: Some(500),
            ..Limits::default()
        };
        let mut ledger = Ledger::new(limits, WINDOW);
        ledger.calibrate(
            t0,
            Observed {
                remaining_tokens: Some(500),
                ..Observed::default()
            },
        );
        assert!(ledger.try_reserve(t0, request(500, 0)).is_ok());
        // No reset given: the shortfall is held for a full window.
        assert_eq!(retry_in(ledger.try_reserve(t0, request(0, 1))), WINDOW);
    }

    #[test]
    fn per_day_limits_slide_over_24_hours() {
        let t0 = Instant::now();
        let limits = Limits {
            requests: Some(10),
            requests_per_day: Some(2),
            ..Limits::default()
        };
        let mut ledger = Ledger::new(limits, WINDOW);
        ledger.try_reserve(t0, request(1, 1)).unwrap();
        let t1 = t0 + Duration::from_secs(3600);
        ledger.try_reserve(t1, request(1, 1)).unwrap();
        let now = t0 + Duration::from_secs(7200);
        let wait = retry_in(ledger.try_reserve(now, request(1, 1)));
        assert_eq!(now + wait, t0 + DAY);
        assert!(ledger.try_reserve(t0 + DAY, request(1, 1)).is_ok());
        assert_eq!(ledger.usage(t0 + DAY), request(1, 1));
    }

    #[test]
    fn an_earlier_now_is_treated_as_the_latest() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(rpm(1), WINDOW);
        let late = t0 + Duration::from_secs(100);
        ledger.try_reserve(late, request(1, 1)).unwrap();
        // `t0` is raised to `late`, so the wait is the full window, not 160 s.
        assert_eq!(retry_in(ledger.try_reserve(t0, request(1, 1))), WINDOW);
    }

    #[test]
    fn memory_is_bounded_by_one_window() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(rpm(1_000_000), Duration::from_secs(1));
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            ledger.try_reserve(now, request(1, 1)).unwrap();
            assert!(ledger.held() <= 1_000);
        }
    }

    #[test]
    fn set_limits_applies_to_held_charges() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(rpm(5), WINDOW);
        for _ in 0..3 {
            ledger.try_reserve(t0, request(1, 1)).unwrap();
        }
        ledger.set_limits(rpm(3));
        assert!(ledger.try_reserve(t0, request(1, 1)).is_err());
        // Switching on a per-day limit counts what the ledger still holds.
        ledger.set_limits(Limits {
            requests_per_day: Some(4),
            ..Limits::default()
        });
        ledger.try_reserve(t0, request(1, 1)).unwrap();
        let wait = retry_in(ledger.try_reserve(t0 + WINDOW, request(1, 1)));
        assert_eq!(wait, DAY - WINDOW);
    }

    #[test]
    fn ids_increase() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(Limits::default(), WINDOW);
        let ids: Vec<u64> = (0..5)
            .map(|i| ledger.try_reserve(t0 + WINDOW * i, request(1, 1)).unwrap())
            .collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }
}

#[cfg(test)]
mod props {
    //! Property tests with a simulated clock: any sequence of operations keeps every
    //! window within every limit, and every `RetryIn` is exact.

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Advance(Duration),
        Reserve(Charge),
        /// Settle the `n % len`-th unsettled reservation to `per_mille` of each field.
        Settle(usize, u64),
        Cancel(usize),
        Pause(Duration),
        Calibrate(Observed),
    }

    fn advance() -> impl Strategy<Value = Duration> {
        prop_oneof![
            6 => (0u64..2_000).prop_map(Duration::from_millis),
            1 => (0u64..1_000).prop_map(Duration::from_nanos),
            1 => (0u64..30).prop_map(|h| Duration::from_secs(h * 3600)),
        ]
    }

    fn charge() -> impl Strategy<Value = Charge> {
        (0u64..=2, 0u64..80, 0u64..80).prop_map(|(requests, input, output)| Charge {
            requests,
            input,
            output,
        })
    }

    fn observed() -> impl Strategy<Value = Observed> {
        let remaining = proptest::option::of(0u64..100);
        let reset = proptest::option::of((0u64..20_000).prop_map(Duration::from_millis));
        (
            remaining.clone(),
            remaining.clone(),
            remaining.clone(),
            remaining,
            reset.clone(),
            reset,
        )
            .prop_map(|(r, t, i, o, rr, rt)| Observed {
                remaining_requests: r,
                remaining_tokens: t,
                remaining_input_tokens: i,
                remaining_output_tokens: o,
                reset_requests: rr,
                reset_tokens: rt,
            })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => advance().prop_map(Op::Advance),
            8 => charge().prop_map(Op::Reserve),
            3 => (any::<usize>(), 0u64..=1_000).prop_map(|(n, m)| Op::Settle(n, m)),
            1 => any::<usize>().prop_map(Op::Cancel),
            1 => (0u64..5_000).prop_map(|ms| Op::Pause(Duration::from_millis(ms))),
            1 => observed().prop_map(Op::Calibrate),
        ]
    }

    fn limits() -> impl Strategy<Value = Limits> {
        (
            proptest::option::of(1u64..6),
            proptest::option::of(80u64..300),
            proptest::option::of(80u64..200),
            proptest::option::of(80u64..200),
            proptest::option::of(3u64..30),
            proptest::option::of(200u64..2_000),
        )
            .prop_map(|(r, t, i, o, rpd, tpd)| Limits {
                requests: r,
                tokens: t,
                input_tokens: i,
                output_tokens: o,
                requests_per_day: rpd,
                tokens_per_day: tpd,
            })
    }

    /// One admission as the test saw it: offset from the start, and its final charge.
    struct Admitted {
        at: Duration,
        charge: Charge,
    }

    fn check_windows(admitted: &[Admitted], kind: Kind, limit: u64, window: Duration) {
        for end in admitted {
            let total: u128 = admitted
                .iter()
                .filter(|a| a.at <= end.at && end.at - a.at < window)
                .map(|a| kind.amount(a.charge))
                .sum();
            assert!(
                total <= u128::from(limit),
                "{kind:?}: {total} > {limit} in the window ending at {:?}",
                end.at
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn windows_stay_within_limits_and_waits_are_exact(
            limits in limits(),
            window_ms in 1u64..10_000,
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let window = Duration::from_millis(window_ms);
            let start = Instant::now();
            let mut offset = Duration::ZERO;
            let mut ledger = Ledger::new(limits, window);
            let mut admitted: Vec<Admitted> = Vec::new();
            // (id, index into `admitted`) of reservations not yet settled or cancelled.
            let mut open: Vec<(u64, usize)> = Vec::new();

            for op in ops {
                let now = start + offset;
                match op {
                    Op::Advance(by) => offset += by,
                    Op::Reserve(charge) => match ledger.try_reserve(now, charge) {
                        Ok(id) => {
                            open.push((id, admitted.len()));
                            admitted.push(Admitted { at: offset, charge });
                        }
                        Err(NotNow::Never(_)) => {
                            prop_assert!(never_fits(&limits, charge, window).is_some());
                        }
                        Err(NotNow::RetryIn(wait)) => {
                            prop_assert!(never_fits(&limits, charge, window).is_none());
                            prop_assert!(!wait.is_zero());
                            let mut early = ledger.clone();
                            prop_assert!(
                                matches!(
                                    early.try_reserve(now + wait - Duration::from_nanos(1), charge),
                                    Err(NotNow::RetryIn(_))
                                ),
                                "fits before the reported wait {:?}", wait
                            );
                            let mut on_time = ledger.clone();
                            prop_assert!(
                                on_time.try_reserve(now + wait, charge).is_ok(),
                                "does not fit after the reported wait {:?}", wait
                            );
                        }
                    },
                    Op::Settle(n, per_mille) => {
                        if !open.is_empty() {
                            let (id, index) = open.swap_remove(n % open.len());
                            let reserved = admitted[index].charge;
                            let scale = |x: u64| x * per_mille / 1_000;
                            let actual = Charge {
                                requests: scale(reserved.requests),
                                input: scale(reserved.input),
                                output: scale(reserved.output),
                            };
                            ledger.settle(now, id, actual);
                            admitted[index].charge = actual;
                        }
                    }
                    Op::Cancel(n) => {
                        if !open.is_empty() {
                            let (id, index) = open.swap_remove(n % open.len());
                            ledger.cancel(id);
                            admitted[index].charge = Charge::default();
                        }
                    }
                    Op::Pause(after) => ledger.pause(now, after),
                    Op::Calibrate(observed) => ledger.calibrate(now, observed),
                }

                // `usage` agrees with a brute-force count of the window.
                let now = start + offset;
                let mut expected = Sums::default();
                for a in admitted.iter().filter(|a| offset - a.at < window) {
                    expected.add(a.charge);
                }
                prop_assert_eq!(ledger.usage(now), expected.charge());
            }

            for kind in Kind::ALL {
                if let Some(limit) = kind.limit(&limits) {
                    let horizon = if kind.per_day() { DAY } else { window };
                    check_windows(&admitted, kind, limit, horizon);
                }
            }
        }
    }
}
