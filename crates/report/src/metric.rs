//! The vocabulary every renderer shares: which latency metrics exist, their display names
//! and order, how token counts are labelled by provenance, and how numbers are printed.
//! It owns no layout; each format file decides what to show and where.

use bench::report::{Rates, SeriesReport, Tokens};
use metrics::hist::SummaryMs;

/// A latency metric as renderers show it: its `latency_ms` key and its display name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// Key in [`SeriesReport::latency_ms`] (`MetricKind::json_key`), e.g. `ttft_ms`.
    pub key: &'static str,
    /// Short display name, e.g. `TTFT`.
    pub label: &'static str,
}

impl Metric {
    /// The key without its unit suffix (`ttft_ms` -> `ttft`), as CSV's `metric` column.
    pub fn name(&self) -> &'static str {
        self.key.strip_suffix("_ms").unwrap_or(self.key)
    }
}

const fn m(key: &'static str, label: &'static str) -> Metric {
    Metric { key, label }
}

/// Every latency metric a series can carry, in reading order: the user-facing ones first,
/// then connection timing, queue-inclusive figures and the latency-equation components.
/// Keys follow `metrics::recorder::MetricKind::json_key` (schedule lag lives in
/// `client.schedule_lag_ms`, not here).
pub const ALL: [Metric; 16] = [
    m("ttft_ms", "TTFT"),
    m("ttfc_ms", "TTFC"),
    m("ttlt_ms", "TTLT"),
    m("e2e_ms", "E2E"),
    m("decode_ms", "Decode"),
    m("tpot_ms", "TPOT"),
    m("itl_ms", "ITL"),
    m("icl_ms", "ICL"),
    m("conn_setup_ms", "Conn setup"),
    m("time_to_headers_ms", "To headers"),
    m("time_to_first_byte_ms", "To first byte"),
    m("queue_inclusive_ttft_ms", "TTFT + queue"),
    m("queue_inclusive_e2e_ms", "E2E + queue"),
    m("network_ms", "Network"),
    m("server_queue_ms", "Server queue"),
    m("processing_ms", "Processing"),
];

/// Looks a metric up by its `latency_ms` key.
pub fn by_key(key: &str) -> Option<Metric> {
    ALL.into_iter().find(|m| m.key == key)
}

/// The series' metrics in [`ALL`] order, followed by any key this crate does not know yet
/// (shown under its raw key rather than dropped, so a new metric is never silently lost).
pub fn present(series: &SeriesReport) -> Vec<(String, &SummaryMs)> {
    let mut out: Vec<(String, &SummaryMs)> = ALL
        .iter()
        .filter_map(|m| {
            series
                .latency_ms
                .get(m.key)
                .map(|s| (m.label.to_string(), s))
        })
        .collect();
    for (key, s) in &series.latency_ms {
        if by_key(key).is_none() {
            out.push((key.clone(), s));
        }
    }
    out
}

/// How the output count of a series is to be named, from `tokens.output_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputUnit {
    /// Every count came from server usage or the tokenizer: real tokens.
    Tokens,
    /// Every count came from counting stream chunks: these are chunks, not tokens.
    Chunks,
    /// Some of each: the total mixes tokens and chunks.
    Mixed,
}

impl OutputUnit {
    /// Classifies a series' output counts.
    pub fn of(tokens: &Tokens) -> OutputUnit {
        let chunks = tokens.output_source.get("chunks").copied().unwrap_or(0);
        let other: u64 = tokens
            .output_source
            .iter()
            .filter(|(k, _)| k.as_str() != "chunks")
            .map(|(_, v)| *v)
            .sum();
        match (chunks > 0, other > 0) {
            (true, false) => OutputUnit::Chunks,
            (true, true) => OutputUnit::Mixed,
            _ => OutputUnit::Tokens,
        }
    }

