//! The terminal summary, in the spirit of hyperfine and oha: plain text, no colour, columns
//! aligned, the important line first (what ran, and whether the models were simulated),
//! warnings last where a terminal leaves them in view. It reads a [`RunReport`] and decides
//! only presentation; every figure comes from `bench` as computed there.

use std::fmt::Write as _;

use bench::report::{RunReport, SeriesReport, Speedup, SweepRow};
use metrics::hist::SummaryMs;

use crate::metric::{self, OutputUnit, count, ms, num, percent, secs, usd};

/// Rows of the per-series latency table, in order. TTFC gets a row only when it differs
/// from TTFT (see [`ttfc_differs`]); the rest appear when the series has samples for them.
const TABLE: [(&str, &str); 7] = [
    ("ttft_ms", "TTFT"),
    ("ttfc_ms", "TTFC"),
    ("ttlt_ms", "TTLT"),
    ("e2e_ms", "E2E"),
    ("tpot_ms", "TPOT"),
    ("itl_ms", "ITL"),
    ("icl_ms", "ICL"),
];

/// Renders the terminal summary of a run.
pub fn render_text(report: &RunReport) -> String {
    let mut out = String::new();
    header(&mut out, report);
    for series in &report.series {
        out.push('\n');
        series_block(&mut out, report, series);
    }
    if !report.comparisons.is_empty() {
        out.push_str("\nComparisons\n");
        for c in &report.comparisons {
            let _ = writeln!(out, "  {}", c.text);
        }
    }
    if !report.sweep.is_empty() {
        out.push_str("\nConcurrency sweep\n");
        sweep_table(&mut out, &report.sweep);
    }
    if let Some(s) = &report.speedup {
        out.push_str("\nSpeedup\n");
        let _ = writeln!(out, "  {}", speedup_line(s));
    }
    warnings(&mut out, report);
    if report.interrupted {
        out.push_str("\ninterrupted: partial results (the run was stopped before its end)\n");
    }
    out
}

fn header(out: &mut String, r: &RunReport) {
    let streamed = if r.stream { "streamed" } else { "not streamed" };
    let _ = writeln!(
        out,
        "{} · load {} · stop {} · {} · started {}",
        r.tool, r.load, r.stop, streamed, r.started_at
    );
    if let Some(slo) = &r.slo {
        let _ = writeln!(out, "SLO: {slo}");
    }
    if r.simulated {
        if r.series.iter().all(|s| s.simulated) {
            out.push_str(
                "!! models are SIMULATED (tokenpace sim): these figures describe the simulator, \
                 not a provider !!\n",
            );
        } else {
            out.push_str(
                "!! models marked [simulated] are SIMULATED (tokenpace sim): their figures describe \
                 the simulator, not a provider !!\n",
            );
        }
    }
}

fn series_block(out: &mut String, run: &RunReport, s: &SeriesReport) {
    let sim = if s.simulated { " [simulated]" } else { "" };
    let _ = writeln!(
        out,
        "== {}{sim} · {} ({}) · load {} · wall {}",
        s.label,
        s.endpoint,
        s.api,
        s.load,
        secs(s.wall_s)
    );
    let q = &s.requests;
    let mut line = format!(
        "  requests: {} ok, {} failed, {} incomplete",
        count(q.succeeded),
        count(q.failed),
        count(q.incomplete)
    );
    if !q.failed_by_class.is_empty() {
        let classes: Vec<String> = q
            .failed_by_class
            .iter()
            .map(|(k, v)| format!("{k} {}", count(*v)))
            .collect();
        let _ = write!(line, " (failures: {})", classes.join(", "));
    }
    if q.warmup > 0 {
        let _ = write!(line, "; {} warm-up excluded", count(q.warmup));
    }
    let _ = writeln!(out, "{line}");

    latency_table(out, run, s);
    if let Some(split) = equation_split(s) {
        let _ = writeln!(out, "  latency at p50: {split}");
    }
    if let Some(t) = s.tpot_token_weighted_ms {
        let _ = writeln!(out, "  TPOT token-weighted mean: {} ms", ms(t));
    }
    tokens_line(out, s);
    throughput_lines(out, s);
    cost_line(out, s);
    slo_line(out, s);
    rate_limit_lines(out, s);
    if s.cache_hits > 0 {
        let _ = writeln!(
            out,
            "  cache hits: {} (served from a cache: not the model's latency)",
            count(s.cache_hits)
        );
    }
    client_line(out, s);
}

