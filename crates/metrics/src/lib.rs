//! Pure statistics for tokenpace: what the numbers in a report mean and how they are
//! computed, with no I/O (the one input it parses is a price-table string it is given).
//!
//! This crate owns:
//! - [`hist`]: constant-memory HDR histograms for latencies and values, and their summaries;
//! - [`recorder`]: the per-request metric names and a per-worker, mergeable tally;
//! - [`throughput`]: 1-second buckets, the steady and full-run windows, achieved
//!   concurrency and the Little's-law check;
//! - [`slo`]: `--slo` parsing, the good/bad verdict, attainment and goodput;
//! - [`cost`]: the embedded, versioned price table and exact integer costs;
//! - [`compare`]: relative speed with uncertainty and bootstrap confidence intervals.
//!
//! It leaves clocks, sockets and the event ledger to the client, the load schedule and the
//! choice of measured requests to bench, and presentation to report. docs/metrics.md states
//! the definitions these types implement.

pub mod compare;
pub mod cost;
pub mod hist;
pub mod recorder;
pub mod slo;
pub mod throughput;

pub use compare::{ConfidenceInterval, Relative, SplitMix64, bootstrap_ci, relative};
pub use cost::{BillableTokens, Billing, Cost, CostTally, Price, PriceError, PriceTable, Rate};
pub use hist::{LatencyHistogram, Summary, SummaryMs, ValueHistogram, ValueSummary};
pub use recorder::{FailureClass, MetricKind, Recorder, RequestTokens, TokenSource, TokenTotals};
pub use slo::{Attainment, Slo, SloError, SloMetric, Verdict};
pub use throughput::{
    Completion, InFlightTracker, Rates, ThroughputTracker, Window, WindowKind, littles_law_mismatch,
};