    /// The rate unit: `tok/s`, `chunks/s` or `tok|chunks/s`.
    pub fn per_s(self) -> &'static str {
        match self {
            OutputUnit::Tokens => "tok/s",
            OutputUnit::Chunks => "chunks/s",
            OutputUnit::Mixed => "tok|chunks/s",
        }
    }

    /// The count noun: `tokens`, `chunks` or `tokens|chunks`.
    pub fn noun(self) -> &'static str {
        match self {
            OutputUnit::Tokens => "tokens",
            OutputUnit::Chunks => "chunks",
            OutputUnit::Mixed => "tokens|chunks",
        }
    }
}

/// The rates of the headline window and its name (`steady` or `full`), falling back to
/// whichever window exists when the name is missing.
pub fn headline(series: &SeriesReport) -> Option<(&'static str, &Rates)> {
    let t = &series.throughput;
    match t.headline_window.as_deref() {
        Some("steady") => t.steady.as_ref().map(|r| ("steady", r)),
        Some("full") => t.full.as_ref().map(|r| ("full run", r)),
        _ => t
            .steady
            .as_ref()
            .map(|r| ("steady", r))
            .or_else(|| t.full.as_ref().map(|r| ("full run", r))),
    }
}

/// Milliseconds with precision that suits the magnitude: `0.42`, `12.3`, `101.2`, `2340`;
/// `n/a` for a non-finite value.
pub fn ms(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let a = v.abs();
    if a < 10.0 {
        format!("{v:.2}")
    } else if a < 10_000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A rate or other plain value with one decimal (two below 10); `n/a` if non-finite.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        "n/a".to_string()
    } else if v.abs() < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// Seconds for wall times: `5.2 s`, `0.35 s`.
pub fn secs(v: f64) -> String {
    if !v.is_finite() {
        "n/a".to_string()
    } else if v.abs() < 1.0 {
        format!("{v:.2} s")
    } else {
        format!("{v:.1} s")
    }
}

/// US dollars with enough digits that small per-request costs do not print as zero.
pub fn usd(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let a = v.abs();
    if a == 0.0 {
        "$0".to_string()
    } else if a >= 1.0 {
        format!("${v:.2}")
    } else if a >= 0.01 {
        format!("${v:.4}")
    } else {
        format!("${v:.6}")
    }
}

/// A share in 0..1 as a percentage with one decimal.
pub fn percent(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", v * 100.0)
    } else {
        "n/a".to_string()
    }
}

/// An integer with thousands separators (`12,345`), as hyperfine and oha print counts
/// (the one format in [`protocol::fmt::thousands`]).
pub fn count(v: u64) -> String {
    protocol::fmt::thousands(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(ms(0.4167), "0.42");
        assert_eq!(ms(101.23), "101.2");
        assert_eq!(ms(23_456.7), "23457");
        assert_eq!(ms(f64::NAN), "n/a");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(12.345), "$12.35");
        assert_eq!(usd(0.0123), "$0.0123");
        assert_eq!(usd(0.000_246), "$0.000246");
        assert_eq!(percent(0.97), "97.0%");
        assert_eq!(secs(5.24), "5.2 s");
    }

    #[test]
    fn keys_are_unique_and_named() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(a.key.ends_with("_ms"));
            assert!(
                ALL[i + 1..]
                    .iter()
                    .all(|b| b.key != a.key && b.label != a.label)
            );
        }
        assert_eq!(by_key("tpot_ms").map(|m| m.name()), Some("tpot"));
    }

    #[test]
    fn output_unit_follows_provenance() {
        let mut t = Tokens::default();
        assert_eq!(OutputUnit::of(&t), OutputUnit::Tokens);
        t.output_source.insert("chunks".into(), 3);
        assert_eq!(OutputUnit::of(&t), OutputUnit::Chunks);
        t.output_source.insert("usage".into(), 1);
        assert_eq!(OutputUnit::of(&t), OutputUnit::Mixed);
    }
}
