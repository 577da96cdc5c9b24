//! Comparing runs: hyperfine-style relative speed with propagated uncertainty
//! ([`relative`]) and percentile bootstrap confidence intervals for small samples
//! ([`bootstrap_ci`]), driven by a tiny seeded generator ([`SplitMix64`]).
//!
//! This module owns the arithmetic of a comparison; it leaves choosing the metric and the
//! wording of a report to the renderers. Everything is deterministic for a given seed, so
//! reports and tests are reproducible.

use std::fmt;
use std::time::Duration;

use crate::hist::Summary;

/// The ratio B ÷ A of two means and its standard deviation from first-order error
/// propagation: `σ_r = r · √((σ_A/A)² + (σ_B/B)²)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Relative {
    /// B ÷ A.
    pub ratio: f64,
    /// Propagated standard deviation of the ratio.
    pub ratio_stddev: f64,
}

/// The relative value of B against A from their means and standard deviations (any unit,
/// the same for both). A mean that is not positive, or a value that is not finite, gives a
/// result whose [`is_defined`](Relative::is_defined) is false (NaN or infinite fields).
pub fn relative(a_mean: f64, a_stddev: f64, b_mean: f64, b_stddev: f64) -> Relative {
    let valid = [a_mean, a_stddev, b_mean, b_stddev]
        .iter()
        .all(|v| v.is_finite())
        && a_mean > 0.0
        && b_mean > 0.0;
    if !valid {
        return Relative {
            ratio: f64::NAN,
            ratio_stddev: f64::NAN,
        };
    }
    let ratio = b_mean / a_mean;
    let ratio_stddev = ratio * ((a_stddev / a_mean).powi(2) + (b_stddev / b_mean).powi(2)).sqrt();
    Relative {
        ratio,
        ratio_stddev,
    }
}

/// [`relative`] on the means and standard deviations of two latency summaries.
pub fn relative_summaries(a: &Summary, b: &Summary) -> Relative {
    let s = |d: Duration| d.as_secs_f64();
    relative(s(a.mean), s(a.stddev), s(b.mean), s(b.stddev))
}

impl Relative {
    /// False when the inputs could not give a ratio (a mean ≤ 0 or a non-finite value).
    pub fn is_defined(&self) -> bool {
        self.ratio.is_finite() && self.ratio_stddev.is_finite()
    }

    /// The inverse comparison A ÷ B (σ of 1/r is σ_r / r²).
    pub fn inverse(&self) -> Relative {
        Relative {
            ratio: 1.0 / self.ratio,
            ratio_stddev: self.ratio_stddev / (self.ratio * self.ratio),
        }
    }

    /// For a latency (lower is better), how B compares with A, phrased as a factor ≥ 1:
    /// `"3.10 ± 0.20 × faster than"` when B is quicker, `"… slower than"` otherwise, and
    /// `"n/a"` when undefined.
    pub fn latency_phrase(&self) -> String {
        if !self.is_defined() {
            "n/a".to_string()
        } else if self.ratio < 1.0 {
            format!("{} × faster than", self.inverse())
        } else {
            format!("{self} × slower than")
        }
    }
}

impl fmt::Display for Relative {
    /// `"3.10 ± 0.20"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2} ± {:.2}", self.ratio, self.ratio_stddev)
    }
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a 64-bit state advanced by a fixed odd
/// constant and passed through a mixing function. Small, fast and good enough for
/// resampling; not for anything secret.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index in `0..n` (`n > 0`), without modulo bias (Lemire's multiply-shift
    /// with rejection).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let n = n.max(1);
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

/// Samples up to this size are where a bootstrap CI is worth reporting (the HDR summary
/// is tight beyond it, and each resample costs O(n)).
pub const BOOTSTRAP_MAX_N: usize = 1000;

/// Resamples used by [`bootstrap_ci`] callers that have no reason to choose.
pub const DEFAULT_RESAMPLES: u32 = 2000;

/// A point estimate with a confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfidenceInterval {
    /// The statistic on the original sample.
    pub estimate: Duration,
    /// Lower bound.
    pub low: Duration,
    /// Upper bound.
    pub high: Duration,
}

