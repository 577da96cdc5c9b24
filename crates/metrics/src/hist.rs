//! Constant-memory distributions: [`LatencyHistogram`] for durations (nanoseconds) and
//! [`ValueHistogram`] for dimensionless positive values (tokens/s, token counts), each with
//! a [`Summary`]-shaped digest.
//!
//! This module owns how a distribution is stored, merged and summarised; it leaves the
//! choice of *what* to record (which stamps, which requests) to the recorder and its callers.
//! Both histograms wrap an HDR histogram (`hdrhistogram`, 3 significant digits) and beside it
//! keep exact integer `n`, sum, sum of squares, min and max, so the mean, the standard
//! deviation and the extremes are exact while percentiles carry the HDR's ≤ 0.1 % relative
//! error. Memory grows with the *range* of recorded values, never with their number: the HDR
//! allocates nothing until the first sample and then resizes to the largest value seen, up to
//! the ceiling (1 hour for latencies); larger values are clamped to the ceiling and counted
//! as saturated.
//!
//! Percentile method (stated in docs/metrics.md): nearest rank. For quantile `q` over `n`
//! samples the rank is `max(1, ceil(q·n))`; the reported value is the upper edge of the HDR
//! bucket holding that rank, clamped into the exact `[min, max]`.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Significant decimal digits kept by every histogram in this crate.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// The largest latency a [`LatencyHistogram`] tracks; longer samples are clamped to it and
/// counted by [`LatencyHistogram::saturated`].
pub const MAX_LATENCY: Duration = Duration::from_secs(3600);
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// [`ValueHistogram`] stores values in thousandths, so 12.3456 tokens/s is kept as 12 346.
pub const VALUE_SCALE: u64 = 1000;

/// The largest value a [`ValueHistogram`] tracks (10^12 units); larger values saturate.
pub const MAX_VALUE: f64 = 1e12;
const MAX_VALUE_SCALED: u64 = 1_000_000_000_000_000;

/// The quantiles every summary reports, in the order of its fields p50..p999.
const SUMMARY_QUANTILES: [f64; 5] = [0.50, 0.90, 0.95, 0.99, 0.999];

/// The shared engine: an HDR histogram over integers plus exact moments.
#[derive(Clone, Debug)]
struct Core {
    /// Allocated on the first sample, so an unused histogram costs a few words.
    hist: Option<Histogram<u64>>,
    /// Values above this are clamped to it.
    ceiling: u64,
    n: u64,
    sum: u128,
    /// Saturates at `u128::MAX`; the standard deviation then falls back to floats.
    sum_sq: u128,
    min: u64,
    max: u64,
    saturated: u64,
    /// Samples the HDR refused (only if it could not resize; never expected).
    lost: u64,
}

/// The exact-and-approximate digest of a [`Core`], in its integer unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RawSummary {
    n: u64,
    mean: u64,
    stddev: u64,
    min: u64,
    quantiles: [u64; 5],
    max: u64,
}

impl Core {
    const fn new(ceiling: u64) -> Self {
        Core {
            hist: None,
            ceiling,
            n: 0,
            sum: 0,
            sum_sq: 0,
            min: u64::MAX,
            max: 0,
            saturated: 0,
            lost: 0,
        }
    }

    fn hist_mut(&mut self) -> Option<&mut Histogram<u64>> {
        if self.hist.is_none() {
            // Low 1 and 3 digits; `auto` lets it grow to the largest value seen, so memory
            // follows the range of the data (the ceiling is enforced by clamping, below).
            if let Ok(mut h) = Histogram::new_with_bounds(1, 2, SIGNIFICANT_DIGITS) {
                h.auto(true);
                self.hist = Some(h);
            }
        }
        self.hist.as_mut()
    }

