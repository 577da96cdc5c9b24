//! Rates over time: [`ThroughputTracker`] (requests, output and total tokens per second in
//! 1-second buckets, the steady and full-run [`Window`]s), [`InFlightTracker`] (achieved
//! concurrency) and the Little's-law check.
//!
//! This module owns the windowing rules and the bucket arithmetic; memory grows with the
//! run's length in seconds, never with the number of requests. It leaves clocks to its
//! callers: every time is a [`Duration`] offset from the run's start, and the bench engine
//! decides which requests are measured (warm-up requests are simply never booked here).
//!
//! Bucket `k` covers `[k s, (k+1) s)`. A query over a window counts whole buckets exactly
//! and pro-rates the two edge buckets by their overlap, assuming bookings are spread evenly
//! inside a second (narrowed to the booked span in the run's first and last buckets; see
//! [`ThroughputTracker::rates`]). This is the only approximation; it shrinks as the window
//! grows.

use std::time::Duration;

const SECOND_NS: u64 = 1_000_000_000;

/// Offsets beyond this (a week) are clamped into the last bucket, which bounds memory at
/// 604 800 buckets whatever a caller passes.
pub const MAX_TRACKED: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_BUCKETS: usize = 7 * 24 * 3600;

/// A steady window shorter than this falls back to the full-run window.
pub const MIN_STEADY_WINDOW: Duration = Duration::from_secs(2);

/// Output tokens are booked in thousandths so spreading them over seconds stays integral.
const MILLI: u128 = 1000;

/// A span of the run, as offsets from its start. `end < start` is treated as empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Offset of the first instant in the window.
    pub start: Duration,
    /// Offset of the last instant in the window.
    pub end: Duration,
}

impl Window {
    /// A window from `start` to `end`.
    pub const fn new(start: Duration, end: Duration) -> Self {
        Window { start, end }
    }

    /// Its length (zero when `end <= start`).
    pub fn len(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    /// True when the window has no length.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// How much of second-bucket `k` lies in the window, in ns.
    fn overlap_ns(&self, k: usize) -> u64 {
        let b0 = k as u64 * SECOND_NS;
        let b1 = b0 + SECOND_NS;
        let s = ns(self.start);
        let e = ns(self.end);
        e.min(b1).saturating_sub(s.max(b0))
    }

    /// The bucket indexes that overlap the window.
    fn buckets(&self) -> std::ops::Range<usize> {
        if self.is_empty() {
            return 0..0;
        }
        let first = bucket(self.start);
        // The bucket holding the last nanosecond inside the window.
        let last = bucket(self.end.saturating_sub(Duration::from_nanos(1)));
        first..last + 1
    }
}

/// Which window a headline figure used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// From the first measured completion to the last dispatch.
    Steady,
    /// From the first dispatch to the last end.
    FullRun,
}

impl WindowKind {
    /// `"steady"` or `"full_run"`.
    pub const fn label(self) -> &'static str {
        match self {
            WindowKind::Steady => "steady",
            WindowKind::FullRun => "full_run",
        }
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn bucket(d: Duration) -> usize {
    usize::try_from(ns(d) / SECOND_NS).map_or(MAX_BUCKETS - 1, |b| b.min(MAX_BUCKETS - 1))
}

fn clamp_time(d: Duration) -> Duration {
    d.min(MAX_TRACKED)
}

fn grow<T: Default + Clone>(v: &mut Vec<T>, k: usize) {
    if v.len() <= k {
        v.resize(k + 1, T::default());
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bucket {
    completions: u64,
    output_milli: u64,
    input: u64,
}

/// One successful request, as the throughput tracker needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Offset of `t_end`.
    pub end: Duration,
    /// Offsets of the first and last token-bearing events, when the request streamed.
    /// Output tokens are spread evenly over this span; without it they are booked at `end`.
    pub token_span: Option<(Duration, Duration)>,
    /// Input tokens, booked at `end`.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
}

/// Rates over one window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    /// The window measured.
    pub window: Window,
    /// Successful completions in the window (edge buckets pro-rated).
    pub requests: f64,
    /// Output tokens generated in the window.
    pub output_tokens: f64,
    /// Input tokens of requests completed in the window.
    pub input_tokens: f64,
    /// `requests ÷ window`.
    pub requests_per_s: f64,
    /// `output_tokens ÷ window`.
    pub output_tokens_per_s: f64,
    /// `(input_tokens + output_tokens) ÷ window`.
    pub total_tokens_per_s: f64,
}

/// The distribution of per-second output token throughput over whole seconds of a window
/// (each second weighs the same, so it is time-weighted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PerSecond {
    /// Whole seconds considered.
    pub seconds: u64,
    /// Median second, tokens/s (nearest rank).
    pub p50: f64,
    /// 99th-percentile second, tokens/s (nearest rank).
    pub p99: f64,
    /// The busiest second, tokens/s.
    pub peak: f64,
}