/// TTFC is worth its own row only when it tells something TTFT does not: the first chunk
/// arrived measurably before the first token (role-only or empty chunks). The bar is 1% or
/// 0.5 ms at p50, whichever is larger, so timer noise does not add a row.
fn ttfc_differs(ttft: Option<&SummaryMs>, ttfc: Option<&SummaryMs>) -> bool {
    match (ttft, ttfc) {
        (Some(t), Some(c)) => (t.p50 - c.p50).abs() > (t.p50.abs() * 0.01).max(0.5),
        (None, Some(_)) => true,
        _ => false,
    }
}

fn latency_table(out: &mut String, run: &RunReport, s: &SeriesReport) {
    let mut rows: Vec<Vec<String>> = vec![
        [
            "latency (ms)",
            "mean",
            "p50",
            "p90",
            "p99",
            "min",
            "max",
            "n",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let ttft = s.latency_ms.get("ttft_ms");
    for (key, label) in TABLE {
        let summary = s.latency_ms.get(key);
        if key == "ttfc_ms" && !ttfc_differs(ttft, summary) {
            continue;
        }
        match summary {
            Some(m) => rows.push(vec![
                label.to_string(),
                ms(m.mean),
                ms(m.p50),
                ms(m.p90),
                ms(m.p99),
                ms(m.min),
                ms(m.max),
                count(m.n),
            ]),
            None if key == "ttft_ms" => {
                let why = if run.stream {
                    "n/a (no successful streamed request)"
                } else {
                    "n/a (not streamed: only E2E is measured)"
                };
                rows.push(vec![label.to_string(), why.to_string()]);
            }
            None => {}
        }
    }
    table(out, &rows, "  ");
}

/// "network 0.4 ms + queue 0.0 ms + processing 101.2 ms": the latency equation's terms at
/// p50, from whichever of the three the series measured.
fn equation_split(s: &SeriesReport) -> Option<String> {
    let parts: Vec<String> = [
        ("network_ms", "network"),
        ("server_queue_ms", "queue"),
        ("processing_ms", "processing"),
    ]
    .iter()
    .filter_map(|(k, name)| {
        s.latency_ms
            .get(*k)
            .map(|m| format!("{name} {} ms", ms(m.p50)))
    })
    .collect();
    (!parts.is_empty()).then(|| parts.join(" + "))
}

fn sources(map: &std::collections::BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} {}", count(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn tokens_line(out: &mut String, s: &SeriesReport) {
    let t = &s.tokens;
    let unit = OutputUnit::of(t);
    let mut line = format!("  output: {} {}", count(t.output), unit.noun());
    if !t.output_source.is_empty() {
        let _ = write!(line, " (counted by {} requests)", sources(&t.output_source));
    }
    match unit {
        OutputUnit::Chunks => line.push_str(" — stream chunks, not tokens"),
        OutputUnit::Mixed => line.push_str(" — mixes tokens with stream chunks"),
        OutputUnit::Tokens => {}
    }
    let _ = write!(line, "; input {} tokens", count(t.input));
    if t.cached_input > 0 {
        let _ = write!(line, " ({} cached)", count(t.cached_input));
    }
    if t.reasoning > 0 {
        let _ = write!(line, "; reasoning {}", count(t.reasoning));
    }
    let _ = writeln!(out, "{line}");
    if let Some(v) = &s.output_tokens_per_s_per_request {
        let _ = writeln!(
            out,
            "  per request: output {} p50 {} (p90 {})",
            unit.per_s(),
            num(v.p50),
            num(v.p90)
        );
    }
}

fn throughput_lines(out: &mut String, s: &SeriesReport) {
    let unit = OutputUnit::of(&s.tokens);
    if let Some((name, r)) = metric::headline(s) {
        let mut line = format!(
            "  throughput ({name}, {}–{}): {} req/s, {} output {}",
            secs(r.window_start_s),
            secs(r.window_end_s),
            num(r.requests_per_s),
            num(r.output_tokens_per_s),
            unit.per_s()
        );
        if unit == OutputUnit::Tokens {
            let _ = write!(line, ", {} total tok/s", num(r.total_tokens_per_s));
        }
        if let Some(c) = s.achieved_concurrency {
            let _ = write!(line, "; achieved concurrency {}", num(c));
        }
        let _ = writeln!(out, "{line}");
    } else if let Some(c) = s.achieved_concurrency {
        let _ = writeln!(out, "  achieved concurrency {}", num(c));
    }
    if let Some(p) = &s.throughput.output_tokens_per_s_by_second {
        let _ = writeln!(
            out,
            "  per second over {} s: output {} p50 {}, p99 {}, peak {}",
            p.seconds,
            unit.per_s(),
            num(p.p50),
            num(p.p99),
            num(p.peak)
        );
    }
    if let Some(r) = &s.rate {
        let _ = writeln!(
            out,
            "  rate: offered {}/s, dispatched {}/s, completed {}/s",
            num(r.offered_per_s),
            num(r.dispatched_per_s),
            num(r.completed_per_s)
        );
    }
}

fn cost_line(out: &mut String, s: &SeriesReport) {
    let Some(c) = &s.cost else { return };
    let mut line = format!("  cost: {} total", usd(c.total_usd));
    if let Some(v) = c.per_request_usd {
        let _ = write!(line, ", {}/request", usd(v));
    }
    if let Some(v) = c.per_million_output_tokens_usd {
        let _ = write!(line, ", {} per 1M output tokens", usd(v));
    }
    if let Some(v) = c.batch_total_usd {
        let _ = write!(line, ", {} at batch prices", usd(v));
    }
    let _ = write!(line, "; price {}", c.price_model);
    if let Some(src) = &c.source {
        let _ = write!(line, ", source: {src}");
    }
    if c.simulated {
        line.push_str(" [SIMULATED prices]");
    }
    let _ = writeln!(out, "{line}");
}

fn slo_line(out: &mut String, s: &SeriesReport) {
    let Some(slo) = &s.slo else { return };
    let attainment = slo.attainment.map_or_else(|| "n/a".to_string(), percent);
    let mut line = format!(
        "  SLO {}: attainment {attainment} (good {}, missed {}, failed {})",
        slo.spec,
        count(slo.good),
        count(slo.bad),
        count(slo.failed)
    );
    match (slo.goodput_requests_per_s, slo.goodput_tokens_per_s) {
        (Some(r), Some(t)) => {
            let _ = write!(line, "; goodput {} req/s, {} tok/s", num(r), num(t));
        }
        (Some(r), None) => {
            let _ = write!(line, "; goodput {} req/s", num(r));
        }
        (None, Some(t)) => {
            let _ = write!(line, "; goodput {} tok/s", num(t));
        }
        (None, None) => {}
    }
    let _ = writeln!(out, "{line}");
}

fn rate_limit_lines(out: &mut String, s: &SeriesReport) {
    let r = &s.rate_limits;
    let mut parts = Vec::new();
    if r.responses_429 > 0 {
        parts.push(format!("{} responses 429", count(r.responses_429)));
    }
    if let Some(v) = r.max_retry_after_s {
        parts.push(format!("max retry-after {}", secs(v)));
    }
    let headroom = |min: Option<u64>, limit: Option<u64>, what: &str| match (min, limit) {
        (Some(m), Some(l)) => Some(format!(
            "{what}: min {} of {} remaining",
            count(m),
            count(l)
        )),
        (Some(m), None) => Some(format!("{what}: min {} remaining", count(m))),
        (None, Some(l)) => Some(format!("{what} limit {}", count(l))),
        (None, None) => None,
    };
    parts.extend(headroom(
        r.min_requests_remaining,
        r.requests_limit,
        "requests",
    ));
    parts.extend(headroom(r.min_tokens_remaining, r.tokens_limit, "tokens"));
    if !parts.is_empty() {
        let _ = writeln!(out, "  rate limits: {}", parts.join("; "));
    }
    if r.provider_limited {
        out.push_str("  the provider's limit, not the model, capped this run\n");
    }
}

fn client_line(out: &mut String, s: &SeriesReport) {
    let c = &s.client;
    let mut parts = Vec::new();
    if let Some(share) = c.cpu_share {
        parts.push(format!("CPU {} of the machine", percent(share)));
    }
    if let Some(lag) = &c.schedule_lag_ms {
        parts.push(format!("schedule lag p99 {} ms", ms(lag.p99)));
    }
    if !parts.is_empty() {
        let _ = writeln!(out, "  client self-check: {}", parts.join(", "));
    }
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

fn sweep_table(out: &mut String, rows: &[SweepRow]) {
    let mut cells = vec![
        [
            "series",
            "concurrency",
            "req/s",
            "tok/s",
            "TTFT p50",
            "TTFT p99",
            "E2E p50",
            "E2E p99",
            "failed",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in rows {
        cells.push(vec![
            r.label.clone(),
            r.concurrency.to_string(),
            opt(r.requests_per_s, num),
            opt(r.output_tokens_per_s, num),
            opt(r.ttft_p50_ms, ms),
            opt(r.ttft_p99_ms, ms),
            opt(r.e2e_p50_ms, ms),
            opt(r.e2e_p99_ms, ms),
            count(r.failed),
        ]);
    }
    table(out, &cells, "  ");
    out.push_str("  (latencies in ms)\n");
}

/// "sim-mini: sequential 5.2 s, 4 parallel 1.4 s: 3.7x faster (8 requests)".
fn speedup_line(s: &Speedup) -> String {
    let verdict = if !s.speedup.is_finite() {
        "speedup n/a".to_string()
    } else if s.speedup >= 1.0 {
        format!("{:.1}x faster", s.speedup)
    } else {
        format!("{:.1}x slower", 1.0 / s.speedup)
    };
    format!(
        "{}: sequential {}, {} parallel {}: {verdict} ({} requests)",
        s.label,
        secs(s.sequential_s),
        s.concurrency,
        secs(s.parallel_s),
        count(s.requests)
    )
}

fn warnings(out: &mut String, r: &RunReport) {
    let series = r
        .series
        .iter()
        .flat_map(|s| s.warnings.iter().map(move |w| (Some(&s.label), w)));
    let all: Vec<_> = series.chain(r.warnings.iter().map(|w| (None, w))).collect();
    if all.is_empty() {
        return;
    }
    out.push_str("\nWarnings\n");
    for (label, w) in all {
        match label {
            Some(l) => {
                let _ = writeln!(out, "  - [{l}] {}", w.message);
            }
            None => {
                let _ = writeln!(out, "  - {}", w.message);
            }
        }
        if !w.advice.is_empty() {
            let _ = writeln!(out, "    advice: {}", w.advice);
        }
    }
}

/// Aligns `rows` into columns: the first left-aligned, the rest right-aligned, as numbers
/// read best. A row shorter than the header (the "n/a" row) prints its cells as they are.
fn table(out: &mut String, rows: &[Vec<String>], indent: &str) {
    let cols = rows.first().map_or(0, Vec::len);
    let mut width = vec![0usize; cols];
    for row in rows.iter().filter(|r| r.len() == cols) {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::from(indent);
        for (i, cell) in row.iter().enumerate() {
            let w = if row.len() == cols { width[i] } else { 0 };
            if i == 0 {
                let _ = write!(line, "{cell:<w$}", w = width.first().copied().unwrap_or(0));
            } else {
                let _ = write!(line, "  {cell:>w$}");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn simulated_notice_iff_simulated() {
        let notice = "models are SIMULATED (tokenpace sim)";
        let full = fixture::full();
        assert!(render_text(&full).contains(notice));
        assert!(render_text(&full).contains("[SIMULATED prices]"));
        let mut real = full.clone();
        real.simulated = false;
        assert!(!render_text(&real).contains(notice));
        assert!(!render_text(&fixture::sparse()).contains(notice));
        // A real model beside a simulated one: the notice names which are simulated.
        let mut mixed = full.clone();
        mixed.series[0].simulated = false;
        let text = render_text(&mixed);
        assert!(!text.contains(notice), "{text}");
        assert!(
            text.contains("models marked [simulated] are SIMULATED"),
            "{text}"
        );
    }

    #[test]
    fn ttft_is_na_when_not_streamed() {
        let text = render_text(&fixture::sparse());
        let row = text
            .lines()
            .find(|l| l.trim_start().starts_with("TTFT"))
            .unwrap();
        assert!(row.contains("n/a (not streamed"), "{row}");
        assert!(text.contains("not streamed"));
        assert!(text.lines().any(|l| l.trim_start().starts_with("E2E")));
    }

    #[test]
    fn chunks_are_never_called_tokens() {
        let text = render_text(&fixture::full());
        let chunk_lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("counted by chunks"))
            .collect();
        assert_eq!(chunk_lines.len(), 1, "{text}");
        assert!(chunk_lines[0].contains("12,345 chunks"));
        assert!(chunk_lines[0].contains("stream chunks, not tokens"));
        assert!(text.contains("output chunks/s"));
        assert!(text.contains("12,345 tokens (counted by usage 50 requests)"));
    }

    #[test]
    fn full_report_has_every_section() {
        let mut full = fixture::full();
        full.sweep.push(fixture::sweep_row(64, None));
        let text = render_text(&full);
        for needle in [
            "sim-mini: TTFT p50 3.1 ± 0.2 × faster than sim-large",
            "Concurrency sweep",
            "sequential 5.2 s, 4 parallel 1.4 s: 3.7x faster",
            "latency at p50: network 0.40 ms + queue 0.00 ms + processing 101.2 ms",
            "throughput (steady, 2.0 s–10.0 s): 4.90 req/s, 412.3 output tok/s",
            "achieved concurrency 3.90",
            "SLO ttft<=200ms,e2e<=1s: attainment 90.4%",
            "goodput 4.60 req/s",
            "3 responses 429",
            "the provider's limit, not the model, capped this run",
            "client self-check: CPU 1.2% of the machine",
            "failures: http_5xx 1, timeout 1",
            "Warnings",
            "- [sim-mini] few_samples happened",
            "advice: do something about few_samples",
            "- client_saturated happened",
            "interrupted: partial results",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        let failed_level = ["sim-mini", "64", "-", "-", "-", "-", "-", "-", "64"];
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().eq(failed_level.iter().copied()))
        );
        // TTFC p50 is within 1% of TTFT: no separate row.
        assert!(!text.lines().any(|l| l.trim_start().starts_with("TTFC")));
    }

    #[test]
    fn sparse_report_stays_quiet() {
        let text = render_text(&fixture::sparse());
        for absent in [
            "Warnings",
            "Comparisons",
            "Speedup",
            "interrupted",
            "cost",
            "SLO",
        ] {
            assert!(!text.contains(absent), "unexpected {absent:?} in\n{text}");
        }
    }

    #[test]
    fn ttfc_row_only_when_it_differs() {
        let a = fixture::summary(100.0);
        assert!(!ttfc_differs(Some(&a), Some(&fixture::summary(100.4))));
        assert!(ttfc_differs(Some(&a), Some(&fixture::summary(80.0))));
        assert!(ttfc_differs(None, Some(&a)));
        assert!(!ttfc_differs(Some(&a), None));
    }

    #[test]
    fn speedup_wording() {
        let mut s = fixture::full().speedup.unwrap();
        s.speedup = 0.5;
        assert!(speedup_line(&s).contains("2.0x slower"));
        s.speedup = f64::NAN;
        assert!(speedup_line(&s).contains("speedup n/a"));
    }
}