    fn record_n(&mut self, value: u64, count: u64) {
        if count == 0 {
            return;
        }
        let value = if value > self.ceiling {
            self.saturated = self.saturated.saturating_add(count);
            self.ceiling
        } else {
            value
        };
        let stored = match self.hist_mut() {
            Some(h) => h.record_n(value, count).is_ok(),
            None => false,
        };
        if !stored {
            self.lost = self.lost.saturating_add(count);
            return;
        }
        self.n = self.n.saturating_add(count);
        let v = u128::from(value);
        let c = u128::from(count);
        self.sum = self.sum.saturating_add(v * c);
        self.sum_sq = self.sum_sq.saturating_add((v * v).saturating_mul(c));
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    fn merge(&mut self, other: &Core) {
        let Some(src) = other.hist.as_ref() else {
            self.lost = self.lost.saturating_add(other.lost);
            return;
        };
        let added = match self.hist_mut() {
            Some(h) => h.add(src).is_ok(),
            None => false,
        };
        if !added {
            self.lost = self.lost.saturating_add(other.n).saturating_add(other.lost);
            return;
        }
        self.n = self.n.saturating_add(other.n);
        self.sum = self.sum.saturating_add(other.sum);
        self.sum_sq = self.sum_sq.saturating_add(other.sum_sq);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.saturated = self.saturated.saturating_add(other.saturated);
        self.lost = self.lost.saturating_add(other.lost);
    }

    fn mean(&self) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let n = u128::from(self.n);
        // Rounded to nearest; the quotient is at most the ceiling, so it fits in u64.
        Some(u64::try_from((self.sum + n / 2) / n).unwrap_or(u64::MAX))
    }

    /// Sample standard deviation (divides by n − 1), 0 for a single sample.
    fn stddev(&self) -> u64 {
        if self.n < 2 {
            return 0;
        }
        let n = u128::from(self.n);
        // Var·n·(n−1) = n·Σx² − (Σx)², exact in integers while nothing overflows.
        let exact = if self.sum_sq == u128::MAX {
            None
        } else {
            n.checked_mul(self.sum_sq)
                .zip(self.sum.checked_mul(self.sum))
                .and_then(|(a, b)| a.checked_sub(b))
                .and_then(|num| num.checked_div(n * (n - 1)))
        };
        match exact {
            Some(var) => u64::try_from(var.isqrt()).unwrap_or(u64::MAX),
            None => {
                // Astronomical sample counts only: fall back to floats on the HDR's view.
                let sd = self.hist.as_ref().map_or(0.0, Histogram::stdev);
                let nf = self.n as f64;
                (sd * (nf / (nf - 1.0)).sqrt()).round() as u64
            }
        }
    }

    fn quantile(&self, q: f64) -> Option<u64> {
        let h = self.hist.as_ref()?;
        if self.n == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        Some(h.value_at_quantile(q).clamp(self.min, self.max))
    }

    fn raw_summary(&self) -> Option<RawSummary> {
        let mean = self.mean()?;
        let mut quantiles = [0; 5];
        for (slot, q) in quantiles.iter_mut().zip(SUMMARY_QUANTILES) {
            *slot = self.quantile(q)?;
        }
        Some(RawSummary {
            n: self.n,
            mean,
            stddev: self.stddev(),
            min: self.min,
            quantiles,
            max: self.max,
        })
    }
}

/// A latency distribution in nanoseconds from 1 ns to [`MAX_LATENCY`] with 3 significant
/// digits. Record into one per worker and [`merge`](Self::merge) them; memory does not grow
/// with the number of samples.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    core: Core,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram; it allocates nothing until the first sample.
    pub const fn new() -> Self {
        LatencyHistogram {
            core: Core::new(MAX_LATENCY_NS),
        }
    }

    /// Records one sample. Samples above [`MAX_LATENCY`] are stored as the maximum and
    /// counted as saturated.
    pub fn record(&mut self, d: Duration) {
        self.record_n(d, 1);
    }

    /// Records `count` samples of the same duration.
    pub fn record_n(&mut self, d: Duration, count: u64) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.core.record_n(ns, count);
    }

    /// Adds every sample of `other` to this histogram.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        self.core.merge(&other.core);
    }

    /// Number of samples recorded (saturated ones included).
    pub fn len(&self) -> u64 {
        self.core.n
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.core.n == 0
    }

    /// Number of samples that exceeded [`MAX_LATENCY`] and were clamped to it.
    pub fn saturated(&self) -> u64 {
        self.core.saturated
    }

    /// The exact arithmetic mean, `None` when empty.
    pub fn mean(&self) -> Option<Duration> {
        self.core.mean().map(Duration::from_nanos)
    }

    /// The value at quantile `q` (0..=1) by the nearest-rank method described in the module
    /// docs; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        self.core.quantile(q).map(Duration::from_nanos)
    }

    /// The full digest, `None` when empty (a report prints `n/a`, never 0).
    pub fn summary(&self) -> Option<Summary> {
        let r = self.core.raw_summary()?;
        let d = Duration::from_nanos;
        let [p50, p90, p95, p99, p999] = r.quantiles.map(d);
        Some(Summary {
            n: r.n,
            mean: d(r.mean),
            stddev: d(r.stddev),
            min: d(r.min),
            p50,
            p90,
            p95,
            p99,
            p999,
            max: d(r.max),
        })
    }
}

