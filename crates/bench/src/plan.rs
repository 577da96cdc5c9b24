//! The resolved plan of a run: which series (target x model) to measure, the load shape
//! (closed loop at a concurrency, or an open-loop rate), when to stop, the workload, and the
//! settings that shape requests and the report. Engines accept only this resolved form; the
//! binary turns flags and files into it (STYLE.md habit 4).

use std::path::PathBuf;
use std::time::Duration;

use client::Endpoint;
use metrics::cost::PriceTable;
use metrics::slo::Slo;

use crate::arrival::ArrivalKind;
use crate::workload::Workload;

/// One measured series: a model on an endpoint. Every series gets the plan's workload unless
/// it carries its own (the default run's output-length experiment asks one model the same
/// question two ways).
#[derive(Debug, Clone)]
pub struct Series {
    /// Label in reports (the model, or `target/model` with several targets).
    pub label: String,
    /// Where requests go.
    pub endpoint: Endpoint,
    /// The model name sent.
    pub model: String,
    /// True when the endpoint is tokenpace's simulator (reports say so).
    pub simulated: bool,
    /// This series' own workload, instead of the plan's.
    pub workload: Option<Workload>,
}

/// How requests are offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Closed loop: `concurrency` workers, each sending its next request when the previous
    /// one ends (sequential runs are concurrency 1).
    Closed {
        /// Requests in flight.
        concurrency: u32,
    },
    /// Open loop: requests due on an absolute schedule at `rate` per second; latency is also
    /// measured from the intended send time.
    Open {
        /// Requests per second.
        rate: f64,
        /// Constant or Poisson gaps.
        arrival: ArrivalKind,
        /// Seed of Poisson gaps.
        seed: u64,
    },
}

impl Load {
    /// A short description for reports ("concurrency 4", "rate 100/s poisson").
    pub fn describe(&self) -> String {
        match self {
            Load::Closed { concurrency: 1 } => "sequential".to_string(),
            Load::Closed { concurrency } => format!("concurrency {concurrency}"),
            Load::Open { rate, arrival, .. } => {
                let kind = match arrival {
                    ArrivalKind::Constant => "constant",
                    ArrivalKind::Poisson => "poisson",
                };
                format!("rate {rate}/s {kind}")
            }
        }
    }
}

/// When a series stops dispatching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many measured requests.
    Requests(u64),
    /// After this long.
    Duration(Duration),
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// The series, measured one after another.
    pub series: Vec<Series>,
    /// Load shape.
    pub load: Load,
    /// Stop condition.
    pub stop: Stop,
    /// Requests sent before measuring, excluded from the figures.
    pub warmup: u64,
    /// What each request sends.
    pub workload: Workload,
    /// Stream responses (TTFT needs it).
    pub stream: bool,
    /// Ask for usage in streams (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Per-request service-level objective.
    pub slo: Option<Slo>,
    /// Prices.
    pub prices: PriceTable,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Write one JSON line per request here.
    pub requests_out: Option<PathBuf>,
    /// Upper bound on requests in flight in open-loop mode (beyond it the client is the
    /// bottleneck and the report says so).
    pub max_in_flight: u32,
    /// Closed loop: workers start spread evenly over this time instead of all at once
    /// (equal requests started together stay in lockstep and queue behind each other).
    pub ramp_up: Duration,
    /// A concurrency sweep: run every series at each level (empty: no sweep).
    pub sweep: Vec<u32>,
    /// Sequential vs parallel at this concurrency (the lesson's Part 3).
    pub speedup: Option<u32>,
}