/// Books completed requests into 1-second buckets and answers rate questions over windows.
/// Give it measured requests only: warm-up requests are not booked at all.
#[derive(Clone, Debug, Default)]
pub struct ThroughputTracker {
    buckets: Vec<Bucket>,
    first_dispatch: Option<Duration>,
    last_dispatch: Option<Duration>,
    first_completion: Option<Duration>,
    last_end: Option<Duration>,
    /// Earliest and latest instants output tokens were booked at.
    first_output: Option<Duration>,
    last_output: Option<Duration>,
}

/// The fraction of bucket `k`'s bookings that falls in `window`, given that the bookings
/// lie in `occupied` (the run-wide earliest and latest booking times).
fn share(k: usize, window: Window, occupied: (Option<Duration>, Option<Duration>)) -> f64 {
    let b0 = k as u64 * SECOND_NS;
    let b1 = b0 + SECOND_NS;
    let lo = occupied.0.map_or(b0, |t| ns(t).max(b0));
    let hi = occupied.1.map_or(b1, |t| ns(t).min(b1));
    let (s, e) = (ns(window.start), ns(window.end));
    match hi.cmp(&lo) {
        std::cmp::Ordering::Less => 0.0,
        // Everything sits at one instant: all in or all out.
        std::cmp::Ordering::Equal => {
            if (s..=e).contains(&lo) {
                1.0
            } else {
                0.0
            }
        }
        std::cmp::Ordering::Greater => {
            let overlap = e.min(hi).saturating_sub(s.max(lo));
            overlap as f64 / (hi - lo) as f64
        }
    }
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn max_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl ThroughputTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes a measured request's dispatch (successful or not).
    pub fn dispatched(&mut self, at: Duration) {
        let at = clamp_time(at);
        self.first_dispatch = min_opt(self.first_dispatch, Some(at));
        self.last_dispatch = max_opt(self.last_dispatch, Some(at));
    }

    /// Notes the end of a measured request that failed or was cancelled: it stretches the
    /// full-run window but books nothing.
    pub fn ended_without_success(&mut self, at: Duration) {
        self.last_end = max_opt(self.last_end, Some(clamp_time(at)));
    }

    /// Books a successful request: one completion and its input tokens at `end`, its output
    /// tokens spread evenly over its token span.
    pub fn book(&mut self, c: &Completion) {
        let end = clamp_time(c.end);
        self.first_completion = min_opt(self.first_completion, Some(end));
        self.last_end = max_opt(self.last_end, Some(end));
        let k = bucket(end);
        grow(&mut self.buckets, k);
        let b = &mut self.buckets[k];
        b.completions = b.completions.saturating_add(1);
        b.input = b.input.saturating_add(c.input_tokens);
        let total = u128::from(c.output_tokens) * MILLI;
        let (from, to) = match c.token_span {
            Some((a, z)) => (clamp_time(a).min(clamp_time(z)), clamp_time(z)),
            None => (end, end),
        };
        self.first_output = min_opt(self.first_output, Some(from));
        self.last_output = max_opt(self.last_output, Some(to));
        match c.token_span {
            Some((a, z)) if clamp_time(z) > clamp_time(a) => {
                self.spread(clamp_time(a), clamp_time(z), total);
            }
            Some((_, z)) => self.add_output(bucket(clamp_time(z)), total),
            None => self.add_output(k, total),
        }
    }

    fn add_output(&mut self, k: usize, milli: u128) {
        grow(&mut self.buckets, k);
        let b = &mut self.buckets[k];
        b.output_milli = b
            .output_milli
            .saturating_add(u64::try_from(milli).unwrap_or(u64::MAX));
    }

    /// Spreads `total` thousandths of a token evenly over `[a, z)` (z > a). Each bucket gets
    /// the difference of a floored cumulative share, so the parts add up to `total` exactly.
    fn spread(&mut self, a: Duration, z: Duration, total: u128) {
        let (a_ns, z_ns) = (u128::from(ns(a)), u128::from(ns(z)));
        let span = z_ns - a_ns;
        let cum = |t: u128| total * (t - a_ns) / span;
        let w = Window::new(a, z);
        for k in w.buckets() {
            let b0 = (k as u128 * u128::from(SECOND_NS)).max(a_ns);
            let b1 = ((k as u128 + 1) * u128::from(SECOND_NS)).min(z_ns);
            self.add_output(k, cum(b1) - cum(b0));
        }
    }

    /// Adds another tracker's bookings and anchors (a worker's, for example).
    pub fn merge(&mut self, other: &ThroughputTracker) {
        if other.buckets.len() > self.buckets.len() {
            self.buckets.resize(other.buckets.len(), Bucket::default());
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            a.completions = a.completions.saturating_add(b.completions);
            a.output_milli = a.output_milli.saturating_add(b.output_milli);
            a.input = a.input.saturating_add(b.input);
        }
        self.first_dispatch = min_opt(self.first_dispatch, other.first_dispatch);
        self.last_dispatch = max_opt(self.last_dispatch, other.last_dispatch);
        self.first_completion = min_opt(self.first_completion, other.first_completion);
        self.last_end = max_opt(self.last_end, other.last_end);
        self.first_output = min_opt(self.first_output, other.first_output);
        self.last_output = max_opt(self.last_output, other.last_output);
    }

    /// First dispatch → last end of the measured requests (what AIPerf, vLLM and GenAI-Perf
    /// call the benchmark duration). `None` before anything ended.
    pub fn full_window(&self) -> Option<Window> {
        let w = Window::new(self.first_dispatch?, self.last_end?);
        (!w.is_empty()).then_some(w)
    }

    /// The steady window: from the first successful completion of a measured request (the
    /// pipeline is full; warm-up requests were never booked) to the last dispatch (after it
    /// the load only drains). `None` when that is shorter than [`MIN_STEADY_WINDOW`].
    pub fn steady_window(&self) -> Option<Window> {
        let w = Window::new(self.first_completion?, self.last_dispatch?);
        (w.len() >= MIN_STEADY_WINDOW).then_some(w)
    }

    /// The window headline rates use: steady when long enough, else the full run.
    pub fn headline_window(&self) -> Option<(Window, WindowKind)> {
        match self.steady_window() {
            Some(w) => Some((w, WindowKind::Steady)),
            None => self.full_window().map(|w| (w, WindowKind::FullRun)),
        }
    }

    /// Rates over `window`; `None` when it is empty.
    ///
    /// A bucket's bookings are assumed spread evenly over the part of its second where they
    /// can lie: the whole second inside the run, but only from the earliest (to the latest)
    /// booked time in the run's first (last) bucket. So the full-run window counts every
    /// booking exactly, and the steady window, which opens at the first completion, counts
    /// all of that completion's bucket.
    pub fn rates(&self, window: Window) -> Option<Rates> {
        if window.is_empty() {
            return None;
        }
        let completed = (self.first_completion, self.last_end);
        let produced = (self.first_output, self.last_output);
        let (mut req, mut out, mut inp) = (0f64, 0f64, 0f64);
        for k in bucket(window.start)..=bucket(window.end) {
            let Some(b) = self.buckets.get(k) else { break };
            let at_end = share(k, window, completed);
            req += b.completions as f64 * at_end;
            inp += b.input as f64 * at_end;
            out += b.output_milli as f64 / MILLI as f64 * share(k, window, produced);
        }
        let len = window.len().as_secs_f64();
        Some(Rates {
            window,
            requests: req,
            output_tokens: out,
            input_tokens: inp,
            requests_per_s: req / len,
            output_tokens_per_s: out / len,
            total_tokens_per_s: (inp + out) / len,
        })
    }

    /// Per-second output throughput over the seconds lying wholly inside `window`; `None`
    /// when there is no whole second.
    pub fn per_second_output(&self, window: Window) -> Option<PerSecond> {
        let mut per: Vec<u64> = window
            .buckets()
            .filter(|&k| window.overlap_ns(k) == SECOND_NS)
            .map(|k| self.buckets.get(k).map_or(0, |b| b.output_milli))
            .collect();
        if per.is_empty() {
            return None;
        }
        per.sort_unstable();
        let pick = |q: f64| {
            let rank = ((q * per.len() as f64).ceil() as usize).clamp(1, per.len());
            per[rank - 1] as f64 / MILLI as f64
        };
        Some(PerSecond {
            seconds: per.len() as u64,
            p50: pick(0.5),
            p99: pick(0.99),
            peak: per[per.len() - 1] as f64 / MILLI as f64,
        })
    }
}

