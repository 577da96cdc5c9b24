//! The Markdown rendering, for pull requests, issues and notebooks: a short run header, one
//! latency table per series with its throughput and cost underneath, then comparisons, the
//! sweep table, the speedup and the warnings as lists. Text from the run (labels, messages)
//! is escaped where it would break a table (`|`, line breaks) or start markup.

use std::fmt::Write as _;

use bench::report::{RunReport, SeriesReport};

use crate::metric::{self, OutputUnit, count, ms, num, percent, secs, usd};

/// Renders a run as GitHub-flavoured Markdown.
pub fn render_markdown(report: &RunReport) -> String {
    let mut out = String::from("# tokenpace report\n\n");
    let streamed = if report.stream {
        "streamed"
    } else {
        "not streamed"
    };
    let _ = writeln!(
        out,
        "{} · load {} · stop {} · {streamed} · started {}\n",
        inline(&report.tool),
        inline(&report.load),
        inline(&report.stop),
        inline(&report.started_at)
    );
    if report.simulated {
        out.push_str(
            "> **Models are SIMULATED (tokenpace sim)**: these figures describe the \
             simulator, not a provider.\n\n",
        );
    }
    if report.interrupted {
        out.push_str("> **Interrupted: partial results.**\n\n");
    }
    if let Some(slo) = &report.slo {
        let _ = writeln!(out, "SLO: `{}`\n", slo.replace('`', "'"));
    }
    for s in &report.series {
        series(&mut out, s);
    }
    if !report.comparisons.is_empty() {
        out.push_str("## Comparisons\n\n");
        for c in &report.comparisons {
            let _ = writeln!(out, "- {}", inline(&c.text));
        }
        out.push('\n');
    }
    if !report.sweep.is_empty() {
        out.push_str("## Concurrency sweep\n\n");
        out.push_str(
            "| series | concurrency | req/s | tok/s | TTFT p50 (ms) | TTFT p99 (ms) \
             | E2E p50 (ms) | E2E p99 (ms) | failed |\n",
        );
        out.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        let o = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "–".to_string(), f);
        for r in &report.sweep {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(&r.label),
                r.concurrency,
                o(r.requests_per_s, num),
                o(r.output_tokens_per_s, num),
                o(r.ttft_p50_ms, ms),
                o(r.ttft_p99_ms, ms),
                o(r.e2e_p50_ms, ms),
                o(r.e2e_p99_ms, ms),
                count(r.failed)
            );
        }
        out.push('\n');
    }
    if let Some(s) = &report.speedup {
        let verdict = if s.speedup.is_finite() {
            format!("**{:.1}x**", s.speedup)
        } else {
            "n/a".to_string()
        };
        let _ = writeln!(
            out,
            "## Speedup\n\n{}: sequential {}, {} parallel {}: {verdict} ({} requests)\n",
            inline(&s.label),
            secs(s.sequential_s),
            s.concurrency,
            secs(s.parallel_s),
            count(s.requests)
        );
    }
    let warnings: Vec<_> = report
        .series
        .iter()
        .flat_map(|s| s.warnings.iter().map(move |w| (Some(&s.label), w)))
        .chain(report.warnings.iter().map(|w| (None, w)))
        .collect();
    if !warnings.is_empty() {
        out.push_str("## Warnings\n\n");
        for (label, w) in warnings {
            let scope = label.map_or_else(String::new, |l| format!("**{}**: ", inline(l)));
            let _ = writeln!(
                out,
                "- {scope}{} (`{}`) — {}",
                inline(&w.message),
                w.code.replace('`', "'"),
                inline(&w.advice)
            );
        }
        out.push('\n');
    }
    out
}

