//! Arrival schedules: the intended send time of each request in an open-loop run.
//!
//! Times are offsets from the run's start on an absolute schedule (request i is due at
//! `offset(i)`, never "previous send + gap"), so a slow dispatch does not push every later
//! request back: the lag shows up as schedule lag instead of silently lowering the rate
//! (coordinated omission).

use std::time::Duration;

use sim::text::SplitMix64;

/// How inter-arrival gaps are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrivalKind {
    /// Evenly spaced: request i at i / rate.
    Constant,
    /// A Poisson process: exponential gaps with mean 1 / rate, seeded.
    Poisson,
}

/// An open-loop schedule at `rate` requests per second.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: ArrivalKind,
    rate: f64,
    rng: SplitMix64,
    index: u64,
    next: f64,
}

impl Schedule {
    /// A schedule; `rate` must be positive and finite (checked when the plan is resolved).
    pub fn new(kind: ArrivalKind, rate: f64, seed: u64) -> Self {
        Schedule {
            kind,
            rate,
            rng: SplitMix64::new(seed),
            index: 0,
            next: 0.0,
        }
    }

    /// The requests per second this schedule offers.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    /// The offset of the next request from the start of the run.
    fn next(&mut self) -> Option<Duration> {
        let at = match self.kind {
            ArrivalKind::Constant => self.index as f64 / self.rate,
            ArrivalKind::Poisson => {
                let at = self.next;
                // Inverse-CDF draw; 1 - u is in (0, 1] so the log is finite.
                let u = self.rng.next_f64();
                self.next += -(1.0 - u).ln() / self.rate;
                at
            }
        };
        self.index += 1;
        Some(Duration::from_secs_f64(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_evenly_spaced_on_an_absolute_grid() {
        let s: Vec<Duration> = Schedule::new(ArrivalKind::Constant, 4.0, 0)
            .take(5)
            .collect();
        assert_eq!(s, [0, 250, 500, 750, 1000].map(Duration::from_millis));
        // No drift after many requests.
        let last = Schedule::new(ArrivalKind::Constant, 1000.0, 0)
            .nth(100_000)
            .unwrap();
        assert_eq!(last, Duration::from_secs(100));
    }

    #[test]
    fn poisson_mean_rate_and_seeding() {
        let n = 20_000;
        let last = Schedule::new(ArrivalKind::Poisson, 100.0, 7)
            .nth(n)
            .unwrap();
        let achieved = n as f64 / last.as_secs_f64();
        assert!((achieved - 100.0).abs() < 3.0, "{achieved}");
        let a: Vec<_> = Schedule::new(ArrivalKind::Poisson, 10.0, 1)
            .take(10)
            .collect();
        let b: Vec<_> = Schedule::new(ArrivalKind::Poisson, 10.0, 1)
            .take(10)
            .collect();
        let c: Vec<_> = Schedule::new(ArrivalKind::Poisson, 10.0, 2)
            .take(10)
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn poisson_gaps_are_exponential() {
        // For an exponential distribution the coefficient of variation is 1.
        let offsets: Vec<f64> = Schedule::new(ArrivalKind::Poisson, 50.0, 3)
            .take(20_001)
            .map(|d| d.as_secs_f64())
            .collect();
        let gaps: Vec<f64> = offsets.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        let cv = var.sqrt() / mean;
        assert!((cv - 1.0).abs() < 0.05, "cv {cv}");
    }
}
