//! The sliding-window limiter: one ledger of admitted charges per (API key, model), the
//! admit/reject decision with an exact `retry_after`, settling a charge down to actual use,
//! and pruning so memory stays bounded by what one window holds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::limits::{Charge, TierLimits};
use super::state::{KindState, LimitKind, LimitState, Rejection};

/// The window of the per-minute limits when none is given.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// Number of calls between sweeps of idle (API key, model) ledgers, at least.
const MIN_SWEEP_INTERVAL: usize = 64;

/// Sliding-window rate limiter over (API key, model) pairs. Thread-safe (`Send + Sync`);
/// every method takes the caller's `now`, and time never runs backwards inside the limiter
/// (an earlier `now` than one already seen is treated as the latest seen).
///
/// A charge admitted at `t` counts while `now < t + window`. A request is admitted only if,
/// for every limit the tier sets, the charges counting at `now` plus its own stay within the
/// limit. A tier with no limits ([`TierLimits::is_unlimited`]) admits everything and records
/// nothing.
#[derive(Debug)]
pub struct Limiter {
    window: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Clone, Default)]
struct Inner {
    /// API key → model → ledger. Only non-empty ledgers are kept after each call (idle ones
    /// are removed by the periodic sweep).
    ledgers: HashMap<String, HashMap<String, Ledger>>,
    next_id: u64,
    /// The latest `now` seen; earlier ones are raised to it.
    latest: Option<Instant>,
    calls_since_sweep: usize,
    sweep_interval: usize,
}

/// Admitted charges of one (API key, model), oldest first, with their running sums.
#[derive(Debug, Clone, Default)]
struct Ledger {
    entries: VecDeque<Entry>,
    requests: u128,
    input: u128,
    output: u128,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u64,
    at: Instant,
    charge: Charge,
}

/// The limiter's verdict on one limit.
enum Verdict {
    Fits,
    After(Duration),
    Never,
}

/// An admitted request: pass it to [`Limiter::settle`] when the response ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    key: String,
    model: String,
    /// `None` when nothing was recorded (unlimited tier).
    id: Option<u64>,
    charge: Charge,
    /// Every limit's state after charging this request: the headers of the response.
    pub state: LimitState,
}

impl Admission {
    /// The API key the request was charged to.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The model the request was charged to.
    #[must_use]
    pub fn model(&self) -> &str {
        &self.model
    }

    /// What was charged at admission.
    #[must_use]
    pub fn charge(&self) -> Charge {
        self.charge
    }
}

impl Ledger {
    fn total(&self, kind: LimitKind) -> u128 {
        match kind {
            LimitKind::Requests => self.requests,
            LimitKind::Tokens => self.input + self.output,
            LimitKind::InputTokens => self.input,
            LimitKind::OutputTokens => self.output,
        }
    }

    fn add(&mut self, charge: Charge) {
        self.requests += u128::from(charge.requests);
        self.input += u128::from(charge.input_tokens);
        self.output += u128::from(charge.output_tokens);
    }

    fn remove(&mut self, charge: Charge) {
        self.requests = self.requests.saturating_sub(u128::from(charge.requests));
        self.input = self.input.saturating_sub(u128::from(charge.input_tokens));
        self.output = self.output.saturating_sub(u128::from(charge.output_tokens));
    }

    /// Drops the entries that no longer count at `now`.
    fn prune(&mut self, now: Instant, window: Duration) {
        while let Some(front) = self.entries.front().copied() {
            if now.saturating_duration_since(front.at) < window {
                break;
            }
            self.entries.pop_front();
            self.remove(front.charge);
        }
    }

    /// Whether `amount` more of `kind` fits under `limit` at `now`, and if not, exactly when
    /// it will: walking from the oldest entry, the expiry of the first entry by which enough
    /// has expired.
    fn verdict(
        &self,
        kind: LimitKind,
        limit: u64,
        amount: u128,
        now: Instant,
        window: Duration,
    ) -> Verdict {
        let limit = u128::from(limit);
        if amount > limit {
            return Verdict::Never;
        }
        let used = self.total(kind);
        if used + amount <= limit {
            return Verdict::Fits;
        }
        let excess = used + amount - limit;
        let mut expired = 0u128;
        for entry in &self.entries {
            expired += kind.amount(entry.charge);
            if expired >= excess {
                return Verdict::After(
                    window.saturating_sub(now.saturating_duration_since(entry.at)),
                );
            }
        }
        // Unreachable while the sums match the entries; once every entry has expired the
        // request fits, so the full window is a true upper bound.
        Verdict::After(window)
    }

