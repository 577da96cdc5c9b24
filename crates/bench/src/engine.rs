//! The load engine: drives one series at a load shape until its stop condition, each worker
//! recording into its own [`SeriesRecord`]; composes series into runs, sweeps and the
//! sequential-vs-parallel comparison.
//!
//! Load shape, stop condition and workload are values composed here, not one function per
//! combination (STYLE.md "not to copy"). Every spawned task belongs to a `JoinSet`, and
//! cancellation (ctrl-c) stops dispatching: in-flight requests are cancelled and counted as
//! incomplete, and the partial figures are still reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use client::{Client, PreparedRequest, RequestBuilder};
use metrics::cost::Price;
use metrics::slo::Slo;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::arrival::Schedule;
use crate::plan::{BenchPlan, Load, Series, Stop};
use crate::progress::Progress;
use crate::record::{BookCtx, RequestFacts, SeriesRecord};
use crate::requests_out::RequestsOut;
use crate::workload::{Source, Workload};

/// Most distinct requests prepared up front (serialized once); beyond this (synthetic
/// workloads) each request is built when it is sent.
const PREBUILT: usize = 10_000;

/// Requests whose server token count is always cross-checked with the tokenizer.
const TOKENIZER_CHECK_FIRST: u64 = 32;
/// After those, one request in this many is checked.
const TOKENIZER_CHECK_EVERY: u64 = 16;

/// The raw outcome of one series.
#[derive(Debug)]
pub struct SeriesRun {
    /// What was measured.
    pub series: Series,
    /// The load it ran at.
    pub load: Load,
    /// Everything recorded.
    pub record: SeriesRecord,
    /// Measured wall time.
    pub wall: Duration,
    /// Process CPU time during the measured phase.
    pub cpu: Option<Duration>,
    /// Requests dispatched in the measured phase.
    pub dispatched: u64,
    /// Open loop: time from the first dispatch to the last.
    pub dispatch_span: Option<Duration>,
    /// Warm-up requests sent.
    pub warmup: u64,
    /// True when cancelled part way.
    pub interrupted: bool,
}

/// Requests of a series: prepared once when the workload has few distinct prompts.
struct Requests {
    series: Series,
    workload: Workload,
    stream: bool,
    include_usage: bool,
    prebuilt: Vec<(PreparedRequest, RequestFacts)>,
}

/// A request that could not be built (a prompts-file line the endpoint's API cannot take).
#[derive(Debug, thiserror::Error)]
#[error("building request {index} for {label}: {message}")]
pub struct BuildError {
    /// Request index.
    pub index: u64,
    /// Series label.
    pub label: String,
    /// Why.
    pub message: String,
}

impl Requests {
    fn new(series: &Series, plan: &BenchPlan) -> Result<Requests, BuildError> {
        let mut r = Requests {
            series: series.clone(),
            workload: series
                .workload
                .clone()
                .unwrap_or_else(|| plan.workload.clone()),
            stream: plan.stream,
            include_usage: plan.include_usage,
            prebuilt: Vec::new(),
        };
        let distinct = match &r.workload.source {
            Source::Text(_) => 1,
            Source::Lines(lines) => lines.len().min(PREBUILT),
            Source::Synthetic(_) => 0,
        };
        for i in 0..distinct as u64 {
            let built = r.build(i)?;
            r.prebuilt.push(built);
        }
        Ok(r)
    }

    fn build(&self, i: u64) -> Result<(PreparedRequest, RequestFacts), BuildError> {
        let p = self.workload.prompt(i);
        let expected_output = if p.fixed_output { p.max_tokens } else { None };
        let req =
            RequestBuilder::chat(&self.series.endpoint, self.series.model.clone(), p.messages)
                .system(p.system)
                .max_tokens(p.max_tokens)
                .stream(self.stream)
                .include_usage(self.include_usage)
                .extra(p.extra)
                .build()
                .map_err(|e| BuildError {
                    index: i,
                    label: self.series.label.clone(),
                    message: e.to_string(),
                })?;
        Ok((
            req,
            RequestFacts {
                index: i,
                expected_output,
            },
        ))
    }

    /// Request `i` (its index is fixed up to the run's position).
    fn get(&self, i: u64) -> Result<(PreparedRequest, RequestFacts), BuildError> {
        if !self.prebuilt.is_empty() {
            let (req, mut facts) = self.prebuilt[(i % self.prebuilt.len() as u64) as usize].clone();
            facts.index = i;
            return Ok((req, facts));
        }
        self.build(i)
    }
}

/// What every worker of a series shares.
struct Shared {
    client: Client,
    requests: Requests,
    slo: Option<Slo>,
    price: Option<Price>,
    progress: Arc<Progress>,
    cancel: CancellationToken,
    requests_out: Option<Arc<RequestsOut>>,
}

/// A finished request, ready to book.
struct Sent {
    ledger: client::Ledger,
    metrics: client::RequestMetrics,
    facts: RequestFacts,
}

