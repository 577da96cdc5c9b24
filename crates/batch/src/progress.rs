//! Live counters of a run, for a progress display. The writer bumps them once per line it
//! commits (never per token, never on the request path's hot loop); a display reads a
//! [`Snapshot`] at its own rate (STYLE habit 7).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::checkpoint::DoneCounts;

/// The counters. Shared as `Arc<Progress>`.
#[derive(Debug, Default)]
pub struct Progress {
    started: OnceLock<Instant>,
    total: AtomicU64,
    already_succeeded: AtomicU64,
    already_failed: AtomicU64,
    done: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    cached: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    spent_nano_usd: AtomicU64,
    in_flight: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// Request lines in the input.
    pub total: u64,
    /// Lines whose result was recorded before this run.
    pub already_done: u64,
    /// Of those, lines in the output file (answered 2xx).
    pub already_succeeded: u64,
    /// Of those, lines in the error file.
    pub already_failed: u64,
    /// Lines recorded in this run.
    pub done: u64,
    /// Of those, answered 2xx.
    pub succeeded: u64,
    /// Of those, error lines (invalid lines included).
    pub failed: u64,
    /// Of the succeeded, served from the cache.
    pub cached: u64,
    /// Input tokens of the succeeded lines.
    pub input_tokens: u64,
    /// Output tokens of the succeeded lines.
    pub output_tokens: u64,
    /// Actual spend so far (cache hits and coalesced lines cost nothing).
    pub spent_usd: f64,
    /// Requests in flight.
    pub in_flight: u64,
    /// Time since sending started (zero before).
    pub elapsed: Duration,
}

impl Snapshot {
    /// Lines recorded per second in this run.
    pub fn lines_per_s(&self) -> f64 {
        per_s(self.done, self.elapsed)
    }

    /// Tokens (in and out) per second in this run.
    pub fn tokens_per_s(&self) -> f64 {
        per_s(self.input_tokens + self.output_tokens, self.elapsed)
    }

    /// Time left at this run's rate, once there is one.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.lines_per_s();
        let left = self.total.saturating_sub(self.already_done + self.done);
        (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate))
    }
}

fn per_s(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

/// What the writer adds for one committed line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LineDone {
    pub(crate) succeeded: bool,
    pub(crate) cached: bool,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) spent_pico_usd: u128,
}

impl Progress {
    /// Fresh counters.
    pub fn new() -> Progress {
        Progress::default()
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (already_succeeded, already_failed) =
            (get(&self.already_succeeded), get(&self.already_failed));
        Snapshot {
            total: get(&self.total),
            already_done: already_succeeded + already_failed,
            already_succeeded,
            already_failed,
            done: get(&self.done),
            succeeded: get(&self.succeeded),
            failed: get(&self.failed),
            cached: get(&self.cached),
            input_tokens: get(&self.input_tokens),
            output_tokens: get(&self.output_tokens),
            spent_usd: get(&self.spent_nano_usd) as f64 / 1e9,
            in_flight: get(&self.in_flight),
            elapsed: self.started.get().map_or(Duration::ZERO, Instant::elapsed),
        }
    }

    pub(crate) fn start(&self, total: u64, already: DoneCounts) {
        self.total.store(total, Ordering::Relaxed);
        self.already_succeeded
            .store(already.output, Ordering::Relaxed);
        self.already_failed.store(already.errors, Ordering::Relaxed);
        let _ = self.started.set(Instant::now());
    }

    pub(crate) fn sent(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn answered(&self) {
        // Saturating: a display must never see a wrapped count.
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    pub(crate) fn record(&self, line: &LineDone) {
        let add = |a: &AtomicU64, n: u64| {
            a.fetch_add(n, Ordering::Relaxed);
        };
        add(&self.done, 1);
        if line.succeeded {
            add(&self.succeeded, 1);
        } else {
            add(&self.failed, 1);
        }
        add(&self.cached, u64::from(line.cached));
        add(&self.input_tokens, line.input_tokens);
        add(&self.output_tokens, line.output_tokens);
        add(
            &self.spent_nano_usd,
            u64::try_from(line.spent_pico_usd / 1000).unwrap_or(u64::MAX),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_follows_this_runs_rate() {
        let s = Snapshot {
            total: 100,
            already_done: 50,
            already_succeeded: 40,
            already_failed: 10,
            done: 10,
            succeeded: 10,
            failed: 0,
            cached: 0,
            input_tokens: 0,
            output_tokens: 0,
            spent_usd: 0.0,
            in_flight: 0,
            elapsed: Duration::from_secs(2),
        };
        assert_eq!(s.lines_per_s(), 5.0);
        assert_eq!(s.eta(), Some(Duration::from_secs(8)));
    }
}