fn series(out: &mut String, s: &SeriesReport) {
    let sim = if s.simulated { " (simulated)" } else { "" };
    let _ = writeln!(out, "## {}{sim}\n", inline(&s.label));
    let q = &s.requests;
    let _ = writeln!(
        out,
        "{} · {} · load {} · {} ok, {} failed, {} incomplete · wall {}\n",
        inline(&s.endpoint),
        inline(&s.api),
        inline(&s.load),
        count(q.succeeded),
        count(q.failed),
        count(q.incomplete),
        secs(s.wall_s)
    );
    let rows = metric::present(s);
    if !rows.is_empty() {
        out.push_str("| metric | n | mean (ms) | p50 (ms) | p90 (ms) | p99 (ms) |\n");
        out.push_str("|---|--:|--:|--:|--:|--:|\n");
        for (label, m) in rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&label),
                count(m.n),
                ms(m.mean),
                ms(m.p50),
                ms(m.p90),
                ms(m.p99)
            );
        }
        out.push('\n');
    }
    let unit = OutputUnit::of(&s.tokens);
    let mut facts = Vec::new();
    let mut output = format!("output {} {}", count(s.tokens.output), unit.noun());
    if unit != OutputUnit::Tokens {
        output.push_str(" (stream chunks are not tokens)");
    }
    facts.push(output);
    if let Some((name, r)) = metric::headline(s) {
        facts.push(format!(
            "throughput ({name}): {} req/s, {} output {}",
            num(r.requests_per_s),
            num(r.output_tokens_per_s),
            unit.per_s()
        ));
    }
    if let Some(c) = &s.cost {
        let sim = if c.simulated {
            " (simulated prices)"
        } else {
            ""
        };
        facts.push(format!("cost: {} total{sim}", usd(c.total_usd)));
    }
    if let Some(slo) = &s.slo {
        let a = slo.attainment.map_or_else(|| "n/a".to_string(), percent);
        facts.push(format!("SLO attainment: {a}"));
    }
    if s.rate_limits.provider_limited {
        facts.push("the provider's limit, not the model, capped this run".to_string());
    }
    for f in facts {
        let _ = writeln!(out, "- {f}");
    }
    out.push('\n');
}

/// A table cell: [`inline`] already escapes `|`, so one rule serves cells and prose; the
/// separate name marks where a stray `|` would split a row.
fn cell(text: &str) -> String {
    inline(text)
}

/// Running text: line breaks flattened and the characters that would start emphasis, code,
/// links or HTML, or split a table row (`|`), escaped, so a label reads as written.
fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' | '\n' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn escapes_pipes_in_labels() {
        let md = render_markdown(&fixture::full());
        assert!(
            md.contains("## acme/gpt, \"mini\" \\| v2 (simulated)"),
            "{md}"
        );
        assert!(!md.contains("\"mini\" | v2"));
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(inline("under_score *x*"), "under\\_score \\*x\\*");
    }

    #[test]
    fn every_table_row_has_the_header_column_count() {
        let md = render_markdown(&fixture::full());
        let mut expected = None;
        for line in md.lines() {
            if !line.starts_with('|') {
                expected = None;
                continue;
            }
            // Count unescaped pipes.
            let pipes = line
                .match_indices('|')
                .filter(|(i, _)| !line[..*i].ends_with('\\'));
            let n = pipes.count();
            assert_eq!(*expected.get_or_insert(n), n, "{line}");
        }
    }

    #[test]
    fn sections() {
        let mut full = fixture::full();
        full.sweep.push(fixture::sweep_row(64, None));
        let md = render_markdown(&full);
        for needle in [
            "> **Models are SIMULATED (tokenpace sim)**",
            "> **Interrupted: partial results.**",
            "| TTFT | 50 | 103.6 | 101.6 | 111.8 | 132.1 |",
            "## Comparisons\n\n- sim-mini: TTFT p50 3.1 ± 0.2 × faster than sim-large",
            "## Concurrency sweep",
            "| sim-mini | 64 | – | – | – | – | – | – | 64 |",
            "## Speedup\n\nsim-mini: sequential 5.2 s, 4 parallel 1.4 s: **3.7x**",
            "## Warnings",
            "- **sim-mini**: few\\_samples happened (`few_samples`) — do something about few\\_samples",
            "- client\\_saturated happened",
            "output 12,345 chunks (stream chunks are not tokens)",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in\n{md}");
        }
        let sparse = render_markdown(&fixture::sparse());
        assert!(!sparse.contains("SIMULATED"));
        assert!(!sparse.contains("## Warnings"));
        assert!(sparse.contains("| E2E | 50 |"));
    }
}