impl Shared {
    /// Sends request `i` (intended at `intended`). `None` when the run was cancelled first
    /// (or the request could not be built, which cancels the run).
    async fn send(&self, i: u64, intended: Instant) -> Option<Sent> {
        let (req, facts) = match self.requests.get(i) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                self.cancel.cancel();
                return None;
            }
        };
        self.progress.started();
        let ledger = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => {
                self.progress.finished(None);
                return None;
            }
            ledger = self.client.send(&req, intended) => ledger,
        };
        // Cross-check the server's token count with the tokenizer on the first requests
        // and a sample after (see `client::derive_with`).
        let check = facts.index < TOKENIZER_CHECK_FIRST || facts.index % TOKENIZER_CHECK_EVERY == 0;
        let metrics = client::derive_with(&ledger, &self.requests.series.model, check);
        Some(Sent {
            ledger,
            metrics,
            facts,
        })
    }

    /// Books a finished request into `rec` (and the per-request output).
    fn book(&self, sent: &Sent, start: Instant, rec: &mut SeriesRecord) {
        let ctx = BookCtx {
            start,
            slo: self.slo.as_ref(),
            price: self.price.as_ref(),
        };
        let booked = rec.book(&ctx, sent.facts, &sent.ledger, &sent.metrics);
        self.progress.finished(Some(booked));
        if let Some(out) = &self.requests_out {
            out.write(
                &self.requests.series.label,
                sent.facts.index,
                start,
                &sent.ledger,
                &sent.metrics,
            );
        }
    }

    /// Sends and books request `i`; false when the worker should stop.
    async fn one(&self, i: u64, intended: Instant, start: Instant, rec: Option<&Shards>) -> bool {
        match (self.send(i, intended).await, rec) {
            (Some(sent), Some(shards)) => {
                shards.with(i, |rec| self.book(&sent, start, rec));
                true
            }
            (Some(_), None) => {
                self.progress.finished(None);
                true
            }
            (None, Some(shards)) => {
                shards.with(i, SeriesRecord::incomplete);
                false
            }
            (None, None) => false,
        }
    }
}

/// The records workers book into: a few shards behind short synchronous locks (held for a
/// few histogram increments, never across an await). A record per worker would be lock-free
/// but costs megabytes of histograms each, which at hundreds of workers is allocated and
/// zeroed in the middle of the run, stalling every stream's arrival stamps.
struct Shards(Vec<std::sync::Mutex<SeriesRecord>>);

impl Shards {
    fn new() -> Self {
        let n = 2 * crate::cpu::cores().max(2);
        Shards(
            (0..n)
                .map(|_| std::sync::Mutex::new(SeriesRecord::new()))
                .collect(),
        )
    }

    fn with(&self, i: u64, f: impl FnOnce(&mut SeriesRecord)) {
        let shard = &self.0[(i % self.0.len() as u64) as usize];
        let mut guard = shard.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard);
    }

    fn merged(&self) -> SeriesRecord {
        let mut record = SeriesRecord::new();
        for shard in &self.0 {
            record.merge(&shard.lock().unwrap_or_else(|p| p.into_inner()));
        }
        record
    }
}

fn cpu_time() -> Option<Duration> {
    crate::cpu::process_cpu_time()
}

/// The services a run uses: the HTTP client, the progress counters, the cancellation
/// token (ctrl-c) and the optional per-request output.
#[derive(Debug, Clone)]
pub struct RunCtx {
    /// The one HTTP client.
    pub client: Client,
    /// Live counters.
    pub progress: Arc<Progress>,
    /// Cancelled on ctrl-c.
    pub cancel: CancellationToken,
    /// `--requests-out`.
    pub requests_out: Option<Arc<RequestsOut>>,
}

