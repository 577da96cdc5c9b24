//! The in-process [`Backend`]: one [`Ledger`] per lane behind a std `Mutex`, on the
//! monotonic clock.
//!
//! It owns where the ledgers of one gateway instance live and which clock they see. The
//! rule itself is the ledger's; waiting is the queue's ([`super::queue`]); sharing limits
//! between instances is [`super::redis`]'s. The lock is held only for the ledger call
//! (microseconds, never across an `await`: each future does its work in its first poll and
//! has nothing to await), so a std mutex serves better than an async one.
//!
//! Ledgers are created on first use, take the limits and window of every call (so limits
//! learned later from headers apply at once), and are never removed: lanes are few
//! (upstream x model), an idle ledger shrinks to nothing held at its next call, and keeping
//! it keeps its ids increasing, so a stale reservation can never settle a newer charge.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::ledger::Ledger;
use super::{Backend, BoxFuture, Charge, Lane, Limits, NotNow, Observed, Reservation};

/// The window a lane's ledger starts with when it is first touched by a call that does not
/// say (a pause); the next call that does say replaces it.
const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// Ledgers of this process, one per lane.
#[derive(Debug, Default)]
pub struct LocalBackend {
    ledgers: Mutex<HashMap<Lane, Ledger>>,
}

impl LocalBackend {
    /// A backend holding no ledgers yet.
    #[must_use]
    pub fn new() -> LocalBackend {
        LocalBackend::default()
    }

    /// The real charges counting on `lane` now (zero for a lane never used): for
    /// diagnostics and tests.
    #[must_use]
    pub fn usage(&self, lane: &Lane) -> Charge {
        self.lock()
            .get(lane)
            .map_or_else(Charge::default, |ledger| ledger.usage(Instant::now()))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Lane, Ledger>> {
        // Nothing panics while the lock is held; if something ever did, every ledger is
        // still consistent between calls, so carry on with them.
        self.ledgers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the ledger of `lane`, creating it or bringing its limits and window up to
    /// date first.
    fn with_ledger<R>(
        &self,
        lane: &Lane,
        limits: Limits,
        window: Duration,
        f: impl FnOnce(&mut Ledger) -> R,
    ) -> R {
        let mut ledgers = self.lock();
        // `get_mut` first: the common case must not clone the lane's strings.
        if let Some(ledger) = ledgers.get_mut(lane) {
            if ledger.limits() != limits {
                ledger.set_limits(limits);
            }
            ledger.set_window(window);
            return f(ledger);
        }
        f(ledgers
            .entry(lane.clone())
            .or_insert_with(|| Ledger::new(limits, window)))
    }
}

impl Backend for LocalBackend {
    fn try_reserve<'a>(
        &'a self,
        lane: &'a Lane,
        limits: Limits,
        window: Duration,
        charge: Charge,
    ) -> BoxFuture<'a, Result<Reservation, NotNow>> {
        Box::pin(async move {
            self.with_ledger(lane, limits, window, |ledger| {
                ledger.try_reserve(Instant::now(), charge)
            })
            .map(|id| Reservation {
                lane: lane.clone(),
                id,
                charge,
            })
        })
    }

    fn settle<'a>(&'a self, reservation: &'a Reservation, actual: Charge) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(ledger) = self.lock().get_mut(&reservation.lane) {
                ledger.settle(Instant::now(), reservation.id, actual);
            }
        })
    }

    fn cancel<'a>(&'a self, reservation: &'a Reservation) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(ledger) = self.lock().get_mut(&reservation.lane) {
                ledger.cancel(reservation.id);
            }
        })
    }

    fn pause<'a>(&'a self, lane: &'a Lane, after: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let now = Instant::now();
            let mut ledgers = self.lock();
            match ledgers.get_mut(lane) {
                Some(ledger) => ledger.pause(now, after),
                None => {
                    // A 429 can arrive before this instance admitted anything on the lane
                    // (otherwise the first call that knows the limits creates the ledger).
                    let mut ledger = Ledger::new(Limits::default(), DEFAULT_WINDOW);
                    ledger.pause(now, after);
                    ledgers.insert(lane.clone(), ledger);
                }
            }
        })
    }

    fn calibrate<'a>(
        &'a self,
        lane: &'a Lane,
        limits: Limits,
        window: Duration,
        observed: Observed,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.with_ledger(lane, limits, window, |ledger| {
                ledger.calibrate(Instant::now(), observed);
            });
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(model: &str) -> Lane {
        Lane {
            upstream: "openai".to_owned(),
            model: model.to_owned(),
        }
    }

    fn one() -> Charge {
        Charge {
            requests: 1,
            input: 10,
            output: 10,
        }
    }

    const RPM_1: Limits = Limits {
        requests: Some(1),
        tokens: None,
        input_tokens: None,
        output_tokens: None,
        requests_per_day: None,
        tokens_per_day: None,
    };

    #[tokio::test]
    async fn lanes_are_limited_independently() {
        let backend = LocalBackend::new();
        let window = Duration::from_secs(60);
        let a = lane("a");
        let b = lane("b");
        backend.try_reserve(&a, RPM_1, window, one()).await.unwrap();
        backend.try_reserve(&b, RPM_1, window, one()).await.unwrap();
        let Err(NotNow::RetryIn(wait)) = backend.try_reserve(&a, RPM_1, window, one()).await else {
            panic!("the second request on lane a should wait");
        };
        assert!(wait <= window && wait > window - Duration::from_secs(5));
    }

    #[tokio::test]
    async fn settle_and_cancel_reach_the_ledger() {
        let backend = LocalBackend::new();
        let window = Duration::from_secs(60);
        let a = lane("a");
        let reservation = backend.try_reserve(&a, RPM_1, window, one()).await.unwrap();
        let actual = Charge {
            requests: 1,
            input: 10,
            output: 2,
        };
        backend.settle(&reservation, actual).await;
        assert_eq!(backend.usage(&a), actual);
        backend.cancel(&reservation).await;
        assert_eq!(backend.usage(&a), Charge::default());
        assert!(backend.try_reserve(&a, RPM_1, window, one()).await.is_ok());
    }

    #[tokio::test]
    async fn limits_of_later_calls_apply() {
        let backend = LocalBackend::new();
        let window = Duration::from_secs(60);
        let a = lane("a");
        backend
            .try_reserve(&a, Limits::default(), window, one())
            .await
            .unwrap();
        assert!(backend.try_reserve(&a, RPM_1, window, one()).await.is_err());
    }

    #[tokio::test]
    async fn pause_before_first_use_holds() {
        let backend = LocalBackend::new();
        let a = lane("a");
        backend.pause(&a, Duration::from_secs(30)).await;
        let result = backend
            .try_reserve(&a, Limits::default(), Duration::from_secs(60), one())
            .await;
        let Err(NotNow::RetryIn(wait)) = result else {
            panic!("paused lane admitted: {result:?}");
        };
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
    }

    #[tokio::test]
    async fn calibrate_tightens_the_lane() {
        let backend = LocalBackend::new();
        let window = Duration::from_secs(60);
        let a = lane("a");
        let limits = Limits {
            requests: Some(10),
            ..Limits::default()
        };
        let observed = Observed {
            remaining_requests: Some(0),
            reset_requests: Some(Duration::from_secs(20)),
            ..Observed::default()
        };
        backend.calibrate(&a, limits, window, observed).await;
        assert!(
            backend
                .try_reserve(&a, limits, window, one())
                .await
                .is_err()
        );
    }
}
