//! What the simulator really did, served as `GET /stats`: counters since start and the
//! recorded emit times.
//!
//! The emit recorder is the ground truth that `bench`'s accuracy is measured against: the
//! stream body stamps each chunk when it hands it to the HTTP connection for writing, and
//! the recorder keeps HDR histograms of the actual TTFT and inter-token gaps and of how far
//! each emit was from the time the profile prescribed. Memory is fixed (histograms, not
//! samples) however long the simulator runs.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Counters for one model string.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Requests received.
    pub requests_total: u64,
    /// Responses by HTTP status (as a string key, e.g. `"429"`).
    pub responses_by_status: BTreeMap<String, u64>,
    /// Faults injected (error statuses, resets, stalls, truncations).
    pub faults_injected: u64,
    /// Input tokens of admitted requests.
    pub input_tokens_total: u64,
    /// Output tokens actually generated.
    pub output_tokens_total: u64,
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

/// The `/stats` document.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Always true: these figures come from a simulated provider.
    pub simulated: bool,
    /// Seconds since the simulator started.
    pub uptime_s: f64,
    /// Totals over every model.
    #[serde(flatten)]
    pub totals: Counters,
    /// The same counters per model string as the client sent it.
    pub by_model: BTreeMap<String, Counters>,
    /// Recorded emit times: actual TTFT (request received to first token written), actual
    /// gaps between consecutive tokens, and the distance of each from its prescribed time.
    pub emit: EmitSnapshot,
}

/// Emit-time percentiles.
#[derive(Debug, Clone, Serialize)]
pub struct EmitSnapshot {
    /// Actual time to first token, from request receipt to the first token's write.
    pub ttft: Percentiles,
    /// Actual gaps between consecutive tokens (a chunk of k tokens counts k-1 zero gaps).
    pub gap: Percentiles,
    /// |actual - prescribed| for the first token.
    pub ttft_error: Percentiles,
    /// |actual - prescribed| for every later token.
    pub gap_error: Percentiles,
}

struct Inner {
    totals: Counters,
    by_model: BTreeMap<String, Counters>,
    ttft: Histogram<u64>,
    gap: Histogram<u64>,
    ttft_error: Histogram<u64>,
    gap_error: Histogram<u64>,
}

/// The recorder. All methods take `&self`; a `Mutex` guards the state because every update
/// is a few integer additions, far cheaper than the socket write it accompanies.
pub struct Stats {
    started: std::time::Instant,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stats")
    }
}

#[expect(
    clippy::expect_used,
    reason = "constant bounds that hdrhistogram always accepts"
)]
fn histogram() -> Histogram<u64> {
    // Microseconds, 1 us to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |v: u64| if h.is_empty() { 0.0 } else { v as f64 / 1000.0 };
    Percentiles {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.5)),
        p90_ms: ms(h.value_at_quantile(0.9)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    /// A recorder with nothing recorded.
    pub fn new() -> Self {
        Stats {
            started: std::time::Instant::now(),
            inner: Mutex::new(Inner {
                totals: Counters::default(),
                by_model: BTreeMap::new(),
                ttft: histogram(),
                gap: histogram(),
                ttft_error: histogram(),
                gap_error: histogram(),
            }),
        }
    }

    fn with(&self, f: impl FnOnce(&mut Inner)) {
        // A poisoned lock only means another thread panicked mid-update of counters;
        // the counters are still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard);
    }

    fn both(inner: &mut Inner, model: Option<&str>, f: impl Fn(&mut Counters)) {
        f(&mut inner.totals);
        if let Some(m) = model {
            f(inner.by_model.entry(m.to_string()).or_default());
        }
    }

    /// Counts a request received on an API route.
    pub fn request(&self, model: Option<&str>) {
        self.with(|i| Self::both(i, model, |c| c.requests_total += 1));
    }

    /// Counts a response status.
    pub fn status(&self, model: Option<&str>, status: u16) {
        let key = status.to_string();
        self.with(|i| {
            Self::both(i, model, |c| {
                *c.responses_by_status.entry(key.clone()).or_default() += 1
            })
        });
    }

    /// Counts an injected fault.
    pub fn fault(&self, model: &str) {
        self.with(|i| Self::both(i, Some(model), |c| c.faults_injected += 1));
    }

    /// Adds the input tokens of an admitted request.
    pub fn input_tokens(&self, model: &str, n: u64) {
        self.with(|i| Self::both(i, Some(model), |c| c.input_tokens_total += n));
    }

    /// Adds generated output tokens.
    pub fn output_tokens(&self, model: &str, n: u64) {
        self.with(|i| Self::both(i, Some(model), |c| c.output_tokens_total += n));
    }

    /// Records the first token's emit: actual TTFT and its distance from the prescription.
    pub fn first_token(&self, actual: Duration, prescribed: Duration) {
        self.with(|i| {
            let _ = i.ttft.record(micros(actual));
            let _ = i.ttft_error.record(micros(actual.abs_diff(prescribed)));
        });
    }

    /// Records a later token's emit: the actual gap since the previous token, and the
    /// distance of its emit time from the prescribed one.
    pub fn later_token(&self, gap: Duration, error: Duration) {
        self.with(|i| {
            let _ = i.gap.record(micros(gap));
            let _ = i.gap_error.record(micros(error));
        });
    }

    /// The `/stats` document.
    pub fn snapshot(&self) -> Snapshot {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Snapshot {
            simulated: true,
            uptime_s: self.started.elapsed().as_secs_f64(),
            totals: guard.totals.clone(),
            by_model: guard.by_model.clone(),
            emit: EmitSnapshot {
                ttft: percentiles(&guard.ttft),
                gap: percentiles(&guard.gap),
                ttft_error: percentiles(&guard.ttft_error),
                gap_error: percentiles(&guard.gap_error),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_split_by_model() {
        let s = Stats::new();
        s.request(Some("a"));
        s.request(Some("b"));
        s.request(None);
        s.status(Some("a"), 200);
        s.status(Some("b"), 429);
        s.fault("b");
        s.input_tokens("a", 10);
        s.output_tokens("a", 5);
        let snap = s.snapshot();
        assert_eq!(snap.totals.requests_total, 3);
        assert_eq!(snap.by_model["a"].requests_total, 1);
        assert_eq!(snap.totals.responses_by_status["429"], 1);
        assert_eq!(snap.by_model["b"].faults_injected, 1);
        assert_eq!(snap.by_model["a"].input_tokens_total, 10);
        assert_eq!(snap.totals.output_tokens_total, 5);
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["requests_total"], 3, "totals are at the top level");
        assert_eq!(json["responses_by_status"]["200"], 1);
        assert_eq!(json["simulated"], true);
    }

    #[test]
    fn emit_percentiles() {
        let s = Stats::new();
        for ms in 1..=100u64 {
            s.first_token(Duration::from_millis(ms), Duration::from_millis(ms));
            s.later_token(Duration::from_millis(10), Duration::from_micros(ms * 10));
        }
        let e = s.snapshot().emit;
        assert_eq!(e.ttft.count, 100);
        assert!((e.ttft.p50_ms - 50.0).abs() < 0.1, "{}", e.ttft.p50_ms);
        assert!((e.gap.p99_ms - 10.0).abs() < 0.05);
        assert!(e.ttft_error.max_ms <= 0.002, "exact emits have ~zero error");
        assert!((e.gap_error.max_ms - 1.0).abs() < 0.01);
    }
}