/// Runs one series at `load` until `stop`.
pub async fn run_series(
    plan: &BenchPlan,
    series: &Series,
    load: Load,
    stop: Stop,
    ctx: &RunCtx,
) -> Result<SeriesRun, BuildError> {
    let (client, progress, cancel) = (&ctx.client, &ctx.progress, &ctx.cancel);
    let shared = Arc::new(Shared {
        client: client.clone(),
        requests: Requests::new(series, plan)?,
        slo: plan.slo.clone(),
        price: plan.prices.lookup(&series.model).cloned(),
        progress: progress.clone(),
        cancel: cancel.child_token(),
        requests_out: ctx.requests_out.clone(),
    });
    let total = match stop {
        Stop::Requests(n) => Some(n),
        Stop::Duration(_) => None,
    };

    // Warm-up: pre-open connections, then send the warm-up requests at the same shape.
    let warm_conns = match load {
        Load::Closed { concurrency } => concurrency.min(256) as usize,
        Load::Open { rate, .. } => (rate / 10.0).clamp(1.0, 256.0) as usize,
    };
    let _ = client.prewarm(&series.endpoint, warm_conns).await;
    if plan.warmup > 0 {
        progress.begin(&format!("{} (warm-up)", series.label), Some(plan.warmup));
        let workers = match load {
            Load::Closed { concurrency } => concurrency,
            Load::Open { .. } => warm_conns as u32,
        };
        closed(
            &shared,
            workers,
            Stop::Requests(plan.warmup),
            u64::MAX / 2,
            false,
            plan.ramp_up,
        )
        .await;
    }

    progress.begin(&series.label, total);
    let cpu0 = cpu_time();
    let started = Instant::now();
    let (record, dispatched, dispatch_span) = match load {
        Load::Closed { concurrency } => {
            let (record, dispatched) =
                closed(&shared, concurrency, stop, 0, true, plan.ramp_up).await;
            (record, dispatched, None)
        }
        Load::Open {
            rate,
            arrival,
            seed,
        } => {
            open(
                &shared,
                Schedule::new(arrival, rate, seed),
                stop,
                plan.max_in_flight,
            )
            .await
        }
    };
    let wall = started.elapsed();
    let cpu = cpu0.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a));
    Ok(SeriesRun {
        series: series.clone(),
        load,
        record,
        wall,
        cpu,
        dispatched,
        dispatch_span,
        warmup: plan.warmup,
        interrupted: cancel.is_cancelled(),
    })
}

/// Closed loop: `workers` tasks, each sending its next request when the last one ends.
/// Request indices start at `first_index` (warm-up requests use a separate range so the
/// measured run sends the same prompts as an unwarmed one).
async fn closed(
    shared: &Arc<Shared>,
    workers: u32,
    stop: Stop,
    first_index: u64,
    measured: bool,
    ramp_up: Duration,
) -> (SeriesRecord, u64) {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (limit, deadline) = match stop {
        Stop::Requests(n) => (n, None),
        Stop::Duration(d) => (u64::MAX, Some(start + d)),
    };
    let shards = Arc::new(Shards::new());
    let mut set = JoinSet::new();
    let workers = workers.max(1);
    for w in 0..workers {
        let shared = shared.clone();
        let next = next.clone();
        let shards = shards.clone();
        let delay = ramp_up.mul_f64(f64::from(w) / f64::from(workers));
        set.spawn(async move {
            let rec = measured.then_some(&*shards);
            if !delay.is_zero() {
                tokio::select! {
                    _ = shared.cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            loop {
                if shared.cancel.is_cancelled() || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit {
                    break;
                }
                // Closed loop: the slot became free now, so this is the intended time.
                let intended = Instant::now();
                if !shared.one(first_index + i, intended, start, rec).await {
                    break;
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    let dispatched = next.load(Ordering::Relaxed).min(limit);
    (shards.merged(), dispatched)
}

/// Open loop: requests due on an absolute schedule, each in its own task; at most
/// `max_in_flight` at once (beyond that the client, not the server, would be the queue, and
/// the wait shows as schedule lag since latency counts from the intended time).
async fn open(
    shared: &Arc<Shared>,
    schedule: Schedule,
    stop: Stop,
    max_in_flight: u32,
) -> (SeriesRecord, u64, Option<Duration>) {
    let shards = Arc::new(Shards::new());
    let gate = Arc::new(Semaphore::new(max_in_flight.max(1) as usize));
    let start = Instant::now();
    let mut set = JoinSet::new();
    let mut dispatched = 0u64;
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    for (i, offset) in schedule.enumerate() {
        let i = i as u64;
        match stop {
            Stop::Requests(n) if i >= n => break,
            Stop::Duration(d) if offset >= d => break,
            _ => {}
        }
        let intended = start + offset;
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            _ = tokio::time::sleep_until(intended.into()) => {}
        }
        let permit = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            p = gate.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        dispatched += 1;
        let now = Instant::now();
        first.get_or_insert(now);
        last = Some(now);
        let shared = shared.clone();
        let shards = shards.clone();
        set.spawn(async move {
            let _permit = permit;
            shared.one(i, intended, start, Some(&shards)).await;
        });
        // Reap finished tasks as we go so the set does not grow with the run.
        while set.try_join_next().is_some() {}
    }
    while set.join_next().await.is_some() {}
    let span = first.zip(last).map(|(a, b)| b - a);
    (shards.merged(), dispatched, span)
}

/// Sequential then parallel runs of the same `requests` prompts (the lesson's Part 3).
pub async fn speedup_pair(
    plan: &BenchPlan,
    series: &Series,
    requests: u64,
    concurrency: u32,
    ctx: &RunCtx,
) -> Result<(SeriesRun, SeriesRun), BuildError> {
    let seq = run_series(
        plan,
        series,
        Load::Closed { concurrency: 1 },
        Stop::Requests(requests),
        ctx,
    )
    .await?;
    let par = run_series(
        plan,
        series,
        Load::Closed { concurrency },
        Stop::Requests(requests),
        ctx,
    )
    .await?;
    Ok((seq, par))
}