/// Achieved concurrency: the time-weighted mean number of requests in flight, from dispatch
/// and end events in any order, in memory bounded by the run's length in seconds.
///
/// A dispatch at `t` adds one request from `t` on; an end removes one. Per bucket it keeps
/// the in-bucket part of each event and the net count change carried to later buckets, so
/// the busy time of bucket `k` is its own part plus one second per request carried in.
#[derive(Clone, Debug, Default)]
pub struct InFlightTracker {
    /// Σ ±(bucket end − t) over events in the bucket, ns.
    partial_ns: Vec<i128>,
    /// Σ ±1 over events in the bucket.
    net: Vec<i64>,
    /// Σ (end − dispatch) over every span, ns: exact busy time for windows that cover the
    /// whole run (the buckets alone would spread a short run over a whole second).
    busy_ns: i128,
    /// Earliest and latest event.
    extent: Option<(Duration, Duration)>,
    /// True when only whole spans were recorded (busy_ns is then exact).
    spans_only: bool,
}

impl InFlightTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    fn event(&mut self, at: Duration, sign: i64) {
        let at = clamp_time(at);
        self.extent = Some(match self.extent {
            Some((lo, hi)) => (lo.min(at), hi.max(at)),
            None => (at, at),
        });
        let k = bucket(at);
        grow(&mut self.partial_ns, k);
        grow(&mut self.net, k);
        let rest = (k as u64 + 1) * SECOND_NS - ns(at).min((k as u64 + 1) * SECOND_NS);
        self.partial_ns[k] += i128::from(sign) * i128::from(rest);
        self.net[k] += sign;
    }

    /// A request entered flight at `at`.
    pub fn dispatch(&mut self, at: Duration) {
        self.spans_only = false;
        self.event(at, 1);
    }

    /// A request left flight at `at` (success, failure or cancellation alike).
    pub fn end(&mut self, at: Duration) {
        self.spans_only = false;
        self.event(at, -1);
    }

    /// A whole request from dispatch to end.
    pub fn span(&mut self, dispatch: Duration, end: Duration) {
        let fresh = self.extent.is_none() || self.spans_only;
        let end = end.max(dispatch);
        self.event(dispatch, 1);
        self.event(end, -1);
        self.busy_ns += i128::from(ns(clamp_time(end))) - i128::from(ns(clamp_time(dispatch)));
        self.spans_only = fresh;
    }

    /// Requests dispatched and not yet ended.
    pub fn in_flight(&self) -> i64 {
        self.net.iter().sum()
    }

    /// Adds another tracker's events.
    pub fn merge(&mut self, other: &InFlightTracker) {
        grow(
            &mut self.partial_ns,
            other.partial_ns.len().saturating_sub(1),
        );
        grow(&mut self.net, other.net.len().saturating_sub(1));
        for (a, b) in self.partial_ns.iter_mut().zip(&other.partial_ns) {
            *a += b;
        }
        for (a, b) in self.net.iter_mut().zip(&other.net) {
            *a += b;
        }
        self.spans_only = match (self.extent, other.extent) {
            (None, _) => other.spans_only,
            (_, None) => self.spans_only,
            _ => self.spans_only && other.spans_only,
        };
        self.busy_ns += other.busy_ns;
        self.extent = match (self.extent, other.extent) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (x, None) => x,
            (None, y) => y,
        };
    }

    /// Time-weighted mean concurrency over `window`; `None` when it is empty. Requests still
    /// in flight count until the window's end.
    pub fn mean_concurrency(&self, window: Window) -> Option<f64> {
        if window.is_empty() {
            return None;
        }
        // A window that holds every span: the exact busy time over its length.
        if self.spans_only
            && let Some((lo, hi)) = self.extent
            && window.start <= lo
            && window.end >= hi
        {
            return Some(self.busy_ns as f64 / window.len().as_nanos() as f64);
        }
        let range = window.buckets();
        let mut carried: i128 = self
            .net
            .iter()
            .take(range.start)
            .map(|&n| i128::from(n))
            .sum();
        let mut area: i128 = 0;
        for k in range {
            let own = self.partial_ns.get(k).copied().unwrap_or(0);
            let busy = (carried * i128::from(SECOND_NS) + own).max(0);
            area += busy * i128::from(window.overlap_ns(k));
            carried += self.net.get(k).map_or(0, |&n| i128::from(n));
        }
        Some(area as f64 / SECOND_NS as f64 / window.len().as_nanos() as f64)
    }
}

