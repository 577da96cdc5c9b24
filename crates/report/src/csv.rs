//! The CSV rendering: one row per (series, metric) for spreadsheets and plotting scripts,
//! with the full latency summary in columns and throughput as single-value rows. Quoting
//! follows RFC 4180 and is written here (a field is quoted when it holds a comma, a quote,
//! or a line break; quotes inside are doubled) rather than pulling in a CSV crate for it.

use bench::report::{RunReport, SeriesReport};
use metrics::hist::{SummaryMs, ValueSummary};

use crate::metric::{self, OutputUnit};

/// The header row's columns, in order.
pub const COLUMNS: [&str; 15] = [
    "series", "model", "load", "metric", "unit", "n", "mean", "stddev", "min", "p50", "p90", "p95",
    "p99", "p999", "max",
];

/// Renders a run as CSV: a header, then per series one row per latency metric (unit `ms`),
/// `schedule_lag` (the client's), `output_tokens_per_s_per_request`, and the headline
/// window's `requests_per_s` and `output_tokens_per_s` with the value in `mean`.
///
/// Output counted from stream chunks keeps its metric name but says `chunks/s` in `unit`.
/// Lines end with `\r\n`, as RFC 4180 asks.
pub fn render_csv(report: &RunReport) -> String {
    let mut out = String::new();
    push_row(&mut out, COLUMNS.iter().map(|c| (*c).to_string()));
    for s in &report.series {
        for m in metric::ALL {
            if let Some(summary) = s.latency_ms.get(m.key) {
                summary_row(&mut out, s, m.name(), "ms", &ms_fields(summary));
            }
        }
        // Keys a newer bench emits that this crate does not list yet still get a row.
        for (key, summary) in &s.latency_ms {
            if metric::by_key(key).is_none() {
                let name = key.strip_suffix("_ms").unwrap_or(key);
                summary_row(&mut out, s, name, "ms", &ms_fields(summary));
            }
        }
        if let Some(lag) = &s.client.schedule_lag_ms {
            summary_row(&mut out, s, "schedule_lag", "ms", &ms_fields(lag));
        }
        let unit = OutputUnit::of(&s.tokens).per_s();
        if let Some(v) = &s.output_tokens_per_s_per_request {
            summary_row(
                &mut out,
                s,
                "output_tokens_per_s_per_request",
                unit,
                &value_fields(v),
            );
        }
        if let Some((_, r)) = metric::headline(s) {
            single_row(
                &mut out,
                s,
                "requests_per_s",
                "requests/s",
                r.requests_per_s,
            );
            single_row(
                &mut out,
                s,
                "output_tokens_per_s",
                unit,
                r.output_tokens_per_s,
            );
        }
    }
    out
}

fn ms_fields(s: &SummaryMs) -> [String; 10] {
    [
        s.n.to_string(),
        float(s.mean),
        float(s.stddev),
        float(s.min),
        float(s.p50),
        float(s.p90),
        float(s.p95),
        float(s.p99),
        float(s.p999),
        float(s.max),
    ]
}

fn value_fields(s: &ValueSummary) -> [String; 10] {
    [
        s.n.to_string(),
        float(s.mean),
        float(s.stddev),
        float(s.min),
        float(s.p50),
        float(s.p90),
        float(s.p95),
        float(s.p99),
        float(s.p999),
        float(s.max),
    ]
}

/// Full precision (Rust's shortest round-trip form); empty for a non-finite value.
fn float(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

fn summary_row(out: &mut String, s: &SeriesReport, metric: &str, unit: &str, f: &[String; 10]) {
    let lead = [&s.label, &s.model, &s.load].map(|x| x.to_string());
    push_row(
        out,
        lead.into_iter()
            .chain([metric.to_string(), unit.to_string()])
            .chain(f.iter().cloned()),
    );
}

fn single_row(out: &mut String, s: &SeriesReport, metric: &str, unit: &str, value: f64) {
    let mut f: [String; 10] = Default::default();
    f[1] = float(value);
    summary_row(out, s, metric, unit, &f);
}

fn push_row(out: &mut String, fields: impl Iterator<Item = String>) {
    for (i, field) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quote(&field));
    }
    out.push_str("\r\n");
}

/// Quotes a field when it must be (RFC 4180 §2.6–2.7).
pub fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    /// A strict RFC 4180 reader, enough to check what [`render_csv`] writes.
    fn parse(text: &str) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        let mut row = Vec::new();
        let mut field = String::new();
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    _ => field.push(c),
                }
                continue;
            }
            match c {
                '"' => {
                    assert!(field.is_empty(), "quote inside an unquoted field");
                    quoted = true;
                }
                ',' => row.push(std::mem::take(&mut field)),
                '\r' => assert_eq!(chars.next(), Some('\n')),
                '\n' => panic!("bare newline"),
                _ => field.push(c),
            }
            if c == '\r' {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
        }
        assert!(
            !quoted && field.is_empty() && row.is_empty(),
            "trailing data"
        );
        rows
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quote("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn parses_back_with_awkward_label() {
        let report = fixture::full();
        let rows = parse(&render_csv(&report));
        // Per series: 16 latency rows + schedule lag + per-request tok/s + 2 throughput.
        assert_eq!(rows.len(), 1 + 2 * (16 + 1 + 1 + 2));
        assert!(rows.iter().all(|r| r.len() == COLUMNS.len()));
        assert_eq!(rows[0], COLUMNS.map(String::from).to_vec());
        let awkward: Vec<_> = rows
            .iter()
            .filter(|r| r[0] == fixture::AWKWARD_LABEL)
            .collect();
        assert_eq!(awkward.len(), 20);
        let ttft = rows.iter().find(|r| r[3] == "ttft").unwrap();
        assert_eq!(
            (ttft[4].as_str(), ttft[5].as_str(), ttft[9].as_str()),
            ("ms", "50", "101.6")
        );
        let rps = rows.iter().find(|r| r[3] == "requests_per_s").unwrap();
        assert_eq!(rps[6], "4.9");
        assert!(rps[5].is_empty() && rps[7].is_empty());
        let chunked = awkward
            .iter()
            .find(|r| r[3] == "output_tokens_per_s")
            .unwrap();
        assert_eq!(chunked[4], "chunks/s");
    }

    #[test]
    fn sparse_has_only_e2e() {
        let rows = parse(&render_csv(&fixture::sparse()));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1][3], "e2e");
    }
}
