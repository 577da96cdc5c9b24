//! A whole run: every series at the plan's load (or at each level of a sweep, or
//! sequentially and in parallel), then the comparisons, into one [`RunReport`].

use std::sync::Arc;

use client::Client;
use metrics::recorder::MetricKind;
use tokio_util::sync::CancellationToken;

use crate::engine::{BuildError, RunCtx, SeriesRun, run_series, speedup_pair};
use crate::plan::{BenchPlan, Load, Stop};
use crate::progress::Progress;
use crate::report::{Comparison, RunReport, SCHEMA_VERSION, SeriesReport, Speedup, SweepRow};
use crate::requests_out::RequestsOut;
use crate::summary::summarize;

/// Errors that end a run before it starts measuring.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A request could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// `--requests-out` could not be written.
    #[error("writing --requests-out '{path}': {source}")]
    RequestsOut {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

fn describe_stop(stop: Stop) -> String {
    match stop {
        Stop::Requests(n) => format!("{n} requests"),
        Stop::Duration(d) => format!("{}s", d.as_secs_f64()),
    }
}

/// Runs the plan. `started_at` is the wall-clock start, RFC 3339.
pub async fn run(
    plan: &BenchPlan,
    client: &Client,
    progress: &Arc<Progress>,
    cancel: &CancellationToken,
    started_at: String,
) -> Result<RunReport, RunError> {
    let requests_out = match &plan.requests_out {
        Some(path) => Some(Arc::new(RequestsOut::create(path).map_err(|source| {
            RunError::RequestsOut {
                path: path.display().to_string(),
                source,
            }
        })?)),
        None => None,
    };
    let ctx = RunCtx {
        client: client.clone(),
        progress: progress.clone(),
        cancel: cancel.clone(),
        requests_out: requests_out.clone(),
    };
    let mut series_reports: Vec<SeriesReport> = Vec::new();
    let mut sweep = Vec::new();
    let mut speedup = None;
    let summarize_run = |r: &SeriesRun| summarize(r, &plan.prices, plan.slo.as_ref());

    if let Some(concurrency) = plan.speedup {
        let requests = match plan.stop {
            Stop::Requests(n) => n,
            Stop::Duration(_) => 20,
        };
        for series in &plan.series {
            let (seq, par) = speedup_pair(plan, series, requests, concurrency, &ctx).await?;
            let (s, p) = (seq.wall.as_secs_f64(), par.wall.as_secs_f64());
            speedup = Some(Speedup {
                label: series.label.clone(),
                requests,
                concurrency,
                sequential_s: s,
                parallel_s: p,
                // Wall times are never zero in practice; the floor keeps the JSON a number.
                speedup: s / p.max(1e-9),
            });
            // The same series twice: say which run each report is.
            for (run, how) in [
                (&seq, "sequential".to_string()),
                (&par, format!("concurrency {concurrency}")),
            ] {
                let mut report = summarize_run(run);
                report.label = format!("{} ({how})", report.label);
                series_reports.push(report);
            }
            if cancel.is_cancelled() {
                break;
            }
        }
    } else if !plan.sweep.is_empty() {
        'levels: for &level in &plan.sweep {
            for series in &plan.series {
                let load = Load::Closed { concurrency: level };
                let run = run_series(plan, series, load, plan.stop, &ctx).await?;
                let mut report = summarize_run(&run);
                // One report per level of the same series: label each with its level.
                report.label = format!("{} (concurrency {level})", report.label);
                let lat = |k: MetricKind, p: fn(&metrics::hist::SummaryMs) -> f64| {
                    report.latency_ms.get(k.json_key()).map(p)
                };
                let headline = report
                    .throughput
                    .steady
                    .as_ref()
                    .or(report.throughput.full.as_ref());
                sweep.push(SweepRow {
                    label: series.label.clone(),
                    concurrency: level,
                    requests_per_s: headline.map(|r| r.requests_per_s),
                    output_tokens_per_s: headline.map(|r| r.output_tokens_per_s),
                    ttft_p50_ms: lat(MetricKind::Ttft, |s| s.p50),
                    ttft_p99_ms: lat(MetricKind::Ttft, |s| s.p99),
                    tpot_p50_ms: lat(MetricKind::Tpot, |s| s.p50),
                    e2e_p50_ms: lat(MetricKind::E2e, |s| s.p50),
                    e2e_p99_ms: lat(MetricKind::E2e, |s| s.p99),
                    failed: report.requests.failed,
                });
                series_reports.push(report);
                if cancel.is_cancelled() {
                    break 'levels;
                }
            }
        }
    } else {
        for series in &plan.series {
            let run = run_series(plan, series, plan.load, plan.stop, &ctx).await?;
            series_reports.push(summarize_run(&run));
            if cancel.is_cancelled() {
                break;
            }
        }
    }
    if let Some(out) = &requests_out {
        out.flush().map_err(|source| RunError::RequestsOut {
            path: plan
                .requests_out
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            source,
        })?;
    }

    let comparisons = if plan.sweep.is_empty() && plan.speedup.is_none() {
        compare(&series_reports, plan.stream)
    } else {
        Vec::new()
    };
    Ok(RunReport {
        schema_version: SCHEMA_VERSION,
        tool: format!("tokenpace {}", env!("CARGO_PKG_VERSION")),
        started_at,
        load: plan.load.describe(),
        stop: describe_stop(plan.stop),
        stream: plan.stream,
        slo: plan.slo.as_ref().map(|s| s.to_string()),
        simulated: plan.series.iter().any(|s| s.simulated),
        series: series_reports,
        comparisons,
        sweep,
        speedup,
        warnings: Vec::new(),
        interrupted: cancel.is_cancelled(),
    })
}

/// Relative lines against the fastest series, per headline metric (hyperfine style: the
/// ratio of means with its propagated uncertainty).
fn compare(series: &[SeriesReport], stream: bool) -> Vec<Comparison> {
    let mut out = Vec::new();
    if series.len() < 2 {
        return out;
    }
    let metrics: &[(&str, &str)] = if stream {
        &[("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("e2e_ms", "E2E")]
    } else {
        &[("e2e_ms", "E2E")]
    };
    for (key, name) in metrics {
        let with: Vec<(&SeriesReport, &metrics::hist::SummaryMs)> = series
            .iter()
            .filter_map(|s| s.latency_ms.get(*key).map(|m| (s, m)))
            .collect();
        let Some((fast, fm)) = with
            .iter()
            .min_by(|a, b| a.1.mean.total_cmp(&b.1.mean))
            .copied()
        else {
            continue;
        };
        for (other, om) in &with {
            if std::ptr::eq(*other, fast) {
                continue;
            }
            let rel = metrics::compare::relative(fm.mean, fm.stddev, om.mean, om.stddev);
            if !rel.is_defined() {
                continue;
            }
            out.push(Comparison {
                metric: key.trim_end_matches("_ms").to_string(),
                faster: fast.label.clone(),
                slower: other.label.clone(),
                ratio: rel.ratio,
                ratio_stddev: rel.ratio_stddev,
                text: format!("{}: {name} {rel} × faster than {}", fast.label, other.label),
            });
        }
    }
    out
}