/// The digest of a latency distribution. `mean`, `stddev` (sample, n − 1), `min` and `max`
/// are exact; the percentiles are HDR nearest-rank values (≤ 0.1 % relative error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Number of samples.
    pub n: u64,
    /// Arithmetic mean.
    pub mean: Duration,
    /// Sample standard deviation (divides by n − 1; 0 when n = 1).
    pub stddev: Duration,
    /// Smallest sample.
    pub min: Duration,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Largest sample.
    pub max: Duration,
}

impl Summary {
    /// The same digest in floating-point milliseconds, for printing and JSON.
    pub fn ms(&self) -> SummaryMs {
        let ms = |d: Duration| d.as_nanos() as f64 / 1e6;
        SummaryMs {
            n: self.n,
            mean: ms(self.mean),
            stddev: ms(self.stddev),
            min: ms(self.min),
            p50: ms(self.p50),
            p90: ms(self.p90),
            p95: ms(self.p95),
            p99: ms(self.p99),
            p999: ms(self.p999),
            max: ms(self.max),
        }
    }
}

/// A [`Summary`] in milliseconds: the shape of a report's `ttft_ms: {n, mean, ...}` field.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryMs {
    /// Number of samples.
    pub n: u64,
    /// Arithmetic mean, ms.
    pub mean: f64,
    /// Sample standard deviation, ms.
    pub stddev: f64,
    /// Smallest sample, ms.
    pub min: f64,
    /// Median, ms.
    pub p50: f64,
    /// 90th percentile, ms.
    pub p90: f64,
    /// 95th percentile, ms.
    pub p95: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// 99.9th percentile, ms.
    pub p999: f64,
    /// Largest sample, ms.
    pub max: f64,
}

/// A distribution of dimensionless non-negative values (tokens/s, token counts), stored in
/// thousandths ([`VALUE_SCALE`]) up to [`MAX_VALUE`], with constant memory.
#[derive(Clone, Debug)]
pub struct ValueHistogram {
    core: Core,
    /// NaN, infinite or negative inputs, which are not recorded.
    rejected: u64,
}

impl Default for ValueHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl ValueHistogram {
    /// An empty histogram; it allocates nothing until the first sample.
    pub const fn new() -> Self {
        ValueHistogram {
            core: Core::new(MAX_VALUE_SCALED),
            rejected: 0,
        }
    }

    /// Records a value, rounded to the nearest thousandth. NaN, infinite and negative values
    /// are not recorded but counted by [`rejected`](Self::rejected).
    pub fn record(&mut self, value: f64) {
        if !value.is_finite() || value < 0.0 {
            self.rejected = self.rejected.saturating_add(1);
            return;
        }
        // `as` saturates; the core clamps anything above the ceiling.
        let scaled = (value * VALUE_SCALE as f64).round() as u64;
        self.core.record_n(scaled, 1);
    }

    /// Records an integer value (a token count) exactly.
    pub fn record_count(&mut self, value: u64) {
        self.core.record_n(value.saturating_mul(VALUE_SCALE), 1);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &ValueHistogram) {
        self.core.merge(&other.core);
        self.rejected = self.rejected.saturating_add(other.rejected);
    }

    /// Number of samples recorded.
    pub fn len(&self) -> u64 {
        self.core.n
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.core.n == 0
    }

    /// Number of samples above [`MAX_VALUE`], clamped to it.
    pub fn saturated(&self) -> u64 {
        self.core.saturated
    }

    /// Number of inputs refused because they were NaN, infinite or negative.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Exact sum of the recorded (rounded) values.
    pub fn sum(&self) -> f64 {
        self.core.sum as f64 / VALUE_SCALE as f64
    }

