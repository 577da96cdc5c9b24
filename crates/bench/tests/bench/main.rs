//! The load engine against the in-process simulator (one per test, loopback port 0):
//! modes, stop conditions, every error class, SLOs, cost, comparisons, cancellation, and
//! accuracy against the simulator's known timings.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test loudly on any error"
)]

mod accuracy;
mod errors;
mod modes;

use std::sync::Arc;

use std::time::Duration;
use tokenpace_bench as bench;

use bench::plan::{BenchPlan, Load, Series, Stop};
use bench::progress::Progress;
use bench::report::RunReport;
use bench::workload::{DEFAULT_PROMPT, Source, Workload};
use client::{Api, Client, ClientOptions, Target};
use metrics::cost::PriceTable;
use sim::{RunningSim, SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

/// A simulator on a free port.
pub async fn sim_with(config: SimConfig) -> RunningSim {
    Simulator::new(config)
        .unwrap()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A default simulator.
pub async fn sim() -> RunningSim {
    sim_with(SimConfig::default()).await
}

/// Series for `models` on `sim`.
pub fn series(sim: &RunningSim, models: &[&str]) -> Vec<Series> {
    let endpoint = Target::new("sim", format!("{}/v1", sim.url()), Api::OpenAi)
        .endpoint()
        .unwrap();
    models
        .iter()
        .map(|m| Series {
            label: m.to_string(),
            endpoint: endpoint.clone(),
            model: m.to_string(),
            simulated: true,
            workload: None,
        })
        .collect()
}

/// A plan with the lesson's prompt.
pub fn plan(series: Vec<Series>, load: Load, stop: Stop) -> BenchPlan {
    BenchPlan {
        series,
        load,
        stop,
        warmup: 0,
        workload: Workload {
            source: Source::Text(DEFAULT_PROMPT.into()),
            max_tokens: Some(100),
            system: None,
        },
        stream: true,
        include_usage: true,
        slo: None,
        prices: PriceTable::builtin(),
        timeout: Duration::from_secs(20),
        requests_out: None,
        max_in_flight: 10_000,
        ramp_up: Duration::ZERO,
        sweep: Vec::new(),
        speedup: None,
    }
}

/// Runs a plan to its report.
pub async fn run(plan: &BenchPlan) -> RunReport {
    run_with(plan, &CancellationToken::new()).await
}

/// Runs a plan with a cancellation token.
pub async fn run_with(plan: &BenchPlan, cancel: &CancellationToken) -> RunReport {
    let client = Client::new(ClientOptions {
        timeout: plan.timeout,
        ..ClientOptions::default()
    })
    .unwrap();
    let progress = Arc::new(Progress::new());
    bench::run::run(
        plan,
        &client,
        &progress,
        cancel,
        "2026-01-01T00:00:00Z".into(),
    )
    .await
    .unwrap()
}

/// The simulator's /stats.
pub async fn stats(sim: &RunningSim) -> serde_json::Value {
    reqwest::get(format!("{}/stats", sim.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