    /// Time until the last entry charging `kind` expires (zero if none does).
    fn reset(&self, kind: LimitKind, now: Instant, window: Duration) -> Duration {
        self.entries
            .iter()
            .rev()
            .find(|entry| kind.amount(entry.charge) > 0)
            .map_or(Duration::ZERO, |entry| {
                window.saturating_sub(now.saturating_duration_since(entry.at))
            })
    }

    fn state(&self, limits: &TierLimits, now: Instant, window: Duration) -> LimitState {
        let mut state = LimitState::default();
        for kind in LimitKind::ALL {
            let Some(limit) = kind.limit(limits) else {
                continue;
            };
            let left = u128::from(limit).saturating_sub(self.total(kind));
            state.set(
                kind,
                Some(KindState {
                    limit,
                    remaining: u64::try_from(left).unwrap_or(u64::MAX),
                    reset: self.reset(kind, now, window),
                }),
            );
        }
        state
    }
}

impl Inner {
    /// Raises `now` to the latest instant seen and records it.
    fn clock(&mut self, now: Instant) -> Instant {
        let now = match self.latest {
            Some(latest) if latest > now => latest,
            _ => now,
        };
        self.latest = Some(now);
        now
    }

    fn ledger_mut(&mut self, key: &str, model: &str) -> &mut Ledger {
        self.ledgers
            .entry(key.to_owned())
            .or_default()
            .entry(model.to_owned())
            .or_default()
    }