    /// The value at quantile `q` (nearest rank); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.core.quantile(q).map(unscale)
    }

    /// The full digest, `None` when empty.
    pub fn summary(&self) -> Option<ValueSummary> {
        let r = self.core.raw_summary()?;
        let [p50, p90, p95, p99, p999] = r.quantiles.map(unscale);
        Some(ValueSummary {
            n: r.n,
            // From the exact sum rather than the rounded integer mean.
            mean: self.core.sum as f64 / r.n as f64 / VALUE_SCALE as f64,
            stddev: unscale(r.stddev),
            min: unscale(r.min),
            p50,
            p90,
            p95,
            p99,
            p999,
            max: unscale(r.max),
        })
    }
}

fn unscale(v: u64) -> f64 {
    v as f64 / VALUE_SCALE as f64
}

/// The digest of a [`ValueHistogram`], in the recorded unit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValueSummary {
    /// Number of samples.
    pub n: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1).
    pub stddev: f64,
    /// Smallest sample.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn empty_has_no_summary() {
        let h = LatencyHistogram::new();
        assert!(h.is_empty());
        assert_eq!(h.len(), 0);
        assert_eq!(h.summary(), None);
        assert_eq!(h.quantile(0.5), None);
        assert!(ValueHistogram::new().summary().is_none());
    }

    #[test]
    fn one_to_hundred_ms() {
        let mut h = LatencyHistogram::new();
        for i in 1..=100 {
            h.record(ms(i));
        }
        let s = h.summary().unwrap();
        assert_eq!(s.n, 100);
        assert_eq!(s.min, ms(1));
        assert_eq!(s.max, ms(100));
        // Exact mean 50.5 ms.
        assert_eq!(s.mean, Duration::from_micros(50_500));
        // Sample stddev of 1..=100 is sqrt(841.666..) = 29.0115 ms.
        let sd = s.stddev.as_secs_f64() * 1e3;
        assert!((sd - 29.011_491).abs() < 1e-3, "{sd}");
        // Nearest rank: p50 = 50th value, p90 = 90th, p99 = 99th, p999 = 100th; within 0.1 %.
        for (got, want) in [
            (s.p50, 50),
            (s.p90, 90),
            (s.p95, 95),
            (s.p99, 99),
            (s.p999, 100),
        ] {
            let rel =
                (got.as_nanos() as f64 - ms(want).as_nanos() as f64) / ms(want).as_nanos() as f64;
            assert!((0.0..=0.001).contains(&rel), "{got:?} vs {want} ms");
        }
    }

    #[test]
    fn percentiles_never_leave_min_max() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_nanos(1_000_001));
        let s = h.summary().unwrap();
        // The HDR bucket's upper edge is above the value; clamping keeps p99 = max.
        assert_eq!(s.p99, Duration::from_nanos(1_000_001));
        assert_eq!(s.stddev, Duration::ZERO);
    }

    #[test]
    fn saturates_above_one_hour() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_secs(7200));
        h.record(ms(5));
        assert_eq!(h.saturated(), 1);
        assert_eq!(h.len(), 2);
        assert_eq!(h.summary().unwrap().max, MAX_LATENCY);
    }

    #[test]
    fn zero_duration_is_recorded() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::ZERO);
        let s = h.summary().unwrap();
        assert_eq!((s.n, s.min, s.max), (1, Duration::ZERO, Duration::ZERO));
    }

    #[test]
    fn record_n_equals_repeated_record() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        a.record_n(ms(7), 5);
        a.record_n(ms(9), 0);
        for _ in 0..5 {
            b.record(ms(7));
        }
        assert_eq!(a.summary(), b.summary());
    }

    #[test]
    fn summary_ms_json_keys() {
        let mut h = LatencyHistogram::new();
        h.record(ms(2));
        h.record(ms(4));
        let j = serde_json::to_value(h.summary().unwrap().ms()).unwrap();
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "n", "mean", "stddev", "min", "p50", "p90", "p95", "p99", "p999", "max"
            ]
        );
        assert_eq!(j["mean"], 3.0);
        assert_eq!(j["n"], 2);
    }

    #[test]
    fn value_histogram_scales_and_rejects() {
        let mut v = ValueHistogram::new();
        v.record(12.3456);
        v.record(f64::NAN);
        v.record(-1.0);
        v.record(f64::INFINITY);
        v.record_count(40);
        assert_eq!(v.len(), 2);
        assert_eq!(v.rejected(), 3);
        let s = v.summary().unwrap();
        assert_eq!(s.min, 12.346);
        assert_eq!(s.max, 40.0);
        assert!((s.mean - 26.173).abs() < 1e-9);
        v.record(1e13);
        assert_eq!(v.saturated(), 1);
        assert_eq!(v.summary().unwrap().max, MAX_VALUE);
    }

    #[test]
    fn merge_of_empty_is_identity() {
        let mut a = LatencyHistogram::new();
        a.record(ms(3));
        let before = a.summary();
        a.merge(&LatencyHistogram::new());
        assert_eq!(a.summary(), before);
        let mut e = LatencyHistogram::new();
        e.merge(&a);
        assert_eq!(e.summary(), before);
    }

    fn durations() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(0u64..5_000_000_000_000, 0..60)
    }

    fn hist_of(v: &[u64]) -> LatencyHistogram {
        let mut h = LatencyHistogram::new();
        for &ns in v {
            h.record(Duration::from_nanos(ns));
        }
        h
    }

    proptest! {
        #[test]
        fn merge_is_associative_and_commutative(a in durations(), b in durations(), c in durations()) {
            let (ha, hb, hc) = (hist_of(&a), hist_of(&b), hist_of(&c));
            let mut left = ha.clone();
            left.merge(&hb);
            left.merge(&hc);
            let mut bc = hb.clone();
            bc.merge(&hc);
            let mut right = ha.clone();
            right.merge(&bc);
            let mut swapped = hc.clone();
            swapped.merge(&hb);
            swapped.merge(&ha);
            prop_assert_eq!(left.summary(), right.summary());
            prop_assert_eq!(left.summary(), swapped.summary());
            prop_assert_eq!(left.saturated(), swapped.saturated());
            // Merging equals recording everything into one histogram.
            let all: Vec<u64> = a.iter().chain(&b).chain(&c).copied().collect();
            prop_assert_eq!(left.summary(), hist_of(&all).summary());
        }

        #[test]
        fn summary_is_ordered_and_close(v in prop::collection::vec(1u64..3_600_000_000_000, 1..200)) {
            let s = hist_of(&v).summary().unwrap();
            let chain = [s.min, s.p50, s.p90, s.p95, s.p99, s.p999, s.max];
            prop_assert!(chain.windows(2).all(|w| w[0] <= w[1]), "{:?}", chain);
            prop_assert!(s.min <= s.mean && s.mean <= s.max);
            let mut sorted = v.clone();
            sorted.sort_unstable();
            prop_assert_eq!(s.min.as_nanos(), u128::from(sorted[0]));
            prop_assert_eq!(s.max.as_nanos(), u128::from(sorted[sorted.len() - 1]));
            // Nearest rank within the HDR's relative error.
            let exact = sorted[(v.len().div_ceil(2)).max(1) - 1] as f64;
            let got = s.p50.as_nanos() as f64;
            prop_assert!((got - exact).abs() <= exact * 0.001 + 1.0, "{} vs {}", got, exact);
        }

        #[test]
        fn quantile_is_monotone(v in prop::collection::vec(0u64..10_000_000_000, 1..100), q1 in 0.0f64..1.0, q2 in 0.0f64..1.0) {
            let h = hist_of(&v);
            let (lo, hi) = if q1 <= q2 { (q1, q2) } else { (q2, q1) };
            prop_assert!(h.quantile(lo).unwrap() <= h.quantile(hi).unwrap());
        }

        #[test]
        fn exact_mean_and_stddev(v in prop::collection::vec(0u64..100_000_000_000, 2..100)) {
            let s = hist_of(&v).summary().unwrap();
            let n = v.len() as f64;
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
            let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
            prop_assert!((s.mean.as_nanos() as f64 - mean).abs() <= 1.0);
            let sd = s.stddev.as_nanos() as f64;
            prop_assert!((sd - var.sqrt()).abs() <= 2.0 + var.sqrt() * 1e-9, "{} vs {}", sd, var.sqrt());
        }
    }
}
