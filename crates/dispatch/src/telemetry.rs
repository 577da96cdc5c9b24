//! Counters and histograms for `/metrics`, rendered in the Prometheus text format
//! (version 0.0.4).
//!
//! Families are declared once in [`FAMILIES`] (name, type, help), so every series that
//! can appear is documented in one place and the exposition is stable. Updates take one
//! short lock per request (not per token); a gateway request makes a handful. The
//! `gateway` crate renders; `dispatch` and `gateway` both record.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// What a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in latency buckets.
    Histogram,
}

/// Every family the gateway exposes: name, type, help.
pub const FAMILIES: &[(&str, MetricType, &str)] = &[
    (
        "tokenpace_requests_total",
        MetricType::Counter,
        "Requests answered, by route, model, status and cache result.",
    ),
    (
        "tokenpace_upstream_requests_total",
        MetricType::Counter,
        "Calls made to upstreams, by upstream and status (0 = no response).",
    ),
    (
        "tokenpace_upstream_ttft_seconds",
        MetricType::Histogram,
        "Upstream time to first token (first SSE event; whole body when not streamed), by upstream.",
    ),
    (
        "tokenpace_upstream_e2e_seconds",
        MetricType::Histogram,
        "Upstream time from sending the request to the end of the response, by upstream.",
    ),
    (
        "tokenpace_gateway_overhead_seconds",
        MetricType::Histogram,
        "Time spent in the gateway before the response head went out, excluding the time waiting for the upstream.",
    ),
    (
        "tokenpace_cache_hits_total",
        MetricType::Counter,
        "Cache hits, by tier (memory, sqlite, redis).",
    ),
    (
        "tokenpace_cache_misses_total",
        MetricType::Counter,
        "Cache lookups that found nothing.",
    ),
    (
        "tokenpace_cache_bypass_total",
        MetricType::Counter,
        "Requests that skipped the cache (no-store, tokenpace-cache: off, non-deterministic with deterministic_only).",
    ),
    (
        "tokenpace_cache_stores_total",
        MetricType::Counter,
        "Entries written to the cache.",
    ),
    (
        "tokenpace_cache_evictions_total",
        MetricType::Counter,
        "Entries evicted to stay within the size bounds.",
    ),
    (
        "tokenpace_cache_bytes",
        MetricType::Gauge,
        "Bytes held by the in-memory cache tier.",
    ),
    (
        "tokenpace_cache_store_errors_total",
        MetricType::Counter,
        "Errors of the persistent cache tier, by tier (the cache fails open).",
    ),
    (
        "tokenpace_coalesced_requests_total",
        MetricType::Counter,
        "Requests served by joining an identical request already in flight.",
    ),
    (
        "tokenpace_tokens_total",
        MetricType::Counter,
        "Tokens, by direction (input, output) and source (upstream, cache).",
    ),
    (
        "tokenpace_cost_usd_total",
        MetricType::Counter,
        "Dollars spent upstream (price table), by upstream.",
    ),
    (
        "tokenpace_saved_tokens_total",
        MetricType::Counter,
        "Tokens not bought thanks to cache hits and coalescing.",
    ),
    (
        "tokenpace_saved_usd_total",
        MetricType::Counter,
        "Dollars not spent thanks to cache hits and coalescing (price table).",
    ),
    (
        "tokenpace_in_flight_requests",
        MetricType::Gauge,
        "Requests being answered now.",
    ),
    (
        "tokenpace_queue_wait_seconds",
        MetricType::Histogram,
        "Time requests waited for tier capacity before being sent, by upstream.",
    ),
    (
        "tokenpace_queue_depth",
        MetricType::Gauge,
        "Requests waiting for tier capacity now.",
    ),
    (
        "tokenpace_admission_total",
        MetricType::Counter,
        "Admission decisions, by upstream and result (admitted, queued, rejected).",
    ),
    (
        "tokenpace_upstream_pauses_total",
        MetricType::Counter,
        "Times an upstream's 429 paused its lane for its retry-after, by upstream.",
    ),
    (
        "tokenpace_retries_total",
        MetricType::Counter,
        "Attempts after the first, by upstream of the failed attempt and reason.",
    ),
    (
        "tokenpace_fallbacks_total",
        MetricType::Counter,
        "Attempts sent to another target than the previous one, by route.",
    ),
    (
        "tokenpace_hedges_total",
        MetricType::Counter,
        "Hedged requests, by route and result (sent, won).",
    ),
];

/// Histogram bucket bounds, in seconds: 50 µs to 60 s.
pub const BUCKETS: [f64; 20] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Debug, Clone)]
enum Series {
    Value(f64),
    Hist {
        buckets: [u64; BUCKETS.len()],
        sum: f64,
        count: u64,
    },
}

/// The registry.
#[derive(Debug, Default)]
pub struct Telemetry {
    series: Mutex<BTreeMap<&'static str, BTreeMap<String, Series>>>,
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut out = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

impl Telemetry {
    /// An empty registry.
    pub fn new() -> Telemetry {
        Telemetry::default()
    }

    fn with(&self, name: &'static str, pairs: &[(&str, &str)], f: impl FnOnce(&mut Series)) {
        let mut all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let family = all.entry(name).or_default();
        let key = labels(pairs);
        let is_hist = FAMILIES
            .iter()
            .any(|(n, t, _)| *n == name && *t == MetricType::Histogram);
        let series = family.entry(key).or_insert_with(|| {
            if is_hist {
                Series::Hist {
                    buckets: [0; BUCKETS.len()],
                    sum: 0.0,
                    count: 0,
                }
            } else {
                Series::Value(0.0)
            }
        });
        f(series);
    }