/// Little's law says mean concurrency L = throughput λ × mean time in system W. Returns
/// |L − λW| ÷ L, or `None` when L is not positive. Use the completion rate and mean E2E of
/// *all* requests that left the system (failed ones included) over the same window.
pub fn littles_law_mismatch(
    mean_concurrency: f64,
    requests_per_s: f64,
    mean_e2e: Duration,
) -> Option<f64> {
    if !mean_concurrency.is_finite() || mean_concurrency <= 0.0 {
        return None;
    }
    let predicted = requests_per_s * mean_e2e.as_secs_f64();
    Some((mean_concurrency - predicted).abs() / mean_concurrency)
}

/// The relative Little's-law mismatch above which a report warns (10 %).
pub const LITTLES_LAW_TOLERANCE: f64 = 0.10;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(v: f64) -> Duration {
        Duration::from_secs_f64(v)
    }

    fn done(end: f64, span: Option<(f64, f64)>, input: u64, output: u64) -> Completion {
        Completion {
            end: s(end),
            token_span: span.map(|(a, b)| (s(a), s(b))),
            input_tokens: input,
            output_tokens: output,
        }
    }

    #[test]
    fn window_basics() {
        let w = Window::new(s(1.5), s(3.0));
        assert_eq!(w.len(), s(1.5));
        assert_eq!(w.buckets(), 1..3);
        assert_eq!(w.overlap_ns(1), 500_000_000);
        assert_eq!(w.overlap_ns(2), SECOND_NS);
        assert_eq!(w.overlap_ns(3), 0);
        assert!(Window::new(s(2.0), s(1.0)).is_empty());
        assert_eq!(Window::new(s(2.0), s(1.0)).len(), Duration::ZERO);
    }

    #[test]
    fn spreads_output_over_the_token_span() {
        let mut t = ThroughputTracker::new();
        // 30 tokens from 0.5 s to 3.5 s: 5 in [0,1), 10, 10, 5 in [3,4).
        t.book(&done(3.6, Some((0.5, 3.5)), 100, 30));
        let out: Vec<u64> = t.buckets.iter().map(|b| b.output_milli).collect();
        assert_eq!(out, [5000, 10000, 10000, 5000]);
        assert_eq!(t.buckets[3].completions, 1);
        assert_eq!(t.buckets[3].input, 100);
    }

    #[test]
    fn spread_preserves_odd_totals() {
        let mut t = ThroughputTracker::new();
        t.book(&done(10.0, Some((0.3, 7.7)), 0, 7));
        let total: u64 = t.buckets.iter().map(|b| b.output_milli).sum();
        assert_eq!(total, 7000);
    }

    #[test]
    fn non_streaming_books_at_end() {
        let mut t = ThroughputTracker::new();
        t.book(&done(2.5, None, 10, 40));
        assert_eq!(t.buckets[2].output_milli, 40_000);
        let r = t.rates(Window::new(s(2.0), s(3.0))).unwrap();
        assert_eq!(r.requests, 1.0);
        assert_eq!(r.total_tokens_per_s, 50.0);
    }

    #[test]
    fn closed_loop_rates_and_windows() {
        // Concurrency 1, each request takes 1 s and streams 10 tokens over its last 0.8 s;
        // dispatches at 0..=9 s, completions at 1..=10 s.
        let mut t = ThroughputTracker::new();
        for i in 0..10 {
            let d = f64::from(i);
            t.dispatched(s(d));
            t.book(&done(d + 1.0, Some((d + 0.2, d + 1.0)), 5, 10));
        }
        assert_eq!(t.full_window(), Some(Window::new(s(0.0), s(10.0))));
        let steady = t.steady_window().unwrap();
        assert_eq!(steady, Window::new(s(1.0), s(9.0)));
        assert_eq!(t.headline_window(), Some((steady, WindowKind::Steady)));
        let r = t.rates(steady).unwrap();
        // Completions at 1..=8 fall in buckets 1..=8 ([1,9)): 8 over 8 s.
        assert!((r.requests_per_s - 1.0).abs() < 1e-12, "{r:?}");
        assert!((r.output_tokens_per_s - 10.0).abs() < 1e-12, "{r:?}");
        assert!((r.total_tokens_per_s - 15.0).abs() < 1e-12, "{r:?}");
        let full = t.rates(t.full_window().unwrap()).unwrap();
        assert!((full.requests - 10.0).abs() < 1e-12);
        let p = t.per_second_output(steady).unwrap();
        assert_eq!(p.seconds, 8);
        assert_eq!((p.p50, p.p99, p.peak), (10.0, 10.0, 10.0));
    }

    #[test]
    fn short_runs_fall_back_to_the_full_window() {
        let mut t = ThroughputTracker::new();
        t.dispatched(s(0.0));
        t.dispatched(s(0.5));
        t.book(&done(1.0, None, 1, 1));
        t.ended_without_success(s(3.0));
        assert_eq!(t.steady_window(), None);
        assert_eq!(
            t.headline_window(),
            Some((Window::new(s(0.0), s(3.0)), WindowKind::FullRun))
        );
        assert_eq!(ThroughputTracker::new().headline_window(), None);
    }

    #[test]
    fn per_second_peak_and_percentiles() {
        let mut t = ThroughputTracker::new();
        for (sec, tokens) in [(0, 10), (1, 20), (2, 30), (3, 1000)] {
            t.book(&done(f64::from(sec) + 0.5, None, 0, tokens));
        }
        let p = t.per_second_output(Window::new(s(0.0), s(4.0))).unwrap();
        assert_eq!((p.seconds, p.p50, p.p99, p.peak), (4, 20.0, 1000.0, 1000.0));
        // Only whole seconds count.
        assert_eq!(t.per_second_output(Window::new(s(0.2), s(1.1))), None);
    }

    #[test]
    fn merge_equals_booking_into_one() {
        let mut a = ThroughputTracker::new();
        let mut b = ThroughputTracker::new();
        let mut one = ThroughputTracker::new();
        for (i, c) in [done(1.0, Some((0.1, 0.9)), 3, 9), done(4.2, None, 1, 2)]
            .iter()
            .enumerate()
        {
            let target = if i == 0 { &mut a } else { &mut b };
            target.dispatched(s(0.1 * i as f64));
            target.book(c);
            one.dispatched(s(0.1 * i as f64));
            one.book(c);
        }
        a.merge(&b);
        assert_eq!(a.buckets, one.buckets);
        assert_eq!(a.full_window(), one.full_window());
    }

    #[test]
    fn concurrency_of_overlapping_spans() {
        let mut f = InFlightTracker::new();
        // Two requests over [0, 4) and one over [1, 3): mean over [0, 4) is (4+4+2)/4 = 2.5.
        f.span(s(0.0), s(4.0));
        f.end(s(4.0));
        f.dispatch(s(0.0));
        f.span(s(1.0), s(3.0));
        assert_eq!(f.in_flight(), 0);
        let m = f.mean_concurrency(Window::new(s(0.0), s(4.0))).unwrap();
        assert!((m - 2.5).abs() < 1e-12, "{m}");
        let m = f.mean_concurrency(Window::new(s(1.0), s(3.0))).unwrap();
        assert!((m - 3.0).abs() < 1e-12, "{m}");
    }

    #[test]
    fn events_out_of_order_and_open_requests() {
        let mut f = InFlightTracker::new();
        f.end(s(2.5));
        f.dispatch(s(0.5));
        f.dispatch(s(1.0)); // never ends: in flight until the window's end
        assert_eq!(f.in_flight(), 1);
        let m = f.mean_concurrency(Window::new(s(0.0), s(3.0))).unwrap();
        // Area = 2.0 + 2.0 = 4.0 request-seconds over 3 s.
        assert!((m - 4.0 / 3.0).abs() < 1e-12, "{m}");
        assert_eq!(f.mean_concurrency(Window::new(s(1.0), s(1.0))), None);
    }

    #[test]
    fn littles_law() {
        // 10 in flight, 20 req/s, 0.5 s each: exact.
        assert_eq!(littles_law_mismatch(10.0, 20.0, s(0.5)), Some(0.0));
        let m = littles_law_mismatch(10.0, 20.0, s(0.6)).unwrap();
        assert!((m - 0.2).abs() < 1e-12);
        assert!(m > LITTLES_LAW_TOLERANCE);
        assert_eq!(littles_law_mismatch(0.0, 1.0, s(1.0)), None);
        assert_eq!(littles_law_mismatch(f64::NAN, 1.0, s(1.0)), None);
    }

    proptest! {
        #[test]
        fn booked_output_adds_up(spans in prop::collection::vec((0u64..20_000, 0u64..5_000, 0u64..500), 1..40)) {
            let mut t = ThroughputTracker::new();
            let mut total = 0u64;
            for &(start_ms, len_ms, tokens) in &spans {
                let a = Duration::from_millis(start_ms);
                let z = a + Duration::from_millis(len_ms);
                t.book(&Completion { end: z, token_span: Some((a, z)), input_tokens: 0, output_tokens: tokens });
                total += tokens;
            }
            let booked: u64 = t.buckets.iter().map(|b| b.output_milli).sum();
            prop_assert_eq!(booked, total * 1000);
            let whole = Window::new(Duration::ZERO, Duration::from_secs(t.buckets.len() as u64));
            let r = t.rates(whole).unwrap();
            prop_assert!((r.output_tokens - total as f64).abs() < 1e-6);
            prop_assert!((r.requests - spans.len() as f64).abs() < 1e-9);
        }

        #[test]
        fn concurrency_matches_total_busy_time(spans in prop::collection::vec((0u64..10_000, 0u64..5_000), 1..30)) {
            let mut f = InFlightTracker::new();
            let mut busy_ns = 0u128;
            for &(d, len) in &spans {
                f.span(Duration::from_millis(d), Duration::from_millis(d + len));
                busy_ns += u128::from(len) * 1_000_000;
            }
            let w = Window::new(Duration::ZERO, Duration::from_secs(16));
            let m = f.mean_concurrency(w).unwrap();
            let want = busy_ns as f64 / w.len().as_nanos() as f64;
            prop_assert!((m - want).abs() < 1e-9, "{} vs {}", m, want);
            prop_assert_eq!(f.in_flight(), 0);
        }
    }
}