/// The nearest-rank quantile of a sorted slice: the element at rank `max(1, ceil(q·n))`.
/// The same rule as the HDR summaries, without bucketing. `None` when empty.
pub fn quantile_sorted(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// A percentile bootstrap confidence interval for quantile `q` (0.5 for p50, 0.99 for p99)
/// of `samples`: draw `resamples` samples of the same size with replacement, take each
/// one's nearest-rank quantile, and report the `(1 − confidence)/2` and
/// `(1 + confidence)/2` nearest-rank quantiles of those. Deterministic for a `seed`.
/// `None` for an empty sample, zero resamples, or `confidence` outside (0, 1).
pub fn bootstrap_ci(
    samples: &[Duration],
    q: f64,
    confidence: f64,
    resamples: u32,
    seed: u64,
) -> Option<ConfidenceInterval> {
    if samples.is_empty() || resamples == 0 || !(confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let estimate = quantile_sorted(&sorted, q)?;
    let n = sorted.len();
    let mut rng = SplitMix64::new(seed);
    let mut scratch = vec![Duration::ZERO; n];
    let mut stats = Vec::with_capacity(resamples as usize);
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    for _ in 0..resamples {
        for slot in scratch.iter_mut() {
            // Drawing from the sorted copy is equivalent and keeps memory to two copies.
            *slot = sorted[rng.below(n as u64) as usize];
        }
        let (_, nth, _) = scratch.select_nth_unstable(rank - 1);
        stats.push(*nth);
    }
    stats.sort_unstable();
    let tail = (1.0 - confidence) / 2.0;
    Some(ConfidenceInterval {
        estimate,
        low: quantile_sorted(&stats, tail)?,
        high: quantile_sorted(&stats, 1.0 - tail)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn splitmix_reference_values() {
        // First outputs for seed 0 (the published reference sequence).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut r = SplitMix64::new(42);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[r.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn relative_matches_hand_computation() {
        // A: 10 ± 1, B: 30 ± 3 → r = 3, σ = 3·√(0.01 + 0.01) = 0.4243.
        let r = relative(10.0, 1.0, 30.0, 3.0);
        assert!(r.is_defined());
        assert_eq!(r.ratio, 3.0);
        assert!((r.ratio_stddev - 0.424_264).abs() < 1e-6);
        assert_eq!(r.to_string(), "3.00 ± 0.42");
        assert_eq!(r.latency_phrase(), "3.00 ± 0.42 × slower than");
        let inv = relative(30.0, 3.0, 10.0, 1.0);
        assert_eq!(inv.latency_phrase(), "3.00 ± 0.42 × faster than");
        assert!(!relative(0.0, 1.0, 1.0, 1.0).is_defined());
        assert!(!relative(1.0, f64::NAN, 1.0, 1.0).is_defined());
        assert_eq!(relative(-1.0, 1.0, 1.0, 1.0).latency_phrase(), "n/a");
    }

    #[test]
    fn relative_of_summaries() {
        let mut a = crate::hist::LatencyHistogram::new();
        let mut b = crate::hist::LatencyHistogram::new();
        for v in [90, 100, 110] {
            a.record(ms(v));
            b.record(ms(v * 2));
        }
        let r = relative_summaries(&a.summary().unwrap(), &b.summary().unwrap());
        assert!((r.ratio - 2.0).abs() < 1e-9);
        // Same relative spread on both sides: σ_r = 2·√2·0.1.
        assert!(
            (r.ratio_stddev - 2.0 * 2f64.sqrt() * 0.1).abs() < 1e-6,
            "{r:?}"
        );
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<Duration> = (1..=10).map(ms).collect();
        assert_eq!(quantile_sorted(&v, 0.5), Some(ms(5)));
        assert_eq!(quantile_sorted(&v, 0.51), Some(ms(6)));
        assert_eq!(quantile_sorted(&v, 0.99), Some(ms(10)));
        assert_eq!(quantile_sorted(&v, 0.0), Some(ms(1)));
        assert_eq!(quantile_sorted(&[], 0.5), None);
    }

    #[test]
    fn bootstrap_brackets_the_median_and_is_deterministic() {
        let mut rng = SplitMix64::new(7);
        let v: Vec<Duration> = (0..200).map(|_| ms(100 + rng.below(50))).collect();
        let ci = bootstrap_ci(&v, 0.5, 0.95, 1000, 1).unwrap();
        assert!(ci.low <= ci.estimate && ci.estimate <= ci.high, "{ci:?}");
        assert!(ci.low >= ms(110) && ci.high <= ms(140), "{ci:?}");
        assert!(ci.high > ci.low);
        assert_eq!(bootstrap_ci(&v, 0.5, 0.95, 1000, 1), Some(ci));
        assert_ne!(bootstrap_ci(&v, 0.99, 0.95, 1000, 1), Some(ci));
        // A constant sample has a zero-width interval.
        let c = vec![ms(3); 20];
        let ci = bootstrap_ci(&c, 0.99, 0.9, 100, 5).unwrap();
        assert_eq!((ci.low, ci.estimate, ci.high), (ms(3), ms(3), ms(3)));
        assert_eq!(bootstrap_ci(&[], 0.5, 0.95, 10, 0), None);
        assert_eq!(bootstrap_ci(&c, 0.5, 1.0, 10, 0), None);
        assert_eq!(bootstrap_ci(&c, 0.5, 0.95, 0, 0), None);
    }

    proptest! {
        #[test]
        fn ci_stays_within_the_sample(v in prop::collection::vec(0u64..1_000_000, 1..80), seed in any::<u64>(), q in 0.0f64..=1.0) {
            let d: Vec<Duration> = v.iter().map(|&x| Duration::from_micros(x)).collect();
            let ci = bootstrap_ci(&d, q, 0.9, 50, seed).unwrap();
            let (lo, hi) = (d.iter().min().copied().unwrap(), d.iter().max().copied().unwrap());
            prop_assert!(lo <= ci.low && ci.low <= ci.high && ci.high <= hi);
        }

        #[test]
        fn inverse_round_trips(a in 0.001f64..1e6, b in 0.001f64..1e6, sa in 0.0f64..1e3, sb in 0.0f64..1e3) {
            let r = relative(a, sa, b, sb);
            let back = r.inverse().inverse();
            prop_assert!((back.ratio - r.ratio).abs() <= 1e-9 * r.ratio);
            prop_assert!((back.ratio_stddev - r.ratio_stddev).abs() <= 1e-9 * r.ratio_stddev.max(1e-300));
        }
    }
}