    /// Adds `by` to a counter.
    pub fn add(&self, name: &'static str, pairs: &[(&str, &str)], by: f64) {
        self.with(name, pairs, |s| {
            if let Series::Value(v) = s {
                *v += by;
            }
        });
    }

    /// Adds one.
    pub fn inc(&self, name: &'static str, pairs: &[(&str, &str)]) {
        self.add(name, pairs, 1.0);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, pairs: &[(&str, &str)], to: f64) {
        self.with(name, pairs, |s| {
            if let Series::Value(v) = s {
                *v = to;
            }
        });
    }

    /// Records one observation into a histogram.
    pub fn observe(&self, name: &'static str, pairs: &[(&str, &str)], d: Duration) {
        let secs = d.as_secs_f64();
        self.with(name, pairs, |s| {
            if let Series::Hist {
                buckets,
                sum,
                count,
            } = s
            {
                if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
                    buckets[i] += 1;
                }
                *sum += secs;
                *count += 1;
            }
        });
    }

    /// A counter's or gauge's current value (tests, summaries).
    pub fn value(&self, name: &'static str, pairs: &[(&str, &str)]) -> f64 {
        let all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        match all.get(name).and_then(|f| f.get(&labels(pairs))) {
            Some(Series::Value(v)) => *v,
            Some(Series::Hist { count, .. }) => *count as f64,
            None => 0.0,
        }
    }

    /// The sum of a counter over all its label sets.
    pub fn total(&self, name: &'static str) -> f64 {
        let all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        all.get(name).map_or(0.0, |f| {
            f.values()
                .map(|s| match s {
                    Series::Value(v) => *v,
                    Series::Hist { count, .. } => *count as f64,
                })
                .sum()
        })
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::with_capacity(8 * 1024);
        for (name, kind, help) in FAMILIES {
            let t = match kind {
                MetricType::Counter => "counter",
                MetricType::Gauge => "gauge",
                MetricType::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {t}");
            let Some(family) = all.get(name) else {
                if *kind != MetricType::Histogram && !name.ends_with("_total")
                    || *kind == MetricType::Gauge
                {
                    let _ = writeln!(out, "{name} 0");
                }
                continue;
            };
            for (labels, series) in family {
                match series {
                    Series::Value(v) => {
                        let _ = writeln!(out, "{name}{labels} {}", fmt_f64(*v));
                    }
                    Series::Hist {
                        buckets,
                        sum,
                        count,
                    } => {
                        let inner = labels.trim_start_matches('{').trim_end_matches('}');
                        let sep = if inner.is_empty() { "" } else { "," };
                        let mut cumulative = 0;
                        for (b, n) in BUCKETS.iter().zip(buckets) {
                            cumulative += n;
                            let _ = writeln!(
                                out,
                                "{name}_bucket{{{inner}{sep}le=\"{}\"}} {cumulative}",
                                fmt_f64(*b)
                            );
                        }
                        let _ = writeln!(out, "{name}_bucket{{{inner}{sep}le=\"+Inf\"}} {count}");
                        let _ = writeln!(out, "{name}_sum{labels} {}", fmt_f64(*sum));
                        let _ = writeln!(out, "{name}_count{labels} {count}");
                    }
                }
            }
        }
        out
    }
}

fn fmt_f64(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let t = Telemetry::new();
        t.inc(
            "tokenpace_requests_total",
            &[("route", "/v1/chat/completions"), ("status", "200")],
        );
        t.inc(
            "tokenpace_requests_total",
            &[("route", "/v1/chat/completions"), ("status", "200")],
        );
        t.observe(
            "tokenpace_upstream_ttft_seconds",
            &[("upstream", "sim")],
            Duration::from_millis(30),
        );
        t.add("tokenpace_saved_usd_total", &[], 0.25);
        t.set("tokenpace_cache_bytes", &[], 1024.0);
        let text = t.render();
        assert!(text.contains("# TYPE tokenpace_requests_total counter"));
        assert!(
            text.contains(
                "tokenpace_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "tokenpace_upstream_ttft_seconds_bucket{upstream=\"sim\",le=\"0.025\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains("tokenpace_upstream_ttft_seconds_bucket{upstream=\"sim\",le=\"0.05\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tokenpace_upstream_ttft_seconds_bucket{upstream=\"sim\",le=\"+Inf\"} 1")
        );
        assert!(text.contains("tokenpace_upstream_ttft_seconds_count{upstream=\"sim\"} 1"));
        assert!(text.contains("tokenpace_saved_usd_total 0.25"));
        assert!(text.contains("tokenpace_cache_bytes 1024"));
        assert_eq!(t.total("tokenpace_requests_total"), 2.0);
        // Every line is a comment or `name{labels} value`.
        for line in text.lines() {
            assert!(
                line.starts_with('#')
                    || line
                        .rsplit_once(' ')
                        .is_some_and(|(_, v)| v.parse::<f64>().is_ok()),
                "{line}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("m", "a\"b\\c\nd")]), "{m=\"a\\\"b\\\\c\\nd\"}");
    }
}