    /// Removes the ledger of (key, model) if it holds nothing, then every so often prunes all
    /// ledgers at `now` and removes the empty ones, so idle pairs do not accumulate.
    fn tidy(&mut self, key: &str, model: &str, now: Instant, window: Duration) {
        if let Some(models) = self.ledgers.get_mut(key) {
            if models
                .get(model)
                .is_some_and(|ledger| ledger.entries.is_empty())
            {
                models.remove(model);
            }
            if models.is_empty() {
                self.ledgers.remove(key);
            }
        }
        self.calls_since_sweep += 1;
        if self.calls_since_sweep >= self.sweep_interval.max(MIN_SWEEP_INTERVAL) {
            let mut live = 0;
            self.ledgers.retain(|_, models| {
                models.retain(|_, ledger| {
                    ledger.prune(now, window);
                    !ledger.entries.is_empty()
                });
                live += models.len();
                !models.is_empty()
            });
            self.calls_since_sweep = 0;
            self.sweep_interval = live;
        }
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl Clone for Limiter {
    /// A snapshot: an independent limiter holding the same charges.
    fn clone(&self) -> Self {
        Self {
            window: self.window,
            inner: Mutex::new(self.lock().clone()),
        }
    }
}

impl Limiter {
    /// A limiter whose limits apply per `window` (use [`DEFAULT_WINDOW`] for per-minute
    /// limits; tests may use a few seconds). A zero window holds nothing, so only requests
    /// larger than a limit are refused.
    #[must_use]
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The window the limits apply to.
    #[must_use]
    pub fn window(&self) -> Duration {
        self.window
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held; if something ever did, the ledgers are still
        // consistent between calls, so carry on with them.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admit or reject `charge` for (key, model) at `now`. On success the charge is recorded.
    ///
    /// # Errors
    /// A [`Rejection`] naming the binding limit when the charge does not fit every limit:
    /// with `retry_after` the exact wait until it would (if nothing else is admitted), or
    /// `None` when the charge alone exceeds a limit.
    #[expect(
        clippy::result_large_err,
        reason = "both outcomes carry a LimitState of similar size; callers build a response \
                  from either at once, so boxing one would only add an allocation"
    )]
    pub fn try_admit(
        &self,
        key: &str,
        model: &str,
        limits: &TierLimits,
        charge: Charge,
        now: Instant,
    ) -> Result<Admission, Rejection> {
        let admission = |id, state| Admission {
            key: key.to_owned(),
            model: model.to_owned(),
            id,
            charge,
            state,
        };
        if limits.is_unlimited() {
            return Ok(admission(None, LimitState::default()));
        }
        let window = self.window;
        let mut inner = self.lock();
        let now = inner.clock(now);
        let id = inner.next_id;
        let ledger = inner.ledger_mut(key, model);
        ledger.prune(now, window);

        // The binding limit: any that can never fit, else the longest wait.
        let mut binding: Option<(LimitKind, u64, Option<Duration>)> = None;
        for kind in LimitKind::ALL {
            let Some(limit) = kind.limit(limits) else {
                continue;
            };
            let wait = match ledger.verdict(kind, limit, kind.amount(charge), now, window) {
                Verdict::Fits => continue,
                Verdict::Never => None,
                Verdict::After(wait) => Some(wait),
            };
            let replace = match binding {
                None => true,
                Some((_, _, None)) => false,
                Some((_, _, Some(current))) => wait.is_none_or(|wait| wait > current),
            };
            if replace {
                binding = Some((kind, limit, wait));
            }
        }

        let result = match binding {
            Some((kind, limit, retry_after)) => Err(Rejection {
                kind,
                limit,
                used: u64::try_from(ledger.total(kind)).unwrap_or(u64::MAX),
                requested: u64::try_from(kind.amount(charge)).unwrap_or(u64::MAX),
                retry_after,
                state: ledger.state(limits, now, window),
                window,
            }),
            None => {
                ledger.entries.push_back(Entry {
                    id,
                    at: now,
                    charge,
                });
                ledger.add(charge);
                let state = ledger.state(limits, now, window);
                inner.next_id = id.saturating_add(1);
                Ok(admission(Some(id), state))
            }
        };
        inner.tidy(key, model, now, window);
        result
    }

    /// Reduce an admitted charge to what was actually used (never increases it: each of
    /// requests, input and output tokens becomes the smaller of the two). A charge that has
    /// already left the window, or came from another limiter, is ignored.
    pub fn settle(&self, admission: &Admission, actual: Charge, now: Instant) {
        let Some(id) = admission.id else { return };
        let window = self.window;
        let mut inner = self.lock();
        let now = inner.clock(now);
        if let Some(ledger) = inner
            .ledgers
            .get_mut(&admission.key)
            .and_then(|models| models.get_mut(&admission.model))
        {
            ledger.prune(now, window);
            if let Ok(index) = ledger.entries.binary_search_by_key(&id, |entry| entry.id) {
                let old = ledger.entries[index].charge;
                let new = old.min(actual);
                ledger.entries[index].charge = new;
                ledger.remove(old);
                ledger.add(new);
            }
        }
        inner.tidy(&admission.key, &admission.model, now, window);
    }

    /// Where every limit of `limits` stands for (key, model) at `now`, without charging.
    #[must_use]
    pub fn state(&self, key: &str, model: &str, limits: &TierLimits, now: Instant) -> LimitState {
        let window = self.window;
        let mut inner = self.lock();
        let now = inner.clock(now);
        let state = match inner
            .ledgers
            .get_mut(key)
            .and_then(|models| models.get_mut(model))
        {
            Some(ledger) => {
                ledger.prune(now, window);
                ledger.state(limits, now, window)
            }
            None => Ledger::default().state(limits, now, window),
        };
        inner.tidy(key, model, now, window);
        state
    }

    /// How many admitted charges are currently held across all (key, model) pairs, some of
    /// which may have expired but not yet been pruned (a diagnostic for memory use).
    #[must_use]
    pub fn tracked_charges(&self) -> usize {
        self.lock()
            .ledgers
            .values()
            .flat_map(HashMap::values)
            .map(|l| l.entries.len())
            .sum()
    }
}

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "limiter_props.rs"]
mod props;
